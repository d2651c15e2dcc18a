// CUDA forward of the chunked SSD (Mamba-2) scan: one fused kernel, tensor cores (mma.sync), no torch.
//
// Semantics: python_ref/ssd.py::ssd_chunked_ref (params: csrc/ssd/ssd.h, SsdFwdCudaParams). Per sequence and head,
// with dt' = clamp(softplus(dt + dt_bias)) and a_t the cumulative sum of dt' A from the start of the tile:
//   y_t   = exp(a_t) C_t h_in^T + sum_{s<=t} (C_t . B_s) exp(a_t - a_s) dt'_s x_s + D x_t,   out = y * silu(z)
//   h_out = exp(a_last) h_in + sum_s exp(a_last - a_s) dt'_s x_s^T B_s
//
// Structure. One CTA (4 warps) per (p block of 64 channels, head, sequence) walks its sequence in tiles of 64
// tokens, carrying the state h (64 channels x n, fp32) in the accumulator registers of the state-update mma (warp
// w owns channels 16w..16w+15: 64 floats a lane at n = 128). Per tile:
//   load   dt -> dt' and the tile's inclusive cumsum a (warps 0-1, shuffle scan); x (64 x 64), B, C (64 x n) to
//          shared memory (zero past the sequence end: dt' = 0 there, i.e. decay 1 and no input); h (rounded to
//          the operand type) to shared memory; h to states_in at every chunk start.
//   S      = C B^T (warp w: rows 16w.., causal column tiles only), masked and scaled in registers by
//          exp(a_t - a_s) dt'_s (a is non-increasing: every factor <= 1, no overflow).
//   Y      = exp(a_t) (C h^T) + S x   (S stays in registers: the accumulator layout of m16n8 is the A-operand
//          layout of m16n8k16, as in flash-attention 2); + D x, ypre, * silu(z), store.
//   h      = exp(a_last) h + (x o w)^T B,  w_s = exp(a_last - a_s) dt'_s.
// Two __syncthreads a tile (after the loads; before the next tile's loads overwrite them).
//
// Why a 64-token tile whatever chunk_size is: the output does not depend on the chunk length (only the
// prefix-caching states do, written every chunk_size / 64 tiles), and at 64 the quadratic part costs the least
// (C B^T is recomputed per head and p block: with g = 1 every head pays it) while the state part (2 p n FLOPs a
// token for C h^T and as much for the update) does not depend on the tile. The one CTA per (sequence, head, p
// block) has no chunk-state round trip through HBM (x, B, C, dt, z read once, out written once); its cost is a
// serial walk over the sequence, and few CTAs: b4 h80 p64 gives 320 CTAs (2 an SM by registers: 1.2 waves on 132
// SMs), b2 h32 p128 only 128 (one an SM, 4 warps). If the H200 shows it latency-bound, split each sequence into
// segments walked by separate CTAs (segment states combined by a short second pass, the exp(a_t) C h^T correction
// applied before the gate) or overlap tiles inside the CTA (warp-specialised C B^T / S x of tile i+1 while tile i
// updates the state). Timings: bench/bench_ssd.py (bench_ssd, bench_ssd_cuda_fwd_kernel).
//
// Operand types. bf16 inputs: bf16 tiles, mma m16n8k16 bf16 with fp32 accumulation (S, x o w and the state are
// rounded to bf16 as operands, as in the Triton kernels). fp32 and fp16 inputs: fp32 tiles and 3xTF32 (each
// operand split into a tf32 big and small part, three m16n8k8 products: fp32-level accuracy; fp16 is not used as
// an operand type because S and the state can exceed its range). A k16 step of a fragment holds k = 2q, 2q+1,
// 2q+8, 2q+9 (q = lane % 4); the tf32 path runs it as two k8 mmas over the even and the odd k of the step, so
// every path shares the fragment loaders.
//
// Known gaps (first version, correctness before speed): fragments are read from shared memory with 32-bit
// (bf16 pairs) or scalar loads, not ldmatrix; global loads are scalar and synchronous (no cp.async double
// buffering); one CTA serialises its tiles (no overlap of a tile's state-independent C B^T with the previous
// tile's update except across the CTAs of an SM).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

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

