// Mamba-2 SSM verify step as one persistent, warp-specialised kernel (CUDA headers only, no torch; sm_90): the split
// pair's work (verify_m2split_kernel.cuh) in one block an SM, so that the prep work runs beside the state stream
// instead of ahead of it. A lab (MK_VERIFY_KERNEL=ws) until it is measured faster than the pair: correct on the GPU
// (the verify GPU tests forced through it pass on an H200 and an H100, the large-grid sessions at p = n = 128
// included) but slower in the mean so far (H100 b64 k4 ring 16, mean per call / median, 3 prep pairs: 74.5 / 67 us
// against the pair's 73.0 / 67.9 in one run, 77-78 against 73.4-73.6 in another, session 52: level in a call without
// a fold, whose ~3.3 us a unit an SM is the H100's state stream; slower in the folding call, 137-148 us against ~112;
// bench/results/lab/verify-ws-prep-ahead-2026-12-06 and bench/notes/verify_step_2.md). Not yet timed on an H200,
// where the stream is ~1.4x faster and the consumers or the prep pairs would set the pace.
//
// Why: at b64 k4 (h 32, p = n = 128, fp32 state) the pair's prep kernel (~13 us on an H100) runs ahead of the
// stream kernel, and every two-kernel overlap tried made the prep's per-unit chains slower (session 30's overlapping
// pair, session 49's flag hand-over). scripts/lab/verify_ws_probe.cu (bench/results/lab/verify-ws-probe-2026-12-06):
// inside one block an SM, 2-6 pairs of warps running prep-sized chains cost 1-2 us over the stream alone.
//
// Block: 8 consumer warps (threads 0..255), a producer warp (256..287) and `npair` prep pairs of 64 threads
// (kSplitPrepThreads), one block an SM, units v = blockIdx.x, + gridDim.x, ... (v = batch row * H + head), the i-th
// of them "unit i" below.
//   - Producer: unit i's state tile (contiguous: 16 KB bulk copies into the global layout, tc_tile_at<true>), C rows
//     and z rows by bulk copies into stage i & 1 (z: stage i % 3), completing on tile_full[i & 1], once the consumers
//     released unit i - 2 on tile_empty[i & 1]: two units' tiles in flight, and only this warp waits when the copy
//     engine's queue is full (session 50: cp.async issued by the consumers stalled them, 512-byte row copies were
//     slow).
//   - Prep pair pr takes units i = pr, pr + npair, ...: the split pair's prep (control words, ring rows, weights,
//     B . C dots, the state-free part of y, the new tokens' ring / meta writes of a unit that does not fold) with its
//     own shared memory and barrier (named barrier 1 + pr), its record into its shared-memory slot; a unit's input
//     loads (m2prep_load) are issued during the pair's unit before (m2prep_rest's between()), so that a unit's chain
//     has one global round trip of its own (its ring rows) instead of two.
//   - Consumers: wait for unit i's tile; each warp forms the dots S_t = h0 . C_t of its own m-tile rows on tensor
//     cores into registers (m2ws_dots), waits for the unit's record, releases the stage by its own arrival unless the
//     unit folds, and writes its rows' y_t = silu(z_t) (scale_t S_t + yx_t) (m2ws_y). A folding unit's warps then
//     fold (m2ws_fold: each warp's rows from the committed ring rows that the prep pair staged in its area, written
//     over the warp's h0 rows and copied to the state by a bulk copy, after which the warp releases the stage) and
//     write its new tokens' ring rows and meta row. The consumers have no barrier among themselves.
//   - Record slots 2 pr and 2 pr + 1 with a prep area each (the pair's units alternate): mbarriers rec_full (64
//     arrivals: the pair's threads, after their record writes) and rec_empty (256: the consumers, after their last
//     read of the record and the area); the pair waits for a slot before the unit's ring copies into its area (the
//     consumers read only its raw_ring and the record); a padding unit takes the hand-over too (no record).
//     tile_empty counts the 8 consumer warps.
#pragma once
#include "common/mbarrier.h"
#include "common/named_barrier.h"
#include "verify/verify_m2split_kernel.cuh"

