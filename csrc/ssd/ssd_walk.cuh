// Shared pieces of the head-walk CUDA stages of the chunked SSD (sm_80+, mma.sync, bf16; no torch): the forward
// output stage (ssd_scan_kernel.cuh) and the backward's dx stage (ssd_dx_kernel.cuh). Parameters: SsdWalkParams in
// ssd.h.
//
// Why: the Triton kernels of these stages hold ~250 registers of tiles a thread (2 CTAs of 2-4 warps an SM) and re-read
// the chunk's C B^T and B / C tiles for every head. Here one CTA an SM walks a contiguous range of (chunk slot, head)
// items, head fastest, so consecutive items share the chunk's C B^T and B (or C) rows, which stay in shared memory
// until the (chunk, group) changes (a whole group at g = 1: 80 heads at b4 l4096 h80 p64 n128); each item's two
// (token, p) tiles, its (p, n) state tile and its a / dt' / D rows come by cp.async into one of two stages while the
// previous item computes (walk_items), or, the default where the device has the shared memory, two teams of 8 warps
// take alternate items with a stage each (walk_items_pingpong).
//
// Work split of an item (8 warps): warp w owns the 16 rows of block w (w < 4) or 11 - w and all 64 p columns (a
// 16 x 64 fp32 accumulator, 8 n8 tiles), so that the two warps of a scheduler (w, w + 4) own blocks k and 7 - k and
// meet 9 of the 36 causal 16 x 16 blocks of the chunk between them.
#pragma once
#include "common/griddep.h"
#include "common/named_barrier.h"
#include "common/smem_optin.h"
#include "common/wgmma.h"
#include "ssd/ssd.h"
#include "ssd/ssd_mma.cuh"

// Lab builds only (scripts/lab/ssd_ring_lab.cu; the library never defines it): MK_SSD_RING_LAB bit 0: a ring fill
// copies nothing, by cp.async or TMA (its threads still arrive; ssd_walk_ring.cuh), bit 1: an item's outputs are staged
// but not stored (scan_epilogue), bit 2: every warp's causal product over 3 or 4 earlier blocks (tb odd: 4), the team's
// 28 as before but balanced across its warps (scan_causal). Wrong results by design: for timing what is left of F2
// without its loads / stores / imbalance (the H200 lends no ncu). Instruction diets of F2's item, to time before any is
// adopted: bit 4: silu(z) by one tanh.approx (approximate), bit 5: the causal product's A fragments scaled by bf16x2
// multiplies (one more rounding), bit 6: silu(z) with one MUFU and 1 / (1 + e) by Newton steps (session 45, H200: F2
// 222.9-225.9 us against 212.6-214.8: slower). (Bit 3, the swizzled addresses by sw128_chunk and the decays as exp2 of
// an fma, was adopted in session 38. Measured and removed there: D added on the diagonal block's diagonal with an mma
// over the pairs' rounding residuals, so that the epilogue reads no x: 34 instructions fewer an item, F2 213.0-215.6 us
// against 208.5-209.5, the extra 8 mma a warp cost more than they saved.)
#ifndef MK_SSD_RING_LAB
#define MK_SSD_RING_LAB 0
#endif

