// Device pieces of the CUDA SSD forward kernels (no torch): the fused kernel (ssd_fwd_kernel.cuh) uses all of them;
// the chunk-parallel pipeline (ssd_chunk_kernel.cuh, 8-warp tile steps in ssd_chunk_tile.cuh) the conversions, mma
// wrappers, Frag, ldmatrix (ldsm_x4, ldsm_x4_trans, b_rows2) and TileType. Semantics and the fragment conventions:
// see the header comment of ssd_fwd_kernel.cuh. What lives here:
//   - element conversions, the mma.sync wrappers (bf16 m16n8k16; 3xTF32 for fp32 tiles), fragment loaders (Frag),
//   - zero16 (cp.async itself: common/cp_async.h),
//   - the shared-memory tile layout of one 64-token tile (x, B, C, h, z, dt', in-tile cumsum),
//   - the three steps of a tile, used by every kernel that walks tiles:
//       load_tile    x / B / C / z of 64 tokens by 16-byte cp.async where rows allow (vec16, set by the launcher),
//                    else scalar loads; dt' and its in-tile cumsum (warps 0-1); ends with __syncthreads
//       tile_output  S = C B^T (causal, decay mask), Y = exp(a_t) C h^T + S x, + D x, ypre, * silu(z), store
//       tile_update  h = exp(a_last) h + (x o w)^T B in the mma accumulators (warp w: channels 16w..16w+15)
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/cp_async.h"
#include "ssd/ssd.h"

