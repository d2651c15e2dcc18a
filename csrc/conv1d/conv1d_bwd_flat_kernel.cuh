// Channel-first backward, "flat" variant (CUDA headers only; selected by MK_CONV1D_BWD_CF_IMPL=1, see the knob
// block in conv1d_common.cuh). Same math and contract as conv1d_bwd_cf_kernel (conv1d_bwd_kernel.cuh):
//   pre[t] = bias + sum_i w[i] x[t-H+i] (recomputed), dpre[t] = dy[t] act'(pre[t]),
//   dx[t] = sum_i w[i] dpre[t+H-i], dw[i] += dpre[t] x[t-H+i], dbias += dpre[t]   (H = kW - 1)
// with a varlen row treated as one sequence and dfinal_states ignored: conv1d_bwd_fix_kernel then redoes the
// first / last w-1 positions of each sequence, adds the varlen correction rows and computes dinitial_states.
//
// A big non-persistent grid, like conv1d_fwd_flat_kernel: every warp owns one tile of G chunks of 256 positions
// of one (b, c) row; each lane issues its G 16-byte loads of x and G of dy (positions s*256 + lane*8 .. +7 of
// chunk s) up front as independent loads, plus the halos:
//   left  (x before the tile, for the pre-activations): H scalar loads by lane 0 (before position 0: the
//         initial state; zeros with varlen);
//   right (dpre at the H positions after the tile, for dx): lanes 0..H-1 compute one each from scratch
//         (kW scalar loads of x and one of dy, which the next tile's warp reads from HBM anyway).
// Chunks are then computed last to first, all data in registers: lane l gets the inputs before its 8 positions
// from lane l-1 of the same chunk, lane 0 from lane 31 of chunk s-1 (one shuffle per value: lane 31 sends its
// tail of chunk s-1, which nobody in chunk s needs), and the dpre after them from lane l+1, lane 31 from lane 0
// of chunk s+1 (one rotation per value, as in the persistent kernel). dx leaves as 16-byte stores.
// dweight / dbias: fp32 per-lane sums reduced over the warp by shuffles, one partial row per tile
// (pidx = b * tiles_per_row + tile, layout (npartial, dim, width)); the caller reduces rows in a fixed order.
#pragma once
#include "conv1d/conv1d_bwd_math.cuh"
#include "conv1d/conv1d_fwd_kernel.cuh"

