// The forward state stage (F1) on wgmma (sm_90a; ssd_state_wg_kernel, the default where it runs), its TMA variants
// and the state stage's launcher (every kernel of ssd_state_kernel.cuh and this file). Layouts, the walks and why:
// ssd_state_kernel.cuh.
#pragma once
#include <type_traits>

#include "common/tma.h"
#include "ssd/ssd_state_kernel.cuh"

namespace mamba_kernels {
namespace ssd_walk {

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
// kLateWait (MK_SSD_STATE_LATE_WAIT, with kTmaLoad): the issuer waits for the copy engine to have read a chunk's h_in
// boxes just before the next chunk's staging barrier, not before the chunk's last barrier.
struct SsdStateLateWaitParams : SsdStateTmaLoadParams {};
// kWide (MK_SSD_STATE_WIDE, with kLateWait): a chunk's products as one m64n(32 W)k16 wgmma a k16 step over every
// walk's x (the pair tiles as one MN-major B operand, its 64-column atoms kPairTileBytes apart: the descriptor's LBO),
// so that the B tile (the A operand) is read from shared memory once a k16 step instead of once a pair.
struct SsdStateWideParams : SsdStateLateWaitParams {};
// kLeanRows (MK_SSD_STATE_LEAN >= 1, with kWide): the stage's loads from addresses fixed before the walk
// (state_load_lean: no division and no 64-bit index products a chunk), and (MK_SSD_STATE_LEAN=2, kRowScale) the x
// scaling by state_scale_rows: a thread a token row (two 16-byte chunks of it) instead of two rows (one chunk each),
// one exp a walk instead of two.
struct SsdStateLeanParams : SsdStateWideParams {};
struct SsdStateRowScaleParams : SsdStateLeanParams {};

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

// kLeanRows: what state_load_tma computes for every chunk, once a CTA: the boxes' first x column, the B / x rows' and
// the thread's a / dt' entry's positions at the sequence's first token.
struct StateLoadBase {
  const float* rows;  // thread tid's a (tid < kQ) or dt' entry tid % kQ of walk 0's head, at the sequence's first token
  int64_t seqlen;     // walk i's head is ((i0 & 1) + i) / 2 heads on: its entries that many times seqlen on
  int row0, xcol0;    // the sequence's first token row (B / x maps), walk 0's first x column
};
template <int W>
__device__ __forceinline__ StateLoadBase state_load_base(const SsdStateTmaLoadParams& p, const StateCta& c, int tid) {
  const int64_t h = p.nheads, hpg = h / p.ngroups;
  StateLoadBase b;
  b.rows = (tid < kQ ? p.a : p.dtp) + (c.row * h + c.grp * hpg + c.i0 / 2) * p.seqlen + c.s0 + (tid & (kQ - 1));
  b.seqlen = p.seqlen;
  b.row0 = int(c.row * p.seqlen + c.s0);
  b.xcol0 = int(c.grp * hpg * kP + int64_t(c.i0) * kHalfP);
  return b;
}
// state_load_tma from a StateLoadBase.
template <typename E, int W>
__device__ __forceinline__ void state_load_lean(const SsdStateTmaLoadParams& p, const StateCta& c,
                                                const StateLoadBase& lb, int chunk, char* st, uint64_t* bar, int tid) {
  constexpr int kPairsW = (W + 1) / 2;
  const int ln = c.len - chunk * kQ < kQ ? c.len - chunk * kQ : kQ;
  if (tid == 0) {
    const int row = lb.row0 + chunk * kQ;
    mbar_expect_tx(bar, (2 + kPairsW) * 16384);
    tma_load_box(&p.b_map, st, bar, row, c.grp, 0);
    tma_load_box(&p.b_map, st + 16384, bar, row, c.grp, 64);
#pragma unroll
    for (int u = 0; u < kPairsW; ++u)
      tma_load_box(&p.x_map, state_walk_base<W, kXPairs>(st, 2 * u), bar, row, 0, lb.xcol0 + 2 * u * kHalfP);
  }
  const float* src = lb.rows + chunk * kQ;
  const bool in = (tid & (kQ - 1)) < ln;
#pragma unroll
  for (int i = 0; i < W; ++i) {
    if (i >= c.nw) break;
    float* dst = state_walk_rows<W, kXPairs>(st, i) + tid;  // a in [0, Q), dt' in [Q, 2Q)
    if (in) cp_async4(dst, src + ((c.i0 & 1) + i) / 2 * lb.seqlen);
    else *dst = 0.f;
  }
}

// kRowScale: x_s *= w_s = exp(a_L - a_s) dt'_s in place (kXPairs), thread tid on token row tid % kQ's 16-byte chunks
// 2 (tid / kQ) and + 1 of every walk (rows past ln are left: zeros); then the fence that hands them to wgmma. A
// quarter warp's 8 rows take 8 distinct chunk positions of the swizzle: conflict-free.
template <int W>
__device__ __forceinline__ void state_scale_rows(const StateCta& c, char* st, int ln, int tid) {
  const int r = tid & (kQ - 1), v0 = 2 * (tid >> 7);
  if (r < ln) {
#pragma unroll
    for (int i = 0; i < W; ++i) {
      if (i >= c.nw) break;
      const float* rowsf = state_walk_rows<W, kXPairs>(st, i);
      const float w = __expf(rowsf[ln - 1] - rowsf[r]) * rowsf[kQ + r];
      char* wb = state_walk_base<W, kXPairs>(st, i);
      uint4* a = reinterpret_cast<uint4*>(wb + pair_x_offset(i, r, v0));
      uint4* b = reinterpret_cast<uint4*>(wb + pair_x_offset(i, r, v0 + 1));
      uint4 ta = *a, tb = *b;
      ta.x = scale_pair(ta.x, w, w);
      ta.y = scale_pair(ta.y, w, w);
      ta.z = scale_pair(ta.z, w, w);
      ta.w = scale_pair(ta.w, w, w);
      tb.x = scale_pair(tb.x, w, w);
      tb.y = scale_pair(tb.y, w, w);
      tb.z = scale_pair(tb.z, w, w);
      tb.w = scale_pair(tb.w, w, w);
      *a = ta;
      *b = tb;
    }
  }
  fence_proxy_async();
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
// (state_load_tma), the rows past a short chunk cleared in shared memory (state_zero_tail). kLateWait (PP =
// SsdStateLateWaitParams: MK_SSD_STATE_LATE_WAIT, the default with kTmaLoad; 116.7-119.5 us against 125.3-127.8): the
// issuer's wait for the boxes' reads moved from before the loop-end barrier to before the next staging barrier.
// kWide (SsdStateWideParams: MK_SSD_STATE_WIDE, the default with kLateWait; 107.1-107.6 us against 116.6-117.1): one
// m64n(32 W)k16 product a k16 step over every walk (an SS wgmma at N 64 reads 4 KB of shared memory for 32 clocks of
// tensor work: the pair products were shared-memory bound). kLeanRows / kRowScale (SsdStateLeanParams /
// SsdStateRowScaleParams: MK_SSD_STATE_LEAN=1 / 2, 2 the default; 104.7-107.8 / 99.4-100.8 us against 107.6-110.3 for
// kWide alone): state_load_lean, state_scale_rows.

template <typename E, int W, bool kPairs = false, typename PP = SsdStateParams>
__global__ void __launch_bounds__(kThreads, 1) ssd_state_wg_kernel(const __grid_constant__ PP p) {
#if defined(MK_WGMMA_DEVICE) || !defined(__CUDA_ARCH__)
  constexpr bool kTma = std::is_base_of_v<SsdStateTmaParams, PP>;
  constexpr bool kTmaLoad = std::is_base_of_v<SsdStateTmaLoadParams, PP>;
  constexpr bool kLateWait = std::is_base_of_v<SsdStateLateWaitParams, PP>;
  constexpr bool kWide = std::is_base_of_v<SsdStateWideParams, PP>;
  constexpr bool kLeanRows = std::is_base_of_v<SsdStateLeanParams, PP>;
  constexpr bool kRowScale = std::is_base_of_v<SsdStateRowScaleParams, PP>;
  static_assert(!kTma || kPairs, "the TMA stores come with the paired products");
  constexpr int kX = kPairs ? kXPairs : kXSwz64;
  constexpr int kStageBytes = state_wg_stage_bytes(W, kPairs);
  char* smem = reinterpret_cast<char*>(ssd_walk_smem);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, q = lane & 3;
  const int wg = warp >> 2, nrow0 = 64 * wg + 16 * (warp & 3);  // the warp's first n row of every walk's S^T
  // F2 (the ring, MK_SSD_WALK_PDL) may launch now: its CTAs take the SMs that F1's leave and wait for F1's end
  // (griddep_wait) before they read h_in; what overlaps is the launch and F1's tail
  griddep_launch_dependents();
  const StateCta c = state_cta(p, W);
  if (c.nw <= 0) return;
  // launched as a programmatic dependent of the kernel before it (MK_SSD_STATE_PDL: K0's dt' / a rows, or a
  // conversion of the initial states): nothing that kernel writes is read before this; a no-op otherwise
  griddep_wait();
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
  [[maybe_unused]] StateLoadBase lb;
  if constexpr (kLeanRows) lb = state_load_base<W>(p, c, tid);
  const auto load = [&](int chunk) {
    char* dst = smem + (chunk & 1) * kStageBytes;
    if constexpr (kLeanRows) state_load_lean<E, W>(p, c, lb, chunk, dst, &bars[chunk & 1], tid);
    else if constexpr (kTmaLoad) state_load_tma<E, W>(p, c, chunk, dst, &bars[chunk & 1], tid);
    else state_load<E, W, kX>(p, c, chunk, dst, tid);
  };
  if constexpr (kTmaLoad) {
    if (tid == 0) {
      mbar_init(&bars[0], 1);
      mbar_init(&bars[1], 1);
    }
    __syncthreads();
  }

  // h_in of chunk k = S (bf16, staged as (p, n) rows by stmatrix.trans: the accumulator holds (n, p)), then
  // S *= exp(a_L). Matrix m of a walk's two x4 stores: p rows 8 (2 u + m / 2) .., n columns 8 (m % 2) ..
  const auto stage_entry = [&](char* st, int ln) {
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
  };

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
    if constexpr (kRowScale) state_scale_rows<W>(c, st, ln, tid);
    else state_scale<E, W, kX>(c, st, ln, tid);
    if constexpr (kLateWait) {
      if (tma_issuer) tma_wait_read<0>();  // the previous chunk's boxes are read: this chunk's staging may rewrite them
    }
    __syncthreads();
    stage_entry(st, ln);
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
    if constexpr (kWide) {
      float(&d)[4 * W][4] = *reinterpret_cast<float(*)[4 * W][4]>(&acc[0][0][0]);
      const char* xw = state_walk_base<W, kX>(st, 0);
#pragma unroll
      for (int kk = 0; kk < kQ / 16; ++kk)
        wgmma_ss_bf16<true, true, true>(d, wg_desc<128>(st + 16384 * wg + 2048 * kk),
                                        wg_desc<128>(xw + 2048 * kk, kPairTileBytes));
    } else if constexpr (kPairs) {
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
    if (!kLateWait && tma_issuer) tma_wait_read<0>();  // the boxes are read: the next chunk's staging may rewrite them
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
// kWgmmaPairsTmaLoad: and its tiles by TMA loads, MK_SSD_STATE_TMA_LOAD; kWgmmaPairsTmaLoadLate: and the late wait
// for the boxes' reads, MK_SSD_STATE_LATE_WAIT; kWgmmaWide: and one wide product a k16 step, MK_SSD_STATE_WIDE;
// kWgmmaLean / kWgmmaRowScale: and the lean loads / and the row scaling, MK_SSD_STATE_LEAN=1 / 2).
enum class StateKernel {
  kPlain, kSkew, kWgmma, kWgmmaPairs, kWgmmaPairsTma, kWgmmaPairsTmaLoad, kWgmmaPairsTmaLoadLate, kWgmmaWide,
  kWgmmaLean, kWgmmaRowScale
};

// A parameter type as a value (launch_state picks the TMA variant's kernel by it; C++17: no std::type_identity).
template <typename T> struct ParamsTag { using type = T; };

// One launch of the state stage with W walks a CTA (W <= kStateWgMaxWalks for kWgmma).
// (kWgmmaPairsTma / kWgmmaPairsTmaLoad / kWgmmaPairsTmaLoadLate / kWgmmaWide / kWgmmaLean / kWgmmaRowScale: p is an
// SsdStateTmaParams / ... / SsdStateRowScaleParams, the kernel's parameter type, with its tensor maps.)
// pdl: the wgmma kernels (which wait with griddep_wait before their first read) as programmatic dependents of the
// kernel before them on the stream.
template <int W>
cudaError_t launch_state(const SsdStateParams& p, StateKernel which, cudaStream_t stream, bool pdl = false) {
  const int64_t halves = 2 * (p.nheads / p.ngroups);
  const int64_t grid = p.nseq * p.ngroups * ((halves + W - 1) / W);
  if (grid == 0) return cudaSuccess;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  const bool dependent = pdl && which != StateKernel::kPlain && which != StateKernel::kSkew;
  const auto run = [&](auto kernel, int smem, const auto& params) {
    cudaLaunchConfig_t cfg = {};
    cfg.blockDim = dim3(kThreads);
    cfg.gridDim = dim3(unsigned(grid));
    cfg.dynamicSmemBytes = size_t(smem);
    cfg.stream = stream;
    cfg.attrs = attr;
    cfg.numAttrs = dependent ? 1 : 0;
    cudaError_t e = opt_in_smem(kernel, smem, "the SSD state stage");
    if (e == cudaSuccess) e = cudaLaunchKernelEx(&cfg, kernel, params);
    return e == cudaSuccess ? cudaGetLastError() : e;
  };
  // ssd_state_wg_kernel with the paired products and the TMA variant whose parameter type is PP (its tensor maps)
  const auto run_tma = [&](auto pp) {
    using PP = typename decltype(pp)::type;
    constexpr bool kLoads = std::is_base_of_v<SsdStateTmaLoadParams, PP>;
    return run(ssd_state_wg_kernel<__nv_bfloat16, W, true, PP>, state_wg_smem_bytes(W, true, true, kLoads),
               static_cast<const PP&>(p));
  };
  if constexpr (W <= kStateWgMaxWalks) {
    switch (which) {
      case StateKernel::kWgmma: return run(ssd_state_wg_kernel<__nv_bfloat16, W>, state_wg_smem_bytes(W), p);
      case StateKernel::kWgmmaPairs:
        return run(ssd_state_wg_kernel<__nv_bfloat16, W, true>, state_wg_smem_bytes(W, true), p);
      case StateKernel::kWgmmaPairsTma: return run_tma(ParamsTag<SsdStateTmaParams>{});
      case StateKernel::kWgmmaPairsTmaLoad: return run_tma(ParamsTag<SsdStateTmaLoadParams>{});
      case StateKernel::kWgmmaPairsTmaLoadLate: return run_tma(ParamsTag<SsdStateLateWaitParams>{});
      case StateKernel::kWgmmaWide: return run_tma(ParamsTag<SsdStateWideParams>{});
      case StateKernel::kWgmmaLean: return run_tma(ParamsTag<SsdStateLeanParams>{});
      case StateKernel::kWgmmaRowScale: return run_tma(ParamsTag<SsdStateRowScaleParams>{});
      default: break;
    }
  } else if (which != StateKernel::kPlain && which != StateKernel::kSkew) {
    return cudaErrorInvalidValue;
  }
  return which == StateKernel::kSkew ? run(ssd_state_kernel<__nv_bfloat16, W, true>, state_smem_bytes(W, true), p)
                                     : run(ssd_state_kernel<__nv_bfloat16, W, false>, state_smem_bytes(W, false), p);
}

}  // namespace ssd_walk
}  // namespace mamba_kernels
