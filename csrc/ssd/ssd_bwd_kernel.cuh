// CUDA backward of the chunked SSD (Mamba-2) scan on tensor cores: the per-token / serial kernels and the helpers
// shared with the chunk kernels (ssd_bwd_chunk_kernel.cuh). No torch. Params: SsdBwdCudaParams (ssd.h).
//
// Semantics: the gradient of python_ref/ssd.py::ssd_chunked_ref, as mamba_kernels/ssd/_triton_bwd.py computes it, in
// the same decomposition. Per chunk (never straddling a sequence) and head, a_t = chunk-local cumsum of dt'A,
// u_s = dt'_s x_s, h_in the state entering the chunk (the forward's states_in), dy = dout silu(z):
//   y_t   = exp(a_t) C_t h_in^T + sum_{s<=t} (C_t.B_s) exp(a_t - a_s) u_s + D x_t
//   h_out = exp(a_L) h_in + sum_s exp(a_L - a_s) u_s^T B_s
// Kernels, in launch order (one stream):
//   K0 ssd_bwd_cumsum_kernel   a warp per (chunk slot, head): dt' = clamp(softplus(dt + bias)), a (fp32, head-major
//                              (b, h, l)); zeroes the atomic accumulators ddtp / da / dalast / dA / ddt_bias / dD
//   K1 ssd_bwd_dstate_kernel   per (head, 64-channel block, slot): dy, dz (stored), and the chunk's
//                              G_c = sum_t exp(a_t) dy_t^T C_t (the gradient of y w.r.t. h_in, fp32 into dS[slot])
//   K2 ssd_bwd_pass_kernel     serial over a sequence's chunks, element-parallel (reverse of the forward's state
//                              passing): dS[c] = g (gradient w.r.t. the state after chunk c, starting from d_final);
//                              d a_L[c] += exp(a_L) <g, h_in[c]>; g <- exp(a_L) g + d states_in[c] + G_c; dinit = g
//   K3 ssd_bwd_dcb_kernel      per (slot, 64 x 64 block pair tb >= sb, head block, group): CB = C_t B_s^T (stored),
//                              then over the block's heads (ssd_bwd_group_heads) dCB = sum_h (dy_t x_s^T) o
//                              exp(a_t - a_s) dt'_s (stored; head-block partials summed by fp32 atomics into dcb32)
//                              and the intra-chunk d a: d a_t += rowsum(G o CB), d a_s -= colsum(G o CB)
//   K4 ssd_bwd_dx_kernel       per (head, channel block, slot), source blocks s, target blocks t >= s:
//                              du_s = sum_t (CB o L)^T_st dy_t + exp(a_L - a_s) B_s dS^T; dx = dt' du + D dy;
//                              d dt'_s += x_s.du_s; d a_s += exp(a_s) dy_s.(h_in C_s) - dt'_s q_s,
//                              d a_L += sum_s dt'_s q_s (q_s = x_s.(state-in part of du_s)); dD
//   K5 ssd_bwd_dbc_kernel      per (slot, 64-row block, head block, group, dB | dC): dB_j = sum_{t>=j} dCB_tj C_t +
//                              sum_h exp(a_L - a_j) dt'_j x_j dS;  dC_j = sum_{s<=j} dCB_js B_s + sum_h exp(a_j) dy_j h_in
//      (split heads: ssd_bwd_zero_kernel zeroes dcb32 / dbc32 before K1, ssd_bwd_dbc_cvt_kernel writes dB / dC after K5)
//   K6 ssd_bwd_dt_kernel       a warp per (slot, head): d a (+ d a_L on the last token) -> reverse cumsum ->
//                              d dt' += A rc, dA += dt' rc, then back through clamp / softplus to the raw dt; dt_bias
// Operands: bf16 inputs take bf16 tiles (mma m16n8k16, fp32 accumulation; dy / CB / dCB scratch in bf16, as the Triton
// backward); fp32 and fp16 inputs take fp32 tiles and 3xTF32 (fp32-level products: the fp32 tolerances of
// tests/test_ssd.py do not survive bf16 operands). Decays, cumsums and the element-wise chain stay fp32.
// The mma wrappers, fragment loaders (Frag, mma_row_tiles, a_t_weighted) and element conversions come from ssd_common.cuh.
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "ssd/ssd_common.cuh"

