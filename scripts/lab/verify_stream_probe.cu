// How fast can the verify step's b64 k4 shape (2048 units, one 64 KB fp32 state tile each: h 32, p 128, n 128)
// stream its tiles, by block structure alone? (bench/NOTES.md, verify: verify_m2tc_kernel takes ~70 us against a
// 31-32 us one-read floor, and its restructures all landed at 70-85 us.) Each variant reads every tile once (one
// block a unit, as the verify kernels), touches every element (a sum, so nothing is optimised away) and writes
// one float a unit; the *_fold variants also write the tile back (a fold on every call). No torch, no library:
//   nvcc -O3 -std=c++17 -arch=sm_90a -o /tmp/verify_stream_probe scripts/lab/verify_stream_probe.cu
//   /tmp/verify_stream_probe [units=2048] [reps=50]
// Prints, per variant: median kernel time (CUDA events over back-to-back launches), GB/s of tile bytes moved,
// blocks an SM (cudaOccupancyMaxActiveBlocksPerMultiprocessor). Variants (4) (session 57) stream from a subset of
// the SMs (persistent blocks; bench/results/lab/verify-sm-subset-probe-2026-12-07).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CK(x)                                                                         \
  do {                                                                                \
    cudaError_t e_ = (x);                                                             \
    if (e_ != cudaSuccess) {                                                          \
      std::fprintf(stderr, "%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); \
      std::exit(1);                                                                   \
    }                                                                                 \
  } while (0)

constexpr int kTileF4 = 128 * 128 / 4;  // float4s a 64 KB tile

__device__ __forceinline__ float block_sum_to(float v, float* out) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0) atomicAdd(out, v);
  return v;
}

// (1) the tensor-core kernel's structure: the whole tile to shared memory by cp.async (16 bytes a copy), one
// wait + barrier, then a pass over shared memory. Dynamic shared memory sets the blocks an SM (83 KB: 2, as
// verify_m2tc_kernel; 64 KB: 3).
// One tile (kTileF4 float4s from src) into shared memory dst by cp.async, 16 bytes a copy, as one commit group.
__device__ __forceinline__ void tile_to_smem(float4* dst, const float4* src) {
  for (int i = threadIdx.x; i < kTileF4; i += blockDim.x) {
    const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst + i));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src + i));
  }
  asm volatile("cp.async.commit_group;\n" ::);
}
// The block's sum over a tile in shared memory (every element touched), added to *out.
__device__ __forceinline__ void smem_tile_sum_to(const float4* buf, float* out) {
  float acc = 0.f;
  for (int i = threadIdx.x; i < kTileF4; i += blockDim.x) {
    const float4 v = buf[i];
    acc += (v.x + v.y) + (v.z + v.w);
  }
  block_sum_to(acc, out);
}

__global__ void smem_cp_async(const float4* __restrict__ st, float* out) {
  extern __shared__ float4 sm[];
  tile_to_smem(sm, st + (size_t)blockIdx.x * kTileF4);
  asm volatile("cp.async.wait_group 0;\n" ::);
  __syncthreads();
  smem_tile_sum_to(sm, out + blockIdx.x);
}

// (2) the tile straight to registers: every thread issues all its 16-byte loads at once (kTileF4 / NT each), no
// shared memory, no barrier. FOLD: the tile is written back (scaled) after the sum.
template <int NT, bool FOLD>
__global__ void __launch_bounds__(NT) reg_ldg(float4* __restrict__ st, float* out) {
  constexpr int PER = kTileF4 / NT;
  float4* src = st + (size_t)blockIdx.x * kTileF4;
  float4 v[PER];
#pragma unroll
  for (int i = 0; i < PER; ++i) v[i] = __ldcs(src + i * NT + threadIdx.x);
  float acc = 0.f;
#pragma unroll
  for (int i = 0; i < PER; ++i) acc += (v[i].x + v[i].y) + (v[i].z + v[i].w);
  const float s = block_sum_to(acc, out + blockIdx.x);
  if constexpr (FOLD) {
    const float f = 0.999f + 1e-9f * s;
#pragma unroll
    for (int i = 0; i < PER; ++i)
      __stcs(src + i * NT + threadIdx.x, make_float4(v[i].x * f, v[i].y * f, v[i].z * f, v[i].w * f));
  }
}

