// CPU emulation of the CUDA execution model, just enough for the csrc/verify kernels: a block's CUDA threads run as
// cooperative fibers on one OS thread (../emu_fibers.h: ucontext, round robin, a fiber runs until it waits at a
// barrier), barriers for __syncthreads and for warp shuffles, blocks run one after the other. Dynamic shared memory
// is poisoned with NaN bytes before every block (reads of unwritten shared memory show up in the outputs) and
// 16-byte vector accesses are checked for alignment. Used by tests/test_verify_cuda_emu.py (no GPU needed).
//
// Include order matters: this header first (it redefines the CUDA keywords), then the kernel headers. It needs the
// real CUDA headers (cuda_runtime.h, cuda_fp16.h, cuda_bf16.h: host-side types and conversions only), NOT the fake
// ones in tests/cuda_emu/ that the selective-scan emulation uses.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "../emu_fibers.h"

namespace emu {
using emu_fiber::Barrier;
struct Dim {
  unsigned x, y, z;
};
struct Warp {
  Barrier bar{32};
  unsigned slots[32];
  float ma[32][4], mb[32][2];  // mma fragments of the lanes (mma_tf32)
};
// The running fiber's thread index and the running block's index; per block (rebuilt between blocks): the block
// barrier and the warps.
inline Dim cur_thread{0, 0, 0};
inline Dim cur_block{0, 0, 0};
inline Dim g_blockDim{0, 0, 0};
inline Dim g_gridDim{0, 0, 0};
inline Barrier g_bar;
inline std::vector<Warp> g_warps;
inline float4* g_dyn = nullptr;
// griddepcontrol.wait: calls griddep_hook where a launch set one (verify_emu_ops.cpp: the split stream kernel's blocks
// see the prep kernel's writes only from their wait on), else nothing.
inline std::function<void()> griddep_hook;
inline void griddep_wait() {
  if (griddep_hook) griddep_hook();
}

inline void warp_wait() { emu_fiber::arrive_and_wait(g_warps[cur_thread.x >> 5].bar); }
// All lanes of the warp publish their value, wait, read the source lane's value, wait (so the slot can be reused).
inline unsigned shfl_bits(unsigned v, int src) {
  const int tid = static_cast<int>(cur_thread.x), lane = tid & 31;
  Warp& w = g_warps[tid >> 5];
  w.slots[lane] = v;
  warp_wait();
  const unsigned r = w.slots[src & 31];
  warp_wait();
  return r;
}
inline float shfl(float v, int src) {
  unsigned u;
  std::memcpy(&u, &v, 4);
  u = shfl_bits(u, src);
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
}  // namespace emu

#undef __global__
#define __global__
#undef __shared__
#define __shared__ static  // one block at a time, so function-local statics are the block's shared memory
#undef __launch_bounds__
#define __launch_bounds__(...)
#undef threadIdx
#undef blockIdx
#undef blockDim
#undef gridDim
#define threadIdx (emu::cur_thread)
#define blockIdx (emu::cur_block)
#define blockDim (emu::g_blockDim)
#define gridDim (emu::g_gridDim)
#define MK_VERIFY_DYN_SMEM(name) float4* name = emu::g_dyn

inline void __syncthreads() { emu_fiber::arrive_and_wait(emu::g_bar); }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __ffs(int v) { return __builtin_ffs(v); }
inline float __expf(float x) { return std::exp(x); }
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline void emu_check_align16(const void* p) {
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0) {
    std::fprintf(stderr, "emu: misaligned 16-byte access %p\n", p);
    std::abort();
  }
}
inline uint4 __ldcs(const uint4* p) {
  emu_check_align16(p);
  return *p;
}
inline void __stcs(uint4* p, uint4 v) {
  emu_check_align16(p);
  *p = v;
}
inline float __shfl_xor_sync(unsigned, float v, int off) { return emu::shfl(v, (emu::cur_thread.x & 31) ^ off); }
inline float __shfl_down_sync(unsigned, float v, int off) {
  const int lane = emu::cur_thread.x & 31;
  return emu::shfl(v, lane + off < 32 ? lane + off : lane);
}
inline float __shfl_sync(unsigned, float v, int src) { return emu::shfl(v, src); }
inline unsigned __shfl_xor_sync(unsigned, unsigned v, int off) {
  return emu::shfl_bits(v, (emu::cur_thread.x & 31) ^ off);
}
inline unsigned __shfl_sync(unsigned, unsigned v, int src) { return emu::shfl_bits(v, src); }
// Blocks and fibers take turns on one OS thread: a plain read-modify-write is atomic here.
inline unsigned atomicAdd(unsigned* addr, unsigned v) {
  const unsigned old = *addr;
  *addr = old + v;
  return old;
}
// m16n8k8 tf32 mma of one warp (fragments as in verify_m2tc_kernel.cuh), operands truncated to tf32 as the
// hardware does; all lanes publish their fragments, one barrier, each computes its outputs, one barrier.
inline void emu_mma_tf32(float (&d)[4], float a0, float a1, float a2, float a3, float b0, float b1) {
  const int tid = static_cast<int>(emu::cur_thread.x), lane = tid & 31, g = lane >> 2, q = lane & 3;
  emu::Warp& w = emu::g_warps[tid >> 5];
  w.ma[lane][0] = a0; w.ma[lane][1] = a1; w.ma[lane][2] = a2; w.ma[lane][3] = a3;
  w.mb[lane][0] = b0; w.mb[lane][1] = b1;
  emu::warp_wait();
  auto tr = [](float v) { return __uint_as_float(__float_as_uint(v) & 0xffffe000u); };
  for (int kk = 0; kk < 8; ++kk) {
    const int hi = kk < 4 ? 0 : 1;
    const float ag = tr(w.ma[g * 4 + (kk & 3)][2 * hi]), ag8 = tr(w.ma[g * 4 + (kk & 3)][2 * hi + 1]);
    const float bc0 = tr(w.mb[8 * q + (kk & 3)][hi]), bc1 = tr(w.mb[8 * q + 4 + (kk & 3)][hi]);
    d[0] = std::fma(ag, bc0, d[0]);
    d[1] = std::fma(ag, bc1, d[1]);
    d[2] = std::fma(ag8, bc0, d[2]);
    d[3] = std::fma(ag8, bc1, d[3]);
  }
  emu::warp_wait();
}
#define MK_EMU_MMA_TF32 emu_mma_tf32
#define MK_EMU_CLUSTER_WAIT __syncthreads  // cluster_wait: a block barrier (blocks of a cluster run in turn)
#define MK_EMU_GRIDDEP_WAIT emu::griddep_wait  // griddepcontrol.wait (common/griddep.h)
inline void __syncwarp(unsigned = 0xffffffffu) { emu::warp_wait(); }