namespace mamba_kernels {
namespace ssd_bwd {

using ssd_cuda::Frag;
using ssd_cuda::TileType;
using ssd_cuda::a_t_weighted;
using ssd_cuda::from_f;
using ssd_cuda::mma_row_tiles;
using ssd_cuda::to_f;

constexpr int kT = 64;      // tokens a block (rows of every tile)
constexpr int kC = 64;      // channels a CTA of the per-head kernels (K1, K4)
constexpr int kWarps = 4;   // warp w owns rows 16 w .. 16 w + 15 of every 64-row accumulator
constexpr int kThr = 32 * kWarps;
constexpr int kMaxNT = 16;  // n tiles of 8 in an accumulator row: n <= 128

// Row length (elements) of a shared tile of `cols` columns rounded up to k16 steps, padded by 16 bytes: consecutive
// rows start 4 banks apart (conflict-free 32-bit fragment loads) and stay 16-byte aligned (ldmatrix rows).
template <typename E>
__host__ __device__ inline int tile_ld(int64_t cols) {
  return int(16 * ((cols + 15) / 16)) + 16 / int(sizeof(E));
}

// blockIdx.x -> (head, channel block, slot), heads fastest (neighbouring CTAs share the B / C rows of a group).
__device__ __forceinline__ void decode_head_block(const SsdBwdCudaParams& p, int64_t& head, int& ch0, int64_t& slot) {
  const int64_t npb = (p.headdim + kC - 1) / kC;
  const int64_t bid = blockIdx.x, rest = bid / p.nheads;
  head = bid % p.nheads;
  ch0 = int(rest % npb) * kC;
  slot = rest / npb;
}

// Cooperative tile load with conversion: dst[r * ld + c] = src[r * ld_src + c] * (scale ? scale[r] : 1) for r < rows,
// c < cols; zero elsewhere for r < R, c < Cn (every element a fragment may read is written: the CPU emulation
// poisons shared memory with NaN).
// Why two paths, both batched: a load whose shared store follows it at once keeps one global load in flight a
// thread, so a 64 x 128 tile cost ~64 serial L2 latencies a thread (the main cost of the first version). The vector
// path moves 16-byte pieces (rows of a multiple of 16 bytes, 16-byte aligned: every tile at p, n multiples of 8),
// kU pieces loaded before any is stored; the scalar path (odd p / n) batches kU elements the same way.
constexpr int kU = 4;
template <typename E, typename S>
__device__ __forceinline__ void tile_load(E* dst, int ld, const S* src, int64_t ld_src, int rows, int cols, int R,
                                          int Cn, const float* scale = nullptr) {
  constexpr int V = 16 / int(sizeof(S));
  const bool vec = cols % V == 0 && Cn % V == 0 && ld_src % V == 0 &&
                   (reinterpret_cast<uintptr_t>(src) & 15) == 0;
  if (vec) {
    const int cv = Cn / V, nv = R * cv;
    for (int i0 = threadIdx.x; i0 < nv; i0 += kU * kThr) {
      uint4 raw[kU];
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        const int i = i0 + u * kThr, r = i / cv, c = (i % cv) * V;
        raw[u] = uint4{0u, 0u, 0u, 0u};
        if (i < nv && r < rows && c < cols) raw[u] = *reinterpret_cast<const uint4*>(src + int64_t(r) * ld_src + c);
      }
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        const int i = i0 + u * kThr, r = i / cv, c = (i % cv) * V;
        if (i >= nv) break;
        const S* sv = reinterpret_cast<const S*>(&raw[u]);
        E* d = dst + r * ld + c;
        bool copied = false;
        if constexpr (std::is_same<E, S>::value) {
          if (scale == nullptr) {  // zero bits are 0.0 in every element type
            *reinterpret_cast<uint4*>(d) = raw[u];
            copied = true;
          }
        }
        if (!copied) {
          const float sc = (scale && r < rows) ? scale[r] : 1.f;
#pragma unroll
          for (int e = 0; e < V; ++e) d[e] = from_f<E>(to_f(sv[e]) * sc);
        }
      }
    }
    return;
  }
  for (int i0 = threadIdx.x; i0 < R * Cn; i0 += kU * kThr) {
    float v[kU];
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int i = i0 + u * kThr, r = i / Cn, c = i % Cn;
      v[u] = (i < R * Cn && r < rows && c < cols) ? to_f(src[int64_t(r) * ld_src + c]) : 0.f;
    }
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int i = i0 + u * kThr, r = i / Cn, c = i % Cn;
      if (i < R * Cn) dst[r * ld + c] = from_f<E>(scale && r < rows ? v[u] * scale[r] : v[u]);
    }
  }
}

