// Mamba-2 SSM verify step on tensor cores (CUDA headers only, no torch). Same contract, cache format and closed
// form as verify_m2_kernel (see its header and docs/verify_step_design.md); launch_verify_ssm takes this kernel for
// the common model shapes: Mamba-2 layout, N in {64, 128} (a template parameter), P a power of two in [16, 256],
// the P x N state tile at most 64 KB, 16-byte aligned rows.
//
// Why: ncu on the H200 (b64 k4, fp32 state, P = N = 128) showed verify_m2_kernel issuing ~16k warp instructions
// a block at 0.41 per cycle per scheduler: 4.8k before the first barrier (index arithmetic of the staging), 7.7k in
// the state dots (2k FMAs, the rest lane reductions, predicates and addressing) and 1.9k in the B . C dots. Here
//   - the state tile goes to shared memory by cp.async (a swizzled copy, no registers held, no second pass), rows
//     [16 m, 16 m + 16) copied and read by warp m mod NW only (no block barrier before the dots);
//   - the state dots S = h0 . C^T (a (P x N) x (N x k) product), the dots B . C^T of the ring and new tokens, and
//     the fold's state update h_c = eSQ h0 + (wq x)^T B are m16n8k8 tf32 mma. fp32 operands are split into a tf32
//     high part and the remainder (x = hi + lo, both products accumulated: ~fp32 accuracy, 2 mma instead of 1);
//     16-bit inputs and states are exact in tf32. The reduction axis may be permuted freely (both operands use
//     the same permutation), so a lane's fragment is whole 16-byte chunks of a row.
//   - shapes are compile-time where they set loop bounds (N, the dtypes, the warps).
// The y epilogue, ring bookkeeping and tree-path compaction are verify_m2_kernel's.
#pragma once
#include <cstdlib>

#include "verify/verify_m2_steps.cuh"