namespace mamba_kernels {
namespace ssd_walk {

using ssd_cuda::Frag;
constexpr int kQ = int(kSsdWalkChunk), kP = int(kSsdWalkHeaddim), kN = int(kSsdWalkDstate);
constexpr int kWarps = 8, kThreads = 32 * kWarps;
// shared rows padded by 16 bytes: consecutive rows start 4 banks apart (conflict-free ldmatrix and pair loads)
constexpr int kLdQ = kQ + 8, kLdN = kN + 8, kLdP = kP + 8;
constexpr int kCbBytes = kQ * kLdQ * 2, kRowsBytes = kQ * kLdN * 2;  // resident: C B^T, B or C rows
constexpr int kTileBytes = kQ * kLdP * 2, kPnBytes = kP * kLdN * 2;
// 2 tiles, (p, n) tile, a, dt', D; a multiple of 1 KB, so that every tile starts 1024-byte aligned (the swizzled
// layouts of the wgmma variant, kSwz below)
constexpr int kStageBytes = (2 * kTileBytes + kPnBytes + (2 * kQ + kP) * 4 + 1023) / 1024 * 1024;
constexpr int kSmemBytes = kCbBytes + kRowsBytes + 2 * kStageBytes;       // 178 KB: one CTA an SM
constexpr int kStagingBytes = kWarps * 16 * kLdP * 2;                    // a warp's 16 output staging rows (18 KB)

// A stage's parts: tiles t0 / t1 (Q x p), the (p, n) tile, a / dt' / D rows.
template <typename E> struct Stage {
  const char* base;
  __device__ __forceinline__ const E* tile0() const { return reinterpret_cast<const E*>(base); }
  __device__ __forceinline__ const E* tile1() const { return reinterpret_cast<const E*>(base + kTileBytes); }
  __device__ __forceinline__ const E* pn() const { return reinterpret_cast<const E*>(base + 2 * kTileBytes); }
  __device__ __forceinline__ const float* a() const {
    return reinterpret_cast<const float*>(base + 2 * kTileBytes + kPnBytes);
  }
  __device__ __forceinline__ const float* dt() const { return a() + kQ; }
  __device__ __forceinline__ const float* D() const { return a() + 2 * kQ; }
};

// Warp w's row block (see the header).
__device__ __forceinline__ int warp_row_block(int warp) { return warp < 4 ? warp : 11 - warp; }

// One (chunk slot, head) item: chunk k, head hh of group grp, first token's offsets, valid length ln (0: nothing).
struct Item {
  int64_t k, tok0, ab;
  int hh, grp, ln;
};

// Chunk fields of item `r` (slot r.k, head r.hh already set).
__device__ __forceinline__ void set_chunk(const SsdWalkParams& p, Item& r) {
  int64_t row, start, ln;
  if (p.tab != nullptr) {
    row = 0;
    start = p.tab[2 * r.k];
    ln = p.tab[2 * r.k + 1];
  } else {
    row = r.k / p.chunks_per_row;
    start = (r.k - row * p.chunks_per_row) * kQ;
    ln = p.seqlen - start;
  }
  r.ln = int(ln < 0 ? 0 : (ln > kQ ? kQ : ln));
  r.tok0 = row * p.seqlen + start;
  r.ab = (row * p.nheads + r.hh) * p.seqlen + start;
}

// The item after `r` (head fastest): a new chunk's fields only when the head wraps.
__device__ __forceinline__ Item next_item(const SsdWalkParams& p, Item r) {
  if (++r.hh == p.nheads) {
    r.hh = 0;
    ++r.k;
    set_chunk(p, r);
  } else {
    r.ab += p.seqlen;
  }
  r.grp = int(r.hh / (p.nheads / p.ngroups));
  return r;
}

// The item `n` on from `r` (head fastest; a ping-pong team's next: n = 2, the ring's fill: n = 3): with p.lean_next,
// where it stays in r's chunk, by adding to the head and its offsets, r.grp kept (the items a team computes stay in
// one segment, of one group; only a prefetch's or a fill's may leave it, and those do not read grp); else next_item
// n times.
template <int N>
__device__ __forceinline__ Item next_items(const SsdWalkParams& p, Item r) {
  if constexpr (N == 1) return next_item(p, r);
  else return next_item(p, next_items<N - 1>(p, r));
}
template <int N>
__device__ __forceinline__ Item skip_n(const SsdWalkParams& p, Item r) {
  if (p.lean_next && r.hh + N < p.nheads) {
    r.hh += N;
    r.ab += N * p.seqlen;
    return r;
  }
  return next_items<N>(p, r);
}

// Element offsets of item `it`: its first token and head in a (b, l, h, p) tensor, its (p, n) tile in a
// (n_slots, h, p, n) one.
__device__ __forceinline__ int64_t item_tile_offset(const SsdWalkParams& p, const Item& it) {
  return (it.tok0 * p.nheads + it.hh) * kP;
}
__device__ __forceinline__ int64_t item_pn_offset(const SsdWalkParams& p, const Item& it) {
  return (it.k * p.nheads + it.hh) * int64_t(kP * kN);
}

__device__ __forceinline__ Item item_of(const SsdWalkParams& p, int64_t it) {
  Item r;
  r.k = it / p.nheads;
  r.hh = int(it - r.k * p.nheads);
  r.grp = int(r.hh / (p.nheads / p.ngroups));
  set_chunk(p, r);
  return r;
}

__device__ __forceinline__ void unpack_bf16x2(uint32_t w, float& lo, float& hi) {
#if defined(__CUDA_ARCH__)
  lo = __uint_as_float(w << 16);
  hi = __uint_as_float(w & 0xffff0000u);
#else
  const uint32_t a = w << 16, b = w & 0xffff0000u;
  __builtin_memcpy(&lo, &a, 4);
  __builtin_memcpy(&hi, &b, 4);
#endif
}

// (lo u0, hi u1) of a bf16 pair, repacked.
__device__ __forceinline__ uint32_t scale_pair(uint32_t w, float u0, float u1) {
  float lo, hi;
  unpack_bf16x2(w, lo, hi);
  return ssd_cuda::pack_bf16(lo * u0, hi * u1);
}

// sw128_offset(r, 16 c) (16-byte chunk c < 8 of row r of a 128-byte-swizzled tile) where r % 8 == r7 is known apart
// (a lane's row within a block of 8 rows whose first row is a run-time multiple of 8): the chunk's xor is then the
// lane's, c ^ r7, which the compiler can hoist out of the walk's loops (from r it is recomputed a block: the TMA
// ring's causal product, 79 -> 70 instructions a block at sm_90a with decay_exp's exp2; session 38).
__device__ __forceinline__ uint32_t sw128_chunk(int r, int c, int r7) {
  return uint32_t(r) * 128u + (uint32_t((c ^ r7) & 7) << 4);
}

// Element (r, c) (c a multiple of 8) of a (p, n) tile at `tile` written 128-byte-swizzled for wgmma's B operand,
// K-major in two 64-wide n blocks of 8 KB (load_stage's kSwz, the ring's fills).
__device__ __forceinline__ char* pn_swz_at(char* tile, int r, int c) {
  return tile + (c / 64) * 8192 + sw128_offset(r, 2 * (c % 64));
}

// Stage loads of item `it`: tiles t0 / t1 of a (b, l, h, p) tensor each (rows >= ln zero; t1 may be null: not
// loaded), the (p, n) tile of a (n_slots, h, p, n) tensor, a and dt' (rows >= ln zero), D's 64 values of the head
// (D (h) broadcast; zero without D). Thread tid copies tile rows tid / 8 + 32 u and (p, n) rows tid / 16 + 16 u
// (u = 0..3), 16 bytes each; 32-bit row offsets (h * p * Q < 2^31: checked by the dispatch). With `split`
// (SsdWalkParams::split_wait) the copies form three cp.async groups, the first two committed here, the third by the
// caller: (1) the (p, n) tile, a / dt' / D, and t1 when t1_group is 1; (2) t0, and t1 when t1_group is 2; (3) t1 when
// t1_group is 3, each warp copying the rows of its own row block (warp_row_block), which only it reads.
// kSwz (the wgmma variant of F2): the (p, n) tile is written 128-byte-swizzled for wgmma's B operand, K-major in two
// 64-wide n blocks of 8 KB (row p, n chunk c at (c / 8) 8192 + sw128_offset(p, 16 (c % 8))).
template <typename E, bool kSwz = false>
__device__ __forceinline__ void load_stage(const SsdWalkParams& p, const Item& it, char* st, const void* t0,
                                           const void* t1, const void* pn, int tid, bool split, int t1_group) {
  E* spn = reinterpret_cast<E*>(st + 2 * kTileBytes);
  float* as = reinterpret_cast<float*>(st + 2 * kTileBytes + kPnBytes);
  const int hp = int(p.nheads) * kP;
  const int64_t base = item_tile_offset(p, it);
  const E* gpn = static_cast<const E*>(pn) + item_pn_offset(p, it);
  const int r1 = tid >> 4, c1 = (tid & 15) * 8;
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    const int r = r1 + 16 * u;
    E* d = kSwz ? reinterpret_cast<E*>(pn_swz_at(reinterpret_cast<char*>(spn), r, c1)) : spn + r * kLdN + c1;
    cp_async16(d, gpn + r * kN + c1);
  }
  const int r = tid % kQ;
  float* dst = as + tid;  // a in as[0 .. Q), dt' in as[Q .. 2Q)
  if (r < it.ln) cp_async4(dst, (tid < kQ ? p.a : p.dtp) + it.ab + r); else *dst = 0.f;
  if (tid < kP) {  // D in as[2Q .. 2Q + 64)
    if (p.D == nullptr) as[2 * kQ + tid] = 0.f;
    else cp_async4(as + 2 * kQ + tid, p.D + (p.D_per_channel ? it.hh * kP + tid : it.hh));
  }
  // rows r0 + rstep u (u < 4) of a tile, 16-byte column chunk c0
  const auto copy_rows = [&](E* s, const void* t, int r0, int rstep, int c0) {
    const E* g = static_cast<const E*>(t) + base;
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int rr = r0 + rstep * u;
      const bool ok = rr < it.ln;
      cp_async16_zfill(s + rr * kLdP + c0, g + (ok ? rr * hp + c0 : 0), ok);
    }
  };
  E* s1 = reinterpret_cast<E*>(st + kTileBytes);
  const int tg = split ? t1_group : 2;
  if (tg == 1 && t1 != nullptr) copy_rows(s1, t1, tid >> 3, 32, (tid & 7) * 8);
  if (split) cp_async_commit();
  copy_rows(reinterpret_cast<E*>(st), t0, tid >> 3, 32, (tid & 7) * 8);
  if (tg == 2 && t1 != nullptr) copy_rows(s1, t1, tid >> 3, 32, (tid & 7) * 8);
  if (split) cp_async_commit();
  if (tg == 3 && t1 != nullptr) copy_rows(s1, t1, 16 * warp_row_block(tid >> 5) + ((tid & 31) >> 3), 4, (tid & 7) * 8);
}