namespace mamba_kernels {
namespace verify_kernels {

constexpr int kWsConsumers = 256;  // 8 warps
constexpr int kWsProducer = 32;    // one warp issuing the tiles' bulk copies
constexpr int kWsMaxPairs = 3;     // 256 + 32 + 3 x 64 = 480 threads: 128 registers a thread in one block an SM

// Shared memory (32-bit words): the mbarriers (the records' full / empty x 2 slots x kWsMaxPairs, then the two tile
// stages' full and empty barriers, 8 bytes each), two stages of (state tile: P rows of N fp32 as in global memory,
// tc_tile_at<true>; raw C rows), three of raw z rows (a unit's z is read by its y after the unit two ahead was
// issued), 2 x `npair` record slots (m2split_ws) and as many prep areas (m2_place_common, prep): a pair's j-th unit
// uses record slot 2 pr + (j & 1) and the prep area of the same index, whose staged ring rows a folding unit's fold
// reads (both are free again once the consumers arrived on the slot's rec_empty).
struct M2WsLayout {
  int bars, flag, stage[2], tile, raw_c, raw_z[3], rec, rec_words, prep, prep_words, words;
};
__host__ __device__ __forceinline__ M2WsLayout m2ws_layout(int64_t k, int64_t P, int64_t N, int64_t R, int VT, int VI,
                                                           bool has_z, int npair) {
  const int64_t K1 = k > 0 ? k : 1;
  M2WsLayout l;
  int o = 0;
  l.bars = o; o += 8 * kWsMaxPairs + 8;  // (2 x 2 x kWsMaxPairs + 2 x 2) uint64
  l.flag = o; o += 4;                    // [stage]: the unit's fold decision (MK_VERIFY_WS_EARLY)
  int b = 0;  // offsets inside a stage
  l.tile = b; b += static_cast<int>(P * (N / VT) * 4);
  l.raw_c = b; b += static_cast<int>(K1 * N / VI * 4);
  l.stage[0] = o; o += b;
  l.stage[1] = o; o += b;
  for (int z = 0; z < 3; ++z) {
    l.raw_z[z] = o;
    o += has_z ? static_cast<int>(K1 * P / VI * 4) : 0;
  }
  l.rec_words = m2split_ws(k, R, P).words;
  l.rec = o; o += 2 * npair * l.rec_words;
  M2CommonLayout c;
  l.prep_words = up4(m2_place_common(c, 0, k, P, N, R, VI, true));
  l.prep = o; o += 2 * npair * l.prep_words;
  l.words = o;
  return l;
}
// The shapes the kernel takes beyond the split pair's: every m-tile of a fold has its own consumer warp, and a unit's
// state is contiguous (its tile is copied in pieces of min(kWsTileCopy, the tile's bytes): P and N are powers of two).
constexpr unsigned kWsTileCopy = 16384;
inline bool m2ws_fits(const VerifyStepParams& p) { return p.P <= 16 * (kWsConsumers / 32) && p.st_p == p.N; }

// Timing lab (mode 4, MK_VERIFY_WS_MODE=4 with MK_VERIFY_WS_STAMPS=file; correct results): per block and unit, the
// SM's cycle counter at the consumers' and the prep pair's events (kWsEv* below; thread 0 of each group) into
// stamps[(block * kWsStampUnits + unit) * kWsEvents + event], units past kWsStampUnits unrecorded, and the global
// timer at the block's start / end in the block's unit-0 row (events kWsEvT0 / kWsEvT1). scripts/lab/ws_stamps.py
// reads the file the launcher appends.
constexpr int kWsStampUnits = 32, kWsEvents = 16;
enum : int {
  kWsEvCStart = 0,  // consumers: the unit's iteration starts
  kWsEvCTile,       // its tile, C and z rows landed (the stage's full wait)
  kWsEvCDots,       // the y of thread 0's warp written
  kWsEvCRec,        // its record is ready (after the rec_full wait, which follows the dots)
  kWsEvCEnd,        // the unit done (a folding unit: its new ring rows and meta row written)
  kWsEvPStart,      // prep pair: the unit's work starts (its loads were issued during the pair's unit before)
  kWsEvPSlot,       // the wait for its slot (record and raw_ring) starts, before its ring copies
  kWsEvPSlotOk,     // the slot is free
  kWsEvPEnd,        // the record is written and handed over
  kWsEvT0,          // global timer (ns) at the block's start (unit-0 row)
  kWsEvT1,          // global timer (ns) at the consumers' end (unit-0 row)
  kWsEvCY,          // consumers: the state dots of thread 0's warp done (before the record wait)
  kWsEvCRing,       // a folding unit's new x / B chunks loaded (its ring rows come from the prep pair's area)
  kWsEvCFold,       // its fold done (thread 0's warp: rows written back, the state copy issued and read)
};
__device__ __forceinline__ unsigned long long ws_clock() {
#if defined(__CUDA_ARCH__)
  return static_cast<unsigned long long>(clock64());
#else
  return 0;
#endif
}
__device__ __forceinline__ unsigned long long ws_gtimer() {
#if defined(__CUDA_ARCH__)
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
#else
  return 0;
#endif
}

// State dots S_t = h0 . C_t of one consumer warp's m-tile rows (r0 = 16 warp + g, r1 = r0 + 8; the tile in global
// layout, tc_tile_at<true>) and the draft tokens [8 nt, 8 nt + 8), on tensor cores, into the fragment S (entry e: row
// e < 2 ? r0 : r1, token 8 nt + 2 q + (e & 1)); the k-steps spread over four independent accumulators (one chain of
// dependent mma was most of the dots' 1.5 us a unit with 8 consumer warps an SM, session 50's stamps). Nothing else is
// read: for k <= 8 the dots run before the unit's record is waited for.
template <typename T, typename TI, int N>
__device__ __forceinline__ void m2ws_dots(const uint4* tile, const uint4* raw_c, float (&S)[4], int nt, int k, int P,
                                          int warp, int g, int q) {
  constexpr int VT = SV<T>::V, CPR = N / VT, GC = N / (4 * VT);
  constexpr bool kSplitS = sizeof(T) == 4, kSplitI = sizeof(TI) == 4;  // operands not exact in tf32
  constexpr int NA = GC < 4 ? GC : 4;                                   // independent accumulators
  if (warp * 16 >= P) return;
  const int r0 = warp * 16 + g, r1 = r0 + 8;
  float cf[N / 4], cfl[N / 4];
  load_c_frag<TI, N, VT, kSplitI>(raw_c, nt * 8 + g, k, q, cf, cfl);
  float d[NA][4];
#pragma unroll
  for (int a = 0; a < NA; ++a) d[a][0] = d[a][1] = d[a][2] = d[a][3] = 0.f;
#pragma unroll
  for (int gc = 0; gc < GC; ++gc) {
    float h0[VT], h1[VT];
    SV<T>::unpack(tile[tc_tile_at<true, CPR>(r0, gc * 4 + q)], h0);
    SV<T>::unpack(tile[tc_tile_at<true, CPR>(r1, gc * 4 + q)], h1);
#pragma unroll
    for (int e = 0; e < VT; e += 2)
      mma_acc<kSplitS, kSplitI>(d[gc % NA], h0[e], h1[e], h0[e + 1], h1[e + 1], cf[gc * VT + e], cf[gc * VT + e + 1],
                                cfl[gc * VT + e], cfl[gc * VT + e + 1]);
  }
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    float v = d[0][e];
#pragma unroll
    for (int a = 1; a < NA; ++a) v += d[a][e];
    S[e] = v;
  }
}

// y_t = silu(z_t) (scale_t S_t + yx_t) of one warp's rows and the tokens of n-tile nt (m2ws_dots' fragment S) straight
// from the registers: no shared dots, no block barrier. Every shared load is issued before any output is formed
// (token indices clamped into [0, k); only tokens below k are stored): written output by output, ptxas kept each
// output's loads behind the previous output's silu and store (~1 us a unit on an H100, session 51's stamps).
// rec: the unit's record (m2split_ws offsets W; nullptr in timing mode 1: y = S); zs: its raw z rows (k, P) or
// nullptr; y: its output rows (b and u applied, token stride y_k).
template <typename TI>
__device__ __forceinline__ void m2ws_y(const float (&S)[4], int nt, const float* rec, const M2SplitWs& W, const TI* zs,
                                       TI* y, int64_t y_k, int k, int P, int warp, int g, int q) {
  if (warp * 16 >= P) return;
  const int r0 = warp * 16 + g, r1 = r0 + 8, t0 = nt * 8 + 2 * q;
  const int ta = t0 < k ? t0 : k - 1, tb = t0 + 1 < k ? t0 + 1 : k - 1;
  // fragment entry e: row e < 2 ? r0 : r1, token t0 + (e & 1)
  float o[4] = {S[0], S[1], S[2], S[3]};
  if (rec != nullptr) {
    const float sa = rec[W.scale + ta], sb = rec[W.scale + tb];
    const float yx[4] = {rec[W.yx + ta * P + r0], rec[W.yx + tb * P + r0], rec[W.yx + ta * P + r1],
                         rec[W.yx + tb * P + r1]};
    float zv[4] = {0.f, 0.f, 0.f, 0.f};
    if (zs != nullptr) {
      zv[0] = SV<TI>::to_f(zs[ta * P + r0]);
      zv[1] = SV<TI>::to_f(zs[tb * P + r0]);
      zv[2] = SV<TI>::to_f(zs[ta * P + r1]);
      zv[3] = SV<TI>::to_f(zs[tb * P + r1]);
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      o[e] = fmaf((e & 1) ? sb : sa, o[e], yx[e]);
      if (zs != nullptr) o[e] *= silu_f(zv[e]);
    }
  }
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const int t = t0 + (e & 1);
    if (t < k) y[t * y_k + (e < 2 ? r0 : r1)] = SV<TI>::from_f(o[e]);
  }
}

