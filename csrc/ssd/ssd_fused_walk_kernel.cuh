// A lab, not called by the library (docs/ssd_fused_walk_design.md, lab step 1): the chunked SSD forward's state stage
// (F1) and output stage (F2) as one walk a (sequence, head), chunk 64, sm_90a, bf16, p 64, n 128, no varlen, h_in not
// written (a forward without autograd). Parameters: SsdFusedWalkParams in ssd.h; launcher ssd_fused_walk_cuda
// (ssd_walk.cu); Python: mamba_kernels/ssd/cuda_walk.py's fused_walk_lab.
//
// Why: F1 + F2 move ~1,010 MB at shape 1 (x read twice, h_in written and read back); a walk that computes a chunk's
// outputs from the state it carries and then advances the state reads x and z once and keeps h_in on chip (504 MB).
// This lab measures that structure's pace before anything else is built on it (one walk a CTA, no hand-off between
// CTAs: the grid's last wave is uneven).
//
// A CTA walks sequence r, head hh (blockIdx.x = r h + hh): 256 threads, warps 0-3 the output warpgroup, warps 4-7 the
// state warpgroup.
// - The state warpgroup keeps S (64 p x 128 n, fp32) as wgmma accumulators (d[j][e]: p 16 w + g + 8 (e / 2), n 8 j +
//   2 q + e % 2). For chunk c (S = h_in of chunk c, already staged as bf16 in `pn`, F2's (p, n) tile layout): it scales
//   x_c into x' (row t times w_t = exp(a_L - a_t) dt'_t, a_L = a at the chunk's last token), S = exp(a_L) S + x'^T B_c
//   (wgmma m64n128k16, A = x' and B = B_c both MN-major), then, once the output warpgroup's C h_in^T of chunk c has
//   read `pn`, stages S as h_in of chunk c + 1, and once chunk c's outputs are done, fills the freed stage with chunk
//   c + 2 (cp.async). After the last chunk S is the final state.
// - The output warpgroup computes chunk c's 64 x 64 outputs as F2's item does (scan_causal's factored decays, warp w
//   owning rows 16 w ..): C h_in^T on wgmma (m64n64k16, A = C_c K-major, B = `pn`), the chunk's C B^T (K1's, chunk 64)
//   and z as fragments loaded from global memory into registers while that product runs, outputs stored from the
//   fragments.
// Shared memory (108,848 bytes: two CTAs an SM): two stages of C_c and B_c (64 t x 128 n, two 64-n blocks of 8 KB,
// 128-byte swizzled), x_c (64 t x 64 p, 128-byte rows, swizzled) and a / dt' (64 floats each); `pn` (16 KB); x'
// (8 KB); D (64 floats); six mbarriers: full[2] (the state warpgroup's 128 cp.async arrivals), empty[2] (the output
// warpgroup's 128 arrivals after a chunk), pn_full (128: h_in staged), pn_empty (128: C h_in^T has read it).
#pragma once
#include "common/cp_async.h"
#include "common/tma.h"
#include "ssd/ssd_scan_kernel.cuh"