// L2 prefetch of what load_stage copies for item `it` (tiles t0 / t1: a 128-byte line a row; the (p, n) tile: 128
// lines), one or two lines a thread of the team (tid 0..255), so that the team's load_stage of that item one item
// later waits for L2, not for DRAM (SsdWalkParams::prefetch).
template <typename E>
__device__ __forceinline__ void prefetch_stage(const SsdWalkParams& p, const Item& it, const void* t0, const void* t1,
                                               const void* pn, int tid) {
  static_assert(kP * 2 == 128 && kThreads == 2 * kQ && kP * kN == kQ * 64, "a line a tile row, a pn line a thread");
  const int r = tid & (kQ - 1);
  const void* t = tid < kQ ? t0 : t1;
  if (t != nullptr && r < it.ln)
    prefetch_l2(static_cast<const E*>(t) + item_tile_offset(p, it) + int64_t(r) * p.nheads * kP);
  if (tid < kQ) prefetch_l2(static_cast<const E*>(pn) + item_pn_offset(p, it) + tid * 64);
}

// The chunk's C B^T and B or C rows of the item's group, rows >= ln zero (they meet zero weights or no store; C B^T's
// upper triangle is read but masked). kSwz (the wgmma variant of F2): the rows are wgmma's K-major A operand,
// 128-byte-swizzled in two 64-wide n blocks of 16 KB, token t at row swz_row(t) (row blocks 4..7 reversed, so that
// warp w of a warpgroup finds the rows of its warp_row_block), n chunk c at (c / 8) 16384 + sw128_offset(row, 16 (c %
// 8)).
__device__ __forceinline__ int swz_row(int t) {
  const int b = t >> 4;
  return 16 * (b < 4 ? b : 11 - b) + (t & 15);
}
template <typename E, bool kSwz = false>
__device__ __forceinline__ void load_resident(const SsdWalkParams& p, const Item& it, E* cbs, E* rs, int tid) {
  const E* cbg = static_cast<const E*>(p.cb) + (it.k * p.ngroups + it.grp) * int64_t(kQ * kQ);
  const E* rg = static_cast<const E*>(p.rows) + (it.tok0 * p.ngroups + it.grp) * kN;
  const int gn = int(p.ngroups) * kN, r0 = tid >> 4, c0 = (tid & 15) * 8;
#pragma unroll
  for (int u = 0; u < 8; ++u) {
    const int r = r0 + 16 * u;
    const bool ok = r < it.ln;
    cp_async16_zfill(cbs + r * kLdQ + c0, cbg + (ok ? r * kQ + c0 : 0), ok);
    E* d = kSwz ? reinterpret_cast<E*>(reinterpret_cast<char*>(rs) + (c0 / 64) * 16384 +
                                       sw128_offset(swz_row(r), 2 * (c0 % 64)))
                : rs + r * kLdN + c0;
    cp_async16_zfill(d, rg + (ok ? r * gn + c0 : 0), ok);
  }
}

