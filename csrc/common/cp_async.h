// 16-byte asynchronous global -> shared copies (sm_80+: cp.async, no register holds the data) for the CUDA
// kernels; a plain 16-byte copy, and no-op waits, where a kernel source is compiled without cp.async (archs below
// sm_80, the CPU emulations in tests/cuda_emu).
#pragma once
#include <cuda_runtime.h>

namespace mamba_kernels {

__device__ __forceinline__ void cp_async16(void* smem_dst, const void* gsrc) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(gsrc) : "memory");
#else
  *reinterpret_cast<uint4*>(smem_dst) = *reinterpret_cast<const uint4*>(gsrc);
#endif
}
// An L2 policy that marks the lines it covers to be evicted first (createpolicy, sm_80+; 0 elsewhere): for bytes
// read once per call (the verify stream's state tiles), so that they do not push out of L2 what the same call or the
// next one reads again (ring rows, inputs, the per-call scratch).
__device__ __forceinline__ unsigned long long l2_evict_first_policy() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  unsigned long long pol;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(pol));
  return pol;
#else
  return 0ull;
#endif
}
// cp_async16 under an L2 policy (l2_evict_first_policy).
__device__ __forceinline__ void cp_async16_hint(void* smem_dst, const void* gsrc, unsigned long long pol) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2;\n" ::"r"(d), "l"(gsrc), "l"(pol)
               : "memory");
#else
  (void)pol;
  *reinterpret_cast<uint4*>(smem_dst) = *reinterpret_cast<const uint4*>(gsrc);
#endif
}
// 16-byte copy of gsrc when `valid`, else 16 zero bytes (cp.async's source size 0: no branch, nothing read).
__device__ __forceinline__ void cp_async16_zfill(void* smem_dst, const void* gsrc, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(gsrc), "r"(valid ? 16 : 0) : "memory");
#else
  if (valid) *reinterpret_cast<uint4*>(smem_dst) = *reinterpret_cast<const uint4*>(gsrc);
  else *reinterpret_cast<uint4*>(smem_dst) = uint4{0u, 0u, 0u, 0u};
#endif
}
// 4-byte asynchronous copy (cp.async.ca: 4 and 8 bytes go through L1), for arrays whose rows need not be
// 16-byte aligned.
__device__ __forceinline__ void cp_async4(void* smem_dst, const void* gsrc) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(d), "l"(gsrc) : "memory");
#else
  *reinterpret_cast<unsigned*>(smem_dst) = *reinterpret_cast<const unsigned*>(gsrc);
#endif
}
// cp_async4 of gsrc when `valid`, else 4 zero bytes (source size 0: nothing read; gsrc must still be a valid address).
__device__ __forceinline__ void cp_async4_zfill(void* smem_dst, const void* gsrc, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(gsrc), "r"(valid ? 4 : 0) : "memory");
#else
  const unsigned v = valid ? *static_cast<const unsigned*>(gsrc) : 0u;
  *static_cast<unsigned*>(smem_dst) = v;
#endif
}
// The shared-memory barrier `bar` (mbarrier, common/tma.h) receives one arrival once every cp.async this thread has
// issued so far has landed (cp.async.mbarrier.arrive.noinc: the arrival counts towards the barrier's count, so a
// barrier initialised with the number of copying threads completes its phase when all their copies are in). For
// stages that one group of threads fills and another reads.
__device__ __forceinline__ void cp_async_mbar_arrive_noinc(uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned b = static_cast<unsigned>(__cvta_generic_to_shared(bar));
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(b) : "memory");
#elif defined(MK_CUDA_EMU)
  cuda_emu::mbar_arrive(bar);  // the emulated copies have landed
#else
  (void)bar;
#endif
}
// This thread's copies have landed (a __syncthreads after it publishes them to the block).
__device__ __forceinline__ void cp_async_wait_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}
// Closes this thread's current group of copies.
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
// This thread's copies except the newest `n` committed groups have landed.
template <int n>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(n) : "memory");
#endif
}

// L2 (prefetch_l2) or L1 (prefetch_l1) prefetch of the line that holds p: a hint that costs no register, so that a
// load issued later (a cp.async stage, a register double buffer) finds the line in the cache and only has to cover its
// latency. Callers keep p inside the tensor: the CPU emulation touches it, so that AddressSanitizer checks the bounds.
template <bool kL1>
__device__ __forceinline__ void prefetch_line(const void* p) {
#if defined(__CUDA_ARCH__)
  if constexpr (kL1) asm volatile("prefetch.global.L1 [%0];" ::"l"(p));
  else asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
#else
  (void)*static_cast<const volatile char*>(p);
#endif
}
__device__ __forceinline__ void prefetch_l2(const void* p) { prefetch_line<false>(p); }
__device__ __forceinline__ void prefetch_l1(const void* p) { prefetch_line<true>(p); }

}  // namespace mamba_kernels
