// A lab, not called by the library (docs/ssd_fused_walk_design.md, lab steps 1 and 2): the chunked SSD forward's
// state stage (F1) and output stage (F2) as one walk a (sequence, head), chunk 64, sm_90a, bf16, p 64, n 128, no
// varlen, h_in not written (a forward without autograd). Parameters: SsdFusedWalkParams in ssd.h; launcher
// ssd_fused_walk_cuda (ssd_walk.cu); Python: mamba_kernels/ssd/cuda_walk.py's fused_walk_lab.
//
// Why: F1 + F2 move ~1,010 MB at shape 1 (x read twice, h_in written and read back); a walk that computes a chunk's
// outputs from the state it carries and then advances the state reads x and z once and keeps h_in on chip (504 MB).
// This lab measures that structure's pace before anything else is built on it.
//
// A CTA has 256 threads, warps 0-3 the output warpgroup, warps 4-7 the state warpgroup, and walks either one
// (sequence, head) (num_ctas 0: blockIdx.x = r h + hh; shape 1's 320 walks then leave an uneven last wave) or an even
// share of all walks' chunk steps (FusedPieces: a walk split between two CTAs hands its state on through global
// memory, without a wait in the common case). Per step (a chunk of a walk):
// - The state warpgroup keeps S (64 p x 128 n, fp32) as wgmma accumulators (d[j][e]: p 16 w + g + 8 (e / 2), n 8 j +
//   2 q + e % 2). For step c (S = h_in of chunk c, already staged as bf16 in `pn`, F2's (p, n) tile layout): it scales
//   x_c into x' (row t times w_t = exp(a_L - a_t) dt'_t, a_L = a at the chunk's last token), S = exp(a_L) S + x'^T B_c
//   (wgmma m64n128k16, A = x' and B = B_c both MN-major), then, once the output warpgroup's C h_in^T of chunk c has
//   read `pn`, stages S as h_in of step c + 1 (after a piece's last chunk: the next piece's start state), and once
//   step c's outputs are done, fills the freed stage with step c + 2 (cp.async). After a walk's last chunk S is its
//   final state; after a piece that ends inside a walk, the state the next CTA takes.
// - The output warpgroup computes chunk c's 64 x 64 outputs as F2's item does (scan_causal's factored decays, warp w
//   owning rows 16 w ..): C h_in^T on wgmma (m64n64k16, A = C_c K-major, B = `pn`), the chunk's C B^T (K1's, chunk 64)
//   and z as fragments loaded from global memory into registers while that product runs (z prefetched into L2 with
//   the step's stage fill, two steps ahead), outputs stored from the fragments.
// Shared memory (108,896 bytes: two CTAs an SM): two stages of C_c and B_c (64 t x 128 n, two 64-n blocks of 8 KB,
// 128-byte swizzled), x_c (64 t x 64 p, 128-byte rows, swizzled) and a / dt' (64 floats each); `pn` (16 KB); x'
// (8 KB); D (64 floats); six mbarriers: full[2] (the state warpgroup's 128 cp.async arrivals), empty[2] (the output
// warpgroup's 128 arrivals after a chunk), pn_full (128: h_in staged), pn_empty (128: C h_in^T has read it).
#pragma once
#include "common/cp_async.h"
#include "common/tma.h"
#include "ssd/ssd_scan_kernel.cuh"

