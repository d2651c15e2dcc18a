// The forward output stage (F2) of the chunked SSD's Triton pipeline as a persistent head-walk CUDA kernel (sm_80+,
// mma.sync, bf16; no torch; ssd_scan_wg_kernel: C h_in^T on wgmma, sm_90a). Semantics and layouts: SsdScanParams in
// ssd.h; the walk, the work split and why: ssd_walk.cuh. The Triton twin is _ssd_chunk_scan_kernel
// (mamba_kernels/ssd/_triton_fwd.py). Stage tiles: x, z, h_in; resident: C B^T, C.
//
// Warp w owns the 16 target rows t of block tb = warp_row_block(w). With a_m = a at the block's first token,
// exp(a_t - a_s) = v_t u_s for s in earlier blocks (v_t = exp(a_t - a_m), u_s = exp(a_m - a_s), both <= 1 for
// decaying a) and exp(a_t) = v_t exp(a_m), hence
//   y_t = v_t (exp(a_m) (C h_in^T)_t + sum_{s < 16 tb} cb(t, s) u_s dt'_s x_s) + (diagonal block, exact decays) + D x_t
// and out = y silu(z); 4 exps a lane an earlier block.
#pragma once
#include "ssd/ssd_walk.cuh"
#include "ssd/ssd_walk_ring.cuh"

