// Host emulation of the small CUDA subset the kernels in csrc/ use, so that their unmodified source runs on
// the CPU in tests (this machine has nvcc but no GPU). Put this folder FIRST on the include path of a host
// compiler (g++ -std=c++20): `#include <cuda_runtime.h>` in a kernel header then lands here.
//
// Model: a launch runs its blocks one after the other; a block runs blockDim.x cooperative fibers (emu_fibers.h:
// ucontext, one OS thread: no futex storms with 256 lanes on a 2-core machine), round robin; a fiber runs
// until it reaches a barrier. __syncthreads is a barrier over the block, __syncwarp / __shfl_*_sync a barrier
// over the 32 lanes of the warp (every lane must take part, as with the full mask on the GPU); atomicAdd is
// a plain add (one OS thread). Dynamic shared memory is one NaN-filled buffer per block (a read of an
// element no thread wrote shows up as NaN); a launch needing more than 48 KB must have been opted in with
// cudaFuncSetAttribute, as on the GPU, and may not exceed cuda_emu::max_smem_optin (H100: 227 KB). It checks
// logic and indexing, not performance, and not the GPU's weaker memory ordering (lanes interleave only at
// barriers, so a missing barrier between a write and another lane's read can go unnoticed).
// Thread-block clusters are not emulated here (a launch with a cluster dimension > 1 fails); the verify family's
// shim (verify/verify_emu_shim.h) runs a cluster's blocks in turn.
#pragma once
#define MK_CUDA_EMU 1
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "emu_fibers.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __grid_constant__
#define __shared__
#define __align__(n) __attribute__((aligned(n)))

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
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return uint4{a, b, c, d}; }
inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }
struct alignas(8) float2 {
  float x, y;
};
inline float2 make_float2(float a, float b) { return float2{a, b}; }

inline uint3 threadIdx;  // of the running fiber
inline uint3 blockIdx;
inline dim3 blockDim, gridDim;

inline float __expf(float x) { return std::exp(x); }
inline float __fdividef(float a, float b) { return a / b; }

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
enum cudaDeviceAttr {
  cudaDevAttrMultiProcessorCount = 16,  // (named by common/smem_optin.h's device_sm_count; not answered here)
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97
};
// (programmatic stream serialization: accepted and ignored; the emulation runs grids one after the other)
enum cudaLaunchAttributeID {
  cudaLaunchAttributeClusterDimension = 4,
  cudaLaunchAttributeProgrammaticStreamSerialization = 6
};
union cudaLaunchAttributeValue {
  struct {
    unsigned x, y, z;
  } clusterDim;
  int programmaticStreamSerializationAllowed;
  char pad[64];
};
struct cudaLaunchAttribute {
  cudaLaunchAttributeID id;
  cudaLaunchAttributeValue val;
};
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
inline size_t last_smem = 0;  // the last launch's dynamic shared memory (bytes)

using emu_fiber::Barrier;
using emu_fiber::Fiber;
using emu_fiber::arrive_and_wait;
using emu_fiber::fibers;
struct Warp {
  Barrier bar{32};
  float xch[2][32];  // double-buffered: one barrier per shuffle (see shfl_exchange)
  float mma_a[2][32][8], mma_b[2][32][4];  // mma fragments of the lanes, double-buffered like xch (see mma_*)
};
inline Barrier block_bar;
inline Barrier* block_bar_p = &block_bar;  // the running block's
inline Barrier named_bars[16];             // bar.sync id, n (id 1..15; 0 is block_bar): reset for every block
// When set, NaN-filled before every block of a launch (reads of unwritten shared memory then show up in the
// outputs); the test driver of a kernel whose shared array is not smem_buf sets it.
inline void* poison_smem = nullptr;
inline size_t poison_smem_bytes = 0;
inline Warp* warps = nullptr;

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "cuda_emu: %s\n", what);
  std::abort();
}