namespace mamba_kernels {
namespace ssd_cuda {

constexpr int kTile = 64;     // tokens a tile
constexpr int kBP = 64;       // channels a CTA
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kNT = 16;       // n tiles of 8 held by a warp's state accumulator: n <= 128

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }

// Chunk slot -> its sequence, batch row, first token and length. False for slots past the last chunk (varlen: the
// grid covers a bound on the number of chunks).
template <typename Params>  // SsdFwdCudaParams or SsdBwdCudaParams (the forward and backward chunk kernels)
__device__ __forceinline__ bool chunk_of_slot(const Params& p, int64_t slot, int64_t& row, int64_t& t0, int64_t& clen) {
  const int64_t Q = p.chunk_size;
  if (p.cu_seqlens) {
    if (slot >= p.chunk_offsets[p.nseq]) return false;
    int64_t lo = 0, hi = p.nseq - 1;  // the last sequence s with chunk_offsets[s] <= slot (skips empty ones)
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) >> 1;
      if (p.chunk_offsets[mid] <= slot) lo = mid; else hi = mid - 1;
    }
    row = 0;
    t0 = p.cu_seqlens[lo] + (slot - p.chunk_offsets[lo]) * Q;
    clen = p.cu_seqlens[lo + 1] - t0;
  } else {
    const int64_t nck = (p.seqlen + Q - 1) / Q;
    if (nck == 0 || slot >= p.batch * nck) return false;
    row = slot / nck;
    t0 = (slot % nck) * Q;
    clen = p.seqlen - t0;
  }
  if (clen > Q) clen = Q;
  return clen > 0;
}

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
  const unsigned lane = threadIdx.x & 31, w = threadIdx.x >> 5, g = lane >> 2, q = lane & 3;
  emu_ldsm_rows[w][lane] = row_addr;
  __syncwarp();
  for (unsigned m = 0; m < 4; ++m) {
    const void* const* rows = emu_ldsm_rows[w] + 8 * m;
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

// ------------------------------------------------------------------------------------------ shared memory
// Element type of the shared tiles: bf16 for bf16 inputs, fp32 otherwise.
template <typename in_t> struct TileType { using E = float; };
template <> struct TileType<__nv_bfloat16> { using E = __nv_bfloat16; };

struct SmemLayout {
  int ldx, ldn, nk;  // row lengths (elements) of the x / z tiles and of the B / C / h tiles; k16 steps over n
  int64_t off_b, off_f, off_c, off_h, off_z, bytes;  // byte offsets (all multiples of 16)
};

template <typename E>
__host__ __device__ inline SmemLayout smem_layout(int64_t n) {
  SmemLayout s;
  const int pad = 16 / int(sizeof(E));  // rows 16 bytes apart in banks: conflict-free fragment loads
  s.nk = int((n + 15) / 16);
  s.ldx = kBP + pad;
  s.ldn = 16 * s.nk + pad;
  const int64_t es = int64_t(sizeof(E));
  s.off_b = int64_t(kTile) * s.ldx * es;
  s.off_f = s.off_b + int64_t(kTile) * s.ldn * es;
  s.off_c = s.off_f + 2 * kTile * int64_t(sizeof(float));
  s.off_h = s.off_c + int64_t(kTile) * s.ldn * es;
  s.off_z = s.off_h + int64_t(kBP) * s.ldn * es;
  s.bytes = s.off_z + int64_t(kTile) * s.ldx * es;
  return s;
}

__device__ __forceinline__ float silu_f(float v) { return v / (1.f + expf(-v)); }


// ------------------------------------------------------------------------------------------ cp.async
__device__ __forceinline__ void zero16(void* smem_dst) { *reinterpret_cast<uint4*>(smem_dst) = uint4{0u, 0u, 0u, 0u}; }

template <typename A, typename B> struct SameT { static constexpr bool value = false; };
template <typename A> struct SameT<A, A> { static constexpr bool value = true; };

// ------------------------------------------------------------------------------------------ one CTA's tile context
// Shared tiles of one 64-token tile and the CTA's fixed coordinates. Global bases point at (row, token 0,
// head / group, ch0); a tile's rows are t0 + t (t0: token index along the batch row / packed axis).
template <typename in_t>
struct TileCtx {
  using E = typename TileType<in_t>::E;
  E *xs, *bs, *cs, *hs, *zs;
  float *dts, *acum;  // dt' and the inclusive cumsum of dt' A within each half (32 tokens) of the tile
  int ldx, ldn, nk, n, nch, ch0;
  int64_t head;
  float A, bias;
  const in_t *xg, *bg, *cg, *zg;
};

// The per-(row, head, p block) fields every tile context has (the fused kernel's TileCtx, the chunk kernels' CCtx):
// n, channel block, head scalars and the x / B / C / z global row pointers.
template <typename in_t, typename Ctx>
__device__ __forceinline__ void set_head_fields(Ctx& c, const SsdFwdCudaParams& p, int64_t row, int64_t head, int ch0) {
  c.n = int(p.dstate);
  c.ch0 = ch0;
  c.nch = int(p.headdim - ch0 < kBP ? p.headdim - ch0 : kBP);
  c.head = head;
  c.A = p.A[head];
  c.bias = p.dt_bias ? p.dt_bias[head] : 0.f;
  const int64_t grp = head / (p.nheads / p.ngroups);
  c.xg = static_cast<const in_t*>(p.x) + row * p.x_batch_stride + head * p.x_head_stride + ch0;
  c.bg = static_cast<const in_t*>(p.B) + row * p.B_batch_stride + grp * p.B_group_stride;
  c.cg = static_cast<const in_t*>(p.C) + row * p.C_batch_stride + grp * p.C_group_stride;
  c.zg = p.z ? static_cast<const in_t*>(p.z) + row * p.z_batch_stride + head * p.z_head_stride + ch0 : nullptr;
}

template <typename in_t>
__device__ __forceinline__ TileCtx<in_t> make_ctx(const SsdFwdCudaParams& p, void* smem_v, int64_t row, int64_t head,
                                                  int ch0) {
  using E = typename TileType<in_t>::E;
  char* smem = static_cast<char*>(smem_v);
  const SmemLayout L = smem_layout<E>(p.dstate);
  TileCtx<in_t> c;
  c.xs = reinterpret_cast<E*>(smem);
  c.bs = reinterpret_cast<E*>(smem + L.off_b);
  c.cs = reinterpret_cast<E*>(smem + L.off_c);
  c.hs = reinterpret_cast<E*>(smem + L.off_h);
  c.zs = reinterpret_cast<E*>(smem + L.off_z);
  c.dts = reinterpret_cast<float*>(smem + L.off_f);
  c.acum = c.dts + kTile;
  c.ldx = L.ldx;
  c.ldn = L.ldn;
  c.nk = L.nk;
  set_head_fields<in_t>(c, p, row, head, ch0);
  return c;
}

// In-tile cumsum at token t (two 32-token halves).
template <typename in_t>
__device__ __forceinline__ float cum_at(const TileCtx<in_t>& c, int t) {
  return c.acum[t] + (t >= 32 ? c.acum[31] : 0.f);
}

// ------------------------------------------------------------------------------------------ load_tile
// x (and z) 64 tokens x 64 channels, B (and C) 64 tokens x 16 nk, zero past the tile length tl and past p / n;
// dt' and its cumsum (zero dt' past tl: decay 1, no input). Ends with __syncthreads: the tiles are ready.
template <typename in_t>
__device__ __forceinline__ void load_tile(const SsdFwdCudaParams& p, const TileCtx<in_t>& c, int64_t row, int64_t t0,
                                          int tl, bool need_c, bool need_z) {
  using E = typename TileType<in_t>::E;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int nfull = 16 * c.nk;
  bool done = false;
  if constexpr (SameT<in_t, E>::value) {
    if (p.vec16) {  // 16-byte rows: every global row start and p / n are multiples of 16 bytes (launcher)
      constexpr int VE = 16 / int(sizeof(E));
      constexpr int xc = kBP / VE;
      for (int i = tid; i < kTile * xc; i += kThreads) {
        const int t = i / xc, cc = (i % xc) * VE;
        const bool ok = t < tl && cc < c.nch;
        E* dx = c.xs + t * c.ldx + cc;
        if (ok) cp_async16(dx, c.xg + (t0 + t) * p.x_l_stride + cc); else zero16(dx);
        if (need_z) {
          E* dz = c.zs + t * c.ldx + cc;
          if (ok) cp_async16(dz, c.zg + (t0 + t) * p.z_l_stride + cc); else zero16(dz);
        }
      }
      const int bc = nfull / VE;
      for (int i = tid; i < kTile * bc; i += kThreads) {
        const int t = i / bc, cc = (i % bc) * VE;
        const bool ok = t < tl && cc < c.n;
        E* db = c.bs + t * c.ldn + cc;
        if (ok) cp_async16(db, c.bg + (t0 + t) * p.B_l_stride + cc); else zero16(db);
        if (need_c) {
          E* dc = c.cs + t * c.ldn + cc;
          if (ok) cp_async16(dc, c.cg + (t0 + t) * p.C_l_stride + cc); else zero16(dc);
        }
      }
      done = true;
    }
  }
  if (!done) {  // scalar loads (fp16 inputs into fp32 tiles, unaligned rows)
    for (int i = tid; i < kTile * kBP; i += kThreads) {
      const int t = i / kBP, cc = i % kBP;
      const bool ok = t < tl && cc < c.nch;
      c.xs[t * c.ldx + cc] = from_f<E>(ok ? to_f(c.xg[(t0 + t) * p.x_l_stride + cc]) : 0.f);
      if (need_z) c.zs[t * c.ldx + cc] = from_f<E>(ok ? to_f(c.zg[(t0 + t) * p.z_l_stride + cc]) : 0.f);
    }
    for (int i = tid; i < kTile * nfull; i += kThreads) {
      const int t = i / nfull, cc = i % nfull;
      const bool ok = t < tl && cc < c.n;
      c.bs[t * c.ldn + cc] = from_f<E>(ok ? to_f(c.bg[(t0 + t) * p.B_l_stride + cc]) : 0.f);
      if (need_c) c.cs[t * c.ldn + cc] = from_f<E>(ok ? to_f(c.cg[(t0 + t) * p.C_l_stride + cc]) : 0.f);
    }
  }
  // dt' and its cumsum (warps 0 and 1: tokens 32w + lane), while the copies fly
  if (warp < 2) {
    const int t = 32 * warp + lane;
    float d = 0.f;
    if (t < tl) {
      const int64_t o = row * p.dt_batch_stride + (t0 + t) * p.dt_l_stride + c.head * p.dt_head_stride;
      d = (p.dt_f32 ? static_cast<const float*>(p.dt)[o] : to_f(static_cast<const in_t*>(p.dt)[o])) + c.bias;
      if (p.dt_softplus) d = d <= 20.f ? log1pf(expf(d)) : d;
      if (p.has_dt_limit) d = fminf(fmaxf(d, p.dt_min), p.dt_max);
    }
    float a = d * c.A;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const float v = __shfl_up_sync(0xffffffffu, a, o);
      if (lane >= o) a += v;
    }
    c.dts[t] = d;
    c.acum[t] = a;
  }
  cp_async_wait_all();
  __syncthreads();
}

