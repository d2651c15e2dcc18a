// Mamba-1 SSM verify step for one draft token (k = 1), fp32 state: a decode kernel (CUDA headers only, no torch).
// Same contract and cache format as the other verify kernels (docs/verify_step_design.md) and the same fold policy
// as verify_m2dec_kernel: it folds on every call (the committed tokens go into `state` now and the new token is left
// pending at ring position 0), so the next call finds at most one pending token at ring position 0 and no
// committed ring tokens, and every load it needs is known before any control word is read.
//
// Why: verify_m1_kernel (a thread a channel, ~128 registers, 2 warps a block, the loads staged in batches behind
// the control words) took 27-29 us at b64 d4096 for a one-token call against 14 us for mamba_ssm's decode kernel
// (selective_state_update), whose bytes (the 16.8 MB state read and written) need ~8 us. Here every load is issued
// at once, a channel's 16 states are spread over 2 lanes (8 states: two float4 of state and of A each), and a block
// needs ~75 registers a thread. What a lane does besides its states (the slot, control words, per-channel scalars,
// softplus, silu, addresses) is fixed, so the states a lane set the instructions a state: ncu at b64 (2026-12-01),
// 4 states a lane issued 564 instructions a warp at 0.79 issued warps a scheduler (issue-bound), twice mamba_ssm's
// decode a state.
//
// Block = one unit (P channels), N / 8 lanes a channel (lane q: the 16-byte state chunks q and q + N / 8), P * N / 8
// threads rounded up to a warp (at most 256). Idle lanes (channel >= P) compute on channel 0 and write nothing. One
// block barrier, between the last read of the unit's ring row 0 / meta row and their overwrite. The general replay
// (committed ring tokens left by a deferred-fold call, or a path of several pending nodes) loads those ring rows one
// after another: correct, slower, once.
#pragma once
#include <cstdint>

#include "verify/verify_m1_kernel.cuh"
#include "verify/verify_m2dec_kernel.cuh"