// Two adjacent input elements (4- or 8-byte aligned) of a row in shared memory -> fp32.
template <typename TI>
__device__ __forceinline__ float2 lds_in_pair(const TI* ptr) {
  if constexpr (sizeof(TI) == 4) return *reinterpret_cast<const float2*>(ptr);
  else return SV<TI>::up(*reinterpret_cast<const unsigned*>(ptr));
}

// The fold of one folding unit by the consumer warps (fp32 state; each warp its own m-tile, rows r0 = 16 warp + g and
// r1 = r0 + 8): h_c = eSQ h0 + X^T B, X[e][p] = wq_e x_e[p] over the c1 committed ring tokens (raw_ring: their x rows,
// their B rows from R PC on, M2Smem), written over the warp's h0 rows of the tile (global layout), which lane 0 then
// copies to the unit's contiguous state rows st (row stride N) by one bulk copy (the copy engine writes the state back
// while the warp goes on) and, once the copy has read them, calls `release()` (the stage may be refilled). The mma's
// n-columns are permuted: in the n-tile pair (2 m, 2 m + 1) column j is state column 16 m + 2 j (+ 1 in the odd
// tile), so that a lane's four results of a row in the pair are one 16-byte chunk (16 m + 4 q: one LDS.128 of h0 and
// one STS.128 of the result, where the 8-byte accesses of session 50's fold conflicted 8 ways) and its B operands of
// the pair are one adjacent pair (one 4-byte load instead of two 2-byte loads).
template <typename T, typename TI, int N, typename Release>
__device__ __forceinline__ void m2ws_fold(uint4* tile, const uint4* raw_ring, const float* wq, float eSQ, T* st,
                                          int c1, int P, int R, int warp, int lane, Release&& release) {
  static_assert(sizeof(T) == 4, "m2ws_fold: fp32 state");
  constexpr int VI = SV<TI>::V, NM = N / 16;
  constexpr bool kSplitI = sizeof(TI) == 4;
  if (warp * 16 >= P) {  // no m-tile: nothing read
    release();
    return;
  }
  const int g = lane >> 2, q = lane & 3, r0 = warp * 16 + g, r1 = r0 + 8;
  float4* t4 = reinterpret_cast<float4*>(tile);
  float d[NM][2][4];  // [n-tile pair m][n-tile 2 m + o][fragment]
#pragma unroll
  for (int m = 0; m < NM; ++m) {
    const float4 a = t4[r0 * (N / 4) + 4 * m + q], b = t4[r1 * (N / 4) + 4 * m + q];
    d[m][0][0] = eSQ * a.x; d[m][1][0] = eSQ * a.y; d[m][0][1] = eSQ * a.z; d[m][1][1] = eSQ * a.w;
    d[m][0][2] = eSQ * b.x; d[m][1][2] = eSQ * b.y; d[m][0][3] = eSQ * b.z; d[m][1][3] = eSQ * b.w;
  }
  const TI* xr = reinterpret_cast<const TI*>(raw_ring);                  // x_e[p] at e * P + p
  const TI* br = reinterpret_cast<const TI*>(raw_ring + R * (P / VI));  // B_e[n] at e * N + n
  for (int ks = 0; ks * 8 < c1; ++ks) {
    const int e0 = ks * 8 + q, e1 = e0 + 4;
    const bool v0 = e0 < c1, v1 = e1 < c1;
    float a0, a1, a2, a3;
    m2tc_fold_a<TI>(xr, wq, c1, P, r0, r1, e0, a0, a1, a2, a3);
#pragma unroll
    for (int m = 0; m < NM; ++m) {
      const float2 p0 = v0 ? lds_in_pair<TI>(br + e0 * N + 16 * m + 2 * g) : make_float2(0.f, 0.f);
      const float2 p1 = v1 ? lds_in_pair<TI>(br + e1 * N + 16 * m + 2 * g) : make_float2(0.f, 0.f);
      const float h00 = kSplitI ? tf32_hi(p0.x) : p0.x, h10 = kSplitI ? tf32_hi(p1.x) : p1.x;
      const float h01 = kSplitI ? tf32_hi(p0.y) : p0.y, h11 = kSplitI ? tf32_hi(p1.y) : p1.y;
      mma_acc<true, kSplitI>(d[m][0], a0, a1, a2, a3, h00, h10, p0.x - h00, p1.x - h10);
      mma_acc<true, kSplitI>(d[m][1], a0, a1, a2, a3, h01, h11, p0.y - h01, p1.y - h11);
    }
  }
#pragma unroll
  for (int m = 0; m < NM; ++m) {  // each lane rewrites the chunks it read
    t4[r0 * (N / 4) + 4 * m + q] = make_float4(d[m][0][0], d[m][1][0], d[m][0][1], d[m][1][1]);
    t4[r1 * (N / 4) + 4 * m + q] = make_float4(d[m][0][2], d[m][1][2], d[m][0][3], d[m][1][3]);
  }
  fence_proxy_async_smem();  // this lane's rows, visible to the copy engine
  __syncwarp();
  if (lane == 0) {
    bulk_copy_s2g(st + warp * 16 * N, t4 + warp * 16 * (N / 4), 16u * N * sizeof(T));
    tma_commit();
    tma_wait_read<0>();  // the copy has read the rows: the stage may be refilled
  }
  release();
}