// ------------------------------------------------------------------------------------------ state <-> tiles
// The state accumulator: warp w's channels 16w + g (regs 0, 1) and 16w + g + 8 (regs 2, 3), columns 8j + 2q (+1).
// src: fp32 (rows of n floats from channel ch0 of the head; nullable: zero).
__device__ __forceinline__ void state_load(float (&hacc)[kNT][4], const float* src, int nch, int n) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int r0 = 16 * warp + g, r1 = r0 + 8;
#pragma unroll
  for (int j = 0; j < kNT; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = e < 2 ? r0 : r1, cc = 8 * j + 2 * q + (e & 1);
      hacc[j][e] = (src && r < nch && cc < n) ? src[int64_t(r) * n + cc] : 0.f;
    }
  }
}
__device__ __forceinline__ void state_store(const float (&hacc)[kNT][4], float* dst, int nch, int n) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int r0 = 16 * warp + g, r1 = r0 + 8;
#pragma unroll
  for (int j = 0; j < kNT; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = e < 2 ? r0 : r1, cc = 8 * j + 2 * q + (e & 1);
      if (r < nch && cc < n) dst[int64_t(r) * n + cc] = hacc[j][e];
    }
  }
}
// The operand copy of the state (rows 0..63, columns 0..16 nk - 1) in shared memory; sin: also to fp32 global rows
// (nullable). The caller separates it from the readers by a __syncthreads (load_tile's).
template <typename in_t>
__device__ __forceinline__ void state_to_smem(const float (&hacc)[kNT][4], const TileCtx<in_t>& c, float* sin) {
  using E = typename TileType<in_t>::E;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int r0 = 16 * warp + g, r1 = r0 + 8;
#pragma unroll
  for (int j = 0; j < kNT; ++j) {
    if (j < 2 * c.nk) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e < 2 ? r0 : r1, cc = 8 * j + 2 * q + (e & 1);
        c.hs[r * c.ldn + cc] = from_f<E>(hacc[j][e]);
        if (sin && r < c.nch && cc < c.n) sin[int64_t(r) * c.n + cc] = hacc[j][e];
      }
    }
  }
}

