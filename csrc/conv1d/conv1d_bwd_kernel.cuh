// Backward kernels of the causal depthwise conv1d (CUDA headers only). One pass over x and dy:
//   pre[t]  = bias + sum_i w[i] x[t - (w-1) + i]        (recomputed, never stored)
//   dpre[t] = dy[t] * act'(pre[t])
//   dx[t]   = sum_i w[i] dpre[t + (w-1) - i]  (+ dfinal_states for the last w-1 positions of a sequence)
//   dw[i]  += dpre[t] x[t - (w-1) + i],  dbias += dpre[t]
// dweight / dbias leave the kernel as fp32 partial sums, one row per warp segment (channel-first) or per
// block (channel-last), reduced by the caller in a fixed order: deterministic, no atomics.
// Tiling and width buckets as in conv1d_fwd_kernel.cuh. Like the forward, these kernels treat a varlen row
// as one sequence and know nothing of dfinal_states: conv1d_bwd_fix_kernel (conv1d_states_kernel.cuh) then
// overwrites dx at the first and last w-1 positions of each sequence, adds per-sequence correction rows to
// the dweight / dbias partials (varlen: the first w-1 positions saw the previous sequence's inputs instead
// of the initial state) and computes dinitial_states.
#pragma once
#include "conv1d/conv1d_bwd_math.cuh"
#include "conv1d/conv1d_fwd_kernel.cuh"