// acc (16 x 64) = R[r0 .. r0 + 16) PN^T over n: A = R rows (rows 0-7 / 8-15 x k 0-7 / 8-15 by ldmatrix), B = PN rows
// (p 0-7 / 8-15 x k 0-7 / 8-15).
template <typename E>
__device__ __forceinline__ void rows_times_pn(float (&acc)[8][4], const E* rs, int r0, const E* pn, int lane) {
  const int m = lane >> 3, r8 = lane & 7;
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[j][e] = 0.f;
#pragma unroll
  for (int kk = 0; kk < kN / 16; ++kk) {
    typename Frag<E>::A af;
    ssd_cuda::ldsm_x4(af.r, rs + (r0 + r8 + 8 * (m & 1)) * kLdN + 16 * kk + 8 * (m >> 1));
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
      uint32_t r[4];
      ssd_cuda::ldsm_x4(r, pn + (16 * jj + r8 + 8 * (m >> 1)) * kLdN + 16 * kk + 8 * (m & 1));
      const typename Frag<E>::B b0{{r[0], r[1]}}, b1{{r[2], r[3]}};
      Frag<E>::mma(acc[2 * jj], af, b0);
      Frag<E>::mma(acc[2 * jj + 1], af, b1);
    }
  }
}

// rows_times_pn on wgmma (sm_90a; the swizzled layouts of run_walk's kSwz), issued and committed, not waited for:
// acc (16 x 64 a warp) = the rows of warp_row_block(warp) times PN^T over n, the team's warpgroup wg = warp / 4
// taking its 64 rows (warp_row_block's blocks 0-3 or 7, 6, 5, 4: swz_row) of each 16 KB n block of the resident rows
// and the (p, n) tile's 8 KB n blocks, A and B from shared memory, K-major. Every warp of the warpgroup calls it.
// kRowsBlock: the byte stride of the rows' n blocks (16 KB: 128 rows; the fused walk's 64-row tiles: 8 KB, also for
// C B^T with its B tile in the (p, n) tile's place).
template <typename E, int kRowsBlock = 16384>
__device__ __forceinline__ void rows_times_pn_wgmma(float (&acc)[8][4], const E* rs, const E* pn, int warp) {
  const char* const rb = reinterpret_cast<const char*>(rs) + 8192 * (warp >> 2);
  const char* const pb = reinterpret_cast<const char*>(pn);
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kN / 16; ++kk) {
    const WgDesc a = wg_desc<128>(rb + (kk >> 2) * kRowsBlock + (kk & 3) * 32);
    const WgDesc b = wg_desc<128>(pb + (kk >> 2) * 8192 + (kk & 3) * 32);
    if (kk == 0) wgmma_ss_bf16<false, false, false>(acc, a, b);
    else wgmma_ss_bf16<true, false, false>(acc, a, b);
  }
  wgmma_commit();
}