namespace mamba_kernels {
namespace ssd_walk {

constexpr int kFQ = int(kSsdFusedChunk);
constexpr int kFTileBytes = kFQ * kN * 2;  // C or B of a chunk
constexpr int kFXBytes = kFQ * kP * 2;     // x of a chunk (and x')
constexpr int kFStageBytes = (2 * kFTileBytes + kFXBytes + 2 * kFQ * 4 + 1023) / 1024 * 1024;
constexpr int kFPnOff = 2 * kFStageBytes, kFXpOff = kFPnOff + kPnSwzBytes, kFDOff = kFXpOff + kFXBytes;
constexpr int kFBarOff = kFDOff + kP * 4;
constexpr int kFSmemBytes = kFBarOff + 6 * 8;
static_assert(kFStageBytes % 1024 == 0 && kFPnOff % 1024 == 0 && kFXpOff % 1024 == 0, "swizzled tiles 1 KB aligned");
static_assert(2 * (kFSmemBytes + 1024) <= 233472, "two CTAs an SM (228 KB, 1 KB reserved a CTA)");

// The fields of chunk c of sequence r, head hh.
struct FusedChunk {
  int64_t tok0, ab;  // first token (b l index), its offset in the (b, h, l) rows
  int ln;            // valid tokens (1..64)
};
__device__ __forceinline__ FusedChunk fused_chunk(const SsdFusedWalkParams& p, int64_t r, int hh, int c) {
  const int64_t start = int64_t(c) * kFQ, left = p.seqlen - start;
  return FusedChunk{r * p.seqlen + start, (r * p.nheads + hh) * p.seqlen + start, int(left < kFQ ? left : kFQ)};
}

// Stage fill by the state warpgroup's thread t (0..127, read afresh: fresh_tid, so that the fill's addresses are not
// kept live beside S across the walk's loop, where they spilled): C and B rows (64 x 16 chunks of 16 bytes each), x
// rows (64 x 8), a / dt'; rows past ln as zeros; then the thread's arrival on `full` once its copies have landed.
template <typename E>
__device__ __forceinline__ void fused_fill(const SsdFusedWalkParams& p, const FusedChunk& ch, int grp, int hh,
                                           char* st, uint64_t* full) {
  const int t = fresh_tid() - 128;
  const int64_t gn = p.ngroups * kN, hp = p.nheads * kP;
  const E* C = static_cast<const E*>(p.C) + ch.tok0 * gn + grp * kN;
  const E* B = static_cast<const E*>(p.B) + ch.tok0 * gn + grp * kN;
#pragma unroll
  for (int u = 0; u < 8; ++u) {
    const int i = t + 128 * u, r = i >> 4, cc = i & 15;
    const bool ok = r < ch.ln;
    const uint32_t off = uint32_t(cc >> 3) * 8192u + sw128_offset(r, 16 * (cc & 7));
    const int64_t src = ok ? r * gn + 8 * cc : 0;
    cp_async16_zfill(st + off, C + src, ok);
    cp_async16_zfill(st + kFTileBytes + off, B + src, ok);
  }
  const E* X = static_cast<const E*>(p.x) + ch.tok0 * hp + hh * kP;
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    const int i = t + 128 * u, r = i >> 3, cc = i & 7;
    const bool ok = r < ch.ln;
    cp_async16_zfill(st + 2 * kFTileBytes + sw128_offset(r, 16 * cc), X + (ok ? r * hp + 8 * cc : 0), ok);
  }
  const int r = t & (kFQ - 1);
  const bool ok = r < ch.ln;
  float* const rows = reinterpret_cast<float*>(st + 2 * kFTileBytes + kFXBytes);  // a, then dt'
  cp_async4_zfill(rows + t, (t < kFQ ? p.a : p.dtp) + (ok ? ch.ab + r : 0), ok);
  cp_async_mbar_arrive_noinc(full);
}

// S (the state warpgroup's accumulators, warp w of it) as bf16 into the (p, n) tile `pn` (pn_swz_at's layout).
__device__ __forceinline__ void fused_stage_pn(char* pn, const float (&S)[16][4], int w, int lane) {
  const int g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int j = 0; j < 16; ++j)
#pragma unroll
    for (int hf = 0; hf < 2; ++hf)
      *reinterpret_cast<uint32_t*>(pn + (j >> 3) * 8192 + sw128_offset(16 * w + g + 8 * hf, 16 * (j & 7) + 4 * q)) =
          ssd_cuda::pack_bf16(S[j][2 * hf], S[j][2 * hf + 1]);
}

// x' = x_c row t times exp(a_L - a_t) dt'_t (thread t of the state warpgroup: half a row, four 16-byte chunks).
__device__ __forceinline__ void fused_scale_x(char* xp, const char* xs, const float* as, const float* dts, float aL,
                                              int t) {
  const int r = t >> 1, c0 = (t & 1) * 4;
  const float w = decay_exp(aL * kLog2e, as[r]) * dts[r];
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    const uint32_t off = sw128_offset(r, 16 * (c0 + u));
    uint4 v = *reinterpret_cast<const uint4*>(xs + off);
    v.x = scale_pair(v.x, w, w);
    v.y = scale_pair(v.y, w, w);
    v.z = scale_pair(v.z, w, w);
    v.w = scale_pair(v.w, w, w);
    *reinterpret_cast<uint4*>(xp + off) = v;
  }
}

__device__ __forceinline__ uint32_t fused_ld32(const void* p) { return *static_cast<const uint32_t*>(p); }

