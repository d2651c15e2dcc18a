// The dx stage (B2) of the chunked SSD's Triton backward as a persistent head-walk CUDA kernel (sm_80+, mma.sync,
// bf16; no torch). Semantics and layouts: SsdDxParams in ssd.h; the walk, the work split and why: ssd_walk.cuh. The
// Triton twin is _ssd_bwd_dx_kernel (mamba_kernels/ssd/_triton_bwd.py) with DA_OUT off (the state-out d a term is
// the dC launch's). Stage tiles: dy, x, dS; resident: C B^T, B.
#pragma once
#include "ssd/ssd_walk.cuh"

namespace mamba_kernels {
namespace ssd_walk {

// (cb(t, s), cb(t + 1, s)) of one A register, times exp(a_t - a_s) where s <= t < ln, else 0 (the unwritten upper
// triangle may hold anything: select, never multiply). Diagonal blocks only.
__device__ __forceinline__ uint32_t decay_pair(uint32_t w, int s, int t, float a_s, float a_t0, float a_t1, int ln) {
  float lo, hi;
  unpack_bf16x2(w, lo, hi);
  lo = (t >= s && t < ln) ? lo * __expf(a_t0 - a_s) : 0.f;
  hi = (t + 1 >= s && t + 1 < ln) ? hi * __expf(a_t1 - a_s) : 0.f;
  return ssd_cuda::pack_bf16(lo, hi);
}

// v[0 .. H) += the partner lane's matching half (lane ^ lane_xor): the upper lane keeps v[H .. 2H) in v[0 .. H), the
// lower one v[0 .. H); summed with what the partner held there.
template <int H>
__device__ __forceinline__ void swap_halves_sum(float (&v)[16], bool upper, int lane_xor) {
#pragma unroll
  for (int i = 0; i < H; ++i) {
    const float send = upper ? v[i] : v[i + H];
    const float keep = upper ? v[i + H] : v[i];
    v[i] = keep + __shfl_xor_sync(0xffffffffu, send, lane_xor);
  }
}

// One item; warp w owns the source rows of block warp_row_block(w). With a_r = a at the block's last valid token,
// exp(a_t - a_s) = u_t v_s for t in later blocks (u_t = exp(a_t - a_r), v_s = exp(a_r - a_s)) and e_s = w_r v_s
// (w_r = exp(a_L - a_r)), hence  du_s = v_s (w_r P_s + sum_t cb(t, s) u_t dy_t) + (diagonal block, exact decays),
// P = B dS^T: 4 exps a lane a later block instead of 8 masked ones.
template <typename E, typename WaitRest, typename WaitOwn>
__device__ __forceinline__ void dx_item(const SsdDxParams& p, const Item& it, const E* cbs, const E* bs,
                                        const Stage<E>& st, int warp, int lane, E* sw, const WaitRest& wait_rest,
                                        const WaitOwn& wait_own) {
  const E* dys = st.tile0();
  const E* xs = st.tile1();
  const float* as = st.a();
  const float* dts = st.dt();
  const float* Ds = st.D();
  const int ln = it.ln;
  const int rb = warp_row_block(warp), s0 = 16 * rb;
  if (s0 >= ln) {  // no valid source row in this warp's block
    wait_rest();
    wait_own();
    return;
  }
  const int g = lane >> 2, q = lane & 3, m = lane >> 3, r8 = lane & 7;
  const int sA = s0 + g, sB = sA + 8;
  const float a_r = as[s0 + 15 < ln ? s0 + 15 : ln - 1], a_last = as[ln - 1];
  float acc[8][4];
  rows_times_pn<E>(acc, bs, s0, st.pn(), lane);  // P = B dS^T over n
  // x rows sA / sB in registers (also for the epilogue); q_s = x_s . P_s, scaled by e_s below
  uint32_t xw[8][2];
  float qv[2] = {0.f, 0.f};
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      xw[j][hf] = *reinterpret_cast<const uint32_t*>(xs + (sA + 8 * hf) * kLdP + 8 * j + 2 * q);
      float x0, x1;
      unpack_bf16x2(xw[j][hf], x0, x1);
      qv[hf] += x0 * acc[j][2 * hf] + x1 * acc[j][2 * hf + 1];
    }
  const float w_r = __expf(a_last - a_r);
  scale_acc(acc, w_r);
  wait_rest();  // dy (the stage's second cp.async group with split_wait)
  wait_own();   // (the third group is empty here)
  // later target blocks: A(s, t) = cb(t, s) u_t (CB rows >= ln are zero in shared memory, u_t = 0 there)
  for (int tb = rb + 1; tb < kQ / 16 && 16 * tb < ln; ++tb) {
    uint32_t r[4];  // matrices (t 0-7, s 0-7) (t 0-7, s 8-15) (t 8-15, s 0-7) (t 8-15, s 8-15), transposed
    ssd_cuda::ldsm_x4_trans(r, cbs + (16 * tb + r8 + 8 * (m >> 1)) * kLdQ + s0 + 8 * (m & 1));
    const int t0 = 16 * tb + 2 * q;
    const float u0 = t0 < ln ? __expf(as[t0] - a_r) : 0.f, u1 = t0 + 1 < ln ? __expf(as[t0 + 1] - a_r) : 0.f;
    const float u8 = t0 + 8 < ln ? __expf(as[t0 + 8] - a_r) : 0.f;
    const float u9 = t0 + 9 < ln ? __expf(as[t0 + 9] - a_r) : 0.f;
    typename Frag<E>::A af;
    af.r[0] = scale_pair(r[0], u0, u1);
    af.r[1] = scale_pair(r[1], u0, u1);
    af.r[2] = scale_pair(r[2], u8, u9);
    af.r[3] = scale_pair(r[3], u8, u9);
    a_times_tile<E>(acc, af, dys, 16 * tb, lane);
  }
  const float a_sA = as[sA], a_sB = as[sB];
  const float v[2] = {sA < ln ? __expf(a_r - a_sA) : 0.f, sB < ln ? __expf(a_r - a_sB) : 0.f};
  scale_acc_rows(acc, v[0], v[1]);
  qv[0] *= w_r * v[0];
  qv[1] *= w_r * v[1];
  {  // diagonal block: exact, masked decays
    uint32_t r[4];
    ssd_cuda::ldsm_x4_trans(r, cbs + (s0 + r8 + 8 * (m >> 1)) * kLdQ + s0 + 8 * (m & 1));
    const int t0 = s0 + 2 * q;
    const float at0 = as[t0], at1 = as[t0 + 1], at8 = as[t0 + 8], at9 = as[t0 + 9];
    typename Frag<E>::A af;
    af.r[0] = decay_pair(r[0], sA, t0, a_sA, at0, at1, ln);
    af.r[1] = decay_pair(r[1], sB, t0, a_sB, at0, at1, ln);
    af.r[2] = decay_pair(r[2], sA, t0 + 8, a_sA, at8, at9, ln);
    af.r[3] = decay_pair(r[3], sB, t0 + 8, a_sB, at8, at9, ln);
    a_times_tile<E>(acc, af, dys, s0, lane);
  }
  // epilogue: dx = dt' du + D dy; d dt' row sums x.du; dD column sums dy.x
  float dDp[16];  // [2 j + e]: column 8 j + 2 q + e
#pragma unroll
  for (int i = 0; i < 16; ++i) dDp[i] = 0.f;
  float dal = 0.f;
  const int64_t hp = p.w.nheads * kP;
  E* dxg = static_cast<E*>(p.dx) + item_tile_offset(p.w, it);
  uint32_t dv[2][8];  // dx pairs (rows sA / sB, columns 8 j + 2 q)
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    const int s = sA + 8 * hf;
    const float dt_s = dts[s];
    float ddt = 0.f;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      float x0, x1, y0, y1;
      unpack_bf16x2(xw[j][hf], x0, x1);
      unpack_bf16x2(*reinterpret_cast<const uint32_t*>(dys + s * kLdP + 8 * j + 2 * q), y0, y1);
      const float du0 = acc[j][2 * hf], du1 = acc[j][2 * hf + 1];
      ddt += x0 * du0 + x1 * du1;
      dDp[2 * j] += y0 * x0;
      dDp[2 * j + 1] += y1 * x1;
      dv[hf][j] = ssd_cuda::pack_bf16(du0 * dt_s + Ds[8 * j + 2 * q] * y0, du1 * dt_s + Ds[8 * j + 2 * q + 1] * y1);
    }
    float qs = qv[hf];
    ddt += __shfl_xor_sync(0xffffffffu, ddt, 1);
    ddt += __shfl_xor_sync(0xffffffffu, ddt, 2);
    qs += __shfl_xor_sync(0xffffffffu, qs, 1);
    qs += __shfl_xor_sync(0xffffffffu, qs, 2);
    if (q == 0 && s < ln) {
      atomicAdd(p.ddtp + it.ab + s, ddt);
      atomicAdd(p.da + it.ab + s, -dt_s * qs);
      dal += dt_s * qs;
    }
  }
  if (p.w.staged_stores) {
    store_block_staged<E, 8, kLdP>(sw, dv, dxg + s0 * hp, hp, ln - s0, lane);
  } else {
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      const int s = sA + 8 * hf;
      if (s >= ln) continue;
#pragma unroll
      for (int j = 0; j < 8; ++j) *reinterpret_cast<uint32_t*>(dxg + s * hp + 8 * j + 2 * q) = dv[hf][j];
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) dal += __shfl_xor_sync(0xffffffffu, dal, o);
  if (lane == 0) atomicAdd(p.dalast + it.k * p.w.nheads + it.hh, dal);
  if (p.dD != nullptr) {
    // sum the 16 column partials over the 8 row groups g, halving the values a lane holds at each step (lanes
    // differing in bit b of g swap halves): the lane ends with the column pair 8 jb + 2 q, +1 of its own
    swap_halves_sum<8>(dDp, g & 1, 4);
    swap_halves_sum<4>(dDp, g & 2, 8);
    swap_halves_sum<2>(dDp, g & 4, 16);
    const int jb = (g & 1) * 4 + (g & 2) + ((g >> 2) & 1);  // (2 jb) = 8 (g&1) + 4 (g>>1 &1) + 2 (g>>2 &1)
    atomicAdd(p.dD + it.hh * kP + 8 * jb + 2 * q, dDp[0]);
    atomicAdd(p.dD + it.hh * kP + 8 * jb + 2 * q + 1, dDp[1]);
  }
}

// kTeams 1: one team of 8 warps; 2: two teams (16 warps, 128 registers a thread). See run_walk.
template <typename E, int kTeams>
__global__ void __launch_bounds__(kTeams * kThreads, 1) ssd_dx_kernel(const SsdDxParams p) {
  run_walk<E, kTeams>(p.w, p.dy, p.x, p.dS, 1,
                      [&](const Item& it, const E* cbs, const E* rs, const Stage<E>& st, int warp, int lane, E* sw,
                          const auto& wait_rest, const auto& wait_own) {
                        dx_item<E>(p, it, cbs, rs, st, warp, lane, sw, wait_rest, wait_own);
                      });
}

}  // namespace ssd_walk
}  // namespace mamba_kernels