namespace emu {
// Runs `grid` x `grid_y` blocks (x fastest) of `threads` CUDA threads one block after the other; `body` is the
// kernel call. With `cluster` > 1 (grid a multiple of it) the blocks of each cluster (`cluster` consecutive x
// indices) run in decreasing rank order: rank 0, the one block that writes a split unit's shared cache rows after
// the cluster barrier, runs last, as the barrier guarantees on the GPU (the barrier itself is a no-op here). A
// thread that leaves the kernel early drops out of its block's and its warp's barriers (an exited CUDA thread no
// longer counts for __syncthreads).
template <class F>
void launch(int64_t grid, int threads, size_t smem, F&& body, int cluster = 1, int64_t grid_y = 1) {
  if (threads <= 0 || threads % 32 != 0 || threads > 1024) {
    std::fprintf(stderr, "emu: blockDim %d must be a positive multiple of 32, at most 1024\n", threads);
    std::abort();
  }
  if (grid <= 0) return;
  std::vector<float4> dyn(smem / 16 + 2);
  g_blockDim = {static_cast<unsigned>(threads), 1, 1};
  g_gridDim = {static_cast<unsigned>(grid), static_cast<unsigned>(grid_y), 1};
  g_dyn = dyn.data();
  const unsigned n = static_cast<unsigned>(threads);
  std::vector<emu_fiber::Fiber> fs(n);
  std::unique_ptr<char[]> stacks(new char[emu_fiber::kStack * n]);
  emu_fiber::set_body(body);
  emu_fiber::fiber_exit = [](unsigned t) {
    emu_fiber::drop(g_warps[t >> 5].bar);
    emu_fiber::drop(g_bar);
  };
  for (int64_t blk = 0; blk < grid * grid_y; ++blk) {  // x fastest, as the GPU numbers blocks
    std::memset(dyn.data(), 0xff, dyn.size() * sizeof(float4));  // NaN poison
    g_bar = Barrier{n};
    g_warps = std::vector<Warp>(n / 32);
    const int64_t run = cluster > 1 ? blk - blk % cluster + (cluster - 1 - blk % cluster) : blk;
    cur_block = {static_cast<unsigned>(run % grid), static_cast<unsigned>(run / grid), 0};
    emu_fiber::run_block(fs.data(), n, stacks.get(), [](unsigned t) { cur_thread = {t, 0, 0}; });
  }
  emu_fiber::fiber_exit = nullptr;
  g_warps.clear();
  g_dyn = nullptr;
}
}  // namespace emu