namespace mamba_kernels {
namespace verify_kernels {

// ---- tensor-core helpers -------------------------------------------------------------------------------------
// x truncated to tf32 (the low 13 mantissa bits cleared): x - hi is exact in fp32 and below 2^-10 |x|, so the
// tensor core's own truncation of it costs at most 2^-20 |x|. One integer op (the same on the GPU and in the CPU
// emulation).
__device__ __forceinline__ float tf32_hi(float x) { return __uint_as_float(__float_as_uint(x) & 0xffffe000u); }

// E consecutive elements of a 16-byte aligned input row in shared memory (8, 16 or 32 bytes) -> fp32.
template <typename TI, int E>
__device__ __forceinline__ void lds_in(const TI* ptr, float (&o)[E]) {
  constexpr int VI = SV<TI>::V;
  if constexpr (E % VI == 0) {
#pragma unroll
    for (int i = 0; i < E / VI; ++i) {
      float t[VI];
      SV<TI>::unpack(reinterpret_cast<const uint4*>(ptr)[i], t);
#pragma unroll
      for (int e = 0; e < VI; ++e) o[i * VI + e] = t[e];
    }
  } else {  // 16-bit elements, E = 4: one 8-byte load
    static_assert(E == 4 && VI == 8, "lds_in: unsupported shape");
    const uint2 w = *reinterpret_cast<const uint2*>(ptr);
    const float2 a = SV<TI>::up(w.x), b = SV<TI>::up(w.y);
    o[0] = a.x;
    o[1] = a.y;
    o[2] = b.x;
    o[3] = b.y;
  }
}

// d (16 x 8 fp32) += a (16 x 8) . b (8 x 8), one warp, operands read as tf32 (the hardware ignores the low 13
// mantissa bits). Fragments, g = lane / 4, q = lane % 4:
//   a = {A[g][q], A[g + 8][q], A[g][q + 4], A[g + 8][q + 4]},  b = {B[q][g], B[q + 4][g]},
//   d = {D[g][2q], D[g][2q + 1], D[g + 8][2q], D[g + 8][2q + 1]}.
__device__ __forceinline__ void mma_tf32(float (&d)[4], float a0, float a1, float a2, float a3, float b0, float b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(__float_as_uint(a0)), "r"(__float_as_uint(a1)), "r"(__float_as_uint(a2)), "r"(__float_as_uint(a3)),
        "r"(__float_as_uint(b0)), "r"(__float_as_uint(b1)));
#elif defined(MK_EMU_MMA_TF32)  // CPU emulation (tests/cuda_emu/verify)
  MK_EMU_MMA_TF32(d, a0, a1, a2, a3, b0, b1);
#else  // builds for archs below sm_80 (TORCH_CUDA_ARCH_LIST): the same fragments exchanged by shuffles, operands
       // truncated to tf32
  const int lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  auto tr = [](float v) { return __uint_as_float(__float_as_uint(v) & 0xffffe000u); };
  for (int kk = 0; kk < 8; ++kk) {
    const float ag = tr(__shfl_sync(0xffffffffu, kk < 4 ? a0 : a2, g * 4 + (kk & 3)));
    const float ag8 = tr(__shfl_sync(0xffffffffu, kk < 4 ? a1 : a3, g * 4 + (kk & 3)));
    const float bc0 = tr(__shfl_sync(0xffffffffu, kk < 4 ? b0 : b1, 8 * q + (kk & 3)));
    const float bc1 = tr(__shfl_sync(0xffffffffu, kk < 4 ? b0 : b1, 8 * q + 4 + (kk & 3)));
    d[0] = fmaf(ag, bc0, d[0]);
    d[1] = fmaf(ag, bc1, d[1]);
    d[2] = fmaf(ag8, bc0, d[2]);
    d[3] = fmaf(ag8, bc1, d[3]);
  }
#endif
}

// d += a . b with fp32 accuracy where an operand is not exact in tf32: SA / SB say that a / b need the split.
// bl: the low parts of b (precomputed by the caller when SB).
template <bool SA, bool SB>
__device__ __forceinline__ void mma_acc(float (&d)[4], float a0, float a1, float a2, float a3, float b0, float b1,
                                        float bl0, float bl1) {
  if constexpr (SA) {
    const float h0 = tf32_hi(a0), h1 = tf32_hi(a1), h2 = tf32_hi(a2), h3 = tf32_hi(a3);
    mma_tf32(d, a0 - h0, a1 - h1, a2 - h2, a3 - h3, b0, b1);
    if constexpr (SB) mma_tf32(d, h0, h1, h2, h3, bl0, bl1);
    mma_tf32(d, h0, h1, h2, h3, b0, b1);
  } else {
    if constexpr (SB) mma_tf32(d, a0, a1, a2, a3, bl0, bl1);
    mma_tf32(d, a0, a1, a2, a3, b0, b1);
  }
}

// Shared memory: the state tile (P rows of N / VT 16-byte chunks; chunk c of row r sits at c ^ tc_swz(r), so that
// rows g and g + 1 of a fragment load hit different banks), then the common arrays (M2CommonLayout).
struct M2TcLayout : M2CommonLayout {
  int tile, words;
};
__host__ __device__ __forceinline__ int tc_swz(int row) { return (row & 1) << 2; }
// Chunk c of tile row r (16-byte units; CPR chunks a row).
template <int CPR>
__host__ __device__ __forceinline__ int tc_tile_at(int r, int c) {
  return r * CPR + (c ^ tc_swz(r));
}

__host__ __device__ __forceinline__ M2TcLayout m2tc_layout(int64_t k, int64_t P, int64_t N, int64_t R, int VT,
                                                           int VI) {
  M2TcLayout l;
  l.tile = 0;
  l.words = m2_place_common(l, static_cast<int>(P * (N / VT) * 4), k, P, N, R, VI);
  return l;
}

// Fragment values of C row `tok` (0 past k) for a reduction over N whose 16-byte chunks hold E elements: entry
// gc * E + e is column gc * 4E + q * E + e (the chunk a lane of fragment column q reads from its A rows).
template <typename TI, int N, int E, bool SPLIT>
__device__ __forceinline__ void load_c_frag(const uint4* Craw, int tok, int k, int q, float (&c)[N / 4],
                                            float (&cl)[N / 4]) {
  const TI* row = reinterpret_cast<const TI*>(Craw) + (tok < k ? tok : 0) * N;
#pragma unroll
  for (int gc = 0; gc < N / (4 * E); ++gc) {
    float v[E];
    lds_in<TI, E>(row + gc * 4 * E + q * E, v);
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const float x = tok < k ? v[e] : 0.f;
      const float h = SPLIT ? tf32_hi(x) : x;
      c[gc * E + e] = h;
      cl[gc * E + e] = SPLIT ? x - h : 0.f;
    }
  }
}

