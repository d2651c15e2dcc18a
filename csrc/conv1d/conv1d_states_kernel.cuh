// Per-(sequence, channel) fix-up kernels that run after the tiled conv1d kernels (CUDA headers only; runtime
// width and dtype, any layout, one thread per (sequence, channel), work ~ nseq * d * w^2, scalar loads).
//
// The tiled kernels treat a varlen row as one sequence and ignore dfinal_states; what that gets wrong is
// confined to the first and last w-1 positions of each sequence, which these kernels redo exactly:
//   conv1d_fwd_fix_kernel   varlen: y at the first w-1 positions of each sequence (the window there reaches
//                           into the previous sequence instead of this sequence's initial state);
//                           final_states[n, c, j] = xe(e_n - (w-1) + j).
//   conv1d_bwd_fix_kernel   dx at the first (varlen) and last (varlen or dfinal_states) w-1 positions;
//                           varlen: one correction row per sequence in the dweight / dbias partials
//                           (true minus tiled contribution of the first w-1 positions); dinitial_states.
// conv1d_reduce_partials_kernel sums the backward's dweight / dbias partial rows.
// Empty sequences and sequences shorter than w-1 (whose final state still holds part of the initial state)
// are covered here too. Heads and tails of different sequences never overlap, so threads never write the
// same element; head and tail of one short sequence are written by the same thread with equal values.
#pragma once
#include "conv1d/conv1d_fwd_kernel.cuh"

namespace mamba_kernels {
namespace conv1d {

constexpr int kFixThreads = 128;

__global__ void __launch_bounds__(kFixThreads) conv1d_fwd_fix_kernel(Conv1dParams p) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * kFixThreads + threadIdx.x;
  if (idx >= p.nseq * p.dim) return;
  const int64_t c = idx % p.dim, n = idx / p.dim;
  const int64_t H = p.width - 1;
  int64_t b, s, e;
  seq_bounds(p, n, b, s, e);
  if (p.cu_seqlens) {
    for (int64_t t = s; t < e && t < s + H; ++t) {
      const float z = pre_any(p, b, n, c, s, t);
      store_any(p.y, p.x_dtype, b * p.y_batch_stride + c * p.y_c_stride + t * p.y_l_stride, p.silu ? silu_f(z) : z);
    }
  }
  if (p.final_states) {
    for (int64_t j = 0; j < H; ++j)
      store_any(p.final_states, p.x_dtype, n * p.final_n_stride + c * p.final_c_stride + j * p.final_w_stride,
                xe_any(p, b, n, c, s, e - H + j));
  }
}

// corr_row0: index of the first correction row in dweight_partial / dbias_partial (varlen only).
__global__ void __launch_bounds__(kFixThreads) conv1d_bwd_fix_kernel(Conv1dParams p, int64_t corr_row0) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * kFixThreads + threadIdx.x;
  if (idx >= p.nseq * p.dim) return;
  const int64_t c = idx % p.dim, n = idx / p.dim;
  const int W = static_cast<int>(p.width), H = W - 1;
  const bool varlen = p.cu_seqlens != nullptr;
  int64_t b, s, e;
  seq_bounds(p, n, b, s, e);
  const int64_t len = e - s;

  float w[kMaxWidth];
  for (int i = 0; i < W; ++i) w[i] = load_any(p.weight, p.w_dtype, c * p.w_c_stride + i * p.w_w_stride);
  const float bias = load_bias(p, c);
  auto dy_at = [&](int64_t t) {
    return load_any(p.dy, p.x_dtype, b * p.dy_batch_stride + c * p.dy_c_stride + t * p.dy_l_stride);
  };
  auto dpre_true = [&](int64_t t) {
    const float z = pre_any(p, b, n, c, s, t);
    const float g = dy_at(t);
    return p.silu ? g * dsilu_f(z) : g;
  };
  auto dfin_at = [&](int64_t jf) {
    return p.dfinal_states ? load_any(p.dfinal_states, p.x_dtype, n * p.dfinal_n_stride + c * p.dfinal_c_stride +
                                                                     jf * p.dfinal_w_stride)
                           : 0.f;
  };

