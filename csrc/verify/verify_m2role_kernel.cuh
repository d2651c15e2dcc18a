// The split pair's work as one persistent launch with SM roles (a lab, MK_VERIFY_ROLE=X; CUDA headers only).
//
// Why: the split pair runs its prep kernel (~14 us at b64 k4 on an H100, one wave holding every SM's registers)
// ahead of its stream kernel (~53 us, at the copy ceiling). Every overlap tried so far (sessions 6, 30, 44, 49-53)
// shared each SM between the two kinds of work and slowed one more than it hid. scripts/lab/verify_stream_probe.cu
// (session 57) streams the b64 k4 tiles as fast from 84 of the 132 SMs as from all of them, so here the two roles get
// SMs of their own:
//   - blocks on SMs [0, p.role_sms) (by %smid) run the prep role: 4 units at a time a block (kSplitPrepThreads threads
//     each, their own named barrier and shared memory), units taken in order from a ticket counter; after a unit's
//     record, ring and meta writes, its ready flag is published (fence, then a release store);
//   - blocks on the other SMs run the stream role: units taken in order from a second counter, verify_m2str_kernel's
//     per-unit work (m2str_unit), the tile's copies issued before an acquire spin on the unit's flag.
// Grid: 2 blocks an SM (the stream role's registers and shared memory), so every block is resident at once on an idle
// device; progress needs only one resident prep-role block (it takes every ticket left). The sync words (the flags
// and the two counters) are the scratch's 4 extra words a unit (m2role_sync), zeroed by the launcher before each
// launch.
#pragma once
#include "verify/verify_m2split_kernel.cuh"

namespace mamba_kernels {
namespace verify_kernels {

constexpr int kRoleThreads = 256;                             // 8 warps: the stream role's block
constexpr int kRolePrepGroups = kRoleThreads / kSplitPrepThreads;  // prep units a prep-role block works on at once
constexpr int kRoleSyncWords = 4;  // extra scratch words a unit: [0] its ready flag; unit 0's [1], [2]: the counters

// The SM this block runs on (%smid). The CPU emulation: MK_EMU_SMID() (blocks in index order, 2 an SM).
__device__ __forceinline__ unsigned sm_id() {
#if defined(__CUDA_ARCH__)
  unsigned v;
  asm volatile("mov.u32 %0, %%smid;\n" : "=r"(v));
  return v;
#elif defined(MK_EMU_SMID)
  return MK_EMU_SMID();
#else
  return 0u;
#endif
}
__device__ __forceinline__ void st_release_gpu(unsigned* ptr, unsigned v) {
#if defined(__CUDA_ARCH__)
  asm volatile("st.release.gpu.global.u32 [%0], %1;\n" ::"l"(ptr), "r"(v) : "memory");
#else
  *ptr = v;
#endif
}
__device__ __forceinline__ unsigned ld_acquire_gpu(const unsigned* ptr) {
#if defined(__CUDA_ARCH__)
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(ptr) : "memory");
  return v;
#else
  return *ptr;
#endif
}
// Waits until the unit's ready flag is set (thread 0 spins; the barrier hands the acquire to the block).
__device__ __forceinline__ void role_wait_flag(const unsigned* flag) {
  if (threadIdx.x == 0) {
#if defined(__CUDA_ARCH__)
    while (ld_acquire_gpu(flag) == 0u) __nanosleep(32);
#elif defined(MK_EMU_ROLE_FLAG_MISSING)  // the emulation runs the prep-role blocks (lower indices) to completion first
    if (ld_acquire_gpu(flag) == 0u) MK_EMU_ROLE_FLAG_MISSING();
#endif
  }
  __syncthreads();
}

// The sync words of unit i (scratch of work_unit words a unit, the record's m2split_ws(...).words first).
__host__ __device__ __forceinline__ unsigned* m2role_sync(float* work, int64_t work_unit, int rec_words, int64_t i) {
  return reinterpret_cast<unsigned*>(work + i * work_unit + rec_words);
}

// Grid: 2 x the SMs, kRoleThreads threads, shared memory max(the stream unit's, kRolePrepGroups x p.role_prep_f4 x
// 16 bytes). KT: the prep unit's fixed k (0: any).
template <typename T, typename TI, int N, int KT>
__global__ void __launch_bounds__(kRoleThreads, 2) verify_m2role_kernel(const VerifyStepParams p) {
  MK_VERIFY_DYN_SMEM(smem_f4);
  const int H = static_cast<int>(p.H);
  const int units = static_cast<int>(p.batch) * H;
  const int rec_words = m2split_ws(p.k, p.R, p.P).words;
  unsigned* counters = m2role_sync(p.work, p.work_unit, rec_words, 0);  // [1]: prep tickets, [2]: stream tickets
  if (static_cast<int64_t>(sm_id()) < p.role_sms) {
    const int grp = threadIdx.x / kSplitPrepThreads, gt = threadIdx.x % kSplitPrepThreads;
    float4* gsm = smem_f4 + grp * p.role_prep_f4;
    __shared__ int tick[kRolePrepGroups];
    for (;;) {
      if (gt == 0) tick[grp] = static_cast<int>(atomicAdd(counters + 1, 1u));
      named_bar_sync(1 + grp, kSplitPrepThreads);
      const int unit = tick[grp];  // read before the group's next barrier, so before the next ticket's write
      if (unit >= units) return;
      const int b = unit / H, u = unit - b * H;
      m2prep_unit<TI, N, true, KT>(p, b, u, gsm, p.work + unit * p.work_unit, gt, 1 + grp);
      named_bar_sync(1 + grp, kSplitPrepThreads);  // the group's record, ring and meta writes
      if (gt == 0) {
        __threadfence();
        st_release_gpu(m2role_sync(p.work, p.work_unit, rec_words, unit), 1u);
      }
    }
  }
  __shared__ int stick;
  for (;;) {
    if (threadIdx.x == 0) stick = static_cast<int>(atomicAdd(counters + 2, 1u));
    __syncthreads();
    const int unit = stick;
    __syncthreads();
    if (unit >= units) return;
    const int b = unit / H, u = unit - b * H;
    const unsigned* flag = m2role_sync(p.work, p.work_unit, rec_words, unit);
    m2str_unit<T, TI, N, kRoleThreads / 32, true>(p, b, u, smem_f4, true, [flag] { role_wait_flag(flag); });
    __syncthreads();  // every warp is done with the unit's shared memory before the next unit's copies
  }
}

}  // namespace verify_kernels
}  // namespace mamba_kernels
