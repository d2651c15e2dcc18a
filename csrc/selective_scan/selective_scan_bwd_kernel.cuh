// Mamba-1 selective scan backward, CUDA. CUDA headers only (no torch).
//
// Layout like the forward's (selective_scan_fwd_kernel.cuh), with runs of kBwdT = 8 tokens (more values live
// per token): one warp per channel, tiles of kBwdTile = 256 tokens, lane r owning the run [8r, 8r + 8); a
// block of kBwdWarps = 16 warps holds 16 channels of one (batch row, B/C group). Tiles are walked in REVERSE.
// With a_t = exp(delta_t A), the adjoint q_t = dL/dh_{t-1} (through h_t) obeys the reverse recurrence
//   g_t = C_t dy_t + q_{t+1},   q_t = a_t g_t        (g_t = dL/dh_t; dy = dout silu(z)),
// whose run composites are (prod a, local q from zero): the same scan as the forward, run right to left.
// Per state n of a tile each lane:
//   1. a_t = ex2(delta_t A_n log2e) -- the only exponential per (t, n) -- and the forward composites; lane 0
//      folds in the state entering the tile (saved by the forward: p.states every 2^ckpt_log2 <= 256 steps)
//      and a __shfl_up scan gives each run its entering state; h_{t-1} (8 registers) and h_t recomputed;
//      y_t += C_t h_t (for dz), dC_t = dy_t h_t
//   2. the reverse composites; lane 31 folds in the adjoint entering from the next tile (shared memory,
//      touched by lane 31 only); a __shfl_down scan; then per token g_t, dB_t = g_t delta_t u_t,
//      sum_n g B (du, ddelta), sum_n A g a h_{t-1} (ddelta), dA += delta g a h_{t-1}
// Variable dB/dC: each warp stores its (state, token) values in shared memory; after each slice of kBwdNS
// states the block sums its 16 channels and adds them to the fp32 (b, g, n, l) buffers with atomicAdd
// (float4 on sm_90): b g n l d / (16 g) / 4 vector atomics in all. dA and constant dB/dC: warp sums per tile,
// atomicAdd by lane 0; dD, ddelta_bias: per lane, summed at the end. dinitial_state = q at the start.
// Issue per (t, n): 1 MUFU, ~18 FP32 ops, ~3.5 shuffles (two scans + the dA sum), ~1 LDS/STS.128: ~35 by count;
// ncu (H200, b2 d4096 l4096, 2026-11-30, before MK_SS_BWD_PSCAN): 49 a (t, n) executed (the state loop 38, the
// dB / dC flush 8, the per-token tail 3) at IPC 1.84, 1.78 ms.
#pragma once
#include "common/smem_optin.h"
#include "selective_scan/selective_scan_fwd_kernel.cuh"