inline std::vector<std::function<void()>> deferred_copies;  // tensor-map loads in flight (mbar_* below)

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
  for (unsigned i = 0; i < cfg.numAttrs && cfg.attrs; ++i)
    if (cfg.attrs[i].id == cudaLaunchAttributeClusterDimension &&
        cfg.attrs[i].val.clusterDim.x * cfg.attrs[i].val.clusterDim.y * cfg.attrs[i].val.clusterDim.z > 1)
      fail("thread-block clusters are not emulated by cuda_runtime.h");
  ++launches;
  last_smem = smem;
  gridDim = cfg.gridDim;
  blockDim = cfg.blockDim;
  emu_fiber::set_body(body);
  block_bar_p = &block_bar;
  std::vector<Fiber> fs(nthr);
  std::unique_ptr<char[]> stacks(new char[emu_fiber::kStack * nthr]);
  for (unsigned bz = 0; bz < cfg.gridDim.z; ++bz)
    for (unsigned by = 0; by < cfg.gridDim.y; ++by)
      for (unsigned bx = 0; bx < cfg.gridDim.x; ++bx) {
        blockIdx.x = bx; blockIdx.y = by; blockIdx.z = bz;
        const float nan = std::nanf("");
        for (size_t i = 0; i < sizeof(smem_buf) / 4; ++i) std::memcpy(smem_buf + 4 * i, &nan, 4);
        for (size_t i = 0; poison_smem && i < poison_smem_bytes / 4; ++i)
          std::memcpy(static_cast<unsigned char*>(poison_smem) + 4 * i, &nan, 4);
        block_bar = Barrier{nthr};
        for (Barrier& nb : named_bars) nb = Barrier{};
        std::vector<Warp> ws(nthr / 32);
        warps = ws.data();
        emu_fiber::run_block(fs.data(), nthr, stacks.get(), [](unsigned t) { threadIdx.x = t; });
        if (!deferred_copies.empty()) fail("a block exited with tensor-map loads in flight");
      }
  return cudaSuccess;
}

}  // namespace cuda_emu

