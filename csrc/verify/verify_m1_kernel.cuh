// Mamba-1 SSM verify step, lean kernel (CUDA headers only, no torch). Same contract, cache format and algorithm
// as verify_ssm_kernel (docs/verify_step_design.md); launch_verify_ssm takes it for the Mamba-1 layout (A (H, P, N),
// dt per channel) with N 8 or 16, at most 256 channels a unit, 16-byte aligned state / B / C / ring_B rows.
//
// Why: a Mamba-1 channel's state is only N = 16 values, so one thread can own a channel: its state row, its
// A row and its per-token exps stay in registers, and the per-unit work that the general kernel spreads over a
// block (staging, column passes, lane reductions) disappears. The unit's B / C rows and ring B rows are the same
// for every thread of the block (broadcast loads, L1 hits).
//
// Block = (batch row, unit), one thread a channel (P rounded up to a warp). Per thread:
//   1. control words (every thread reads the unit's meta row), the accepted path;
//   2. staging: the new tokens' inputs and the first kM1Stage committed ring tokens into shared memory, all loads
//      in flight at once; h = state row (fp32), the A row;
//   3. commit: h = exp(dt_e A) h + dt_e x_e B_e for the committed ring tokens e (ring [0, c) then the path's nodes),
//      a staged batch at a time;
//   4. score: chain drafts advance h itself; trees replay each node's path from the committed state
//      (node t: its ancestors in increasing order, then t), y_t = h_t . C_t + D x_t, times silu(z_t);
//   5. the fold (state = h, the thread's own row) right after the commit; one block barrier after scoring (every
//      read of the unit's shared ring_B rows and meta row is done), then the rest of the write-back as m2_finish:
//      the tree path compacted into the ring, the new tokens at ring [base, base + k), the meta row.
#pragma once
#include "common/mufu.h"
#include "verify/verify_m2_steps.cuh"