// The same tile as tile_load for S == E without scale, by 16-byte cp.async pieces (no register holds the data, so the
// copy overlaps the caller's mma until cp_async_wait): the caller commits the group and has checked 16-byte alignment
// of src and ld_src, and that cols and Cn are multiples of 16 / sizeof(E). Pieces past rows / cols get zeros (plain
// stores): the mma multiplies them by zero weights, and 0 * NaN would poison the sums.
template <typename E>
__device__ __forceinline__ void tile_copy_async(E* dst, int ld, const E* src, int64_t ld_src, int rows, int cols,
                                                int R, int Cn) {
  constexpr int V = 16 / int(sizeof(E));
  const int cv = Cn / V, nv = R * cv;
  for (int i = threadIdx.x; i < nv; i += kThr) {
    const int r = i / cv, c = (i % cv) * V;
    if (r < rows && c < cols) cp_async16(dst + r * ld + c, src + int64_t(r) * ld_src + c);
    else *reinterpret_cast<uint4*>(dst + r * ld + c) = uint4{0u, 0u, 0u, 0u};
  }
}

// p[0] += a, p[1] += b (p 8-byte aligned): one 2-wide reduction on sm_90 (half the atomic operations of the
// head-split sums of K3 / K5), two scalar atomics below sm_90 and in the CPU emulation.
__device__ __forceinline__ void atomic_add2(float* p, float a, float b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  atomicAdd(reinterpret_cast<float2*>(p), make_float2(a, b));
#else
  atomicAdd(p, a);
  atomicAdd(p + 1, b);
#endif
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
// Sum over the 4 lanes of a quad (the lanes holding one accumulator row).
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}
// Sum over the 8 quads (the lanes holding one accumulator column).
__device__ __forceinline__ float col_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 4);
  v += __shfl_xor_sync(0xffffffffu, v, 8);
  return v + __shfl_xor_sync(0xffffffffu, v, 16);
}

__device__ __forceinline__ float dt_process(const SsdBwdCudaParams& p, float raw) {
  float d = raw;
  if (p.dt_softplus) d = d <= 20.f ? log1pf(expf(d)) : d;  // threshold 20, as the forward
  if (p.has_dt_limit) d = fminf(fmaxf(d, p.dt_min), p.dt_max);
  return d;
}