namespace mamba_kernels {
namespace conv1d {

struct bwd_flat : FlatTiling<MK_CONV1D_BWD_FLAT_G> {  // chunks<T>(): of x and of dy each
  // Width-4 bucket: min blocks/SM (knob MK_CONV1D_BWD_FLAT_MIN_BLOCKS); width-8 bucket uncapped.
  template <int kW> static constexpr int min_blocks() { return kW <= 4 ? MK_CONV1D_BWD_FLAT_MIN_BLOCKS : 1; }
};

// kSilu: the activation; kFull: width == kW (no absent taps: pad is the constant 0, no predicated FMAs).
template <typename T, int kW, bool kSilu, bool kFull>
__global__ void __launch_bounds__(bwd_flat::kThreads, bwd_flat::min_blocks<kW>())
    conv1d_bwd_flat_kernel(Conv1dParams p, bool x_vec, bool dy_vec, bool dx_vec, int64_t tiles_per_row) {
  using fwd_cf::kChunkLen;
  using fwd_cf::kN;
  constexpr int G = bwd_flat::chunks<T>();
  constexpr int H = kW - 1;
  constexpr int kTL = G * kChunkLen;
  const int lane = threadIdx.x & 31;
  const int64_t gw = static_cast<int64_t>(blockIdx.x) * bwd_flat::kWarps + (threadIdx.x >> 5);
  const int64_t row = gw / tiles_per_row;
  if (row >= p.batch * p.dim) return;  // warp-uniform: the shuffles below see full warps
  const int64_t tile = gw - row * tiles_per_row;
  const int64_t b = row / p.dim, c = row - b * p.dim;
  const int64_t L = p.seqlen;
  const int64_t t0 = tile * kTL;
  // Offsets inside the tile are 32-bit (seqlen < 2^31, checked on the host).
  const int len = static_cast<int>(L - t0 < kTL ? L - t0 : kTL);
  const int width = static_cast<int>(p.width);
  const int pad = kFull ? 0 : kW - width;
  const T* __restrict__ x = static_cast<const T*>(p.x) + b * p.x_batch_stride + c * p.x_c_stride;
  const T* __restrict__ dy = static_cast<const T*>(p.dy) + b * p.dy_batch_stride + c * p.dy_c_stride;
  const T* __restrict__ xs = x + t0;
  const T* __restrict__ gs = dy + t0;
  T* __restrict__ dxs = static_cast<T*>(p.dx) + b * p.dx_batch_stride + c * p.dx_c_stride + t0;

  // Weight and bias first: issued after the 2G x / dy loads they cost 35 us more at b4 d6144 l4096 with 16-bit
  // weights (228 vs 190 us; fp32 weights 193 either way; bench/notes/causal_conv1d.md).
  float w[kW];
  load_weights<kW>(p, c, pad, w);
  const float bias = load_bias(p, c);
  // ---- All loads up front: G chunks of x and of dy, then the halos (independent of each other).
  Raw<T, kN> rx[G], rg[G];
#pragma unroll
  for (int s = 0; s < G; ++s) {
    const int o = s * kChunkLen + lane * kN;
    load_raw<T, kN>(xs + o, len - o, x_vec, rx[s]);
    load_raw<T, kN>(gs + o, len - o, dy_vec, rg[s]);
  }
  float lh[H];  // lane 0: the H inputs before the tile
  cf_left_halo<T, H>(p, x, b, c, t0, width, lane == 0, lh);
  // Right halo: lane j < H takes position q = t0 + kTL + j (after the tile; only exists when the tile is full).
  const int64_t q = t0 + kTL + lane;
  const bool qv = lane < H && q < L;
  float rxh[kW], rgh = 0.f;
#pragma unroll
  for (int i = 0; i < kW; ++i) rxh[i] = (qv && i >= pad) ? to_f(x[q - H + i]) : 0.f;
  if (qv) rgh = to_f(dy[q]);

  float carry[H];  // lane 31: dpre at the H positions after its 8 (of the chunk done before: s + 1)
  {
    float z = bias;
#pragma unroll
    for (int i = 0; i < kW; ++i)
      if (i >= pad) z = fmaf(w[i], rxh[i], z);
    const float dq = qv ? (kSilu ? rgh * dsilu_f(z) : rgh) : 0.f;
#pragma unroll
    for (int j = 0; j < H; ++j) carry[j] = __shfl_sync(kFullMask, dq, j);
  }

  float dw[kW], db = 0.f;
#pragma unroll
  for (int i = 0; i < kW; ++i) dw[i] = 0.f;

#pragma unroll
  for (int s = G - 1; s >= 0; --s) {
    // Chunks past the row's end (only in its last tile) are computed too, on the zeros load_raw gave them (dpre
    // 0 there: no dx, dw or db contribution; their dx is not stored). Skipping them with a `continue` costs more:
    // the compiler cannot tell that it is warp-uniform and wraps every shuffle after it in a WARPSYNC /
    // collective loop (49 of them, ~1.5x the instructions a position).
    const int c0 = s * kChunkLen;
    float xc[kN], gc[kN];
#pragma unroll
    for (int e = 0; e < kN; ++e) { xc[e] = raw_f(rx[s], e); gc[e] = raw_f(rg[s], e); }
    float prev[H];  // inputs at the H positions before this lane's 8
#pragma unroll
    for (int j = 0; j < H; ++j) {
      float v = xc[kN - H + j];
      if (s > 0 && lane == 31) v = to_f(rx[s > 0 ? s - 1 : 0].e[kN - H + j]);
      const float rot = __shfl_sync(kFullMask, v, (lane + 31) & 31);
      prev[j] = lane != 0 ? rot : (s > 0 ? rot : lh[j]);
    }
    float dp[kN], nxt[H], dxo[kN];
    cf_dpre<kW, kN>(w, pad, bias, kSilu, prev, xc, gc, dp, dw, db);
    cf_next_dpre<kW, kN>(dp, carry, lane, nxt);  // lane 31: lane 0 of chunk s + 1 (carry)
    cf_dx<kW, kN>(w, pad, dp, nxt, dxo);
    const int o = c0 + lane * kN;
    if (o < len) store_n<T, kN>(dxs + o, 1, len - o, dx_vec, dxo);
  }

  cf_write_partials<kW>(p, dw, db, b * tiles_per_row + tile, c, pad, width, lane);  // one partial row per tile
}

}  // namespace conv1d
}  // namespace mamba_kernels
