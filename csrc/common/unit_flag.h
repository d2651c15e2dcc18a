// Per-unit ready flags between two kernels of one call (the verify split pair's MK_VERIFY_SPLIT_FLAGS lab): the
// producer grid clears the flags of its units before it lets the dependent grid launch (griddep_launch_dependents),
// and publishes a unit's flag once every write of that unit is done; a consumer block waits on its own unit's flag
// instead of griddepcontrol.wait (which waits for the whole producer grid).
// Deadlock-free only if every producer block has started before any consumer waits: with the dependent launched by
// programmatic serialization that holds (it launches once every producer block has triggered or exited, and a
// producer never waits on a consumer); a normal launch runs the consumer after the producer completed.
// In the CPU emulations (no __CUDA_ARCH__) the producer grid has completed when the consumer runs: an unpublished
// flag there is a bug, reported instead of spun on.
#pragma once
#include <cuda_runtime.h>

#if !defined(__CUDA_ARCH__)
#include <cstdio>
#include <cstdlib>
#endif

namespace mamba_kernels {

// A flag's clear (before the producer's trigger; then unit_flags_cleared and a block barrier before the trigger).
__device__ __forceinline__ void unit_flag_clear(int* f) { *reinterpret_cast<volatile int*>(f) = 0; }
// Orders this thread's clears before what follows (the trigger, after the block's barrier).
__device__ __forceinline__ void unit_flags_cleared() {
#if defined(__CUDA_ARCH__)
  __threadfence();
#endif
}

// Publishes *f = 1 after every earlier write of this thread, and of its block's threads ordered before it by a
// block barrier (the barrier, then one thread's fence and release store: cooperative groups' grid-sync pattern).
__device__ __forceinline__ void unit_flag_publish(int* f) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
  __threadfence();
  asm volatile("st.release.gpu.global.b32 [%0], %1;\n" ::"l"(f), "r"(1) : "memory");
#else
  *f = 1;
#endif
}

// Waits until *f is published (acquire: the producer's writes before it are visible to this thread; the caller's
// block barrier after this extends that to its block).
__device__ __forceinline__ void unit_flag_wait(const int* f) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
  int v;
  for (;;) {
    asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(v) : "l"(f) : "memory");
    if (v != 0) break;
    __nanosleep(64);
  }
#else
  if (*f == 0) {
    std::fprintf(stderr, "unit_flag_wait: the producer never published this unit's flag\n");
    std::abort();
  }
#endif
}

// A 16-byte load that bypasses L1 (ld.global.cg): a word another SM wrote during this kernel.
__device__ __forceinline__ int4 ld_cg_int4(const void* p) {
#if defined(__CUDA_ARCH__)
  return __ldcg(reinterpret_cast<const int4*>(p));
#else
  return *reinterpret_cast<const int4*>(p);
#endif
}

}  // namespace mamba_kernels
