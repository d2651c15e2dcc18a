// Warpgroup tensor-core products (wgmma.mma_async, sm_90a) for kernels whose operands sit in shared memory in the
// swizzled layouts: descriptors, the bf16 m64nNk16 product (N 32 to 160) with A and B from shared memory, the m64n64k16
// one with A from registers, and the fences. Under the CPU emulation (tests/cuda_emu, MK_CUDA_EMU) each lane builds its
// mma.sync fragments from the same layouts and runs the emulated m16n8k16 N / 8 times, synchronously.
//
// The layouts (what TMA's SWIZZLE_128B / SWIZZLE_64B write): a tile of S-byte rows (S 128 or 64), 1024-byte aligned;
// the 16-byte chunk c of row r sits at chunk c ^ ((r / (128 / S)) & (S / 16 - 1)): the swizzle XORs address bits 7..
// into bits 4.. (sw128_offset, sw64_offset). An operand is K-major (the k of an m / n row contiguous: rows are m / n;
// 128-byte rows here) or MN-major (S / 2 m / n contiguous in a row: rows are k; trans 1). Descriptor: LBO 0 (unused
// for these shapes), SBO 8 S (8 rows), swizzle mode 1 (128 B) or 2 (64 B); a k16 step starts 32 bytes on inside a row
// (K-major) or 16 rows on (MN-major). The 128-byte encodings (K-major and MN-major B) were found exact on the H200 by
// scripts/lab/wgmma_probe.cu (bench/results/lab/wgmma-probe-2026-12-01/); MN-major A (128-byte) and MN-major B
// (64-byte, n 32) by the GPU tests of the state stage's wgmma variant (ssd_state_wg_kernel, session 26). Users: F2's
// C h_in^T (K-major m64n64) and that variant (MN-major m64n32, off by default).
//
// The accumulators come back in mma.sync's order per n8 tile: d[j][e] is row 16 w + g + 8 (e / 2), column 8 j + 2 q +
// (e % 2) of the warpgroup's 64 x N tile (w = warp index % 4, g = lane / 4, q = lane % 4). Every thread of the
// warpgroup issues the same calls (.aligned), outside divergent code (ptxas serialises them otherwise).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MK_WGMMA_DEVICE 1  // this device pass has wgmma
#endif

namespace mamba_kernels {

// Host: whether the current device runs this build's sm_90a code (compute capability 9.0, and setup.py defined
// MK_BUILT_SM90A because TORCH_CUDA_ARCH_LIST has 9.0a; the CPU emulation counts as such a device), cached per device:
// launchers ask it on every call.
inline bool device_runs_sm90a() {
#if defined(MK_BUILT_SM90A) || defined(MK_CUDA_EMU)
  static signed char cached[64] = {0};  // 0 unknown, 1 yes, -1 no
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0) return false;
  if (dev < 64 && cached[dev] != 0) return cached[dev] > 0;
  int major = 0, minor = 0;
  const bool yes = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
                   cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess &&
                   major == 9 && minor == 0;
  if (dev < 64) cached[dev] = yes ? 1 : -1;
  return yes;
#else
  return false;
#endif
}

// Byte offset of byte `b` (< 128) of row `r` in a 128-byte-swizzled tile.
__host__ __device__ __forceinline__ uint32_t sw128_offset(uint32_t r, uint32_t b) {
  return r * 128u + ((((b >> 4) ^ r) & 7u) << 4) + (b & 15u);
}
// Byte offset of byte `b` (< 64) of row `r` in a 64-byte-swizzled tile.
__host__ __device__ __forceinline__ uint32_t sw64_offset(uint32_t r, uint32_t b) {
  return r * 64u + ((((b >> 4) ^ (r >> 1)) & 3u) << 4) + (b & 15u);
}

#if defined(__CUDA_ARCH__)
using WgDesc = uint64_t;
#else
struct WgDesc {  // the emulation keeps the start address, the row length and the LBO (bytes)
  const unsigned char* start;
  int row_bytes;
  int lbo;
};
#endif