// The output warp's causal part, scan_causal with the chunk's C B^T fragments from registers: cbf[sb] the earlier
// blocks sb < tb (rows g / g + 8, columns 2 q / 2 q + 8 of block sb: mma's A order), diag the diagonal block's.
template <typename E>
__device__ __forceinline__ void fused_causal(float (&acc)[8][4], const uint32_t (&cbf)[3][4], const uint32_t (&diag)[4],
                                             const char* xs, const float* as, const float* dts, int t0, int tb, int ln,
                                             int lane) {
  const E* x = reinterpret_cast<const E*>(xs);
  const int q = lane & 3, tA = t0 + (lane >> 2), tB = tA + 8;
  const float a_m = as[t0], a_m2 = a_m * kLog2e;
  scale_acc(acc, __expf(a_m));
#pragma unroll
  for (int sb = 0; sb < 3; ++sb) {
    if (sb >= tb) break;
    const int s = 16 * sb + 2 * q;
    const float u0 = decay_exp(a_m2, as[s]) * dts[s], u1 = decay_exp(a_m2, as[s + 1]) * dts[s + 1];
    const float u8 = decay_exp(a_m2, as[s + 8]) * dts[s + 8], u9 = decay_exp(a_m2, as[s + 9]) * dts[s + 9];
    typename Frag<E>::A af;
    af.r[0] = scale_pair(cbf[sb][0], u0, u1);
    af.r[1] = scale_pair(cbf[sb][1], u0, u1);
    af.r[2] = scale_pair(cbf[sb][2], u8, u9);
    af.r[3] = scale_pair(cbf[sb][3], u8, u9);
    a_times_tile<E, true>(acc, af, x, 16 * sb, lane);
  }
  const float a_tA = as[tA], a_tB = as[tB];
  scale_acc_rows(acc, tA < ln ? __expf(a_tA - a_m) : 0.f, tB < ln ? __expf(a_tB - a_m) : 0.f);
  const int s = t0 + 2 * q;
  const float as0 = as[s], as1 = as[s + 1], as8 = as[s + 8], as9 = as[s + 9];
  const float d0 = dts[s], d1 = dts[s + 1], d8 = dts[s + 8], d9 = dts[s + 9];
  const float a_tA2 = a_tA * kLog2e, a_tB2 = a_tB * kLog2e;
  typename Frag<E>::A af;
  af.r[0] = causal_pair(diag[0], tA, s, a_tA2, as0, as1, d0, d1, ln);
  af.r[1] = causal_pair(diag[1], tB, s, a_tB2, as0, as1, d0, d1, ln);
  af.r[2] = causal_pair(diag[2], tA, s + 8, a_tA2, as8, as9, d8, d9, ln);
  af.r[3] = causal_pair(diag[3], tB, s + 8, a_tB2, as8, as9, d8, d9, ln);
  a_times_tile<E, true>(acc, af, x, t0, lane);
}

// The output warp's epilogue: y += D x (x pairs by ldmatrix from the swizzled tile), out = y silu(z) (z fragments
// zr[half][j]), rows < ln stored from the fragments (out: the warp's first row).
template <typename E>
__device__ __forceinline__ void fused_epilogue(const float (&acc)[8][4], const char* xs, const float* Ds,
                                               const uint32_t (&zr)[2][8], bool has_z, E* out, int64_t hp, int t0,
                                               int ln, int lane) {
  const int g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    uint32_t xw[8];
#pragma unroll
    for (int jj = 0; jj < 2; ++jj)
      ssd_cuda::ldsm_x4(*reinterpret_cast<uint32_t(*)[4]>(xw + 4 * jj),
                        xs + sw128_chunk(t0 + 8 * hf + (lane & 7), 4 * jj + (lane >> 3), lane & 7));
    const bool store = t0 + g + 8 * hf < ln;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int c = 8 * j + 2 * q;
      float x0, x1;
      unpack_bf16x2(xw[j], x0, x1);
      float y0 = acc[j][2 * hf] + Ds[c] * x0, y1 = acc[j][2 * hf + 1] + Ds[c + 1] * x1;
      if (has_z) {
        float z0, z1;
        unpack_bf16x2(zr[hf][j], z0, z1);
        y0 *= silu_lab(z0);
        y1 *= silu_lab(z1);
      }
      if (store) *reinterpret_cast<uint32_t*>(out + (g + 8 * hf) * hp + c) = ssd_cuda::pack_bf16(y0, y1);
    }
  }
}