namespace mamba_kernels {
namespace ssd_walk {

// exp(a - b) for decays as exp2 of one fma, a2 = a log2(e) given (hoisted by the caller): one instruction fewer an
// exp than __expf(a - b) (lab bit 3 of session 37, adopted in session 38 with sw128_chunk: the TMA ring's causal
// product 79 -> 70 instructions a block; the same values up to the exponent's rounding).
constexpr float kLog2e = 1.4426950408889634f;
__device__ __forceinline__ float decay_exp(float a2, float b) { return exp2f(fmaf(b, -kLog2e, a2)); }

// (cb(t, s), cb(t, s + 1)) of one A register times exp(a_t - a_s) dt'_s where s <= t < ln, else 0 (select, never
// multiply: the upper triangle may hold anything). Diagonal blocks only. a_t2 = a_t log2(e).
__device__ __forceinline__ uint32_t causal_pair(uint32_t w, int t, int s, float a_t2, float a_s0, float a_s1, float d0,
                                                float d1, int ln) {
  float lo, hi;
  unpack_bf16x2(w, lo, hi);
  lo = (s <= t && t < ln) ? lo * decay_exp(a_t2, a_s0) * d0 : 0.f;
  hi = (s + 1 <= t && t < ln) ? hi * decay_exp(a_t2, a_s1) * d1 : 0.f;
  return ssd_cuda::pack_bf16(lo, hi);
}

// scale_pair for the causal product's earlier blocks; lab bit 5: one bf16x2 multiply by the rounded (u0, u1).
__device__ __forceinline__ uint32_t scale_pair_lab(uint32_t w, float u0, float u1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if constexpr ((MK_SSD_RING_LAB & 32) != 0) {
    uint32_t d;
    asm("mul.rn.bf16x2 %0, %1, %2;" : "=r"(d) : "r"(w), "r"(ssd_cuda::pack_bf16(u0, u1)));
    return d;
  }
#endif
  return scale_pair(w, u0, u1);
}

// silu(z); lab bit 4: z (1 + tanh(z / 2)) / 2 by one tanh.approx; lab bit 6: one MUFU (e = exp(-|z|)) and 1 / (1 + e)
// on the FMA pipe (a linear start on [1, 2], relative error <= 1/17, then two Newton steps: <= ~1.2e-5), sigmoid(z) =
// z >= 0 ? r : e r (the MUFU pipe, not the issue slots, may be what F2's epilogue waits on: 2 MUFU an element).
__device__ __forceinline__ float silu_lab(float z) {
#if defined(__CUDA_ARCH__)
  if constexpr ((MK_SSD_RING_LAB & 64) != 0) {
    const float e = exp2f(-fabsf(z) * kLog2e), d = 1.f + e;
    float r = fmaf(-8.f / 17.f, d, 24.f / 17.f);
    r = fmaf(r, fmaf(-d, r, 1.f), r);
    r = fmaf(r, fmaf(-d, r, 1.f), r);
    return z * (z >= 0.f ? r : e * r);
  }
  if constexpr ((MK_SSD_RING_LAB & 16) != 0) {
    float t;
    asm("tanh.approx.f32 %0, %1;" : "=f"(t) : "f"(0.5f * z));
    return 0.5f * z * (1.f + t);
  }
#endif
  return __fdividef(z, 1.f + __expf(-z));
}

// A warp's epilogue for its 16 rows t0 .. t0 + 15 (acc: y without D x, in the accumulator order): y += D x; ypre = y;
// out = y silu(z) (rows >= ln: computed on the zero rows, not stored). kLdsm (MK_SSD_WALK_LDSM, the default; H200 shape
// 1: F2 231.4-234.7 us against 236.3-237.5): a half's x and z pairs come by two ldmatrix.x4 each (the
// accumulator's order is ldmatrix's) instead of 8 four-byte shared loads each (F2's epilogue stalls on those loads:
// ncu, session 27). kStageInZ (the ring, ssd_walk_ring.cuh): sw is the warp's own z rows, rewritten only after every
// lane has read them. kSwzXZ (with kLdsm and kStageInZ: the TMA-filled ring): x and z 128-byte-swizzled, unpadded
// (a_times_tile's kSwz), the staging too (store_block_staged_sw). St: Stage<E> or RingStage<E>.
template <typename E, bool kLdsm = false, bool kStageInZ = false, bool kSwzXZ = false, typename St>
__device__ __forceinline__ void scan_epilogue(const SsdScanParams& p, const Item& it, const float (&acc)[8][4],
                                              const E* xs, const St& st, int t0, int lane, E* sw) {
  static_assert(!kSwzXZ || (kLdsm && kStageInZ), "the swizzled tiles are read by ldmatrix and staged in z's rows");
  const E* zs = st.tile1();
  const float* Ds = st.D();
  const int ln = it.ln, g = lane >> 2, q = lane & 3, tA = t0 + g;
  const int64_t hp = p.w.nheads * kP, base = item_tile_offset(p.w, it);
  uint32_t yv[2][8], ov[2][8];
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    const int t = tA + 8 * hf;
    // (row t, columns 8 j + 2 q, + 1) of x and z: by ldmatrix, lane 8 m + r giving row t0 + 8 hf + r of matrix m
    // (columns 8 (4 jj + m) ..)
    uint32_t xw[8], zw[8];
    if constexpr (kLdsm) {
#pragma unroll
      for (int jj = 0; jj < 2; ++jj) {
        const int r = t0 + 8 * hf + (lane & 7), c = 4 * jj + (lane >> 3);  // row, 16-byte chunk
        const int off = !kSwzXZ ? 2 * (r * kLdP + 8 * c) : int(sw128_chunk(r, c, lane & 7));  // bytes
        ssd_cuda::ldsm_x4(*reinterpret_cast<uint32_t(*)[4]>(xw + 4 * jj), reinterpret_cast<const char*>(xs) + off);
        if (p.z != nullptr)
          ssd_cuda::ldsm_x4(*reinterpret_cast<uint32_t(*)[4]>(zw + 4 * jj), reinterpret_cast<const char*>(zs) + off);
      }
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int c = 8 * j + 2 * q;
      float x0, x1;
      unpack_bf16x2(kLdsm ? xw[j] : *reinterpret_cast<const uint32_t*>(xs + t * kLdP + c), x0, x1);
      float y0 = acc[j][2 * hf] + Ds[c] * x0, y1 = acc[j][2 * hf + 1] + Ds[c + 1] * x1;
      yv[hf][j] = ssd_cuda::pack_bf16(y0, y1);
      if (p.z != nullptr) {
        float z0, z1;
        unpack_bf16x2(kLdsm ? zw[j] : *reinterpret_cast<const uint32_t*>(zs + t * kLdP + c), z0, z1);
        y0 *= silu_lab(z0);
        y1 *= silu_lab(z1);
      }
      ov[hf][j] = ssd_cuda::pack_bf16(y0, y1);
    }
  }
  E* const outg = static_cast<E*>(p.out) + base + t0 * hp;
  E* const ypreg = p.ypre != nullptr ? static_cast<E*>(p.ypre) + base + t0 * hp : nullptr;
  if (p.w.staged_stores) {
    if constexpr (kStageInZ) __syncwarp();  // the lanes' z reads before the staging writes over them
    if constexpr (kStageInZ && (MK_SSD_RING_LAB & 2) != 0) {  // lab: staged (kept by the compiler), not stored
      if constexpr (kSwzXZ) {
        if (ypreg != nullptr) stage_block_sw(reinterpret_cast<char*>(sw), yv, lane);
        stage_block_sw(reinterpret_cast<char*>(sw), ov, lane);
      } else {
        if (ypreg != nullptr) stage_block<E, 8, kLdP>(sw, yv, lane);
        stage_block<E, 8, kLdP>(sw, ov, lane);
      }
      return;
    }
    if constexpr (kSwzXZ) {
      if (ypreg != nullptr) store_block_staged_sw<E>(reinterpret_cast<char*>(sw), yv, ypreg, hp, ln - t0, lane);
      store_block_staged_sw<E>(reinterpret_cast<char*>(sw), ov, outg, hp, ln - t0, lane);
      return;
    }
    if (ypreg != nullptr) store_block_staged<E, 8, kLdP>(sw, yv, ypreg, hp, ln - t0, lane);
    store_block_staged<E, 8, kLdP>(sw, ov, outg, hp, ln - t0, lane);
    return;
  }
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    const int r = g + 8 * hf;
    if (t0 + r >= ln) continue;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      if (ypreg != nullptr) *reinterpret_cast<uint32_t*>(ypreg + r * hp + 8 * j + 2 * q) = yv[hf][j];
      *reinterpret_cast<uint32_t*>(outg + r * hp + 8 * j + 2 * q) = ov[hf][j];
    }
  }
}