// ------------------------------------------------------------------------------------------ shared memory
// Element type of the shared tiles: bf16 for bf16 inputs, fp32 otherwise.
template <typename in_t> struct TileType { using E = float; };
template <> struct TileType<__nv_bfloat16> { using E = __nv_bfloat16; };

struct SmemLayout {
  int ldx, ldn, nk;  // row lengths (elements) of the x tile and of the B / C / h tiles; k16 steps over n
  int64_t off_b, off_c, off_h, off_f, bytes;  // byte offsets
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
  s.off_c = s.off_b + int64_t(kTile) * s.ldn * es;
  s.off_h = s.off_c + int64_t(kTile) * s.ldn * es;
  s.off_f = s.off_h + int64_t(kBP) * s.ldn * es;
  s.bytes = s.off_f + 2 * kTile * int64_t(sizeof(float));
  return s;
}

__device__ __forceinline__ float silu_f(float v) { return v / (1.f + expf(-v)); }

// ------------------------------------------------------------------------------------------ the kernel
template <typename in_t>
__global__ void __launch_bounds__(kThreads) ssd_fwd_kernel(const SsdFwdCudaParams p) {
  using E = typename TileType<in_t>::E;
  using F = Frag<E>;
  extern __shared__ float4 ssd_smem[];
  char* smem = reinterpret_cast<char*>(ssd_smem);
  const SmemLayout L = smem_layout<E>(p.dstate);
  E* xs = reinterpret_cast<E*>(smem);
  E* bs = reinterpret_cast<E*>(smem + L.off_b);
  E* cs = reinterpret_cast<E*>(smem + L.off_c);
  E* hs = reinterpret_cast<E*>(smem + L.off_h);
  float* dts = reinterpret_cast<float*>(smem + L.off_f);
  float* acum = dts + kTile;  // inclusive cumsum of dt' A within each half (32 tokens) of the tile

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, q = lane & 3;
  const int64_t head = blockIdx.y, seq = blockIdx.z;
  const int ch0 = int(blockIdx.x) * kBP;
  const int nch = int(p.headdim - ch0 < kBP ? p.headdim - ch0 : kBP);
  const int n = int(p.dstate), nk = L.nk, ldn = L.ldn, ldx = L.ldx, nfull = 16 * nk;
  const int64_t grp = head / (p.nheads / p.ngroups);
  const int64_t Q = p.chunk_size, tiles_per_chunk = Q / kTile;
  int64_t row, start, len, slot0;
  if (p.cu_seqlens) {
    row = 0;
    start = p.cu_seqlens[seq];
    len = p.cu_seqlens[seq + 1] - start;
    slot0 = p.chunk_offsets[seq];
  } else {
    row = seq;
    start = 0;
    len = p.seqlen;
    slot0 = seq * ((p.seqlen + Q - 1) / Q);
  }
  const float A = p.A[head];
  const float bias = p.dt_bias ? p.dt_bias[head] : 0.f;
  const in_t* xg = static_cast<const in_t*>(p.x) + row * p.x_batch_stride + head * p.x_head_stride + ch0;
  const in_t* bg = static_cast<const in_t*>(p.B) + row * p.B_batch_stride + grp * p.B_group_stride;
  const in_t* cg = static_cast<const in_t*>(p.C) + row * p.C_batch_stride + grp * p.C_group_stride;
  const int64_t pn = p.headdim * int64_t(n);
  const int64_t state_off = head * pn + int64_t(ch0) * n;  // of (slot, head, ch0, 0) minus slot * h p n

  // The state: warp w's channels 16w + g (regs 0, 1) and 16w + g + 8 (regs 2, 3), columns 8j + 2q (+1).
  float hacc[kNT][4];
  const int r0 = 16 * warp + g, r1 = r0 + 8;
#pragma unroll
  for (int j = 0; j < kNT; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = e < 2 ? r0 : r1, c = 8 * j + 2 * q + (e & 1);
      hacc[j][e] = (p.initial_states && r < nch && c < n)
                       ? p.initial_states[seq * p.nheads * pn + state_off + int64_t(r) * n + c] : 0.f;
    }
  }

  const int64_t ntiles = (len + kTile - 1) / kTile;
  for (int64_t it = 0; it < ntiles; ++it) {
    const int64_t t0 = start + it * kTile;  // first token (row of the packed / batch length axis)
    const int tl = int(len - it * kTile < kTile ? len - it * kTile : kTile);
    // ---- the state entering the tile: operand copy in shared memory, fp32 copy to states_in at chunk starts
    const bool chunk_start = p.states_in && (it % tiles_per_chunk) == 0;
    float* sin = chunk_start ? p.states_in + (slot0 + it / tiles_per_chunk) * p.nheads * pn + state_off : nullptr;
#pragma unroll
    for (int j = 0; j < kNT; ++j) {
      if (j < 2 * nk) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int r = e < 2 ? r0 : r1, c = 8 * j + 2 * q + (e & 1);
          hs[r * ldn + c] = from_f<E>(hacc[j][e]);
          if (sin && r < nch && c < n) sin[int64_t(r) * n + c] = hacc[j][e];
        }
      }
    }
    // ---- dt' and its cumsum (warps 0 and 1: tokens 32w + lane)
    if (warp < 2) {
      const int t = 32 * warp + lane;
      float d = 0.f;
      if (t < tl) {
        const int64_t o = row * p.dt_batch_stride + (t0 + t) * p.dt_l_stride + head * p.dt_head_stride;
        d = (p.dt_f32 ? static_cast<const float*>(p.dt)[o] : to_f(static_cast<const in_t*>(p.dt)[o])) + bias;
        if (p.dt_softplus) d = d <= 20.f ? log1pf(expf(d)) : d;
        if (p.has_dt_limit) d = fminf(fmaxf(d, p.dt_min), p.dt_max);
      }
      float a = d * A;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const float v = __shfl_up_sync(0xffffffffu, a, o);
        if (lane >= o) a += v;
      }
      dts[t] = d;
      acum[t] = a;
    }
    // ---- x, B, C tiles (zero past the sequence end and past p / n)
    for (int i = tid; i < kTile * kBP; i += kThreads) {
      const int t = i / kBP, c = i % kBP;
      xs[t * ldx + c] = from_f<E>(t < tl && c < nch ? to_f(xg[(t0 + t) * p.x_l_stride + c]) : 0.f);
    }
    for (int i = tid; i < kTile * nfull; i += kThreads) {
      const int t = i / nfull, c = i % nfull;
      const bool ok = t < tl && c < n;
      bs[t * ldn + c] = from_f<E>(ok ? to_f(bg[(t0 + t) * p.B_l_stride + c]) : 0.f);
      cs[t * ldn + c] = from_f<E>(ok ? to_f(cg[(t0 + t) * p.C_l_stride + c]) : 0.f);
    }
    __syncthreads();
    const float half = acum[31];
    auto cum = [&](int t) { return acum[t] + (t >= 32 ? half : 0.f); };
    const float a_r0 = cum(r0), a_r1 = cum(r1), a_last = cum(kTile - 1);

    // ---- S = C B^T on the causal column tiles (8j < 16 (warp + 1)), then the decay mask
    float s[8][4];