// The state tile (P rows of N, row stride st_p) -> shared memory by cp.async (uncommitted): warp mt % NW copies
// (and later reads) rows [16 mt, 16 mt + 16); lane = (row lr of RP, 16-byte chunk lc); chunk c of row r at
// c ^ tc_swz(r). kEvictFirst: the copies under an L2 evict-first policy (l2_evict_first_policy).
template <typename T, int N, int NW, bool kEvictFirst = false>
__device__ __forceinline__ void m2tc_stage_tile(uint4* tile, const T* st, int64_t st_p, int P, int warp, int lane) {
  constexpr int VT = SV<T>::V, CPR = N / VT, RP = 32 / CPR;
  const unsigned long long evict = kEvictFirst ? l2_evict_first_policy() : 0ull;
  const int lc = lane % CPR, lr = lane / CPR, MT = P / 16;
  for (int mt = warp; mt < MT; mt += NW) {
    const T* src = st + (mt * 16 + lr) * st_p + lc * VT;
    uint4* dst = tile + (mt * 16 + lr) * CPR;
#pragma unroll
    for (int i = 0; i < 16 / RP; ++i) {
      const int r = lr + i * RP;  // row parity = r's parity (16 mt is even)
      if constexpr (kEvictFirst) cp_async16_hint(dst + i * RP * CPR + (lc ^ tc_swz(r)), src + i * RP * st_p, evict);
      else cp_async16(dst + i * RP * CPR + (lc ^ tc_swz(r)), src + i * RP * st_p);
    }
  }
}

// ---- the kernel's tensor-core steps (verify_m2tc_kernel; the split pair of verify_m2split_kernel.cuh too) -----
// State dots S_t[row] = h0[row] . C_t of this warp's m-tiles (rows [16 mt, 16 mt + 16), mt = warp, warp + NW, ..),
// from the swizzled tile, into Sd[t * P + row]. Craw: the C rows of the k new tokens (raw input chunks).
template <typename T, typename TI, int N, int NW>
__device__ __forceinline__ void m2tc_state_dots(const uint4* tile, const uint4* Craw, float* Sd, int k, int P,
                                                int warp, int g, int q) {
  constexpr int VT = SV<T>::V, CPR = N / VT;
  constexpr bool kSplitS = sizeof(T) == 4, kSplitI = sizeof(TI) == 4;  // operands not exact in tf32
  const int MT = P / 16;
  // per (16-row m-tile, 8-token n-tile), N / 8 mma k-steps (x2 / x3 with splits)
  for (int nt = 0; nt * 8 < k; ++nt) {
    float cf[N / 4], cfl[N / 4];
    load_c_frag<TI, N, VT, kSplitI>(Craw, nt * 8 + g, k, q, cf, cfl);
    for (int mt = warp; mt < MT; mt += NW) {
      const int r0 = mt * 16 + g, r1 = r0 + 8;
      float d[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int gc = 0; gc < N / (4 * VT); ++gc) {
        float h0[VT], h1[VT];
        SV<T>::unpack(tile[tc_tile_at<CPR>(r0, gc * 4 + q)], h0);
        SV<T>::unpack(tile[tc_tile_at<CPR>(r1, gc * 4 + q)], h1);
#pragma unroll
        for (int e = 0; e < VT; e += 2)
          mma_acc<kSplitS, kSplitI>(d, h0[e], h1[e], h0[e + 1], h1[e + 1], cf[gc * VT + e], cf[gc * VT + e + 1],
                                    cfl[gc * VT + e], cfl[gc * VT + e + 1]);
      }
      const int t0 = nt * 8 + 2 * q;
      if (t0 < k) {
        Sd[t0 * P + r0] = d[0];
        Sd[t0 * P + r1] = d[2];
      }
      if (t0 + 1 < k) {
        Sd[(t0 + 1) * P + r0] = d[1];
        Sd[(t0 + 1) * P + r1] = d[3];
      }
    }
  }
}