// ------------------------------------------------------------------------------------------ K0: dt', a; zero accums
// A warp per (slot, head): 32-token pieces, inclusive warp scan with a carry. Slot 0's warps also zero dA, ddt_bias
// and dD (every later kernel adds into them after this one on the stream).
// (Templates on the input type, unused here, so that each ssd_bwd_<dtype>.cu owns its instantiation: no duplicate
// host stubs across them.)
template <typename in_t>
__global__ void __launch_bounds__(kThr) ssd_bwd_cumsum_kernel(const SsdBwdCudaParams p) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t pair = int64_t(blockIdx.x) * kWarps + warp;
  if (pair >= (p.n_slots > 0 ? p.n_slots : 1) * p.nheads) return;  // one slot's warps even without chunks: zeroes
  const int64_t slot = pair / p.nheads, head = pair % p.nheads;
  if (lane == 0 && slot < p.n_slots) p.dalast[slot * p.nheads + head] = 0.f;
  if (slot == 0) {
    if (lane == 0) { p.dA[head] = 0.f; p.ddt_bias[head] = 0.f; }
    if (p.dD)
      for (int64_t c = lane; c < p.headdim; c += 32) p.dD[head * p.headdim + c] = 0.f;
  }
  int64_t row, t0, clen;
  if (!ssd_cuda::chunk_of_slot(p, slot, row, t0, clen)) return;
  const float A = p.A[head], bias = p.dt_bias ? p.dt_bias[head] : 0.f;
  const int64_t ab = (row * p.nheads + head) * p.seqlen + t0;
  float carry = 0.f;
  for (int64_t b0 = 0; b0 < clen; b0 += 32) {
    const int64_t t = b0 + lane;
    float d = 0.f;
    if (t < clen) d = dt_process(p, p.dt[(row * p.seqlen + t0 + t) * p.nheads + head] + bias);
    float a = d * A;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const float v = __shfl_up_sync(0xffffffffu, a, o);
      if (lane >= o) a += v;
    }
    a += carry;
    carry = __shfl_sync(0xffffffffu, a, 31);
    if (t < clen) {
      p.dtp[ab + t] = d;
      p.a[ab + t] = a;
      p.ddtp[ab + t] = 0.f;
      p.da[ab + t] = 0.f;
    }
  }
}

