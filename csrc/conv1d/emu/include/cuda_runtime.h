// CPU emulation of the CUDA subset the conv1d kernels use (dev tool, see run.py): one OS thread per CUDA
// thread, blocks run one after another, warp shuffles through a per-warp exchange buffer + barrier (all lanes
// of a warp must take part, as with the full mask), __syncthreads a block barrier, __shared__ a static shared
// by the block's threads. 16/8-byte vector accesses abort when misaligned. It checks logic and indexing, not
// performance, and not the GPU's weaker memory ordering.
#pragma once
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __shared__ static
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct EmuIdx { unsigned x = 0, y = 0, z = 0; };
inline thread_local EmuIdx threadIdx, blockIdx;
inline thread_local dim3 blockDim, gridDim;
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
typedef void* cudaStream_t;
enum cudaError_t { cudaSuccess = 0 };
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline const char* cudaGetErrorString(cudaError_t) { return "emu error"; }
inline float __expf(float x) { return std::exp(x); }
// Device queries: a tiny pretend device (1 SM, 2 resident blocks of any kernel), so that the small test shapes
// still give persistent warps several load groups, row-crossing shares and several segments each.
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };
inline cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr, int) { *v = 1; return cudaSuccess; }
template <class K> inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, K, int, size_t) {
  *n = 2;
  return cudaSuccess;
}
inline float __fdividef(float a, float b) { return a / b; }
using std::max;
using std::min;

struct EmuBlock {
  std::unique_ptr<std::barrier<>> block_bar;
  std::vector<std::unique_ptr<std::barrier<>>> warp_bar;
  std::vector<uint64_t> xch;  // [warp][32]
};
inline thread_local EmuBlock* emu_blk = nullptr;
inline thread_local int emu_lane = 0, emu_warp = 0;

template <class T> inline T emu_shfl(T v, int src) {
  static_assert(sizeof(T) <= 8, "");
  uint64_t* buf = &emu_blk->xch[emu_warp * 32];
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  buf[emu_lane] = bits;
  emu_blk->warp_bar[emu_warp]->arrive_and_wait();
  T r;
  std::memcpy(&r, &buf[src], sizeof(T));
  emu_blk->warp_bar[emu_warp]->arrive_and_wait();
  return r;
}
template <class T> inline T __shfl_sync(unsigned, T v, int src) { return emu_shfl(v, src & 31); }
template <class T> inline T __shfl_up_sync(unsigned, T v, unsigned d) {
  const int s = emu_lane - static_cast<int>(d);
  return emu_shfl(v, s < 0 ? emu_lane : s);
}
template <class T> inline T __shfl_down_sync(unsigned, T v, unsigned d) {
  const int s = emu_lane + static_cast<int>(d);
  return emu_shfl(v, s > 31 ? emu_lane : s);
}
template <class T> inline T __shfl_xor_sync(unsigned, T v, int m) { return emu_shfl(v, (emu_lane ^ m) & 31); }
inline void __syncthreads() { emu_blk->block_bar->arrive_and_wait(); }

template <class F> void emu_launch(dim3 grid, dim3 block, F&& f) {
  const unsigned nt = block.x * block.y * block.z;
  const unsigned nw = (nt + 31) / 32;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        EmuBlock blk;
        blk.block_bar = std::make_unique<std::barrier<>>(nt);
        for (unsigned w = 0; w < nw; ++w)
          blk.warp_bar.push_back(std::make_unique<std::barrier<>>(std::min(32u, nt - 32 * w)));
        blk.xch.assign(nw * 32, 0);
        std::vector<std::thread> ths;
        for (unsigned t = 0; t < nt; ++t)
          ths.emplace_back([&, t] {
            threadIdx.x = t % block.x; threadIdx.y = (t / block.x) % block.y; threadIdx.z = t / (block.x * block.y);
            blockIdx.x = bx; blockIdx.y = by; blockIdx.z = bz;
            blockDim = block; gridDim = grid;
            emu_blk = &blk; emu_lane = t % 32; emu_warp = t / 32;
            f();
            blk.warp_bar[emu_warp]->arrive_and_drop();
            blk.block_bar->arrive_and_drop();
          });
        for (auto& th : ths) th.join();
      }
}
#include <cstdio>
#include <cstdlib>
inline void emu_check_align(const void* p, int bytes) {
  if (reinterpret_cast<uintptr_t>(p) % bytes != 0) {
    std::fprintf(stderr, "EMU: misaligned %d-byte vector access at %p\n", bytes, p);
    std::abort();
  }
}
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return uint4{a, b, c, d}; }
inline uint2 make_uint2(unsigned a, unsigned b) { return uint2{a, b}; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
template <class T> inline T __ldg(const T* p) { return *p; }