// acc *= f (all), and acc rows g / g + 8 *= v0 / v1.
__device__ __forceinline__ void scale_acc(float (&acc)[8][4], float f) {
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[j][e] *= f;
}
__device__ __forceinline__ void scale_acc_rows(float (&acc)[8][4], float v0, float v1) {
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[j][e] *= e < 2 ? v0 : v1;
}

// acc (16 x 64) += A tile (16 x 16) times rows [k0, k0 + 16) of a (Q x p) stage tile (ldmatrix.trans). kSwz (bf16:
// the TMA-filled ring, ssd_walk_ring.cuh): the tile's rows are 128 bytes, 128-byte-swizzled (16-byte chunk c of row r
// at r 128 + ((c ^ r) & 7) 16), not padded.
template <typename E, bool kSwz = false>
__device__ __forceinline__ void a_times_tile(float (&acc)[8][4], const typename Frag<E>::A& af, const E* tile, int k0,
                                             int lane) {
  const int g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int jj = 0; jj < 4; ++jj) {
    typename Frag<E>::B b0, b1;
    if constexpr (kSwz) {  // b_rows2's matrices: lane 8 m + i gives row k0 + i + 8 (m & 1), chunk 2 jj + (m >> 1)
      const int m = lane >> 3, r = k0 + (lane & 7) + 8 * (m & 1);
      uint32_t v[4];
      const int c = 2 * jj + (m >> 1);  // (k0 a multiple of 8: r % 8 == lane % 8)
      ssd_cuda::ldsm_x4_trans(v, reinterpret_cast<const char*>(tile) + sw128_chunk(r, c, lane & 7));
      b0.r[0] = v[0];
      b0.r[1] = v[1];
      b1.r[0] = v[2];
      b1.r[1] = v[3];
    } else {
      ssd_cuda::b_rows2<E>(b0, b1, tile + k0 * kLdP + 16 * jj, kLdP, g, q);
    }
    Frag<E>::mma(acc[2 * jj], af, b0);
    Frag<E>::mma(acc[2 * jj + 1], af, b1);
  }
}