#pragma unroll
    for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
    for (int kk = 0; kk < nk; ++kk) {
      const typename F::A fa = F::a_rows(cs + 16 * warp * ldn + 16 * kk, ldn, g, q);
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (j < 2 * (warp + 1)) F::mma(s[j], fa, F::b_cols(bs + 8 * j * ldn + 16 * kk, ldn, g, q));
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      if (j < 2 * (warp + 1)) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int t = e < 2 ? r0 : r1, sc = 8 * j + 2 * q + (e & 1);
          s[j][e] = sc <= t ? s[j][e] * expf((e < 2 ? a_r0 : a_r1) - cum(sc)) * dts[sc] : 0.f;
        }
      }
    }

    // ---- Y = exp(a_t) C h^T + S x
    float y[8][4];
#pragma unroll
    for (int j = 0; j < 8; ++j) y[j][0] = y[j][1] = y[j][2] = y[j][3] = 0.f;
    for (int kk = 0; kk < nk; ++kk) {
      const typename F::A fa = F::a_rows(cs + 16 * warp * ldn + 16 * kk, ldn, g, q);
#pragma unroll
      for (int j = 0; j < 8; ++j) F::mma(y[j], fa, F::b_cols(hs + 8 * j * ldn + 16 * kk, ldn, g, q));
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
#pragma unroll
        for (int j = 0; j < 8; ++j) F::mma(y[j], fa, b_rows<E>(xs + 16 * kk * ldx + 8 * j, ldx, g, q));
      }
    }
    // ---- epilogue: + D x, ypre, gate, store