// ------------------------------------------------------------------------------------------ K1: dy, dz, G_c
// Shared: dy tile (64 tokens x 64 channels), C tile (64 x 16 nk), exp(a_t) (64). Warp w accumulates G rows (channels)
// 16 w .. 16 w + 15 over the chunk's tiles, the forward's chunk-state update with x -> dy, B -> C, w_t = exp(a_t).
template <typename in_t>
__global__ void __launch_bounds__(kThr) ssd_bwd_dstate_kernel(const SsdBwdCudaParams p) {
  using E = typename TileType<in_t>::E;
  using F = Frag<E>;
  extern __shared__ float4 ssd_bwd_smem[];
  int64_t head, slot, row, t0, clen;
  int ch0;
  decode_head_block(p, head, ch0, slot);
  if (!ssd_cuda::chunk_of_slot(p, slot, row, t0, clen)) return;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, q = lane & 3;
  const int n = int(p.dstate), nk = (n + 15) / 16, ldn = tile_ld<E>(n), ldx = tile_ld<E>(kC);
  const int nch = int(p.headdim - ch0 < kC ? p.headdim - ch0 : kC);
  E* dys = reinterpret_cast<E*>(ssd_bwd_smem);
  E* cs = dys + kT * ldx;
  float* w = reinterpret_cast<float*>(cs + kT * ldn);
  const int64_t P = p.headdim, H = p.nheads, grp = head / (H / p.ngroups);
  const in_t* dout = static_cast<const in_t*>(p.dout);
  const in_t* zz = static_cast<const in_t*>(p.z);
  const in_t* yp = static_cast<const in_t*>(p.ypre);
  in_t* dz = static_cast<in_t*>(p.dz);
  E* dy = static_cast<E*>(p.dy);
  constexpr int V = 16 / int(sizeof(in_t));
  const bool vec = P % V == 0 && ((reinterpret_cast<uintptr_t>(dout) | reinterpret_cast<uintptr_t>(zz) |
                                   reinterpret_cast<uintptr_t>(yp) | reinterpret_cast<uintptr_t>(dz) |
                                   reinterpret_cast<uintptr_t>(dy)) & 15) == 0;
  float G[kMaxNT][4];
#pragma unroll
  for (int j = 0; j < kMaxNT; ++j) G[j][0] = G[j][1] = G[j][2] = G[j][3] = 0.f;
  const int ntiles = int((clen + kT - 1) / kT);
  for (int it = 0; it < ntiles; ++it) {
    const int64_t tt = t0 + int64_t(it) * kT;
    const int tl = int(clen - int64_t(it) * kT < kT ? clen - int64_t(it) * kT : kT);
    if (vec) {  // 16-byte pieces of V channels, kU pieces in flight a thread (see tile_load for why)
      constexpr int NI = kT * kC / V, CV = kC / V;
      for (int i0 = tid; i0 < NI; i0 += kU * kThr) {
        uint4 rd[kU], rz[kU], ry[kU];
#pragma unroll
        for (int u = 0; u < kU; ++u) {
          const int i = i0 + u * kThr, t = i / CV, c = (i % CV) * V;
          rd[u] = rz[u] = ry[u] = uint4{0u, 0u, 0u, 0u};
          if (i < NI && t < tl && c < nch) {
            const int64_t o = ((row * p.seqlen + tt + t) * H + head) * P + ch0 + c;
            rd[u] = *reinterpret_cast<const uint4*>(dout + o);
            if (zz) {
              rz[u] = *reinterpret_cast<const uint4*>(zz + o);
              ry[u] = *reinterpret_cast<const uint4*>(yp + o);
            }
          }
        }
#pragma unroll
        for (int u = 0; u < kU; ++u) {
          const int i = i0 + u * kThr, t = i / CV, c = (i % CV) * V;
          if (i >= NI) break;
          const in_t* dv = reinterpret_cast<const in_t*>(&rd[u]);
          const in_t* zv = reinterpret_cast<const in_t*>(&rz[u]);
          const in_t* yv = reinterpret_cast<const in_t*>(&ry[u]);
          alignas(16) in_t dzv[V];
          alignas(16) E dyv[V];
#pragma unroll
          for (int e = 0; e < V; ++e) {
            float v = to_f(dv[e]);
            if (zz) {  // as the scalar path below
              const float z = to_f(zv[e]), sg = 1.f / (1.f + expf(-z));
              dzv[e] = from_f<in_t>(v * to_f(yv[e]) * sg * (1.f + z * (1.f - sg)));
              v *= z * sg;
            }
            dyv[e] = from_f<E>(v);
          }
          constexpr int NE = int(sizeof(E)) * V / 16;  // 16-byte pieces of V tile elements (1, or 2 for fp16 -> fp32)
          if (t < tl && c < nch) {
            const int64_t o = ((row * p.seqlen + tt + t) * H + head) * P + ch0 + c;
            if (zz) *reinterpret_cast<uint4*>(dz + o) = *reinterpret_cast<const uint4*>(dzv);
#pragma unroll
            for (int k = 0; k < NE; ++k) reinterpret_cast<uint4*>(dy + o)[k] = reinterpret_cast<const uint4*>(dyv)[k];
          }
#pragma unroll
          for (int k = 0; k < NE; ++k)
            reinterpret_cast<uint4*>(dys + t * ldx + c)[k] = reinterpret_cast<const uint4*>(dyv)[k];
        }
      }
    } else {
      for (int i = tid; i < kT * kC; i += kThr) {
        const int t = i / kC, c = i % kC;
        float v = 0.f;
        if (t < tl && c < nch) {
          const int64_t o = ((row * p.seqlen + tt + t) * H + head) * P + ch0 + c;
          v = to_f(dout[o]);
          if (zz) {  // out = y silu(z): dy = dout silu(z), dz = dout y sigma(z) (1 + z (1 - sigma(z)))
            const float zv = to_f(zz[o]), sg = 1.f / (1.f + expf(-zv));
            dz[o] = from_f<in_t>(v * to_f(yp[o]) * sg * (1.f + zv * (1.f - sg)));
            v *= zv * sg;
          }
          dy[o] = from_f<E>(v);
        }
        dys[t * ldx + c] = from_f<E>(v);
      }
    }
    tile_load(cs, ldn, static_cast<const in_t*>(p.C) + ((row * p.seqlen + tt) * p.ngroups + grp) * n,
              p.ngroups * n, tl, n, kT, 16 * nk);
    if (tid < kT) w[tid] = tid < tl ? expf(p.a[(row * H + head) * p.seqlen + tt + tid]) : 0.f;
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      if (16 * kk < tl) {
        const int s0 = 16 * kk + 2 * q;
        const float w0 = w[s0], w1 = w[s0 + 1], w8 = w[s0 + 8], w9 = w[s0 + 9];
        const typename F::A fa =  // A[ch][t] = dy[t][ch] exp(a_t)
            a_t_weighted<E>(dys + s0 * ldx + 16 * warp + g, ldx, w0, w1, w8, w9);
        mma_row_tiles<E>(G, fa, cs + 16 * kk * ldn, ldn, 2 * nk, g, q);
      }
    }
    __syncthreads();
  }
  float* dst = p.dS + (slot * H + head) * P * n + int64_t(ch0) * n;
  const int r0 = 16 * warp + g;