// ------------------------------------------------------------------------------------------ tile_output
// y of the tile's rows from the loaded tiles and the entering state in c.hs; + D x, ypre, gate, store.
template <typename in_t>
__device__ __forceinline__ void tile_output(const SsdFwdCudaParams& p, const TileCtx<in_t>& c, int64_t row,
                                            int64_t t0, int tl) {
  using E = typename TileType<in_t>::E;
  using F = Frag<E>;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, q = lane & 3;
  const int r0 = 16 * warp + g, r1 = r0 + 8;
  const int nk = c.nk, ldn = c.ldn, ldx = c.ldx;
  const float a_r0 = cum_at(c, r0), a_r1 = cum_at(c, r1);

  // S = C B^T on the causal column tiles (8j < 16 (warp + 1)), then the decay mask
  float s[8][4];
#pragma unroll
  for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
  for (int kk = 0; kk < nk; ++kk) {
    const typename F::A fa = F::a_rows(c.cs + 16 * warp * ldn + 16 * kk, ldn, g, q);
#pragma unroll
    for (int j = 0; j < 8; ++j)
      if (j < 2 * (warp + 1)) F::mma(s[j], fa, F::b_cols(c.bs + 8 * j * ldn + 16 * kk, ldn, g, q));
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    if (j < 2 * (warp + 1)) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int t = e < 2 ? r0 : r1, sc = 8 * j + 2 * q + (e & 1);
        s[j][e] = sc <= t ? s[j][e] * expf((e < 2 ? a_r0 : a_r1) - cum_at(c, sc)) * c.dts[sc] : 0.f;
      }
    }
  }

  // Y = exp(a_t) C h^T + S x
  float y[8][4];
