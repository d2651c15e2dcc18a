// The forward state stage (F1) of the chunked SSD's Triton pipeline as a CUDA kernel (sm_80+, mma.sync, bf16; no
// torch). Semantics and layouts: SsdStateParams in ssd.h; the Triton twin is _ssd_state_fwd_kernel
// (mamba_kernels/ssd/_triton_fwd.py).
//
// Why: the Triton walk (one program a (sequence, head), 4 warps under a 168-register cap, 3 CTAs an SM) takes ~172 us
// at b4 l4096 h80 p64 n128 g1 on the H200 against a memory floor of ~80 us (x read once, the bf16 chunk-entry states
// written once), each walk re-reading the chunk's B rows that all 80 heads of the group share. Here a CTA walks W
// (head, p half) walks of one (sequence, group) together, chunk by chunk: the chunk's B tile (128 x 128) comes once for
// the W walks, the x half tiles (128 x 32) of the W walks with it, all by cp.async into one of two stages while the
// previous chunk computes. Halves of p = 64 give 2 h / g walks a (sequence, group), so the launcher can pick W with
// grid = nseq * g * ceil(2 h / g / W) close to the SM count (shape above: W = 5, 128 CTAs on 132 SMs).
//
// Work split (8 warps): warp w owns rows 16 (w & 1) .. + 16 of every walk's 32 p rows and the n columns
// 32 (w >> 1) .. + 32: W accumulators of 16 x 32 fp32 (16 registers each), the running states S. A chunk: x_s *= w_s =
// exp(a_L - a_s) dt'_s in shared memory, each thread on the 16-byte pieces it copied (rounded to bf16, as the Triton
// kernel rounds its weighted tile before tl.dot); S goes to h_in (bf16, 16 bytes a lane through per-warp staging rows),
// S *= exp(a_L); S += x'^T B over the chunk's tokens, the B fragments of a k step serving all W walks.
//
// H200 (2026-12-01, scripts/lab/time_ssd_state.py, same process as the Triton walk at 172 us): 167.5 us. Where the
// time goes (lab knobs that dropped one phase each, since removed): the loads alone 73 us, + x scaling 82, + h_in
// stores 114, + mma 168: the phases add up instead of overlapping at 8 warps an SM (ncu: 2 warps a scheduler, one
// issue every ~6 cycles; the mma.sync work alone is ~43 us at Hopper's mma.sync rate). Measured and not kept: the
// fragments weighted after ldmatrix (238 us), 4-byte h_in stores straight from the fragments (206 us under ncu: 10 M
// partial-sector writes at L2), 64-token steps in 4 stages with the next step's scaling behind this step's mma (183
// us), smaller W for more CTAs (223-243 us), 16 warps each on half the n columns (196-199 us against 163-167 in the
// same run, session 21: the warps stay in lockstep and re-load the x fragments). What would make it faster: wgmma
// (asynchronous, at the full tensor rate) so that the mma overlaps the scaling and the stores, or warps in different
// phases (the head walk's two teams on different items: ssd_walk.cuh, walk_items_pingpong; here kSkew, below).
#pragma once
#include <type_traits>

#include "common/tma.h"
#include "ssd/ssd_walk.cuh"

