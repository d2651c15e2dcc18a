// Channel-last forward, "cl8" variant (CUDA headers only; selected by MK_CONV1D_FWD_CL_IMPL=1, see the knob
// block in conv1d_common.cuh). A big non-persistent grid of blocks of 4 warps: lane l of a block owns channels
// c0 = (blockIdx.y * 32 + l) * 8 .. +7 (one 16-byte vector for 16-bit types, two for fp32; a warp reads 512
// contiguous bytes per step), warp w the kS = MK_CONV1D_CL8_STEPS time steps tb = (blockIdx.x * 4 + w) * kS ...
// Each lane issues all kS vector loads up front (independent), then computes. Halo (the w-1 steps before tb):
// warp 0 loads them (L2 / HBM; before position 0 the initial state, varlen zeros), warps 1..3 take the last w-1
// raw vectors of the warp before through shared memory (one barrier). Same contract as conv1d_fwd_cl_kernel.
#pragma once
#include "conv1d/conv1d_fwd_kernel.cuh"

namespace mamba_kernels {
namespace conv1d {

namespace fwd_cl8 {
constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kC = 8;                        // channels per lane
constexpr int kS = MK_CONV1D_CL8_STEPS;      // time steps per warp
static_assert(kS >= kMaxWidth - 1, "a warp's tile must hold the next warp's halo");
}  // namespace fwd_cl8

template <typename T, int kW>
__global__ void __launch_bounds__(fwd_cl8::kThreads, MK_CONV1D_CL8_MIN_BLOCKS)
    conv1d_fwd_cl8_kernel(Conv1dParams p, bool x_vec, bool y_vec) {
  using namespace fwd_cl8;
  constexpr int C = kC;
  constexpr int H = kW - 1;
  __shared__ Raw<T, C> halo[kWarps][H][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t c0 = (static_cast<int64_t>(blockIdx.y) * 32 + lane) * C;
  const int64_t b = blockIdx.z;
  const int64_t tb = (static_cast<int64_t>(blockIdx.x) * kWarps + warp) * kS;
  const int64_t L = p.seqlen;
  // No early return: every thread reaches the barrier (inactive lanes load nothing and store nothing).
  const bool active = c0 < p.dim && tb < L;
  const int nc = active ? static_cast<int>(p.dim - c0 < C ? p.dim - c0 : C) : 0;
  const int n = active ? static_cast<int>(L - tb < kS ? L - tb : kS) : 0;
  const int64_t xls = p.x_l_stride, yls = p.y_l_stride;
  const int64_t cc0 = active ? c0 : 0;  // keep inactive lanes' pointers inside the tensor
  const T* __restrict__ x = static_cast<const T*>(p.x) + b * p.x_batch_stride + cc0;
  T* __restrict__ y = static_cast<T*>(p.y) + b * p.y_batch_stride + cc0;
  const T* xt0 = x + (active ? tb : 0) * xls;

  Raw<T, C> r[kS];
#pragma unroll
  for (int u = 0; u < kS; ++u) load_raw<T, C>(xt0 + u * xls, u < n ? nc : 0, x_vec, r[u]);
  if (warp + 1 < kWarps) {
#pragma unroll
    for (int j = 0; j < H; ++j) halo[warp][j][lane] = r[kS - H + j];  // the next warp's halo (full tiles only)
  }
  const int width = static_cast<int>(p.width);
  const int pad = kW - width;
  const bool varlen = p.cu_seqlens != nullptr;
  float win[H][C];  // inputs at t - H .. t - 1
  if (warp == 0) {
#pragma unroll
    for (int j = 0; j < H; ++j) {
      const int64_t pos = tb - H + j;
      if (pos >= 0) {
        Raw<T, C> h;
        load_raw<T, C>(x + pos * xls, nc, x_vec, h);
#pragma unroll
        for (int ch = 0; ch < C; ++ch) win[j][ch] = to_f(h.e[ch]);
      } else {
#pragma unroll
        for (int ch = 0; ch < C; ++ch)
          win[j][ch] = (!varlen && ch < nc && pos + width - 1 >= 0) ? init_at<T>(p, b, c0 + ch, pos + width - 1) : 0.f;
      }
    }
  }
  float w[C][kW], bias[C];
#pragma unroll
  for (int ch = 0; ch < C; ++ch) {
    const int64_t cc = ch < nc ? c0 + ch : 0;  // lanes past the end reuse a valid channel (never stored)
    load_weights<kW>(p, cc, pad, w[ch]);
    bias[ch] = load_bias(p, cc);
  }
  __syncthreads();
  if (warp > 0) {
#pragma unroll
    for (int j = 0; j < H; ++j) {
      const Raw<T, C> h = halo[warp - 1][j][lane];
#pragma unroll
      for (int ch = 0; ch < C; ++ch) win[j][ch] = to_f(h.e[ch]);
    }
  }
  if (!active) return;  // after the barrier

  T* yt = y + tb * yls;
#pragma unroll
  for (int u = 0; u < kS; ++u) {
    if (u < n) {
      float xv[C], out[C];
#pragma unroll
      for (int ch = 0; ch < C; ++ch) xv[ch] = to_f(r[u].e[ch]);
#pragma unroll
      for (int ch = 0; ch < C; ++ch) {
        float acc = bias[ch];
#pragma unroll
        for (int i = 0; i < kW; ++i)
          if (i >= pad) acc = fmaf(w[ch][i], i < H ? win[i][ch] : xv[ch], acc);
        out[ch] = p.silu ? silu_out<T>(acc) : acc;
      }
      store_n<T, C>(yt + u * yls, 1, nc, y_vec, out);
#pragma unroll
      for (int j = 0; j + 1 < H; ++j) {
#pragma unroll
        for (int ch = 0; ch < C; ++ch) win[j][ch] = win[j + 1][ch];
      }
#pragma unroll
      for (int ch = 0; ch < C; ++ch) win[H - 1][ch] = xv[ch];
    }
  }
}

}  // namespace conv1d
}  // namespace mamba_kernels