inline void __syncthreads() { cuda_emu::arrive_and_wait(*cuda_emu::block_bar_p); }
namespace cuda_emu {
// bar.sync id, n (wait) / bar.arrive id, n (!wait: counted, no wait): the n-th thread to reach barrier id (1..15)
// opens it for the waiting ones; every use of an id in a block must name the same n.
inline void named_barrier(unsigned id, unsigned n, bool wait = true) {
  if (id == 0 || id >= 16 || n == 0 || n % 32 != 0) fail("named_barrier: id 1..15 and a whole number of warps");
  Barrier& b = named_bars[id];
  if (b.n == 0) b.n = n;
  if (b.n != n) fail("named_barrier: one id used with two thread counts");
  if (wait) arrive_and_wait(b);
  else emu_fiber::arrive(b);
}
}  // namespace cuda_emu
namespace cuda_emu {
// mbarrier (mbarrier.init / arrive.expect_tx / try_wait.parity, cp.async.mbarrier.arrive.noinc, a TMA load's
// complete_tx) in the barrier's own 8 bytes of shared memory: its arrival count, the arrivals its current phase still
// waits for, the phase; the phase's transaction bytes still due in a side table. A phase completes when both are zero.
// cp.async copies complete at once here, so the arrival one triggers on completion counts at once. Tensor-map loads do
// not: they are queued (defer_copy) and land only when every fiber of the block is waiting (a whole round of the
// scheduler without progress), one at a time, newest first (CUDA_EMU_LAND below: in a random order). So a fill issued
// before another can land after it, and after its reader's team has computed other items, as the GPU's copy engine
// allows; a parity wait then can alias a phase two behind (try_wait.parity returns at once for the parity of the phase
// before the current one, as on the GPU) where a kernel's protocol allows it, and that shows as outputs from stale
// stages or as an arrival on a phase that has all its arrivals (which fails here; on the GPU it is undefined). A
// barrier still holding the block's NaN poison (count 0) fails, so does a wait that sees no progress, and so does a
// block that exits with loads in flight.
struct MbarEmu {
  uint32_t pending;
  uint16_t count, phase;
};
static_assert(sizeof(MbarEmu) == 8, "an mbarrier is 8 bytes");
inline std::map<const void*, long long> mbar_tx;          // transaction bytes the current phase still waits for
inline void mbar_init(void* bar, unsigned count) {
  if (count == 0 || count > 65535) fail("mbarrier.init: count 1..65535");
  *static_cast<MbarEmu*>(bar) = MbarEmu{count, uint16_t(count), 0};
  mbar_tx[bar] = 0;
}
inline MbarEmu& mbar_checked(void* bar, const char* what) {
  MbarEmu& b = *static_cast<MbarEmu*>(bar);
  if (b.count == 0 || b.pending > b.count) fail(what);
  return b;
}
inline void mbar_complete_if_done(void* bar) {
  MbarEmu& b = *static_cast<MbarEmu*>(bar);
  ++emu_fiber::progress;
  if (b.pending == 0 && mbar_tx[bar] == 0) {
    b.pending = b.count;
    ++b.phase;
  }
}
inline void mbar_arrive(void* bar) {
  MbarEmu& b = mbar_checked(bar, "mbarrier arrival: barrier not initialised");
  if (b.pending == 0) fail("mbarrier arrival: the phase has all its arrivals (an arrival meant for a later phase)");
  --b.pending;
  mbar_complete_if_done(bar);
}
// mbarrier.arrive.expect_tx: the phase waits for `bytes` more, then this thread's arrival.
inline void mbar_expect_tx(void* bar, unsigned bytes) {
  MbarEmu& b = mbar_checked(bar, "mbarrier expect_tx: barrier not initialised");
  if (b.pending == 0) fail("mbarrier expect_tx: the phase has all its arrivals (an arrival meant for a later phase)");
  mbar_tx[bar] += bytes;
  mbar_arrive(bar);
}
// A copy's complete_tx of `bytes` on bar.
inline void mbar_complete_tx(void* bar, unsigned bytes) {
  mbar_checked(bar, "mbarrier complete_tx: barrier not initialised");
  mbar_tx[bar] -= bytes;
  mbar_complete_if_done(bar);
}
// Queues a copy (a tensor-map load): `land` writes its bytes and completes them on its barrier, later.
inline void defer_copy(std::function<void()> land) { deferred_copies.push_back(std::move(land)); }
// CUDA_EMU_LAND=random:SEED (environment, read once; default: newest): when every fiber waits, a random queued load
// lands (seeded) instead of the newest, so that a test can run a kernel under other landing orders than the default
// one. Loads still land only when every fiber waits: landing them early makes late landings rare, and those are what
// break a barrier protocol (one early landing in 1,000 spins hid session 42's ring race in every case; without them
// random orders caught it in 9 of 30 runs, five seeds of six cases; newest first in 3 of the 6).
struct LandPolicy {
  bool random = false;
  std::mt19937_64 rng;
};
inline LandPolicy& land_policy() {
  static LandPolicy pol = [] {
    LandPolicy l;
    const char* e = std::getenv("CUDA_EMU_LAND");
    if (e != nullptr && std::strncmp(e, "random:", 7) == 0) {
      l.random = true;
      l.rng.seed(std::strtoull(e + 7, nullptr, 10));
    } else if (e != nullptr && e[0] != '\0' && std::strcmp(e, "newest") != 0) {
      fail("CUDA_EMU_LAND: newest or random:SEED");
    }
    return l;
  }();
  return pol;
}
inline void land_one_copy() {  // newest, or a random one under CUDA_EMU_LAND=random
  LandPolicy& l = land_policy();
  const size_t i = l.random ? static_cast<size_t>(l.rng() % deferred_copies.size()) : deferred_copies.size() - 1;
  std::function<void()> f = std::move(deferred_copies[i]);
  deferred_copies.erase(deferred_copies.begin() + static_cast<std::ptrdiff_t>(i));
  f();
}
inline void mbar_wait(const void* bar, unsigned parity) {
  const MbarEmu& b = *static_cast<const MbarEmu*>(bar);
  if (b.count == 0) fail("mbarrier wait: barrier not initialised");
  unsigned long long seen = emu_fiber::progress;
  for (long spins = 0; (b.phase & 1u) == (parity & 1u); ++spins) {
    if (spins > 200000) fail("mbarrier wait: no progress (a phase nobody completes)");
    if (spins > 0 && emu_fiber::progress == seen && !deferred_copies.empty()) land_one_copy();  // all wait
    seen = emu_fiber::progress;
    emu_fiber::yield();
  }
}
}  // namespace cuda_emu
inline void __syncwarp(unsigned = 0xffffffffu) { cuda_emu::arrive_and_wait(cuda_emu::warps[threadIdx.x >> 5].bar); }
namespace cuda_emu {
// Publishes v, waits for the warp, returns lane src's value (own value if src >= 32). Buffer p of shuffle k
// is rewritten at shuffle k + 2 only, after every lane passed the barrier of shuffle k + 1, hence after
// every lane's read of shuffle k.
inline float shfl_exchange(unsigned mask, float v, unsigned src, const char* what) {
  if (mask != 0xffffffffu) fail(what);
  Warp& w = warps[threadIdx.x >> 5];
  unsigned& parity = fibers[threadIdx.x].shfl_parity;
  float* buf = w.xch[parity];
  parity ^= 1u;
  buf[threadIdx.x & 31] = v;
  arrive_and_wait(w.bar);
  return src < 32 ? buf[src] : v;
}
}  // namespace cuda_emu
inline float __shfl_xor_sync(unsigned mask, float v, int lane_mask) {
  return cuda_emu::shfl_exchange(mask, v, (threadIdx.x & 31) ^ unsigned(lane_mask & 31),
                                 "__shfl_xor_sync: only the full-warp mask is emulated");
}
inline float __shfl_up_sync(unsigned mask, float v, unsigned delta) {
  const unsigned lane = threadIdx.x & 31;
  return cuda_emu::shfl_exchange(mask, v, lane >= delta ? lane - delta : 32u,
                                 "__shfl_up_sync: only the full-warp mask is emulated");
}
inline float __shfl_down_sync(unsigned mask, float v, unsigned delta) {
  const unsigned lane = threadIdx.x & 31;
  return cuda_emu::shfl_exchange(mask, v, lane + delta < 32 ? lane + delta : 32u,
                                 "__shfl_down_sync: only the full-warp mask is emulated");
}
inline float __shfl_sync(unsigned mask, float v, int src_lane) {
  return cuda_emu::shfl_exchange(mask, v, unsigned(src_lane) & 31u, "__shfl_sync: only the full-warp mask is emulated");
}
namespace cuda_emu {
// One warp's mma.sync: every lane publishes its fragments (as floats), one warp barrier, each lane computes its
// four outputs in k order with fma (the GPU's summation order is unspecified). The buffers alternate as in
// shfl_exchange. Fragment layouts as in the PTX ISA (g = lane / 4, q = lane % 4); see csrc/ssd/ssd_fwd_kernel.cuh.
inline float bf16_bits_to_float(uint32_t bits16) {
  const uint32_t u = bits16 << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float tf32_trunc(float v) {  // the tensor core reads the upper 19 bits of a tf32 operand
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u &= 0xffffe000u;
  std::memcpy(&v, &u, 4);
  return v;
}
template <int K>
inline void mma_exchange(float (&d)[4], const float* a, const float* b) {
  Warp& w = warps[threadIdx.x >> 5];
  unsigned& parity = fibers[threadIdx.x].mma_parity;
  const unsigned lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  float(*ma)[8] = w.mma_a[parity];
  float(*mb)[4] = w.mma_b[parity];
  parity ^= 1u;
  for (int i = 0; i < K / 2; ++i) ma[lane][i] = a[i];
  for (int i = 0; i < K / 4; ++i) mb[lane][i] = b[i];
  arrive_and_wait(w.bar);
  // element (row, k) of A and (k, col) of B: the lane holding it and its register index
  auto A = [&](unsigned r, unsigned k) {
    if (K == 16) {  // regs: (g,2q) (g,2q+1) (g+8,2q) (g+8,2q+1) (g,2q+8) (g,2q+9) (g+8,2q+8) (g+8,2q+9)
      const unsigned kq = (k & 7) >> 1, hi = k >> 3, lo = k & 1, rh = r >> 3;
      return ma[(r & 7) * 4 + kq][hi * 4 + rh * 2 + lo];
    }
    return ma[(r & 7) * 4 + (k & 3)][(k >> 2) * 2 + (r >> 3)];  // tf32: (g,q) (g+8,q) (g,q+4) (g+8,q+4)
  };
  auto B = [&](unsigned k, unsigned c) {
    if (K == 16) return mb[c * 4 + ((k & 7) >> 1)][(k >> 3) * 2 + (k & 1)];  // (2q,g) (2q+1,g) (2q+8,g) (2q+9,g)
    return mb[c * 4 + (k & 3)][k >> 2];                                        // tf32: (q,g) (q+4,g)
  };
  for (unsigned k = 0; k < unsigned(K); ++k)
    for (unsigned e = 0; e < 4; ++e) d[e] = std::fma(A(g + 8 * (e >> 1), k), B(k, 2 * q + (e & 1)), d[e]);
}
inline void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  float af[8], bf[4];
  for (int i = 0; i < 4; ++i) {
    af[2 * i] = bf16_bits_to_float(a[i] & 0xffffu);
    af[2 * i + 1] = bf16_bits_to_float(a[i] >> 16);
  }
  for (int i = 0; i < 2; ++i) {
    bf[2 * i] = bf16_bits_to_float(b[i] & 0xffffu);
    bf[2 * i + 1] = bf16_bits_to_float(b[i] >> 16);
  }
  mma_exchange<16>(d, af, bf);
}
inline void mma_m16n8k8_tf32(float (&d)[4], const float (&a)[4], const float (&b)[2]) {
  const float af[4] = {tf32_trunc(a[0]), tf32_trunc(a[1]), tf32_trunc(a[2]), tf32_trunc(a[3])};
  const float bf[2] = {tf32_trunc(b[0]), tf32_trunc(b[1])};
  mma_exchange<8>(d, af, bf);
}
}  // namespace cuda_emu
inline float atomicAdd(float* addr, float v) {
  const float old = *addr;
  *addr = old + v;
  return old;
}

inline cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr attr, int) {
  if (attr == cudaDevAttrComputeCapabilityMajor || attr == cudaDevAttrComputeCapabilityMinor) {
    *v = attr == cudaDevAttrComputeCapabilityMajor ? 9 : 0;  // H100/H200: thread-block clusters, wgmma
    return cudaSuccess;
  }
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