// A warp's 16 x 8J bf16 output block to global rows dst + r * ld (r < nrows; r = g / g + 8 for v[0] / v[1], columns
// 8 j + 2 q (+1) in v[.][j]), 16 bytes a lane through the warp's staging rows sw (16 rows, LD elements apart): each
// store instruction covers 32 / J rows x 16 J contiguous bytes. Why: the fragments' own 4-byte stores reach L2 as
// 16-byte pieces of 32-byte sectors; the forward state stage (ssd_state_kernel.cuh) went from 206 to 167.6 us under
// ncu when its stores were staged like this (session 20). LD = 72 (here) or 40 (the state stage): conflict-free.
// Its two halves: stage_block (fragments -> staging rows) and flush_block (staging rows -> global), for a caller that
// does other work between them (the state stage's MK_SSD_STATE_SKEW).
template <typename E, int J, int LD>
__device__ __forceinline__ void stage_block(E* sw, const uint32_t (&v)[2][J], int lane) {
  const int g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int hf = 0; hf < 2; ++hf)
#pragma unroll
    for (int j = 0; j < J; ++j) *reinterpret_cast<uint32_t*>(sw + (g + 8 * hf) * LD + 8 * j + 2 * q) = v[hf][j];
  __syncwarp();
}
template <typename E, int J, int LD>
__device__ __forceinline__ void flush_block(const E* sw, E* dst, int64_t ld, int nrows, int lane) {
  constexpr int kRowsPer = 32 / J;  // rows a store instruction (J lanes a row)
#pragma unroll
  for (int u = 0; u < 16 / kRowsPer; ++u) {
    const int r = lane / J + kRowsPer * u, c = (lane % J) * 8;
    if (r < nrows) *reinterpret_cast<uint4*>(dst + r * ld + c) = *reinterpret_cast<const uint4*>(sw + r * LD + c);
  }
  __syncwarp();
}
template <typename E, int J, int LD>
__device__ __forceinline__ void store_block_staged(E* sw, const uint32_t (&v)[2][J], E* dst, int64_t ld, int nrows,
                                                   int lane) {
  stage_block<E, J, LD>(sw, v, lane);
  flush_block<E, J, LD>(sw, dst, ld, nrows, lane);
}

// The persistent walk: CTA blockIdx.x takes items [i0, i1) of the n_slots * nheads (head fastest). Stage s of item
// i + 1 is requested before item i computes; the resident tiles are reloaded after an item when the next one is in
// another (chunk, group). load(item, stage) issues one item's stage copies; compute(item, stage) runs one item
// (items of length 0 are skipped). smem: kSmemBytes of dynamic shared memory.
template <typename E, typename Load, typename Compute>
__device__ __forceinline__ void walk_items(const SsdWalkParams& p, char* smem, Load load, Compute compute) {
  E* cbs = reinterpret_cast<E*>(smem);
  E* rs = reinterpret_cast<E*>(smem + kCbBytes);
  char* stage0 = smem + kCbBytes + kRowsBytes;
  const int64_t total = p.n_slots * p.nheads;
  const int64_t i0 = int64_t(blockIdx.x) * total / gridDim.x, i1 = int64_t(blockIdx.x + 1) * total / gridDim.x;
  if (i0 >= i1) return;
  const int tid = threadIdx.x;
  Item cur = item_of(p, i0);
  int64_t key = cur.k * p.ngroups + cur.grp;
  load_resident<E>(p, cur, cbs, rs, tid);
  load(cur, stage0);
  cp_async_commit();
  for (int64_t it = i0; it < i1; ++it) {
    char* st = stage0 + ((it - i0) & 1) * kStageBytes;
    char* st_next = stage0 + (((it - i0) & 1) ^ 1) * kStageBytes;
    const bool has_next = it + 1 < i1;
    Item nxt = cur;
    if (has_next) {
      nxt = next_item(p, cur);
      load(nxt, st_next);  // its buffer's last reader (item it - 1) passed the barrier below
    }
    cp_async_commit();
    cp_async_wait<1>();  // everything but the copies just issued
    __syncthreads();
    if (cur.ln > 0) compute(cur, static_cast<const E*>(cbs), static_cast<const E*>(rs), Stage<E>{st}, [] {}, [] {});
    __syncthreads();
    if (has_next) {
      const int64_t nkey = nxt.k * p.ngroups + nxt.grp;
      if (nkey != key) load_resident<E>(p, nxt, cbs, rs, tid);  // waited for at the next iteration's top
      key = nkey;
      cur = nxt;
    }
    cp_async_commit();
  }
  cp_async_wait<0>();
}

