// The three-stage ring of F2's wgmma walk (MK_SSD_WALK_RING; sm_90a, two teams of 8 warps; ssd_scan_ring_kernel in
// ssd_scan_kernel.cuh). Shared pieces (items, resident tiles, the products): ssd_walk.cuh.
//
// Why: in walk_items_pingpong each team has one stage and loads its next item into it only after the current item is
// done, so a team's cycle is load + compute (H200 shape 1: ~2.5 + ~3 us an item, F2 ~232 us; ncu, session 35: 30% of
// the stall samples in the next item's loads and the team barrier), and the other team's compute hides only part of
// the load. Here the CTA's items j = 0, 1, 2, ... (from its range's start) go round three stages, item j in stage
// j % 3, computed by team j % 2; the team that finishes item j fills its freed stage with item j + 3 (the other
// team's), so an item's copies have had about half of a team's cycle to land when its team reaches it, and a team's
// cycle is its compute alone.
// Completion across teams: item j's fill completes on full barrier j % 6 (mbarrier, count 256), two barriers a stage:
// each thread of the filling team issues its copies, all by cp.async (zero-fill copies for the rows past ln and a
// missing D, so that they are covered too), then cp.async.mbarrier.arrive.noinc; the team computing item j waits for
// phase j / 6 of barrier j % 6 (parity), then fences into the async proxy (its wgmma reads the (p, n) tile that the
// other team's copies wrote). No empty barrier: the filler is the team that has just read the stage, past its own
// team barrier. Why two barriers a stage: a parity wait cannot tell the phase it names from the one two phases
// earlier. With one barrier a stage (j % 3, until session 42) the team that waits for item j + 3 is the team that
// issued item j's fill (after its item j - 3), and if that fill had not landed yet when the team reached item j + 3
// (two of its items later), its wait for the parity of phase (j + 3) / 3 passed at once on phase j / 3 - 1: it read
// a stage still being written, and its own fill of item j + 6 then added arrivals and bytes to the incomplete phase.
// Copy-engine fills complete out of order, so the TMA ring met it now and then ("unspecified launch failure", back to
// back forwards, sessions 37-39); the CPU emulation lands TMA loads late and newest first and showed it (a block
// exiting with loads in flight, an arrival on a phase that had all its arrivals). With barrier j % 6, the phase
// before the one item j's team waits for is item j - 6's, which that same team waited for already.
// Shared memory (231,216 bytes): C B^T (padded, 34 KB), the B or C rows (128-byte-swizzled, 32 KB), three stages of
// 52 KB ((p, n) tile swizzled as load_stage's kSwz writes it, 16 KB; x and z padded, 18 KB each), three a / dt' / D
// rows of 1,280 bytes, six barriers. The output staging (walk_items_pingpong's 2 x 18 KB) goes into the warp's own
// z rows of the stage, which only that warp reads, after its epilogue has read them (scan_epilogue's kStageInZ).
// The resident tiles change only at a segment's start (one (chunk, group)), where both teams meet at a block barrier
// as in walk_items_pingpong; the ring's fills run on across segments (they read no resident tile).
// MK_SSD_WALK_RING_TMA (ssd_scan_ring_tma_kernel; on by default, see ssd_walk.cu): the fills'
// tiles by the copy engine (load_stage_ring_tma; the full barrier counts 257: the issuer's expect_tx too), the same
// stage slots, x and z in them 128-byte-swizzled without padding (16 KB of each 18 KB slot).
#pragma once
#include "common/cp_async.h"
#include "common/tma.h"
#include "ssd/ssd_walk.cuh"