#pragma unroll
  for (int j = 0; j < 8; ++j) y[j][0] = y[j][1] = y[j][2] = y[j][3] = 0.f;
  for (int kk = 0; kk < nk; ++kk) {
    const typename F::A fa = F::a_rows(c.cs + 16 * warp * ldn + 16 * kk, ldn, g, q);
#pragma unroll
    for (int j = 0; j < 8; ++j) F::mma(y[j], fa, F::b_cols(c.hs + 8 * j * ldn + 16 * kk, ldn, g, q));
  }
  const float e0 = expf(a_r0), e1 = expf(a_r1);
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    y[j][0] *= e0; y[j][1] *= e0;
    y[j][2] *= e1; y[j][3] *= e1;
  }
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    if (kk <= warp) {
      const float av[8] = {s[2 * kk][0], s[2 * kk][1], s[2 * kk][2], s[2 * kk][3],
                           s[2 * kk + 1][0], s[2 * kk + 1][1], s[2 * kk + 1][2], s[2 * kk + 1][3]};
      const typename F::A fa = F::a_from(av);
      mma_row_tiles<E>(y, fa, c.xs + 16 * kk * ldx, ldx, 8, g, q);
    }
  }
  // epilogue: + D x, ypre, gate, store
#pragma unroll
  for (int j = 0; j < 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int t = e < 2 ? r0 : r1, cc = 8 * j + 2 * q + (e & 1);
      if (t < tl && cc < c.nch) {
        float v = y[j][e];
        if (p.D) v += to_f(c.xs[t * ldx + cc]) * p.D[p.D_per_channel ? c.head * p.headdim + c.ch0 + cc : c.head];
        const int64_t tok = t0 + t;
        const int64_t oo = row * p.out_batch_stride + tok * p.out_l_stride + c.head * p.out_head_stride + c.ch0 + cc;
        if (p.z) {
          if (p.ypre) static_cast<in_t*>(p.ypre)[oo] = from_f<in_t>(v);
          v *= silu_f(to_f(c.zs[t * ldx + cc]));
        }
        static_cast<in_t*>(p.out)[oo] = from_f<in_t>(v);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------ tile_update
// h = exp(a_last) h + (x o w)^T B over the tile's k16 steps of tokens, w_s = exp(a_last - a_s) dt'_s.
// Returns a_last (the tile's total dt' A).
template <typename in_t>
__device__ __forceinline__ float tile_update(float (&hacc)[kNT][4], const TileCtx<in_t>& c, int tl) {
  using E = typename TileType<in_t>::E;
  using F = Frag<E>;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int ldx = c.ldx, ldn = c.ldn;
  const float a_last = cum_at(c, kTile - 1);
  const float dl = expf(a_last);
#pragma unroll
  for (int j = 0; j < kNT; ++j) {
    hacc[j][0] *= dl; hacc[j][1] *= dl; hacc[j][2] *= dl; hacc[j][3] *= dl;
  }
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    if (16 * kk < tl) {
      const int s0 = 16 * kk + 2 * q;
      const float w0 = expf(a_last - cum_at(c, s0)) * c.dts[s0], w1 = expf(a_last - cum_at(c, s0 + 1)) * c.dts[s0 + 1];
      const float w8 = expf(a_last - cum_at(c, s0 + 8)) * c.dts[s0 + 8];
      const float w9 = expf(a_last - cum_at(c, s0 + 9)) * c.dts[s0 + 9];
      const typename F::A fa =  // A[ch][s] = x[s][ch] w_s
          a_t_weighted<E>(c.xs + s0 * ldx + 16 * warp + g, ldx, w0, w1, w8, w9);
      mma_row_tiles<E>(hacc, fa, c.bs + 16 * kk * ldn, ldn, 2 * c.nk, g, q);
    }
  }
  return a_last;
}

}  // namespace ssd_cuda
}  // namespace mamba_kernels
