// Mamba-1 selective scan backward: the variable dB/dC flush variants selected by MK_SS_BWD_CLUSTER (lab knob,
// default 0 = the production flush_partials path of selective_scan_bwd_kernel.cuh, which includes this file).
// CUDA headers only (no torch).
//
// MK_SS_BWD_CLUSTER = 1: one pass over both variables: thread f of the block sums the kBwdWarps partials of
//   float4 number f of [dB rows | dC rows] (both variables at once: production sums dB, then dC, with half
//   the threads each time) and adds it with one (vector) atomic.
// MK_SS_BWD_CLUSTER = CL in 2..8 (sm_90): the grid's blocks along x form thread-block clusters of CL blocks
//   (same batch row and group, CL kBwdWarps consecutive channels): every block stores its block sum of a
//   slice in a double-buffered shared tile s_red[2][nvar][kBwdNS][kBwdTile] and arrives at the cluster
//   barrier; one slice later (after the next slice's compute, so the barrier's latency is hidden) it waits,
//   reads its 1/CL share of every block's tile through distributed shared memory (mapa +
//   ld.shared::cluster.v4) and adds their sum with one atomic: CL times fewer dB/dC atomics (the ~0.45 ms of
//   the b2 d4096 n16 l4096 backward). Buffer reuse: slice j's block sum goes to s_red[j & 1] after the wait
//   of phase j - 1, which every block passes only after reading slice j - 2's tiles (they read before they
//   arrive at phase j - 1). The last slice of a sequence is drained (wait, reduce) and closed with one full
//   cluster barrier, so no block overwrites or leaves its tile while another reads it.
//   Below sm_90 (or launched without clusters) the cluster size reads 1 and the same code is a plain
//   per-block flush. The launcher rounds the x grid up to a multiple of CL; padding blocks compute on the
//   group's first channel and contribute nothing (no valid warp).
#pragma once

namespace mamba_kernels {
namespace ss {

#ifndef MK_SS_BWD_CLUSTER
#define MK_SS_BWD_CLUSTER 1
#endif
constexpr int kBwdCluster = MK_SS_BWD_CLUSTER;
static_assert(kBwdCluster >= 0 && kBwdCluster <= 8, "MK_SS_BWD_CLUSTER: 0 (production), 1, 2..8 (cluster size)");

// Cluster queries and barriers (sm_90 PTX; the CPU emulation of tests/cuda_emu runs a cluster's blocks as
// concurrent groups of fibers; elsewhere a cluster of one).
__device__ __forceinline__ unsigned ss_cluster_rank() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  unsigned r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return r;
#elif !defined(__CUDA_ARCH__) && defined(MK_CUDA_EMU)
  return cuda_emu::cluster_rank();
#else
  return 0;
#endif
}
__device__ __forceinline__ unsigned ss_cluster_size() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  unsigned r;
  asm volatile("mov.u32 %0, %%cluster_nctarank;\n" : "=r"(r));
  return r;
#elif !defined(__CUDA_ARCH__) && defined(MK_CUDA_EMU)
  return cuda_emu::cluster_size();
#else
  return 1;
#endif
}
// Split barrier: arrive (release: this thread's earlier shared-memory writes are seen by every block after its
// wait) and wait (acquire). Every thread of every block of the cluster alternates arrive, wait.
__device__ __forceinline__ void ss_cluster_arrive() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory");
#elif !defined(__CUDA_ARCH__) && defined(MK_CUDA_EMU)
  cuda_emu::cluster_arrive();
#endif
}
__device__ __forceinline__ void ss_cluster_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#elif !defined(__CUDA_ARCH__) && defined(MK_CUDA_EMU)
  cuda_emu::cluster_wait();
#else
  __syncthreads();
#endif
}
// The float4 at the same shared-memory offset as `local` in the block of cluster rank `rank`.
__device__ __forceinline__ float4 ss_ld_cluster_f4(const float* local, unsigned rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const unsigned la = static_cast<unsigned>(__cvta_generic_to_shared(local));
  unsigned ra;
  float4 v;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(ra) : "r"(la), "r"(rank));
  asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];\n"
               : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w) : "r"(ra) : "memory");
  return v;
#elif !defined(__CUDA_ARCH__) && defined(MK_CUDA_EMU)
  return *static_cast<const float4*>(cuda_emu::cluster_map(local, rank));
#else
  (void)rank;
  return *reinterpret_cast<const float4*>(local);
#endif
}

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