namespace mamba_kernels {
namespace conv1d {

namespace bwd_cl {
constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
// Channels per lane: 2 (4-byte loads for 16-bit types, 8-byte for fp32; a warp still moves whole 128-byte
// lines per step). Per channel a lane keeps weights, two windows and the weight gradients (~4 kW registers),
// so 2 channels leave room for deep load groups at a moderate register count.
template <typename T, int kW> constexpr int channels() { return 2; }
// Time steps per load group (x and dy): 64 bytes per lane in the width-4 bucket (32 in the width-8 one), the
// next group in flight while the current one is computed.
template <typename T, int kW> constexpr int group() {  // knob MK_CONV1D_BWD_CL_GROUP
  return (sizeof(T) == 2 ? MK_CONV1D_BWD_CL_GROUP : (MK_CONV1D_BWD_CL_GROUP + 1) / 2) / (kW <= 4 ? 1 : 2);
}
// Width-4 bucket: at most 128 registers (4 blocks, 16 warps per SM; ptxas -v: 112, no spills; a cap of 5
// blocks spills ~50 bytes).
template <int kW> constexpr int min_blocks() { return kW <= 4 ? MK_CONV1D_BWD_CL_MIN_BLOCKS : 1; }
}  // namespace bwd_cl

// ------------------------------------------------------------------------------------------ channel-first
// Segments of fwd_cf::seg_chunks chunks (one dweight / dbias partial row each), a persistent grid of about one
// wave whose warps do equal numbers of segments; load groups of bwd_group<T>() chunks of x and dy (64 bytes
// per lane), processed last to first with the previous group's loads in flight. Lane 31 gets the dpre after
// its positions from lane 0 of the chunk done just before (the segment's last chunk: from lanes 0..H-1
// computing one position each from scratch). Lane 0 gets the inputs before its positions from lane 31 of the
// chunk below (same group), or, for a group's first chunk, from H scalars it loads with the group.
template <typename T, int kW>
__device__ __forceinline__ void bwd_cf_segment(const Conv1dParams& p, bool x_vec, bool dy_vec, bool dx_vec,
                                               int64_t row, int64_t seg, int sc, int lane) {
  using namespace fwd_cf;
  constexpr int G = bwd_group<T>();
  constexpr int H = kW - 1;
  const int64_t b = row / p.dim, c = row - b * p.dim;
  const int64_t L = p.seqlen;
  const int width = static_cast<int>(p.width);
  const int pad = kW - width;
  const T* __restrict__ x = static_cast<const T*>(p.x) + b * p.x_batch_stride + c * p.x_c_stride;
  const T* __restrict__ dy = static_cast<const T*>(p.dy) + b * p.dy_batch_stride + c * p.dy_c_stride;
  T* __restrict__ dx = static_cast<T*>(p.dx) + b * p.dx_batch_stride + c * p.dx_c_stride;

  float w[kW];
  load_weights<kW>(p, c, pad, w);
  const float bias = load_bias(p, c);

  const int64_t seg0 = seg * sc * kChunkLen;
  const int64_t seg_len = L - seg0 < int64_t(sc) * kChunkLen ? L - seg0 : int64_t(sc) * kChunkLen;
  // Offsets inside the segment are 32-bit (seqlen < 2^31, checked on the host): fewer live 64-bit values.
  const int len = static_cast<int>(seg_len);
  const int ngroups = (len + G * kChunkLen - 1) / (G * kChunkLen);
  const T* __restrict__ xs = x + seg0;
  const T* __restrict__ gs = dy + seg0;
  T* __restrict__ dxs = dx + seg0;
  auto load_group = [&](int g, Raw<T, kN> (&xd)[G], Raw<T, kN> (&gd)[G], float (&hd)[H]) {
    const bool valid = g >= 0 && g < ngroups;
#pragma unroll
    for (int s = 0; s < G; ++s) {
      const int o = (g * G + s) * kChunkLen + lane * kN;
      const int nv = valid ? len - o : 0;
      load_raw<T, kN>(xs + o, nv, x_vec, xd[s]);
      load_raw<T, kN>(gs + o, nv, dy_vec, gd[s]);
    }
    // Inputs before the group (lane 0); before position 0 the initial state (zeros with varlen).
    cf_left_halo<T, H>(p, x, b, c, seg0 + static_cast<int64_t>(g) * G * kChunkLen, width, valid && lane == 0, hd);
  };
  Raw<T, kN> cx[G], cg[G], nx[G], ng[G];  // current group (g) and the one in flight (g - 1)
  float ch[H], nh[H];
  load_group(ngroups - 1, cx, cg, ch);
  float carry[H];  // dpre at the H positions after the current chunk
  {
    const int64_t q = seg0 + int64_t(sc) * kChunkLen + lane;  // first positions of the next segment
    float dq = 0.f;
    if (lane < H && q < L) {
      float z = bias;
#pragma unroll
      for (int i = 0; i < kW; ++i)
        if (i >= pad) z = fmaf(w[i], to_f(x[q - H + i]), z);
      const float gq = to_f(dy[q]);
      dq = p.silu ? gq * dsilu_f(z) : gq;
    }
#pragma unroll
    for (int j = 0; j < H; ++j) carry[j] = __shfl_sync(kFullMask, dq, j);
  }

  float dw[kW], db = 0.f;
#pragma unroll
  for (int i = 0; i < kW; ++i) dw[i] = 0.f;

#pragma unroll 1
  for (int g = ngroups - 1; g >= 0; --g) {
    load_group(g - 1, nx, ng, nh);  // in flight while group g is computed
    constexpr int kLines = G * kChunkLen * int(sizeof(T)) / 128;  // per tensor and group
    static_assert(2 * kLines <= 32, "one prefetched line per lane");
    if ((MK_CONV1D_BWD_CF_PF & 1) != 0 && g >= 2 && lane < 2 * kLines) {  // group g - 2 of x and dy into L2
      const int pf = (g - 2) * G * kChunkLen + (lane % kLines) * (128 / int(sizeof(T)));
      prefetch_l2(lane < kLines ? xs + pf : gs + pf);
    }
#pragma unroll
    for (int s = G - 1; s >= 0; --s) {
      const int c0 = (g * G + s) * kChunkLen;
      if (c0 >= len) continue;  // warp-uniform (only in the row's last group)
      const int t0 = c0 + lane * kN;
      float xc[kN], gc[kN];
#pragma unroll
      for (int e = 0; e < kN; ++e) { xc[e] = to_f(cx[s].e[e]); gc[e] = to_f(cg[s].e[e]); }
      float prev[H];
#pragma unroll
      for (int j = 0; j < H; ++j) {
        const float up = __shfl_up_sync(kFullMask, xc[kN - H + j], 1);
        float below = ch[j];
        if (s > 0) below = __shfl_sync(kFullMask, to_f(cx[s > 0 ? s - 1 : 0].e[kN - H + j]), 31);
        prev[j] = lane == 0 ? below : up;
      }
      float dp[kN], nxt[H], dxo[kN];
      cf_dpre<kW, kN>(w, pad, bias, p.silu, prev, xc, gc, dp, dw, db);
      cf_next_dpre<kW, kN>(dp, carry, lane, nxt);  // lane 31: the chunk done before (carry)
      cf_dx<kW, kN>(w, pad, dp, nxt, dxo);
      if (t0 < len) store_n<T, kN>(dxs + t0, 1, len - t0, dx_vec, dxo);
    }
#pragma unroll
    for (int s = 0; s < G; ++s) { cx[s] = nx[s]; cg[s] = ng[s]; }
#pragma unroll
    for (int j = 0; j < H; ++j) ch[j] = nh[j];
  }

  cf_write_partials<kW>(p, dw, db, b * num_segs(L, sc) + seg, c, pad, width, lane);  // one partial row per segment
}

template <typename T, int kW>
__global__ void __launch_bounds__(fwd_cf::kThreads, fwd_cf::bwd_min_blocks<T, kW>())
    conv1d_bwd_cf_kernel(Conv1dParams p, bool x_vec, bool dy_vec, bool dx_vec, int sc, int64_t per_warp) {
  using namespace fwd_cf;
  const int lane = threadIdx.x & 31;
  const int64_t nseg = num_segs(p.seqlen, sc);
  const int64_t total = p.batch * p.dim * nseg;
  const int64_t gw = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  // Persistent grid: warp gw does segments [gw * per_warp, (gw + 1) * per_warp), in (row, segment) order.
  const int64_t end = (gw + 1) * per_warp < total ? (gw + 1) * per_warp : total;
  for (int64_t i = gw * per_warp; i < end; ++i) {  // warp-uniform
    const int64_t row = i / nseg, seg = i - row * nseg;
    if ((MK_CONV1D_BWD_CF_PF & 2) != 0 && i + 1 < end) {  // the next segment's last two groups (where it starts) of x and dy into L2
      const int64_t nrow = (i + 1) / nseg, nsg = i + 1 - nrow * nseg;
      const int64_t nb = nrow / p.dim, nc = nrow - nb * p.dim;
      const int64_t s0 = nsg * sc * kChunkLen;
      const int64_t se = s0 + int64_t(sc) * kChunkLen < p.seqlen ? s0 + int64_t(sc) * kChunkLen : p.seqlen;
      constexpr int64_t kSpan = 2 * bwd_group<T>() * kChunkLen;  // 2 KB of each tensor: 16 lines
      const int64_t pos = (se - kSpan > s0 ? se - kSpan : s0) + (lane & 15) * (128 / int(sizeof(T)));
      if (pos < se)
        prefetch_l2(lane < 16 ? static_cast<const T*>(p.x) + nb * p.x_batch_stride + nc * p.x_c_stride + pos
                              : static_cast<const T*>(p.dy) + nb * p.dy_batch_stride + nc * p.dy_c_stride + pos);
    }
    bwd_cf_segment<T, kW>(p, x_vec, dy_vec, dx_vec, row, seg, sc, lane);
  }
}

// ------------------------------------------------------------------------------------------ channel-last
// Forward sweep over the tile with the dx output delayed by kW-1 steps: at step t the lane has dpre for
// t-(kW-1) .. t, which is all dx[t-(kW-1)] needs. Steps run to te + kW - 2 (re-reading the next tile's first
// kW-1 inputs from L2) so every dx of the tile is emitted; steps at t >= L read zeros (dpre 0). Tile length
// from cl_tile_len (whole waves), loads in groups of group<T, kW>() steps with the next group in flight.
template <typename T, int kW>
__device__ __forceinline__ void bwd_cl_tile(const Conv1dParams& p, bool x_vec, bool dy_vec, bool dx_vec, int64_t b,
                                            int64_t c0, int64_t tb, int64_t te, float (&dw)[bwd_cl::channels<T, kW>()][kW],
                                            float (&db)[bwd_cl::channels<T, kW>()]) {
  using namespace bwd_cl;
  constexpr int C = channels<T, kW>();
  constexpr int U = group<T, kW>();
  constexpr int H = kW - 1;
  const int64_t L = p.seqlen;
  const int width = static_cast<int>(p.width);
  const int pad = kW - width;
  const int nc = static_cast<int>(p.dim - c0 < C ? p.dim - c0 : C);
  const bool varlen = p.cu_seqlens != nullptr;
  const T* __restrict__ x = static_cast<const T*>(p.x) + b * p.x_batch_stride + c0;
  const T* __restrict__ dy = static_cast<const T*>(p.dy) + b * p.dy_batch_stride + c0;
  T* __restrict__ dx = static_cast<T*>(p.dx) + b * p.dx_batch_stride + c0;
  const int64_t xls = p.x_l_stride, dyls = p.dy_l_stride, dxls = p.dx_l_stride;
  // Step counts relative to tb, 32-bit (a tile has at most 1024 steps): n in the tile, n + H swept, nr read
  // (later steps are zeros).
  const int n = static_cast<int>(te - tb);
  const int nr = static_cast<int>((te + H < L ? te + H : L) - tb);

  const T* xg = x + tb * xls;
  const T* gg = dy + tb * dyls;
  const int lane = threadIdx.x & 31;
  auto load_group = [&](int k, Raw<T, C> (&rx)[U], Raw<T, C> (&rg)[U]) {  // steps k .. k + U - 1
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int m = k + u < nr ? nc : 0;
      load_raw<T, C>(xg + u * xls, m, x_vec, rx[u]);
      load_raw<T, C>(gg + u * dyls, m, dy_vec, rg[u]);
    }
    xg += U * xls;
    gg += U * dyls;
  };
  Raw<T, C> cx[U], cg[U], nx[U], ng[U];
  load_group(0, cx, cg);