// The meta row [c1, k, masks] of a unit that does not fold, from its record (hdr: its words; m2split_ws offsets W),
// by the consumers under MK_VERIFY_WS_EARLY (the producer read the row before, for its fold decision).
__device__ __forceinline__ void m2ws_meta(const VerifyStepParams& p, const int* hdr, const M2SplitWs& W, int s, int u,
                                          int k, int tid) {
  int32_t* mrow = p.meta + (int64_t)s * p.meta_s + (int64_t)u * p.meta_h;
  if (tid < k && tid < p.Kmax) mrow[(int64_t)(2 + tid) * p.meta_i] = hdr[W.masks + tid];
  if (tid == 0) {
    mrow[0] = hdr[2];
    mrow[p.meta_i] = k;
  }
}

// Whether a unit folds (m2_control_words' decision) from its meta row and accepted count, by the 32 lanes of a warp
// (every lane gets it): MK_VERIFY_WS_EARLY's producer, before anyone rewrites the meta row (its consumers do, after
// the stage's wait).
__device__ __forceinline__ bool m2ws_fold_decision(const VerifyStepParams& p, int s, int b, int u, int k, int R,
                                                   int lane) {
  const int nm = 2 + static_cast<int>(p.Kmax < kMaxK ? p.Kmax : kMaxK);  // <= 2 + kMaxK: two words a lane
  const int32_t* mrow = p.meta + (int64_t)s * p.meta_s + (int64_t)u * p.meta_h;
  const unsigned w0 = lane < nm ? static_cast<unsigned>(mrow[(int64_t)lane * p.meta_i]) : 0u;
  const unsigned w1 = lane + 32 < nm ? static_cast<unsigned>(mrow[(int64_t)(lane + 32) * p.meta_i]) : 0u;
  const int accv = p.accepted[(int64_t)b * p.accepted_stride];
  const int m0 = static_cast<int>(__shfl_sync(0xffffffffu, w0, 0));
  const int m1 = static_cast<int>(__shfl_sync(0xffffffffu, w0, 1));
  auto mask_at = [w0, w1](int a) {  // a is the same in every lane
    const unsigned lo = __shfl_sync(0xffffffffu, w0, (2 + a) & 31), hi = __shfl_sync(0xffffffffu, w1, (2 + a) & 31);
    return static_cast<int>(2 + a < 32 ? lo : hi);
  };
  return m2_control_words(p, m0, m1, mask_at, accv, R, k).fold;
}