// Dots of the ring's and the new tokens' B rows with the new C rows: rows e < c1: G[e][t] = B_e . C_t (ring, raw
// rows of sm.raw_ring from m2_ring_b on); rows c1 + s: BC[t][s] = B_s . C_t (Bnew: the new B rows, raw).
template <typename TI, int N, int NW>
__device__ __forceinline__ void m2tc_bc_dots(const M2Smem& sm, const uint4* Craw, const uint4* Bnew, int c1, int k,
                                             int P, int R, int warp, int g, int q) {
  constexpr int VI = SV<TI>::V, NC = N / VI;
  constexpr bool kSplitI = sizeof(TI) == 4;
  const int K1 = k > 0 ? k : 1, rbo = m2_ring_b(R, P / VI);
  float* G = sm.G;
  float* BC = sm.BC;
  const int nrow = c1 + k, nmt = (nrow + 15) / 16, nnt = (k + 7) / 8;
  for (int nt = 0; nt < nnt; ++nt) {
    if (warp >= nmt) break;
    float cf[N / 4], cfl[N / 4];
    load_c_frag<TI, N, VI, kSplitI>(Craw, nt * 8 + g, k, q, cf, cfl);
    for (int mt = warp; mt < nmt; mt += NW) {
      const int r0 = mt * 16 + g, r1 = r0 + 8;
      auto brow = [&sm, c1, rbo, Bnew](int r) -> const uint4* {
        return r < c1 ? sm.raw_ring + rbo + r * NC : Bnew + (r - c1) * NC;
      };
      const uint4* b0 = brow(r0 < nrow ? r0 : 0);
      const uint4* b1 = brow(r1 < nrow ? r1 : 0);
      float d[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int gc = 0; gc < N / (4 * VI); ++gc) {
        float v0[VI], v1[VI];
        SV<TI>::unpack(b0[gc * 4 + q], v0);
        SV<TI>::unpack(b1[gc * 4 + q], v1);
#pragma unroll
        for (int e = 0; e < VI; ++e) {  // rows past the end: zeros (shared memory there is not data)
          v0[e] = r0 < nrow ? v0[e] : 0.f;
          v1[e] = r1 < nrow ? v1[e] : 0.f;
        }
#pragma unroll
        for (int e = 0; e < VI; e += 2)
          mma_acc<kSplitI, kSplitI>(d, v0[e], v1[e], v0[e + 1], v1[e + 1], cf[gc * VI + e], cf[gc * VI + e + 1],
                                    cfl[gc * VI + e], cfl[gc * VI + e + 1]);
      }
      const int t0 = nt * 8 + 2 * q;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = i < 2 ? r0 : r1, t = t0 + (i & 1);
        if (r < nrow && t < k) {
          if (r < c1) G[r * K1 + t] = d[i];
          else BC[t * K1 + (r - c1)] = d[i];
        }
      }
    }
  }
}

// y rows of a padding batch row (slot < 0 or >= S): k token rows of PC 16-byte chunks set to zero.
template <typename TI>
__device__ __forceinline__ void m2_zero_y(TI* y, int64_t y_k, int k, int PC, int tid, int NT) {
  constexpr int VI = SV<TI>::V;
  const int lPC = ilog2(PC);
  for (int i = tid; i < k * PC; i += NT) {
    const int t = i >> lPC, c = i & (PC - 1);
    *reinterpret_cast<uint4*>(y + t * y_k + c * VI) = make_uint4(0u, 0u, 0u, 0u);
  }
}

// State values v0, v1 -> the adjacent state elements dst[0], dst[1] (one 8-byte store for fp32).
template <typename T>
__device__ __forceinline__ void store_state_pair(T* dst, float v0, float v1) {
  if constexpr (sizeof(T) == 4) {
    *reinterpret_cast<float2*>(dst) = make_float2(v0, v1);
  } else {
    dst[0] = SV<T>::from_f(v0);
    dst[1] = SV<T>::from_f(v1);
  }
}

// The fold's A fragment of k-step rows e0 = 8 ks + q and e1 = e0 + 4 (zero past c1): X[e][p] = wq_e x_e[p] at the
// rows r0, r1 (xr: the committed ring tokens' x rows, x_e[p] at e * P + p).
template <typename TI>
__device__ __forceinline__ void m2tc_fold_a(const TI* xr, const float* wq, int c1, int P, int r0, int r1, int e0,
                                            float& a0, float& a1, float& a2, float& a3) {
  const int e1 = e0 + 4;
  const float w0 = e0 < c1 ? wq[e0] : 0.f, w1 = e1 < c1 ? wq[e1] : 0.f;
  a0 = e0 < c1 ? w0 * SV<TI>::to_f(xr[e0 * P + r0]) : 0.f;
  a1 = e0 < c1 ? w0 * SV<TI>::to_f(xr[e0 * P + r1]) : 0.f;
  a2 = e1 < c1 ? w1 * SV<TI>::to_f(xr[e1 * P + r0]) : 0.f;
  a3 = e1 < c1 ? w1 * SV<TI>::to_f(xr[e1 * P + r1]) : 0.f;
}