// acc (16 x 64, C h_in^T of the warp's rows t0 .. t0 + 15 over n, unscaled) becomes y without D x: acc exp(a_t) plus
// the causal sum over the chunk's earlier blocks (u-weighted, then v-scaled; see the header) and the diagonal block.
template <typename E, bool kSwzX = false>
__device__ __forceinline__ void scan_causal(float (&acc)[8][4], const E* cbs, const E* xs, const float* as,
                                            const float* dts, int t0, int tb, int ln, int lane) {
  const int g = lane >> 2, q = lane & 3, m = lane >> 3, r8 = lane & 7;
  const int tA = t0 + g, tB = tA + 8;
  const float a_m = as[t0], a_m2 = a_m * kLog2e;
  scale_acc(acc, __expf(a_m));
  // earlier source blocks: A(t, s) = cb(t, s) u_s dt'_s (matrices (t 0-7 / 8-15) x (s 0-7 / 8-15), t fastest)
  // (lab bit 2: 3 or 4 blocks a warp, the team's 28 in all, as if the work were balanced across its warps)
  const int nsb = (MK_SSD_RING_LAB & 4) != 0 ? 3 + (tb & 1) : tb;
  for (int sb = 0; sb < nsb; ++sb) {
    uint32_t r[4];
    ssd_cuda::ldsm_x4(r, cbs + (t0 + r8 + 8 * (m & 1)) * kLdQ + 16 * sb + 8 * (m >> 1));
    const int s = 16 * sb + 2 * q;
    const float u0 = decay_exp(a_m2, as[s]) * dts[s], u1 = decay_exp(a_m2, as[s + 1]) * dts[s + 1];
    const float u8 = decay_exp(a_m2, as[s + 8]) * dts[s + 8], u9 = decay_exp(a_m2, as[s + 9]) * dts[s + 9];
    typename Frag<E>::A af;
    af.r[0] = scale_pair_lab(r[0], u0, u1);
    af.r[1] = scale_pair_lab(r[1], u0, u1);
    af.r[2] = scale_pair_lab(r[2], u8, u9);
    af.r[3] = scale_pair_lab(r[3], u8, u9);
    a_times_tile<E, kSwzX>(acc, af, xs, 16 * sb, lane);
  }
  const float a_tA = as[tA], a_tB = as[tB];
  scale_acc_rows(acc, tA < ln ? __expf(a_tA - a_m) : 0.f, tB < ln ? __expf(a_tB - a_m) : 0.f);
  {  // diagonal block: exact, masked decays
    uint32_t r[4];
    ssd_cuda::ldsm_x4(r, cbs + (t0 + r8 + 8 * (m & 1)) * kLdQ + t0 + 8 * (m >> 1));
    const int s = t0 + 2 * q;
    const float as0 = as[s], as1 = as[s + 1], as8 = as[s + 8], as9 = as[s + 9];
    const float d0 = dts[s], d1 = dts[s + 1], d8 = dts[s + 8], d9 = dts[s + 9];
    typename Frag<E>::A af;
    const float a_tA2 = a_tA * kLog2e, a_tB2 = a_tB * kLog2e;
    // (any order gives the same values; this one is the order whose SASS the H200 tested and timed, d86ef82)
    af.r[1] = causal_pair(r[1], tB, s, a_tB2, as0, as1, d0, d1, ln);
    af.r[2] = causal_pair(r[2], tA, s + 8, a_tA2, as8, as9, d8, d9, ln);
    af.r[0] = causal_pair(r[0], tA, s, a_tA2, as0, as1, d0, d1, ln);
    af.r[3] = causal_pair(r[3], tB, s + 8, a_tB2, as8, as9, d8, d9, ln);
    a_times_tile<E, kSwzX>(acc, af, xs, t0, lane);
  }
}