namespace mamba_kernels {
namespace verify_kernels {

// N consecutive elements of a 16-byte aligned row -> fp32.
template <typename E, int N>
__device__ __forceinline__ void ld_row(const E* ptr, float (&o)[N]) {
  constexpr int V = SV<E>::V;
  static_assert(N % V == 0, "ld_row: the row must be whole 16-byte chunks");
#pragma unroll
  for (int i = 0; i < N / V; ++i) {
    float t[V];
    SV<E>::unpack(reinterpret_cast<const uint4*>(ptr)[i], t);
#pragma unroll
    for (int e = 0; e < V; ++e) o[i * V + e] = t[e];
  }
}
template <typename E, int N>
__device__ __forceinline__ void st_row(E* ptr, const float (&o)[N]) {
  constexpr int V = SV<E>::V;
#pragma unroll
  for (int i = 0; i < N / V; ++i) {
    float t[V];
#pragma unroll
    for (int e = 0; e < V; ++e) t[e] = o[i * V + e];
    reinterpret_cast<uint4*>(ptr)[i] = SV<E>::pack(t);
  }
}

// Tokens staged at once into shared memory: committed ring tokens a batch (this thread's x and dt, the block's B
// rows) and the new tokens (x, processed dt, z of this thread's channel, the block's B and C rows; tokens past the
// first kM1Stage are read from global memory where used).
constexpr int kM1Stage = 8;

// Shared memory (32-bit words) of verify_m1_kernel: PT threads (P rounded up to a warp), input elements of esz bytes:
// dt (KS, PT) fp32; x, z (KS, PT) raw; Bn, Cn (KS, N) raw; the ring batch: xr, dtr (kM1Stage, PT) fp32, Br
// (kM1Stage, N) raw; KS = min(k, kM1Stage). Every thread's own columns go through shared memory too, so that the
// commit and score loops index them at run time without register arrays (ptxas: 147-165 registers with the batch
// in registers and its loop unrolled).
struct M1Layout {
  int dt, x, z, Bn, Cn, xr, dtr, Br, words;
};
__host__ __device__ __forceinline__ M1Layout m1_layout(int64_t PT, int64_t N, int64_t k, int64_t esz) {
  const int64_t KS = k < 1 ? 1 : (k < kM1Stage ? k : kM1Stage);
  auto words = [esz](int64_t elems) { return up4((elems * esz + 3) / 4); };
  M1Layout l;
  int o = 0;
  l.dt = o; o += up4(KS * PT);
  l.x = o; o += words(KS * PT);
  l.z = o; o += words(KS * PT);
  l.Bn = o; o += words(KS * N);
  l.Cn = o; o += words(KS * N);
  l.xr = o; o += up4(kM1Stage * PT);
  l.dtr = o; o += up4(kM1Stage * PT);
  l.Br = o; o += words(kM1Stage * N);
  l.words = o;
  return l;
}

// kO32: offsets in 32-bit arithmetic (eoff; offsets_fit32(p) holds).
template <typename T, typename TI, int N, bool kO32>
__global__ void __launch_bounds__(256) verify_m1_kernel(const VerifyStepParams p) {
  MK_VERIFY_DYN_SMEM(smem_f4);
  const int tid = threadIdx.x;
  const int H = static_cast<int>(p.H), P = static_cast<int>(p.P), R = static_cast<int>(p.R);
  const int PT = (P + 31) / 32 * 32;  // the block size (launch_verify_ssm)
  const int b = blockIdx.x / H, u = blockIdx.x - (blockIdx.x / H) * H;
  const int k = static_cast<int>(p.k);
  const bool act = tid < P;  // this thread owns channel tid
  const int s = p.slots[eoff<kO32>(b, p.slots_stride)];
  TI* y = static_cast<TI*>(p.y) + eoff<kO32>(b, p.y_b, u, p.y_h, tid, 1);
  if (s < 0 || s >= p.S) {  // padding row: y = 0, cache untouched
    if (act)
      for (int t = 0; t < k; ++t) y[eoff<kO32>(t, p.y_k)] = SV<TI>::from_f(0.f);
    return;
  }
  const int gi = u / (H / static_cast<int>(p.G));
  const int ks = k < kM1Stage ? k : kM1Stage;
  const M1Layout lay = m1_layout(PT, N, k, sizeof(TI));
  float* smf = reinterpret_cast<float*>(smem_f4);
  float* sdt = smf + lay.dt;
  TI* sx = reinterpret_cast<TI*>(smf + lay.x);
  TI* sz = reinterpret_cast<TI*>(smf + lay.z);
  TI* sBn = reinterpret_cast<TI*>(smf + lay.Bn);
  TI* sCn = reinterpret_cast<TI*>(smf + lay.Cn);
  TI* sBr = reinterpret_cast<TI*>(smf + lay.Br);
  float* sxr = smf + lay.xr;
  float* sdtr = smf + lay.dtr;

  // ---- 1. control words -----------------------------------------------------------------------------------------
  const int32_t* mrow = p.meta + eoff<kO32>(s, p.meta_s, u, p.meta_h);
  const M2Ctl ct = m2_control_words(p, mrow[0], mrow[p.meta_i], [&](int a) { return mrow[(2 + a) * p.meta_i]; },
                                    p.accepted[eoff<kO32>(b, p.accepted_stride)], R, k);
  const int c = ct.c;
  const int c1 = ct.c1;

  const int ch = act ? tid : 0;  // idle lanes compute on channel 0 and write nothing
  T* st = static_cast<T*>(p.state) + eoff<kO32>(s, p.st_s, u, p.st_h, ch, p.st_p);
  const float* Ap = p.A + eoff<kO32>(u, p.A_h, ch, p.A_p);
  // the state and A rows are loaded after the staging (registers); their lines are requested now (at b1 k1 the
  // staged kernel waited one more memory latency without this: 10.1 us a graph call against 8.7)
  prefetch_l1(st);
  prefetch_l1(Ap);
  // the unit's ring rows (ring position 0); a position's row is at + eoff(pos, stride)
  const TI* rx = static_cast<const TI*>(p.ring_x) + eoff<kO32>(s, p.rx_s, u, p.rx_h, ch, 1);
  const TI* rB = static_cast<const TI*>(p.ring_B) + eoff<kO32>(s, p.rB_s, u, p.rB_h);
  float* rdt = p.ring_dt + eoff<kO32>(s, p.rdt_s, u, p.rdt_h, ch, p.rdt_p);
  const float dbias = p.dt_bias != nullptr ? p.dt_bias[eoff<kO32>(u, p.dtb_h, ch, p.dtb_p)] : 0.f;
  const float dv = p.D != nullptr ? p.D[eoff<kO32>(u, p.D_h, ch, p.D_p)] : 0.f;
  const TI* xin = static_cast<const TI*>(p.x) + eoff<kO32>(b, p.x_b, u, p.x_h, ch, 1);
  const TI* dtin = static_cast<const TI*>(p.dt) + eoff<kO32>(b, p.dt_b, u, p.dt_h, ch, p.dt_p);
  const TI* zin = p.z != nullptr ? static_cast<const TI*>(p.z) + eoff<kO32>(b, p.z_b, u, p.z_h, ch, 1) : nullptr;
  const TI* Bin = static_cast<const TI*>(p.B) + eoff<kO32>(b, p.B_b, gi, p.B_g);
  const TI* Cin = static_cast<const TI*>(p.C) + eoff<kO32>(b, p.C_b, gi, p.C_g);
  auto dt_of = [&](int t) { return process_dt(SV<TI>::to_f(dtin[eoff<kO32>(t, p.dt_k)]) + dbias, p); };

  // ---- 2. staging: every load of a batch issued before any is used (the unstaged kernel's ring walk waited a
  // memory latency a ring token: H200 b64 k4 d 4096 62.0 us a graph call against 52.6 staged)
  auto load_ring = [&](int e0) {  // ring tokens [e0, e0 + nb): this thread's x, dt; the block's B rows
    const int nb = c1 - e0 < kM1Stage ? c1 - e0 : kM1Stage;
    TI xr[kM1Stage];
    float dr[kM1Stage];
#pragma unroll
    for (int j = 0; j < kM1Stage; ++j) {
      if (j < nb) {
        const int pos = ct.qpos(e0 + j);
        xr[j] = rx[eoff<kO32>(pos, p.rx_r)];
        dr[j] = rdt[eoff<kO32>(pos, p.rdt_r)];
      }
    }
    for (int i = tid; i < nb * N; i += PT) sBr[i] = rB[eoff<kO32>(ct.qpos(e0 + i / N), p.rB_r, i % N, 1)];
#pragma unroll
    for (int j = 0; j < kM1Stage; ++j) {
      if (j < nb) {
        sxr[j * PT + tid] = SV<TI>::to_f(xr[j]);
        sdtr[j * PT + tid] = dr[j];
      }
    }
  };
  if (c1 > 0) load_ring(0);
  {  // the new tokens: this thread's x, dt, z (through registers, so the loads are all in flight at once); B, C rows
    TI xv[kM1Stage], dtv[kM1Stage], zv[kM1Stage];
#pragma unroll
    for (int t = 0; t < kM1Stage; ++t) {
      if (t < ks) {
        xv[t] = xin[eoff<kO32>(t, p.x_k)];
        dtv[t] = dtin[eoff<kO32>(t, p.dt_k)];
        if (zin != nullptr) zv[t] = zin[eoff<kO32>(t, p.z_k)];
      }
    }
    for (int i = tid; i < ks * N; i += PT) {
      sBn[i] = Bin[eoff<kO32>(i / N, p.B_k, i % N, 1)];
      sCn[i] = Cin[eoff<kO32>(i / N, p.C_k, i % N, 1)];
    }
#pragma unroll
    for (int t = 0; t < kM1Stage; ++t) {
      if (t < ks) {
        sx[t * PT + tid] = xv[t];
        sdt[t * PT + tid] = process_dt(SV<TI>::to_f(dtv[t]) + dbias, p);
        if (zin != nullptr) sz[t * PT + tid] = zv[t];
      }
    }
  }
  // the state row and A row after the staging (their loads in flight under the barrier; before it, their 2 N
  // registers would be live across the staging's)
  float h[N], Ar[N];
  ld_row<T, N>(st, h);
#pragma unroll
  for (int n = 0; n < N; ++n) Ar[n] = Ap[n * p.A_n] * kLog2e;  // A in log2 units: exp(dt A) = 2^(dt Ar)
  __syncthreads();  // sBr (first batch), sBn, sCn
  // token t's inputs: staged (t < ks) or from global memory
  auto x_raw = [&](int t) -> TI { return t < ks ? sx[t * PT + tid] : xin[eoff<kO32>(t, p.x_k)]; };
  auto dt_at = [&](int t) { return t < ks ? sdt[t * PT + tid] : dt_of(t); };
  auto B_row = [&](int t) -> const TI* { return t < ks ? sBn + t * N : Bin + eoff<kO32>(t, p.B_k); };
  auto C_row = [&](int t) -> const TI* { return t < ks ? sCn + t * N : Cin + eoff<kO32>(t, p.C_k); };

  auto step = [&](float (&hh)[N], float dte, float xv, const TI* Brow) {  // hh = exp(dt A) hh + dt x B
    float Bv[N];
    ld_row<TI, N>(Brow, Bv);
    const float w = dte * xv;
#pragma unroll
    for (int n = 0; n < N; ++n) hh[n] = fmaf(fast_exp2(dte * Ar[n]), hh[n], w * Bv[n]);  // MUFU.EX2, no range checks
  };

  // ---- 3. commit the committed ring tokens (ring [0, c) then the path's nodes), a staged batch at a time -------
  for (int e0 = 0; e0 < c1; e0 += kM1Stage) {
    if (e0 > 0) {
      __syncthreads();  // every thread's reads of the previous batch's B rows
      load_ring(e0);
      __syncthreads();
    }
    const int nb = c1 - e0 < kM1Stage ? c1 - e0 : kM1Stage;
#pragma unroll 1
    for (int j = 0; j < nb; ++j) step(h, sdtr[j * PT + tid], sxr[j * PT + tid], sBr + j * N);
  }
  const int m = c1 - c;
  if (ct.fold && act) st_row<T, N>(st, h);  // the state row is this thread's alone: fold now

  // ---- 4. score the draft ----------------------------------------------------------------------------------
  auto parent_of = [&](int t) {  // parents before the node, else -1 (as m2_store_scalars)
    if (p.parents == nullptr) return t - 1;
    const int q = p.parents[eoff<kO32>(b, p.par_b, t, p.par_k)];
    return (q < 0 || q >= t) ? -1 : q;
  };
  const bool chain = p.parents == nullptr;  // chain: h itself is the running state (the fold is written)
  for (int t = 0; t < k; ++t) {
    float ht[N];
    if (chain) {
      step(h, dt_at(t), SV<TI>::to_f(x_raw(t)), B_row(t));
#pragma unroll
      for (int n = 0; n < N; ++n) ht[n] = h[n];
    } else {  // replay node t's path (its ancestors in increasing order, then t) from the committed state
      unsigned mask = 1u << t;
      for (int q = parent_of(t); q >= 0; q = parent_of(q)) mask |= 1u << q;
#pragma unroll
      for (int n = 0; n < N; ++n) ht[n] = h[n];
      for (unsigned rem = mask; rem != 0u; rem &= rem - 1u) {
        const int sn = __ffs(static_cast<int>(rem)) - 1;
        step(ht, dt_at(sn), SV<TI>::to_f(x_raw(sn)), B_row(sn));
      }
    }
    float Cv[N];
    ld_row<TI, N>(C_row(t), Cv);
    float out = 0.f;
#pragma unroll
    for (int n = 0; n < N; ++n) out = fmaf(ht[n], Cv[n], out);
    out = fmaf(dv, SV<TI>::to_f(x_raw(t)), out);
    if (zin != nullptr) out *= silu_f(SV<TI>::to_f(t < ks ? sz[t * PT + tid] : zin[eoff<kO32>(t, p.z_k)]));
    if (act) y[eoff<kO32>(t, p.y_k)] = SV<TI>::from_f(out);
  }
  __syncthreads();  // every read of the unit's ring rows and meta row is done

  // ---- 5. write-back -----------------------------------------------------------------------------------------
  TI* rxw = const_cast<TI*>(rx);  // the unit's ring rows (this thread's ring_x column)
  TI* rBw = const_cast<TI*>(rB);
  if (!ct.fold && !ct.prefix) {
    // Compact the path's nodes to ring [c, c1): destination c + i <= source qpos(c + i), in increasing i, so no
    // source is overwritten before it is read; every thread moves its own ring_x / ring_dt column, threads
    // n < N the ring_B column n.
    for (int i = 0; i < m; ++i) {
      const int pos = ct.qpos(c + i);
      if (pos == c + i) continue;
      if (act) {
        rxw[eoff<kO32>(c + i, p.rx_r)] = rxw[eoff<kO32>(pos, p.rx_r)];
        rdt[eoff<kO32>(c + i, p.rdt_r)] = rdt[eoff<kO32>(pos, p.rdt_r)];
      }
      if (tid < N) rBw[eoff<kO32>(c + i, p.rB_r, tid, 1)] = rBw[eoff<kO32>(pos, p.rB_r, tid, 1)];
    }
  }
  for (int t = 0; t < k; ++t) {  // the new tokens at ring [base, base + k) (positions < R)
    if (ct.base + t >= R) break;
    if (act) {
      rxw[eoff<kO32>(ct.base + t, p.rx_r)] = x_raw(t);
      rdt[eoff<kO32>(ct.base + t, p.rdt_r)] = dt_at(t);
    }
    if (tid < N) rBw[eoff<kO32>(ct.base + t, p.rB_r, tid, 1)] = B_row(t)[tid];
  }
  if (tid == 0) {
    int32_t* mw = p.meta + eoff<kO32>(s, p.meta_s, u, p.meta_h);
    mw[0] = ct.base;
    mw[p.meta_i] = k;
  }
  if (tid < k && tid < p.Kmax) {
    unsigned mk = 1u << tid;
    for (int q = parent_of(tid); q >= 0; q = parent_of(q)) mk |= 1u << q;
    p.meta[eoff<kO32>(s, p.meta_s, u, p.meta_h, 2 + tid, p.meta_i)] = static_cast<int>(mk);
  }
}

// Whether verify_m1_kernel serves these parameters: the Mamba-1 layout (not fused), N 8 or 16, at most 256 channels
// a unit, fp32 / fp16 / bf16, 16-byte aligned rows of state, B, C and ring_B, dt and D per channel.
inline bool m1_fits(const VerifyStepParams& p) {
  if (p.fused || p.Pa != p.P || p.Na != p.N || p.Pd != p.P) return false;
  if (!(p.N == 8 || p.N == 16) || p.P < 1 || p.P > 256) return false;
  if (p.in_dtype == DType::kFloat64 || p.state_dtype == DType::kFloat64) return false;
  const int VT = p.state_dtype == DType::kFloat32 ? 4 : 8, VI = p.in_dtype == DType::kFloat32 ? 4 : 8;
  auto al = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  auto mult = [](int64_t a, int64_t b, int64_t c, int m) { return a % m == 0 && b % m == 0 && c % m == 0; };
  if (!al(p.state) || !mult(p.st_s, p.st_h, p.st_p, VT)) return false;
  if (!al(p.B) || !mult(p.B_b, p.B_k, p.B_g, VI) || !al(p.C) || !mult(p.C_b, p.C_k, p.C_g, VI)) return false;
  if (!al(p.ring_B) || !mult(p.rB_s, p.rB_r, p.rB_h, VI)) return false;
  const int64_t lim = int64_t(1) << 30;  // per-row offset terms stay in 32 bits (the per-slot / batch ones are 64)
  return !(p.S > lim || p.batch > lim || p.k * (p.x_k + p.y_k + p.z_k + p.B_k + p.C_k + p.dt_k) > lim ||
           p.R * (p.rx_r + p.rB_r + p.rdt_r) > lim || p.P * (p.st_p + p.A_p + p.D_p + p.dtb_p + p.rdt_p + p.dt_p) > lim ||
           p.H * (p.A_h + p.D_h + p.dtb_h) > lim || p.meta_i * (2 + p.Kmax) > lim || p.N * p.A_n > lim ||
           p.slots_stride * p.batch > lim || p.accepted_stride * p.batch > lim || p.par_b * p.batch > lim ||
           p.par_k * p.k > lim);
}

}  // namespace verify_kernels
}  // namespace mamba_kernels
