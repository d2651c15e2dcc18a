// Warpgroup tensor-core products (wgmma.mma_async, sm_90a) for kernels whose operands sit in shared memory in the
// 128-byte-swizzled layout: descriptors, the bf16 m64n64k16 product with A from registers (RS) or from shared memory
// (SS), and the fences. Under the CPU emulation (tests/cuda_emu, MK_CUDA_EMU) each lane builds its mma.sync fragments
// from the same layouts and runs the emulated m16n8k16 eight times, synchronously.
//
// The layout (what TMA's SWIZZLE_128B writes): a tile of 128-byte rows, 1024-byte aligned; the 16-byte chunk c of row
// r sits at chunk c ^ (r & 7) (sw128_offset). An operand is K-major (16 k of an m or n row contiguous: rows are m / n)
// or MN-major (64 m / n contiguous in a row: rows are k; B only here, trans-b 1). Descriptor: LBO 0, SBO 1024 (8 rows),
// swizzle mode 1; a k16 step starts 32 bytes on inside a row (K-major) or 16 rows (2048 bytes) on (MN-major). These
// encodings were found exact on the H200 by scripts/lab/wgmma_probe.cu (bench/results/lab/wgmma-probe-2026-12-01/).
//
// A's registers hold mma.sync m16n8k16's A-fragment order, warp w of the warpgroup (w = warp index % 4) rows 16 w ..
// 16 w + 15; the accumulators come back in mma.sync's order per n8 tile: d[j][e] is row 16 w + g + 8 (e / 2), column
// 8 j + 2 q + (e % 2) (g = lane / 4, q = lane % 4). Every thread of the warpgroup issues the same calls (.aligned).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MK_WGMMA_DEVICE 1  // this device pass has wgmma
#endif

namespace mamba_kernels {

// Byte offset of byte `b` (< 128) of row `r` in a 128-byte-swizzled tile.
__host__ __device__ __forceinline__ uint32_t sw128_offset(uint32_t r, uint32_t b) {
  return r * 128u + ((((b >> 4) ^ r) & 7u) << 4) + (b & 15u);
}

#if defined(__CUDA_ARCH__)
using WgDesc = uint64_t;
#else
struct WgDesc {  // the emulation keeps the start address itself
  const unsigned char* start;
};
#endif

// Descriptor of a 128-byte-swizzled operand starting at `p` (shared memory; a k16 step's start, see the header).
__device__ __forceinline__ WgDesc wg_desc_sw128(const void* p) {
#if defined(__CUDA_ARCH__)
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  return uint64_t((addr >> 4) & 0x3fff) | (uint64_t(1024 >> 4) << 32) | (uint64_t(1) << 62);
#else
  return WgDesc{static_cast<const unsigned char*>(p)};
#endif
}

// Makes this thread's generic-proxy shared-memory writes (stores, cp.async once waited for) visible to wgmma's reads;
// then a barrier hands them to the warpgroup.
__device__ __forceinline__ void fence_proxy_async() {
#if defined(MK_WGMMA_DEVICE)
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
// Orders the warpgroup's register accesses before the wgmma that follow (before the first, and after the
// accumulators or A registers were touched by other instructions).
__device__ __forceinline__ void wgmma_fence() {
#if defined(MK_WGMMA_DEVICE)
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if defined(MK_WGMMA_DEVICE)
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
// Waits until at most N committed groups are pending.
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#if defined(MK_WGMMA_DEVICE)
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}

#if !defined(__CUDA_ARCH__) && defined(MK_CUDA_EMU)
namespace wgmma_emu {
inline long long calls = 0;  // emulated wgmma (a driver reports them: the variant it asked for ran)
// Bits of the bf16 element (mn, k) of a K-major or MN-major operand from descriptor d.
inline uint32_t elem(WgDesc d, int mn, int k, bool mn_major) {
  if (mn_major && mn >= 64) cuda_emu::fail("wgmma emulation: MN-major operands of more than 64 columns");
  const uintptr_t a = reinterpret_cast<uintptr_t>(d.start) + (mn_major ? k * 128 + mn * 2 : mn * 128 + k * 2);
  const uintptr_t phys = a ^ (((a >> 7) & 7u) << 4);  // the swizzle acts on the address bits (1024-aligned tiles)
  uint16_t v;
  std::memcpy(&v, reinterpret_cast<const void*>(phys), 2);
  return v;
}
inline uint32_t pair(WgDesc d, int mn, int k, bool mn_major) {  // (k, k + 1) packed
  return elem(d, mn, k, mn_major) | (elem(d, mn, k + 1, mn_major) << 16);
}
// d (the lane's 8 n8 tiles) += A (the lane's fragment) B: eight emulated mma.sync m16n8k16.
inline void run(float (&d)[8][4], const uint32_t (&a)[4], WgDesc b, bool b_mn_major) {
  ++calls;
  const int lane = int(threadIdx.x & 31), g = lane >> 2, q = lane & 3;
  for (int j = 0; j < 8; ++j) {
    const uint32_t bf[2] = {pair(b, 8 * j + g, 2 * q, b_mn_major), pair(b, 8 * j + g, 2 * q + 8, b_mn_major)};
    cuda_emu::mma_m16n8k16_bf16(d[j], a, bf);
  }
}
}  // namespace wgmma_emu
#endif

// d (64 x 64 over the warpgroup) (+)= A (registers) B (descriptor b: K-major, or MN-major with kTransB); kAccumulate
// false: d = A B.
template <bool kAccumulate, bool kTransB>
__device__ __forceinline__ void wgmma_rs_m64n64k16_bf16(float (&d)[8][4], const uint32_t (&a)[4], WgDesc b) {
#if defined(MK_WGMMA_DEVICE)
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %38, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "{%32, %33, %34, %35}, %36, p, 1, 1, %37;\n}\n"
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),
        "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),
        "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]),
        "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
        "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "n"(kTransB ? 1 : 0), "n"(kAccumulate ? 1 : 0));
#elif !defined(__CUDA_ARCH__) && defined(MK_CUDA_EMU)
  if (!kAccumulate)
    for (auto& t : d)
      for (float& v : t) v = 0.f;
  wgmma_emu::run(d, a, b, kTransB);
#else
  (void)d, (void)a, (void)b;
  __trap();
#endif
}

// d (64 x 64) (+)= A (descriptor a: K-major, rows m) B (descriptor b: K-major, rows n).
template <bool kAccumulate>
__device__ __forceinline__ void wgmma_ss_m64n64k16_bf16(float (&d)[8][4], WgDesc a, WgDesc b) {
#if defined(MK_WGMMA_DEVICE)
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "%32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),
        "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),
        "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]),
        "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
        "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
      : "l"(a), "l"(b), "n"(kAccumulate ? 1 : 0));
#elif !defined(__CUDA_ARCH__) && defined(MK_CUDA_EMU)
  const int lane = int(threadIdx.x & 31), g = lane >> 2, q = lane & 3, m0 = 16 * int((threadIdx.x >> 5) & 3);
  const uint32_t af[4] = {wgmma_emu::pair(a, m0 + g, 2 * q, false), wgmma_emu::pair(a, m0 + g + 8, 2 * q, false),
                          wgmma_emu::pair(a, m0 + g, 2 * q + 8, false),
                          wgmma_emu::pair(a, m0 + g + 8, 2 * q + 8, false)};
  if (!kAccumulate)
    for (auto& t : d)
      for (float& v : t) v = 0.f;
  wgmma_emu::run(d, af, b, false);
#else
  (void)d, (void)a, (void)b;
  __trap();
#endif
}

}  // namespace mamba_kernels