namespace mamba_kernels {
namespace ssd_walk {

constexpr int kFQ = int(kSsdFusedChunk);
constexpr int kFTileBytes = kFQ * kN * 2;  // C or B of a chunk
constexpr int kFXBytes = kFQ * kP * 2;     // x of a chunk (and x')
constexpr int kFStageBytes = (2 * kFTileBytes + kFXBytes + 2 * kFQ * 4 + 1023) / 1024 * 1024;
constexpr int kFPnOff = 2 * kFStageBytes, kFXpOff = kFPnOff + kPnSwzBytes, kFDOff = kFXpOff + kFXBytes;
constexpr int kFBarOff = kFDOff + kP * 4, kFPiecesOff = kFBarOff + 6 * 8;
constexpr int kFSmemBytes = kFPiecesOff + 48;  // + FusedPieces
static_assert(kFStageBytes % 1024 == 0 && kFPnOff % 1024 == 0 && kFXpOff % 1024 == 0, "swizzled tiles 1 KB aligned");
static_assert(2 * (kFSmemBytes + 1024) <= 233472, "two CTAs an SM (228 KB, 1 KB reserved a CTA)");

// Chunk c of a walk: its first token (b l index), its offset in the (b, h, l) rows, its valid tokens (1..64), the head
// and its group, the chunk's C B^T slot (r nch + c).
struct FusedChunk {
  int64_t tok0, ab, slot;
  int ln, hh, grp;
};

// The CTA's share of the steps (walk, chunk) of every walk in walk-then-chunk order, [k T / G, (k + 1) T / G) for
// CTA k of G (T = walks x nch: even shares, lab step 2), as pieces of walks: the range's first walk wa from chunk ca,
// whole walks, its last walk wb up to chunk cb. Processing order: wb's head piece first when the range ends inside
// wb (it starts from the walk's initial state and publishes the state at chunk cb for CTA k + 1), then the whole
// walks, then wa's piece (from chunk ca: CTA k - 1 published that state when it started, long before). A range
// inside one walk is one piece that waits for its predecessor (walks longer than a share: a chain of hand-offs).
struct FusedPieces {
  int64_t wa, wb;
  int ca, cb, nch, n;
  int steps;  // the CTA's steps, s1 - s0
  bool head_first;
  __device__ __forceinline__ void get(int i, int64_t& w, int& c0, int& c1) const {
    if (wa == wb) {
      w = wa, c0 = ca, c1 = cb;
      return;
    }
    if (head_first) {
      if (i == 0) {
        w = wb, c0 = 0, c1 = cb;
        return;
      }
      --i;
    }
    const int64_t whole = wb - wa - (head_first ? 1 : 0);  // wa + 1 .., wb too when it ends whole
    if (i < whole) w = wa + 1 + i, c0 = 0, c1 = nch;
    else w = wa, c0 = ca, c1 = nch;
  }
};
static_assert(sizeof(FusedPieces) <= 48, "the pieces' slot in shared memory");
__device__ __forceinline__ FusedPieces fused_pieces(int64_t walks, int nch, int64_t k, int64_t G) {
  const int64_t T = walks * nch, s0 = k * T / G, s1 = (k + 1) * T / G;
  FusedPieces P{0, 0, 0, 0, nch, 0, int(s1 - s0), false};
  if (s0 >= s1) return P;
  P.wa = s0 / nch, P.ca = int(s0 % nch), P.wb = (s1 - 1) / nch, P.cb = int((s1 - 1) % nch) + 1;
  P.head_first = P.wa != P.wb && P.cb < nch;
  P.n = P.wa == P.wb ? 1 : int(P.wb - P.wa) + 1;
  return P;
}
// A position in the pieces: piece i, walk w (sequence r, head hh of group grp), chunk c of [c0, c1). The walk's
// fields are divided out once a piece (fused_walk_fields), not once a step: 64-bit divisions are subroutine calls.
struct FusedCursor {
  int64_t w;
  int i, c, c0, c1, r, hh, grp;
};
__device__ __forceinline__ void fused_walk_fields(const SsdFusedWalkParams& p, FusedCursor& u) {
  u.r = int(u.w / p.nheads);
  u.hh = int(u.w - int64_t(u.r) * p.nheads);
  u.grp = int(u.hh / (p.nheads / p.ngroups));
}
__device__ __forceinline__ FusedCursor fused_first(const SsdFusedWalkParams& p, const FusedPieces& P) {
  FusedCursor u{0, 0, 0, 0, 0, 0, 0, 0};
  P.get(0, u.w, u.c0, u.c1);
  u.c = u.c0;
  fused_walk_fields(p, u);
  return u;
}
__device__ __forceinline__ void fused_next(const SsdFusedWalkParams& p, const FusedPieces& P, FusedCursor& u) {
  if (++u.c < u.c1 || u.i + 1 >= P.n) return;
  P.get(++u.i, u.w, u.c0, u.c1);
  u.c = u.c0;
  fused_walk_fields(p, u);
}
__device__ __forceinline__ FusedChunk fused_chunk(const SsdFusedWalkParams& p, const FusedCursor& u, int nch) {
  const int64_t start = int64_t(u.c) * kFQ, left = p.seqlen - start;
  return FusedChunk{int64_t(u.r) * p.seqlen + start, u.w * p.seqlen + start, int64_t(u.r) * nch + u.c,
                    int(left < kFQ ? left : kFQ), u.hh, u.grp};
}

// Element (p, n) of a (64, 128) state, p n-major, that this thread of the state warpgroup holds as S[j][e]
// (wgmma's accumulator order: p = 16 (t / 32) + g + 8 (e / 2), n = 8 j + 2 q + e % 2).
// The thread's index is read afresh (fresh_tid): offsets derived from a kept one were hoisted out of the walk's loop
// beside S and spilled.
__device__ __forceinline__ int fused_s_off(int j, int e) {
  const int t = fresh_tid() - 128;
  return (16 * (t >> 5) + ((t & 31) >> 2) + 8 * (e >> 1)) * kN + 8 * j + 2 * (t & 3) + (e & 1);
}

// The state hand-off between CTAs (scratch (walks, 64, 128) fp32; flags (walks) int32, 0 between calls, = c (> 0) once
// the walk's state at chunk c, the end of a piece, is there, 0 again once its reader has it): the state warpgroup's 128
// threads, named barrier 2. The flag names the chunk because a walk longer than a share is a chain of hand-offs
// through one slot: with a bare "set" flag, CTA k + 2 could take the state CTA k published for CTA k + 1 (session 41).
__device__ __forceinline__ void fused_publish(const SsdFusedWalkParams& p, int64_t w, int c, const float (&S)[16][4],
                                              int t) {
  float* dst = p.scratch + w * int64_t(kP * kN);
#pragma unroll
  for (int j = 0; j < 16; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) dst[fused_s_off(j, e)] = S[j][e];
#if defined(__CUDA_ARCH__)
  __threadfence();
#endif
  named_bar_sync<128>(2);
  if (t == 0) {
#if defined(__CUDA_ARCH__)
    asm volatile("st.release.gpu.global.s32 [%0], %1;\n" ::"l"(p.flags + w), "r"(c) : "memory");
#else
#if defined(MK_CUDA_EMU)
    if (p.flags[w] != 0) cuda_emu::fail("fused walk: a hand-off published over one not yet taken");
#endif
    p.flags[w] = c;
#endif
  }
}
__device__ __forceinline__ void fused_take(const SsdFusedWalkParams& p, int64_t w, int c, float (&S)[16][4], int t) {
  if (t == 0) {
#if defined(__CUDA_ARCH__)
    int v;
    do {
      asm volatile("ld.acquire.gpu.global.s32 %0, [%1];\n" : "=r"(v) : "l"(p.flags + w) : "memory");
    } while (v != c);
#elif defined(MK_CUDA_EMU)  // CTAs run one after another: the predecessor has published already
    if (p.flags[w] != c) cuda_emu::fail("fused walk: a hand-off read before its predecessor published it");
#endif
  }
  named_bar_sync<128>(2);
  const float* src = p.scratch + w * int64_t(kP * kN);
#pragma unroll
  for (int j = 0; j < 16; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float* a = src + fused_s_off(j, e);
#if defined(__CUDA_ARCH__)
      S[j][e] = __ldcg(a);
#else
      S[j][e] = *a;
#endif
    }
  // the flag back to 0 (this CTA is the state's only reader): the flags are all 0 again when the kernel ends, so a
  // call (a CUDA graph's replay too) starts from cleared flags without a memset
  named_bar_sync<128>(2);
  if (t == 0) p.flags[w] = 0;
}
// S at the start of a piece of walk w at chunk c0: the initial state (or 0) at chunk 0, else the hand-off.
__device__ __forceinline__ void fused_start(const SsdFusedWalkParams& p, int64_t w, int c0, float (&S)[16][4], int t) {
  if (c0 > 0) {
    fused_take(p, w, c0, S, t);
    return;
  }
#pragma unroll
  for (int j = 0; j < 16; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e)
      S[j][e] = p.init == nullptr ? 0.f : p.init[w * int64_t(kP * kN) + fused_s_off(j, e)];
}

// Stage fill by the state warpgroup's thread t (0..127, read afresh: fresh_tid, so that the fill's addresses are not
// kept live beside S across the walk's loop, where they spilled): C and B rows (64 x 16 chunks of 16 bytes each), x
// rows (64 x 8), a / dt'; rows past ln as zeros; then the thread's arrival on `full` once its copies have landed, and
// an L2 prefetch of the step's z rows.
template <typename E>
__device__ __forceinline__ void fused_fill(const SsdFusedWalkParams& p, const FusedChunk& ch, char* st,
                                           uint64_t* full) {
  const int grp = ch.grp, hh = ch.hh;
  const int t = fresh_tid() - 128;
  const int64_t gn = p.ngroups * kN, hp = p.nheads * kP;
  const E* C = static_cast<const E*>(p.C) + ch.tok0 * gn + grp * kN;
  const E* B = static_cast<const E*>(p.B) + ch.tok0 * gn + grp * kN;
#pragma unroll
  for (int u = 0; u < 8; ++u) {
    const int i = t + 128 * u, r = i >> 4, cc = i & 15;
    const bool ok = r < ch.ln;
    const uint32_t off = uint32_t(cc >> 3) * 8192u + sw128_offset(r, 16 * (cc & 7));
    const int64_t src = ok ? r * gn + 8 * cc : 0;
    cp_async16_zfill(st + off, C + src, ok);
    cp_async16_zfill(st + kFTileBytes + off, B + src, ok);
  }
  const E* X = static_cast<const E*>(p.x) + ch.tok0 * hp + hh * kP;
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    const int i = t + 128 * u, r = i >> 3, cc = i & 7;
    const bool ok = r < ch.ln;
    cp_async16_zfill(st + 2 * kFTileBytes + sw128_offset(r, 16 * cc), X + (ok ? r * hp + 8 * cc : 0), ok);
  }
  const int r = t & (kFQ - 1);
  const bool ok = r < ch.ln;
  float* const rows = reinterpret_cast<float*>(st + 2 * kFTileBytes + kFXBytes);  // a, then dt'
  cp_async4_zfill(rows + t, (t < kFQ ? p.a : p.dtp) + (ok ? ch.ab + r : 0), ok);
  cp_async_mbar_arrive_noinc(full);
  // the step's z rows into L2 (a 128-byte line a thread): the output warpgroup loads them straight into registers
  if (p.z != nullptr && t < ch.ln) prefetch_l2(static_cast<const E*>(p.z) + (ch.tok0 + t) * hp + hh * kP);
}

// S (the state warpgroup's accumulators) as bf16 into the (p, n) tile `pn` (pn_swz_at's layout); the thread's warp
// and lane read afresh (fresh_tid: their addresses, hoisted out of the walk's loop, spilled beside S).
__device__ __forceinline__ void fused_stage_pn(char* pn, const float (&S)[16][4]) {
  const int tid = fresh_tid(), w = (tid >> 5) & 3, g = (tid & 31) >> 2, q = tid & 3;
#pragma unroll
  for (int j = 0; j < 16; ++j)
#pragma unroll
    for (int hf = 0; hf < 2; ++hf)
      *reinterpret_cast<uint32_t*>(pn + (j >> 3) * 8192 + sw128_offset(16 * w + g + 8 * hf, 16 * (j & 7) + 4 * q)) =
          ssd_cuda::pack_bf16(S[j][2 * hf], S[j][2 * hf + 1]);
}

// x' = x_c row t times exp(a_L - a_t) dt'_t (thread t of the state warpgroup, read afresh: half a row, four 16-byte
// chunks).
__device__ __forceinline__ void fused_scale_x(char* xp, const char* xs, const float* as, const float* dts, float aL) {
  const int t = fresh_tid() - 128, r = t >> 1, c0 = (t & 1) * 4;
  const float w = decay_exp(aL * kLog2e, as[r]) * dts[r];
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    const uint32_t off = sw128_offset(r, 16 * (c0 + u));
    uint4 v = *reinterpret_cast<const uint4*>(xs + off);
    v.x = scale_pair(v.x, w, w);
    v.y = scale_pair(v.y, w, w);
    v.z = scale_pair(v.z, w, w);
    v.w = scale_pair(v.w, w, w);
    *reinterpret_cast<uint4*>(xp + off) = v;
  }
}