// One item; kWgmma (sm_90a; the swizzled layouts of run_walk's kSwz): C h_in^T on wgmma, the warpgroup's 64 rows of
// C (warp w of the team owns the rows of warp_row_block(w)) times the (p, n) tile, 8 k16 steps with A and B from
// shared memory, issued when the item starts (its team barrier has the warps together anyway; every warp takes part
// before one whose block lies past ln leaves) and waited for after the stage's x rows; the causal product and the
// epilogue stay per warp on mma.sync. Why: C h_in^T by mma.sync costs each warp 40 ldmatrix and 64 mma an item and
// stalls on the MIO queue (12% of F2's samples, ncu session 22). Doing the causal product on wgmma as well (A
// fragments from registers) was slower, 317 us against 270 at shape 1 (session 26): its four warps then wait for each
// other's fragments at every k16 step.
template <typename E, bool kWgmma, bool kLdsm, bool kStageInZ = false, bool kSwzXZ = false, typename St,
          typename WaitRest, typename WaitOwn>
__device__ __forceinline__ void scan_item(const SsdScanParams& p, const Item& it, const E* cbs, const E* cs,
                                          const St& st, int warp, int lane, E* sw, const WaitRest& wait_rest,
                                          const WaitOwn& wait_own) {
  const E* xs = st.tile0();
  const float* as = st.a();
  const float* dts = st.dt();
  const int ln = it.ln;
  const int tb = warp_row_block(warp), t0 = 16 * tb;
  float acc[8][4];
  if constexpr (kWgmma) {
    rows_times_pn_wgmma<E>(acc, cs, st.pn(), warp);
    wait_rest();  // x (and z unless the warp loads its own z rows)
    wgmma_wait<0>();
    if (t0 >= ln) {  // no valid target row in this warp's block
      wait_own();
      return;
    }
  } else {
    if (t0 >= ln) {  // no valid target row in this warp's block
      wait_rest();
      wait_own();
      return;
    }
    rows_times_pn<E>(acc, cs, t0, st.pn(), lane);  // C h_in^T over n
    wait_rest();  // x (and z unless the warp loads its own z rows: the stage's second cp.async group)
  }
  scan_causal<E, kSwzXZ>(acc, cbs, xs, as, dts, t0, tb, ln, lane);
  wait_own();  // z rows of this warp's block (SsdWalkParams::own_rows)
  scan_epilogue<E, kLdsm, kStageInZ, kSwzXZ>(p, it, acc, xs, st, t0, lane, sw);
}

