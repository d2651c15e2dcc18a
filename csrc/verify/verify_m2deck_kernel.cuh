// Mamba-2 SSM verify step for short drafts (2 <= k <= kDecKMax tokens) at small batch, fp32 state: the decode
// kernel's structure (verify_m2dec_kernel.cuh) for several draft tokens (CUDA headers only, no torch). Same contract
// and cache format as the other verify kernels (docs/verify_step_design.md), with the decode kernel's policy: it
// folds on every call, so the next call finds no committed ring tokens and the pending draft at ring [0, kp).
//
// Why: at batch 1 the deferred-fold kernel (verify_m2_kernel, one block of 256 threads a head: 32 blocks at h 32)
// takes ~11.7 us a call in its dependent chain, and its call that folds a full ring ~18 (H200, p = n = 128, k 4:
// bench/notes/verify_step.md, session 28). Here a unit's rows are spread over a cluster of blocks as in the decode
// kernel (256 blocks at b1), every load is issued at once (state row, control words, the ring's pending rows, the
// draft's inputs), one block barrier, and the state is read and written once: at small grids the write costs no
// time the grid would otherwise use. H200 b1, h 32 p = n = 128: k2 / k4 / k8 7.9 / 8.9 / 10.9 us a graph call
// (the lean kernel: 10.4 / 12.4 / 17.4); bench/notes/verify_step.md, session 29.
//
// Per thread (LPR lanes a row, lane q holding the row's 16-byte column chunks q, q + LPR, ...): the committed
// state h (the pending path replayed on the state row), then the draft scored node by node from a running state
// hr: hr = exp(dt_t A) hr + dt_t x_t B_t, the lane's part of hr . C_t to shared memory; after the draft, lane
// t mod LPR sums token t's parts: y_t = sum + D x_t, times silu(z_t). A tree node whose parent is not the previous
// node restarts hr from h along its path (its ancestors, in increasing order).
#pragma once
#include <cstdint>

#include "verify/verify_m2dec_kernel.cuh"