#pragma unroll
  for (int j = 0; j < kMaxNT; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = r0 + 8 * (e >> 1), c = 8 * j + 2 * q + (e & 1);
      if (r < nch && c < n) dst[int64_t(r) * n + c] = G[j][e];
    }
}

// ------------------------------------------------------------------------------------------ K2: reverse passing
// grid (ceil(p n / (128 V)), h, nseq), V floats a thread. Every thread walks the chunks (full-warp shuffles for the
// d a_L partial sums; threads past p n carry zeros).
template <typename in_t, int V>
__global__ void __launch_bounds__(kThr) ssd_bwd_pass_kernel(const SsdBwdCudaParams p) {
  const int64_t pn = p.headdim * p.dstate, head = blockIdx.y, seq = blockIdx.z, H = p.nheads, Q = p.chunk_size;
  const int64_t e0 = (int64_t(blockIdx.x) * kThr + threadIdx.x) * V;
  const bool act = e0 < pn;
  int64_t slot0, nck, tbeg, tend, row;
  if (p.cu_seqlens) {
    slot0 = p.chunk_offsets[seq];
    nck = p.chunk_offsets[seq + 1] - slot0;
    tbeg = p.cu_seqlens[seq];
    tend = p.cu_seqlens[seq + 1];
    row = 0;
  } else {
    nck = (p.seqlen + Q - 1) / Q;
    slot0 = seq * nck;
    tbeg = 0;
    tend = p.seqlen;
    row = seq;
  }
  float g[V];
#pragma unroll
  for (int i = 0; i < V; ++i) g[i] = (act && p.d_final) ? p.d_final[(seq * H + head) * pn + e0 + i] : 0.f;
  const float* arow = p.a + (row * H + head) * p.seqlen;
  for (int64_t ci = nck - 1; ci >= 0; --ci) {
    const int64_t slot = slot0 + ci, last = (tbeg + (ci + 1) * Q < tend ? tbeg + (ci + 1) * Q : tend) - 1;
    const float dl = expf(arow[last]);
    const int64_t o = (slot * H + head) * pn + e0;
    float part = 0.f;
    if (act) {
#pragma unroll
      for (int i = 0; i < V; ++i) {
        const float gc = p.dS[o + i];  // G_c (K1), replaced by the gradient w.r.t. the state after chunk c
        p.dS[o + i] = g[i];
        part += g[i] * p.states_in[o + i];
        g[i] = dl * g[i] + gc + (p.d_states_in ? p.d_states_in[o + i] : 0.f);
      }
    }
    part = warp_sum(part);
    if ((threadIdx.x & 31) == 0) atomicAdd(p.dalast + slot * H + head, dl * part);
  }
  if (act)
#pragma unroll
    for (int i = 0; i < V; ++i) p.dinit[(seq * H + head) * pn + e0 + i] = g[i];
}