template <typename E>
__global__ void __launch_bounds__(256, 2) ssd_fused_walk_kernel(const SsdFusedWalkParams p) {
#if defined(MK_WGMMA_DEVICE) || !defined(__CUDA_ARCH__)
  char* const smem = reinterpret_cast<char*>(ssd_walk_smem);
  char* const pn = smem + kFPnOff;
  char* const xp = smem + kFXpOff;
  float* const Ds = reinterpret_cast<float*>(smem + kFDOff);
  uint64_t* const bars = reinterpret_cast<uint64_t*>(smem + kFBarOff);
  uint64_t *const full = bars, *const empty = bars + 2, *const pn_full = bars + 4, *const pn_empty = bars + 5;
  const int tid = threadIdx.x, lane = tid & 31;
  const int64_t r = blockIdx.x / p.nheads;
  const int hh = int(blockIdx.x - r * p.nheads), grp = int(hh / (p.nheads / p.ngroups));
  const int nch = int((p.seqlen + kFQ - 1) / kFQ);
  const int64_t hp = p.nheads * kP;
  const auto stage = [&](int c) { return smem + (c & 1) * kFStageBytes; };
  if (tid == 0)
    for (int i = 0; i < 6; ++i) mbar_init(bars + i, 128);
  if (tid < kP)
    Ds[tid] = p.D == nullptr ? 0.f : p.D[p.D_per_channel ? hh * kP + tid : hh];
  __syncthreads();
  if (tid >= 128) {  // the state warpgroup
    const int t = tid - 128, w = t >> 5, g = lane >> 2, q = lane & 3;
    const int64_t sbase = (r * p.nheads + hh) * int64_t(kP * kN);
    float S[16][4];
#pragma unroll
    for (int j = 0; j < 16; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        S[j][e] = p.init == nullptr ? 0.f : p.init[sbase + (16 * w + g + 8 * (e >> 1)) * kN + 8 * j + 2 * q + (e & 1)];
    for (int c = 0; c < 2 && c < nch; ++c) fused_fill<E>(p, fused_chunk(p, r, hh, c), grp, hh, stage(c), full + c);
    if (nch > 0) {
      fused_stage_pn(pn, S, w, lane);
      fence_proxy_async();
      mbar_arrive(pn_full);
    }
    for (int c = 0; c < nch; ++c) {
      const FusedChunk ch = fused_chunk(p, r, hh, c);
      char* const st = stage(c);
      const float* as = reinterpret_cast<const float*>(st + 2 * kFTileBytes + kFXBytes);
      mbar_wait(full + (c & 1), unsigned(c >> 1) & 1u);  // chunk c's tiles (this warpgroup's copies)
      const float aL = as[ch.ln - 1];
      fused_scale_x(xp, st + 2 * kFTileBytes, as, as + kFQ, aL, t);
      fence_proxy_async();  // x' and the landed B tile, for wgmma
      named_bar_sync<128>(2);
      const float fL = __expf(aL);
#pragma unroll
      for (int j = 0; j < 16; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) S[j][e] *= fL;
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kFQ / 16; ++kk)
        wgmma_ss_bf16<true, true, true>(S, wg_desc<128>(xp + 2048 * kk),
                                        wg_desc<128>(st + kFTileBytes + 2048 * kk, 8192));
      wgmma_commit();
      wgmma_wait<0>();
      named_bar_sync<128>(2);  // every warp's part of the product is done: x' may be rewritten
      if (c + 1 < nch) {       // h_in of chunk c + 1, once chunk c's C h_in^T has read pn
        mbar_wait(pn_empty, unsigned(c) & 1u);
        fused_stage_pn(pn, S, w, lane);
        fence_proxy_async();
        mbar_arrive(pn_full);
      }
      if (c + 2 < nch) {  // chunk c + 2 into this stage, once chunk c's outputs are done
        mbar_wait(empty + (c & 1), unsigned(c >> 1) & 1u);
        fused_fill<E>(p, fused_chunk(p, r, hh, c + 2), grp, hh, st, full + (c & 1));
      }
    }
    if (p.final_states != nullptr)
#pragma unroll
      for (int j = 0; j < 16; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          p.final_states[sbase + (16 * w + g + 8 * (e >> 1)) * kN + 8 * j + 2 * q + (e & 1)] = S[j][e];
    cp_async_wait_all();
  } else {  // the output warpgroup: warp w owns rows 16 w .. 16 w + 15 of a chunk
    const int w = tid >> 5, t0 = 16 * w, g = lane >> 2, q = lane & 3;
    const E* const zg = static_cast<const E*>(p.z);
    const int64_t cb_stride = int64_t(p.ngroups) * kFQ * kFQ;
    for (int c = 0; c < nch; ++c) {
      const FusedChunk ch = fused_chunk(p, r, hh, c);
      const char* const st = stage(c);
      mbar_wait(full + (c & 1), unsigned(c >> 1) & 1u);
      mbar_wait(pn_full, unsigned(c) & 1u);
      fence_proxy_async();  // the stage's copies and the staged pn, for wgmma
      // C B^T (chunk slot r nch + c, group grp) and z fragments, loaded while C h_in^T runs
      const E* cbg = static_cast<const E*>(p.cb) + (r * nch + c) * cb_stride + int64_t(grp) * kFQ * kFQ;
      const int tA = t0 + g, tB = tA + 8;
      const bool okA = tA < ch.ln, okB = tB < ch.ln;
      uint32_t cbf[3][4], diag[4], zr[2][8];
#pragma unroll
      for (int sb = 0; sb < 3; ++sb) {
        const bool on = sb < w;
        const int s = 16 * sb + 2 * q;
        cbf[sb][0] = on && okA ? fused_ld32(cbg + tA * kFQ + s) : 0u;
        cbf[sb][1] = on && okB ? fused_ld32(cbg + tB * kFQ + s) : 0u;
        cbf[sb][2] = on && okA ? fused_ld32(cbg + tA * kFQ + s + 8) : 0u;
        cbf[sb][3] = on && okB ? fused_ld32(cbg + tB * kFQ + s + 8) : 0u;
      }
      diag[0] = okA ? fused_ld32(cbg + tA * kFQ + t0 + 2 * q) : 0u;
      diag[1] = okB ? fused_ld32(cbg + tB * kFQ + t0 + 2 * q) : 0u;
      diag[2] = okA ? fused_ld32(cbg + tA * kFQ + t0 + 2 * q + 8) : 0u;
      diag[3] = okB ? fused_ld32(cbg + tB * kFQ + t0 + 2 * q + 8) : 0u;
      const int64_t orow = ch.tok0 * hp + hh * kP;  // the chunk's first row of x / z / out
#pragma unroll
      for (int hf = 0; hf < 2; ++hf)
#pragma unroll
        for (int j = 0; j < 8; ++j)
          zr[hf][j] = zg != nullptr && (hf == 0 ? okA : okB)
                          ? fused_ld32(zg + orow + (tA + 8 * hf) * hp + 8 * j + 2 * q)
                          : 0u;
      float acc[8][4];
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kN / 16; ++kk) {
        const WgDesc a = wg_desc<128>(st + (kk >> 2) * 8192 + (kk & 3) * 32);
        const WgDesc b = wg_desc<128>(pn + (kk >> 2) * 8192 + (kk & 3) * 32);
        if (kk == 0) wgmma_ss_bf16<false, false, false>(acc, a, b);
        else wgmma_ss_bf16<true, false, false>(acc, a, b);
      }
      wgmma_commit();
      wgmma_wait<0>();
      mbar_arrive(pn_empty);
      if (t0 < ch.ln) {
        const char* xs = st + 2 * kFTileBytes;
        const float* as = reinterpret_cast<const float*>(xs + kFXBytes);
        fused_causal<E>(acc, cbf, diag, xs, as, as + kFQ, t0, w, ch.ln, lane);
        fused_epilogue<E>(acc, xs, Ds, zr, zg != nullptr, static_cast<E*>(p.out) + orow + t0 * hp, hp, t0, ch.ln,
                          lane);
      }
      mbar_arrive(empty + (c & 1));
    }
  }
#else
  __trap();
#endif
}

}  // namespace ssd_walk
}  // namespace mamba_kernels