namespace mamba_kernels {
namespace ss {

// Knobs (MK_SS_BWD_*): see the block in selective_scan_fwd_kernel.cuh, and
//   MK_SS_BWD_CLUSTER  variable dB/dC flush (selective_scan_bwd_variants.cuh): 0 per block, dB then dC
//                      (flush_partials); 1 both variables in one pass. Default 1: H200 lab run 12 (94ff8e8), bwd
//                      ms at b2 d4096 / b8 d2048 / b1 d8192: 1 1.844 / 1.843 / 3.597, 0 1.987 / 2.001 / 3.924
//                      (cluster reductions, 2..8, were slower: 2.2-2.7 ms at b2 d4096; removed)
#ifndef MK_SS_BWD_T
#define MK_SS_BWD_T 8
#endif
#ifndef MK_SS_BWD_NS
#define MK_SS_BWD_NS 4
#endif
#ifndef MK_SS_BWD_WARPS
#define MK_SS_BWD_WARPS 16
#endif
#ifndef MK_SS_BWD_MIN_BLOCKS
#define MK_SS_BWD_MIN_BLOCKS 1
#endif
#ifndef MK_SS_BWD_NO_DBC_FLUSH
#define MK_SS_BWD_NO_DBC_FLUSH 0
#endif
#ifndef MK_SS_BWD_CLUSTER
#define MK_SS_BWD_CLUSTER 1
#endif
#ifndef MK_SS_BWD_PSCAN
#define MK_SS_BWD_PSCAN 1
#endif
//   MK_SS_BWD_PSCAN    1: both scans by the forward's predicated levels (scan_level_pred*: 2 SHFL and a predicated
//                      FFMA / FMUL a level, no SEL; ncu had the SELs of shfl_*_or among the top stalls) (1; H200
//                      lab 2026-11-30 run 3, bwd ms at b2 d4096 / b8 d2048 / b1 d8192: 1.725 / 1.718 / 3.367, 0:
//                      1.824 / 1.839 / 3.594)
constexpr bool kBwdPScan = MK_SS_BWD_PSCAN != 0;
#ifndef MK_SS_BWD_PREFETCH
#define MK_SS_BWD_PREFETCH 1
#endif
//   MK_SS_BWD_PREFETCH 1: at each tile start, prefetch.global.L2 the previous tile's delta, u, dout, z runs (ncu:
//                      the tile-start loads were ~7% of the stall samples) (1; H200 lab 2026-11-30 run 4, bwd ms
//                      at b2 d4096 / b8 d2048 / b1 d8192: 1.666 / 1.665 / 3.274, 0: 1.709 / 1.709 / 3.361. Keeping
//                      each lane's dA partials in shared memory over the whole walk instead of a warp sum a (tile,
//                      state) gained 0.7% more: not kept, its 32 KB would not fit an A100's 163 KB with the rest)
//                      Measured and removed (8c6c39a, MK_SS_BWD_BATCH): a tile's delta / u / dout / z runs issued
//                      together before the first use (ncu at 96d9c93 had those first uses, the A / saved-state
//                      loads at each slice start and the B / C fetch among the long-scoreboard stalls, 14% of
//                      the samples), the next slice's A / state / B / C fetched before its barrier: lab 2026-12-02
//                      run 3 1.597 / 1.614 / 3.098 ms against 1.597 / 1.596 / 3.146 (equal: other warps hid it)
constexpr bool kBwdPrefetch = MK_SS_BWD_PREFETCH != 0;
constexpr int kBwdT = MK_SS_BWD_T;       // tokens per lane (backward: more live per-token values than forward)
constexpr int kBwdTile = 32 * kBwdT;     // tokens per warp per tile
constexpr int kBwdNS = MK_SS_BWD_NS;     // states per slice (bounds the per-warp dB/dC buffers)
constexpr int kBwdWarps = MK_SS_BWD_WARPS;  // channels per block: the variable dB/dC atomics are per block
constexpr int kBwdThreads = 32 * kBwdWarps;
constexpr int kBwdFetchC0 = kBwdThreads / 2;  // first thread of the C fetch role
constexpr int kBwdPoly16 = MK_SS_BWD_POLY16;
constexpr int kBwdPolyN = kBwdPoly16 * kBwdT / 16;
static_assert(kBwdT == 8 || kBwdT == 16, "MK_SS_BWD_T: 8 or 16 (16-byte vectors of fp16/bf16 per run)");
static_assert(kBwdPoly16 >= 0 && kBwdPoly16 <= 16, "MK_SS_BWD_POLY16: 0..16");
constexpr float kLn2 = 0.6931471805599453f;

// Shared-memory bytes: B/C tiles [kBwdNS][kBwdTile] and dB/dC partials [kBwdWarps][kBwdNS][kBwdTile] for each
// variable one; per warp [n]: the adjoint carry.
inline int64_t bwd_smem_bytes(int64_t n, bool var_b, bool var_c) {
  const int64_t nv = int64_t(var_b) + int64_t(var_c);
  return 4 * (nv * kBwdNS * kBwdTile * (1 + kBwdWarps) + kBwdWarps * n);
}

// The inclusive scan of the warp's run composites (Al, Bl) = (decay, value from zero): left to right (kDown =
// false: the states entering the runs) or right to left (the adjoints). Al is not used after either scan, so the
// last level leaves it as it was.
template <bool kDown>
__device__ __forceinline__ void bwd_lane_scan(float& Al, float& Bl) {
  if constexpr (kBwdPScan) {
#pragma unroll
    for (int o = 1; o < 16; o <<= 1) scan_level_pred<true, kDown>(Al, Bl, o);
    scan_level_pred<false, kDown>(Al, Bl, 16);
  } else {
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      float Ap, Bp;
      if constexpr (kDown) {
        Ap = shfl_down_or(Al, o, 1.f);
        Bp = shfl_down_or(Bl, o, 0.f);
      } else {
        Ap = shfl_up_or(Al, o, 1.f);
        Bp = shfl_up_or(Bl, o, 0.f);
      }
      Bl = fmaf(Al, Bp, Bl);
      Al *= Ap;
    }
  }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

// dst[0..cnt) += v (cnt <= 4): one vector atomic on sm_90 when whole and aligned.
__device__ __forceinline__ void atomic_add4(float* dst, int cnt, float4 v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (cnt == 4 && (reinterpret_cast<uintptr_t>(dst) & 15) == 0) {
    atomicAdd(reinterpret_cast<float4*>(dst), v);
    return;
  }
#endif
  if (cnt > 0) atomicAdd(dst, v.x);
  if (cnt > 1) atomicAdd(dst + 1, v.y);
  if (cnt > 2) atomicAdd(dst + 2, v.z);
  if (cnt > 3) atomicAdd(dst + 3, v.w);
}

// Token of float4 j (0 .. kBwdTile / 4) of a tile row (read_run layout), relative to the tile start.
__device__ __forceinline__ int bwd_f4_token(int j) {
  return kBwdT == 8 ? (j < 32 ? 8 * j : 8 * (j - 32) + 4) : (j & 31) * kBwdT + 4 * (j >> 5);
}

// Float4 j of state row s of the dB or dC partials, summed over the block's first nw warps (its valid channels).
// A whole block (all but the last of a group) sums without the per-warp bound test (H200 lab 2026-11-30 run 6:
// bwd 1.669 -> 1.61 ms at b2 d4096).
template <bool kWhole>
__device__ __forceinline__ float4 sum_warp_partials4(const float4* p4, int nw) {
  constexpr int kWarpStep = kBwdNS * kBwdTile / 4;  // float4s between two warps' partials
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
  for (int w = 0; w < kBwdWarps; ++w) {
    if (!kWhole && w >= nw) break;
    const float4 v = p4[w * kWarpStep];
    acc.x += v.x; acc.y += v.y; acc.z += v.z; acc.w += v.w;
  }
  return acc;
}
__device__ __forceinline__ float4 warp_partials_sum4(const float* part, int s, int j, int nw) {
  const float4* p4 = reinterpret_cast<const float4*>(part + s * kBwdTile) + j;
  return nw == kBwdWarps ? sum_warp_partials4<true>(p4, nw) : sum_warp_partials4<false>(p4, nw);
}

// Sums the dB or dC partials of the block's warps for states ns0 .. ns0 + nsl and adds them to dst (n, L) rows
// (MK_SS_BWD_CLUSTER = 0: one variable at a time).
__device__ __forceinline__ void flush_partials(const float* part, float* __restrict__ dst, int64_t L, int ns0,
                                              int nsl, int64_t t0, int64_t s1, int nw) {
  constexpr int kF4 = kBwdTile / 4;  // float4s per row
  for (int idx = threadIdx.x; idx < nsl * kF4; idx += kBwdThreads) {
    const int s = int(unsigned(idx) / kF4), j = int(unsigned(idx) % kF4);
    const float4 acc = warp_partials_sum4(part, s, j, nw);
    const int64_t t = t0 + bwd_f4_token(j);
    const int64_t cnt = s1 - t < 0 ? 0 : (s1 - t < 4 ? s1 - t : 4);
    atomic_add4(dst + (ns0 + s) * L + t, int(cnt), acc);
  }
}

}  // namespace ss
}  // namespace mamba_kernels
#include "selective_scan/selective_scan_bwd_variants.cuh"  // MK_SS_BWD_CLUSTER flush variants
namespace mamba_kernels {
namespace ss {

// Double-buffer-free prefetch of a B/C slice (rows ns0 .. ns0 + nsl, the kBwdTile steps from t0): threads
// [0, 32 kBwdNS) own the B runs, [kBwdFetchC0, kBwdFetchC0 + 32 kBwdNS) the C runs (run idx = (row << 5) |
// lane; production: [0, 128) and [256, 384)), fetched into registers while the block flushes the previous
// slice's dB/dC, then stored once every warp is done reading the tiles.
static_assert(kBwdNS * 32 <= kBwdFetchC0, "B/C fetch roles: MK_SS_BWD_NS * 32 <= 16 * MK_SS_BWD_WARPS");
template <typename in_t>
__device__ __forceinline__ void fetch_run(const in_t* __restrict__ src, int64_t dstate_stride, int idx, int ns0,
                                          int nsl, int64_t t0, int64_t s1, float (&v)[kBwdT]) {
  const int s = idx >> 5, r = idx & 31;
  const int64_t tr = t0 + r * kBwdT;
  const int nv = s >= nsl ? 0 : int(s1 - tr < 0 ? 0 : (s1 - tr < kBwdT ? s1 - tr : kBwdT));
  load_run<kBwdT>(src + (ns0 + s) * dstate_stride + tr, nv, v);  // zeros past s1 or past the slice
}
__device__ __forceinline__ void store_run_tile(float* tile, int idx, int nsl, const float (&v)[kBwdT]) {
  if ((idx >> 5) < nsl) write_run<kBwdT>(tile + (idx >> 5) * kBwdTile, idx & 31, v);
}

template <typename in_t, bool kVarB, bool kVarC>
__global__ void __launch_bounds__(kBwdThreads, MK_SS_BWD_MIN_BLOCKS)
selective_scan_bwd_kernel(const SelectiveScanParams p) {
  extern __shared__ float4 smem_f4[];
  float* smem = reinterpret_cast<float*>(smem_f4);
  constexpr int kPart = kBwdWarps * kBwdNS * kBwdTile;
  float* s_B = smem;                                    // [kBwdNS][kBwdTile]
  float* s_C = s_B + (kVarB ? kBwdNS * kBwdTile : 0);      // [kBwdNS][kBwdTile]
  float* s_dB = s_C + (kVarC ? kBwdNS * kBwdTile : 0);     // [kBwdWarps][kBwdNS][kBwdTile]
  float* s_dC = s_dB + (kVarB ? kPart : 0);             // [kBwdWarps][kBwdNS][kBwdTile]
  float* s_q = s_dC + (kVarC ? kPart : 0);              // [kBwdWarps][n]

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t b = blockIdx.z, grp = blockIdx.y;
  const int64_t dpg = p.dim / gridDim.y;
  const int64_t cblk = int64_t(blockIdx.x) * kBwdWarps;
  const bool c_ok = cblk + warp < dpg;
  const int64_t c = grp * dpg + cblk + (c_ok ? warp : 0);  // idle warps compute on channel c0, add nothing
  const int nw = int(dpg - cblk < kBwdWarps ? dpg - cblk : kBwdWarps);  // valid channels (warps)
  const int n = int(p.dstate);
  const int64_t L = p.seqlen;
  float* qc = s_q + warp * n;  // adjoint entering from the right: lane 31 only

  const in_t* __restrict__ u = static_cast<const in_t*>(p.u) + b * p.u_batch_stride + c * p.u_d_stride;
  const in_t* __restrict__ dl = static_cast<const in_t*>(p.delta) + b * p.delta_batch_stride + c * p.delta_d_stride;
  const in_t* __restrict__ zp = p.z ? static_cast<const in_t*>(p.z) + b * p.z_batch_stride + c * p.z_d_stride : nullptr;
  const in_t* __restrict__ dout = static_cast<const in_t*>(p.dout) + b * p.dout_batch_stride + c * p.dout_d_stride;
  const int64_t orow = (b * p.dim + c) * L;  // du, ddelta, dz: (b, d, l) contiguous
  in_t* __restrict__ du_out = static_cast<in_t*>(p.du) + orow;
  in_t* __restrict__ ddelta_out = static_cast<in_t*>(p.ddelta) + orow;
  in_t* __restrict__ dz_out = p.z ? static_cast<in_t*>(p.dz) + orow : nullptr;
  const float* __restrict__ Arow = static_cast<const float*>(p.A) + c * p.A_d_stride;
  const float* __restrict__ Bc = kVarB ? nullptr : static_cast<const float*>(p.B) + c * p.B_d_stride;
  const float* __restrict__ Cc = kVarC ? nullptr : static_cast<const float*>(p.C) + c * p.C_d_stride;
  const in_t* __restrict__ Bv = kVarB ? static_cast<const in_t*>(p.B) + b * p.B_batch_stride + grp * p.B_group_stride : nullptr;
  const in_t* __restrict__ Cv = kVarC ? static_cast<const in_t*>(p.C) + b * p.C_batch_stride + grp * p.C_group_stride : nullptr;
  const int64_t G = gridDim.y;
  float* __restrict__ dBv = kVarB ? static_cast<float*>(p.dB) + (b * G + grp) * n * L : nullptr;
  float* __restrict__ dCv = kVarC ? static_cast<float*>(p.dC) + (b * G + grp) * n * L : nullptr;
  const float Dv = p.D ? static_cast<const float*>(p.D)[c] : 0.f;
  const float bias = p.delta_bias ? static_cast<const float*>(p.delta_bias)[c] : 0.f;
  const float* __restrict__ states = static_cast<const float*>(p.states);
  float dD_acc = 0.f, dbias_acc = 0.f;

  const int64_t ck_mask = (int64_t(1) << p.ckpt_log2) - 1;
  int64_t ck_base = 0;
  const int64_t nseq = p.cu_seqlens ? p.n_seqs : 1;
  for (int64_t q = 0; q < nseq; ++q) {
    const int64_t s0 = p.cu_seqlens ? p.cu_seqlens[q] : 0;
    const int64_t s1 = p.cu_seqlens ? p.cu_seqlens[q + 1] : L;
    const int64_t slot = p.cu_seqlens ? q : b;
    if (lane == 31)
      for (int s = 0; s < n; ++s)
        qc[s] = p.dlast_state ? static_cast<const float*>(p.dlast_state)[(slot * p.dim + c) * n + s] : 0.f;
    const int64_t ntiles = (s1 - s0 + kBwdTile - 1) / kBwdTile;
    // B/C fetch role of this thread (see fetch_run): 0 none, 1 B, 2 C; idx its run in the slice
    const int tid = int(threadIdx.x);
    const int role = (kVarB && tid < kBwdNS * 32) ? 1
                     : ((kVarC && tid >= kBwdFetchC0 && tid < kBwdFetchC0 + kBwdNS * 32) ? 2 : 0);
    const int fidx = tid % kBwdFetchC0;
    if constexpr (kVarB || kVarC) {  // the first slice of the last tile
      __syncthreads();
      if (ntiles > 0 && role != 0) {
        const int64_t tl = s0 + (ntiles - 1) * kBwdTile;
        const int nsl0 = n < kBwdNS ? n : kBwdNS;
        float v[kBwdT];
        fetch_run(role == 1 ? Bv : Cv, role == 1 ? p.B_dstate_stride : p.C_dstate_stride, fidx, 0, nsl0, tl, s1, v);
        store_run_tile(role == 1 ? s_B : s_C, fidx, nsl0, v);
      }
      __syncthreads();
    }
    for (int64_t k = ntiles - 1; k >= 0; --k) {
      const int64_t t0 = s0 + k * kBwdTile;
      const int64_t tr = t0 + lane * kBwdT;
      if (kBwdPrefetch && k > 0) {  // the previous tile's runs (read at its start), into L2 meanwhile
        prefetch_l2(dl + tr - kBwdTile);
        prefetch_l2(u + tr - kBwdTile);
        prefetch_l2(dout + tr - kBwdTile);
        if (zp) prefetch_l2(zp + tr - kBwdTile);
      }
      const int nv = int(s1 - tr < 0 ? 0 : (s1 - tr < kBwdT ? s1 - tr : kBwdT));
      const float* __restrict__ st = states + ((b * p.dim + c) * p.states_n_chunks + ck_base + ((k * kBwdTile) >> p.ckpt_log2)) * n;
      float dt[kBwdT], uu[kBwdT], dtu[kBwdT], dy[kBwdT], sdt = 0.f;
      load_run<kBwdT>(dl + tr, nv, dt);
      load_run<kBwdT>(u + tr, nv, uu);
      load_run<kBwdT>(dout + tr, nv, dy);
      if (zp) {
        float zz[kBwdT];
        load_run<kBwdT>(zp + tr, nv, zz);
#pragma unroll
        for (int i = 0; i < kBwdT; ++i) dy[i] *= silu_f(zz[i]);
      }
#pragma unroll
      for (int i = 0; i < kBwdT; ++i) {
        float x = dt[i] + bias;
        if (p.delta_softplus) x = softplus_f(x);
        dt[i] = i < nv ? x : 0.f;  // steps past the end: a = 1, b = 0, dy = 0
        sdt += dt[i];
        dtu[i] = dt[i] * uu[i];
        dD_acc = fmaf(dy[i], uu[i], dD_acc);  // zero past the end
      }
      float sgb[kBwdT], sda[kBwdT], yv[kBwdT];
#pragma unroll
      for (int i = 0; i < kBwdT; ++i) sgb[i] = sda[i] = yv[i] = 0.f;
      for (int ns0 = 0; ns0 < n; ns0 += kBwdNS) {
        const int nsl = n - ns0 < kBwdNS ? n - ns0 : kBwdNS;
        // A and the saved entering state of the next state are loaded one iteration ahead (global loads
        // that would otherwise stall the start of each iteration's chain). The state loop is left to the
        // compiler's unrolling (unroll 2 / 4 measured equal: lab 2026-11-30 run 7)
        float A_next = Arow[ns0], h0_next = lane == 0 ? st[ns0] : 0.f;
        for (int s = 0; s < nsl; ++s) {
          const int sn = ns0 + s;
          const float A2 = A_next * kLog2e, h0 = h0_next;
          if (s + 1 < nsl) {
            A_next = Arow[sn + 1];
            if (lane == 0) h0_next = st[sn + 1];
          }
          float Bt[kBwdT], Ct[kBwdT];
          if constexpr (kVarB) read_run<kBwdT>(s_B + s * kBwdTile, lane, Bt);
          else
#pragma unroll
            for (int i = 0; i < kBwdT; ++i) Bt[i] = Bc[sn];
          if constexpr (kVarC) read_run<kBwdT>(s_C + s * kBwdTile, lane, Ct);
          else
#pragma unroll
            for (int i = 0; i < kBwdT; ++i) Ct[i] = Cc[sn];
          // 1. forward: entering states, h_{t-1} (hp), h_t
          float a[kBwdT], hp[kBwdT];
#pragma unroll
          for (int i = 0; i < kBwdT; ++i) a[i] = decay_exp2<kBwdPoly16>(dt[i] * A2, poly_token(i, kBwdT, kBwdPolyN));
          float Al = decay_exp2<kBwdPoly16>(A2 * sdt, kBwdPoly16 == 16), Bl = dtu[0] * Bt[0];  // run decay: one ex2 of the summed steps
#pragma unroll
          for (int i = 1; i < kBwdT; ++i) Bl = fmaf(a[i], Bl, dtu[i] * Bt[i]);
          const float Arun = Al;
          if (lane == 0) Bl = fmaf(Al, h0, Bl);
          bwd_lane_scan<false>(Al, Bl);
          float h = __shfl_up_sync(kFullMask, Bl, 1);
          if (lane == 0) h = h0;
          float dCl = 0.f, vC[kBwdT];
#pragma unroll
          for (int i = 0; i < kBwdT; ++i) {
            hp[i] = h;
            h = fmaf(a[i], h, dtu[i] * Bt[i]);
            yv[i] = fmaf(Ct[i], h, yv[i]);
            vC[i] = dy[i] * h;
            dCl += vC[i];
          }
          if constexpr (kVarC) write_run<kBwdT>(s_dC + (warp * kBwdNS + s) * kBwdTile, lane, vC);
          // 2. reverse: adjoints
          float Ql = a[kBwdT - 1] * (Ct[kBwdT - 1] * dy[kBwdT - 1]);
#pragma unroll
          for (int i = kBwdT - 2; i >= 0; --i) Ql = a[i] * fmaf(Ct[i], dy[i], Ql);
          Al = Arun;
          float qin = 0.f;
          if (lane == 31) {
            qin = qc[sn];
            Ql = fmaf(Al, qin, Ql);
          }
          bwd_lane_scan<true>(Al, Ql);
          float qv = __shfl_down_sync(kFullMask, Ql, 1);
          const float qtot = __shfl_sync(kFullMask, Ql, 0);
          if (lane == 31) {
            qv = qin;
            qc[sn] = qtot;
          }
          // B_t, C_t re-read here rather than held live across the scans (register pressure)
          if constexpr (kVarB) read_run<kBwdT>(s_B + s * kBwdTile, lane, Bt);
          if constexpr (kVarC) read_run<kBwdT>(s_C + s * kBwdTile, lane, Ct);
          float dAl = 0.f, dBl = 0.f, vB[kBwdT];
#pragma unroll
          for (int i = kBwdT - 1; i >= 0; --i) {
            const float g = fmaf(Ct[i], dy[i], qv);
            vB[i] = g * dtu[i];
            dBl += vB[i];
            sgb[i] = fmaf(g, Bt[i], sgb[i]);
            qv = g * a[i];
            const float w = qv * hp[i];
            sda[i] = fmaf(A2, w, sda[i]);
            dAl = fmaf(dt[i], w, dAl);
          }
          if constexpr (kVarB) write_run<kBwdT>(s_dB + (warp * kBwdNS + s) * kBwdTile, lane, vB);
          dAl = warp_sum(dAl);
          if constexpr (!kVarB) dBl = warp_sum(dBl);
          if constexpr (!kVarC) dCl = warp_sum(dCl);
          if (lane == 0 && c_ok) {  // per tile: b d n l / 256 atomics in all
            atomicAdd(static_cast<float*>(p.dA) + c * n + sn, dAl);
            if constexpr (!kVarB) atomicAdd(static_cast<float*>(p.dB) + c * n + sn, dBl);
            if constexpr (!kVarC) atomicAdd(static_cast<float*>(p.dC) + c * n + sn, dCl);
          }
        }
        if constexpr (kVarB || kVarC) {
          __syncthreads();  // every warp's partials are in and the tiles are consumed
          // the next (tile, slice): this tile's next slice, else the previous tile's first
          int64_t kn = k, tn = t0;
          int nn0 = ns0 + kBwdNS;
          if (nn0 >= n) { kn = k - 1; tn = t0 - kBwdTile; nn0 = 0; }
          const int nnsl = n - nn0 < kBwdNS ? n - nn0 : kBwdNS;
          float v[kBwdT];
          if (kn >= 0 && role != 0)  // in flight during the flush
            fetch_run(role == 1 ? Bv : Cv, role == 1 ? p.B_dstate_stride : p.C_dstate_stride, fidx, nn0, nnsl, tn, s1, v);
          if constexpr (kBwdCluster > 0 && !MK_SS_BWD_NO_DBC_FLUSH) {
            bwd_flush_variant<kVarB, kVarC>(s_dB, s_dC, dBv, dCv, L, s1, BwdDbcSlice{ns0, nsl, t0}, nw);
          } else {
            if constexpr (kVarB && !MK_SS_BWD_NO_DBC_FLUSH) flush_partials(s_dB, dBv, L, ns0, nsl, t0, s1, nw);
            if constexpr (kVarC && !MK_SS_BWD_NO_DBC_FLUSH) flush_partials(s_dC, dCv, L, ns0, nsl, t0, s1, nw);
          }
          if (kn >= 0 && role != 0) store_run_tile(role == 1 ? s_B : s_C, fidx, nnsl, v);
          __syncthreads();  // the next slice's tiles are in; the partials are flushed
        }
      }
      // per-token gradients
      float dov[kBwdT], zz[kBwdT], du[kBwdT], ddt[kBwdT];
      load_run<kBwdT>(u + tr, nv, uu);  // re-read (L1/L2) rather than held across the state loop
      if (p.delta_softplus) load_run<kBwdT>(dl + tr, nv, zz);  // raw delta, for softplus' (zz reused)
#pragma unroll
      for (int i = 0; i < kBwdT; ++i) {
        du[i] = fmaf(Dv, dy[i], dt[i] * sgb[i]);
        float d = fmaf(sda[i], kLn2, uu[i] * sgb[i]);
        if (p.delta_softplus) d *= __fdividef(1.f, 1.f + __expf(-(zz[i] + bias)));  // softplus' = sigmoid
        ddt[i] = d;
        if (i < nv) dbias_acc += d;
      }
      if (c_ok && nv > 0) {
        store_run<kBwdT>(du_out + tr, nv, du);
        store_run<kBwdT>(ddelta_out + tr, nv, ddt);
        if (zp) {  // out = (y + D u) silu(z):  dz = dout (y + D u) silu'(z)
          load_run<kBwdT>(dout + tr, nv, dov);
          load_run<kBwdT>(zp + tr, nv, zz);
#pragma unroll
          for (int i = 0; i < kBwdT; ++i) {
            const float sz = __fdividef(1.f, 1.f + __expf(-zz[i]));
            dov[i] *= fmaf(Dv, uu[i], yv[i]) * sz * (1.f + zz[i] * (1.f - sz));
          }
          store_run<kBwdT>(dz_out + tr, nv, dov);
        }
      }
    }
    if (p.dinitial_state && c_ok && lane == 31)
      for (int s = 0; s < n; ++s) static_cast<float*>(p.dinitial_state)[(slot * p.dim + c) * n + s] = qc[s];
    ck_base += (s1 - s0 + ck_mask) >> p.ckpt_log2;
  }
  dD_acc = warp_sum(dD_acc);
  dbias_acc = warp_sum(dbias_acc);
  if (c_ok && lane == 0) {
    if (p.dD) atomicAdd(static_cast<float*>(p.dD) + c, dD_acc);
    if (p.ddelta_bias) atomicAdd(static_cast<float*>(p.ddelta_bias) + c, dbias_acc);
  }
}

// The state-lane backward (selective_scan_bwd_lane_kernel.cuh, included at the end of this file).
inline bool bwd_lane_applies(const SelectiveScanParams& p);
template <typename in_t>
cudaError_t launch_selective_scan_bwd_lane(const SelectiveScanParams& p, cudaStream_t stream);

// Launch for one input dtype: the state-lane kernel where it applies, else one of 2 x 2 time-parallel kernels
// (variable B, variable C). Returns an error or nullptr.
template <typename in_t>
const char* launch_selective_scan_bwd(const SelectiveScanParams& p, cudaStream_t stream) {
  const bool var_b = p.is_variable_B, var_c = p.is_variable_C;
  const int64_t groups = (var_b || var_c) ? p.n_groups : 1;
  const int64_t dpg = p.dim / groups;
  if (p.ckpt_log2 < 3 || p.ckpt_log2 > 8) return "selective_scan_bwd_cuda: ckpt_chunk must be in [8, 256]";
  if (p.dstate < 1 || p.dstate > 256) return "selective_scan_bwd_cuda: dstate must be in [1, 256]";
  if (p.batch == 0 || p.dim == 0) return nullptr;
  if (p.batch > 65535 || groups > 65535) return "selective_scan_bwd_cuda: batch and groups must be <= 65535";
  if (bwd_lane_applies(p)) {
    const cudaError_t e = launch_selective_scan_bwd_lane<in_t>(p, stream);
    return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
  }
  const int64_t smem = bwd_smem_bytes(p.dstate, var_b, var_c);  // <= 152 KB (n 256, variable B and C)
  if (smem > device_smem_optin()) return "needs more shared memory a block than this GPU gives (use the triton backend)";
  cudaError_t err;
  cudaLaunchConfig_t cfg = {};
  const int64_t gx = (dpg + kBwdWarps - 1) / kBwdWarps;
  cfg.gridDim = dim3(unsigned(gx), unsigned(groups), unsigned(p.batch));
  cfg.blockDim = dim3(kBwdThreads);
  cfg.dynamicSmemBytes = size_t(smem);
  cfg.stream = stream;
  err = MK_BOOL_SWITCH(var_b, kVarB, [&] {
    return MK_BOOL_SWITCH(var_c, kVarC, [&] {
      auto kernel = selective_scan_bwd_kernel<in_t, kVarB, kVarC>;
      cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
      return e != cudaSuccess ? e : cudaLaunchKernelEx(&cfg, kernel, p);
    });
  });
  if (err == cudaSuccess) err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace ss
}  // namespace mamba_kernels

#include "selective_scan/selective_scan_bwd_lane_kernel.cuh"  // uses the helpers above
