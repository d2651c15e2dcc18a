// Tensor-core and fragment primitives of the CUDA SSD kernels (no torch; sm_80+ mma.sync, with the CPU emulation's
// counterparts under MK_CUDA_EMU): element conversions (to_f / from_f), pack_bf16, the mma.sync wrappers (bf16
// m16n8k16; 3xTF32 for fp32 tiles), fragment loaders (Frag), ldmatrix (ldsm_x4, ldsm_x4_trans, b_rows2),
// mma_row_tiles, a_t_weighted and zero16. Used by the chunk-tile kernels (ssd_common.cuh and what includes it) and the
// head-walk stages (ssd_walk.cuh). Fragment conventions: see the header comment of ssd_fwd_kernel.cuh.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/cp_async.h"

namespace mamba_kernels {
namespace ssd_cuda {

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }

// ------------------------------------------------------------------------------------------ mma primitives
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
#if defined(__CUDA_ARCH__)
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
#elif defined(MK_CUDA_EMU)
  return uint32_t(__float2bfloat16_rn(lo).x) | (uint32_t(__float2bfloat16_rn(hi).x) << 16);
#else
  return 0;  // host pass of nvcc: never called
#endif
}

__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__)
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(MK_CUDA_EMU)
  cuda_emu::mma_m16n8k16_bf16(d, a, b);
#endif
}

__device__ __forceinline__ float tf32_rna(float v) {
#if defined(__CUDA_ARCH__)
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(v));
  return __uint_as_float(r);
#else  // CPU emulation: round to nearest, ties away (cvt.rna)
  uint32_t u;
  __builtin_memcpy(&u, &v, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
#endif
}

__device__ __forceinline__ void mma_tf32(float (&d)[4], float a0, float a1, float a2, float a3, float b0, float b1) {
#if defined(__CUDA_ARCH__)
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(__float_as_uint(a0)), "r"(__float_as_uint(a1)), "r"(__float_as_uint(a2)), "r"(__float_as_uint(a3)),
        "r"(__float_as_uint(b0)), "r"(__float_as_uint(b1)));
#elif defined(MK_CUDA_EMU)
  const float a[4] = {a0, a1, a2, a3}, b[2] = {b0, b1};
  cuda_emu::mma_m16n8k8_tf32(d, a, b);
#endif
}

// Fragments of one k16 step. A (16 x 16, row major): lane (g = lane / 4, q = lane % 4) holds rows g, g + 8 at
// k = 2q, 2q+1, 2q+8, 2q+9, in the register order of mma.m16n8k16: (g,2q) (g,2q+1) (g+8,2q) (g+8,2q+1)
// (g,2q+8) (g,2q+9) (g+8,2q+8) (g+8,2q+9). B (16 x 8): column g at k = 2q, 2q+1, 2q+8, 2q+9.
template <typename E> struct Frag;

template <> struct Frag<__nv_bfloat16> {  // bf16 operands
  struct A { uint32_t r[4]; };
  struct B { uint32_t r[2]; };
  static __device__ __forceinline__ A a_from(const float (&v)[8]) {
    return A{{pack_bf16(v[0], v[1]), pack_bf16(v[2], v[3]), pack_bf16(v[4], v[5]), pack_bf16(v[6], v[7])}};
  }
  static __device__ __forceinline__ B b_from(const float (&v)[4]) {
    return B{{pack_bf16(v[0], v[1]), pack_bf16(v[2], v[3])}};
  }
  // A[r][k] = base[r * ld + k] (k pairs contiguous)
  static __device__ __forceinline__ A a_rows(const __nv_bfloat16* base, int ld, int g, int q) {
    const __nv_bfloat16* p0 = base + g * ld + 2 * q;
    const __nv_bfloat16* p1 = p0 + 8 * ld;
    return A{{*reinterpret_cast<const uint32_t*>(p0), *reinterpret_cast<const uint32_t*>(p1),
              *reinterpret_cast<const uint32_t*>(p0 + 8), *reinterpret_cast<const uint32_t*>(p1 + 8)}};
  }
  // B[k][c] = base[c * ld + k] (k pairs contiguous)
  static __device__ __forceinline__ B b_cols(const __nv_bfloat16* base, int ld, int g, int q) {
    const __nv_bfloat16* p0 = base + g * ld + 2 * q;
    return B{{*reinterpret_cast<const uint32_t*>(p0), *reinterpret_cast<const uint32_t*>(p0 + 8)}};
  }
  static __device__ __forceinline__ void mma(float (&d)[4], const A& a, const B& b) { mma_bf16(d, a.r, b.r); }
};