#pragma unroll
    for (int j = 0; j < 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int t = e < 2 ? r0 : r1, c = 8 * j + 2 * q + (e & 1);
        if (t < tl && c < nch) {
          float v = y[j][e];
          if (p.D) v += to_f(xs[t * ldx + c]) * p.D[p.D_per_channel ? head * p.headdim + ch0 + c : head];
          const int64_t tok = t0 + t;
          const int64_t oo = row * p.out_batch_stride + tok * p.out_l_stride + head * p.out_head_stride + ch0 + c;
          if (p.z) {
            if (p.ypre) static_cast<in_t*>(p.ypre)[oo] = from_f<in_t>(v);
            v *= silu_f(to_f(static_cast<const in_t*>(p.z)[row * p.z_batch_stride + tok * p.z_l_stride +
                                                             head * p.z_head_stride + ch0 + c]));
          }
          static_cast<in_t*>(p.out)[oo] = from_f<in_t>(v);
        }
      }
    }

    // ---- h = exp(a_last) h + (x o w)^T B over the tile's k16 steps of tokens
    const float dl = expf(a_last);
#pragma unroll
    for (int j = 0; j < kNT; ++j) {
      hacc[j][0] *= dl; hacc[j][1] *= dl; hacc[j][2] *= dl; hacc[j][3] *= dl;
    }
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      if (16 * kk < tl) {
        const int s0 = 16 * kk + 2 * q;
        const float w0 = expf(a_last - cum(s0)) * dts[s0], w1 = expf(a_last - cum(s0 + 1)) * dts[s0 + 1];
        const float w8 = expf(a_last - cum(s0 + 8)) * dts[s0 + 8], w9 = expf(a_last - cum(s0 + 9)) * dts[s0 + 9];
        const E* xr = xs + s0 * ldx + 16 * warp + g;  // A[ch][s] = x[s][ch] w_s
        const float av[8] = {to_f(xr[0]) * w0, to_f(xr[ldx]) * w1, to_f(xr[8]) * w0, to_f(xr[ldx + 8]) * w1,
                             to_f(xr[8 * ldx]) * w8, to_f(xr[9 * ldx]) * w9, to_f(xr[8 * ldx + 8]) * w8,
                             to_f(xr[9 * ldx + 8]) * w9};
        const typename F::A fa = F::a_from(av);
#pragma unroll
        for (int j = 0; j < kNT; ++j)
          if (j < 2 * nk) F::mma(hacc[j], fa, b_rows<E>(bs + 16 * kk * ldn + 8 * j, ldn, g, q));
      }
    }
    __syncthreads();
  }
  if (p.final_states) {
    float* fs = p.final_states + seq * p.nheads * pn + state_off;
#pragma unroll
    for (int j = 0; j < kNT; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e < 2 ? r0 : r1, c = 8 * j + 2 * q + (e & 1);
        if (r < nch && c < n) fs[int64_t(r) * n + c] = hacc[j][e];
      }
    }
  }
}

// Launch for one input dtype (instantiated in ssd_fwd_{bf16,fp16,fp32}.cu).
template <typename in_t>
cudaError_t launch_ssd_fwd(const SsdFwdCudaParams& p, cudaStream_t stream) {
  if (p.nseq == 0 || p.nheads == 0 || p.headdim == 0) return cudaSuccess;
  if (p.dstate < 1 || p.dstate > kNT * 8 || p.chunk_size % kTile != 0 || p.chunk_size <= 0 ||
      p.ngroups < 1 || p.nheads % p.ngroups != 0 || p.nheads > 65535 || p.nseq > 65535)
    return cudaErrorInvalidValue;
  using E = typename TileType<in_t>::E;
  const int64_t smem = smem_layout<E>(p.dstate).bytes;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned((p.headdim + kBP - 1) / kBP), unsigned(p.nheads), unsigned(p.nseq));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = size_t(smem);
  cfg.stream = stream;
  auto kernel = ssd_fwd_kernel<in_t>;
  cudaError_t e = cudaSuccess;
  if (smem > 48 * 1024) e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (e == cudaSuccess) e = cudaLaunchKernelEx(&cfg, kernel, p);
  return e != cudaSuccess ? e : cudaGetLastError();
}

}  // namespace ssd_cuda
}  // namespace mamba_kernels