// (3) one warp a 16-row slice (8 KB) as its own unit of work: 8x the blocks, each 32 threads.
__global__ void __launch_bounds__(32) warp_slices(const float4* __restrict__ st, float* out) {
  constexpr int PER = kTileF4 / 8 / 32;  // 16 float4s a lane
  const float4* src = st + (size_t)blockIdx.x * (kTileF4 / 8);
  float4 v[PER];
#pragma unroll
  for (int i = 0; i < PER; ++i) v[i] = __ldcs(src + i * 32 + threadIdx.x);
  float acc = 0.f;
#pragma unroll
  for (int i = 0; i < PER; ++i) acc += (v[i].x + v[i].y) + (v[i].z + v[i].w);
  block_sum_to(acc, out + blockIdx.x / 8);
}

// (4) Streaming from a subset of the SMs (session 57: could the split pair's prep run on SMs of its own, beside a
// stream kernel on the others, instead of ahead of it?). A persistent grid of SMs x bps blocks; a block on an SM with
// %smid >= active returns at once (in a block-specialised kernel those SMs would run the prep); the others take units
// from an atomic counter (one counter a launch), each unit's whole tile by cp.async into shared memory, then a pass
// over it. STAGES 2: the next unit's tile is issued before the pass over the current one (2 x 64 KB a block).
template <int STAGES>
__global__ void persist_smem(const float4* __restrict__ st, float* out, unsigned* counter, int units, int active) {
  extern __shared__ float4 sm[];
  __shared__ int next;
  unsigned smid;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
  if (static_cast<int>(smid) >= active) return;
  auto grab = [&] {
    if (threadIdx.x == 0) next = static_cast<int>(atomicAdd(counter, 1u));
    __syncthreads();
    const int u = next;
    __syncthreads();
    return u;
  };
  int cur = grab();
  if (cur >= units) return;
  if (STAGES == 2) tile_to_smem(sm, st + (size_t)cur * kTileF4);
  for (int sb = 0;; sb ^= 1) {
    const int nxt = STAGES == 2 ? grab() : cur;
    if (STAGES == 2) {
      if (nxt < units) tile_to_smem(sm + (sb ^ 1) * kTileF4, st + (size_t)nxt * kTileF4);
      else asm volatile("cp.async.commit_group;\n" ::);
      asm volatile("cp.async.wait_group 1;\n" ::);
    } else {
      tile_to_smem(sm, st + (size_t)cur * kTileF4);
      asm volatile("cp.async.wait_group 0;\n" ::);
    }
    __syncthreads();
    smem_tile_sum_to(sm + (STAGES == 2 ? sb * kTileF4 : 0), out + cur);
    __syncthreads();
    cur = STAGES == 2 ? nxt : grab();
    if (cur >= units) return;
  }
}

template <typename F>
static void run(const char* name, int reps, double bytes, const void* kernel, int blocks, int threads,
                int smem, F launch) {
  if (smem > 48 * 1024) CK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  int occ = 0;
  CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, kernel, threads, smem));
  for (int i = 0; i < 5; ++i) launch();
  CK(cudaDeviceSynchronize());
  std::vector<float> ms(reps);
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int r = 0; r < reps; ++r) {
    CK(cudaEventRecord(a));
    launch();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    CK(cudaEventElapsedTime(&ms[r], a, b));
  }
  CK(cudaGetLastError());
  std::sort(ms.begin(), ms.end());
  const double us = ms[reps / 2] * 1e3;
  std::printf("%-28s %8.1f us %8.0f GB/s  %d blocks/SM (%d threads, %d KB smem, %d blocks)\n", name, us,
              bytes / us * 1e-3, occ, threads, smem / 1024, blocks);
}