// d (one m-tile's N / 8 n-tile accumulators, rows r0 = its first row + g and r1 = r0 + 8) += X^T B over the c1
// committed ring tokens, X[e][p] = wq_e x_e[p] (xr: their x rows, br: their B rows), ceil(c1 / 8) k-steps.
template <typename TI, int N>
__device__ __forceinline__ void m2tc_fold_acc(float (&d)[N / 8][4], const TI* xr, const TI* br, const float* wq,
                                              int c1, int P, int r0, int r1, int g, int q) {
  constexpr bool kSplitI = sizeof(TI) == 4;
  for (int ks = 0; ks * 8 < c1; ++ks) {
    const int e0 = ks * 8 + q, e1 = e0 + 4;
    float a0, a1, a2, a3;
    m2tc_fold_a<TI>(xr, wq, c1, P, r0, r1, e0, a0, a1, a2, a3);
#pragma unroll
    for (int nt = 0; nt < N / 8; ++nt) {
      const float bv0 = e0 < c1 ? SV<TI>::to_f(br[e0 * N + nt * 8 + g]) : 0.f;
      const float bv1 = e1 < c1 ? SV<TI>::to_f(br[e1 * N + nt * 8 + g]) : 0.f;
      const float bh0 = kSplitI ? tf32_hi(bv0) : bv0, bh1 = kSplitI ? tf32_hi(bv1) : bv1;
      mma_acc<true, kSplitI>(d[nt], a0, a1, a2, a3, bh0, bh1, bv0 - bh0, bv1 - bh1);
    }
  }
}

// The fold h_c = eSQ h0 + X^T B, X[e][p] = wq_e x_e[p] over the c1 committed ring tokens (raw_ring: their x rows,
// their B rows from m2_ring_b on), written to the state rows st (row stride st_p) of this warp's m-tiles: per
// m-tile, all N / 8 n-tiles, ceil(c1 / 8) k-steps.
template <typename T, typename TI, int N, int NW>
__device__ __forceinline__ void m2tc_fold(const uint4* tile, const uint4* raw_ring, const float* wq, float eSQ, T* st,
                                          int64_t st_p, int c1, int P, int R, int warp, int g, int q) {
  constexpr int VT = SV<T>::V, CPR = N / VT, VI = SV<TI>::V;
  const int MT = P / 16;
  const TI* xr = reinterpret_cast<const TI*>(raw_ring);                  // x_e[p] at e * P + p
  const TI* br = reinterpret_cast<const TI*>(raw_ring + m2_ring_b(R, P / VI));  // B_e[n] at e * N + n
  for (int mt = warp; mt < MT; mt += NW) {
    const int r0 = mt * 16 + g, r1 = r0 + 8;
    float d[N / 8][4];
#pragma unroll
    for (int nt = 0; nt < N / 8; ++nt) d[nt][0] = d[nt][1] = d[nt][2] = d[nt][3] = 0.f;
    m2tc_fold_acc<TI, N>(d, xr, br, wq, c1, P, r0, r1, g, q);
#pragma unroll
    for (int nt = 0; nt < N / 8; ++nt) {
      const int col = nt * 8 + 2 * q, ch = col / VT, w = col % VT;  // the pair (col, col + 1) is in one chunk
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        const int r = hf ? r1 : r0;
        const T* hp = reinterpret_cast<const T*>(tile + r * CPR + (ch ^ tc_swz(r))) + w;
        store_state_pair(st + r * st_p + col, fmaf(eSQ, SV<T>::to_f(hp[0]), d[nt][2 * hf]),
                         fmaf(eSQ, SV<T>::to_f(hp[1]), d[nt][2 * hf + 1]));
      }
    }
  }
}

