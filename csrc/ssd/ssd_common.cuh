// Device pieces of the CUDA SSD forward kernels (no torch): the fused kernel (ssd_fwd_kernel.cuh) uses all of them;
// the chunk-parallel pipeline (ssd_chunk_kernel.cuh, 8-warp tile steps in ssd_chunk_tile.cuh) the conversions, mma
// wrappers, Frag, ldmatrix (ldsm_x4, ldsm_x4_trans, b_rows2) and TileType. Semantics and the fragment conventions:
// see the header comment of ssd_fwd_kernel.cuh. The conversions, mma wrappers, Frag, ldmatrix and zero16 live in
// ssd_mma.cuh (included). What lives here:
//   - the shared-memory tile layout of one 64-token tile (x, B, C, h, z, dt', in-tile cumsum),
//   - the three steps of a tile, used by every kernel that walks tiles:
//       load_tile    x / B / C / z of 64 tokens by 16-byte cp.async where rows allow (vec16, set by the launcher),
//                    else scalar loads; dt' and its in-tile cumsum (warps 0-1); ends with __syncthreads
//       tile_output  S = C B^T (causal, decay mask), Y = exp(a_t) C h^T + S x, + D x, ypre, * silu(z), store
//       tile_update  h = exp(a_last) h + (x o w)^T B in the mma accumulators (warp w: channels 16w..16w+15)
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/cp_async.h"
#include "common/smem_optin.h"
#include "ssd/ssd.h"
#include "ssd/ssd_mma.cuh"

namespace mamba_kernels {
namespace ssd_cuda {

constexpr int kTile = 64;     // tokens a tile
constexpr int kBP = 64;       // channels a CTA
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kNT = 16;       // n tiles of 8 held by a warp's state accumulator: n <= 128


// Chunk slot -> its sequence, batch row, first token and length. False for slots past the last chunk (varlen: the
// grid covers a bound on the number of chunks).
template <typename Params>  // SsdFwdCudaParams or SsdBwdCudaParams (the forward and backward chunk kernels)
__device__ __forceinline__ bool chunk_of_slot(const Params& p, int64_t slot, int64_t& row, int64_t& t0, int64_t& clen) {
  const int64_t Q = p.chunk_size;
  if (p.cu_seqlens) {
    if (slot >= p.chunk_offsets[p.nseq]) return false;
    int64_t lo = 0, hi = p.nseq - 1;  // the last sequence s with chunk_offsets[s] <= slot (skips empty ones)
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) >> 1;
      if (p.chunk_offsets[mid] <= slot) lo = mid; else hi = mid - 1;
    }
    row = 0;
    t0 = p.cu_seqlens[lo] + (slot - p.chunk_offsets[lo]) * Q;
    clen = p.cu_seqlens[lo + 1] - t0;
  } else {
    const int64_t nck = (p.seqlen + Q - 1) / Q;
    if (nck == 0 || slot >= p.batch * nck) return false;
    row = slot / nck;
    t0 = (slot % nck) * Q;
    clen = p.seqlen - t0;
  }
  if (clen > Q) clen = Q;
  return clen > 0;
}

// ------------------------------------------------------------------------------------------ shared memory
// Element type of the shared tiles: bf16 for bf16 inputs, fp32 otherwise.
template <typename in_t> struct TileType { using E = float; };
template <> struct TileType<__nv_bfloat16> { using E = __nv_bfloat16; };

struct SmemLayout {
  int ldx, ldn, nk;  // row lengths (elements) of the x / z tiles and of the B / C / h tiles; k16 steps over n
  int64_t off_b, off_f, off_c, off_h, off_z, bytes;  // byte offsets (all multiples of 16)
};

