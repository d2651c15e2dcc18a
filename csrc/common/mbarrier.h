// Shared-memory barriers (mbarrier, sm_90): arrivals with release semantics, parity waits with acquire semantics at
// CTA scope, and transaction bytes for asynchronous copies (common/tma.h's tensor-map loads). Used by the SSD state
// kernels (with tma.h).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace mamba_kernels {

// Shared-memory transaction barriers (mbarrier): mbar_init by one thread (then a block barrier),
// mbar_expect_tx by the issuing thread before its loads (its arrival plus the bytes they will complete), mbar_wait
// by every reader (phase parity: 0 for a barrier's first completion, then alternating; a waiter must not fall more
// than one phase behind). The CPU emulation counts arrivals (and bytes) and phases: tests/cuda_emu/cuda_runtime.h
// (cuda_emu::mbar_*; its tensor-map loads land late and out of order).
__device__ __forceinline__ void mbar_init(uint64_t* bar, unsigned count) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const unsigned b = static_cast<unsigned>(__cvta_generic_to_shared(bar));
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(b), "r"(count) : "memory");
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#elif defined(MK_CUDA_EMU)
  cuda_emu::mbar_init(bar, count);
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
#else
  (void)bar; (void)bytes;
#endif
}
// A plain arrival (release) on `bar` by this thread: a consumer announcing it is done with what the barrier guards.
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const unsigned b = static_cast<unsigned>(__cvta_generic_to_shared(bar));
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(b) : "memory");
#elif defined(MK_CUDA_EMU)
  cuda_emu::mbar_arrive(bar);
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
#else
  (void)bar; (void)parity;
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
