// Channel-first forward, "flat" variant (CUDA headers only; selected by MK_CONV1D_FWD_CF_IMPL=1, see the knob
// block in conv1d_common.cuh). A big non-persistent grid: every warp owns one tile of G chunks of 256 positions
// of one (b, c) row; each lane issues its G 16-byte loads (positions s*256 + lane*8 .. +7 of chunk s) up front
// as independent loads, then computes and stores. No software pipeline: the loads in flight per SM are
// G * 512 bytes per resident warp (G = 4: 2 KB per warp, 64-128 KB per SM at 32-64 warps), and the hardware
// overlaps one warp's compute with the others' loads. Halo: one rotation shuffle per value (lane l gets lane
// l-1's last w-1 inputs; lane 0 of chunk s gets lane 31's of chunk s-1) and, for chunk 0, w-1 scalar loads by
// lane 0 (the initial state before position 0). Same contract as conv1d_fwd_cf_kernel (width buckets; varlen
// rows treated as one sequence, first outputs of each sequence redone by conv1d_fwd_fix_kernel).
#pragma once
#include "conv1d/conv1d_fwd_kernel.cuh"

namespace mamba_kernels {
namespace conv1d {

using fwd_flat = FlatTiling<MK_CONV1D_FLAT_G>;

// kSilu: the activation; kFull: width == kW (pad the constant 0: no predicated taps).
template <typename T, int kW, bool kSilu, bool kFull>
__global__ void __launch_bounds__(fwd_flat::kThreads, MK_CONV1D_FLAT_MIN_BLOCKS)
    conv1d_fwd_flat_kernel(Conv1dParams p, bool x_vec, bool y_vec, int64_t tiles_per_row) {
  using fwd_cf::kChunkLen;
  using fwd_cf::kN;
  constexpr int G = fwd_flat::chunks<T>();
  constexpr int H = kW - 1;
  const int lane = threadIdx.x & 31;
  const int64_t gw = static_cast<int64_t>(blockIdx.x) * fwd_flat::kWarps + (threadIdx.x >> 5);
  const int64_t row = gw / tiles_per_row;
  if (row >= p.batch * p.dim) return;  // warp-uniform: the shuffles below see full warps
  const int64_t tile = gw - row * tiles_per_row;
  const int64_t b = row / p.dim, c = row - b * p.dim;
  const int64_t t0 = tile * fwd_flat::tile_len<T>();
  const int len = static_cast<int>(p.seqlen - t0 < fwd_flat::tile_len<T>() ? p.seqlen - t0 : fwd_flat::tile_len<T>());
  const T* __restrict__ x = static_cast<const T*>(p.x) + b * p.x_batch_stride + c * p.x_c_stride;
  const T* __restrict__ xs = x + t0;
  T* __restrict__ ys = static_cast<T*>(p.y) + b * p.y_batch_stride + c * p.y_c_stride + t0;

  const int width = static_cast<int>(p.width);
  const int pad = kFull ? 0 : kW - width;
  Raw<T, kN> r[G];
#pragma unroll
  for (int s = 0; s < G; ++s) {
    const int o = s * kChunkLen + lane * kN;
    load_raw<T, kN>(xs + o, len - o, x_vec, r[s]);
  }
  float carry[H];  // lane 0: the H inputs before the tile (before position 0: the initial state; varlen zeros)
  cf_left_halo<T, H>(p, x, b, c, t0, width, lane == 0, carry);
  // After the x loads (before them: 0.113 vs 0.107 ms at b4 d6144 l4096, lab 2026-11-29).
  float w[kW];
  load_weights<kW>(p, c, pad, w);
  const float bias = load_bias(p, c);

#pragma unroll
  for (int s = 0; s < G; ++s) {
    const int c0 = s * kChunkLen;
    if (c0 >= len) break;  // warp-uniform
    float xc[kN];
#pragma unroll
    for (int e = 0; e < kN; ++e) xc[e] = raw_f(r[s], e);
    float prev[H];
#pragma unroll
    for (int j = 0; j < H; ++j) {
      const float rot = __shfl_sync(kFullMask, xc[kN - H + j], (lane + 31) & 31);
      prev[j] = lane == 0 ? carry[j] : rot;
      carry[j] = rot;  // lane 0: lane 31's tail, the halo of the next chunk
    }
    float out[kN];
#pragma unroll
    for (int e = 0; e < kN; ++e) {
      const float acc = cf_pre<kW, kN>(w, pad, bias, prev, xc, e);
      out[e] = kSilu ? silu_out<T>(acc) : acc;
    }
    const int o = c0 + lane * kN;
    if (o < len) store_n<T, kN>(ys + o, 1, len - o, y_vec, out);
  }
}

}  // namespace conv1d
}  // namespace mamba_kernels