namespace mamba_kernels {
namespace ssd_walk {

constexpr int kRingSlots = 3;
constexpr int kRingBars = 2 * kRingSlots;  // item j's full barrier: j % 6 (walk_items_ring says why two a stage)
constexpr int kPnSwzBytes = kP * kN * 2;     // the (p, n) tile, two 64-wide n blocks of 8 KB
constexpr int kRowsSwzBytes = kQ * kN * 2;   // the swizzled resident rows (load_resident's kSwz)
constexpr int kRingStageBytes = kPnSwzBytes + 2 * kTileBytes;
constexpr int kRingRowFloats = 2 * kQ + kP;  // a, dt', D
constexpr int kRingSmemBytes =
    kCbBytes + kRowsSwzBytes + kRingSlots * (kRingStageBytes + kRingRowFloats * 4) + kRingBars * 8;
static_assert((kCbBytes + kRowsSwzBytes) % 1024 == 0 && kRingStageBytes % 1024 == 0,
              "every stage and its (p, n) tile start 1024-byte aligned");
static_assert(kRingSmemBytes <= 232448, "the ring fits a block of an H100 / H200");

// A ring stage: the (p, n) tile at its start, tiles t0 / t1 after it; its a / dt' / D rows apart (same accessors as
// Stage).
template <typename E> struct RingStage {
  const char* base;
  const float* rows;
  __device__ __forceinline__ const E* pn() const { return reinterpret_cast<const E*>(base); }
  __device__ __forceinline__ const E* tile0() const { return reinterpret_cast<const E*>(base + kPnSwzBytes); }
  __device__ __forceinline__ const E* tile1() const {
    return reinterpret_cast<const E*>(base + kPnSwzBytes + kTileBytes);
  }
  __device__ __forceinline__ const float* a() const { return rows; }
  __device__ __forceinline__ const float* dt() const { return rows + kQ; }
  __device__ __forceinline__ const float* D() const { return rows + 2 * kQ; }
};

// The TMA-filled ring (MK_SSD_WALK_RING_TMA): the kernel's parameters with the tensor maps of its boxes (tma.h:
// 64-column boxes, 128-byte swizzle): x and z as (b l, 1, h 64) with 128-row boxes, h_in as (n_slots h 64, 1, 128)
// with 64-row boxes (two an item, columns 0 / 64: load_stage's kSwz layout of the (p, n) tile).
struct SsdScanTmaParams : SsdScanParams {
  TmaDesc x_map, z_map, hin_map;
};

// store_block_staged (J = 8) through the warp's 16 rows of a 128-byte-swizzled tile (sw: their start; the rows' index
// within the tile a multiple of 8 there, so that row r's chunks swizzle by r): the fragments' 4-byte pieces and the
// 16-byte copies out are both conflict-free. Its halves as stage_block / flush_block.
__device__ __forceinline__ void stage_block_sw(char* sw, const uint32_t (&v)[2][8], int lane) {
  const int g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int hf = 0; hf < 2; ++hf)
#pragma unroll
    for (int j = 0; j < 8; ++j) *reinterpret_cast<uint32_t*>(sw + sw128_offset(g + 8 * hf, 16 * j + 4 * q)) = v[hf][j];
  __syncwarp();
}
template <typename E>
__device__ __forceinline__ void flush_block_sw(const char* sw, E* dst, int64_t ld, int nrows, int lane) {
#pragma unroll
  for (int u = 0; u < 4; ++u) {  // 8 lanes a row, 4 rows an instruction
    const int r = (lane >> 3) + 4 * u, c = lane & 7;
    if (r < nrows)
      *reinterpret_cast<uint4*>(dst + r * ld + 8 * c) = *reinterpret_cast<const uint4*>(sw + sw128_offset(r, 16 * c));
  }
  __syncwarp();
}
template <typename E>
__device__ __forceinline__ void store_block_staged_sw(char* sw, const uint32_t (&v)[2][8], E* dst, int64_t ld,
                                                      int nrows, int lane) {
  stage_block_sw(sw, v, lane);
  flush_block_sw<E>(sw, dst, ld, nrows, lane);
}

// This thread's index, read afresh (volatile: not hoisted out of the walk's loop). Why: the ring's stage changes
// from item to item, so the per-thread shared-memory offsets of a fill and of an item's products that the compiler
// would hoist out of the loop stay live next to the stage base, and spill at 128 registers (88-96 bytes: F2 305-331 us
// against 232 at shape 1, H200, session 36); derived from a fresh index they are recomputed where used (no spill:
// 221.5-225.3 against 233.8-235.1). (The same trick as ssd_chunk_kernel.cuh's opaque_zero.)
__device__ __forceinline__ int fresh_tid() {
#if defined(__CUDA_ARCH__)
  int t;
  asm volatile("mov.u32 %0, %%tid.x;" : "=r"(t));
  return t;
#else
  return int(threadIdx.x);
#endif
}

// A fill's a / dt' (zero past ln) and D (zero without D) rows by cp.async, thread tid (0..255) copying what
// load_stage's thread tid copies: both ring fills.
__device__ __forceinline__ void load_rows_ring(const SsdWalkParams& p, const Item& it, float* rows, int tid) {
  const int r = tid % kQ;  // a in rows[0 .. Q), dt' in rows[Q .. 2Q)
  const bool ok = r < it.ln;
  cp_async4_zfill(rows + tid, (tid < kQ ? p.a : p.dtp) + (ok ? it.ab + r : 0), ok);
  if (tid < kP) {  // D in rows[2Q .. 2Q + 64)
    const bool has = p.D != nullptr;
    cp_async4_zfill(rows + 2 * kQ + tid, has ? p.D + (p.D_per_channel ? it.hh * kP + tid : it.hh) : p.a, has);
  }
}

// One fill by the 256 threads of a team (tid 0..255): item `it`'s (p, n) tile (swizzled), tiles t0 / t1 (t1 may be
// null), a / dt' (zero past ln) and D (zero without D) into stage `st` and its rows, all by cp.async, then each
// thread's arrival on `full` once its copies have landed. Thread tid copies what load_stage's thread tid copies.
template <typename E>
__device__ __forceinline__ void load_stage_ring(const SsdWalkParams& p, const Item& it, char* st, float* rows,
                                                uint64_t* full, const void* t0, const void* t1, const void* pn,
                                                int tid) {
  if constexpr ((MK_SSD_RING_LAB & 1) != 0) {
    cp_async_mbar_arrive_noinc(full);  // (tracks no copy: arrives at once)
    return;
  }
  const int hp = int(p.nheads) * kP;
  const int64_t base = item_tile_offset(p, it);
  const E* gpn = static_cast<const E*>(pn) + item_pn_offset(p, it);
  const int r1 = tid >> 4, c1 = (tid & 15) * 8;
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    const int r = r1 + 16 * u;
    cp_async16(pn_swz_at(st, r, c1), gpn + r * kN + c1);
  }
  load_rows_ring(p, it, rows, tid);
  const auto copy_rows = [&](char* s, const void* t) {
    const E* g = static_cast<const E*>(t) + base;
    const int r0 = tid >> 3, c0 = (tid & 7) * 8;
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int rr = r0 + 32 * u;
      const bool in = rr < it.ln;
      cp_async16_zfill(reinterpret_cast<E*>(s) + rr * kLdP + c0, g + (in ? rr * hp + c0 : 0), in);
    }
  };
  copy_rows(st + kPnSwzBytes, t0);
  if (t1 != nullptr) copy_rows(st + kPnSwzBytes + kTileBytes, t1);
  cp_async_mbar_arrive_noinc(full);
}