namespace mamba_kernels {
namespace verify_kernels {

constexpr int kDecKMax = 8;  // draft tokens this kernel takes (and pending ring rows it stages, at most)

// The decode kernel's parameters plus the draft's: token strides and parents.
struct M2DecKParams : M2DecParams {
  int32_t k;
  int64_t x_k, dt_k, z_k, B_k, C_k, y_k;
  const int32_t* parents;  // nullptr: chain
  int64_t par_b, par_k;
};

inline M2DecKParams m2deck_params(const VerifyStepParams& p, int lanes) {
  M2DecKParams d;
  static_cast<M2DecParams&>(d) = m2dec_params(p, lanes);
  d.k = static_cast<int32_t>(p.k);
  d.x_k = p.x_k; d.dt_k = p.dt_k; d.z_k = p.z_k; d.B_k = p.B_k; d.C_k = p.C_k; d.y_k = p.y_k;
  d.parents = p.parents; d.par_b = p.par_b; d.par_k = p.par_k;
  return d;
}

// Grid: (H * (P / ROWS), batch) blocks in clusters of P / ROWS (x), as verify_m2dec_kernel.
template <typename TI, int N, int LPR>
__global__ void __launch_bounds__(kDecThreads) verify_m2deck_kernel(const M2DecKParams p) {
  constexpr int J = N / (4 * LPR), ROWS = kDecThreads / LPR, KD = kDecKMax;
  constexpr int NCH = N * static_cast<int>(sizeof(TI)) / 16;  // 16-byte chunks a B / C row
  constexpr int NST = (3 * KD * NCH + kDecThreads - 1) / kDecThreads;  // staged chunks a thread, at most
  constexpr int CPR = ROWS * static_cast<int>(sizeof(TI)) / 16, NX = 3 * KD * CPR;  // x / z / ring_x chunks
  constexpr int NXS = (NX + kDecThreads - 1) / kDecThreads;
  // The draft's B and C rows and the ring's first KD B rows (row-independent: staged once a block).
  alignas(16) __shared__ TI sB[KD][N], sC[KD][N], sR[KD][N];
  alignas(16) __shared__ TI sRows[3][KD][ROWS];  // the block's rows of x, z (x when absent), ring_x [0, KR)
  __shared__ float sDtn[KD], sDa[KD], sRdt[KD];  // the draft's processed dt and exp(dt A); staged rows' ring dt
  __shared__ float sAcc[KD][kDecThreads + 1];    // lanes' parts of y (+1: a warp's summing lanes in distinct banks)
  __shared__ int sPar[KD], sMk[KD];               // parents of the draft's nodes; the staged nodes' mask words
  const int tid = threadIdx.x, q = tid & (LPR - 1);
  const int CS = 1 << p.lcs;
  const int u = static_cast<int>(blockIdx.x >> p.lcs), b = static_cast<int>(blockIdx.y);  // (unit's block, row)
  const int rank = static_cast<int>(blockIdx.x & (CS - 1));
  const int H = p.H, R = p.R, k = p.k;
  const int row = rank * ROWS + tid / LPR;
  const int s = p.slots[b * p.slots_stride];
  TI* y = static_cast<TI*>(p.y) + (int64_t)b * p.y_b + (int64_t)u * p.y_h + row;
  if (s < 0 || s >= p.S) {  // padding row: y = 0, cache untouched (every block of the cluster returns here)
#pragma unroll
    for (int t = q; t < KD; t += LPR)
      if (t < k) y[t * p.y_k] = SV<TI>::from_f(0.f);
    return;
  }
  const int gi = u / (H / p.G);
  auto col = [q](int j) { return (j * LPR + q) * 4; };
  // Ring rows staged: [0, KR); a pending node past them, or committed ring tokens (a cache a deferred-fold call
  // left), take the general replay below.
  int KR = p.Kmax < KD ? p.Kmax : KD;
  if (KR > R) KR = R;

  // ---- every load at once -----------------------------------------------------------------------------------
  // Loads are unconditional (indices clamped into range, an absent z read from x and dropped later) and their
  // values are used only after the barrier: a load whose value is used under a branch waits there, and the
  // prologue then takes one memory round trip a load instead of one in all. Row-independent rows and the block's
  // x / z / ring_x rows are staged through shared memory by plain 16-byte loads stored just before the barrier (with
  // cp.async, ptxas issues the other global loads after its wait: a second round trip); per-token scalars are
  // loaded by one thread a token.
  const int rib = tid / LPR;  // the thread's row in the block
  const int64_t rx0 = (int64_t)s * p.rx_s + (int64_t)u * p.rx_h, rb0 = (int64_t)s * p.rB_s + (int64_t)u * p.rB_h;
  const int64_t rd0 = (int64_t)s * p.rdt_s + (int64_t)u * p.rdt_h;
  const TI* rbp = static_cast<const TI*>(p.ring_B) + rb0;
  const TI* Bp = static_cast<const TI*>(p.B) + (int64_t)b * p.B_b + (int64_t)gi * p.B_g;
  const TI* Cp = static_cast<const TI*>(p.C) + (int64_t)b * p.C_b + (int64_t)gi * p.C_g;
  const int nst = (2 * k + KR) * NCH;  // 16-byte chunks: the draft's B rows, its C rows, ring_B rows [0, KR)
  auto stage_src = [&](int i) {
    const int r = i / NCH, ch = i - r * NCH;
    const TI* src = r < k ? Bp + (int64_t)r * p.B_k
                          : (r < 2 * k ? Cp + (int64_t)(r - k) * p.C_k : rbp + (int64_t)(r - 2 * k) * p.rB_r);
    return reinterpret_cast<const uint4*>(src + ch * (16 / sizeof(TI)));
  };
  auto stage_dst = [&](int i) {
    const int r = i / NCH, ch = i - r * NCH;
    TI* dst = r < k ? sB[r] : (r < 2 * k ? sC[r - k] : sR[r - 2 * k]);
    return dst + ch * (16 / sizeof(TI));
  };
  uint4 stg[NST];
#pragma unroll
  for (int it = 0; it < NST; ++it) {
    const int i = tid + it * kDecThreads;
    stg[it] = *stage_src(i < nst ? i : nst - 1);
  }
  const bool has_z = p.z != nullptr, has_par = p.parents != nullptr;
  TI* rxp = static_cast<TI*>(p.ring_x) + rx0 + rank * ROWS;  // the block's rows
  const TI* xp = static_cast<const TI*>(p.x) + (int64_t)b * p.x_b + (int64_t)u * p.x_h + rank * ROWS;
  const TI* zp = has_z ? static_cast<const TI*>(p.z) + (int64_t)b * p.z_b + (int64_t)u * p.z_h + rank * ROWS : xp;
  const int64_t zk = has_z ? p.z_k : p.x_k;
  auto rows_src = [&](int i) {  // chunk i of [x | z | ring_x] x KD tokens x CPR chunks
    const int w = i / (KD * CPR), e = (i / CPR) % KD, ch = i % CPR;
    const int t = e < k ? e : k - 1, ee = e < KR ? e : KR - 1;
    const TI* src = w == 0 ? xp + t * p.x_k : (w == 1 ? zp + t * zk : rxp + (int64_t)ee * p.rx_r);
    return reinterpret_cast<const uint4*>(src + ch * (16 / sizeof(TI)));
  };
  uint4 rstg[NXS];
#pragma unroll
  for (int it = 0; it < NXS; ++it) {
    const int i = tid + it * kDecThreads;
    rstg[it] = *rows_src(i < NX ? i : NX - 1);
  }
  const int32_t* mrow = p.meta + (int64_t)s * p.meta_s + (int64_t)u * p.meta_h;
  const int m0 = mrow[0], m1 = mrow[p.meta_i];
  const int accv = p.accepted[b * p.accepted_stride];
  // token scalars: thread e (< KD) loads node e's mask word and ring dt, token e's raw dt and parent
  const int te = tid & (KD - 1), tk = te < k ? te : k - 1, tr = te < KR ? te : KR - 1;
  const int mk_e = mrow[(2 + tr) * p.meta_i];
  const float rdt_e = p.ring_dt[rd0 + (int64_t)tr * p.rdt_r];
  const TI dt_e = static_cast<const TI*>(p.dt)[(int64_t)b * p.dt_b + (int64_t)u * p.dt_h + tk * p.dt_k];
  const int32_t* pp = has_par ? p.parents + b * p.par_b : p.accepted + b * p.accepted_stride;
  const int par_e = pp[tk * (has_par ? p.par_k : 0)];
  float* st = p.state + (int64_t)s * p.st_s + (int64_t)u * p.st_h + (int64_t)row * p.st_p;
  float h[J][4];
#pragma unroll
  for (int j = 0; j < J; ++j) {
    const float4 v = *reinterpret_cast<const float4*>(st + col(j));
    h[j][0] = v.x; h[j][1] = v.y; h[j][2] = v.z; h[j][3] = v.w;
  }
  const float dv = p.D != nullptr ? p.D[u * p.D_h + row * p.D_p] : 0.f;
  const float Au = p.A[u * p.A_h], dtb = p.dt_bias != nullptr ? p.dt_bias[u * p.dtb_h] : 0.f;
#pragma unroll
  for (int it = 0; it < NST; ++it) {
    const int i = tid + it * kDecThreads;
    if (i < nst) *reinterpret_cast<uint4*>(stage_dst(i)) = stg[it];
  }
#pragma unroll
  for (int it = 0; it < NXS; ++it) {
    const int i = tid + it * kDecThreads;
    if (i < NX) reinterpret_cast<uint4*>(&sRows[0][0][0])[i] = rstg[it];
  }
  if (tid < KD) {  // token tid's scalars; its processed dt and decay computed once a block
    sMk[tid] = mk_e;
    sRdt[tid] = rdt_e;
    const float dtn = process_dt(SV<TI>::to_f(dt_e) + dtb, p);
    sDtn[tid] = dtn;
    sDa[tid] = __expf(dtn * Au);
    sPar[tid] = has_par ? ((par_e < 0 || par_e >= tid) ? -1 : par_e) : tid - 1;  // -1: the committed state
  }
  __syncthreads();  // the staged rows and scalars

  // ---- control words (after the barrier: computed before it, they would wait for the meta words ahead of the
  // other loads' issue), commit the accepted path into h. The loops below are not unrolled: at small grids the
  // kernel's time is mostly instruction fetch of a cold cache (ncu: stall_no_inst), so its code is kept short.
  const M2Ctl ct = m2_control_words(
      p, m0, m1, [&](int a) { return a < KR ? sMk[a] : mrow[(2 + a) * p.meta_i]; }, accv, R, k);
  const int c = ct.c, c1 = ct.c1;
  const unsigned path = ct.path;
  auto step = [&](float (&hh)[J][4], float da, float w, const TI* Brow) {  // hh = da hh + w B
#pragma unroll
    for (int j = 0; j < J; ++j) {
      float Be[4];
      ld4<TI>(Brow + col(j), Be);
#pragma unroll
      for (int e = 0; e < 4; ++e) hh[j][e] = fmaf(da, hh[j][e], w * Be[e]);
    }
  };
  // committed ring tokens [0, c) (a cache a deferred-fold call left), then the path's nodes at c + node: staged
  // ring rows below KR, else from global memory
  for (int e = 0; e < c1; ++e) {
    const int pos = e < c ? e : c + nth_set_bit(path, e - c);
    const bool staged = pos < KR;
    const float d = staged ? sRdt[pos] : p.ring_dt[rd0 + (int64_t)pos * p.rdt_r];
    const float xe = SV<TI>::to_f(staged ? sRows[2][pos][rib] : rxp[rib + (int64_t)pos * p.rx_r]);
    step(h, __expf(d * Au), d * xe, staged ? sR[pos] : rbp + (int64_t)pos * p.rB_r);
  }
  // Every read of the unit's meta row, ring_B and ring_dt is done: rank 0 may overwrite them after its wait.
  if (CS > 1) cluster_arrive();

  // ---- fold (the committed state), score the draft, write y and the row's new ring_x entries ---------------
  if (c1 > 0) {
#pragma unroll
    for (int j = 0; j < J; ++j) *reinterpret_cast<float4*>(st + col(j)) = make_float4(h[j][0], h[j][1], h[j][2], h[j][3]);
  }
  float hr[J][4];
#pragma unroll
  for (int j = 0; j < J; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) hr[j][e] = h[j][e];
  for (int t = 0; t < k; ++t) {
    if (sPar[t] != t - 1) {  // a tree node off the running path: replay its ancestors (increasing) from h
      unsigned anc = node_mask(sPar, t) & ~(1u << t);
#pragma unroll
      for (int j = 0; j < J; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) hr[j][e] = h[j][e];
      for (; anc != 0u; anc &= anc - 1u) {
        const int a = __ffs(static_cast<int>(anc)) - 1;
        step(hr, sDa[a], sDtn[a] * SV<TI>::to_f(sRows[0][a][rib]), sB[a]);
      }
    }
    step(hr, sDa[t], sDtn[t] * SV<TI>::to_f(sRows[0][t][rib]), sB[t]);
    float acc[4] = {0.f, 0.f, 0.f, 0.f};  // this lane's part of hr . C_t, in four independent chains
#pragma unroll
    for (int j = 0; j < J; ++j) {
      float Ce[4];
      ld4<TI>(sC[t] + col(j), Ce);
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[e] = fmaf(hr[j][e], Ce[e], acc[e]);
    }
    sAcc[t][tid] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  }
  // The row's lanes' parts summed by lane t mod LPR for token t, all tokens at once (a shuffle reduction a token
  // inside the loop above would put its latency on every token's path); it writes y and the new ring_x entry.
  __syncwarp();
  for (int t = q; t < k; t += LPR) {
    float acc = 0.f;
#pragma unroll
    for (int l = 0; l < LPR; ++l) acc += sAcc[t][rib * LPR + l];
    const float xt = SV<TI>::to_f(sRows[0][t][rib]);
    float out = fmaf(dv, xt, acc);
    if (has_z) out *= silu_f(SV<TI>::to_f(sRows[1][t][rib]));
    y[t * p.y_k] = SV<TI>::from_f(out);
    rxp[rib + (int64_t)t * p.rx_r] = SV<TI>::from_f(xt);  // x is exact in TI
  }
  if (CS > 1) cluster_wait();  // a lone block (no cluster launch): its own threads' reads before the writes
  else __syncthreads();
  if (rank == 0) {  // the draft's B rows -> ring [0, k), its dt, and the meta row [0, k, masks]
    TI* rbw = const_cast<TI*>(rbp);
    for (int i = tid; i < k * NCH; i += kDecThreads) {
      const int r = i / NCH, ch = i - r * NCH;
      *reinterpret_cast<uint4*>(rbw + (int64_t)r * p.rB_r + ch * (16 / sizeof(TI))) =
          *reinterpret_cast<const uint4*>(sB[r] + ch * (16 / sizeof(TI)));
    }
    int32_t* mw = p.meta + (int64_t)s * p.meta_s + (int64_t)u * p.meta_h;
    if (tid < k) {  // node tid: its dt and ancestor-or-self mask
      p.ring_dt[rd0 + (int64_t)tid * p.rdt_r] = sDtn[tid];
      mw[(2 + tid) * p.meta_i] = static_cast<int32_t>(node_mask(sPar, tid));
    }
    if (tid == 0) {
      mw[0] = 0;
      mw[p.meta_i] = k;
    }
  }
}

// Whether verify_m2deck_kernel serves these parameters: verify_m2dec_kernel's shapes with 2 <= k <= kDecKMax.
inline bool m2deck_fits(const VerifyStepParams& p, bool clusters, int lpr) {
  return p.k >= 2 && p.k <= kDecKMax && m2dec_shape_fits(p, clusters, lpr);
}

}  // namespace verify_kernels
}  // namespace mamba_kernels