namespace mamba_kernels {
namespace ssd_walk {

constexpr int kHalfP = kP / 2;                                  // p rows of a walk
constexpr int kLdH = kHalfP + 8;                                // x half-tile row (80 bytes: conflict-free ldmatrix)
constexpr int kHalfTileBytes = kQ * kLdH * 2;                   // 10 KB
constexpr int kStateWalkBytes = kHalfTileBytes + 2 * kQ * 4;    // x half tile, a row, w (dt') row
constexpr int kStateMaxWalks = 6;                               // W a CTA: at most 6 (16 W accumulator registers)
constexpr int state_stage_bytes(int W) { return kRowsBytes + W * kStateWalkBytes; }
constexpr int kStateBlockBytes = 16 * kLdH * 2;  // a warp's 16 staging rows for one walk's h_in block
// Staging: a block a warp; with the skew (MK_SSD_STATE_SKEW=1) warps 4-7 keep all their W walks' blocks until after
// the mma, so they hold W blocks each.
constexpr int state_store_bytes(int W, bool skew) { return (skew ? 4 + 4 * W : kWarps) * kStateBlockBytes; }
constexpr int state_smem_bytes(int W, bool skew = false) {
  return 2 * state_stage_bytes(W) + state_store_bytes(W, skew);
}

// How a stage holds the B tile and the walks' x half tiles (the kX of the stage helpers below): kXPlain
// (ssd_state_kernel: padded rows for ldmatrix), kXSwz64 (ssd_state_wg_kernel: the B tile 128-byte-swizzled in two
// 16 KB n blocks, per walk an x half tile 64-byte-swizzled, 128 rows of 64 bytes, then its a / dt' rows), kXPairs
// (ssd_state_wg_kernel's kPairs: walks 2 u and 2 u + 1 side by side in one 128-byte-swizzled tile of 128 rows of 128
// bytes, so that one m64n64 product serves both; the a / dt' rows of every walk after the tiles).
constexpr int kXPlain = 0, kXSwz64 = 1, kXPairs = 2;
constexpr int kXSwzBytes = kQ * kHalfP * 2;
constexpr int kStateWgWalkBytes = kXSwzBytes + 2 * kQ * 4;        // 9 KB (1 KB multiple: the tiles stay aligned)
constexpr int kPairTileBytes = 2 * kXSwzBytes;                    // 16 KB
constexpr int kStateWgBlockLd = 16 + 8;                           // staging row: 16 n (+ 8: 48 bytes)
constexpr int kStateWgBlockBytes = kHalfP * kStateWgBlockLd * 2;
constexpr int kStateWgMaxWalks = 5;  // 214 KB; 6 walks would need 244 KB
// h_in staging: a (32 p x 16 n) block a warp and walk, or (kPairs) one a warp, reused walk by walk.
constexpr int state_wg_stage_bytes(int W, bool pairs = false) {
  return kQ * kN * 2 + (pairs ? (W + 1) / 2 * kPairTileBytes + W * 2 * kQ * 4 : W * kStateWgWalkBytes);
}
// kTma (MK_SSD_STATE_TMA, with kPairs): a walk's h_in staged as two 128-byte-swizzled (32 p x 64 n) boxes of 4 KB
// (n halves: warpgroup j's), stored by the tensor memory accelerator.
constexpr int kStateTmaBoxBytes = kHalfP * 128;
// (tma_load: the two stage barriers after the boxes.)
constexpr int state_wg_smem_bytes(int W, bool pairs = false, bool tma = false, bool tma_load = false) {
  return 2 * state_wg_stage_bytes(W, pairs) +
         (tma ? W * 2 * kStateTmaBoxBytes + (tma_load ? 16 : 0) : kWarps * (pairs ? 1 : W) * kStateWgBlockBytes);
}

// The TMA variant's parameters: the state stage's, and the tensor map of h_in as a (n_slots h kP) x kN bf16 matrix
// (boxes of kHalfP rows x 64 n), passed as a __grid_constant__ kernel parameter (the copy engine reads it there).
struct SsdStateTmaParams : SsdStateParams {
  TmaDesc hin_map;
};
// kTmaLoad (MK_SSD_STATE_TMA_LOAD, with kTma): the stage's tiles by tensor-map loads too: b_map = B as (tokens, g, kN)
// (boxes of 128 tokens x 1 group x 64 n: an n block of the B tile), x_map = x as (tokens, 1, h kP) (boxes of 128
// tokens x 64 p: a walk pair's tile, a head's p row when the pair is one head's halves).
struct SsdStateTmaLoadParams : SsdStateTmaParams {
  TmaDesc b_map, x_map;
};


// Walk i's x tile in stage st (kXPairs: its pair's tile), its a / dt' rows (a in [0, Q), dt' in [Q, 2Q)), and
// (kXPairs) the byte offset of its row r's 16-byte chunk v (v < 4) from its pair's tile.
template <int W, int kX>
__device__ __forceinline__ char* state_walk_base(char* st, int i) {
  if constexpr (kX == kXPlain) return st + kRowsBytes + i * kStateWalkBytes;
  else if constexpr (kX == kXSwz64) return st + kQ * kN * 2 + i * kStateWgWalkBytes;
  else return st + kQ * kN * 2 + (i / 2) * kPairTileBytes;
}
template <int W, int kX>
__device__ __forceinline__ float* state_walk_rows(char* st, int i) {
  if constexpr (kX == kXPairs)
    return reinterpret_cast<float*>(st + kQ * kN * 2 + (W + 1) / 2 * kPairTileBytes + i * 2 * kQ * 4);
  else
    return reinterpret_cast<float*>(state_walk_base<W, kX>(st, i) + (kX == kXSwz64 ? kXSwzBytes : kHalfTileBytes));
}
__device__ __forceinline__ int pair_x_offset(int i, int r, int v) { return sw128_offset(r, 64 * (i & 1) + 16 * v); }

// The CTA's (sequence, group, walks): walks i in [0, nw) are (head grp * hpg + (i0 + i) / 2, p half (i0 + i) % 2).
struct StateCta {
  int64_t row, s0, first, seq;
  int len, grp, i0, nw;
};

__device__ __forceinline__ StateCta state_cta(const SsdStateParams& p, int W) {
  const int64_t hpg = p.nheads / p.ngroups, halves = 2 * hpg, nsl = (halves + W - 1) / W;
  const int64_t id = blockIdx.x;
  StateCta c;
  c.seq = id / (p.ngroups * nsl);
  c.grp = int((id / nsl) % p.ngroups);
  c.i0 = int((id % nsl) * W);
  c.nw = int(halves - c.i0 < W ? halves - c.i0 : W);
  if (p.cu != nullptr) {
    c.row = 0;
    c.s0 = p.cu[c.seq];
    c.len = p.cu[c.seq + 1] - p.cu[c.seq];
    c.first = p.first[c.seq];
  } else {
    c.row = c.seq;
    c.s0 = 0;
    c.len = int(p.seqlen);
    c.first = c.seq * p.chunks_per_row;
  }
  return c;
}

// Stage loads of chunk c: the B tile (rows >= ln zero) and, per walk, its x half tile (rows >= ln zero), a and dt'
// rows (past ln zero). Thread tid copies B rows tid / 16 + 16 u (u < 8), x rows tid / 4 + 64 u (u < 2), 16 bytes
// each, and a or dt' entry tid % 128. Swizzled kX (ssd_state_wg_kernel's layouts): B row r's 16-byte chunk v at
// (v / 8) 16384 + sw128_offset(r, 16 (v % 8)); walk i's x row r, chunk v at sw64_offset(r, 16 v) or (kXPairs)
// pair_x_offset.
template <typename E, int W, int kX = kXPlain>
__device__ __forceinline__ void state_load(const SsdStateParams& p, const StateCta& c, int chunk, char* st, int tid) {
  const int64_t t0 = c.s0 + int64_t(chunk) * kQ;
  const int ln = c.len - chunk * kQ < kQ ? c.len - chunk * kQ : kQ;
  const int64_t h = p.nheads, hpg = h / p.ngroups;
  {
    E* bs = reinterpret_cast<E*>(st);
    const E* bg = static_cast<const E*>(p.B) + ((c.row * p.seqlen + t0) * p.ngroups + c.grp) * kN;
    const int64_t gn = p.ngroups * kN;
    const int r0 = tid >> 4, c0 = (tid & 15) * 8;
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      const int r = r0 + 16 * u;
      const bool ok = r < ln;
      E* d = kX != kXPlain ? reinterpret_cast<E*>(st + (c0 / 64) * 16384 + sw128_offset(r, 2 * (c0 % 64)))
                           : bs + r * kLdN + c0;
      cp_async16_zfill(d, bg + (ok ? r * gn + c0 : 0), ok);
    }
  }
#pragma unroll
  for (int i = 0; i < W; ++i) {
    if (i >= c.nw) break;
    char* wb = state_walk_base<W, kX>(st, i);
    const int64_t hh = c.grp * hpg + (c.i0 + i) / 2;
    const int ph = (c.i0 + i) & 1;
    E* xs = reinterpret_cast<E*>(wb);
    const E* xg = static_cast<const E*>(p.x) + ((c.row * p.seqlen + t0) * h + hh) * kP + ph * kHalfP;
    const int64_t hp = h * kP;
    const int r0 = tid >> 2, c0 = (tid & 3) * 8;
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int r = r0 + 64 * u;
      const bool ok = r < ln;
      void* d;  // (the plain and 64-byte forms as written before kXPairs: the kernels' SASS stays the one timed)
      if constexpr (kX == kXPairs) d = wb + pair_x_offset(i, r, tid & 3);
      else d = kX == kXSwz64 ? reinterpret_cast<E*>(wb + sw64_offset(r, 2 * c0)) : xs + r * kLdH + c0;
      cp_async16_zfill(d, xg + (ok ? r * hp + c0 : 0), ok);
    }
    float* rowsf = state_walk_rows<W, kX>(st, i);  // a in [0, Q), dt' in [Q, 2Q)
    const int r = tid & (kQ - 1);
    float* dst = rowsf + tid;
    if (r < ln) cp_async4(dst, (tid < kQ ? p.a : p.dtp) + (c.row * h + hh) * p.seqlen + t0 + r);
    else *dst = 0.f;
  }
}