template <typename E>
__host__ __device__ inline SmemLayout smem_layout(int64_t n) {
  SmemLayout s;
  const int pad = 16 / int(sizeof(E));  // rows 16 bytes apart in banks: conflict-free fragment loads
  s.nk = int((n + 15) / 16);
  s.ldx = kBP + pad;
  s.ldn = 16 * s.nk + pad;
  const int64_t es = int64_t(sizeof(E));
  s.off_b = int64_t(kTile) * s.ldx * es;
  s.off_f = s.off_b + int64_t(kTile) * s.ldn * es;
  s.off_c = s.off_f + 2 * kTile * int64_t(sizeof(float));
  s.off_h = s.off_c + int64_t(kTile) * s.ldn * es;
  s.off_z = s.off_h + int64_t(kBP) * s.ldn * es;
  s.bytes = s.off_z + int64_t(kTile) * s.ldx * es;
  return s;
}

__device__ __forceinline__ float silu_f(float v) { return v / (1.f + expf(-v)); }



template <typename A, typename B> struct SameT { static constexpr bool value = false; };
template <typename A> struct SameT<A, A> { static constexpr bool value = true; };

// ------------------------------------------------------------------------------------------ one CTA's tile context
// Shared tiles of one 64-token tile and the CTA's fixed coordinates. Global bases point at (row, token 0,
// head / group, ch0); a tile's rows are t0 + t (t0: token index along the batch row / packed axis).
template <typename in_t>
struct TileCtx {
  using E = typename TileType<in_t>::E;
  E *xs, *bs, *cs, *hs, *zs;
  float *dts, *acum;  // dt' and the inclusive cumsum of dt' A within each half (32 tokens) of the tile
  int ldx, ldn, nk, n, nch, ch0;
  int64_t head;
  float A, bias;
  const in_t *xg, *bg, *cg, *zg;
};

// The per-(row, head, p block) fields every tile context has (the fused kernel's TileCtx, the chunk kernels' CCtx):
// n, channel block, head scalars and the x / B / C / z global row pointers.
template <typename in_t, typename Ctx>
__device__ __forceinline__ void set_head_fields(Ctx& c, const SsdFwdCudaParams& p, int64_t row, int64_t head, int ch0) {
  c.n = int(p.dstate);
  c.ch0 = ch0;
  c.nch = int(p.headdim - ch0 < kBP ? p.headdim - ch0 : kBP);
  c.head = head;
  c.A = p.A[head];
  c.bias = p.dt_bias ? p.dt_bias[head] : 0.f;
  const int64_t grp = head / (p.nheads / p.ngroups);
  c.xg = static_cast<const in_t*>(p.x) + row * p.x_batch_stride + head * p.x_head_stride + ch0;
  c.bg = static_cast<const in_t*>(p.B) + row * p.B_batch_stride + grp * p.B_group_stride;
  c.cg = static_cast<const in_t*>(p.C) + row * p.C_batch_stride + grp * p.C_group_stride;
  c.zg = p.z ? static_cast<const in_t*>(p.z) + row * p.z_batch_stride + head * p.z_head_stride + ch0 : nullptr;
}

template <typename in_t>
__device__ __forceinline__ TileCtx<in_t> make_ctx(const SsdFwdCudaParams& p, void* smem_v, int64_t row, int64_t head,
                                                  int ch0) {
  using E = typename TileType<in_t>::E;
  char* smem = static_cast<char*>(smem_v);
  const SmemLayout L = smem_layout<E>(p.dstate);
  TileCtx<in_t> c;
  c.xs = reinterpret_cast<E*>(smem);
  c.bs = reinterpret_cast<E*>(smem + L.off_b);
  c.cs = reinterpret_cast<E*>(smem + L.off_c);
  c.hs = reinterpret_cast<E*>(smem + L.off_h);
  c.zs = reinterpret_cast<E*>(smem + L.off_z);
  c.dts = reinterpret_cast<float*>(smem + L.off_f);
  c.acum = c.dts + kTile;
  c.ldx = L.ldx;
  c.ldn = L.ldn;
  c.nk = L.nk;
  set_head_fields<in_t>(c, p, row, head, ch0);
  return c;
}

// In-tile cumsum at token t (two 32-token halves).
template <typename in_t>
__device__ __forceinline__ float cum_at(const TileCtx<in_t>& c, int t) {
  return c.acum[t] + (t >= 32 ? c.acum[31] : 0.f);
}