template <> struct Frag<float> {  // fp32 operands, 3xTF32
  struct A { float r[8]; };
  struct B { float r[4]; };
  static __device__ __forceinline__ A a_from(const float (&v)[8]) {
    A a;
#pragma unroll
    for (int i = 0; i < 8; ++i) a.r[i] = v[i];
    return a;
  }
  static __device__ __forceinline__ B b_from(const float (&v)[4]) { return B{{v[0], v[1], v[2], v[3]}}; }
  static __device__ __forceinline__ A a_rows(const float* base, int ld, int g, int q) {
    const float* p0 = base + g * ld + 2 * q;
    const float* p1 = p0 + 8 * ld;
    return A{{p0[0], p0[1], p1[0], p1[1], p0[8], p0[9], p1[8], p1[9]}};
  }
  static __device__ __forceinline__ B b_cols(const float* base, int ld, int g, int q) {
    const float* p0 = base + g * ld + 2 * q;
    return B{{p0[0], p0[1], p0[8], p0[9]}};
  }
  static __device__ __forceinline__ void mma(float (&d)[4], const A& a, const B& b) {
#pragma unroll
    for (int odd = 0; odd < 2; ++odd) {  // k8 mma over k = 2q + odd, 2q + 8 + odd
      float ab[4], as[4], bb[2], bs[2];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        ab[i] = tf32_rna(a.r[2 * i + odd]);
        as[i] = tf32_rna(a.r[2 * i + odd] - ab[i]);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        bb[i] = tf32_rna(b.r[2 * i + odd]);
        bs[i] = tf32_rna(b.r[2 * i + odd] - bb[i]);
      }
      // A regs of m16n8k8: (g, q) (g+8, q) (g, q+4) (g+8, q+4) <- our (g,2q) (g+8,2q) (g,2q+8) (g+8,2q+8) (+odd)
      mma_tf32(d, as[0], as[1], as[2], as[3], bb[0], bb[1]);
      mma_tf32(d, ab[0], ab[1], ab[2], ab[3], bs[0], bs[1]);
      mma_tf32(d, ab[0], ab[1], ab[2], ab[3], bb[0], bb[1]);
    }
  }
};

// B[k][c] = base[k * ld + c] (k strided): scalar loads, k = 2q, 2q+1, 2q+8, 2q+9 at column g.
template <typename E>
__device__ __forceinline__ typename Frag<E>::B b_rows(const E* base, int ld, int g, int q) {
  const E* p0 = base + (2 * q) * ld + g;
  const float v[4] = {to_f(p0[0]), to_f(p0[ld]), to_f(p0[8 * ld]), to_f(p0[9 * ld])};
  return Frag<E>::b_from(v);
}

// ldmatrix.x4.trans of four 8 x 8 bf16 matrices: lane 8m + r gives the address of row r of matrix m (16 bytes,
// 16-byte aligned); lane (g, q) receives r[m] = (row 2q, col g) | (row 2q + 1, col g) << 16 of matrix m. The CPU
// emulation gathers the lanes' row addresses through a per-warp table (two warp barriers), so a wrong lane address
// shows up as a wrong fragment.
#if !defined(__CUDA_ARCH__) && defined(MK_CUDA_EMU)
inline const void* emu_ldsm_rows[32][32];
// Publishes this lane's row address and returns its warp's 32 (in lane order) after a warp barrier; the caller ends
// with another __syncwarp before the table is reused.
inline const void* const* emu_warp_rows(const void* row_addr) {
  const unsigned lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  emu_ldsm_rows[w][lane] = row_addr;
  __syncwarp();
  return emu_ldsm_rows[w];
}
#endif
template <bool kTrans>
__device__ __forceinline__ void ldsm_x4_any(uint32_t (&r)[4], const void* row_addr) {
#if defined(__CUDA_ARCH__)
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row_addr));
  if constexpr (kTrans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
#elif defined(MK_CUDA_EMU)
  const unsigned lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const void* const* warp_rows = emu_warp_rows(row_addr);
  for (unsigned m = 0; m < 4; ++m) {
    const void* const* rows = warp_rows + 8 * m;
    // trans: (row 2q, col g) | (row 2q + 1, col g) << 16; else (row g, col 2q) | (row g, col 2q + 1) << 16
    const uint16_t* r0 = static_cast<const uint16_t*>(rows[kTrans ? 2 * q : g]);
    const uint16_t* r1 = kTrans ? static_cast<const uint16_t*>(rows[2 * q + 1]) : r0 + 1;
    const unsigned col = kTrans ? g : 2 * q;
    r[m] = uint32_t(r0[col]) | (uint32_t(r1[col]) << 16);
  }
  __syncwarp();
#endif
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const void* row_addr) {
  ldsm_x4_any<true>(r, row_addr);
}