// x_s *= w_s = exp(a_L - a_s) dt'_s in place, each thread on the 16-byte chunks it copied (state_load; rows past ln
// are zero); a swizzled kX: then the fence that hands them to wgmma (the caller's barrier follows).
template <typename E, int W, int kX = kXPlain>
__device__ __forceinline__ void state_scale(const StateCta& c, char* st, int ln, int tid) {
#pragma unroll
  for (int i = 0; i < W; ++i) {
    if (i >= c.nw) break;
    char* wb = state_walk_base<W, kX>(st, i);
    const float* rowsf = state_walk_rows<W, kX>(st, i);
    const float aL = rowsf[ln - 1];
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int r = (tid >> 2) + 64 * u;
      if (r >= ln) continue;
      const float w = __expf(aL - rowsf[r]) * rowsf[kQ + r];
      uint4* v = kX == kXPairs   ? reinterpret_cast<uint4*>(wb + pair_x_offset(i, r, tid & 3))
                 : kX == kXSwz64 ? reinterpret_cast<uint4*>(wb + sw64_offset(r, 16 * (tid & 3)))
                                 : reinterpret_cast<uint4*>(reinterpret_cast<E*>(wb) + r * kLdH + (tid & 3) * 8);
      uint4 t = *v;
      t.x = scale_pair(t.x, w, w);
      t.y = scale_pair(t.y, w, w);
      t.z = scale_pair(t.z, w, w);
      t.w = scale_pair(t.w, w, w);
      *v = t;
    }
  }
  if constexpr (kX != kXPlain) fence_proxy_async();
}

// The skew's late warp `warp` (4-7) stages walk i's h_in block in its own block i; the other warps use one block each
// (block `warp`), reused for every walk.
template <typename E, int W>
__device__ __forceinline__ E* late_staging(char* smem, int warp, int i) {
  return reinterpret_cast<E*>(smem + 2 * state_stage_bytes(W) + (4 + (warp - 4) * W + i) * kStateBlockBytes);
}

