// Shared-memory barriers (mbarrier, sm_90): arrivals with release semantics, parity waits with acquire semantics at
// CTA scope, and transaction bytes for asynchronous copies (common/tma.h's tensor-map loads). Used by the SSD state
// kernels (with tma.h) and verify_m2ws_kernel (a producer / consumer hand-over through shared memory).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

namespace mamba_kernels {

// Shared-memory transaction barriers (mbarrier): mbar_init by one thread (then a block barrier),
// mbar_expect_tx by the issuing thread before its loads (its arrival plus the bytes they will complete), mbar_wait
// by every reader (phase parity: 0 for a barrier's first completion, then alternating; a waiter must not fall more
// than one phase behind). The CPU emulations count arrivals (and bytes) and phases: tests/cuda_emu/cuda_runtime.h
// (cuda_emu::mbar_*; its tensor-map loads land late and out of order) and, for the verify kernels,
// tests/cuda_emu/verify/verify_emu_shim.h (emu_mbar_*, MK_EMU_WS_SYNC; its bulk copies land at once).
__device__ __forceinline__ void mbar_init(uint64_t* bar, unsigned count) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const unsigned b = static_cast<unsigned>(__cvta_generic_to_shared(bar));
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(b), "r"(count) : "memory");
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#elif defined(MK_CUDA_EMU)
  cuda_emu::mbar_init(bar, count);
#elif defined(MK_EMU_WS_SYNC)
  emu_mbar_init(bar, count);
#else
  (void)bar; (void)count;
#endif
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t* bar, unsigned bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const unsigned b = static_cast<unsigned>(__cvta_generic_to_shared(bar));
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(b), "r"(bytes) : "memory");
#elif defined(MK_CUDA_EMU)
  cuda_emu::mbar_expect_tx(bar, bytes);
#elif defined(MK_EMU_WS_SYNC)
  emu_mbar_expect_tx(bar, bytes);
#else
  (void)bar; (void)bytes;
#endif
}
// One bulk copy (sm_90: cp.async.bulk, the copy engine, no registers or load slots held) of `bytes` (a multiple of
// 16; both addresses 16-byte aligned) from global `src` to shared `dst`, completing `bytes` transactions on `bar`
// (whose phase an mbar_expect_tx of the total announced), under the L2 policy `pol` (l2_evict_first_policy; 0: none).
// Emulated for the verify kernels only (MK_EMU_WS_SYNC: a copy and its bytes at once); the SSD kernels use tma.h.
__device__ __forceinline__ void bulk_copy_g2s(void* dst, const void* src, unsigned bytes, uint64_t* bar,
                                              unsigned long long pol) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  const unsigned b = static_cast<unsigned>(__cvta_generic_to_shared(bar));
  if (pol != 0ull)
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;\n"
        ::"r"(d), "l"(src), "r"(bytes), "r"(b), "l"(pol)
        : "memory");
  else
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(d),
                 "l"(src), "r"(bytes), "r"(b)
                 : "memory");
#elif defined(MK_EMU_WS_SYNC)
  (void)pol;
  std::memcpy(dst, src, bytes);
  emu_mbar_complete_tx(bar, bytes);
#else
  (void)dst; (void)src; (void)bytes; (void)bar; (void)pol;
#endif
}
// A plain arrival (release) on `bar` by this thread: a consumer announcing it is done with what the barrier guards.
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const unsigned b = static_cast<unsigned>(__cvta_generic_to_shared(bar));
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(b) : "memory");
#elif defined(MK_CUDA_EMU)
  cuda_emu::mbar_arrive(bar);
#elif defined(MK_EMU_WS_SYNC)
  emu_mbar_arrive(bar);
#else
  (void)bar;
#endif
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, unsigned parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const unsigned b = static_cast<unsigned>(__cvta_generic_to_shared(bar));
  asm volatile(
      "{\n.reg .pred done;\nwait_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_%=;\n}\n" ::"r"(b), "r"(parity)
      : "memory");
#elif defined(MK_CUDA_EMU)
  cuda_emu::mbar_wait(bar, parity);
#elif defined(MK_EMU_WS_SYNC)
  emu_mbar_wait(bar, parity);
#else
  (void)bar; (void)parity;
#endif
}

// One bulk copy (sm_90: cp.async.bulk, the copy engine) of `bytes` (a multiple of 16; both addresses 16-byte aligned)
// from shared `src` to global `dst`, in this thread's bulk group (tma_commit, then tma_wait_read before `src` is
// rewritten, tma_wait_all before the kernel exits). The issuing thread's and, after a barrier, the other writers'
// shared-memory stores must be made visible to the copy engine first (fence_proxy_async_smem). Emulated for the verify
// kernels (MK_EMU_WS_SYNC: a copy at once).
__device__ __forceinline__ void bulk_copy_s2g(void* dst, const void* src, unsigned bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(src));
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;\n" ::"l"(dst), "r"(s), "r"(bytes)
               : "memory");
#elif defined(MK_EMU_WS_SYNC)
  std::memcpy(dst, src, bytes);
#else
  (void)dst; (void)src; (void)bytes;
#endif
}
// This thread's shared-memory stores made visible to the async proxy (bulk and tensor copies that read them).
__device__ __forceinline__ void fence_proxy_async_smem() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
// Closes this thread's bulk stores issued since the last commit into one group.
__device__ __forceinline__ void tma_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
#endif
}
// Waits until at most N of this thread's committed groups still read their shared sources (then the source may be
// rewritten, after a barrier for the other writers).
template <int N>
__device__ __forceinline__ void tma_wait_read() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
#endif
}
// Waits until every committed group of this thread has completed: before the kernel exits.
__device__ __forceinline__ void tma_wait_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
#endif
}

}  // namespace mamba_kernels