// stmatrix.x4.trans (sm_90 only) of four 8 x 8 16-bit matrices: lane (g, q) holds r[m] = (row g, col 2q) | (row g,
// col 2q + 1) << 16 of matrix m (an mma accumulator's order); the matrix is stored transposed: memory row i of
// matrix m, at the address lane 8m + i gives (16 bytes, 16-byte aligned), holds its column i. The CPU emulation
// gathers the row addresses as ldsm_x4_any does (emu_warp_rows), so a wrong lane address misplaces elements.
__device__ __forceinline__ void stsm_x4_trans(const uint32_t (&r)[4], void* row_addr) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row_addr));
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(a), "r"(r[0]),
               "r"(r[1]), "r"(r[2]), "r"(r[3])
               : "memory");
#elif defined(__CUDA_ARCH__)
  __trap();
#elif defined(MK_CUDA_EMU)
  const unsigned lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const void* const* warp_rows = emu_warp_rows(row_addr);
  for (unsigned m = 0; m < 4; ++m) {
    const void* const* rows = warp_rows + 8 * m;
    static_cast<uint16_t*>(const_cast<void*>(rows[2 * q]))[g] = uint16_t(r[m] & 0xffffu);
    static_cast<uint16_t*>(const_cast<void*>(rows[2 * q + 1]))[g] = uint16_t(r[m] >> 16);
  }
  __syncwarp();
#endif
}

// ldmatrix.x4 (no transpose): lane 8m + r gives the address of row r of matrix m; lane (g, q) receives r[m] =
// (row g, col 2q) | (row g, col 2q + 1) << 16 of matrix m.
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* row_addr) { ldsm_x4_any<false>(r, row_addr); }

// B fragments of two neighbouring n-tiles, B[k][c] = base[k * ld + c] (k strided), c in 0..15: b0 for c 0..7, b1
// for c 8..15. bf16: one ldmatrix.x4.trans (rows 16 bytes apart in banks: ld * 2 a multiple of 16, base 16-byte
// aligned); fp32: scalar loads.
template <typename E>
__device__ __forceinline__ void b_rows2(typename Frag<E>::B& b0, typename Frag<E>::B& b1, const E* base, int ld, int g,
                                        int q) {
  b0 = b_rows<E>(base, ld, g, q);
  b1 = b_rows<E>(base + 8, ld, g, q);
}
template <>
__device__ __forceinline__ void b_rows2<__nv_bfloat16>(Frag<__nv_bfloat16>::B& b0, Frag<__nv_bfloat16>::B& b1,
                                                       const __nv_bfloat16* base, int ld, int g, int q) {
  const int lane = 4 * g + q, m = lane >> 3;  // matrices: (k 0-7, c 0-7) (k 8-15, c 0-7) (k 0-7, c 8-15) (k 8-15, ..)
  uint32_t r[4];
  ldsm_x4_trans(r, base + ((lane & 7) + 8 * (m & 1)) * ld + 8 * (m >> 1));
  b0.r[0] = r[0];
  b0.r[1] = r[1];
  b1.r[0] = r[2];
  b1.r[1] = r[3];
}

// acc[j] += A B_j over the n8 tiles j < ntiles (in pairs), B_j[k][c] = base[k * ld + 8 j + c]: one k16 step of a
// row of accumulator tiles (NMAX: the accumulator's tile count, a compile-time bound for full unrolling).
template <typename E, int NMAX>
__device__ __forceinline__ void mma_row_tiles(float (&acc)[NMAX][4], const typename Frag<E>::A& fa, const E* base,
                                              int ld, int ntiles, int g, int q) {
#pragma unroll
  for (int j = 0; j < NMAX; j += 2) {
    if (j < ntiles) {
      typename Frag<E>::B b0, b1;
      b_rows2<E>(b0, b1, base + 8 * j, ld, g, q);
      Frag<E>::mma(acc[j], fa, b0);
      Frag<E>::mma(acc[j + 1], fa, b1);
    }
  }
}

// A (16 x 16) of a transposed, per-k weighted tile: A[m][k] = xr[(k - 2q) * ld + m - g] * w(k) for this lane's
// k in (2q, 2q + 1, 2q + 8, 2q + 9) with weights (w0, w1, w8, w9); xr = base + 2q * ld + g.
template <typename E>
__device__ __forceinline__ typename Frag<E>::A a_t_weighted(const E* xr, int ld, float w0, float w1, float w8,
                                                            float w9) {
  const float av[8] = {to_f(xr[0]) * w0,      to_f(xr[ld]) * w1,     to_f(xr[8]) * w0,
                       to_f(xr[ld + 8]) * w1, to_f(xr[8 * ld]) * w8, to_f(xr[9 * ld]) * w9,
                       to_f(xr[8 * ld + 8]) * w8, to_f(xr[9 * ld + 8]) * w9};
  return Frag<E>::a_from(av);
}

// ------------------------------------------------------------------------------------------ cp.async
__device__ __forceinline__ void zero16(void* smem_dst) { *reinterpret_cast<uint4*>(smem_dst) = uint4{0u, 0u, 0u, 0u}; }

}  // namespace ssd_cuda
}  // namespace mamba_kernels