// load_stage_ring by the copy engine (MK_SSD_WALK_RING_TMA): the team's thread 0 announces the boxes' bytes on
// `full` (its arrival, and the (p, n) tile's two boxes, x's and z's: 48 KB, 32 without z) and issues them into the
// 128-byte-swizzled layouts (x / z rows of 128 bytes: a_times_tile's kSwz); every thread copies a / dt' / D as
// load_stage_ring does and arrives after them (the barrier's count: 257). Rows past the tensor come as zeros; rows past
// ln but inside it (a chunk that ends a sequence) bring the next chunk's tokens, which the consumer clears in x
// (walk_items_ring's kClearX) and z feeds no store. Why: in the ring a fill is off the consumer's critical path, so
// what the cp.async fill costs is its instructions (~260 warp instructions a warp an item of ~1300, session 35).
template <typename E>
__device__ __forceinline__ void load_stage_ring_tma(const SsdScanTmaParams& p, const Item& it, char* st, float* rows,
                                                    uint64_t* full, int tid) {
  const SsdWalkParams& w = p.w;
  if constexpr ((MK_SSD_RING_LAB & 1) != 0) {  // lab: nothing copied, the 257 arrivals only
    if (tid == 0) mbar_expect_tx(full, 0);
    cp_async_mbar_arrive_noinc(full);
    return;
  }
  if (tid == 0) {
    fence_proxy_async();  // the team's generic reads / writes of the stage (ordered by its barrier) before the boxes
    mbar_expect_tx(full, unsigned(2 * 8192 + kQ * 128 + (p.z != nullptr ? kQ * 128 : 0)));
    const int pr = int((it.k * w.nheads + it.hh) * kP), tok = int(it.tok0), col = it.hh * kP;
    tma_load_box(&p.hin_map, st, full, pr, 0, 0);
    tma_load_box(&p.hin_map, st + 8192, full, pr, 0, 64);
    tma_load_box(&p.x_map, st + kPnSwzBytes, full, tok, 0, col);
    if (p.z != nullptr) tma_load_box(&p.z_map, st + kPnSwzBytes + kTileBytes, full, tok, 0, col);
  }
  load_rows_ring(w, it, rows, tid);
  cp_async_mbar_arrive_noinc(full);
}