// kSkew (MK_SSD_STATE_SKEW=1): warps 4-7 (one a scheduler) write their h_in blocks of a chunk to global memory after
// the chunk's mma instead of before it, so that on each scheduler one warp stores while the other runs its mma (the
// phases add up when the two warps do the same thing at once: see the header). H200, shape 1 (9bd9062): 159.0-160.0 us
// against 161.4-162.1 (4 timings each); the default where state_skew_fits. Measured and removed (9b5c72a): x rows of
// the chunk after next prefetched into L2 (prefetch.global.L2): 170.5-173.8 us against 164.2-164.7; warps 0-3 storing
// their h_in blocks before waiting for the chunk's stage (d7ec0f0): 174.9-176.3 us against 160.7-166.2.
template <typename E, int W, bool kSkew>
__global__ void __launch_bounds__(kThreads, 1) ssd_state_kernel(const SsdStateParams p) {
  char* smem = reinterpret_cast<char*>(ssd_walk_smem);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, q = lane & 3, m = lane >> 3, r8 = lane & 7;
  const int mb = warp & 1, nq = warp >> 1;
  const StateCta c = state_cta(p, W);
  if (c.nw <= 0) return;
  const int64_t h = p.nheads, hpg = h / p.ngroups;
  const int nck = (c.len + kQ - 1) / kQ;

  // this lane's (row, column) pairs of walk i's (p, n) state: rows 32 ph + 16 mb + g (+ 8), columns 32 nq + 8 j + 2q
  auto block_off = [&](int i) -> int64_t {  // the warp's 16 x 32 block of walk i's (p, n) state
    const int64_t hh = c.grp * hpg + (c.i0 + i) / 2;
    return (hh * kP + 32 * ((c.i0 + i) & 1) + 16 * mb) * kN + 32 * nq;
  };
  auto state_off = [&](int i, int j, int half) -> int64_t {
    return block_off(i) + (g + 8 * half) * kN + 8 * j + 2 * q;
  };
  float acc[W][4][4];
#pragma unroll
  for (int i = 0; i < W; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        float v0 = 0.f, v1 = 0.f;
        if (p.init != nullptr && i < c.nw) {
          const float2 v = *reinterpret_cast<const float2*>(p.init + c.seq * h * kP * kN + state_off(i, j, half));
          v0 = v.x;
          v1 = v.y;
        }
        acc[i][j][2 * half] = v0;
        acc[i][j][2 * half + 1] = v1;
      }

  if (nck > 0) state_load<E, W>(p, c, 0, smem, tid);
  cp_async_commit();
  for (int k = 0; k < nck; ++k) {
    char* st = smem + (k & 1) * state_stage_bytes(W);
    if (k + 1 < nck) state_load<E, W>(p, c, k + 1, smem + ((k + 1) & 1) * state_stage_bytes(W), tid);
    cp_async_commit();
    cp_async_wait<1>();  // everything but the copies just issued
    __syncthreads();
    const int ln = c.len - k * kQ < kQ ? c.len - k * kQ : kQ;
    state_scale<E, W>(c, st, ln, tid);
    __syncthreads();
    // h_in of chunk k = S (bf16), then S *= exp(a_L). The warp's 16 x 32 bf16 block goes through its shared staging
    // rows so that a lane stores 16 bytes (4-byte stores straight from the fragments: their source registers held up
    // the next instructions, and L2 took 16-byte pieces of 32-byte sectors).
    {
      E* hin = static_cast<E*>(p.hin) + (c.first + k) * h * kP * kN;
      float decay[W];
#pragma unroll
      for (int i = 0; i < W; ++i)
        decay[i] = __expf(state_walk_rows<W, kXPlain>(st, i)[ln - 1]);
      E* sw = reinterpret_cast<E*>(smem + 2 * state_stage_bytes(W)) + warp * (16 * kLdH);
#pragma unroll
      for (int i = 0; i < W; ++i) {
        if (i >= c.nw) break;
        uint32_t v[2][4];
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int half = 0; half < 2; ++half)
            v[half][j] = ssd_cuda::pack_bf16(acc[i][j][2 * half], acc[i][j][2 * half + 1]);
        if constexpr (kSkew) {
          if (warp >= 4) stage_block<E, 4, kLdH>(late_staging<E, W>(smem, warp, i), v, lane);  // flushed after the mma
          else store_block_staged<E, 4, kLdH>(sw, v, hin + block_off(i), kN, 16, lane);
        } else {
          store_block_staged<E, 4, kLdH>(sw, v, hin + block_off(i), kN, 16, lane);
        }
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[i][j][e] *= decay[i];
      }
    }
    // S += x'^T B, k steps of 16 tokens up to the chunk's end. Every walk slot runs (no exit: the W walks' loads
    // interleave); slots past nw compute on stale shared memory and are never stored.
    const E* bs = reinterpret_cast<const E*>(st);
    const int ksteps = (ln + 15) / 16;
    for (int kk = 0; kk < ksteps; ++kk) {
      typename Frag<E>::B b[4];
      ssd_cuda::b_rows2<E>(b[0], b[1], bs + 16 * kk * kLdN + 32 * nq, kLdN, g, q);
      ssd_cuda::b_rows2<E>(b[2], b[3], bs + 16 * kk * kLdN + 32 * nq + 16, kLdN, g, q);
#pragma unroll
      for (int i = 0; i < W; ++i) {
        const E* xs = reinterpret_cast<const E*>(st + kRowsBytes + i * kStateWalkBytes);
        // A (p x token) = x'^T: matrices (p 0-7, k 0-7) (p 8-15, k 0-7) (p 0-7, k 8-15) (p 8-15, k 8-15) from the
        // (token, p) tile by ldmatrix.trans
        typename Frag<E>::A af;
        ssd_cuda::ldsm_x4_trans(af.r, xs + (16 * kk + r8 + 8 * (m >> 1)) * kLdH + 16 * mb + 8 * (m & 1));
#pragma unroll
        for (int j = 0; j < 4; ++j) Frag<E>::mma(acc[i][j], af, b[j]);
      }
    }
    if constexpr (kSkew) {
      if (warp >= 4) {  // the skew's late warps: chunk k's h_in blocks, staged before the mma
        E* hin = static_cast<E*>(p.hin) + (c.first + k) * h * kP * kN;
#pragma unroll
        for (int i = 0; i < W; ++i) {
          if (i >= c.nw) break;
          flush_block<E, 4, kLdH>(late_staging<E, W>(smem, warp, i), hin + block_off(i), kN, 16, lane);
        }
      }
    }
    __syncthreads();  // this stage's last reader: the next iteration loads into it
  }
  cp_async_wait<0>();
  // the final state (fp32)
