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
// The wgmma variant (ssd_state_wg_kernel, the default on sm_90a) and the launcher: ssd_state_wg_kernel.cuh.
#pragma once
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

}  // namespace ssd_walk
}  // namespace mamba_kernels