__device__ __forceinline__ uint32_t fused_ld32(const void* p) { return *static_cast<const uint32_t*>(p); }

// The factored column weights of an earlier block's columns s, s + 1, s + 8, s + 9 against row m (a_m2 = a_m log2 e):
// exp(a_m - a_s) dt'_s (<= dt'_s: s < m).
__device__ __forceinline__ void fused_col_weights(float (&u)[4], const float* as, const float* dts, float a_m2, int s) {
  u[0] = decay_exp(a_m2, as[s]) * dts[s];
  u[1] = decay_exp(a_m2, as[s + 1]) * dts[s + 1];
  u[2] = decay_exp(a_m2, as[s + 8]) * dts[s + 8];
  u[3] = decay_exp(a_m2, as[s + 9]) * dts[s + 9];
}

// The output warp's causal part (scan_causal's factored decays) with the chunk's C B^T in registers:
// earlier(sb, u0, u1, u8, u9) gives block sb's A fragment (sb < tb) with its columns 2 q, 2 q + 1, 2 q + 8, 2 q + 9
// weighted by u0, u1, u8, u9; diag(k, t, s, a_t2, a_s0, a_s1, d0, d1) register k of the diagonal block's (rows g /
// g + 8 for k 0 / 1 and 2 / 3, columns 2 q / 2 q + 8 for k 0, 1 / 2, 3), masked to s <= t < ln and decayed.
template <typename E, typename Earlier, typename Diag>
__device__ __forceinline__ void fused_causal(float (&acc)[8][4], const Earlier& earlier, const Diag& diag,
                                             const char* xs, const float* as, const float* dts, int t0, int tb, int ln,
                                             int lane) {
  const E* x = reinterpret_cast<const E*>(xs);
  const int q = lane & 3, tA = t0 + (lane >> 2), tB = tA + 8;
  const float a_m = as[t0], a_m2 = a_m * kLog2e;
  scale_acc(acc, __expf(a_m));
#pragma unroll
  for (int sb = 0; sb < 3; ++sb) {
    if (sb >= tb) break;
    float u[4];
    fused_col_weights(u, as, dts, a_m2, 16 * sb + 2 * q);
    a_times_tile<E, true>(acc, earlier(sb, u[0], u[1], u[2], u[3]), x, 16 * sb, lane);
  }
  const float a_tA = as[tA], a_tB = as[tB];
  scale_acc_rows(acc, tA < ln ? __expf(a_tA - a_m) : 0.f, tB < ln ? __expf(a_tB - a_m) : 0.f);
  const int s = t0 + 2 * q;
  const float as0 = as[s], as1 = as[s + 1], as8 = as[s + 8], as9 = as[s + 9];
  const float d0 = dts[s], d1 = dts[s + 1], d8 = dts[s + 8], d9 = dts[s + 9];
  const float a_tA2 = a_tA * kLog2e, a_tB2 = a_tB * kLog2e;
  typename Frag<E>::A af;
  af.r[0] = diag(0, tA, s, a_tA2, as0, as1, d0, d1);
  af.r[1] = diag(1, tB, s, a_tB2, as0, as1, d0, d1);
  af.r[2] = diag(2, tA, s + 8, a_tA2, as8, as9, d8, d9);
  af.r[3] = diag(3, tB, s + 8, a_tB2, as8, as9, d8, d9);
  a_times_tile<E, true>(acc, af, x, t0, lane);
}