int main(int argc, char** argv) {
  const int units = argc > 1 ? std::atoi(argv[1]) : 2048;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 50;
  const size_t n4 = (size_t)units * kTileF4;
  float4* st;
  float* out;
  CK(cudaMalloc(&st, n4 * sizeof(float4)));
  CK(cudaMalloc(&out, units * sizeof(float)));
  CK(cudaMemset(st, 0x3c, n4 * sizeof(float4)));  // ~0.01 in every float: never time zeros
  // 134 MB of tiles against a 60 MB L2: back-to-back launches stream them from HBM (as the verify bench does)
  const double rd = double(n4) * 16, rw = 2 * rd;
  std::printf("%d units x 64 KB = %.1f MB\n", units, rd / 1e6);
  auto smem_run = [&](const char* name, int threads, int smem) {
    run(name, reps, rd, reinterpret_cast<const void*>(smem_cp_async), units, threads, smem,
        [&] { smem_cp_async<<<units, threads, smem>>>(st, out); });
  };
  smem_run("smem cp.async 256t 83KB", 256, 83 * 1024);
  smem_run("smem cp.async 256t 64KB", 256, 64 * 1024);
  smem_run("smem cp.async 512t 64KB", 512, 64 * 1024);
  smem_run("smem cp.async 1024t 64KB", 1024, 64 * 1024);
  run("regs ldg 256t", reps, rd, reinterpret_cast<const void*>(reg_ldg<256, false>), units, 256, 0,
      [&] { reg_ldg<256, false><<<units, 256>>>(st, out); });
  run("regs ldg 512t", reps, rd, reinterpret_cast<const void*>(reg_ldg<512, false>), units, 512, 0,
      [&] { reg_ldg<512, false><<<units, 512>>>(st, out); });
  run("regs ldg 1024t", reps, rd, reinterpret_cast<const void*>(reg_ldg<1024, false>), units, 1024, 0,
      [&] { reg_ldg<1024, false><<<units, 1024>>>(st, out); });
  run("warp slices 32t", reps, rd, reinterpret_cast<const void*>(warp_slices), units * 8, 32, 0,
      [&] { warp_slices<<<units * 8, 32>>>(st, out); });
  run("regs ldg 256t + fold", reps, rw, reinterpret_cast<const void*>(reg_ldg<256, true>), units, 256, 0,
      [&] { reg_ldg<256, true><<<units, 256>>>(st, out); });
  run("regs ldg 512t + fold", reps, rw, reinterpret_cast<const void*>(reg_ldg<512, true>), units, 512, 0,
      [&] { reg_ldg<512, true><<<units, 512>>>(st, out); });
  // (4): the tiles from `active` of the SMs (persistent blocks, a fresh counter a launch)
  int nsm = 0;
  CK(cudaDeviceGetAttribute(&nsm, cudaDevAttrMultiProcessorCount, 0));
  unsigned* counters;
  const int nc = reps + 16;
  CK(cudaMalloc(&counters, nc * sizeof(unsigned)));
  for (int active : {nsm, nsm - 16, nsm - 32, nsm - 48}) {
    struct Cfg { const char* tag; int stages, bps, smem; };
    for (const Cfg& c : {Cfg{"1 stage, 2 blocks/SM", 1, 2, 100 * 1024}, Cfg{"1 stage, 3 blocks/SM", 1, 3, 72 * 1024},
                         Cfg{"2 stages, 1 block/SM", 2, 1, 129 * 1024}}) {
      CK(cudaMemset(counters, 0, nc * sizeof(unsigned)));
      int li = 0;
      char name[96];
      std::snprintf(name, sizeof name, "%d SMs: %s", active, c.tag);
      auto* kern = c.stages == 2 ? persist_smem<2> : persist_smem<1>;
      run(name, reps, rd, reinterpret_cast<const void*>(kern), nsm * c.bps, 256, c.smem, [&] {
        kern<<<nsm * c.bps, 256, c.smem>>>(st, out, counters + (li++ % nc), units, active);
      });
    }
  }
  CK(cudaFree(counters));
  CK(cudaFree(st));
  CK(cudaFree(out));
  return 0;
}