// Barrier of the 256 threads of team `team` (named barrier 1 + team; 0 is __syncthreads).
__device__ __forceinline__ void team_barrier(int team) { named_bar_sync<kThreads>(1 + team); }

// The ping-pong walk (the default where it fits; MK_SSD_WALK_PINGPONG=0: walk_items): two teams of 8 warps in one
// CTA (16 warps an SM) share the resident tiles and take alternate items of the CTA's range, one stage each,
// synchronising by their own named barrier, so that one team's mma runs while the other waits for its loads or
// stores its outputs. Why: with one team (walk_items) the 8 warps go through the same phases together, and the
// phases add up (F1's lab: loads 73, + scaling 82, + stores 114, + mma 168 us); a scheduler has 2 warps to switch
// between. H200, b4 l4096 h80 p64 n128 g1 (768cb6a): F2 271.8 us against 325.1 with one team, B2 289.5 against
// 310.3. The cost: no stage ahead within a team (the other team's work hides the load), 128 registers a thread (no
// spills at sm_90a), and a CTA barrier where the resident tiles change (the range is cut into segments of one (chunk,
// group): item / (nheads / ngroups) is their key). load / compute as for walk_items, called with the team's thread
// index (0..255) by the caller's lambdas; prefetch(item) (with p.prefetch) warms L2 for the team's next item while
// this one computes. With p.split_wait, load issues three cp.async groups (load_stage) and the team starts an item
// when the first has landed: compute's wait_rest() (called by every thread of the team once per item) waits for the
// second, wait_own() (each warp, once per item, after wait_rest) for the third. smem: kSmemBytes (the two stages are
// the teams') + 2 kStagingBytes.
// kSwz: the resident rows and the (p, n) tiles are written swizzled (load_resident, load_stage), and every thread
// fences its landed copies into the async proxy before the barrier that hands them to the team (wgmma reads them).
template <typename E, bool kSwz, typename Load, typename Compute, typename Prefetch>
__device__ __forceinline__ void walk_items_pingpong(const SsdWalkParams& p, char* smem, Load load, Compute compute,
                                                    Prefetch prefetch) {
  E* cbs = reinterpret_cast<E*>(smem);
  E* rs = reinterpret_cast<E*>(smem + kCbBytes);
  const int tid = threadIdx.x, team = tid / kThreads;
  char* st = smem + kCbBytes + kRowsBytes + team * kStageBytes;
  const int64_t total = p.n_slots * p.nheads, hpg = p.nheads / p.ngroups;
  const int64_t i0 = int64_t(blockIdx.x) * total / gridDim.x, i1 = int64_t(blockIdx.x + 1) * total / gridDim.x;
  const bool split = p.split_wait;
  const auto landed = [] {  // this thread's waited-for copies, for wgmma too
    if constexpr (kSwz) fence_proxy_async();
  };
  const auto wait_rest = [&] {  // load_stage's group 2, visible to the team
    if (split) {
      cp_async_wait<1>();
      landed();
      team_barrier(team);
    }
  };
  const auto wait_own = [&] {  // group 3: the warp's own rows
    if (split) {
      cp_async_wait<0>();
      __syncwarp();
    }
  };
  for (int64_t s0 = i0; s0 < i1;) {
    const int64_t s1 = (s0 / hpg + 1) * hpg < i1 ? (s0 / hpg + 1) * hpg : i1;  // this (chunk, group)'s items
    __syncthreads();  // both teams are done with the previous segment's resident tiles
    if (team == 0) load_resident<E, kSwz>(p, item_of(p, s0), cbs, rs, tid);
    int64_t it = s0 + team;
    Item cur{};
    if (it < s1) {
      cur = item_of(p, it);
      load(cur, st);
      if (p.prefetch && it + 2 < i1) prefetch(skip_n<2>(p, cur));
    }
    cp_async_commit();
    if (split && it < s1) cp_async_wait<2>(); else cp_async_wait<0>();
    landed();
    __syncthreads();  // the resident tiles (team 0's copies) and each team's first stage (group) have landed
    while (it < s1) {
      if (cur.ln > 0) {
        compute(cur, static_cast<const E*>(cbs), static_cast<const E*>(rs), Stage<E>{st}, wait_rest, wait_own);
      } else if (split) {
        cp_async_wait<0>();  // its other groups land before the next load reuses the stage
      }
      team_barrier(team);  // the team is done reading its stage
      it += 2;
      if (it >= s1) break;
      // (found again rather than kept from the prefetch: an Item live across compute spills in B2 at 128 registers)
      cur = skip_n<2>(p, cur);
      load(cur, st);
      if (p.prefetch && it + 2 < i1) prefetch(skip_n<2>(p, cur));
      cp_async_commit();
      if (split) cp_async_wait<2>(); else cp_async_wait<0>();
      landed();
      team_barrier(team);
    }
    s0 = s1;
  }
}