// causal_pair on fp32 values (the in-kernel C B^T's accumulators): (lo, hi) at columns s, s + 1 of row t times
// exp(a_t - a_s) dt'_s where s <= t < ln, else 0 (a select: the values above the diagonal are never multiplied in).
__device__ __forceinline__ uint32_t causal_pair_f32(float lo, float hi, int t, int s, float a_t2, float a_s0,
                                                    float a_s1, float d0, float d1, int ln) {
  lo = (s <= t && t < ln) ? lo * decay_exp(a_t2, a_s0) * d0 : 0.f;
  hi = (s + 1 <= t && t < ln) ? hi * decay_exp(a_t2, a_s1) * d1 : 0.f;
  return ssd_cuda::pack_bf16(lo, hi);
}

// kCausalWg: the causal part on wgmma with A from registers, every warp's rows at once (the per-warp mma.sync of
// fused_causal gives warp 3 three earlier blocks and warp 0 none; the warpgroup waits for the slowest). acc: C h_in^T;
// cba: the chunk's C B^T (fp32 accumulators). y_t = exp(a_t) (C h_in^T)_t + sum_{s <= t} exp(a_t - a_s) dt'_s
// (C B^T)_ts x_s: the weights go into the A fragments before their bf16 rounding, for earlier blocks factored as
// exp(a_t - a_m) exp(a_m - a_s) dt'_s (m: the warp's first row; both factors <= 1 / dt'), exact and masked on the
// diagonal block, zeros above it. Rows past ln get zeros (their outputs are not stored). Warpgroup-wide: every
// warp calls it.
template <typename E>
__device__ __forceinline__ void fused_causal_wg(float (&acc)[8][4], const float (&cba)[8][4], const char* xs,
                                                const float* as, const float* dts, int t0, int tb, int ln, int lane) {
  const int q = lane & 3, tA = t0 + (lane >> 2), tB = tA + 8;
  const float a_m = as[t0], a_m2 = a_m * kLog2e, a_tA = as[tA], a_tB = as[tB];
  const float rA = tA < ln ? __expf(a_tA - a_m) : 0.f, rB = tB < ln ? __expf(a_tB - a_m) : 0.f;
  scale_acc_rows(acc, tA < ln ? __expf(a_tA) : 0.f, tB < ln ? __expf(a_tB) : 0.f);
  const float a_tA2 = a_tA * kLog2e, a_tB2 = a_tB * kLog2e;
  uint32_t af[4][4];
#pragma unroll
  for (int sb = 0; sb < 4; ++sb) {
    const int s = 16 * sb + 2 * q;
    const float* lo = cba[2 * sb];
    const float* hi = cba[2 * sb + 1];
    if (sb < tb) {
      float u[4];
      fused_col_weights(u, as, dts, a_m2, s);
      af[sb][0] = ssd_cuda::pack_bf16(lo[0] * (u[0] * rA), lo[1] * (u[1] * rA));
      af[sb][1] = ssd_cuda::pack_bf16(lo[2] * (u[0] * rB), lo[3] * (u[1] * rB));
      af[sb][2] = ssd_cuda::pack_bf16(hi[0] * (u[2] * rA), hi[1] * (u[3] * rA));
      af[sb][3] = ssd_cuda::pack_bf16(hi[2] * (u[2] * rB), hi[3] * (u[3] * rB));
    } else if (sb == tb) {
      const float as0 = as[s], as1 = as[s + 1], as8 = as[s + 8], as9 = as[s + 9];
      const float d0 = dts[s], d1 = dts[s + 1], d8 = dts[s + 8], d9 = dts[s + 9];
      af[sb][0] = causal_pair_f32(lo[0], lo[1], tA, s, a_tA2, as0, as1, d0, d1, ln);
      af[sb][1] = causal_pair_f32(lo[2], lo[3], tB, s, a_tB2, as0, as1, d0, d1, ln);
      af[sb][2] = causal_pair_f32(hi[0], hi[1], tA, s + 8, a_tA2, as8, as9, d8, d9, ln);
      af[sb][3] = causal_pair_f32(hi[2], hi[3], tB, s + 8, a_tB2, as8, as9, d8, d9, ln);
    } else {
      af[sb][0] = af[sb][1] = af[sb][2] = af[sb][3] = 0u;
    }
  }
  wgmma_fence();  // acc rescaled and af written by ordinary instructions
#pragma unroll
  for (int sb = 0; sb < 4; ++sb) wgmma_rs_bf16_n64<true, true>(acc, af[sb], wg_desc<128>(xs + 2048 * sb));
  wgmma_commit();
  wgmma_wait<0>();
}

