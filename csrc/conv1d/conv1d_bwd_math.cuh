// Per-lane arithmetic of the channel-first backward kernels (conv1d_bwd_kernel.cuh, conv1d_bwd_flat_kernel.cuh),
// CUDA headers only. A lane owns kN consecutive positions t0 .. t0 + kN - 1 of a row; H = kW - 1; taps i < pad of
// the width bucket are absent:
//   pre[t] = bias + sum_i w[i] x[t - H + i] (recomputed), dpre[t] = dy[t] act'(pre[t]),
//   dw[i] += dpre[t] x[t - H + i], db += dpre[t], dx[t] = sum_i w[i] dpre[t + H - i].
#pragma once
#include "conv1d/conv1d_common.cuh"

namespace mamba_kernels {
namespace conv1d {

// dpre of the lane's positions from its window [prev (the H inputs before t0) | xc] and dy (gc); accumulates the
// weight and bias gradients.
template <int kW, int kN>
__device__ __forceinline__ void cf_dpre(const float (&w)[kW], int pad, float bias, bool silu,
                                        const float (&prev)[kW - 1], const float (&xc)[kN], const float (&gc)[kN],
                                        float (&dp)[kN], float (&dw)[kW], float& db) {
  constexpr int H = kW - 1;
#pragma unroll
  for (int e = 0; e < kN; ++e) {
    const float z = cf_pre<kW, kN>(w, pad, bias, prev, xc, e);
    dp[e] = silu ? gc[e] * dsilu_f(z) : gc[e];
#pragma unroll
    for (int i = 0; i < kW; ++i) {
      const int q = e + i;
      if (i >= pad) dw[i] = fmaf(dp[e], q < H ? prev[q] : xc[q - H], dw[i]);
    }
    db += dp[e];
  }
}

// dpre at the H positions after the lane's: from lane + 1, lane 31 from `carry` (lane 0's head of the chunk done
// before). One rotation per value: lane 31 receives lane 0's head of this chunk, which it needs in the chunk done
// next (only lane 31's carry is ever used).
template <int kW, int kN>
__device__ __forceinline__ void cf_next_dpre(const float (&dp)[kN], float (&carry)[kW - 1], int lane,
                                             float (&nxt)[kW - 1]) {
#pragma unroll
  for (int j = 0; j < kW - 1; ++j) {
    const float rot = __shfl_sync(kFullMask, dp[j], (lane + 1) & 31);
    nxt[j] = lane == 31 ? carry[j] : rot;
    carry[j] = rot;
  }
}

// dx of the lane's positions from dpre on [t0, t0 + kN + H): its own (dp) and the H after (nxt).
template <int kW, int kN>
__device__ __forceinline__ void cf_dx(const float (&w)[kW], int pad, const float (&dp)[kN], const float (&nxt)[kW - 1],
                                      float (&dxo)[kN]) {
  constexpr int H = kW - 1;
#pragma unroll
  for (int e = 0; e < kN; ++e) {
    float acc = 0.f;
#pragma unroll
    for (int i = 0; i < kW; ++i) {
      const int m = e + H - i;
      if (i >= pad) acc = fmaf(w[i], m < kN ? dp[m] : nxt[m - kN], acc);
    }
    dxo[e] = acc;
  }
}

// Warp sums of a lane's weight / bias gradients, written by lane 0 as partial row pidx of channel c (layout
// (npartial, dim, width); the caller reduces the rows in a fixed order). All 32 lanes must call.
template <int kW>
__device__ __forceinline__ void cf_write_partials(const Conv1dParams& p, float (&dw)[kW], float db, int64_t pidx,
                                                  int64_t c, int pad, int width, int lane) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
#pragma unroll
    for (int i = 0; i < kW; ++i) dw[i] += __shfl_xor_sync(kFullMask, dw[i], off);
    db += __shfl_xor_sync(kFullMask, db, off);
  }
  if (lane == 0) {
#pragma unroll
    for (int i = 0; i < kW; ++i)
      if (i >= pad) p.dweight_partial[(pidx * p.dim + c) * width + (i - pad)] = dw[i];
    if (p.dbias_partial) p.dbias_partial[pidx * p.dim + c] = db;
  }
}

}  // namespace conv1d
}  // namespace mamba_kernels