#pragma unroll
  for (int i = 0; i < W; ++i) {
    if (i >= c.nw) break;
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int half = 0; half < 2; ++half)
        *reinterpret_cast<float2*>(p.final_states + c.seq * h * kP * kN + state_off(i, j, half)) =
            make_float2(acc[i][j][2 * half], acc[i][j][2 * half + 1]);
  }
}

// kTmaLoad: the stage of chunk `chunk`: thread 0 expects the tiles' bytes on `bar` and issues their tensor-map loads
// (the B tile's two n blocks, one box a walk pair; rows past the tensor come as zeros, rows past ln as whatever the
// tensor holds there: state_zero_tail clears them); every thread copies its a / dt' entries as state_load does.
template <typename E, int W>
__device__ __forceinline__ void state_load_tma(const SsdStateTmaLoadParams& p, const StateCta& c, int chunk, char* st,
                                               uint64_t* bar, int tid) {
  constexpr int kPairsW = (W + 1) / 2;
  const int64_t t0 = c.s0 + int64_t(chunk) * kQ;
  const int ln = c.len - chunk * kQ < kQ ? c.len - chunk * kQ : kQ;
  const int64_t h = p.nheads, hpg = h / p.ngroups;
  if (tid == 0) {
    const int row = int(c.row * p.seqlen + t0);
    mbar_expect_tx(bar, (2 + kPairsW) * 16384);
    tma_load_box(&p.b_map, st, bar, row, c.grp, 0);
    tma_load_box(&p.b_map, st + 16384, bar, row, c.grp, 64);
#pragma unroll
    for (int u = 0; u < kPairsW; ++u)
      tma_load_box(&p.x_map, state_walk_base<W, kXPairs>(st, 2 * u), bar, row, 0,
                   int((c.grp * hpg * kP) + (c.i0 + 2 * u) * kHalfP));
  }
#pragma unroll
  for (int i = 0; i < W; ++i) {
    if (i >= c.nw) break;
    const int64_t hh = c.grp * hpg + (c.i0 + i) / 2;
    float* rowsf = state_walk_rows<W, kXPairs>(st, i);  // a in [0, Q), dt' in [Q, 2Q)
    const int r = tid & (kQ - 1);
    float* dst = rowsf + tid;
    if (r < ln) cp_async4(dst, (tid < kQ ? p.a : p.dtp) + (c.row * h + hh) * p.seqlen + t0 + r);
    else *dst = 0.f;
  }
}

// kTmaLoad, a chunk shorter than kQ: zeros over the B tile's and the pair tiles' rows [ln, kQ) (the tensor-map loads
// brought the tensor's next rows there; the products must see zeros, as after state_load's zero-filled copies).
template <int W>
__device__ __forceinline__ void state_zero_tail(char* st, int ln, int tid) {
  constexpr int kTiles = 2 + (W + 1) / 2;  // 16 KB tiles of 128 rows x 128 bytes from the stage's start
  const int per = (kQ - ln) * 8;           // 16-byte chunks of a tile's rows past ln
  for (int i = tid; i < kTiles * per; i += kThreads) {
    const int t = i / per, r = ln + (i % per) / 8, v = i % 8;
    *reinterpret_cast<uint4*>(st + t * 16384 + r * 128 + v * 16) = make_uint4(0u, 0u, 0u, 0u);
  }
}

// ------------------------------------------------------------------------------------------ the wgmma variant (sm_90a)
// ssd_state_wg_kernel (MK_SSD_STATE_WGMMA, the default where it runs): the same walks, the transposed product on
// wgmma: warpgroup j (warps 4 j .. 4 j + 3) keeps S_i^T's n rows 64 j .. 64 j + 63 (all 32 p of walk i: m64n32
// accumulators, 16 registers a walk) and adds B^T x'_i with A = the chunk's B tile (MN-major: its token rows, n block
// j, 128-byte-swizzled) and B = walk i's weighted x half tile (MN-major, 64-byte-swizzled), both from shared memory.
// A chunk's products run asynchronously while the warps store the chunk's h_in blocks (staged transposed by
// stmatrix: the accumulator holds (n, p), h_in is (p, n)). Why: the phases of ssd_state_kernel add up at 8 warps an SM
// (loads 73, + scaling 82, + stores 114, + mma 168 us in its lab); here the tensor work no longer takes issue slots.
// H200, shape 1: 216-221 us against 159-165 for ssd_state_kernel while a lane stored its 32-byte h_in row in two
// 16-byte halves (9b7f175; half sectors at L2); 154.8 against 160.2-162.9 with whole sectors (6a9f91d); 150.5-150.9
// against 164.8-165.0 with the staged rows loaded into registers before the products are issued (c9810a9: one
// register set reused walk by walk had made every shared load wait for the previous global store, 57% of the stall
// samples). Measured and removed (bbb6462): h_in by bulk copies (cp.async.bulk shared -> global, a 256-byte p row a
// lane of warp 0, from one staging block a walk): 266.9 us: the copies' per-lane addresses make each one a
// serialised warp loop (BRA.U.ANY), and every warp waited for warp 0 at the next barrier (52% of the samples).
// kPairs (MK_SSD_STATE_PAIRS, the default; H200 shape 1: 148.7-148.9 us against 150.6-151.2): walks 2 u and 2 u + 1
// share one 128-byte-swizzled x tile and one m64n64 product (kXPairs), so the B tile (the A operand, 16 KB a
// warpgroup and walk) is read from shared memory once for two walks (shared memory was 76% busy under ncu); one
// staging block a warp, reused walk by walk, keeps the stages within 227 KB.
// kTma (MK_SSD_STATE_TMA, the default with kPairs; H200 shape 1: 133.0-135.8 us against 145.6-149.2): the h_in blocks
// staged by stmatrix into 128-byte-swizzled boxes (a walk's n half, 32 p x 64 n) and stored by one thread a
// warpgroup with tensor-map copies (common/tma.h) while the products run: no data registers held by stores,
// no per-lane store instructions. kTmaLoad (PP = SsdStateTmaLoadParams: MK_SSD_STATE_TMA_LOAD, the default with kTma;
// 126.3 / 128.2 us against 137.5 / 136.2): the stage's B and x tiles by tensor-map loads on an mbarrier a stage
// (state_load_tma), the rows past a short chunk cleared in shared memory (state_zero_tail).