// The ring walk: CTA blockIdx.x takes items [i0, i1) (as walk_items_pingpong's CTAs); load(item, stage, rows, full)
// is a team's fill (load_stage_ring, called by all 256 threads of the team), compute(item, cbs, rs, RingStage) one
// item (items of length 0 are skipped). smem: kRingSmemBytes. No L2 prefetch (SsdWalkParams::prefetch is not read):
// a team's next fill warmed in L2 as it issues one (prefetch_stage) made F2 slower, 239.7-239.9 us against
// 221.5-225.3 at shape 1 (H200, session 36, two alternating profiles each).
// kClearX (the TMA fills): a stage's full barrier counts 257 arrivals (load_stage_ring_tma), and an item shorter than
// the chunk has its x rows [ln, Q) cleared by its team after the wait (then a team barrier).
// kTeams 1 (MK_SSD_WALK_RING_TEAMS=1, a lab of the fused F1 + F2 design, docs/ssd_fused_walk_design.md: one output
// team beside a state warpgroup): one team of 8 warps computes every item, filling item j + 3 after item j.
template <typename E, bool kClearX, int kTeams = 2, typename Load, typename Compute>
__device__ __forceinline__ void walk_items_ring(const SsdWalkParams& p, char* smem, Load load, Compute compute) {
  E* const cbs = reinterpret_cast<E*>(smem);
  E* const rs = reinterpret_cast<E*>(smem + kCbBytes);
  char* const stages = smem + kCbBytes + kRowsSwzBytes;
  float* const rows = reinterpret_cast<float*>(stages + kRingSlots * kRingStageBytes);
  uint64_t* const full = reinterpret_cast<uint64_t*>(rows + kRingSlots * kRingRowFloats);
  const int tid = threadIdx.x, team = tid / kThreads;
  const int64_t total = p.n_slots * p.nheads, hpg = p.nheads / p.ngroups;
  const int64_t i0 = int64_t(blockIdx.x) * total / gridDim.x, i1 = int64_t(blockIdx.x + 1) * total / gridDim.x;
  if (i0 >= i1) return;
  griddep_wait();  // launched as F1's programmatic dependent (MK_SSD_WALK_PDL): its h_in are complete from here on
  const auto fill = [&](const Item& r, int j) {  // item j (from i0) into stage j % 3, completing on barrier j % 6
    const int s = j % kRingSlots;
    load(r, stages + s * kRingStageBytes, rows + s * kRingRowFloats, full + j % kRingBars);
  };
  if (tid == 0)
    for (int b = 0; b < kRingBars; ++b) mbar_init(full + b, kClearX ? kThreads + 1 : kThreads);
  __syncthreads();
  if (team == 0) {  // the ring's first three items
    Item r = item_of(p, i0);
    for (int j = 0; j < kRingSlots && i0 + j < i1; ++j) {
      if (j > 0) r = next_item(p, r);
      fill(r, j);
    }
  }
  const int n = int(i1 - i0);  // the CTA's items (j: an item's index from i0)
  for (int j0 = 0; j0 < n;) {
    const int64_t s0 = i0 + j0, s1 = (s0 / hpg + 1) * hpg;  // this (chunk, group)'s items
    const int j1 = s1 < i1 ? int(s1 - i0) : n;
    __syncthreads();  // both teams are done with the previous segment's resident tiles
    if (team == 0) {
      load_resident<E, true>(p, item_of(p, s0), cbs, rs, tid);
      cp_async_wait_all();
      fence_proxy_async();  // wgmma reads the rows
    }
    __syncthreads();  // the resident tiles have landed
    int j = kTeams == 1 ? j0 : j0 + ((j0 + team) & 1);  // the team's first item here: j % 2 == team
    if (j < j1) {
      Item cur = item_of(p, i0 + j);
      for (;;) {
        const int s = j % kRingSlots;
        mbar_wait(full + j % kRingBars, unsigned(j / kRingBars) & 1u);  // item j's copies (the other team's; team
                                                                        // 0's for the first three) have landed
        fence_proxy_async();                                 // for the (p, n) tile's wgmma
        if (kClearX && cur.ln > 0 && cur.ln < kQ) {          // rows the box brought past the chunk's end
          uint4* x = reinterpret_cast<uint4*>(stages + s * kRingStageBytes + kPnSwzBytes);
          for (int i = cur.ln * 8 + fresh_tid() % kThreads; i < kQ * 8; i += kThreads) x[i] = uint4{0u, 0u, 0u, 0u};
          team_barrier(team);
        }
        if (cur.ln > 0) compute(cur, static_cast<const E*>(cbs), static_cast<const E*>(rs),
                                RingStage<E>{stages + s * kRingStageBytes, rows + s * kRingRowFloats});
        team_barrier(team);  // the team is done reading stage s
        if (j + kRingSlots < n) fill(skip_n<kRingSlots>(p, cur), j + kRingSlots);
        j += kTeams;
        if (j >= j1) break;
        cur = skip_n<kTeams>(p, cur);
      }
    }
    j0 = j1;
  }
  cp_async_wait_all();  // (every fill is some item's, waited for by its team; nothing is left in flight)
}

