// Mamba-2 SSM verify step as one persistent, warp-specialised kernel (CUDA headers only, no torch; sm_90): the split
// pair's work (verify_m2split_kernel.cuh) in one block an SM, so that the prep work runs beside the state stream
// instead of ahead of it. A lab (MK_VERIFY_KERNEL=ws) until it is measured faster than the pair: correct on the GPU
// (the verify GPU tests forced through it pass on an H200 and an H100, the large-grid sessions at p = n = 128
// included) but slower so far (H100 b64 k4 ring 16, mean per call / median: 93.2 / 74.0 us with 2 prep pairs against
// the pair's 72.4 / 65.6; bench/results/lab/verify-ws-stamps-2026-12-06 and bench/notes/verify_step_2.md).
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
//   - Prep pair pr takes units i = pr, pr + npair, ...: m2prep_unit (the split pair's prep: control words, ring rows,
//     weights, B . C dots, the state-free part of y, the new tokens' ring / meta writes of a unit that does not fold)
//     with its own shared memory and barrier (named barrier 1 + pr), its record into its shared-memory slot.
//   - Consumers: unit i's dots S_t = h0 . C_t on tensor cores, then its stage is released (a folding unit: once its
//     fold has read its h0 rows); they wait for unit i's record, write y_t = silu(z_t) (scale_t S_t + yx_t), and for
//     a unit that folds stage its committed ring rows (cp.async, in flight during y), fold, and write its new tokens'
//     ring rows and meta row.
//   - Record slots 2 pr and 2 pr + 1 (the pair's units alternate): mbarriers rec_full (64 arrivals: the pair's
//     threads, after their record writes) and rec_empty (256: the consumers, after their last record read); the pair
//     waits for a slot only before its record writes; a padding unit takes the hand-over too (no record).
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
// issued), one dots area and one ring-row area (a folding unit's committed ring rows), 2 x `npair` record slots
// (m2split_ws) and `npair` prep areas (m2_place_common, prep).
struct M2WsLayout {
  int bars, stage[2], tile, raw_c, raw_z[3], dots, ring, rec, rec_words, prep, prep_words, words;
};
__host__ __device__ __forceinline__ M2WsLayout m2ws_layout(int64_t k, int64_t P, int64_t N, int64_t R, int VT, int VI,
                                                           bool has_z, int npair) {
  const int64_t K1 = k > 0 ? k : 1;
  M2WsLayout l;
  int o = 0;
  l.bars = o; o += 8 * kWsMaxPairs + 8;  // (2 x 2 x kWsMaxPairs + 2 x 2) uint64
  int b = 0;  // offsets inside a stage
  l.tile = b; b += static_cast<int>(P * (N / VT) * 4);
  l.raw_c = b; b += static_cast<int>(K1 * N / VI * 4);
  l.stage[0] = o; o += b;
  l.stage[1] = o; o += b;
  for (int z = 0; z < 3; ++z) {
    l.raw_z[z] = o;
    o += has_z ? static_cast<int>(K1 * P / VI * 4) : 0;
  }
  l.dots = o; o += up4(K1 * P);
  l.ring = o; o += static_cast<int>(R * (P + N) / VI * 4);
  l.rec_words = m2split_ws(k, R, P).words;
  l.rec = o; o += 2 * npair * l.rec_words;
  M2CommonLayout c;
  l.prep_words = up4(m2_place_common(c, 0, k, P, N, R, VI, true));
  l.prep = o; o += npair * l.prep_words;
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
  kWsEvCStart = 0,  // consumers: the unit's iteration starts (before the barrier after unit i - 1's y)
  kWsEvCTile,       // its tile, C and z rows landed (the stage's full wait)
  kWsEvCDots,       // the state dots done (thread 0's warp)
  kWsEvCRec,        // its record is ready (after the rec_full wait)
  kWsEvCEnd,        // y (and the fold) written
  kWsEvPStart,      // prep pair: the unit starts
  kWsEvPSlot,       // the unit's record is ready to be written: the slot wait starts
  kWsEvPSlotOk,     // the slot is free
  kWsEvPEnd,        // the record is written and handed over
  kWsEvT0,          // global timer (ns) at the block's start (unit-0 row)
  kWsEvT1,          // global timer (ns) at the consumers' end (unit-0 row)
  kWsEvCY,          // consumers: y written (a folding unit's events follow)
  kWsEvCRing,       // its committed ring rows staged
  kWsEvCFold,       // its state written back
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

template <typename T, typename TI, int N>
__global__ void __launch_bounds__(kWsConsumers + kWsProducer + kWsMaxPairs * kSplitPrepThreads, 1)
    verify_m2ws_kernel(const VerifyStepParams p, const int npair, const int mode, unsigned long long* stamps) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900  // sm_90 only (mbarriers): an empty body for older targets
  constexpr int NW = kWsConsumers / 32, NT = kWsConsumers;
  constexpr int VT = SV<T>::V, VI = SV<TI>::V, NC = N / VI;
  MK_VERIFY_DYN_SMEM(smem_f4);
  float* smf = reinterpret_cast<float*>(smem_f4);
  const int H = static_cast<int>(p.H), units = static_cast<int>(p.batch) * H;
  const int k = static_cast<int>(p.k), P = static_cast<int>(p.P), R = static_cast<int>(p.R);
  const M2WsLayout lay = m2ws_layout(k, P, N, R, VT, VI, p.z != nullptr, npair);
  uint64_t* rec_full = reinterpret_cast<uint64_t*>(smf + lay.bars);  // [2 pr + slot]
  uint64_t* rec_empty = rec_full + 2 * kWsMaxPairs;
  uint64_t* tile_full = rec_empty + 2 * kWsMaxPairs;  // [stage]: the producer's arrival and the stage's bytes
  uint64_t* tile_empty = tile_full + 2;               // [stage]: consumer thread 0, after a consumer barrier
  if (threadIdx.x == 0) {
    for (int r = 0; r < 2 * npair; ++r) {
      mbar_init(rec_full + r, kSplitPrepThreads);
      mbar_init(rec_empty + r, kWsConsumers);
    }
    for (int b = 0; b < 2; ++b) {
      mbar_init(tile_full + b, 1);
      mbar_init(tile_empty + b, 1);
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
  if (threadIdx.x >= kWsConsumers + kWsProducer) {  // ---- prep pair pr ----------------------------------------
    if (mode == 1) return;
    const int pr = (threadIdx.x - kWsConsumers - kWsProducer) / kSplitPrepThreads;
    const int tid = threadIdx.x - kWsConsumers - kWsProducer - pr * kSplitPrepThreads;
    float4* psm = reinterpret_cast<float4*>(smf + lay.prep + pr * lay.prep_words);
    auto sync = [pr] { named_bar_1to4<kSplitPrepThreads, true>(1 + pr); };  // the pair's barrier
    for (int i = pr, j = 0; i < mine; i += npair, ++j) {  // the pair's j-th unit: record slot 2 pr + (j & 1)
      const int v = unit_of(i), b = v / H, u = v - b * H, r = 2 * pr + (j & 1);
      if (j > 0) sync();  // every thread of the pair is done with its shared memory
      // the record's slot is free once the consumers are done with its previous record (unit j - 2): waited for
      // only here, so that the unit's loads, control words, ring rows and dots run before
      const bool st0 = stamping && tid == 0;
      if (st0) stamp(i, kWsEvPStart, ws_clock());
      auto slot_free = [&] {
        if (st0) stamp(i, kWsEvPSlot, ws_clock());
        if (j >= 2) mbar_wait(rec_empty + r, ((j >> 1) - 1) & 1);
        if (st0) stamp(i, kWsEvPSlotOk, ws_clock());
      };
      const int s = p.slots[(int64_t)b * p.slots_stride];
      if (s >= 0 && s < p.S) m2prep_unit<TI, N, true>(p, b, u, psm, smf + lay.rec + r * lay.rec_words, tid, sync,
                                                      slot_free);
      else slot_free();  // a padding unit's hand-over (no record) keeps the slot's phases in step too
      mbar_arrive(rec_full + r);  // this thread's record writes are done (release)
      if (st0) stamp(i, kWsEvPEnd, ws_clock());
    }
    return;
  }

  auto slot_of = [&](int i) { return p.slots[(int64_t)(unit_of(i) / H) * p.slots_stride]; };
  if (threadIdx.x >= kWsConsumers) {  // ---- the producer warp ---------------------------------------------------
    // unit i's state tile and C rows into stage i & 1, its z rows into z stage i % 3, by bulk copies (16 KB pieces of
    // the tile, a row of C / z each; the copy engine holds the bytes in flight, and only this warp waits when its
    // queue is full), completing on tile_full[i & 1] (an arrival with no bytes for a padding row or in mode 2), once
    // the consumers released the stage's previous unit (i - 2) on tile_empty[i & 1]: two units in flight.
    const int lane = threadIdx.x - kWsConsumers;
    const unsigned long long evict = l2_evict_first_policy();
    const unsigned row_b = static_cast<unsigned>(N * sizeof(T)), in_row_b = static_cast<unsigned>(N * sizeof(TI));
    const unsigned z_row_b = static_cast<unsigned>(P * sizeof(TI));
    for (int i = 0; i < mine; ++i) {
      const int v = unit_of(i), b = v / H, u = v - b * H, s = slot_of(i);
      uint64_t* full = tile_full + (i & 1);
      if (i >= 2) mbar_wait(tile_empty + (i & 1), ((i >> 1) + 1) & 1);
      const bool go = s >= 0 && s < p.S && mode != 2;
      if (lane == 0) mbar_expect_tx(full, go ? P * row_b + k * in_row_b + (p.z != nullptr ? k * z_row_b : 0u) : 0u);
      __syncwarp();
      if (!go) continue;
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
    }
    return;
  }

  // ---- consumers ---------------------------------------------------------------------------------------------
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, q = lane & 3;
  const int PC = P / VI, lPC = ilog2(PC), lNC = ilog2(NC);
  const M2SplitWs W = m2split_ws(k, R, P);
  auto csync = [] { named_bar_sync<kWsConsumers>(5); };  // the consumers' barrier
  // Unit i's stage bi = i & 1 is released (tile_empty) as soon as its tile is no longer read: after its dots, or after
  // its fold has read its h0 rows. Stage bi's phases: units bi, bi + 2, ... (parity (i >> 1) & 1).
  int s_next = mine > 0 ? slot_of(0) : 0;
  for (int i = 0; i < mine; ++i) {
    const int bi = i & 1, j = i / npair, r = 2 * (i % npair) + (j & 1), ph = (j >> 1) & 1;
    const int s = s_next;  // unit i's slot, loaded an iteration ago
    if (i + 1 < mine) s_next = slot_of(i + 1);
    const bool st0 = stamping && tid == 0;
    if (st0) stamp(i, kWsEvCStart, ws_clock());
    if (i > 0) csync();  // every consumer is done with unit i - 1's y (the dots area)
    mbar_wait(tile_full + bi, (i >> 1) & 1);  // unit i's tile, C and z rows
    if (st0) stamp(i, kWsEvCTile, ws_clock());
    float* sf = smf + lay.stage[bi];
    const uint4* tile = reinterpret_cast<const uint4*>(sf + lay.tile);
    float* Sd = smf + lay.dots;
    uint4* raw_ring = reinterpret_cast<uint4*>(smf + lay.ring);
    const uint4* raw_z = reinterpret_cast<const uint4*>(smf + lay.raw_z[i % 3]);
    const uint4* raw_c = reinterpret_cast<const uint4*>(sf + lay.raw_c);
    const float* rec = smf + lay.rec + r * lay.rec_words;
    const int v = unit_of(i), b = v / H, u = v - b * H;
    TI* y = static_cast<TI*>(p.y) + (int64_t)b * p.y_b + (int64_t)u * p.y_h;
    const bool live = s >= 0 && s < p.S;
    if (live && mode != 2) m2tc_state_dots<T, TI, N, NW, true>(tile, raw_c, Sd, k, P, warp, g, q);
    if (st0) stamp(i, kWsEvCDots, ws_clock());
    if (mode != 1) mbar_wait(rec_full + r, ph);  // unit i's record (a padding unit's hand-over carries none)
    if (st0) stamp(i, kWsEvCRec, ws_clock());
    csync();  // every warp's dots: the tile and C rows of stage bi are free unless unit i folds
    const int* hdr = reinterpret_cast<const int*>(rec);
    const bool fold = live && (mode == 0 || mode == 4) && hdr[0] != 0;  // a folding unit reads its tile again
    if (!fold && tid == 0) mbar_arrive(tile_empty + bi);
    if (mode == 2) {
      mbar_arrive(rec_empty + r);
      continue;
    }
    if (mode == 1) {
      if (live) m2_zero_y<TI>(y, p.y_k, k, PC, tid, NT);
      continue;
    }
    if (!live) {  // padding row: y = 0, cache untouched
      m2_zero_y<TI>(y, p.y_k, k, PC, tid, NT);
      mbar_arrive(rec_empty + r);
      continue;
    }
    const M2Ctl ct = m2split_ctl(hdr[0], hdr[1], hdr[2], hdr[3]);
    const int64_t rx0 = (int64_t)s * p.rx_s + (int64_t)u * p.rx_h, rb0 = (int64_t)s * p.rB_s + (int64_t)u * p.rB_h;
    if (fold) {  // its committed ring rows in flight during y (the consumers' only cp.async group)
      m2_stage_ring<TI>(p, ct, raw_ring, rx0, rb0, s, u, PC, NC, tid, NT);
      cp_async_commit();
    }
    m2split_y<TI>(p, y, Sd, rec, W, raw_z, k, P, tid, NT);  // y_t = silu(z_t) (scale_t S_t + yx_t)
    if (st0) stamp(i, kWsEvCY, ws_clock());
    if (fold) {  // h = eSQ h0 + X^T B over the committed ring tokens; the new tokens at ring [0, k); meta row
      cp_async_wait<0>();  // the ring rows
      csync();             // ... from every thread
      if (st0) stamp(i, kWsEvCRing, ws_clock());
      const int gi = u / (H / static_cast<int>(p.G));
      const TI* xb = static_cast<const TI*>(p.x) + (int64_t)b * p.x_b + (int64_t)u * p.x_h;
      const TI* Bb = static_cast<const TI*>(p.B) + (int64_t)b * p.B_b + (int64_t)gi * p.B_g;
      TI* rx = static_cast<TI*>(p.ring_x) + rx0;
      TI* rB = static_cast<TI*>(p.ring_B) + rb0;
      T* st = static_cast<T*>(p.state) + (int64_t)s * p.st_s + (int64_t)u * p.st_h;
      // the fold reads its h0 rows first, so that unit i + 2's copies into stage bi start before its X^T B and stores
      auto release = [&] {
        csync();  // every warp's h0 rows: stage bi is free
        if (tid == 0) mbar_arrive(tile_empty + bi);
      };
      m2tc_fold_h0_first<T, TI, N, NW, true>(tile, raw_ring, rec + W.wq, rec[4], st, p.st_p, ct.c1, P, warp, g, q,
                                             release);
      if (st0) stamp(i, kWsEvCFold, ws_clock());
      for (int c = tid; c < k * PC; c += NT)  // base 0: k <= Kmax <= R, every new token has a ring row
        *reinterpret_cast<uint4*>(rx + (c >> lPC) * p.rx_r + (c & (PC - 1)) * VI) =
            *reinterpret_cast<const uint4*>(xb + (c >> lPC) * p.x_k + (c & (PC - 1)) * VI);
      for (int c = tid; c < k * NC; c += NT)
        *reinterpret_cast<uint4*>(rB + (c >> lNC) * p.rB_r + (c & (NC - 1)) * VI) =
            *reinterpret_cast<const uint4*>(Bb + (c >> lNC) * p.B_k + (c & (NC - 1)) * VI);
      m2split_fold_meta(p, rec, W, s, u, k, tid);
    }
    mbar_arrive(rec_empty + r);  // this thread's last record read is done
    if (st0) stamp(i, kWsEvCEnd, ws_clock());
  }
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