// ------------------------------------------------------------------------------------------ head-split scratch
// Only when ssd_bwd_group_split > 1. Grid-stride over dcb32 then dbc32 (one launch for both, before K3).
template <typename in_t>
__global__ void __launch_bounds__(kThr) ssd_bwd_zero_kernel(const SsdBwdCudaParams p) {
  const int64_t n1 = p.n_slots * p.ngroups * p.chunk_size * p.chunk_size;
  const int64_t n2 = 2 * p.batch * p.seqlen * p.ngroups * p.dstate;
  for (int64_t i = int64_t(blockIdx.x) * kThr + threadIdx.x; i < n1 + n2; i += int64_t(gridDim.x) * kThr) {
    if (i < n1) p.dcb32[i] = 0.f;
    else p.dbc32[i - n1] = 0.f;
  }
}
// After K5: dB, dC (input dtype) from their fp32 sums over the head blocks.
template <typename in_t>
__global__ void __launch_bounds__(kThr) ssd_bwd_dbc_cvt_kernel(const SsdBwdCudaParams p) {
  const int64_t bs = p.batch * p.seqlen * p.ngroups * p.dstate;
  in_t* dB = static_cast<in_t*>(p.dB);
  in_t* dC = static_cast<in_t*>(p.dC);
  for (int64_t i = int64_t(blockIdx.x) * kThr + threadIdx.x; i < 2 * bs; i += int64_t(gridDim.x) * kThr) {
    if (i < bs) dB[i] = from_f<in_t>(p.dbc32[i]);
    else dC[i - bs] = from_f<in_t>(p.dbc32[i]);
  }
}

// ------------------------------------------------------------------------------------------ K6: dt chain
// A warp per (slot, head), 32-token pieces from the chunk's end: reverse inclusive scan with a carry.
template <typename in_t>
__global__ void __launch_bounds__(kThr) ssd_bwd_dt_kernel(const SsdBwdCudaParams p) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t pair = int64_t(blockIdx.x) * kWarps + warp;
  if (pair >= p.n_slots * p.nheads) return;
  const int64_t slot = pair / p.nheads, head = pair % p.nheads;
  int64_t row, t0, clen;
  if (!ssd_cuda::chunk_of_slot(p, slot, row, t0, clen)) return;
  const float A = p.A[head], bias = p.dt_bias ? p.dt_bias[head] : 0.f, dal = p.dalast[slot * p.nheads + head];
  const int64_t ab = (row * p.nheads + head) * p.seqlen + t0;
  float carry = 0.f, dA = 0.f, db = 0.f;
  for (int64_t b0 = ((clen - 1) / 32) * 32; b0 >= 0; b0 -= 32) {
    const int64_t t = b0 + lane;
    const bool ok = t < clen;
    float v = ok ? p.da[ab + t] : 0.f;
    if (t == clen - 1) v += dal;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const float u = __shfl_down_sync(0xffffffffu, v, o);
      if (lane + o < 32) v += u;
    }
    const float rc = v + carry;  // sum of d a over tokens >= t of the chunk: the gradient w.r.t. dt'_t A
    carry = __shfl_sync(0xffffffffu, rc, 0);
    if (ok) {
      const float dtp = p.dtp[ab + t];
      float g = p.ddtp[ab + t] + A * rc;
      dA += dtp * rc;
      const int64_t o = (row * p.seqlen + t0 + t) * p.nheads + head;
      const float raw = p.dt[o] + bias;
      if (p.has_dt_limit) {
        const float sp = p.dt_softplus ? (raw <= 20.f ? log1pf(expf(raw)) : raw) : raw;
        if (!(sp >= p.dt_min && sp <= p.dt_max)) g = 0.f;
      }
      if (p.dt_softplus && raw <= 20.f) g *= 1.f / (1.f + expf(-raw));
      p.ddt[o] = g;
      db += g;
    }
  }
  dA = warp_sum(dA);
  db = warp_sum(db);
  if (lane == 0) {
    atomicAdd(p.dA + head, dA);
    atomicAdd(p.ddt_bias + head, db);
  }
}

}  // namespace ssd_bwd
}  // namespace mamba_kernels