template <typename T, typename TI, int N>
__global__ void __launch_bounds__(kWsConsumers + kWsProducer + kWsMaxPairs * kSplitPrepThreads, 1)
    verify_m2ws_kernel(const VerifyStepParams p, const int npair, const int mode_flags, unsigned long long* stamps) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900  // sm_90 only (mbarriers): an empty body for older targets
  constexpr int NT = kWsConsumers;
  constexpr int VT = SV<T>::V, VI = SV<TI>::V, NC = N / VI;
  MK_VERIFY_DYN_SMEM(smem_f4);
  const int mode = mode_flags & 7;           // MK_VERIFY_WS_MODE (below)
  const bool pipe = (mode_flags & 16) != 0;  // MK_VERIFY_WS_PIPE=1: the consumers' next dots before a unit's y
  // MK_VERIFY_WS_EARLY=1: the producer decides whether a unit folds (its stage's flag, a second tile_full arrival), so
  // that the consumers release a stage that does not fold right after its dots, before its record; the consumers, not
  // the prep pairs, then write the meta row of a unit that does not fold (the producer reads it before)
  const bool decide = (mode_flags & 32) != 0 && (mode == 0 || mode == 4);
  float* smf = reinterpret_cast<float*>(smem_f4);
  const int H = static_cast<int>(p.H), units = static_cast<int>(p.batch) * H;
  const int k = static_cast<int>(p.k), P = static_cast<int>(p.P), R = static_cast<int>(p.R);
  const M2WsLayout lay = m2ws_layout(k, P, N, R, VT, VI, p.z != nullptr, npair);
  uint64_t* rec_full = reinterpret_cast<uint64_t*>(smf + lay.bars);  // [2 pr + slot]
  uint64_t* rec_empty = rec_full + 2 * kWsMaxPairs;
  uint64_t* tile_full = rec_empty + 2 * kWsMaxPairs;  // [stage]: the producer's arrival and the stage's bytes
  uint64_t* tile_empty = tile_full + 2;               // [stage]: an arrival per consumer warp
  volatile int* fold_flag = reinterpret_cast<int*>(smf + lay.flag);  // [stage] (decide)
  if (threadIdx.x == 0) {
    for (int r = 0; r < 2 * npair; ++r) {
      mbar_init(rec_full + r, kSplitPrepThreads);
      mbar_init(rec_empty + r, kWsConsumers);
    }
    for (int b = 0; b < 2; ++b) {
      mbar_init(tile_full + b, decide ? 2 : 1);
      mbar_init(tile_empty + b, kWsConsumers / 32);  // an arrival per consumer warp
    }
  }
  __syncthreads();  // the last block-wide barrier: the groups go their own ways from here
  const int grid = static_cast<int>(gridDim.x), blk = static_cast<int>(blockIdx.x);
  // mode 4: thread 0 of a group stamps event e of unit i (the lab above)
  const bool stamping = mode == 4 && stamps != nullptr;
  auto stamp = [stamps, blk](int i, int e, unsigned long long t) {
    if (i < kWsStampUnits) stamps[((int64_t)blk * kWsStampUnits + i) * kWsEvents + e] = t;
  };
  if (stamping && threadIdx.x == 0) stamp(0, kWsEvT0, ws_gtimer());
  const int mine = blk < units ? (units - 1 - blk) / grid + 1 : 0;  // this block's units
  auto unit_of = [blk, grid](int i) { return blk + i * grid; };

  // mode (MK_VERIFY_WS_MODE, timing only, wrong results): 1 consumers alone (no prep, no hand-over), 2 the prep
  // pairs and the hand-over alone (no tile, no dots, no y). (Consumers that do not wait for the records are not a
  // mode: their arrivals would run the slots' phases more than one ahead of the pairs' parity waits, which hang.)
  auto slot_of = [&](int i) { return p.slots[(int64_t)(unit_of(i) / H) * p.slots_stride]; };
  if (threadIdx.x >= kWsConsumers + kWsProducer) {  // ---- prep pair pr ----------------------------------------
    if (mode == 1) return;
    const int pr = (threadIdx.x - kWsConsumers - kWsProducer) / kSplitPrepThreads;
    const int tid = threadIdx.x - kWsConsumers - kWsProducer - pr * kSplitPrepThreads;
    auto sync = [pr] { named_bar_1to4<kSplitPrepThreads, true>(1 + pr); };  // the pair's barrier
    // The pair's j-th unit (record slot and prep area r = 2 pr + (j & 1)) has its loads issued into the area's
    // raw_in and Ds while the pair works on unit j - 1 (m2prep_rest's between(), after that unit's ring copies): the
    // consumers read only raw_ring and the record of an area, so the loads need no wait. Its slot (record and raw_ring)
    // is free once the consumers are done with unit j - 2, a folding one's fold having read the ring rows: waited for
    // before its ring copies (m2prep_rest's before_ring()), and before a padding unit's hand-over (its rec_full
    // arrival must not run a phase ahead of the consumers' waits).
    const bool st0 = stamping && tid == 0;
    auto issue = [&](int i, int j) {  // unit i = the pair's j-th: its loads (one committed group)
      if (i >= mine) {
        cp_async_commit();  // no unit: an empty group (m2prep_rest waits for all but the newest one)
        return M2Scalars{};
      }
      const int v = unit_of(i), b = v / H, r = 2 * pr + (j & 1);
      float4* area = reinterpret_cast<float4*>(smf + lay.prep + r * lay.prep_words);
      return m2prep_load<TI, N, true>(p, b, v - b * H, area, tid);
    };
    M2Scalars sc_next = issue(pr, 0);
    for (int i = pr, j = 0; i < mine; i += npair, ++j) {
      const int v = unit_of(i), b = v / H, u = v - b * H, r = 2 * pr + (j & 1);
      float4* psm = reinterpret_cast<float4*>(smf + lay.prep + r * lay.prep_words);
      if (j > 0) sync();  // every thread of the pair is done with unit j - 1 (and its area: unit j + 1's)
      if (st0) stamp(i, kWsEvPStart, ws_clock());
      const M2Scalars sc = sc_next;
      auto slot = [&] {
        if (st0) stamp(i, kWsEvPSlot, ws_clock());
        if (j >= 2) mbar_wait(rec_empty + r, ((j >> 1) - 1) & 1);
        if (st0) stamp(i, kWsEvPSlotOk, ws_clock());
      };
      auto next = [&] { sc_next = issue(i + npair, j + 1); };
      const int s = slot_of(i);
      if (s >= 0 && s < p.S) {
        m2prep_rest<TI, N, true, 1, false>(p, b, u, psm, smf + lay.rec + r * lay.rec_words, tid, sync, sc, slot, next,
                                           decide);
      } else {  // a padding unit (no record): the same slot wait before its hand-over, and the next unit's loads
        slot();
        next();
      }
      mbar_arrive(rec_full + r);  // this thread's record writes are done (release); a padding unit's: no record
      if (st0) stamp(i, kWsEvPEnd, ws_clock());
    }
    cp_async_wait<0>();  // the trailing empty group
    return;
  }

  if (threadIdx.x >= kWsConsumers) {  // ---- the producer warp ---------------------------------------------------
    // unit i's state tile and C rows into stage i & 1, its z rows into z stage i % 3, by bulk copies (16 KB pieces of
    // the tile, a row of C / z each; the copy engine holds the bytes in flight, and only this warp waits when its
    // queue is full), completing on tile_full[i & 1] (an arrival with no bytes for a padding row or in mode 2), once
    // the consumers released the stage's previous unit (i - 2) on tile_empty[i & 1]: two units in flight.
    const int lane = threadIdx.x - kWsConsumers;
    const unsigned long long evict = l2_evict_first_policy();
    const unsigned row_b = static_cast<unsigned>(N * sizeof(T)), in_row_b = static_cast<unsigned>(N * sizeof(TI));
    const unsigned z_row_b = static_cast<unsigned>(P * sizeof(TI));
    auto issue_unit = [&](int i, int b, int u, int s, uint64_t* full) {  // unit i's bulk copies into its stages
      char* sf = reinterpret_cast<char*>(smf + lay.stage[i & 1]);
      const T* st = static_cast<const T*>(p.state) + (int64_t)s * p.st_s + (int64_t)u * p.st_h;
      const unsigned tile_b = P * row_b, piece = tile_b < kWsTileCopy ? tile_b : kWsTileCopy;
      for (unsigned c = lane; c * piece < tile_b; c += 32)  // the unit's contiguous state (m2ws_fits)
        bulk_copy_g2s(sf + lay.tile * 4 + c * piece, reinterpret_cast<const char*>(st) + c * piece, piece, full,
                      evict);
      const int gi = u / (H / static_cast<int>(p.G));
      const TI* Cb = static_cast<const TI*>(p.C) + (int64_t)b * p.C_b + (int64_t)gi * p.C_g;
      for (int t = lane; t < k; t += 32)
        bulk_copy_g2s(sf + lay.raw_c * 4 + t * in_row_b, Cb + (int64_t)t * p.C_k, in_row_b, full, 0ull);
      if (p.z != nullptr) {
        const TI* zb = static_cast<const TI*>(p.z) + (int64_t)b * p.z_b + (int64_t)u * p.z_h;
        char* zs = reinterpret_cast<char*>(smf + lay.raw_z[i % 3]);
        for (int t = lane; t < k; t += 32)
          bulk_copy_g2s(zs + t * z_row_b, zb + (int64_t)t * p.z_k, z_row_b, full, 0ull);
      }
    };
    for (int i = 0; i < mine; ++i) {
      const int v = unit_of(i), b = v / H, u = v - b * H, s = slot_of(i);
      uint64_t* full = tile_full + (i & 1);
      if (i >= 2) mbar_wait(tile_empty + (i & 1), ((i >> 1) + 1) & 1);
      const bool go = s >= 0 && s < p.S && mode != 2;
      if (lane == 0) mbar_expect_tx(full, go ? P * row_b + k * in_row_b + (p.z != nullptr ? k * z_row_b : 0u) : 0u);
      __syncwarp();
      if (go) issue_unit(i, b, u, s, full);
      if (decide) {  // the fold decision into the stage's flag, then the stage's second arrival (release)
        const bool f = go && m2ws_fold_decision(p, s, b, u, k, R, lane);
        if (lane == 0) {
          fold_flag[i & 1] = f ? 1 : 0;
          mbar_arrive(full);
        }
      }
    }
    return;
  }

  // ---- consumers ---------------------------------------------------------------------------------------------
  // Per unit: its tile; each warp forms the dots of its own m-tile rows into registers (m2ws_dots), then waits for the
  // unit's record, releases the stage by its own arrival (tile_empty counts the 8 warps) unless the unit folds, and
  // writes its rows' y (m2ws_y); a folding unit's warps then fold their own rows (m2ws_fold) from the ring rows the
  // prep pair staged. No consumer barrier.
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, q = lane & 3;
  const int PC = P / VI, lPC = ilog2(PC), lNC = ilog2(NC);
  const M2SplitWs W = m2split_ws(k, R, P);
  auto release_stage = [&](int bi) {  // this warp no longer reads stage bi (stage bi's phases: units bi, bi + 2, ..)
    __syncwarp();
    if (lane == 0) mbar_arrive(tile_empty + bi);
  };
  // pipe (MK_VERIFY_WS_PIPE=1, a lab, k <= 8): once a unit that does not fold has its record, the warps wait for the
  // next unit's tile and form its dots before this unit's y, so that the two latency chains overlap (session 52)
  const bool early = k <= 8, pipelined = pipe && early;
  int s_next = mine > 0 ? slot_of(0) : 0;
  float S[4];         // unit i's dots
  bool have = false;  // S already holds them (formed in the iteration before)
  for (int i = 0; i < mine; ++i) {
    const int bi = i & 1, j = i / npair, r = 2 * (i % npair) + (j & 1), ph = (j >> 1) & 1;
    const int s = s_next;  // unit i's slot, loaded an iteration ago
    if (i + 1 < mine) s_next = slot_of(i + 1);
    const bool st0 = stamping && tid == 0;
    if (st0) stamp(i, kWsEvCStart, ws_clock());
    const float* rec = smf + lay.rec + r * lay.rec_words;
    const int v = unit_of(i), b = v / H, u = v - b * H;
    TI* y = static_cast<TI*>(p.y) + (int64_t)b * p.y_b + (int64_t)u * p.y_h;
    const bool live = s >= 0 && s < p.S;
    const int* hdr = reinterpret_cast<const int*>(rec);
    uint4* tile = reinterpret_cast<uint4*>(smf + lay.stage[bi] + lay.tile);
    const uint4* raw_c = reinterpret_cast<const uint4*>(smf + lay.stage[bi] + lay.raw_c);
    // k <= 8: the dots (one n-tile, four registers) before the record wait; longer drafts form theirs after it (their
    // fragments held across the wait spilled)
    const bool dots = live && mode != 2;
    if (!have) {
      mbar_wait(tile_full + bi, (i >> 1) & 1);  // unit i's tile, C and z rows
      if (st0) stamp(i, kWsEvCTile, ws_clock());
      if (dots && early) m2ws_dots<T, TI, N>(tile, raw_c, S, 0, k, P, warp, g, q);
    } else if (st0) {
      stamp(i, kWsEvCTile, ws_clock());
    }
    // decide: the producer's fold decision (the record's, from the same words) frees a stage that does not fold now
    const bool freed = decide && early && !(live && fold_flag[bi] != 0);
    if (freed) release_stage(bi);
    if (st0) stamp(i, kWsEvCY, ws_clock());
    if (mode != 1) mbar_wait(rec_full + r, ph);  // unit i's record (a padding unit's hand-over carries none)
    if (st0) stamp(i, kWsEvCRec, ws_clock());
    const bool fold = live && (mode == 0 || mode == 4) && hdr[0] != 0;  // a folding unit reads its tile again
    if (early && !fold && !freed) release_stage(bi);
    float Sn[4];
    have = pipelined && !fold && i + 1 < mine;
    if (have) {  // the next unit's tile and dots (its stage is the other one)
      mbar_wait(tile_full + (bi ^ 1), ((i + 1) >> 1) & 1);
      if (s_next >= 0 && s_next < p.S && mode != 2)
        m2ws_dots<T, TI, N>(reinterpret_cast<const uint4*>(smf + lay.stage[bi ^ 1] + lay.tile),
                            reinterpret_cast<const uint4*>(smf + lay.stage[bi ^ 1] + lay.raw_c), Sn, 0, k, P, warp,
                            g, q);
    }
    const TI* zs = p.z != nullptr ? reinterpret_cast<const TI*>(smf + lay.raw_z[i % 3]) : nullptr;
    if (dots)
      for (int nt = 0; nt * 8 < k; ++nt) {
        if (!early) m2ws_dots<T, TI, N>(tile, raw_c, S, nt, k, P, warp, g, q);
        m2ws_y<TI>(S, nt, mode == 1 ? nullptr : rec, W, zs, y, p.y_k, k, P, warp, g, q);
      }
    else if (!live) m2_zero_y<TI>(y, p.y_k, k, PC, tid, NT);  // padding row: y = 0, cache untouched
    if (have)
#pragma unroll
      for (int e = 0; e < 4; ++e) S[e] = Sn[e];
    if (!early && !fold) release_stage(bi);
    if (st0) stamp(i, kWsEvCDots, ws_clock());
    if (!fold) {
      if (decide && live) m2ws_meta(p, hdr, W, s, u, k, tid);  // [c1, k, masks]: the prep pair left it to us
      if (mode != 1) mbar_arrive(rec_empty + r);  // this thread's last record read is done
      if (st0) stamp(i, kWsEvCEnd, ws_clock());
      continue;
    }
    // fold: h = eSQ h0 + X^T B over the committed ring tokens, whose rows the prep pair staged in its area r (kept
    // until this unit's rec_empty arrivals: no copy, no wait, no consumer barrier); the new tokens at ring [0, k); meta
    const M2Ctl ct = m2split_ctl(1, hdr[1], hdr[2], hdr[3]);
    M2CommonLayout pl;
    m2_place_common(pl, 0, k, P, N, R, VI, true);
    const uint4* raw_ring = m2_smem(pl, reinterpret_cast<float4*>(smf + lay.prep + r * lay.prep_words)).raw_ring;
    const int gi = u / (H / static_cast<int>(p.G));
    const M2FoldNewRows<TI> rows{p, static_cast<const TI*>(p.x) + (int64_t)b * p.x_b + (int64_t)u * p.x_h,
                           static_cast<const TI*>(p.B) + (int64_t)b * p.B_b + (int64_t)gi * p.B_g,
                           static_cast<TI*>(p.ring_x) + (int64_t)s * p.rx_s + (int64_t)u * p.rx_h,
                           static_cast<TI*>(p.ring_B) + (int64_t)s * p.rB_s + (int64_t)u * p.rB_h, k, PC, NC, lPC, lNC,
                           tid, NT};
    const uint4 x0 = rows.first_x(), b0 = rows.first_b();
    if (st0) stamp(i, kWsEvCRing, ws_clock());
    m2ws_fold<T, TI, N>(tile, raw_ring, rec + W.wq, rec[4], static_cast<T*>(p.state) + (int64_t)s * p.st_s +
                        (int64_t)u * p.st_h, ct.c1, P, R, warp, lane, [&] { release_stage(bi); });
    if (st0) stamp(i, kWsEvCFold, ws_clock());
    rows.store(x0, b0);
    m2split_fold_meta(p, rec, W, s, u, k, tid);
    mbar_arrive(rec_empty + r);  // this thread's last read of the record and the pair's area is done
    if (st0) stamp(i, kWsEvCEnd, ws_clock());
  }
  if (lane == 0) tma_wait_all();  // the folds' state copies are complete
  if (stamping && tid == 0) stamp(0, kWsEvT1, ws_gtimer());
#endif
}

// Prep pairs a block for these parameters within `smem_optin` bytes (kWsMaxPairs down to 1; 0: none fits), and the
// block's shared memory then. MK_VERIFY_WS_PAIRS=n (environment, read at every launch) caps them (sweeps; tests of
// a slot's reuse).
template <typename T>
inline int m2ws_pairs(const VerifyStepParams& p, size_t smem_optin, size_t* smem) {
  constexpr int VT = SV<T>::V;
  const int VI = p.in_dtype == DType::kFloat32 ? 4 : 8;
  const char* e = std::getenv("MK_VERIFY_WS_PAIRS");
  const int forced = e != nullptr ? std::atoi(e) : 0;
  const int cap = forced >= 1 && forced <= kWsMaxPairs ? forced : kWsMaxPairs;
  for (int np = cap; np >= 1; --np) {
    const size_t bytes = static_cast<size_t>(m2ws_layout(p.k, p.P, p.N, p.R, VT, VI, p.z != nullptr, np).words) * 4;
    if (bytes <= smem_optin) {
      *smem = bytes;
      return np;
    }
  }
  return 0;
}

}  // namespace verify_kernels
}  // namespace mamba_kernels