// kTeams 1: one team of 8 warps; 2: two teams (16 warps, 128 registers a thread). See run_walk.
template <typename E, int kTeams>
__global__ void __launch_bounds__(kTeams * kThreads, 1) ssd_scan_kernel(const SsdScanParams p) {
  run_walk<E, kTeams>(p.w, p.x, p.z, p.hin, p.w.own_rows ? 3 : 2,
                      [&](const Item& it, const E* cbs, const E* rs, const Stage<E>& st, int warp, int lane, E* sw,
                          const auto& wait_rest, const auto& wait_own) {
                        scan_item<E, false, false>(p, it, cbs, rs, st, warp, lane, sw, wait_rest, wait_own);
                      });
}

// The wgmma variant (two teams; sm_90a device code only: elsewhere it traps, and the dispatch never launches it there);
// kLdsm: scan_epilogue's ldmatrix loads.
template <typename E, bool kLdsm = false>
__global__ void __launch_bounds__(2 * kThreads, 1) ssd_scan_wg_kernel(const SsdScanParams p) {
#if defined(MK_WGMMA_DEVICE) || !defined(__CUDA_ARCH__)
  run_walk<E, 2, true>(p.w, p.x, p.z, p.hin, p.w.own_rows ? 3 : 2,
                       [&](const Item& it, const E* cbs, const E* rs, const Stage<E>& st, int warp, int lane, E* sw,
                           const auto& wait_rest, const auto& wait_own) {
                         scan_item<E, true, kLdsm>(p, it, cbs, rs, st, warp, lane, sw, wait_rest, wait_own);
                       });
#else
  __trap();
#endif
}

// The wgmma variant on the three-stage ring (MK_SSD_WALK_RING; ssd_walk_ring.cuh): the ldmatrix epilogue, the output
// staged in the warp's own z rows; sm_90a device code only, as ssd_scan_wg_kernel. kTeams 1 (MK_SSD_WALK_RING_TEAMS=1,
// a lab): one team of 8 warps, launched with 256 threads but bounded as if 384 ran (at most 168 registers a thread),
// the budget of the fused design's output team beside its state warpgroup.
template <typename E, int kTeams = 2>
__global__ void __launch_bounds__((kTeams == 1 ? 3 : 4) * kThreads / 2, 1) ssd_scan_ring_kernel(const SsdScanParams p) {
#if defined(MK_WGMMA_DEVICE) || !defined(__CUDA_ARCH__)
  const auto none = [] {};
  run_walk_ring<E, false, kTeams>(p.w, p.x, p.z, p.hin,
                   [&](const Item& it, const E* cbs, const E* rs, const RingStage<E>& st, int warp, int lane, E* sw) {
                     scan_item<E, true, true, true>(p, it, cbs, rs, st, warp, lane, sw, none, none);
                   });
#else
  __trap();
#endif
}

// The ring filled by the copy engine (MK_SSD_WALK_RING_TMA; load_stage_ring_tma): x / z 128-byte-swizzled.
template <typename E>
__global__ void __launch_bounds__(2 * kThreads, 1)
    ssd_scan_ring_tma_kernel(const __grid_constant__ SsdScanTmaParams p) {
#if defined(MK_WGMMA_DEVICE) || !defined(__CUDA_ARCH__)
  const auto none = [] {};
  run_walk_ring<E, true>(
      p.w, p.x, p.z, p.hin,
      [&](const Item& it, const E* cbs, const E* rs, const RingStage<E>& st, int warp, int lane, E* sw) {
        scan_item<E, true, true, true, true>(p, it, cbs, rs, st, warp, lane, sw, none, none);
      },
      &p);
#else
  __trap();
#endif
}

}  // namespace ssd_walk
}  // namespace mamba_kernels