namespace mamba_kernels {
namespace verify_kernels {

constexpr int kM1DecMaxThreads = 256;

// The kernel's parameters (compact, in first-use order: kernel parameters are read through the constant cache;
// see M2DecParams). Mamba-1 layout: per-channel A rows, dt, dt_bias, D and ring dt.
struct M1DecParams {
  const int32_t* slots;
  int64_t slots_stride;
  int32_t H, S, P, R;
  void* y;
  int64_t y_b, y_h;
  int32_t G, hpg, Kmax;  // hpg = H / G
  int32_t* meta;
  int64_t meta_s, meta_h, meta_i;
  const int32_t* accepted;
  int64_t accepted_stride;
  float* state;
  int64_t st_s, st_h;
  int32_t st_p, A_p;  // per-channel strides: int32 (m1_fits bounds P times each by 2^30)
  const float* A;
  int64_t A_h;
  const void* ring_B;
  int64_t rB_s, rB_h, rB_r;
  void* ring_x;
  int64_t rx_s, rx_h, rx_r;
  float* ring_dt;
  int64_t rdt_s, rdt_h, rdt_r;
  int32_t rdt_p, dt_p, D_p, dtb_p;
  const void* B;
  int64_t B_b, B_g;
  const void* C;
  int64_t C_b, C_g;
  const void* x;
  int64_t x_b, x_h;
  const void* dt;
  int64_t dt_b, dt_h;
  const void* z;
  int64_t z_b, z_h;
  const float* D;
  int64_t D_h;
  const float* dt_bias;
  int64_t dtb_h;
  float dt_min, dt_max;  // process_dt rounds VerifyStepParams' doubles to float too
  bool accepted_is_node, fold_all, dt_softplus;
};

// Host side: the compact copy of p (m1dec_fits(p) holds, so the sizes fit int32). fold_all is set: this kernel
// always folds.
inline M1DecParams m1dec_params(const VerifyStepParams& p) {
  M1DecParams d;
  d.slots = p.slots; d.slots_stride = p.slots_stride;
  d.H = static_cast<int32_t>(p.H); d.S = static_cast<int32_t>(p.S); d.P = static_cast<int32_t>(p.P);
  d.R = static_cast<int32_t>(p.R);
  d.y = p.y; d.y_b = p.y_b; d.y_h = p.y_h;
  d.G = static_cast<int32_t>(p.G); d.hpg = static_cast<int32_t>(p.H / p.G); d.Kmax = static_cast<int32_t>(p.Kmax);
  d.meta = p.meta; d.meta_s = p.meta_s; d.meta_h = p.meta_h; d.meta_i = p.meta_i;
  d.accepted = p.accepted; d.accepted_stride = p.accepted_stride;
  d.state = static_cast<float*>(p.state); d.st_s = p.st_s; d.st_h = p.st_h; d.st_p = static_cast<int32_t>(p.st_p);
  d.A = p.A; d.A_h = p.A_h; d.A_p = static_cast<int32_t>(p.A_p);
  d.ring_B = p.ring_B; d.rB_s = p.rB_s; d.rB_h = p.rB_h; d.rB_r = p.rB_r;
  d.ring_x = p.ring_x; d.rx_s = p.rx_s; d.rx_h = p.rx_h; d.rx_r = p.rx_r;
  d.ring_dt = p.ring_dt; d.rdt_s = p.rdt_s; d.rdt_h = p.rdt_h; d.rdt_r = p.rdt_r; d.rdt_p = static_cast<int32_t>(p.rdt_p);
  d.B = p.B; d.B_b = p.B_b; d.B_g = p.B_g;
  d.C = p.C; d.C_b = p.C_b; d.C_g = p.C_g;
  d.x = p.x; d.x_b = p.x_b; d.x_h = p.x_h;
  d.dt = p.dt; d.dt_b = p.dt_b; d.dt_h = p.dt_h; d.dt_p = static_cast<int32_t>(p.dt_p);
  d.z = p.z; d.z_b = p.z_b; d.z_h = p.z_h;
  d.D = p.D; d.D_h = p.D_h; d.D_p = static_cast<int32_t>(p.D_p);
  d.dt_bias = p.dt_bias; d.dtb_h = p.dtb_h; d.dtb_p = static_cast<int32_t>(p.dtb_p);
  d.dt_min = static_cast<float>(p.dt_min); d.dt_max = static_cast<float>(p.dt_max);
  d.accepted_is_node = p.accepted_is_node; d.fold_all = true; d.dt_softplus = p.dt_softplus;
  return d;
}

// States a lane: 8 (H200 b1 / b16 / b64 d4096 k1, CUDA-graph calls: 4.45 / 6.98 / 15.9 us; 16 states, one lane a
// channel: 4.48 / 7.87 / 16.6; 4 states: 4.90 / 9.63 / 26.0, issue-bound at 564 instructions a warp). With the
// ex2.approx.ftz exps and int32 strides below: 15.4 us at b64 against 14.4 for mamba_ssm's decode.
constexpr int kM1DecStates = 8;

// Threads a block: P channels of N / 8 lanes, rounded up to a warp.
inline int m1dec_threads(int64_t P, int64_t N) { return static_cast<int>((P * (N / kM1DecStates) + 31) / 32 * 32); }

// Grid: (H, batch) blocks (one a (unit, batch row): no index division) of m1dec_threads(P, N) threads. kO32: base
// offsets in 32-bit arithmetic (eoff; offsets_fit32(p) holds), the instantiation every realistic pool takes.
template <typename TI, int N, bool kO32>
__global__ void __launch_bounds__(kM1DecMaxThreads) verify_m1dec_kernel(const M1DecParams p) {
  constexpr int LPR = N / kM1DecStates;  // lanes a channel; lane q holds the 16-byte chunks q and q + LPR
  constexpr int J = kM1DecStates / 4;
  const int tid = threadIdx.x, q = tid & (LPR - 1), chan = tid / LPR;
  const int b = static_cast<int>(blockIdx.y), u = static_cast<int>(blockIdx.x);
  const bool act = chan < p.P;
  const int ch = act ? chan : 0;
  const int gi = p.G == 1 ? 0 : u / p.hpg;
  auto col = [q](int j) { return (j * LPR + q) * 4; };

  // ---- every load at once: the slot, the loads that do not need it (A, the new token's inputs), then the slot's
  // rows (control words, state, pending ring token 0). No branch on the slot before the loads: a padding row (slot
  // outside [0, S)) reads slot 0's rows (m1dec_fits: S >= 1) and writes only y = 0; a padding branch here made the
  // compiler sink the slot-free address math past it.
  const int s_raw = p.slots[eoff<kO32>(b, p.slots_stride)];
  const int accv = p.accepted[eoff<kO32>(b, p.accepted_stride)];
  const float* Ap = p.A + eoff<kO32>(u, p.A_h, ch, p.A_p);
  const TI* Bp = static_cast<const TI*>(p.B) + eoff<kO32>(b, p.B_b, gi, p.B_g);
  const TI* Cp = static_cast<const TI*>(p.C) + eoff<kO32>(b, p.C_b, gi, p.C_g);
  float h[J][4], Ar[J][4], Br[J][4], Bn[J][4], Cn[J][4];
#pragma unroll
  for (int j = 0; j < J; ++j) {
    const float4 av = *reinterpret_cast<const float4*>(Ap + col(j));
    Ar[j][0] = av.x; Ar[j][1] = av.y; Ar[j][2] = av.z; Ar[j][3] = av.w;
    ld4<TI>(Bp + col(j), Bn[j]);
    ld4<TI>(Cp + col(j), Cn[j]);
  }
  const float xv = SV<TI>::to_f(static_cast<const TI*>(p.x)[eoff<kO32>(b, p.x_b, u, p.x_h, ch, 1)]);
  const float dtraw = SV<TI>::to_f(static_cast<const TI*>(p.dt)[eoff<kO32>(b, p.dt_b, u, p.dt_h, ch, p.dt_p)]);
  const float zv = p.z != nullptr ? SV<TI>::to_f(static_cast<const TI*>(p.z)[eoff<kO32>(b, p.z_b, u, p.z_h, ch, 1)]) : 0.f;
  const float dv = p.D != nullptr ? p.D[eoff<kO32>(u, p.D_h, ch, p.D_p)] : 0.f;
  const float dtb = p.dt_bias != nullptr ? p.dt_bias[eoff<kO32>(u, p.dtb_h, ch, p.dtb_p)] : 0.f;
  const bool pad = s_raw < 0 || s_raw >= p.S;
  const int s = pad ? 0 : s_raw;
  TI* y = static_cast<TI*>(p.y) + eoff<kO32>(b, p.y_b, u, p.y_h, ch, 1);
  const int32_t* mrow = p.meta + eoff<kO32>(s, p.meta_s, u, p.meta_h);
  const int m0 = mrow[0], m1 = mrow[p.meta_i];
  float* st = p.state + eoff<kO32>(s, p.st_s, u, p.st_h, ch, p.st_p);
  const TI* rbp = static_cast<const TI*>(p.ring_B) + eoff<kO32>(s, p.rB_s, u, p.rB_h);
#pragma unroll
  for (int j = 0; j < J; ++j) {
    const float4 hv = *reinterpret_cast<const float4*>(st + col(j));
    h[j][0] = hv.x; h[j][1] = hv.y; h[j][2] = hv.z; h[j][3] = hv.w;
    ld4<TI>(rbp + col(j), Br[j]);
  }
  TI* rxp = static_cast<TI*>(p.ring_x) + eoff<kO32>(s, p.rx_s, u, p.rx_h, ch, 1);
  float* rdp = p.ring_dt + eoff<kO32>(s, p.rdt_s, u, p.rdt_h, ch, p.rdt_p);
  const float xr0 = SV<TI>::to_f(*rxp), dtr0 = *rdp;

  // ---- control words (as m2_control), commit the accepted path into h ------------------------------------
  // Node 0's mask word is 1 in every valid meta row (its parent can only be the committed state), so the common
  // case (node 0 accepted) reads no mask word. Reading it cost a third memory round trip: ptxas issued its load
  // only where the accepted node was known to be >= 0, after m0, m1 and the accepted count had returned.
  const M2Ctl ct = m2_control_words(
      p, m0, m1, [&](int a) { return a == 0 ? 1 : mrow[(2 + a) * p.meta_i]; }, accv, p.R, 1);
  const int c = ct.c, c1 = ct.c1;
  // exp(dt A) = 2^((dt log2 e) A): one FMUL and one MUFU.EX2 (ftz; no range-check instructions) a state
  auto commit = [&](float dte, float xe, const float (&Be)[J][4]) {  // h = exp(dt A) h + dt x B
    const float w = dte * xe, dl = dte * kLog2e;
#pragma unroll
    for (int j = 0; j < J; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) h[j][e] = fmaf(fast_exp2(dl * Ar[j][e]), h[j][e], w * Be[j][e]);
  };
  if (c == 0 && (ct.path & ~1u) == 0u) {  // the common case: at most pending token 0, already loaded
    if (ct.path != 0u) commit(dtr0, xr0, Br);
  } else {  // committed ring tokens [0, c), then the path's nodes, read one after another
    for (int e = 0; e < c1; ++e) {
      const int pos = ct.qpos(e);
      float Be[J][4];
#pragma unroll
      for (int j = 0; j < J; ++j) ld4<TI>(rbp + (int64_t)pos * p.rB_r + col(j), Be[j]);
      commit(rdp[(int64_t)pos * p.rdt_r], SV<TI>::to_f(rxp[(int64_t)pos * p.rx_r]), Be);
    }
  }

  // ---- fold (the committed state: this lane's own chunks), score the new token ----------------------------
  if (c1 > 0 && act && !pad) {
#pragma unroll
    for (int j = 0; j < J; ++j) *reinterpret_cast<float4*>(st + col(j)) = make_float4(h[j][0], h[j][1], h[j][2], h[j][3]);
  }
  const float dtn = process_dt(dtraw + dtb, p);
  const float w = dtn * xv, dln = dtn * kLog2e;
  float hc = 0.f;  // C . h_new over this lane's states
#pragma unroll
  for (int j = 0; j < J; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) hc = fmaf(Cn[j][e], fmaf(fast_exp2(dln * Ar[j][e]), h[j][e], w * Bn[j][e]), hc);
#pragma unroll
  for (int off = 1; off < LPR; off <<= 1) hc += __shfl_xor_sync(0xffffffffu, hc, off);
  float out = fmaf(dv, xv, hc);
  if (p.z != nullptr) out *= silu_f(zv);
  if (act && q == 0) *y = SV<TI>::from_f(pad ? 0.f : out);
  if (pad) return;  // padding row: y = 0, cache untouched (block-uniform)
  __syncthreads();  // every read of the unit's ring rows and meta row is done

  // ---- the new token -> ring position 0; meta row [0, 1, mask 1] ---------------------------------------------
  if (act && q == 0) {
    *rxp = SV<TI>::from_f(xv);  // x is exact in TI
    *rdp = dtn;
  }
  if (tid < LPR) {  // channel 0's lanes: the unit's B row
#pragma unroll
    for (int j = 0; j < J; ++j) st4<TI>(const_cast<TI*>(rbp) + col(j), Bn[j]);
  }
  if (tid == 0) {
    int32_t* mw = p.meta + eoff<kO32>(s, p.meta_s, u, p.meta_h);
    mw[0] = 0;
    mw[p.meta_i] = 1;
    mw[2 * p.meta_i] = 1;
  }
}

// Whether verify_m1dec_kernel serves these parameters: one token, fp32 state, what verify_m1_kernel serves (the
// Mamba-1 layout, N 8 / 16, 16-byte aligned state / B / C / ring_B rows), A rows of 16-byte aligned contiguous
// states, at most 256 threads a block (P * N / 8), sizes within int32 (M1DecParams).
inline bool m1dec_fits(const VerifyStepParams& p) {
  if (p.k != 1 || p.state_dtype != DType::kFloat32 || !m1_fits(p)) return false;
  if (p.batch > kDecMaxBatch) return false;  // batch rows are blockIdx.y
  if (p.P * (p.N / kM1DecStates) > kM1DecMaxThreads) return false;
  if (p.S < 1) return false;  // a padding row reads slot 0's rows
  if (p.A_n != 1 || reinterpret_cast<uintptr_t>(p.A) % 16 != 0 || p.A_p % 4 != 0 || p.A_h % 4 != 0) return false;
  return !(p.S > INT32_MAX || p.H > INT32_MAX || p.G > INT32_MAX || p.R > INT32_MAX || p.P > INT32_MAX);
}

}  // namespace verify_kernels
}  // namespace mamba_kernels
