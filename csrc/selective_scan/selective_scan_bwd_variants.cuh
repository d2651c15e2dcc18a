// Mamba-1 selective scan backward: the variable dB/dC flush selected by MK_SS_BWD_CLUSTER (lab knob; included by
// selective_scan_bwd_kernel.cuh). CUDA headers only (no torch).
//
// MK_SS_BWD_CLUSTER = 1 (default): one pass over both variables: thread f of the block sums the kBwdWarps partials
//   of float4 number f of [dB rows | dC rows] (both variables at once) and adds it with one (vector) atomic.
// MK_SS_BWD_CLUSTER = 0: the older flush_partials path of selective_scan_bwd_kernel.cuh (dB, then dC, with half
//   the threads each time).
// Thread-block-cluster reductions of the block sums through distributed shared memory (values 2..8) were measured
// slower on the H200 (lab run 12: 2.2-2.7 ms against 1.84 at b2 d4096 n16 l4096: one block an SM at 157 KB of
// shared memory) and removed in session 6.
#pragma once

namespace mamba_kernels {
namespace ss {

#ifndef MK_SS_BWD_CLUSTER
#define MK_SS_BWD_CLUSTER 1
#endif
constexpr int kBwdCluster = MK_SS_BWD_CLUSTER;
static_assert(kBwdCluster == 0 || kBwdCluster == 1, "MK_SS_BWD_CLUSTER: 0 (flush_partials) or 1 (one pass)");

// The variable dB/dC of one slice (states ns0 .. ns0 + nsl of the tile at t0): float4 f of [nvar][kBwdNS][64]
// (variable v: dB first when variable, then dC), its destination row and token.
struct BwdDbcSlice {
  int ns0, nsl;
  int64_t t0;
};
template <bool kVarB, bool kVarC>
__device__ __forceinline__ void bwd_dbc_add(float* __restrict__ dBv, float* __restrict__ dCv, int64_t L, int64_t s1,
                                            const BwdDbcSlice& sl, int f, float4 acc) {
  constexpr int kF4 = kBwdTile / 4, kRows = kBwdNS * kF4;
  const int v = f / kRows, s = (f % kRows) / kF4, j = f % kF4;
  float* dst = (kVarB && v == 0) ? dBv : dCv;
  const int64_t t = sl.t0 + bwd_f4_token(j);
  const int64_t cnt = s1 - t < 0 ? 0 : (s1 - t < 4 ? s1 - t : 4);
  atomic_add4(dst + (sl.ns0 + s) * L + t, int(cnt), acc);
}

// The flush of one slice (called by every thread after the slice's partials are in, between the kernel's two
// __syncthreads): the block sum of the first nw warps' partials for every float4 f (rows s < sl.nsl only), added
// to dB/dC at once.
template <bool kVarB, bool kVarC>
__device__ __forceinline__ void bwd_flush_variant(const float* s_dB, const float* s_dC, float* __restrict__ dBv,
                                                  float* __restrict__ dCv, int64_t L, int64_t s1, const BwdDbcSlice& sl,
                                                  int nw) {
  constexpr int kF4 = kBwdTile / 4, kRows = kBwdNS * kF4, kNv = int(kVarB) + int(kVarC);
  for (int f = threadIdx.x; f < kNv * kRows; f += kBwdThreads) {
    const int v = f / kRows, s = (f % kRows) / kF4, j = f % kF4;
    if (s >= sl.nsl) continue;
    const float4 acc = warp_partials_sum4((kVarB && v == 0) ? s_dB : s_dC, s, j, nw);
    bwd_dbc_add<kVarB, kVarC>(dBv, dCv, L, s1, sl, f, acc);
  }
}

}  // namespace ss
}  // namespace mamba_kernels
