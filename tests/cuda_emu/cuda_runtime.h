// Host emulation of the small CUDA subset the kernels in csrc/ use, so that their unmodified source runs on
// the CPU in tests (this machine has nvcc but no GPU). Put this folder FIRST on the include path of a host
// compiler (g++ -std=c++20): `#include <cuda_runtime.h>` in a kernel header then lands here.
//
// Model: a launch runs its blocks one after the other; a block runs blockDim.x std::threads. __syncthreads
// is a std::barrier over the block, __syncwarp / __shfl_*_sync a barrier over the 32 lanes of the warp
// (every lane must take part, as with the full mask on the GPU), atomicAdd a std::atomic_ref. Dynamic shared
// memory is one NaN-filled buffer per block (a read of an element no thread wrote shows up as NaN); a
// launch needing more than 48 KB must have been opted in with cudaFuncSetAttribute, as on the GPU, and may
// not exceed cuda_emu::max_smem_optin (H100: 227 KB). It checks logic and indexing, not performance, and not
// the GPU's weaker memory ordering.
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
  unsigned x, y, z;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }

inline thread_local uint3 threadIdx;
inline uint3 blockIdx;
inline dim3 blockDim, gridDim;

inline float __expf(float x) { return std::exp(x); }

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
};
inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
  }
  return "unknown error";
}
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
typedef struct CUstream_st* cudaStream_t;
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaDeviceAttr { cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
struct cudaLaunchAttribute;
struct cudaLaunchConfig_t {
  dim3 gridDim;
  dim3 blockDim;
  size_t dynamicSmemBytes;
  cudaStream_t stream;
  cudaLaunchAttribute* attrs;
  unsigned int numAttrs;
};

namespace cuda_emu {

inline int max_smem_optin = 232448;           // bytes per block (H100/H200; A100: 166912)
inline std::map<const void*, int> opted_smem;  // kernel -> cudaFuncAttributeMaxDynamicSharedMemorySize
alignas(16) inline unsigned char smem_buf[256 * 1024];
inline int64_t launches = 0;

struct Warp {
  std::barrier<> bar{32};
  float xch[32];
};
inline std::barrier<>* block_bar = nullptr;
inline Warp* warps = nullptr;

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "cuda_emu: %s\n", what);
  std::abort();
}

template <typename F>
cudaError_t launch(const void* kernel, const cudaLaunchConfig_t& cfg, F&& body) {
  const unsigned nthr = cfg.blockDim.x * cfg.blockDim.y * cfg.blockDim.z;
  if (cfg.blockDim.y != 1 || cfg.blockDim.z != 1 || nthr % 32 != 0 || nthr == 0 || nthr > 1024)
    fail("only 1-D blocks of whole warps are emulated");
  if (cfg.gridDim.x == 0 || cfg.gridDim.y == 0 || cfg.gridDim.z == 0 || cfg.gridDim.y > 65535 ||
      cfg.gridDim.z > 65535)
    return cudaErrorInvalidConfiguration;
  const size_t smem = cfg.dynamicSmemBytes;
  if (smem > 48 * 1024) {
    auto it = opted_smem.find(kernel);
    if (it == opted_smem.end() || size_t(it->second) < smem)
      fail("launch needs > 48 KB of dynamic shared memory without cudaFuncSetAttribute opt-in");
  }
  if (smem > size_t(max_smem_optin) || smem > sizeof(smem_buf)) return cudaErrorInvalidValue;
  ++launches;
  gridDim = cfg.gridDim;
  blockDim = cfg.blockDim;
  for (unsigned bz = 0; bz < cfg.gridDim.z; ++bz)
    for (unsigned by = 0; by < cfg.gridDim.y; ++by)
      for (unsigned bx = 0; bx < cfg.gridDim.x; ++bx) {
        blockIdx.x = bx; blockIdx.y = by; blockIdx.z = bz;
        const float nan = std::nanf("");
        for (size_t i = 0; i < sizeof(smem_buf) / 4; ++i) std::memcpy(smem_buf + 4 * i, &nan, 4);
        std::barrier<> bar(nthr);
        std::vector<Warp> ws(nthr / 32);
        block_bar = &bar;
        warps = ws.data();
        std::vector<std::thread> threads;
        threads.reserve(nthr);
        for (unsigned t = 0; t < nthr; ++t)
          threads.emplace_back([t, &body] {
            threadIdx.x = t;
            body();
          });
        for (auto& th : threads) th.join();
      }
  return cudaSuccess;
}

}  // namespace cuda_emu

inline void __syncthreads() { cuda_emu::block_bar->arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { cuda_emu::warps[threadIdx.x >> 5].bar.arrive_and_wait(); }
inline float __shfl_xor_sync(unsigned mask, float v, int lane_mask) {
  if (mask != 0xffffffffu) cuda_emu::fail("__shfl_xor_sync: only the full-warp mask is emulated");
  const unsigned lane = threadIdx.x & 31;
  cuda_emu::Warp& w = cuda_emu::warps[threadIdx.x >> 5];
  w.xch[lane] = v;
  w.bar.arrive_and_wait();
  const float r = w.xch[lane ^ unsigned(lane_mask & 31)];
  w.bar.arrive_and_wait();
  return r;
}
inline float __shfl_up_sync(unsigned mask, float v, unsigned delta) {
  if (mask != 0xffffffffu) cuda_emu::fail("__shfl_up_sync: only the full-warp mask is emulated");
  const unsigned lane = threadIdx.x & 31;
  cuda_emu::Warp& w = cuda_emu::warps[threadIdx.x >> 5];
  w.xch[lane] = v;
  w.bar.arrive_and_wait();
  const float r = lane >= delta ? w.xch[lane - delta] : v;
  w.bar.arrive_and_wait();
  return r;
}
inline float __shfl_sync(unsigned mask, float v, int src_lane) {
  if (mask != 0xffffffffu) cuda_emu::fail("__shfl_sync: only the full-warp mask is emulated");
  const unsigned lane = threadIdx.x & 31;
  cuda_emu::Warp& w = cuda_emu::warps[threadIdx.x >> 5];
  w.xch[lane] = v;
  w.bar.arrive_and_wait();
  const float r = w.xch[unsigned(src_lane) & 31];
  w.bar.arrive_and_wait();
  return r;
}
inline float atomicAdd(float* addr, float v) { return std::atomic_ref<float>(*addr).fetch_add(v); }

inline cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr attr, int) {
  if (attr != cudaDevAttrMaxSharedMemoryPerBlockOptin) return cudaErrorInvalidValue;
  *v = cuda_emu::max_smem_optin;
  return cudaSuccess;
}
template <typename T>
cudaError_t cudaFuncSetAttribute(T* kernel, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaErrorInvalidValue;
  if (value > cuda_emu::max_smem_optin) return cudaErrorInvalidValue;
  cuda_emu::opted_smem[reinterpret_cast<const void*>(kernel)] = value;
  return cudaSuccess;
}
template <typename... ExpTypes, typename... ActTypes>
cudaError_t cudaLaunchKernelEx(const cudaLaunchConfig_t* cfg, void (*kernel)(ExpTypes...), ActTypes&&... args) {
  return cuda_emu::launch(reinterpret_cast<const void*>(kernel), *cfg, [&] { kernel(args...); });
}