// the walk kernels' dynamic shared memory (kSmemBytes + kStagingBytes); 1024-byte aligned for the swizzled tiles
extern __shared__ __align__(1024) float4 ssd_walk_smem[];

// Warp `warp`'s staging rows (after the walk's kSmemBytes).
template <typename E>
__device__ __forceinline__ E* warp_staging(int warp) {
  return reinterpret_cast<E*>(reinterpret_cast<char*>(ssd_walk_smem) + kSmemBytes) + warp * (16 * kLdP);
}

// The body of a walk kernel of kTeams teams (1: walk_items, 8 warps; 2: walk_items_pingpong, 16 warps): each item's
// stage holds tiles t0 / t1 and the (p, n) tile pn (load_stage; t1_group: t1's cp.async group with split_wait);
// item(it, cbs, rows, stage, warp, lane, sw, wait_rest, wait_own) computes one item, warp being the warp's index in
// its team (its row block) and sw its own staging rows; it reads only pn, a / dt' / D (and t1 in group 1) before
// calling wait_rest(), which every thread of the team calls once (early-returning warps too), and t1 in group 3 only
// after wait_own() (every warp, once, after wait_rest).
// kSwz (two teams only): the swizzled layouts of the wgmma variant (load_stage, load_resident).
template <typename E, int kTeams, bool kSwz = false, typename ItemFn>
__device__ __forceinline__ void run_walk(const SsdWalkParams& w, const void* t0, const void* t1, const void* pn,
                                         int t1_group, ItemFn item) {
  static_assert(!kSwz || kTeams == 2, "the swizzled layouts are walked by two teams");
  const int tid = threadIdx.x, lane = tid & 31, ttid = tid % kThreads, warp = ttid >> 5;
  E* const sw = warp_staging<E>(tid >> 5);
  char* const smem = reinterpret_cast<char*>(ssd_walk_smem);
  const bool split = kTeams == 2 && w.split_wait;
  const auto load = [&](const Item& it, char* st) {
    load_stage<E, kSwz>(w, it, st, t0, t1, pn, ttid, split, t1_group);
  };
  const auto compute = [&](const Item& it, const E* cbs, const E* rs, const Stage<E>& st, const auto& wait_rest,
                           const auto& wait_own) { item(it, cbs, rs, st, warp, lane, sw, wait_rest, wait_own); };
  const auto prefetch = [&](const Item& it) { prefetch_stage<E>(w, it, t0, t1, pn, ttid); };
  if constexpr (kTeams == 1) walk_items<E>(w, smem, load, compute);
  else walk_items_pingpong<E, kSwz>(w, smem, load, compute, prefetch);
}

// Dynamic shared memory of a walk kernel with `teams` teams of 8 warps (1: walk_items, 2: walk_items_pingpong).
constexpr int walk_smem_bytes(int teams) { return kSmemBytes + teams * kStagingBytes; }

// Launch helper: min(items, num_ctas) CTAs of kTeams * kThreads with `smem` bytes of dynamic shared memory
// (walk_smem_bytes(kTeams) but for the ring: kRingSmemBytes); with `pdl`, as a programmatic dependent of the kernel
// launched before it on the stream (the kernel then calls griddep_wait before it reads that kernel's outputs).
template <int kTeams, typename K, typename P>
cudaError_t launch_walk(K kernel, const P& params, const SsdWalkParams& w, cudaStream_t stream,
                        int smem = walk_smem_bytes(kTeams), bool pdl = false) {
  const int64_t total = w.n_slots * w.nheads;
  if (total == 0) return cudaSuccess;
  cudaLaunchConfig_t cfg = {};
  cfg.blockDim = dim3(kTeams * kThreads);
  cfg.gridDim = dim3(unsigned(total < w.num_ctas ? total : w.num_ctas));
  cfg.dynamicSmemBytes = size_t(smem);
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  cudaError_t e = opt_in_smem(kernel, smem, "the SSD head-walk stage");
  if (e == cudaSuccess) e = cudaLaunchKernelEx(&cfg, kernel, params);
  return e == cudaSuccess ? cudaGetLastError() : e;
}

}  // namespace ssd_walk
}  // namespace mamba_kernels