template <typename T, typename TI, int N, int NW>
__global__ void __launch_bounds__(NW * 32, 2) verify_m2tc_kernel(const VerifyStepParams p) {
  constexpr int NT = NW * 32;
  constexpr int VT = SV<T>::V;  // state elements a chunk
  constexpr int VI = SV<TI>::V, NC = N / VI;  // input elements a chunk, chunks a B / C row
  MK_VERIFY_DYN_SMEM(smem_f4);
  float* smf = reinterpret_cast<float*>(smem_f4);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, q = lane & 3;
  const int H = static_cast<int>(p.H);
  const int b = blockIdx.x / H, u = blockIdx.x - (blockIdx.x / H) * H;
  const int s = p.slots[b * p.slots_stride];
  const int k = static_cast<int>(p.k);
  const int P = static_cast<int>(p.P), R = static_cast<int>(p.R);
  const int PC = P / VI, lPC = ilog2(PC);
  TI* y = static_cast<TI*>(p.y) + (int64_t)b * p.y_b + (int64_t)u * p.y_h;
  if (s < 0 || s >= p.S) {  // padding row: y = 0, cache untouched
    m2_zero_y<TI>(y, p.y_k, k, PC, tid, NT);
    return;
  }
  const int gi = u / (H / static_cast<int>(p.G));
  const M2TcLayout lay = m2tc_layout(k, P, N, R, VT, VI);
  uint4* tile = reinterpret_cast<uint4*>(smf + lay.tile);
  const M2Smem sm = m2_smem(lay, smem_f4);
  const auto& [xs, Sd, Ds, dts, dtq, wq, G, BC, scal, smeta, spar, smask, raw_in, raw_ring] = sm;

  // ---- 1. new-token inputs (cp.async group 1), state tile (group 2), control words -----------------------------
  const int nxc = k * PC, nzc = p.z != nullptr ? k * PC : 0, nbc = k * NC;
  {  // x, z: token rows of PC chunks; B, C: token rows of NC chunks (one loop per tensor: no per-chunk dispatch)
    const TI* xb = static_cast<const TI*>(p.x) + (int64_t)b * p.x_b + (int64_t)u * p.x_h;
    for (int i = tid; i < nxc; i += NT) cp_async16(raw_in + i, xb + (i >> lPC) * p.x_k + (i & (PC - 1)) * VI);
    if (p.z != nullptr) {
      const TI* zb = static_cast<const TI*>(p.z) + (int64_t)b * p.z_b + (int64_t)u * p.z_h;
      for (int i = tid; i < nzc; i += NT) cp_async16(raw_in + nxc + i, zb + (i >> lPC) * p.z_k + (i & (PC - 1)) * VI);
    }
    const TI* Bb = static_cast<const TI*>(p.B) + (int64_t)b * p.B_b + (int64_t)gi * p.B_g;
    const TI* Cb = static_cast<const TI*>(p.C) + (int64_t)b * p.C_b + (int64_t)gi * p.C_g;
    for (int i = tid; i < nbc; i += NT) {
      cp_async16(raw_in + nxc + nzc + i, Bb + (i / NC) * p.B_k + (i % NC) * VI);
      cp_async16(raw_in + nxc + nzc + nbc + i, Cb + (i / NC) * p.C_k + (i % NC) * VI);
    }
  }
  cp_async_commit();
  T* st = static_cast<T*>(p.state) + (int64_t)s * p.st_s + (int64_t)u * p.st_h;
  m2tc_stage_tile<T, N, NW>(tile, st, p.st_p, P, warp, lane);
  cp_async_commit();
  const int nm = 2 + static_cast<int>(p.Kmax < kMaxK ? p.Kmax : kMaxK);
  const M2Scalars sc = m2_load_scalars<TI>(p, b, u, s, tid, k, nm);
  const float Au = sc.Au;
  for (int i = tid; i < P; i += NT) Ds[i] = p.D != nullptr ? p.D[u * p.D_h + i * p.D_p] : 0.f;
  cp_async_wait<1>();  // this thread's input chunks (the tile may still be in flight)
  for (int i = tid; i < nxc; i += NT) {  // x -> fp32 (z, B, C stay raw)
    float o[VI];
    SV<TI>::unpack(raw_in[i], o);
    sts_vec<VI>(xs + i * VI, o);
  }
  m2_store_scalars(p, sc, smeta, spar, dts, tid, k, nm);
  __syncthreads();  // 1

  // ---- 2. control words, ring (cp.async group 3), state dots on tensor cores ---------------------------------
  // (Reading the control words straight from global memory before barrier 1, so that the ring's copies start
  // with the tile's, measured slower on the H200: b64 k4 83 vs 72 us; the dependent loads lengthen the path to
  // barrier 1.)
  const M2Ctl ct = m2_control(p, smeta, sc.accv, R, k);
  const int c1 = ct.c1;
  const int64_t rx0 = (int64_t)s * p.rx_s + (int64_t)u * p.rx_h, rb0 = (int64_t)s * p.rB_s + (int64_t)u * p.rB_h;
  const float dq = m2_stage_ring<TI>(p, ct, raw_ring, rx0, rb0, s, u, PC, NC, tid, NT);
  cp_async_commit();
  m2_masks(spar, smask, tid, k);
  const uint4* Craw = raw_in + nxc + nzc + nbc;
  const uint4* Bnew = raw_in + nxc + nzc;
  cp_async_wait<1>();  // this thread's tile chunks (the ring may still be in flight)
  __syncwarp();        // ... and the other lanes' of this warp: the warp's rows are complete
  m2tc_state_dots<T, TI, N, NW>(tile, Craw, Sd, k, P, warp, g, q);
  cp_async_wait<0>();  // the ring stays raw in shared memory
  if (tid < c1) dtq[tid] = dq;
  __syncthreads();  // 2

  // ---- 3. ring weights (warp 0); dots [B_ring; B_new] . C^T on tensor cores -----------------------------------
  if (warp == 0) m2_ring_weights(dtq, wq, scal, c1, Au, lane);
  m2tc_bc_dots<TI, N, NW>(sm, Craw, Bnew, c1, k, P, R, warp, g, q);
  __syncthreads();  // 3

  // ---- 4. y, ring writes, fold, tree compaction, meta ------------------------------------------------------------
  m2_outputs<TI>(p, ct, sm, y, k, P, N, R, Au, rx0, rb0, s, u, tid, NT);
  const float eSQ = scal[0];
  if (ct.fold) m2tc_fold<T, TI, N, NW>(tile, raw_ring, wq, eSQ, st, p.st_p, c1, P, R, warp, g, q);
  m2_finish<TI>(p, ct, sm, k, P, N, rx0, rb0, s, u, tid, NT);
}