// The output warp's epilogue: y += D x (x pairs by ldmatrix from the swizzled tile), out = y silu(z) (z fragments
// zr[half][j]), rows < ln stored from the fragments (out: the warp's first row).
template <typename E>
__device__ __forceinline__ void fused_epilogue(const float (&acc)[8][4], const char* xs, const float* Ds,
                                               const uint32_t (&zr)[2][8], bool has_z, E* out, int64_t hp, int t0,
                                               int ln, int lane) {
  const int g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    uint32_t xw[8];
#pragma unroll
    for (int jj = 0; jj < 2; ++jj)
      ssd_cuda::ldsm_x4(*reinterpret_cast<uint32_t(*)[4]>(xw + 4 * jj),
                        xs + sw128_chunk(t0 + 8 * hf + (lane & 7), 4 * jj + (lane >> 3), lane & 7));
    const bool store = t0 + g + 8 * hf < ln;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int c = 8 * j + 2 * q;
      float x0, x1;
      unpack_bf16x2(xw[j], x0, x1);
      float y0 = acc[j][2 * hf] + Ds[c] * x0, y1 = acc[j][2 * hf + 1] + Ds[c + 1] * x1;
      if (has_z) {
        float z0, z1;
        unpack_bf16x2(zr[hf][j], z0, z1);
        y0 *= silu_lab(z0);
        y1 *= silu_lab(z1);
      }
      if (store) *reinterpret_cast<uint32_t*>(out + (g + 8 * hf) * hp + c) = ssd_cuda::pack_bf16(y0, y1);
    }
  }
}