template <typename E, int W, bool kPairs = false, typename PP = SsdStateParams>
__global__ void __launch_bounds__(kThreads, 1) ssd_state_wg_kernel(const __grid_constant__ PP p) {
#if defined(MK_WGMMA_DEVICE) || !defined(__CUDA_ARCH__)
  constexpr bool kTma = std::is_base_of_v<SsdStateTmaParams, PP>;
  constexpr bool kTmaLoad = std::is_same_v<PP, SsdStateTmaLoadParams>;
  static_assert(!kTma || kPairs, "the TMA stores come with the paired products");
  constexpr int kX = kPairs ? kXPairs : kXSwz64;
  constexpr int kStageBytes = state_wg_stage_bytes(W, kPairs);
  char* smem = reinterpret_cast<char*>(ssd_walk_smem);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, q = lane & 3;
  const int wg = warp >> 2, nrow0 = 64 * wg + 16 * (warp & 3);  // the warp's first n row of every walk's S^T
  const StateCta c = state_cta(p, W);
  if (c.nw <= 0) return;
  const int64_t h = p.nheads, hpg = h / p.ngroups;
  const int nck = (c.len + kQ - 1) / kQ;
  // walk i's (p, n) state: element (p, n) at state_base(i) + p kN + n, p within the walk's half. Walk i0 + i is
  // (head grp hpg + (i0 + i) / 2, half (i0 + i) % 2), i.e. p rows (i0 + i) kHalfP on from the group's first: linear
  // in i, so that the h_in stores of a chunk take one address and immediate offsets (no address arithmetic waiting
  // for an earlier store to release its registers)
  auto state_base = [&](int i) -> int64_t { return (c.grp * hpg * kP + int64_t(c.i0 + i) * kHalfP) * kN; };
  // acc[i][j][e]: S_i^T (n nrow0 + g + 8 (e / 2), p 8 j + 2 q + e % 2), at acc_off(i, j, e) of a sequence's states
  auto acc_off = [&](int i, int j, int e) -> int64_t {
    return state_base(i) + (8 * j + 2 * q + (e & 1)) * kN + nrow0 + g + 8 * (e >> 1);
  };
  float acc[W][4][4];
#pragma unroll
  for (int i = 0; i < W; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        acc[i][j][e] = p.init != nullptr && i < c.nw ? p.init[c.seq * h * kP * kN + acc_off(i, j, e)] : 0.f;
  // the warp's staging blocks: one a walk, or (kPairs) one reused walk by walk
  E* const blocks = reinterpret_cast<E*>(smem + 2 * kStageBytes) + warp * (kPairs ? 1 : W) * (kStateWgBlockBytes / 2);
  // kTma: walk i's box of n half j at boxes + (2 i + j) kStateTmaBoxBytes (1 KB aligned: the stages are 1 KB multiples)
  char* const boxes = smem + 2 * kStageBytes;
  const bool tma_issuer = kTma && (warp & 3) == 0 && lane == 0;  // one thread a warpgroup stores its boxes
  const int hr = lane >> 1, hc = 8 * (lane & 1);  // the flush's row and column (see below)
  uint4 v[W][2];
  // kTmaLoad: stage s's tiles complete on bars[s] (its n-th use: phase parity n & 1), after the h_in boxes
  uint64_t* const bars = reinterpret_cast<uint64_t*>(boxes + W * 2 * kStateTmaBoxBytes);
  const auto load = [&](int chunk) {
    char* dst = smem + (chunk & 1) * kStageBytes;
    if constexpr (kTmaLoad) state_load_tma<E, W>(p, c, chunk, dst, &bars[chunk & 1], tid);
    else state_load<E, W, kX>(p, c, chunk, dst, tid);
  };
  if constexpr (kTmaLoad) {
    if (tid == 0) {
      mbar_init(&bars[0], 1);
      mbar_init(&bars[1], 1);
    }
    __syncthreads();
  }

  if (nck > 0) load(0);
  cp_async_commit();
  for (int k = 0; k < nck; ++k) {
    char* st = smem + (k & 1) * kStageBytes;
    // the next chunk's stage: its buffer's last readers (chunk k - 1's products) were waited for at the loop's end
    if (k + 1 < nck) load(k + 1);
    cp_async_commit();
    cp_async_wait<1>();  // everything but the copies just issued
    __syncthreads();     // chunk k's a / dt' rows, copied by other threads
    const int ln = c.len - k * kQ < kQ ? c.len - k * kQ : kQ;
    if constexpr (kTmaLoad) {
      mbar_wait(&bars[k & 1], (k >> 1) & 1);  // chunk k's tiles
      if (ln < kQ) state_zero_tail<W>(st, ln, tid);
    }
    state_scale<E, W, kX>(c, st, ln, tid);
    __syncthreads();
    // h_in of chunk k = S (bf16, staged as (p, n) rows by stmatrix.trans: the accumulator holds (n, p)), then
    // S *= exp(a_L). Matrix m of a walk's two x4 stores: p rows 8 (2 u + m / 2) .., n columns 8 (m % 2) ..
#pragma unroll
    for (int i = 0; i < W; ++i) {
      if (i >= c.nw) break;
      E* blk = blocks + (kPairs ? 0 : i) * (kStateWgBlockBytes / 2);
      const float decay = __expf(state_walk_rows<W, kX>(st, i)[ln - 1]);
#pragma unroll
      for (int u = 0; u < 2; ++u) {
        uint32_t r[4];
#pragma unroll
        for (int m = 0; m < 4; ++m)
          r[m] = ssd_cuda::pack_bf16(acc[i][2 * u + m / 2][2 * (m & 1)], acc[i][2 * u + m / 2][2 * (m & 1) + 1]);
        const int mm = lane >> 3;
        if constexpr (kTma) {  // p row pr of the box, n chunk 2 (warp & 3) + (mm & 1) of its 128-byte row
          const int pr = 8 * (2 * u + mm / 2) + (lane & 7);
          ssd_cuda::stsm_x4_trans(r, boxes + (2 * i + wg) * kStateTmaBoxBytes +
                                         sw128_offset(pr, 16 * (2 * (warp & 3) + (mm & 1))));
        } else {
          ssd_cuda::stsm_x4_trans(r, blk + (8 * (2 * u + mm / 2) + (lane & 7)) * kStateWgBlockLd + 8 * (mm & 1));
        }
      }
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[i][j][e] *= decay;
      if constexpr (kPairs && !kTma) {  // the block into registers before the next walk's staging reuses it
        __syncwarp();
#pragma unroll
        for (int u = 0; u < 2; ++u)
          v[i][u] = *reinterpret_cast<const uint4*>(blk + (hr + 16 * u) * kStateWgBlockLd + hc);
        __syncwarp();
      }
    }
    // the staged blocks into registers before the products are issued: one register set reused walk by walk made
    // each shared load wait for the previous global store to release its source registers (a chain at the store
    // queue's pace: 57% of the warps' stall samples under ncu, 154 us). A block's p row holds 16 n (32 bytes, one
    // sector): lanes 2 r and 2 r + 1 store its halves in one instruction (rows r and 16 + r), so that every sector is
    // written whole (9b7f175 stored a lane's row in two instructions, 16 bytes of 32 each: 216-221 us).
    if constexpr (!kPairs) {
      __syncwarp();
#pragma unroll
      for (int i = 0; i < W; ++i)
#pragma unroll
        for (int u = 0; u < 2; ++u)
          v[i][u] = *reinterpret_cast<const uint4*>(blocks + i * (kStateWgBlockBytes / 2) +
                                                    (hr + 16 * u) * kStateWgBlockLd + hc);
    }
    // S^T += B^T x' over the chunk's 8 k16 steps (rows past ln are zero), every walk slot (past nw: stale, unstored).
    // kPairs: walks 2 u and 2 u + 1 as one m64n64 product (their accumulators side by side: n8 tiles 0-3 and 4-7),
    // B = their pair tile (MN-major, 128-byte swizzle), so that the B tile is read once for both; an odd last walk
    // takes the left half of its tile as m64n32.
    if constexpr (kTma) {  // the warpgroup's boxes to the copy engine: visible to the async proxy, all 4 warps staged
      fence_proxy_async();
      named_bar_sync<128>(1 + wg);
    }
    wgmma_fence();
    if constexpr (kPairs) {
#pragma unroll
      for (int u = 0; u < W / 2; ++u) {
        const char* xw = state_walk_base<W, kX>(st, 2 * u);
        float(&d)[8][4] = *reinterpret_cast<float(*)[8][4]>(&acc[2 * u][0][0]);
#pragma unroll
        for (int kk = 0; kk < kQ / 16; ++kk)
          wgmma_ss_bf16<true, true, true>(d, wg_desc<128>(st + 16384 * wg + 2048 * kk), wg_desc<128>(xw + 2048 * kk));
      }
      if constexpr (W % 2 == 1) {
        const char* xw = state_walk_base<W, kX>(st, W - 1);
#pragma unroll
        for (int kk = 0; kk < kQ / 16; ++kk)
          wgmma_ss_bf16<true, true, true>(acc[W - 1], wg_desc<128>(st + 16384 * wg + 2048 * kk),
                                          wg_desc<128>(xw + 2048 * kk));
      }
    } else {
#pragma unroll
      for (int i = 0; i < W; ++i) {
        const char* xw = state_walk_base<W, kX>(st, i);
#pragma unroll
        for (int kk = 0; kk < kQ / 16; ++kk)
          wgmma_ss_bf16<true, true, true>(acc[i], wg_desc<128>(st + 16384 * wg + 2048 * kk),
                                          wg_desc<64>(xw + 1024 * kk));
      }
    }
    wgmma_commit();
    if constexpr (kTma) {  // chunk k's h_in: a box a walk and n half, rows of the (n_slots h kP) x kN matrix
      if (tma_issuer) {
        const int64_t row0 = (c.first + k) * h * kP + c.grp * hpg * kP + int64_t(c.i0) * kHalfP;
#pragma unroll
        for (int i = 0; i < W; ++i) {
          if (i >= c.nw) break;
          tma_store_box(&p.hin_map, boxes + (2 * i + wg) * kStateTmaBoxBytes, int(row0 + i * kHalfP), 0, 64 * wg);
        }
        tma_commit();
      }
    } else {  // chunk k's h_in to global memory while the products run
      E* hin = static_cast<E*>(p.hin) + (c.first + k) * h * kP * kN;
#pragma unroll
      for (int i = 0; i < W; ++i) {
        if (i >= c.nw) break;
#pragma unroll
        for (int u = 0; u < 2; ++u)
          *reinterpret_cast<uint4*>(hin + state_base(i) + (hr + 16 * u) * kN + nrow0 + hc) = v[i][u];
      }
    }
    wgmma_wait<0>();
    if (tma_issuer) tma_wait_read<0>();  // the boxes are read: the next chunk's staging may rewrite them
    __syncthreads();  // stage k's last readers (every warpgroup's products) are done: the next iteration loads into it
  }
  if (tma_issuer) tma_wait_all();
  cp_async_wait<0>();
  // the final state (fp32)
#pragma unroll
  for (int i = 0; i < W; ++i) {
    if (i >= c.nw) break;
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        p.final_states[c.seq * h * kP * kN + acc_off(i, j, e)] = acc[i][j][e];
  }
#else
  __trap();
#endif
}

// Walks a CTA for this call: the fewest (so the most CTAs) whose grid fits on num_ctas SMs, at most what the
// shared memory of one CTA holds (smem_optin bytes; of ssd_state_wg_kernel with wgmma) and kStateMaxWalks; the
// largest allowed when even that needs more CTAs than SMs (several waves).
inline int state_walks_per_cta(const SsdStateParams& p, int64_t smem_optin, bool wgmma = false) {
  int wmax = wgmma ? kStateWgMaxWalks : kStateMaxWalks;
  while (wmax > 1 && (wgmma ? state_wg_smem_bytes(wmax) : state_smem_bytes(wmax)) > smem_optin) --wmax;
  const int64_t halves = 2 * (p.nheads / p.ngroups);
  for (int w = 1; w <= wmax; ++w)
    if (p.nseq * p.ngroups * ((halves + w - 1) / w) <= p.num_ctas) return w;
  return wmax;
}

// Whether the skew's staging (MK_SSD_STATE_SKEW) fits at W walks a CTA: it is taken only then, never at fewer walks.
constexpr bool state_skew_fits(int W, int64_t smem_optin) { return state_smem_bytes(W, true) <= smem_optin; }

// Which state-stage kernel a launch runs: ssd_state_kernel without or with the skew, or ssd_state_wg_kernel (kPairs:
// its paired products, MK_SSD_STATE_PAIRS; kWgmmaPairsTma: and its h_in by TMA stores, MK_SSD_STATE_TMA;
// kWgmmaPairsTmaLoad: and its tiles by TMA loads, MK_SSD_STATE_TMA_LOAD).
enum class StateKernel { kPlain, kSkew, kWgmma, kWgmmaPairs, kWgmmaPairsTma, kWgmmaPairsTmaLoad };

// One launch of the state stage with W walks a CTA (W <= kStateWgMaxWalks for kWgmma).
// (kWgmmaPairsTma / kWgmmaPairsTmaLoad: p is an SsdStateTmaParams / SsdStateTmaLoadParams with its tensor maps.)
template <int W>
cudaError_t launch_state(const SsdStateParams& p, StateKernel which, cudaStream_t stream) {
  const int64_t halves = 2 * (p.nheads / p.ngroups);
  const int64_t grid = p.nseq * p.ngroups * ((halves + W - 1) / W);
  if (grid == 0) return cudaSuccess;
  const auto run = [&](auto kernel, int smem, const auto& params) {
    cudaLaunchConfig_t cfg = {};
    cfg.blockDim = dim3(kThreads);
    cfg.gridDim = dim3(unsigned(grid));
    cfg.dynamicSmemBytes = size_t(smem);
    cfg.stream = stream;
    cudaError_t e = opt_in_smem(kernel, smem, "the SSD state stage");
    if (e == cudaSuccess) e = cudaLaunchKernelEx(&cfg, kernel, params);
    return e == cudaSuccess ? cudaGetLastError() : e;
  };
  if (which == StateKernel::kWgmma || which == StateKernel::kWgmmaPairs || which == StateKernel::kWgmmaPairsTma ||
      which == StateKernel::kWgmmaPairsTmaLoad) {
    if constexpr (W <= kStateWgMaxWalks) {
      if (which == StateKernel::kWgmmaPairsTmaLoad)
        return run(ssd_state_wg_kernel<__nv_bfloat16, W, true, SsdStateTmaLoadParams>,
                   state_wg_smem_bytes(W, true, true, true), static_cast<const SsdStateTmaLoadParams&>(p));
      if (which == StateKernel::kWgmmaPairsTma)
        return run(ssd_state_wg_kernel<__nv_bfloat16, W, true, SsdStateTmaParams>, state_wg_smem_bytes(W, true, true),
                   static_cast<const SsdStateTmaParams&>(p));
      if (which == StateKernel::kWgmmaPairs)
        return run(ssd_state_wg_kernel<__nv_bfloat16, W, true>, state_wg_smem_bytes(W, true), p);
      return run(ssd_state_wg_kernel<__nv_bfloat16, W>, state_wg_smem_bytes(W), p);
    }
    return cudaErrorInvalidValue;
  }
  return which == StateKernel::kSkew ? run(ssd_state_kernel<__nv_bfloat16, W, true>, state_smem_bytes(W, true), p)
                                     : run(ssd_state_kernel<__nv_bfloat16, W, false>, state_smem_bytes(W, false), p);
}

}  // namespace ssd_walk
}  // namespace mamba_kernels