// ------------------------------------------------------------------------------------------ load_tile
// x (and z) 64 tokens x 64 channels, B (and C) 64 tokens x 16 nk, zero past the tile length tl and past p / n;
// dt' and its cumsum (zero dt' past tl: decay 1, no input). Ends with __syncthreads: the tiles are ready.
template <typename in_t>
__device__ __forceinline__ void load_tile(const SsdFwdCudaParams& p, const TileCtx<in_t>& c, int64_t row, int64_t t0,
                                          int tl, bool need_c, bool need_z) {
  using E = typename TileType<in_t>::E;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int nfull = 16 * c.nk;
  bool done = false;
  if constexpr (SameT<in_t, E>::value) {
    if (p.vec16) {  // 16-byte rows: every global row start and p / n are multiples of 16 bytes (launcher)
      constexpr int VE = 16 / int(sizeof(E));
      constexpr int xc = kBP / VE;
      for (int i = tid; i < kTile * xc; i += kThreads) {
        const int t = i / xc, cc = (i % xc) * VE;
        const bool ok = t < tl && cc < c.nch;
        E* dx = c.xs + t * c.ldx + cc;
        if (ok) cp_async16(dx, c.xg + (t0 + t) * p.x_l_stride + cc); else zero16(dx);
        if (need_z) {
          E* dz = c.zs + t * c.ldx + cc;
          if (ok) cp_async16(dz, c.zg + (t0 + t) * p.z_l_stride + cc); else zero16(dz);
        }
      }
      const int bc = nfull / VE;
      for (int i = tid; i < kTile * bc; i += kThreads) {
        const int t = i / bc, cc = (i % bc) * VE;
        const bool ok = t < tl && cc < c.n;
        E* db = c.bs + t * c.ldn + cc;
        if (ok) cp_async16(db, c.bg + (t0 + t) * p.B_l_stride + cc); else zero16(db);
        if (need_c) {
          E* dc = c.cs + t * c.ldn + cc;
          if (ok) cp_async16(dc, c.cg + (t0 + t) * p.C_l_stride + cc); else zero16(dc);
        }
      }
      done = true;
    }
  }
  if (!done) {  // scalar loads (fp16 inputs into fp32 tiles, unaligned rows)
    for (int i = tid; i < kTile * kBP; i += kThreads) {
      const int t = i / kBP, cc = i % kBP;
      const bool ok = t < tl && cc < c.nch;
      c.xs[t * c.ldx + cc] = from_f<E>(ok ? to_f(c.xg[(t0 + t) * p.x_l_stride + cc]) : 0.f);
      if (need_z) c.zs[t * c.ldx + cc] = from_f<E>(ok ? to_f(c.zg[(t0 + t) * p.z_l_stride + cc]) : 0.f);
    }
    for (int i = tid; i < kTile * nfull; i += kThreads) {
      const int t = i / nfull, cc = i % nfull;
      const bool ok = t < tl && cc < c.n;
      c.bs[t * c.ldn + cc] = from_f<E>(ok ? to_f(c.bg[(t0 + t) * p.B_l_stride + cc]) : 0.f);
      if (need_c) c.cs[t * c.ldn + cc] = from_f<E>(ok ? to_f(c.cg[(t0 + t) * p.C_l_stride + cc]) : 0.f);
    }
  }
  // dt' and its cumsum (warps 0 and 1: tokens 32w + lane), while the copies fly
  if (warp < 2) {
    const int t = 32 * warp + lane;
    float d = 0.f;
    if (t < tl) {
      const int64_t o = row * p.dt_batch_stride + (t0 + t) * p.dt_l_stride + c.head * p.dt_head_stride;
      d = (p.dt_f32 ? static_cast<const float*>(p.dt)[o] : to_f(static_cast<const in_t*>(p.dt)[o])) + c.bias;
      if (p.dt_softplus) d = d <= 20.f ? log1pf(expf(d)) : d;
      if (p.has_dt_limit) d = fminf(fmaxf(d, p.dt_min), p.dt_max);
    }
    float a = d * c.A;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const float v = __shfl_up_sync(0xffffffffu, a, o);
      if (lane >= o) a += v;
    }
    c.dts[t] = d;
    c.acum[t] = a;
  }
  cp_async_wait_all();
  __syncthreads();
}

