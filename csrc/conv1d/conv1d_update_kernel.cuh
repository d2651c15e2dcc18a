// Decode update kernel of the causal depthwise conv1d (CUDA headers only): k new tokens per row against a
// pool of states. One thread per (row, channel), tokens in a loop; a tiny kernel, so one token at batch 1 is
// bound by the launch, not by the work (d 6144: 48 blocks, ~3 loads per thread).
// Order inside a thread: read the window (last w-1 state inputs) -> shift the state in place (each state
// entry is read before it is overwritten, by the same thread) -> convolve and write out. Every x value is
// read before `out` is written, so out may alias x. Rows must map to distinct slots (padding excepted).
#pragma once
#include <type_traits>

#include "conv1d/conv1d_common.cuh"

namespace mamba_kernels {
namespace conv1d {

// Launch shape (knobs MK_CONV1D_UPD_THREADS / MK_CONV1D_UPD_CPT, conv1d_common.cuh): a block covers
// kUpdateThreads * kUpdateCPT channels of one row; thread t does channels t, t + kUpdateThreads, ... With
// several channels per thread and the common case (one token, state <= kUpdateMaxState) every load of all its
// channels is issued before any store (update_row_k1), so they still cost one memory round trip.
constexpr int kUpdateThreads = MK_CONV1D_UPD_THREADS;
constexpr int kUpdateCPT = MK_CONV1D_UPD_CPT;
constexpr int kUpdateChannels = kUpdateThreads * kUpdateCPT;  // per block
constexpr int kUpdateMaxState = 8;  // states up to this length are shifted with all loads before the stores

template <typename T, int kW, bool kMasked>
__device__ __forceinline__ void update_row(const Conv1dUpdateParams& p, int64_t b, int64_t c, int64_t slot) {
  constexpr int H = kW - 1;
  const int width = static_cast<int>(p.width);
  const int pad = kMasked ? kW - width : 0;
  const int64_t Ls = p.state_len, K = p.k;
  const T* x = static_cast<const T*>(p.x) + b * p.x_batch_stride + c * p.x_c_stride;
  T* out = static_cast<T*>(p.out) + b * p.out_batch_stride + c * p.out_c_stride;
  T* st = static_cast<T*>(p.conv_state) + slot * p.state_n_stride + c * p.state_c_stride;

  float w[kW];
#pragma unroll
  for (int i = 0; i < kW; ++i)
    w[i] = i < pad ? 0.f : load_any(p.weight, p.w_dtype, c * p.w_c_stride + (i - pad) * p.w_w_stride);
  const float bias = p.bias ? load_any(p.bias, p.b_dtype, c * p.bias_stride) : 0.f;
  float win[H];  // the last H state inputs (entries before the state's start only feed absent taps)
#pragma unroll
  for (int j = 0; j < H; ++j) {
    const int64_t pos = Ls - H + j;
    win[j] = pos >= 0 ? to_f(st[pos * p.state_l_stride]) : 0.f;
  }
  const float x0 = K > 0 ? to_f(x[0]) : 0.f;  // loaded with the state, before the state stores
  if (Ls <= kUpdateMaxState) {
    // Short states (the usual w-1): every load of the shifted state is issued before any store, so the whole
    // update costs one memory round trip. (A load after a store to the same row cannot be hoisted by the
    // compiler: the shift loop below serialises one round trip per entry.)
    T ns[kUpdateMaxState];
#pragma unroll
    for (int j = 0; j < kUpdateMaxState; ++j) {
      const int64_t src = j + K;
      if (j < Ls) ns[j] = src < Ls ? st[src * p.state_l_stride] : x[(src - Ls) * p.x_l_stride];
    }
#pragma unroll
    for (int j = 0; j < kUpdateMaxState; ++j)
      if (j < Ls) st[j * p.state_l_stride] = ns[j];
  } else {
    for (int64_t j = 0; j < Ls; ++j) {
      const int64_t src = j + K;
      st[j * p.state_l_stride] = src < Ls ? st[src * p.state_l_stride] : x[(src - Ls) * p.x_l_stride];
    }
  }
  for (int64_t t = 0; t < K; ++t) {
    const float xt = t == 0 ? x0 : to_f(x[t * p.x_l_stride]);
    float acc = bias;
#pragma unroll
    for (int i = 0; i < kW; ++i) {
      if (kMasked && i < pad) continue;
      acc = fmaf(w[i], i < H ? win[i] : xt, acc);
    }
    out[t * p.out_l_stride] = from_f<T>(p.silu ? silu_f(acc) : acc);
#pragma unroll
    for (int j = 0; j + 1 < H; ++j) win[j] = win[j + 1];
    win[H - 1] = xt;
  }
}

// One token, state_len <= kUpdateMaxState, kCPT channels (c0 + i * kUpdateThreads, those < dim): all loads of
// all channels (weights, bias, state, x) first, then the stores.
template <typename T, int kW, int kCPT>
__device__ __forceinline__ void update_row_k1(const Conv1dUpdateParams& p, int64_t b, int64_t c0, int64_t slot) {
  constexpr int H = kW - 1;
  const int width = static_cast<int>(p.width);
  const int pad = kW - width;
  const int Ls = static_cast<int>(p.state_len);
  const T* x = static_cast<const T*>(p.x) + b * p.x_batch_stride;
  T* out = static_cast<T*>(p.out) + b * p.out_batch_stride;
  T* st = static_cast<T*>(p.conv_state) + slot * p.state_n_stride;
  T sv[kCPT][kUpdateMaxState], xv[kCPT];
  float w[kCPT][kW], bias[kCPT];
#pragma unroll
  for (int i = 0; i < kCPT; ++i) {
    const int64_t c = c0 + int64_t(i) * kUpdateThreads;
    if (c < p.dim) {
      xv[i] = x[c * p.x_c_stride];
#pragma unroll
      for (int j = 0; j < kUpdateMaxState; ++j)
        if (j < Ls) sv[i][j] = st[c * p.state_c_stride + j * p.state_l_stride];
#pragma unroll
      for (int k = 0; k < kW; ++k)
        w[i][k] = k < pad ? 0.f : load_any(p.weight, p.w_dtype, c * p.w_c_stride + (k - pad) * p.w_w_stride);
      bias[i] = p.bias ? load_any(p.bias, p.b_dtype, c * p.bias_stride) : 0.f;
    }
  }
#pragma unroll
  for (int i = 0; i < kCPT; ++i) {
    const int64_t c = c0 + int64_t(i) * kUpdateThreads;
    if (c < p.dim) {
      const float xt = to_f(xv[i]);
      float acc = bias[i];
#pragma unroll
      for (int k = 0; k < kW; ++k) {  // tap k < H reads state entry Ls - H + k (absent taps: weight 0)
        if (k < pad) continue;
        float v = xt;
        if (k < H) {
          const int pos = Ls - H + k;
          v = 0.f;
#pragma unroll
          for (int j = 0; j < kUpdateMaxState; ++j)
            if (j == pos) v = to_f(sv[i][j]);
        }
        acc = fmaf(w[i][k], v, acc);
      }
#pragma unroll
      for (int j = 0; j < kUpdateMaxState; ++j)
        if (j < Ls) st[c * p.state_c_stride + j * p.state_l_stride] = j + 1 < Ls ? sv[i][j + 1 < kUpdateMaxState ? j + 1 : 0] : xv[i];
      out[c * p.out_c_stride] = from_f<T>(p.silu ? silu_f(acc) : acc);
    }
  }
}

template <typename T, int kW>
__global__ void __launch_bounds__(kUpdateThreads) conv1d_update_kernel(Conv1dUpdateParams p) {
  const int64_t c0 = static_cast<int64_t>(blockIdx.x) * kUpdateChannels + threadIdx.x;
  const int64_t b = blockIdx.y;
  if (c0 >= p.dim) return;
  const int64_t slot = p.slots ? static_cast<int64_t>(p.slots[b]) : b;
  if (slot < 0 || slot >= p.nslots) {  // padding row: state untouched, output zero
    for (int i = 0; i < kUpdateCPT; ++i) {
      const int64_t c = c0 + int64_t(i) * kUpdateThreads;
      if (c >= p.dim) break;
      T* out = static_cast<T*>(p.out) + b * p.out_batch_stride + c * p.out_c_stride;
      for (int64_t t = 0; t < p.k; ++t) out[t * p.out_l_stride] = from_f<T>(0.f);
    }
    return;
  }
  if (kUpdateCPT > 1 && p.k == 1 && p.state_len <= kUpdateMaxState) {
    update_row_k1<T, kW, kUpdateCPT>(p, b, c0, slot);
    return;
  }
  for (int i = 0; i < kUpdateCPT; ++i) {
    const int64_t c = c0 + int64_t(i) * kUpdateThreads;
    if (c >= p.dim) break;
    if (p.width == kW) update_row<T, kW, false>(p, b, c, slot);
    else update_row<T, kW, true>(p, b, c, slot);
  }
}

// ---- Vectorised one-token path (the decode hot path; launch when update_vec_ok, conv1d_launch.cu): width 4,
// kLs = state_len in {3, 4}, everything contiguous and 16-byte aligned. A thread takes kV = 16 / sizeof(T)
// consecutive channels of one row: x and out are one 16-byte word, the state rows of its channels (kV x kLs
// elements, contiguous) kLs words, the weights (kV x 4, contiguous) 2 or 4 words (16-bit / fp32 weights). The
// scalar path above moves 2- or 4-byte elements at channel strides (a warp instruction then touches 32
// separate state / weight segments) and needs ~1.2 waves of 256-thread blocks at b 64, d 6144; this one needs
// 384 128-thread blocks there (one wave) and ~10 loads a thread, all issued before the stores.
constexpr int kUpdateVecThreads = 128;
template <typename T> constexpr int upd_vec_channels() { return 16 / static_cast<int>(sizeof(T)); }

// A 16- or 32-bit element of T given as raw bits (in the low bits of v) -> float.
template <typename T> __device__ __forceinline__ float bits_to_f(uint32_t v) {
  if constexpr (sizeof(T) == 4) return __uint_as_float(v);
  else if constexpr (std::is_same_v<T, __nv_bfloat16>) return __uint_as_float(v << 16);
  else return __half2float(__ushort_as_half(static_cast<unsigned short>(v)));
}
// Raw bits of element j (a compile-time index after unrolling) of 32-bit words u holding kBytes-byte elements.
template <int kBytes> __device__ __forceinline__ uint32_t elem_bits(const uint32_t* u, int j) {
  if constexpr (kBytes == 4) return u[j];
  else return (u[j >> 1] >> ((j & 1) * 16)) & 0xffffu;
}
// Element j of 32-bit words u holding elements of dtype dt (not fp64) -> float.
__device__ __forceinline__ float word_elem(const uint32_t* u, DType dt, int j) {
  if (dt == DType::kFloat32) return __uint_as_float(u[j]);
  const uint32_t h = elem_bits<2>(u, j);
  return dt == DType::kBFloat16 ? bits_to_f<__nv_bfloat16>(h) : bits_to_f<__half>(h);
}

template <typename T, int kLs>
__global__ void __launch_bounds__(kUpdateVecThreads) conv1d_update_vec_kernel(Conv1dUpdateParams p) {
  constexpr int kV = upd_vec_channels<T>(), kW = 4, H = kW - 1;
  constexpr int kWWords = kV * kW * 4 / 16;  // weight words when fp32 (16-bit weights use half of them)
  const int64_t c0 = (static_cast<int64_t>(blockIdx.x) * kUpdateVecThreads + threadIdx.x) * kV;
  const int64_t b = blockIdx.y;
  if (c0 >= p.dim) return;
  T* out = static_cast<T*>(p.out) + b * p.out_batch_stride + c0;
  const int64_t slot = p.slots ? static_cast<int64_t>(p.slots[b]) : b;
  if (slot < 0 || slot >= p.nslots) {  // padding row: state untouched, output zero
    *reinterpret_cast<uint4*>(out) = make_uint4(0u, 0u, 0u, 0u);
    return;
  }
  // All loads first: x, weights, bias, the kLs state words.
  const uint4 xw = __ldg(reinterpret_cast<const uint4*>(static_cast<const T*>(p.x) + b * p.x_batch_stride + c0));
  const int wbytes = p.w_dtype == DType::kFloat32 ? 4 : 2;
  const uint4* wsrc = reinterpret_cast<const uint4*>(static_cast<const char*>(p.weight) + c0 * kW * wbytes);
  uint4 ww[kWWords];
#pragma unroll
  for (int i = 0; i < kWWords; ++i)
    ww[i] = (wbytes == 4 || i < kWWords / 2) ? __ldg(wsrc + i) : make_uint4(0u, 0u, 0u, 0u);
  float bias[kV];
#pragma unroll
  for (int ch = 0; ch < kV; ++ch) bias[ch] = p.bias ? load_any(p.bias, p.b_dtype, (c0 + ch) * p.bias_stride) : 0.f;
  T* st = static_cast<T*>(p.conv_state) + slot * p.state_n_stride + c0 * kLs;
  uint4 sw[kLs];
#pragma unroll
  for (int i = 0; i < kLs; ++i) sw[i] = reinterpret_cast<const uint4*>(st)[i];

  const uint32_t* xu = reinterpret_cast<const uint32_t*>(&xw);
  const uint32_t* su = reinterpret_cast<const uint32_t*>(sw);
  const uint32_t* wu = reinterpret_cast<const uint32_t*>(ww);
  auto bits = [](const uint32_t* u, int e) { return elem_bits<sizeof(T)>(u, e); };
  float y[kV];
#pragma unroll
  for (int ch = 0; ch < kV; ++ch) {
    float acc = bias[ch];
#pragma unroll
    for (int i = 0; i < kW; ++i) {  // tap i < H reads state entry kLs - H + i, tap H the new token
      const uint32_t v = i < H ? bits(su, ch * kLs + kLs - H + i) : bits(xu, ch);
      acc = fmaf(word_elem(wu, p.w_dtype, ch * kW + i), bits_to_f<T>(v), acc);
    }
    y[ch] = p.silu ? silu_f(acc) : acc;
  }
  // The shifted state rows: entry j of channel ch <- entry j + 1, the last <- the new token.
  auto shifted = [&](int e) -> uint32_t {
    const int ch = e / kLs, j = e - ch * kLs;
    return j + 1 < kLs ? bits(su, e + 1) : bits(xu, ch);
  };
  uint32_t nsu[kLs * 4];
#pragma unroll
  for (int m = 0; m < kLs * 4; ++m) nsu[m] = sizeof(T) == 4 ? shifted(m) : (shifted(2 * m) | (shifted(2 * m + 1) << 16));
#pragma unroll
  for (int i = 0; i < kLs; ++i)
    reinterpret_cast<uint4*>(st)[i] = make_uint4(nsu[4 * i], nsu[4 * i + 1], nsu[4 * i + 2], nsu[4 * i + 3]);
  Vec<T, kV>::store(out, y);
}

}  // namespace conv1d
}  // namespace mamba_kernels