// run_walk for the ring (kTeams teams, the wgmma layouts): item(it, cbs, rows, stage, warp, lane, sw) as run_walk's
// without the waits (an item's stage has landed when it starts), sw being the warp's own z rows of the stage.
// kTma: the fills by load_stage_ring_tma (tp: the kernel's parameters with the maps; t0 / t1 / pn unread).
template <typename E, bool kTma = false, int kTeams = 2, typename ItemFn>
__device__ __forceinline__ void run_walk_ring(const SsdWalkParams& w, const void* t0, const void* t1, const void* pn,
                                              ItemFn item, const SsdScanTmaParams* tp = nullptr) {
  const auto load = [&](const Item& it, char* st, float* rows, uint64_t* full) {
    if constexpr (kTma) load_stage_ring_tma<E>(*tp, it, st, rows, full, fresh_tid() % kThreads);
    else load_stage_ring<E>(w, it, st, rows, full, t0, t1, pn, fresh_tid() % kThreads);
  };
  const auto compute = [&](const Item& it, const E* cbs, const E* rs, const RingStage<E>& st) {
    const int tid = fresh_tid(), warp = (tid % kThreads) >> 5;
    const int t0 = 16 * warp_row_block(warp);  // its z rows: 128 bytes each with the TMA fills, kLdP elements else
    char* const z = reinterpret_cast<char*>(const_cast<E*>(st.tile1()));
    item(it, cbs, rs, st, warp, tid & 31, reinterpret_cast<E*>(z + t0 * (kTma ? 128 : 2 * kLdP)));
  };
  walk_items_ring<E, kTma, kTeams>(w, reinterpret_cast<char*>(ssd_walk_smem), load, compute);
}

}  // namespace ssd_walk
}  // namespace mamba_kernels