  // True dpre at the head s .. s + 2H - 1 and the tail ts .. e - 1 of the sequence.
  float dph[2 * (kMaxWidth - 1)], dpt[kMaxWidth - 1];
  const int64_t nh = len < 2 * H ? len : 2 * H;
  for (int64_t m = 0; m < nh; ++m) dph[m] = dpre_true(s + m);
  const int64_t ts = e - H > s ? e - H : s;
  for (int64_t t = ts; t < e; ++t) dpt[t - ts] = t - s < nh ? dph[t - s] : dpre_true(t);

  // dx[t] = sum_i w[i] dpre[t + H - i] (inside the sequence) + dfinal[t - e + H] (last H positions).
  auto store_dx = [&](int64_t t, bool from_head) {
    float acc = 0.f;
    for (int i = 0; i < W; ++i) {
      const int64_t q = t + H - i;
      if (q < e) acc = fmaf(w[i], from_head ? dph[q - s] : dpt[q - ts], acc);
    }
    if (t >= e - H) acc += dfin_at(t - e + H);
    store_any(p.dx, p.x_dtype, b * p.dx_batch_stride + c * p.dx_c_stride + t * p.dx_l_stride, acc);
  };
  if (varlen)
    for (int64_t t = s; t < e && t < s + H; ++t) store_dx(t, true);
  if (varlen || p.dfinal_states)
    for (int64_t t = ts; t < e; ++t) store_dx(t, false);

  if (varlen) {
    // The tiled kernel used zeros before position 0 and the previous sequence's inputs after it.
    auto x_row = [&](int64_t pos) {
      return pos >= 0 ? load_any(p.x, p.x_dtype, c * p.x_c_stride + pos * p.x_l_stride) : 0.f;
    };
    float cw[kMaxWidth], cb = 0.f;
    for (int i = 0; i < W; ++i) cw[i] = 0.f;
    for (int64_t t = s; t < e && t < s + H; ++t) {
      float z_row = bias;
      for (int i = 0; i < W; ++i) z_row = fmaf(w[i], x_row(t - H + i), z_row);
      const float g = dy_at(t);
      const float dp_row = p.silu ? g * dsilu_f(z_row) : g;
      const float dp_true = dph[t - s];
      for (int i = 0; i < W; ++i)
        cw[i] += dp_true * xe_any(p, b, n, c, s, t - H + i) - dp_row * x_row(t - H + i);
      cb += dp_true - dp_row;
    }
    for (int i = 0; i < W; ++i) p.dweight_partial[((corr_row0 + n) * p.dim + c) * W + i] = cw[i];
    if (p.dbias_partial) p.dbias_partial[(corr_row0 + n) * p.dim + c] = cb;
  }

  if (p.dinitial_states) {
    // State entry j stands for position s - H + j; it feeds outputs s .. s + j through tap j - m.
    for (int j = 0; j < H; ++j) {
      float acc = 0.f;
      for (int64_t m = 0; m <= j && m < len; ++m) acc = fmaf(w[j - m], dph[m], acc);
      if (j >= len) acc += dfin_at(j - len);
      store_any(p.dinitial_states, p.x_dtype, n * p.dinit_n_stride + c * p.dinit_c_stride + j * p.dinit_w_stride,
                acc);
    }
  }
}

// dweight[c, i] = sum_r dweight_partial[r, c, i] and dbias[c] = sum_r dbias_partial[r, c], rows summed in a
// fixed order (deterministic), written in the parameters' own dtypes. One thread per (c, i) and per c.
__global__ void __launch_bounds__(256) conv1d_reduce_partials_kernel(Conv1dParams p, int64_t npartial) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nw = p.dim * p.width;
  if (idx < nw) {
    float acc = 0.f;
    for (int64_t r = 0; r < npartial; ++r) acc += p.dweight_partial[r * nw + idx];
    store_any(p.dweight, p.w_dtype, idx, acc);
  } else if (p.dbias && idx < nw + p.dim) {
    const int64_t c = idx - nw;
    float acc = 0.f;
    for (int64_t r = 0; r < npartial; ++r) acc += p.dbias_partial[r * p.dim + c];
    store_any(p.dbias, p.b_dtype, c, acc);
  }
}

}  // namespace conv1d
}  // namespace mamba_kernels