// A block-size override from the environment variable `name`: 4 or 8 warps, else 0 (unset or another value).
inline int warps_from_env(const char* name) {
  const char* e = std::getenv(name);
  const int v = e != nullptr ? std::atoi(e) : 0;
  return v == 4 || v == 8 ? v : 0;
}
// Warps a block of the tensor-core kernels: `forced` if set, else one 16-row m-tile each up to 8 (P >= 128: 8
// warps, P <= 64: 4).
inline int tc_block_warps(int forced, int64_t P) { return forced != 0 ? forced : (P >= 128 ? 8 : 4); }

// verify_m2tc_kernel's warps; MK_VERIFY_TC_WARPS=4|8 (environment, read once) overrides them (benchmarks).
inline int m2tc_warps(int64_t P) {
  static const int forced = warps_from_env("MK_VERIFY_TC_WARPS");
  return tc_block_warps(forced, P);
}

// Whether verify_m2tc_kernel serves these parameters (see the header comment); *smem: its shared memory bytes.
template <typename T>
inline bool m2tc_fits(const VerifyStepParams& p, size_t* smem) {
  constexpr int VT = SV<T>::V;
  const int VI = p.in_dtype == DType::kFloat32 ? 4 : 8;
  if (!m2_io_fits(p, VT, VI)) return false;
  if (!(p.N == 64 || p.N == 128)) return false;
  if (p.P < 16 || p.P > 256 || (p.P & (p.P - 1)) != 0 || p.P < VI) return false;
  if (p.P * p.N * static_cast<int64_t>(sizeof(T)) > 64 * 1024) return false;
  if (p.k > 32 || p.R > 32 * m2tc_warps(p.P)) return false;
  const size_t bytes = static_cast<size_t>(m2tc_layout(p.k, p.P, p.N, p.R, VT, VI).words) * 4;
  if (bytes > 200 * 1024) return false;
  *smem = bytes;
  return true;
}

}  // namespace verify_kernels
}  // namespace mamba_kernels