// ------------------------------------------------------------------------------------------ state <-> tiles
// The state accumulator: warp w's channels 16w + g (regs 0, 1) and 16w + g + 8 (regs 2, 3), columns 8j + 2q (+1).
// src: fp32 (rows of n floats from channel ch0 of the head; nullable: zero).
__device__ __forceinline__ void state_load(float (&hacc)[kNT][4], const float* src, int nch, int n) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int r0 = 16 * warp + g, r1 = r0 + 8;
#pragma unroll
  for (int j = 0; j < kNT; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = e < 2 ? r0 : r1, cc = 8 * j + 2 * q + (e & 1);
      hacc[j][e] = (src && r < nch && cc < n) ? src[int64_t(r) * n + cc] : 0.f;
    }
  }
}
__device__ __forceinline__ void state_store(const float (&hacc)[kNT][4], float* dst, int nch, int n) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int r0 = 16 * warp + g, r1 = r0 + 8;
#pragma unroll
  for (int j = 0; j < kNT; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = e < 2 ? r0 : r1, cc = 8 * j + 2 * q + (e & 1);
      if (r < nch && cc < n) dst[int64_t(r) * n + cc] = hacc[j][e];
    }
  }
}
// The operand copy of the state (rows 0..63, columns 0..16 nk - 1) in shared memory; sin: also to fp32 global rows
// (nullable). The caller separates it from the readers by a __syncthreads (load_tile's).
template <typename in_t>
__device__ __forceinline__ void state_to_smem(const float (&hacc)[kNT][4], const TileCtx<in_t>& c, float* sin) {
  using E = typename TileType<in_t>::E;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int r0 = 16 * warp + g, r1 = r0 + 8;
#pragma unroll
  for (int j = 0; j < kNT; ++j) {
    if (j < 2 * c.nk) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e < 2 ? r0 : r1, cc = 8 * j + 2 * q + (e & 1);
        c.hs[r * c.ldn + cc] = from_f<E>(hacc[j][e]);
        if (sin && r < c.nch && cc < c.n) sin[int64_t(r) * c.n + cc] = hacc[j][e];
      }
    }
  }
}

// ------------------------------------------------------------------------------------------ tile_output
// y of the tile's rows from the loaded tiles and the entering state in c.hs; + D x, ypre, gate, store.
template <typename in_t>
__device__ __forceinline__ void tile_output(const SsdFwdCudaParams& p, const TileCtx<in_t>& c, int64_t row,
                                            int64_t t0, int tl) {
  using E = typename TileType<in_t>::E;
  using F = Frag<E>;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, q = lane & 3;
  const int r0 = 16 * warp + g, r1 = r0 + 8;
  const int nk = c.nk, ldn = c.ldn, ldx = c.ldx;
  const float a_r0 = cum_at(c, r0), a_r1 = cum_at(c, r1);

  // S = C B^T on the causal column tiles (8j < 16 (warp + 1)), then the decay mask
  float s[8][4];
#pragma unroll
  for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
  for (int kk = 0; kk < nk; ++kk) {
    const typename F::A fa = F::a_rows(c.cs + 16 * warp * ldn + 16 * kk, ldn, g, q);
#pragma unroll
    for (int j = 0; j < 8; ++j)
      if (j < 2 * (warp + 1)) F::mma(s[j], fa, F::b_cols(c.bs + 8 * j * ldn + 16 * kk, ldn, g, q));
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    if (j < 2 * (warp + 1)) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int t = e < 2 ? r0 : r1, sc = 8 * j + 2 * q + (e & 1);
        s[j][e] = sc <= t ? s[j][e] * expf((e < 2 ? a_r0 : a_r1) - cum_at(c, sc)) * c.dts[sc] : 0.f;
      }
    }
  }

  // Y = exp(a_t) C h^T + S x
  float y[8][4];