// kLab (MK_SSD_FUSED_LAB, timing only, wrong results by design): bit 0: the state warpgroup skips the x scaling and
// the update (S stays its piece's start state; the staging, fills and hand-offs run), bit 1: the output warpgroup
// skips the causal part and the epilogue (C h_in^T, the loads and the barriers run): the pace of each side alone.
// kCbIn (p.cb null): the chunk's C B^T on wgmma in the kernel instead of K1's from global memory; kCausalWg (with
// kCbIn; MK_SSD_FUSED_CAUSAL_WG=1): its causal part on wgmma (fused_causal_wg).
template <typename E, int kLab = 0, bool kCbIn = false, bool kCausalWg = false>
__global__ void __launch_bounds__(256, 2) ssd_fused_walk_kernel(const SsdFusedWalkParams p) {
#if defined(MK_WGMMA_DEVICE) || !defined(__CUDA_ARCH__)
  char* const smem = reinterpret_cast<char*>(ssd_walk_smem);
  char* const pn = smem + kFPnOff;
  char* const xp = smem + kFXpOff;
  float* const Ds = reinterpret_cast<float*>(smem + kFDOff);
  uint64_t* const bars = reinterpret_cast<uint64_t*>(smem + kFBarOff);
  uint64_t *const full = bars, *const empty = bars + 2, *const pn_full = bars + 4, *const pn_empty = bars + 5;
  const int tid = threadIdx.x, lane = tid & 31;
  const int nch = int((p.seqlen + kFQ - 1) / kFQ);
  // the CTA's pieces, kept in shared memory: read where used rather than held in registers beside S (they spilled)
  FusedPieces& P = *reinterpret_cast<FusedPieces*>(smem + kFPiecesOff);
  if (tid == 0) P = fused_pieces(p.batch * p.nheads, nch, blockIdx.x, gridDim.x);
  __syncthreads();
  if (P.n == 0) return;
  // the CTA's step count, read from shared memory where used (kept in a register beside S, it spilled: a local load
  // a step on the loop's exit test, ncu session 41)
  const int& J = P.steps;
  const int64_t hp = p.nheads * kP;
  const auto stage = [&](int j) { return smem + (j & 1) * kFStageBytes; };
  if (tid == 0)
    for (int i = 0; i < 6; ++i) mbar_init(bars + i, 128);
  __syncthreads();
  if (tid >= 128) {  // the state warpgroup
    const int t = tid - 128;
    float S[16][4];
    FusedCursor u = fused_first(p, P);
    fused_start(p, u.w, u.c0, S, t);
    fused_fill<E>(p, fused_chunk(p, u, nch), stage(0), full);
    if (J > 1) {
      FusedCursor f = u;
      fused_next(p, P, f);
      fused_fill<E>(p, fused_chunk(p, f, nch), stage(1), full + 1);
    }
    fused_stage_pn(pn, S);
    fence_proxy_async();
    mbar_arrive(pn_full);
    for (int j = 0; j < J; ++j) {
      const FusedChunk ch = fused_chunk(p, u, nch);
      char* const st = stage(j);
      const float* as = reinterpret_cast<const float*>(st + 2 * kFTileBytes + kFXBytes);
      mbar_wait(full + (j & 1), unsigned(j >> 1) & 1u);  // step j's tiles (this warpgroup's copies)
      if constexpr ((kLab & 1) == 0) {
        const float aL = as[ch.ln - 1];
        fused_scale_x(xp, st + 2 * kFTileBytes, as, as + kFQ, aL);
        fence_proxy_async();  // x' and the landed B tile, for wgmma
        named_bar_sync<128>(2);
        const float fL = __expf(aL);
#pragma unroll
        for (int jj = 0; jj < 16; ++jj)
#pragma unroll
          for (int e = 0; e < 4; ++e) S[jj][e] *= fL;
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < kFQ / 16; ++kk)
          wgmma_ss_bf16<true, true, true>(S, wg_desc<128>(xp + 2048 * kk),
                                          wg_desc<128>(st + kFTileBytes + 2048 * kk, 8192));
        wgmma_commit();
        wgmma_wait<0>();
        named_bar_sync<128>(2);  // every warp's part of the product is done: x' may be rewritten
      }
      if (u.c + 1 == u.c1) {   // the piece's last chunk: its state to the next CTA, or the walk's final state
        if (u.c1 < nch) fused_publish(p, u.w, u.c1, S, t);
        else if (p.final_states != nullptr)
#pragma unroll
          for (int jj = 0; jj < 16; ++jj)
#pragma unroll
            for (int e = 0; e < 4; ++e)
              p.final_states[u.w * int64_t(kP * kN) + fused_s_off(jj, e)] = S[jj][e];
        if (j + 1 < J) {
          fused_next(p, P, u);
          fused_start(p, u.w, u.c0, S, t);
        }
      } else {
        fused_next(p, P, u);
      }
      if (j + 1 < J) {  // h_in of step j + 1, once step j's C h_in^T has read pn
        mbar_wait(pn_empty, unsigned(j) & 1u);
        fused_stage_pn(pn, S);
        fence_proxy_async();
        mbar_arrive(pn_full);
      }
      if (j + 2 < J) {  // step j + 2 (u is at j + 1 now) into this stage, once step j's outputs are done
        mbar_wait(empty + (j & 1), unsigned(j >> 1) & 1u);
        FusedCursor f = u;
        fused_next(p, P, f);
        fused_fill<E>(p, fused_chunk(p, f, nch), st, full + (j & 1));
      }
    }
    cp_async_wait_all();
  } else {  // the output warpgroup: warp w owns rows 16 w .. 16 w + 15 of a chunk
    const int w = tid >> 5, t0 = 16 * w, g = lane >> 2, q = lane & 3;
    const E* const zg = static_cast<const E*>(p.z);
    FusedCursor u = fused_first(p, P);
    int dhead = -1;  // the head whose D the warpgroup holds
    for (int j = 0; j < J; ++j, fused_next(p, P, u)) {
      const FusedChunk ch = fused_chunk(p, u, nch);
      const char* const st = stage(j);
      if (ch.hh != dhead) {  // a new walk: its head's D (the warpgroup's own barrier: every reader is past the last)
        named_bar_sync<128>(1);
        if (tid < kP) Ds[tid] = p.D == nullptr ? 0.f : p.D[p.D_per_channel ? ch.hh * kP + tid : ch.hh];
        named_bar_sync<128>(1);
        dhead = ch.hh;
      }
      // The step's global loads first, their latency behind the waits below (issued after the waits, they stalled the
      // epilogue: ncu, session 41): C B^T, K1's (the chunk's slot, group grp) as fragments, or (kCbIn) on wgmma from
      // the stage's C and B tiles beside C h_in^T (no loads, fp32 values weighted before their bf16 rounding); z.
      const E* cbg = static_cast<const E*>(p.cb) + (ch.slot * p.ngroups + ch.grp) * int64_t(kFQ * kFQ);
      const int tA = t0 + g, tB = tA + 8;
      const bool okA = tA < ch.ln, okB = tB < ch.ln;
      uint32_t cbf[3][4], diag[4], zr[2][8];
      float cba[kCbIn ? 8 : 1][4];
      if constexpr (!kCbIn) {
#pragma unroll
        for (int sb = 0; sb < 3; ++sb) {
          const bool on = sb < w;
          const int s = 16 * sb + 2 * q;
          cbf[sb][0] = on && okA ? fused_ld32(cbg + tA * kFQ + s) : 0u;
          cbf[sb][1] = on && okB ? fused_ld32(cbg + tB * kFQ + s) : 0u;
          cbf[sb][2] = on && okA ? fused_ld32(cbg + tA * kFQ + s + 8) : 0u;
          cbf[sb][3] = on && okB ? fused_ld32(cbg + tB * kFQ + s + 8) : 0u;
        }
        diag[0] = okA ? fused_ld32(cbg + tA * kFQ + t0 + 2 * q) : 0u;
        diag[1] = okB ? fused_ld32(cbg + tB * kFQ + t0 + 2 * q) : 0u;
        diag[2] = okA ? fused_ld32(cbg + tA * kFQ + t0 + 2 * q + 8) : 0u;
        diag[3] = okB ? fused_ld32(cbg + tB * kFQ + t0 + 2 * q + 8) : 0u;
      }
      const int64_t orow = ch.tok0 * hp + ch.hh * kP;  // the chunk's first row of x / z / out
#pragma unroll
      for (int hf = 0; hf < 2; ++hf)
#pragma unroll
        for (int jj = 0; jj < 8; ++jj)
          zr[hf][jj] = zg != nullptr && (hf == 0 ? okA : okB)
                           ? fused_ld32(zg + orow + (tA + 8 * hf) * hp + 8 * jj + 2 * q)
                           : 0u;
      mbar_wait(full + (j & 1), unsigned(j >> 1) & 1u);
      mbar_wait(pn_full, unsigned(j) & 1u);
      fence_proxy_async();  // the stage's copies and the staged pn, for wgmma
      // C h_in^T, and (kCbIn) C B^T (t, s) = C_t . B_s with the B tile as the K-major B operand (rows s, n
      // contiguous): F2's product on the 64-row tiles (8 KB n blocks); both groups waited for together
      const E* const ct = reinterpret_cast<const E*>(st);
      float acc[8][4];
      rows_times_pn_wgmma<E, 8192>(acc, ct, reinterpret_cast<const E*>(pn), w);
      if constexpr (kCbIn) rows_times_pn_wgmma<E, 8192>(cba, ct, reinterpret_cast<const E*>(st + kFTileBytes), w);
      wgmma_wait<0>();
      mbar_arrive(pn_empty);
      if constexpr (kCausalWg) {
        static_assert(kCbIn, "the causal part on wgmma takes the in-walk C B^T");
        if constexpr ((kLab & 2) == 0) {
          const char* xs = st + 2 * kFTileBytes;
          const float* as = reinterpret_cast<const float*>(xs + kFXBytes);
          fused_causal_wg<E>(acc, cba, xs, as, as + kFQ, t0, w, ch.ln, lane);
          if (t0 < ch.ln)
            fused_epilogue<E>(acc, xs, Ds, zr, zg != nullptr, static_cast<E*>(p.out) + orow + t0 * hp, hp, t0, ch.ln,
                              lane);
        }
      } else if ((kLab & 2) == 0 && t0 < ch.ln) {
        const char* xs = st + 2 * kFTileBytes;
        const float* as = reinterpret_cast<const float*>(xs + kFXBytes);
        if constexpr (kCbIn) {
          float dv[8];  // the diagonal block's accumulators (block w: tiles 2 w, 2 w + 1)
#pragma unroll
          for (int sb = 0; sb < 4; ++sb)
            if (sb == w)
#pragma unroll
              for (int e = 0; e < 4; ++e) dv[e] = cba[2 * sb][e], dv[4 + e] = cba[2 * sb + 1][e];
          const auto earlier = [&](int sb, float u0, float u1, float u8, float u9) {
            typename Frag<E>::A af;
            af.r[0] = ssd_cuda::pack_bf16(cba[2 * sb][0] * u0, cba[2 * sb][1] * u1);
            af.r[1] = ssd_cuda::pack_bf16(cba[2 * sb][2] * u0, cba[2 * sb][3] * u1);
            af.r[2] = ssd_cuda::pack_bf16(cba[2 * sb + 1][0] * u8, cba[2 * sb + 1][1] * u9);
            af.r[3] = ssd_cuda::pack_bf16(cba[2 * sb + 1][2] * u8, cba[2 * sb + 1][3] * u9);
            return af;
          };
          const auto diagf = [&](int k, int t, int s, float a_t2, float a0, float a1, float d0, float d1) {
            return causal_pair_f32(dv[2 * k], dv[2 * k + 1], t, s, a_t2, a0, a1, d0, d1, ch.ln);  // k: dv 2 k, + 1
          };
          fused_causal<E>(acc, earlier, diagf, xs, as, as + kFQ, t0, w, ch.ln, lane);
        } else {
          const auto earlier = [&](int sb, float u0, float u1, float u8, float u9) {
            typename Frag<E>::A af;
            af.r[0] = scale_pair(cbf[sb][0], u0, u1);
            af.r[1] = scale_pair(cbf[sb][1], u0, u1);
            af.r[2] = scale_pair(cbf[sb][2], u8, u9);
            af.r[3] = scale_pair(cbf[sb][3], u8, u9);
            return af;
          };
          const auto diagf = [&](int k, int t, int s, float a_t2, float a0, float a1, float d0, float d1) {
            return causal_pair(diag[k], t, s, a_t2, a0, a1, d0, d1, ch.ln);
          };
          fused_causal<E>(acc, earlier, diagf, xs, as, as + kFQ, t0, w, ch.ln, lane);
        }
        fused_epilogue<E>(acc, xs, Ds, zr, zg != nullptr, static_cast<E*>(p.out) + orow + t0 * hp, hp, t0, ch.ln,
                          lane);
      }
      mbar_arrive(empty + (j & 1));
    }
  }
#else
  __trap();
#endif
}

}  // namespace ssd_walk
}  // namespace mamba_kernels
