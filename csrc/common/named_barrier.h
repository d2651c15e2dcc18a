// Named barriers (bar.sync / bar.arrive with an id and a thread count) for kernels whose warps split into groups
// that synchronise with each other (producer / consumer) without stopping the whole block; the CPU emulation in
// tests/cuda_emu has its own implementation of both.
#pragma once
#include <cuda_runtime.h>

namespace mamba_kernels {

// Waits until `count` threads (a multiple of 32, this one included) have reached barrier `id` (1..15; 0 is
// __syncthreads) by named_bar_sync or named_bar_arrive. Also orders this block's shared-memory accesses.
template <int kCount>
__device__ __forceinline__ void named_bar_sync(int id) {
#if defined(__CUDA_ARCH__)
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "n"(kCount) : "memory");
#elif defined(MK_CUDA_EMU)
  cuda_emu::named_barrier(unsigned(id), kCount);
#endif
}
// Counts this thread at barrier `id` without waiting (a producer announcing that its writes are done: the memory
// clobber keeps them before the arrival).
template <int kCount>
__device__ __forceinline__ void named_bar_arrive(int id) {
#if defined(__CUDA_ARCH__)
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "n"(kCount) : "memory");
#elif defined(MK_CUDA_EMU)
  cuda_emu::named_barrier_arrive(unsigned(id), kCount);
#endif
}

}  // namespace mamba_kernels