// Block sum of the first nw warps' partials for float4 f (rows s < sl.nsl only); kBwdCluster == 1: added to
// dB/dC at once; else stored in red[f] (one slice's [nvar][kBwdNS][kBwdTile] tile of s_red).
template <bool kVarB, bool kVarC>
__device__ __forceinline__ void bwd_block_sum(const float* s_dB, const float* s_dC, float* red, float* __restrict__ dBv,
                                              float* __restrict__ dCv, int64_t L, int64_t s1, const BwdDbcSlice& sl,
                                              int nw) {
  constexpr int kF4 = kBwdTile / 4, kRows = kBwdNS * kF4, kNv = int(kVarB) + int(kVarC);
  for (int f = threadIdx.x; f < kNv * kRows; f += kBwdThreads) {
    const int v = f / kRows, s = (f % kRows) / kF4, j = f % kF4;
    if (s >= sl.nsl) continue;
    const float4 acc = warp_partials_sum4((kVarB && v == 0) ? s_dB : s_dC, s, j, nw);
    if constexpr (kBwdCluster == 1) bwd_dbc_add<kVarB, kVarC>(dBv, dCv, L, s1, sl, f, acc);
    else reinterpret_cast<float4*>(red)[f] = acc;
  }
}

// This block's share (1/cluster size) of a slice's cluster sum, read from every block's red tile, added to
// dB/dC.
template <bool kVarB, bool kVarC>
__device__ __forceinline__ void bwd_cluster_reduce(const float* red, float* __restrict__ dBv, float* __restrict__ dCv,
                                                   int64_t L, int64_t s1, const BwdDbcSlice& sl) {
  constexpr int kF4 = kBwdTile / 4, kRows = kBwdNS * kF4, kF = (int(kVarB) + int(kVarC)) * kRows;
  const unsigned ncl = ss_cluster_size(), rank = ss_cluster_rank();
  const int per = int((unsigned(kF) + ncl - 1) / ncl), f1 = kF < int(rank + 1) * per ? kF : int(rank + 1) * per;
  for (int f = int(rank) * per + int(threadIdx.x); f < f1; f += kBwdThreads) {
    if ((f % kRows) / kF4 >= sl.nsl) continue;
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
    for (unsigned r = 0; r < unsigned(kBwdCluster); ++r) {  // the launcher's size (independent loads)
      if (r >= ncl) break;
      const float4 x = ss_ld_cluster_f4(red + 4 * f, r);
      acc.x += x.x; acc.y += x.y; acc.z += x.z; acc.w += x.w;
    }
    bwd_dbc_add<kVarB, kVarC>(dBv, dCv, L, s1, sl, f, acc);
  }
}

// Per-block state of the delayed cluster flush.
struct BwdClusterFlush {
  BwdDbcSlice prev{0, 0, 0};
  bool pending = false;
  int buf = 0;  // s_red tile the next block sum goes to
};

// The flush of one slice (called by every thread after the slice's partials are in, between the kernel's two
// __syncthreads): kBwdCluster == 1 adds the block sum at once; else the previous slice's cluster sum, then this
// slice's block sum into s_red[buf] and arrive.
template <bool kVarB, bool kVarC>
__device__ __forceinline__ void bwd_flush_variant(const float* s_dB, const float* s_dC, float* s_red, BwdClusterFlush& cf,
                                                  float* __restrict__ dBv, float* __restrict__ dCv, int64_t L,
                                                  int64_t s1, const BwdDbcSlice& sl, int nw) {
  constexpr int kRed = (int(kVarB) + int(kVarC)) * kBwdNS * kBwdTile;  // floats of one s_red tile
  if constexpr (kBwdCluster == 1) {
    bwd_block_sum<kVarB, kVarC>(s_dB, s_dC, nullptr, dBv, dCv, L, s1, sl, nw);
  } else {
    if (cf.pending) {
      ss_cluster_wait();
      bwd_cluster_reduce<kVarB, kVarC>(s_red + (cf.buf ^ 1) * kRed, dBv, dCv, L, s1, cf.prev);
    }
    bwd_block_sum<kVarB, kVarC>(s_dB, s_dC, s_red + cf.buf * kRed, dBv, dCv, L, s1, sl, nw);
    ss_cluster_arrive();
    cf.prev = sl;
    cf.pending = true;
    cf.buf ^= 1;
  }
}
// End of a sequence: the last slice's cluster sum, then a full cluster barrier (every block is done reading the
// others' tiles before any overwrites its own or exits).
template <bool kVarB, bool kVarC>
__device__ __forceinline__ void bwd_flush_drain(float* s_red, BwdClusterFlush& cf, float* __restrict__ dBv,
                                                float* __restrict__ dCv, int64_t L, int64_t s1) {
  constexpr int kRed = (int(kVarB) + int(kVarC)) * kBwdNS * kBwdTile;
  if constexpr (kBwdCluster > 1) {
    if (cf.pending) {
      ss_cluster_wait();
      bwd_cluster_reduce<kVarB, kVarC>(s_red + (cf.buf ^ 1) * kRed, dBv, dCv, L, s1, cf.prev);
      cf.pending = false;
      ss_cluster_arrive();
      ss_cluster_wait();
    }
  }
}

}  // namespace ss
}  // namespace mamba_kernels
