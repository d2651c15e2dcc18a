// Named barriers (bar.sync / bar.arrive with an id and a thread count) for kernels whose warps split into groups
// that synchronise with each other (producer / consumer) without stopping the whole block; the CPU emulations in
// tests/cuda_emu have their own (cuda_runtime.h: both forms).
#pragma once
#include <cuda_runtime.h>

namespace mamba_kernels {

// Barrier `id` (1..15; 0 is __syncthreads) of `kCount` threads (a multiple of 32): with kWait (bar.sync) this thread
// waits until kCount threads have reached it, by either form, and the block's shared-memory accesses are ordered
// across it; without (bar.arrive) it is counted and goes on (a producer announcing that its writes are done: the
// memory clobber keeps them before the arrival).
template <int kCount, bool kWait>
__device__ __forceinline__ void named_bar(int id) {
#if defined(__CUDA_ARCH__)
  if constexpr (kWait) asm volatile("bar.sync %0, %1;\n" ::"r"(id), "n"(kCount) : "memory");
  else asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "n"(kCount) : "memory");
#elif defined(MK_CUDA_EMU)
  cuda_emu::named_barrier(unsigned(id), kCount, kWait);
#endif
}
template <int kCount> __device__ __forceinline__ void named_bar_sync(int id) { named_bar<kCount, true>(id); }
// named_bar for ids 1..4 passed on as constants: after inlining each call site has its id as an immediate (a run-time
// id in a register makes ptxas reserve all 16 of the block's barriers). The selective scan's state-lane kernels use ids
// 1..4 (two buffers x FULL / DONE).
template <int kCount, bool kWait>
__device__ __forceinline__ void named_bar_1to4(int id) {
  if (id == 1) named_bar<kCount, kWait>(1);
  else if (id == 2) named_bar<kCount, kWait>(2);
  else if (id == 3) named_bar<kCount, kWait>(3);
  else named_bar<kCount, kWait>(4);
}

}  // namespace mamba_kernels
