// bf16 tensor-core steps of the split pair's prep kernel (verify_m2split_kernel.cuh; CUDA headers only, no torch):
// the B . C dots and the state-free part of y as mma.m16n8k16 with bf16 operands, for bf16 inputs on sm_80+ (and in
// the CPU emulation, through its MK_EMU_* hooks).
//
// Why: the prep kernel runs before the state stream at b64 k4 (~14 us of a ~55 us call on the H200) and is
// issue-bound (ncu, session 30: 7.0 M warp instructions a call, 0.61 issued a scheduler a cycle). Its y terms were
// one thread a (token, 8-channel chunk) walking every committed ring row and path node: per row a coefficient, a
// 16-byte load, 8 conversions and 8 FMAs, the same ring chunk loaded and converted by each token's thread (~41% of
// its instructions); its B . C dots were tf32 mma whose bf16 operands were unpacked and masked element by element.
//   - B . C dots (m2prep_bc_dots_bf16): the reduction axis is permuted so that a lane's A and B fragments are words of
//     one 16-byte chunk of a B row and of a C row (the same permutation on both sides): no conversion at all.
//   - y terms (m2prep_outputs_mma): yx^T (P x k) = X^T (P x K) Coef^T (K x k) + D x, where X's K rows are the
//     committed ring rows then the new tokens' x rows, and Coef[t][j] = rho_t wq_j G[j][t] (ring) or the path
//     weight of node j - c1 (0 off t's path). X^T's fragments come from the rows by ldmatrix.trans; the fp32
//     coefficients are split into three bf16 parts (hi + mid + lo: ~24 bits, so the products keep fp32 accuracy).
//     A coefficient of 0 times an infinite x would give NaN where the sequential form skips the node, so a unit
//     whose new x rows are not all finite takes the CUDA-core form (m2_outputs) instead.
#pragma once
#include "verify/verify_m2tc_kernel.cuh"

namespace mamba_kernels {
namespace verify_kernels {

// Whether this compilation pass has the bf16 mma and ldmatrix (sm_80+, or the CPU emulation's hooks).
#if (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800) || defined(MK_EMU_MMA_BF16)
constexpr bool kHasBf16Mma = true;
#else
constexpr bool kHasBf16Mma = false;
#endif

// d (16 x 8 fp32) += a (16 x 16 bf16) . b (16 x 8 bf16), one warp. Fragments, g = lane / 4, q = lane % 4, two bf16 a
// register (the lower k in the low half): a = {A[g][2q, 2q+1], A[g+8][2q, 2q+1], A[g][2q+8, 2q+9], A[g+8][2q+8, 2q+9]},
// b = {B[2q, 2q+1][g], B[2q+8, 2q+9][g]}, d as mma_tf32's.
__device__ __forceinline__ void mma_bf16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#elif defined(MK_EMU_MMA_BF16)
  MK_EMU_MMA_BF16(d, a0, a1, a2, a3, b0, b1);
#endif
}

// ldmatrix.x4.trans: four 8 x 8 bf16 matrices, lane 8 m + r giving the address of row r of matrix m (16 bytes,
// 16-byte aligned, shared memory); lane (g, q) receives r[m] = M_m[2q][g] | M_m[2q + 1][g] << 16.
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const void* row) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
#elif defined(MK_EMU_LDSM_X4_TRANS)
  MK_EMU_LDSM_X4_TRANS(r, row);
#endif
}

// bf16 bits of v rounded to nearest even.
__device__ __forceinline__ uint32_t bf16_bits(float v) {
  const __nv_bfloat16 h = __float2bfloat16_rn(v);
  return *reinterpret_cast<const unsigned short*>(&h);
}
__device__ __forceinline__ float bf16_val(uint32_t bits) { return __uint_as_float(bits << 16); }

// v0, v1 split into three bf16 parts each (v = hi + mid + lo up to ~2^-24 |v|), packed in pairs: part[i] =
// (part i of v0) | (part i of v1) << 16.
__device__ __forceinline__ void split3_bf16(float v0, float v1, uint32_t (&part)[3]) {
  const uint32_t h0 = bf16_bits(v0), h1 = bf16_bits(v1);
  const float r0 = v0 - bf16_val(h0), r1 = v1 - bf16_val(h1);
  const uint32_t m0 = bf16_bits(r0), m1 = bf16_bits(r1);
  const uint32_t l0 = bf16_bits(r0 - bf16_val(m0)), l1 = bf16_bits(r1 - bf16_val(m1));
  part[0] = h0 | (h1 << 16);
  part[1] = m0 | (m1 << 16);
  part[2] = l0 | (l1 << 16);
}