#pragma unroll
  for (int j = 0; j < 8; ++j) y[j][0] = y[j][1] = y[j][2] = y[j][3] = 0.f;
  for (int kk = 0; kk < nk; ++kk) {
    const typename F::A fa = F::a_rows(c.cs + 16 * warp * ldn + 16 * kk, ldn, g, q);
#pragma unroll
    for (int j = 0; j < 8; ++j) F::mma(y[j], fa, F::b_cols(c.hs + 8 * j * ldn + 16 * kk, ldn, g, q));
  }
  const float e0 = expf(a_r0), e1 = expf(a_r1);
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    y[j][0] *= e0; y[j][1] *= e0;
    y[j][2] *= e1; y[j][3] *= e1;
  }
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    if (kk <= warp) {
      const float av[8] = {s[2 * kk][0], s[2 * kk][1], s[2 * kk][2], s[2 * kk][3],
                           s[2 * kk + 1][0], s[2 * kk + 1][1], s[2 * kk + 1][2], s[2 * kk + 1][3]};
      const typename F::A fa = F::a_from(av);
      mma_row_tiles<E>(y, fa, c.xs + 16 * kk * ldx, ldx, 8, g, q);
    }
  }
  // epilogue: + D x, ypre, gate, store
#pragma unroll
  for (int j = 0; j < 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int t = e < 2 ? r0 : r1, cc = 8 * j + 2 * q + (e & 1);
      if (t < tl && cc < c.nch) {
        float v = y[j][e];
        if (p.D) v += to_f(c.xs[t * ldx + cc]) * p.D[p.D_per_channel ? c.head * p.headdim + c.ch0 + cc : c.head];
        const int64_t tok = t0 + t;
        const int64_t oo = row * p.out_batch_stride + tok * p.out_l_stride + c.head * p.out_head_stride + c.ch0 + cc;
        if (p.z) {
          if (p.ypre) static_cast<in_t*>(p.ypre)[oo] = from_f<in_t>(v);
          v *= silu_f(to_f(c.zs[t * ldx + cc]));
        }
        static_cast<in_t*>(p.out)[oo] = from_f<in_t>(v);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------ tile_update
// h = exp(a_last) h + (x o w)^T B over the tile's k16 steps of tokens, w_s = exp(a_last - a_s) dt'_s.
// Returns a_last (the tile's total dt' A).
template <typename in_t>
__device__ __forceinline__ float tile_update(float (&hacc)[kNT][4], const TileCtx<in_t>& c, int tl) {
  using E = typename TileType<in_t>::E;
  using F = Frag<E>;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int ldx = c.ldx, ldn = c.ldn;
  const float a_last = cum_at(c, kTile - 1);
  const float dl = expf(a_last);
#pragma unroll
  for (int j = 0; j < kNT; ++j) {
    hacc[j][0] *= dl; hacc[j][1] *= dl; hacc[j][2] *= dl; hacc[j][3] *= dl;
  }
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    if (16 * kk < tl) {
      const int s0 = 16 * kk + 2 * q;
      const float w0 = expf(a_last - cum_at(c, s0)) * c.dts[s0], w1 = expf(a_last - cum_at(c, s0 + 1)) * c.dts[s0 + 1];
      const float w8 = expf(a_last - cum_at(c, s0 + 8)) * c.dts[s0 + 8];
      const float w9 = expf(a_last - cum_at(c, s0 + 9)) * c.dts[s0 + 9];
      const typename F::A fa =  // A[ch][s] = x[s][ch] w_s
          a_t_weighted<E>(c.xs + s0 * ldx + 16 * warp + g, ldx, w0, w1, w8, w9);
      mma_row_tiles<E>(hacc, fa, c.bs + 16 * kk * ldn, ldn, 2 * c.nk, g, q);
    }
  }
  return a_last;
}

}  // namespace ssd_cuda
}  // namespace mamba_kernels