// Descriptor of an operand starting at `p` (shared memory; a k16 step's start, see the header) in the layout with
// kRowBytes-byte rows (128 or 64). lbo: an MN-major operand wider than one swizzle atom (kRowBytes / 2 m / n): the
// byte stride from one atom's tile (kRowBytes / 2 columns, all its k rows) to the next (a multiple of 16, < 256 KB).
template <int kRowBytes>
__device__ __forceinline__ WgDesc wg_desc(const void* p, uint32_t lbo = 0) {
  static_assert(kRowBytes == 128 || kRowBytes == 64, "128- or 64-byte swizzle");
#if defined(__CUDA_ARCH__)
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  return uint64_t((addr >> 4) & 0x3fff) | (uint64_t((lbo >> 4) & 0x3fff) << 16) |
         (uint64_t((8 * kRowBytes) >> 4) << 32) | (uint64_t(kRowBytes == 128 ? 1 : 2) << 62);
#else
  return WgDesc{static_cast<const unsigned char*>(p), kRowBytes, static_cast<int>(lbo)};
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
  const int S = d.row_bytes;
  if (mn_major && 2 * mn >= S && d.lbo == 0) cuda_emu::fail("wgmma emulation: an MN-major operand past its atom");
  if (!mn_major && 2 * k >= S) cuda_emu::fail("wgmma emulation: an operand wider than its swizzle atom");
  // MN-major: column mn of atom mn / (S / 2), d.lbo bytes apart (the swizzle is on each 1024-aligned atom tile's bits)
  const uintptr_t atom = mn_major ? uintptr_t(2 * mn / S) * uintptr_t(d.lbo) : 0;
  const uintptr_t in_atom = mn_major ? k * S + (mn % (S / 2)) * 2 : mn * S + k * 2;
  const uintptr_t a = reinterpret_cast<uintptr_t>(d.start) + atom + in_atom;
  const uintptr_t phys = a ^ (((a >> 7) & uintptr_t(S / 16 - 1)) << 4);  // on the address bits (1024-aligned tiles)
  uint16_t v;
  std::memcpy(&v, reinterpret_cast<const void*>(phys), 2);
  return v;
}
inline uint32_t pair(WgDesc d, int mn, int k, bool mn_major) {  // (k, k + 1) packed
  return elem(d, mn, k, mn_major) | (elem(d, mn, k + 1, mn_major) << 16);
}
// d (the lane's NT n8 tiles) (+)= A B: the lane's A fragment from descriptor a, NT emulated mma.sync m16n8k16.
template <int NT>
inline void run(float (&d)[NT][4], WgDesc a, bool a_mn_major, WgDesc b, bool b_mn_major, bool accumulate) {
  ++calls;
  const int lane = int(threadIdx.x & 31), g = lane >> 2, q = lane & 3, m0 = 16 * int((threadIdx.x >> 5) & 3);
  const uint32_t af[4] = {pair(a, m0 + g, 2 * q, a_mn_major), pair(a, m0 + g + 8, 2 * q, a_mn_major),
                          pair(a, m0 + g, 2 * q + 8, a_mn_major), pair(a, m0 + g + 8, 2 * q + 8, a_mn_major)};
  if (!accumulate)
    for (auto& t : d)
      for (float& v : t) v = 0.f;
  for (int j = 0; j < NT; ++j) {
    const uint32_t bf[2] = {pair(b, 8 * j + g, 2 * q, b_mn_major), pair(b, 8 * j + g, 2 * q + 8, b_mn_major)};
    cuda_emu::mma_m16n8k16_bf16(d[j], af, bf);
  }
}
}  // namespace wgmma_emu
#endif

// The accumulators of n8 tiles 0 .. NT - 1 as "+f" operands, and one wgmma statement: N, the accumulators' register
// list, the operand numbers of a, b, the scale-d flag and the two transposes, the accumulator operands.
#define MK_WGMMA_T(d, j) "+f"(d[j][0]), "+f"(d[j][1]), "+f"(d[j][2]), "+f"(d[j][3])
#define MK_WGMMA_T4(d, j) MK_WGMMA_T(d, j), MK_WGMMA_T(d, j + 1), MK_WGMMA_T(d, j + 2), MK_WGMMA_T(d, j + 3)
#define MK_WGMMA_OUT4(d) MK_WGMMA_T4(d, 0)
#define MK_WGMMA_OUT8(d) MK_WGMMA_OUT4(d), MK_WGMMA_T4(d, 4)
#define MK_WGMMA_OUT12(d) MK_WGMMA_OUT8(d), MK_WGMMA_T4(d, 8)
#define MK_WGMMA_OUT16(d) MK_WGMMA_OUT12(d), MK_WGMMA_T4(d, 12)
#define MK_WGMMA_OUT20(d) MK_WGMMA_OUT16(d), MK_WGMMA_T4(d, 16)
#define MK_WGMMA_SS(N, REGS, IA, IB, IP, ITA, ITB, OUTS)                                                           \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" #IP ", 0;\n"                                                   \
               "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32.bf16.bf16 " REGS ", %" #IA ", %" #IB                   \
               ", p, 1, 1, %" #ITA ", %" #ITB ";\n}\n"                                                             \
               : OUTS                                                                                               \
               : "l"(a), "l"(b), "n"(kAccumulate ? 1 : 0), "n"(kTransA ? 1 : 0), "n"(kTransB ? 1 : 0))