  float w[C][kW], bias[C];
#pragma unroll
  for (int ch = 0; ch < C; ++ch) {
    const int64_t cc = ch < nc ? c0 + ch : c0;  // lanes past the end reuse a valid channel (never stored)
    load_weights<kW>(p, cc, pad, w[ch]);
    bias[ch] = load_bias(p, cc);
  }
  float xw[H][C], dpw[H][C];  // inputs / dpre at t - H .. t - 1
#pragma unroll
  for (int j = 0; j < H; ++j) {
    const int64_t pos = tb - H + j;
#pragma unroll
    for (int ch = 0; ch < C; ++ch) dpw[j][ch] = 0.f;
    if (pos >= 0) {
      Raw<T, C> r;
      load_raw<T, C>(x + pos * xls, nc, x_vec, r);
#pragma unroll
      for (int ch = 0; ch < C; ++ch) xw[j][ch] = to_f(r.e[ch]);
    } else {
#pragma unroll
      for (int ch = 0; ch < C; ++ch)
        xw[j][ch] = (!varlen && ch < nc && pos + width - 1 >= 0) ? init_at<T>(p, b, c0 + ch, pos + width - 1) : 0.f;
    }
  }

  T* dxt = dx + (tb - H) * dxls;  // dx row of step k - H
#pragma unroll 1
  for (int k = 0; k < n + H; k += U) {
    load_group(k + U, nx, ng);  // in flight while this group is computed (xg, gg now at step k + 2U)
    {  // steps k + 2U .. k + 3U - 1 of x and dy into L2 (kLPS lines per step and tensor)
      constexpr int kLPS = 32 * C * int(sizeof(T)) / 128;
      const int half = U * kLPS;  // lanes [0, half): x, [half, 2 half): dy
      const int l = lane < half ? lane : lane - half;
      const int up = l / kLPS;  // step k + 2U + up
      const int cp = (l % kLPS) * (128 / int(sizeof(T))) - lane * C;  // from this lane's channel c0
      if (lane < 2 * half && k + 2 * U + up < nr && c0 + cp < p.dim)
        prefetch_l2(lane < half ? xg + up * xls + cp : gg + up * dyls + cp);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int ku = k + u;
      if (ku < n + H) {
        float xt[C], dp[C];
#pragma unroll
        for (int ch = 0; ch < C; ++ch) {
          xt[ch] = raw_f(cx[u], ch);
          float z = bias[ch];
#pragma unroll
          for (int i = 0; i < kW; ++i)
            if (i >= pad) z = fmaf(w[ch][i], i < H ? xw[i][ch] : xt[ch], z);
          const float g = raw_f(cg[u], ch);
          dp[ch] = p.silu ? g * dsilu_f(z) : g;
        }
        if (ku < n) {
#pragma unroll
          for (int ch = 0; ch < C; ++ch) {
#pragma unroll
            for (int i = 0; i < kW; ++i)
              if (i >= pad) dw[ch][i] = fmaf(dp[ch], i < H ? xw[i][ch] : xt[ch], dw[ch][i]);
            db[ch] += dp[ch];
          }
        }
        if (ku >= H) {  // dx[tb + ku - H] = sum_i w[i] dpre[tb + ku - i]
          float out[C];
#pragma unroll
          for (int ch = 0; ch < C; ++ch) {
            float acc = 0.f;
#pragma unroll
            for (int i = 0; i < kW; ++i)
              if (i >= pad) acc = fmaf(w[ch][i], i == 0 ? dp[ch] : dpw[H - i][ch], acc);
            out[ch] = acc;
          }
          store_n<T, C>(dxt + u * dxls, 1, nc, dx_vec, out);
        }
#pragma unroll
        for (int j = 0; j + 1 < H; ++j) {
#pragma unroll
          for (int ch = 0; ch < C; ++ch) { xw[j][ch] = xw[j + 1][ch]; dpw[j][ch] = dpw[j + 1][ch]; }
        }
#pragma unroll
        for (int ch = 0; ch < C; ++ch) { xw[H - 1][ch] = xt[ch]; dpw[H - 1][ch] = dp[ch]; }
      }
    }
    dxt += U * dxls;
#pragma unroll
    for (int u = 0; u < U; ++u) { cx[u] = nx[u]; cg[u] = ng[u]; }
  }
}

template <typename T, int kW>
__global__ void __launch_bounds__(bwd_cl::kThreads, bwd_cl::min_blocks<kW>())
    conv1d_bwd_cl_kernel(Conv1dParams p, bool x_vec, bool dy_vec, bool dx_vec, int64_t tl) {
  using namespace bwd_cl;
  constexpr int C = channels<T, kW>();
  __shared__ float red[kWarps][C * (kW + 1)][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t tb = (static_cast<int64_t>(blockIdx.x) * kWarps + warp) * tl;
  const int64_t c0 = (static_cast<int64_t>(blockIdx.y) * 32 + lane) * C;
  const int64_t b = blockIdx.z;
  float dw[C][kW], db[C];
#pragma unroll
  for (int ch = 0; ch < C; ++ch) {
    db[ch] = 0.f;
#pragma unroll
    for (int i = 0; i < kW; ++i) dw[ch][i] = 0.f;
  }
  // No early return: every thread reaches the barrier below (inactive lanes contribute zeros).
  if (tb < p.seqlen && c0 < p.dim) {
    const int64_t te = tb + tl < p.seqlen ? tb + tl : p.seqlen;
    bwd_cl_tile<T, kW>(p, x_vec, dy_vec, dx_vec, b, c0, tb, te, dw, db);
  }
#pragma unroll
  for (int ch = 0; ch < C; ++ch) {
#pragma unroll
    for (int i = 0; i < kW; ++i) red[warp][ch * (kW + 1) + i][lane] = dw[ch][i];
    red[warp][ch * (kW + 1) + kW][lane] = db[ch];
  }
  __syncthreads();
  if (warp == 0 && c0 < p.dim) {
    const int width = static_cast<int>(p.width);
    const int pad = kW - width;
    const int64_t pidx = b * gridDim.x + blockIdx.x;
#pragma unroll
    for (int ch = 0; ch < C; ++ch) {
      const int64_t c = c0 + ch;
      if (c < p.dim) {
#pragma unroll
        for (int i = 0; i < kW; ++i) {
          float acc = 0.f;
#pragma unroll
          for (int wp = 0; wp < kWarps; ++wp) acc += red[wp][ch * (kW + 1) + i][lane];
          if (i >= pad) p.dweight_partial[(pidx * p.dim + c) * width + (i - pad)] = acc;
        }
        if (p.dbias_partial) {
          float acc = 0.f;
#pragma unroll
          for (int wp = 0; wp < kWarps; ++wp) acc += red[wp][ch * (kW + 1) + kW][lane];
          p.dbias_partial[pidx * p.dim + c] = acc;
        }
      }
    }
  }
}

}  // namespace conv1d
}  // namespace mamba_kernels