// Whether the 16-byte chunk holds a bf16 infinity or NaN (exponent bits all set).
__device__ __forceinline__ bool bf16x8_nonfinite(const uint4& c) {
  const uint32_t w[4] = {c.x, c.y, c.z, c.w};
  bool bad = false;
#pragma unroll
  for (int i = 0; i < 4; ++i) bad |= (w[i] & 0x7f80u) == 0x7f80u || (w[i] & 0x7f800000u) == 0x7f800000u;
  return bad;
}

// Sum of the dt of t's path nodes in (sn, t] (mask mt: t's ancestor-or-self bits), added from t down as m2_outputs
// does; sn = -1: the whole path (rho_t = exp(A of it)).
__device__ __forceinline__ float path_dt_after(const float* dts, unsigned mt, int t, int sn) {
  float suf = 0.f;
  for (int s2 = t; s2 > sn; --s2)
    if ((mt >> s2) & 1u) suf += dts[s2];
  return suf;
}

// m2tc_bc_dots for bf16 inputs: G[r][t] = B_r . C_t for the c1 committed ring rows r (raw_ring's B rows) and
// BC[t][r - c1] for the new tokens' rows (Bnew), t < k; one 16-row tile of rows a warp at a time, 8 tokens a tile.
// Lane (g, q) takes 16-byte chunks 4 gc + q of its rows g, g + 8 and of token g's C row: words x, y of a chunk are the
// k-step's reduction elements (2q, 2q+1), (2q+8, 2q+9), words z, w the next k-step's (a permutation of the reduction
// axis shared by both operands).
template <int N, int NW>
__device__ __forceinline__ void m2prep_bc_dots_bf16(const M2Smem& sm, const uint4* Craw, const uint4* Bnew, int c1,
                                                    int k, int P, int R, int warp, int g, int q) {
  constexpr int NC = N / 8;
  const int rbo = m2_ring_b(R, P / 8);
  const int nrow = c1 + k, nmt = (nrow + 15) / 16, nnt = (k + 7) / 8;
  const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
  for (int nt = 0; nt < nnt; ++nt) {
    if (warp >= nmt) break;
    const int tc = nt * 8 + g;
    uint4 cf[NC / 4];
#pragma unroll
    for (int gc = 0; gc < NC / 4; ++gc) cf[gc] = tc < k ? Craw[tc * NC + gc * 4 + q] : zero;
    for (int mt = warp; mt < nmt; mt += NW) {
      const int r0 = mt * 16 + g, r1 = r0 + 8;
      const uint4 *b0 = m2_bc_row(sm, Bnew, c1, nrow, rbo, NC, r0), *b1 = m2_bc_row(sm, Bnew, c1, nrow, rbo, NC, r1);
      float d[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int gc = 0; gc < NC / 4; ++gc) {
        const uint4 a0 = r0 < nrow ? b0[gc * 4 + q] : zero;  // rows past the end: zeros (not data)
        const uint4 a1 = r1 < nrow ? b1[gc * 4 + q] : zero;
        mma_bf16(d, a0.x, a1.x, a0.y, a1.y, cf[gc].x, cf[gc].y);
        mma_bf16(d, a0.z, a1.z, a0.w, a1.w, cf[gc].z, cf[gc].w);
      }
      m2_bc_store(sm, d, r0, nt * 8 + 2 * q, c1, nrow, k);
    }
  }
}