// d (64 x N over the warpgroup, N = 8 NT: 32, 64, 96, 128 or 160; past 64 an MN-major B whose descriptor has the
// LBO of its 64-column atoms) (+)= A B, A (64 x 16) and B (16 x N) from shared memory through
// descriptors a / b: K-major, or MN-major with kTransA / kTransB. kAccumulate false: d = A B.
template <bool kAccumulate, bool kTransA, bool kTransB, int NT>
__device__ __forceinline__ void wgmma_ss_bf16(float (&d)[NT][4], WgDesc a, WgDesc b) {
  static_assert(NT == 4 || NT == 8 || NT == 12 || NT == 16 || NT == 20, "N 32, 64, 96, 128 or 160");
#if defined(MK_WGMMA_DEVICE)
  if constexpr (NT == 4) {
    MK_WGMMA_SS(32, "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}",
                16, 17, 18, 19, 20, MK_WGMMA_OUT4(d));
  } else if constexpr (NT == 8) {
    MK_WGMMA_SS(64, "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}",
                32, 33, 34, 35, 36, MK_WGMMA_OUT8(d));
  } else if constexpr (NT == 12) {
    MK_WGMMA_SS(96, "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
                "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47}",
                48, 49, 50, 51, 52, MK_WGMMA_OUT12(d));
  } else if constexpr (NT == 16) {
    MK_WGMMA_SS(128, "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
                "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
                "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}",
                64, 65, 66, 67, 68, MK_WGMMA_OUT16(d));
  } else if constexpr (NT == 20) {
    MK_WGMMA_SS(160, "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
                "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
                "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
                "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79}",
                80, 81, 82, 83, 84, MK_WGMMA_OUT20(d));
  }
#elif !defined(__CUDA_ARCH__) && defined(MK_CUDA_EMU)
  wgmma_emu::run<NT>(d, a, kTransA, b, kTransB, kAccumulate);
#else
  (void)d, (void)a, (void)b;
  __trap();
#endif
}
// d (64 x 64 over the warpgroup) (+)= A B with A (64 x 16) from registers, each warp's 16 rows as an mma.sync
// m16n8k16 A fragment (a[0]: row g, k 2 q, 2 q + 1; a[1]: row g + 8; a[2], a[3]: k + 8), and B (16 x 64) from shared
// memory through descriptor b (K-major, or MN-major with kTransB). A's registers must be written before a
// wgmma_fence.
template <bool kAccumulate, bool kTransB>
__device__ __forceinline__ void wgmma_rs_bf16_n64(float (&d)[8][4], const uint32_t (&a)[4], WgDesc b) {
#if defined(MK_WGMMA_DEVICE)
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
               "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
               "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
               "{%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
               : MK_WGMMA_OUT8(d)
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "n"(kAccumulate ? 1 : 0), "n"(kTransB ? 1 : 0));
#elif !defined(__CUDA_ARCH__) && defined(MK_CUDA_EMU)
  ++wgmma_emu::calls;
  const int lane = int(threadIdx.x & 31), g = lane >> 2, q = lane & 3;
  if (!kAccumulate)
    for (auto& t : d)
      for (float& v : t) v = 0.f;
  for (int j = 0; j < 8; ++j) {
    const uint32_t bf[2] = {wgmma_emu::pair(b, 8 * j + g, 2 * q, kTransB),
                            wgmma_emu::pair(b, 8 * j + g, 2 * q + 8, kTransB)};
    cuda_emu::mma_m16n8k16_bf16(d[j], a, bf);
  }
#else
  (void)d, (void)a, (void)b;
  __trap();
#endif
}

#undef MK_WGMMA_SS
#undef MK_WGMMA_OUT20
#undef MK_WGMMA_OUT16
#undef MK_WGMMA_OUT12
#undef MK_WGMMA_OUT8
#undef MK_WGMMA_OUT4
#undef MK_WGMMA_T4
#undef MK_WGMMA_T

}  // namespace mamba_kernels
