// Bulk asynchronous shared -> global copies (sm_90: cp.async.bulk, the tensor memory accelerator's non-tensor form):
// one instruction copies `bytes` from shared memory without registers; the copy engine reads the source after the
// instruction retires, so a kernel waits (bulk_wait_read) before it rewrites the source. The CPU emulations
// (tests/cuda_emu) copy at once; device passes below sm_90 copy with plain 16-byte stores.
#pragma once
#include <cuda_runtime.h>

#include <cstring>

namespace mamba_kernels {

// `bytes` (a multiple of 16; both addresses 16-byte aligned) from shared src to global dst. Shared-memory writes of
// the generic proxy (plain stores, stmatrix) must be made visible to it first: fence.proxy.async (common/wgmma.h)
// by the writing threads, then a barrier.
__device__ __forceinline__ void bulk_store(void* gdst, const void* ssrc, unsigned bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(ssrc));
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;\n" ::"l"(gdst), "r"(s), "r"(bytes)
               : "memory");
#elif defined(__CUDA_ARCH__)
  for (unsigned o = 0; o < bytes; o += 16)
    *reinterpret_cast<uint4*>(static_cast<char*>(gdst) + o) = *reinterpret_cast<const uint4*>(
        static_cast<const char*>(ssrc) + o);
#else
  std::memcpy(gdst, ssrc, bytes);
#endif
}
// Closes this thread's bulk copies issued since the last commit into one group.
__device__ __forceinline__ void bulk_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
#endif
}
// Waits until at most N of this thread's committed groups still read their shared sources.
template <int N>
__device__ __forceinline__ void bulk_wait_read() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
#endif
}
// Waits until all of this thread's committed groups have completed (their writes performed): before a kernel exits.
__device__ __forceinline__ void bulk_wait_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
#endif
}

}  // namespace mamba_kernels