// The prep kernel's y terms on tensor cores (bf16 inputs, every new x finite): yx_t (fp32 (k, P) at yx, global) and
// scale_t = rho_t eSQ (at scale), as m2_outputs<TI, true> computes them. After the B . C dots and ring weights (a
// barrier between); zero: 16 zero bytes of shared memory; the block's NT threads tid (one block barrier inside).
// Rewrites G and BC in place into the coefficients (G[e][t] = rho_t wq_e G[e][t]; BC[t][sn] = the path weight
// W[t][sn], 0 off the path).
template <int NT>
__device__ __forceinline__ void m2prep_outputs_mma(const M2Ctl& ct, const M2Smem& sm, const uint4* zero, int k, int P,
                                                   float Au, float* yx, float* scale, int tid) {
  constexpr int NW = NT / 32;
  const int lane = tid & 31, warp = tid >> 5, g = lane >> 2, q = lane & 3;
  const int c1 = ct.c1, K1 = k > 0 ? k : 1, PC = P / 8;
  // ---- coefficients: ring entries (e, t), then path entries (t, sn); rho_t = exp(A sum of t's path dt), summed
  // from t down as m2_outputs does
  const int nring = c1 * k, ntot = nring + k * k;
  for (int i = tid; i < ntot; i += NT) {
    if (i < nring) {
      const int e = i / k, t = i - e * k;
      const float rho = __expf(Au * path_dt_after(sm.dts, static_cast<unsigned>(sm.smask[t]), t, -1));
      sm.G[e * K1 + t] = rho * (sm.wq[e] * sm.G[e * K1 + t]);
    } else {
      const int j = i - nring, t = j / k, sn = j - t * k;
      const unsigned mt = static_cast<unsigned>(sm.smask[t]);
      const bool on_path = sn <= t && ((mt >> sn) & 1u);
      sm.BC[t * K1 + sn] =
          on_path ? sm.dts[sn] * __expf(Au * path_dt_after(sm.dts, mt, t, sn)) * sm.BC[t * K1 + sn] : 0.f;
    }
  }
  if (tid < k)
    scale[tid] = __expf(Au * path_dt_after(sm.dts, static_cast<unsigned>(sm.smask[tid]), tid, -1)) * sm.scal[0];
  __syncthreads();
  // ---- yx^T = X^T Coef^T: K = c1 + k rows (ring rows, then new x rows; past them a zero chunk), 16 a k-step
  const int nk = c1 + k, nks = (nk + 15) / 16, PT = P / 16, nnt = (k + 7) / 8;
  const __nv_bfloat16* xnew = reinterpret_cast<const __nv_bfloat16*>(sm.raw_in);
  auto coef = [&sm, c1, k, K1](int t, int j) -> float {
    if (t >= k || j >= c1 + k) return 0.f;
    return j < c1 ? sm.G[j * K1 + t] : sm.BC[t * K1 + (j - c1)];
  };
  const int lm = lane >> 3, lr = lane & 7;  // this lane's ldmatrix matrix and row
  for (int nt = 0; nt < nnt; ++nt) {
    for (int i0 = 0; warp + NW * i0 < PT; i0 += 4) {
      float acc[4][4];
#pragma unroll
      for (int ii = 0; ii < 4; ++ii)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[ii][e] = 0.f;
      for (int ks = 0; ks < nks; ++ks) {
        const int tb = nt * 8 + g, jb = ks * 16 + 2 * q;
        uint32_t b0[3], b1[3];
        split3_bf16(coef(tb, jb), coef(tb, jb + 1), b0);
        split3_bf16(coef(tb, jb + 8), coef(tb, jb + 9), b1);
        const int j = ks * 16 + lr + (lm >> 1) * 8;  // this lane's X row (matrices 2, 3: k 8-15)
        const uint4* xrow = j < c1 ? sm.raw_ring + j * PC : (j < nk ? sm.raw_in + (j - c1) * PC : nullptr);
#pragma unroll
        for (int ii = 0; ii < 4; ++ii) {
          const int mt = warp + NW * (i0 + ii);
          if (mt >= PT) break;
          uint32_t a[4];  // matrices 0, 1: channels 16 mt + 0..7, + 8..15 (k 0-7); 2, 3 the same at k 8-15
          ldsm_x4_trans(a, xrow != nullptr ? static_cast<const void*>(xrow + 2 * mt + (lm & 1))
                                           : static_cast<const void*>(zero));
#pragma unroll
          for (int s = 2; s >= 0; --s) mma_bf16(acc[ii], a[0], a[1], a[2], a[3], b0[s], b1[s]);
        }
      }
      // ---- + D x_t, to yx (fp32 (k, P)): element (channel 16 mt + g (+8), token nt 8 + 2q (+1))
#pragma unroll
      for (int ii = 0; ii < 4; ++ii) {
        const int mt = warp + NW * (i0 + ii);
        if (mt >= PT) break;
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int pch = mt * 16 + g + (e >> 1) * 8, t = nt * 8 + 2 * q + (e & 1);
          if (t < k) yx[t * P + pch] = fmaf(sm.Ds[pch], static_cast<float>(xnew[t * P + pch]), acc[ii][e]);
        }
      }
    }
  }
}

}  // namespace verify_kernels
}  // namespace mamba_kernels
