// Mamba-2 SSM verify step on tensor cores with every load issued up front ("tco": tensor cores, overlapped). Same
// contract, cache format and closed form as verify_m2tc_kernel / verify_m2_kernel (docs/verify_step_design.md);
// experimental: taken only with MK_VERIFY_KERNEL=tco until the H200 says it wins (b64 k4 target: 45 us kernel time
// against 72 for verify_m2tc_kernel).
//
// Why: ncu of verify_m2tc_kernel at b64 k4 (h 32 p 128 n 128, fp32 state) shows 2 blocks an SM at IPC 0.38 and
// DRAM 49%: after its tile lands a block walks a dependent chain (control words -> ring copies -> state dots ->
// barrier -> ring weights, B . C dots -> barrier -> y, fold) with no load in flight, so the SM's bandwidth idles
// while both blocks compute. Here
//   - no load depends on a control word: the new tokens' inputs are copied before the slot is known, then the
//     WHOLE ring (x rows of this block, B rows, dt: R positions, 8 KB a unit at R 16 / bf16) with the meta row,
//     then the state tile. ~4.5 KB a unit more traffic than copying only the committed rows (~7% at that shape),
//     for one dependent round trip (the slot) instead of three (slot -> meta -> ring);
//   - everything that needs no state (control words, masks, ring weights, the B . C dots, the coefficients of y)
//     runs while the tile is in flight, in the block's three barriers;
//   - once the tile lands there is no block barrier: y^T (rows x tokens) = diag-scaled h0 . C^T + X^T M^T is two
//     m16n8k8 tf32 mma chains of each warp's own 16-row tiles, X = [committed ring x; new x] (c1 + k rows),
//     M[t][j] = the closed form's coefficient of X_j in y_t (below); the D x and silu(z) epilogue and a fold's
//     update are register-local too, so a warp finishes as soon as its rows land;
//   - a unit's rows may be split over a thread-block cluster (MK_VERIFY_TCO_WARPS=4: 64 rows a block, a cluster
//     of P / 64 blocks, ~43 KB of shared memory at P = N = 128 fp32: up to 5 blocks an SM instead of 2): every
//     block reads the unit's meta row, ring_B and ring_dt, computes the per-unit coefficients itself (no shared
//     memory across blocks), and writes its own rows of y, ring_x and state; rank 0 writes ring_B, ring_dt and
//     meta after a cluster barrier (arrive once the block's reads have landed, wait at the very end).
// Closed form (verify_m2_kernel.cuh): with committed ring tokens e < c1 and node t's path,
//   y_t = rho_t eSQ (h0 . C_t) + sum_e rho_t wq_e G[e][t] x_e + sum_{s in path(t)} W[t][s] x_s + D x_t,
//   so M[t][e] = rho_t wq_e G[e][t] (e < c1), M[t][c1 + s] = W[t][s] (s in path(t), else 0), scale_t = rho_t eSQ;
//   fold: h_c = eSQ h0 + sum_e wq_e x_e (x) B_e.
#pragma once
#include <cstdlib>

#include "verify/verify_m2tc_kernel.cuh"

namespace mamba_kernels {
namespace verify_kernels {

// Shared memory (32-bit word offsets, every array 16-byte aligned). RB: rows of this block.
//   tile: RB rows of N / VT 16-byte chunks (swizzled as in verify_m2tc_kernel); xin, zin: k x RB inputs (raw);
//   Bin, Cin: k x N (raw); rx: ring x rows by ring position, R x RB (raw); rB: ring B rows, R x N (raw);
//   rdt: ring dt by position (R); dtq, wq: dt and weight of committed token e (R); dts: processed new dt (k);
//   G (R x K1), BC (K1 x K1): B . C dots; M: y coefficients (K1 x (R + K1)); scale: rho_t eSQ (K1); Ds (RB);
//   scal[0] = eSQ; jx: offset (TI elements from the smem base) of X_j's row (R + K1); jb: of B_e's row (R);
//   meta, par, mask: int.
struct M2TcoLayout {
  int tile, xin, zin, Bin, Cin, rx, rB;
  int rdt, dtq, wq, dts, G, BC, M, scale, Ds, scal, jx, jb, meta, par, mask;
  int words;
};

__host__ __device__ __forceinline__ M2TcoLayout m2tco_layout(int64_t k, int64_t RB, int64_t N, int64_t R, int VT,
                                                             int VI) {
  M2TcoLayout l;
  const int64_t K1 = k > 0 ? k : 1;
  int o = 0;
  l.tile = o; o += static_cast<int>(RB * (N / VT) * 4);
  l.xin = o; o += static_cast<int>(K1 * RB / VI * 4);
  l.zin = o; o += static_cast<int>(K1 * RB / VI * 4);
  l.Bin = o; o += static_cast<int>(K1 * N / VI * 4);
  l.Cin = o; o += static_cast<int>(K1 * N / VI * 4);
  l.rx = o; o += static_cast<int>(R * RB / VI * 4);
  l.rB = o; o += static_cast<int>(R * N / VI * 4);
  l.rdt = o; o += up4(R);
  l.dtq = o; o += up4(R);
  l.wq = o; o += up4(R);
  l.dts = o; o += up4(K1);
  l.G = o; o += up4(R * K1);
  l.BC = o; o += up4(K1 * K1);
  l.M = o; o += up4(K1 * (R + K1));
  l.scale = o; o += up4(K1);
  l.Ds = o; o += up4(RB);
  l.scal = o; o += 4;
  l.jx = o; o += up4(R + K1);
  l.jb = o; o += up4(R);
  l.meta = o; o += up4(2 + kMaxK);
  l.par = o; o += up4(kMaxK);
  l.mask = o; o += up4(kMaxK);
  l.words = o;
  return l;
}

// Grid: batch * H * (P / RB) blocks of NW warps; clusters of P / RB consecutive blocks when RB < P (the launcher's
// job). RB: rows a block (a multiple of 16, P / RB a power of two).
template <typename T, typename TI, int N, int NW>
__global__ void __launch_bounds__(NW * 32, NW == 4 ? 5 : 2) verify_m2tco_kernel(const VerifyStepParams p, int RB) {
  constexpr int NT = NW * 32;
  constexpr int VT = SV<T>::V, CPR = N / VT;  // state elements a chunk, chunks a row
  constexpr int VI = SV<TI>::V, NC = N / VI;  // input elements a chunk, chunks a B / C row
  constexpr int TW = 4 / static_cast<int>(sizeof(TI));  // TI elements a 32-bit word (1 or 2)
  constexpr bool kSplitS = sizeof(T) == 4, kSplitI = sizeof(TI) == 4;  // operands not exact in tf32
  MK_VERIFY_DYN_SMEM(smem_f4);
  float* smf = reinterpret_cast<float*>(smem_f4);
  int* smi = reinterpret_cast<int*>(smem_f4);
  const TI* smt = reinterpret_cast<const TI*>(smem_f4);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, q = lane & 3;
  const int H = static_cast<int>(p.H), P = static_cast<int>(p.P), R = static_cast<int>(p.R);
  const int k = static_cast<int>(p.k), K1 = k > 0 ? k : 1;
  const int CS = P / RB;  // blocks a unit
  const int unit = blockIdx.x / CS, rank = blockIdx.x - unit * CS;
  const int b = unit / H, u = unit - b * H, row0 = rank * RB;
  const int XC = RB / VI, lXC = ilog2(XC), MTB = RB / 16;  // x chunks a row of this block; its 16-row tiles
  const int gi = u / (H / static_cast<int>(p.G));
  const int s = p.slots[b * p.slots_stride];  // issued first: the slot-dependent loads wait on it
  const M2TcoLayout lay = m2tco_layout(k, RB, N, R, VT, VI);
  uint4* tile = reinterpret_cast<uint4*>(smf + lay.tile);
  uint4 *xin = reinterpret_cast<uint4*>(smf + lay.xin), *zin = reinterpret_cast<uint4*>(smf + lay.zin);
  uint4 *Bin = reinterpret_cast<uint4*>(smf + lay.Bin), *Cin = reinterpret_cast<uint4*>(smf + lay.Cin);
  uint4 *rx = reinterpret_cast<uint4*>(smf + lay.rx), *rB = reinterpret_cast<uint4*>(smf + lay.rB);
  float *rdt = smf + lay.rdt, *dtq = smf + lay.dtq, *wq = smf + lay.wq, *dts = smf + lay.dts, *G = smf + lay.G;
  float *BC = smf + lay.BC, *Ms = smf + lay.M, *scale = smf + lay.scale, *Ds = smf + lay.Ds, *scal = smf + lay.scal;
  int *jx = smi + lay.jx, *jb = smi + lay.jb, *smeta = smi + lay.meta, *spar = smi + lay.par, *smask = smi + lay.mask;
  const int JM = R + K1;  // row stride of M

  // ---- 1. what does not depend on the slot: new-token inputs (cp.async), per-token and per-head scalars ---------
  const bool hasz = p.z != nullptr;
  {
    const TI* xb = static_cast<const TI*>(p.x) + (int64_t)b * p.x_b + (int64_t)u * p.x_h + row0;
    for (int i = tid; i < k * XC; i += NT) cp_async16(xin + i, xb + (i >> lXC) * p.x_k + (i & (XC - 1)) * VI);
    if (hasz) {
      const TI* zb = static_cast<const TI*>(p.z) + (int64_t)b * p.z_b + (int64_t)u * p.z_h + row0;
      for (int i = tid; i < k * XC; i += NT) cp_async16(zin + i, zb + (i >> lXC) * p.z_k + (i & (XC - 1)) * VI);
    }
    const TI* Bb = static_cast<const TI*>(p.B) + (int64_t)b * p.B_b + (int64_t)gi * p.B_g;
    const TI* Cb = static_cast<const TI*>(p.C) + (int64_t)b * p.C_b + (int64_t)gi * p.C_g;
    for (int i = tid; i < k * NC; i += NT) {
      cp_async16(Bin + i, Bb + (i / NC) * p.B_k + (i % NC) * VI);
      cp_async16(Cin + i, Cb + (i / NC) * p.C_k + (i % NC) * VI);
    }
  }
  const int accv = p.accepted[b * p.accepted_stride];
  const int par = tid < k ? (p.parents != nullptr ? p.parents[b * p.par_b + tid * p.par_k] : tid - 1) : -1;
  const TI* dtp = static_cast<const TI*>(p.dt) + (int64_t)b * p.dt_b + (int64_t)u * p.dt_h;
  const float dtv = tid < k ? SV<TI>::to_f(dtp[tid * p.dt_k]) : 0.f;
  const float Au = p.A[u * p.A_h], dtb = p.dt_bias != nullptr ? p.dt_bias[u * p.dtb_h] : 0.f;
  // D of rows tid and tid + NT of this block (RB <= 2 NT: the launcher's check)
  const float dva = tid < RB && p.D != nullptr ? p.D[u * p.D_h + (row0 + tid) * p.D_p] : 0.f;
  const float dvb = tid + NT < RB && p.D != nullptr ? p.D[u * p.D_h + (row0 + tid + NT) * p.D_p] : 0.f;
  TI* y = static_cast<TI*>(p.y) + (int64_t)b * p.y_b + (int64_t)u * p.y_h + row0;
  if (s < 0 || s >= p.S) {  // padding row: y = 0 (this block's rows), cache untouched; every block of a cluster
    for (int i = tid; i < k * XC; i += NT)
      *reinterpret_cast<uint4*>(y + (i >> lXC) * p.y_k + (i & (XC - 1)) * VI) = make_uint4(0u, 0u, 0u, 0u);
    cp_async_wait_all();  // no copy into shared memory outlives the block
    return;
  }

  // ---- 2. slot-dependent loads, all at once: the whole ring and the meta row, then the state tile ------------
  const int64_t rx0 = (int64_t)s * p.rx_s + (int64_t)u * p.rx_h, rb0 = (int64_t)s * p.rB_s + (int64_t)u * p.rB_h;
  const int64_t rd0 = (int64_t)s * p.rdt_s + (int64_t)u * p.rdt_h;
  {
    const TI* rxs = static_cast<const TI*>(p.ring_x) + rx0 + row0;
    const TI* rbs = static_cast<const TI*>(p.ring_B) + rb0;
    for (int i = tid; i < R * XC; i += NT) cp_async16(rx + i, rxs + (i >> lXC) * p.rx_r + (i & (XC - 1)) * VI);
    for (int i = tid; i < R * NC; i += NT) cp_async16(rB + i, rbs + (i / NC) * p.rB_r + (i % NC) * VI);
  }
  cp_async_commit();  // group 1: inputs and ring
  const int nm = 2 + static_cast<int>(p.Kmax < kMaxK ? p.Kmax : kMaxK);
  const int32_t* mrow = p.meta + (int64_t)s * p.meta_s + (int64_t)u * p.meta_h;
  const int mv = tid < nm ? mrow[tid * p.meta_i] : 0;
  const float rdv = tid < R ? p.ring_dt[rd0 + (int64_t)tid * p.rdt_r] : 0.f;  // R <= NT: the launcher's check
  T* st = static_cast<T*>(p.state) + (int64_t)s * p.st_s + (int64_t)u * p.st_h + (int64_t)row0 * p.st_p;
  {  // warp mt % NW copies (and later reads) rows [16 mt, 16 mt + 16): lane = (row lr of RP, chunk lc)
    constexpr int RP = 32 / CPR;
    const int lc = lane % CPR, lr = lane / CPR;
    for (int mt = warp; mt < MTB; mt += NW) {
      const T* src = st + (int64_t)(mt * 16 + lr) * p.st_p + lc * VT;
      uint4* dst = tile + (mt * 16 + lr) * CPR;
#pragma unroll
      for (int i = 0; i < 16 / RP; ++i)
        cp_async16(dst + i * RP * CPR + (lc ^ tc_swz(lr + i * RP)), src + (int64_t)i * RP * p.st_p);
    }
  }
  cp_async_commit();  // group 2: the tile
  cp_async_wait<1>();
  if (tid < nm) smeta[tid] = mv;
  if (tid < R) rdt[tid] = rdv;
  if (tid < k) {
    spar[tid] = (par < 0 || par >= tid) ? -1 : par;
    dts[tid] = process_dt(dtv + dtb, p);
  }
  if (tid < RB) Ds[tid] = dva;
  if (tid + NT < RB) Ds[tid + NT] = dvb;
  __syncthreads();  // 1: inputs, ring, meta in shared memory; every read of the unit's cache rows has landed
  if (CS > 1) cluster_arrive();  // ... so rank 0 may overwrite ring_B / ring_dt / meta after its wait

  // ---- 3. per-unit work while the tile is in flight: control words, ring weights, B . C dots, ring_x writes -----
  const M2Ctl ct = m2_control(p, smeta, accv, R, k);
  const int c1 = ct.c1, J = c1 + k;
  m2_masks(spar, smask, tid, k);
  for (int j = tid; j < J; j += NT) {
    const int pos = j < c1 ? ct.qpos(j) : 0;
    jx[j] = j < c1 ? lay.rx * TW + pos * RB : lay.xin * TW + (j - c1) * RB;
    if (j < c1) jb[j] = lay.rB * TW + pos * N;
  }
  if (warp == 0) {
    for (int e = lane; e < c1; e += 32) dtq[e] = rdt[ct.qpos(e)];
    __syncwarp();
    m2_ring_weights(dtq, wq, scal, c1, Au, lane);
  }
  {  // rows e < c1: G[e][t] = B_e . C_t (ring); rows c1 + s: BC[t][s] = B_s . C_t (new tokens). Warp 0 (the ring
     // weights) takes the last row tile.
    const int nmt = (J + 15) / 16, mt0 = (warp + NW - 1) % NW;
    for (int nt = 0; nt * 8 < k && mt0 < nmt; ++nt) {
      const int tb = nt * 8 + g;
      const uint4* crow = Cin + (tb < k ? tb : 0) * NC + q;
      for (int mt = mt0; mt < nmt; mt += NW) {
        const int r0 = mt * 16 + g, r1 = r0 + 8;
        auto brow = [&](int r) -> const uint4* { return r < c1 ? rB + ct.qpos(r) * NC : Bin + (r - c1) * NC; };
        const uint4* b0 = brow(r0 < J ? r0 : 0);
        const uint4* b1 = brow(r1 < J ? r1 : 0);
        float d[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll 2
        for (int gc = 0; gc < N / (4 * VI); ++gc) {  // chunk gc * 4 + q of the B rows and of C_tb
          float v0[VI], v1[VI], cv[VI];
          SV<TI>::unpack(b0[gc * 4 + q], v0);
          SV<TI>::unpack(b1[gc * 4 + q], v1);
          SV<TI>::unpack(crow[gc * 4], cv);
#pragma unroll
          for (int e = 0; e < VI; ++e) {  // rows past the end, tokens past k: zeros
            v0[e] = r0 < J ? v0[e] : 0.f;
            v1[e] = r1 < J ? v1[e] : 0.f;
            cv[e] = tb < k ? cv[e] : 0.f;
          }
#pragma unroll
          for (int e = 0; e < VI; e += 2) {
            const float ch0 = kSplitI ? tf32_hi(cv[e]) : cv[e], ch1 = kSplitI ? tf32_hi(cv[e + 1]) : cv[e + 1];
            mma_acc<kSplitI, kSplitI>(d, v0[e], v1[e], v0[e + 1], v1[e + 1], ch0, ch1, cv[e] - ch0,
                                      cv[e + 1] - ch1);
          }
        }
        const int t0 = nt * 8 + 2 * q;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int r = i < 2 ? r0 : r1, t = t0 + (i & 1);
          if (r < J && t < k) {
            if (r < c1) G[r * K1 + t] = d[i];
            else BC[t * K1 + (r - c1)] = d[i];
          }
        }
      }
    }
  }
  // This block's ring_x rows (no other block reads them; every ring read of this block has landed): the new
  // tokens at base, and without a fold a tree path's committed nodes compacted to [c, c1).
  TI* rxw = static_cast<TI*>(p.ring_x) + rx0 + row0;
  for (int i = tid; i < k * XC; i += NT) {
    const int t = i >> lXC;
    if (ct.base + t < R)
      *reinterpret_cast<uint4*>(rxw + (int64_t)(ct.base + t) * p.rx_r + (i & (XC - 1)) * VI) = xin[i];
  }
  if (!ct.fold && !ct.prefix) {
    for (int i = tid; i < (c1 - ct.c) * XC; i += NT) {
      const int e = ct.c + (i >> lXC), src = ct.qpos(e);
      if (src != e)
        *reinterpret_cast<uint4*>(rxw + (int64_t)e * p.rx_r + (i & (XC - 1)) * VI) = rx[src * XC + (i & (XC - 1))];
    }
  }
  // The unit's shared rows (rank 0, or the lone block): new B rows and dt at base, the compaction of ring_B and
  // ring_dt, the meta row [base, k, masks].
  auto shared_writes = [&]() {
    TI* rbw = static_cast<TI*>(p.ring_B) + rb0;
    for (int i = tid; i < k * NC; i += NT) {
      const int t = i / NC;
      if (ct.base + t < R) *reinterpret_cast<uint4*>(rbw + (int64_t)(ct.base + t) * p.rB_r + (i % NC) * VI) = Bin[i];
    }
    if (tid < k && ct.base + tid < R) p.ring_dt[rd0 + (int64_t)(ct.base + tid) * p.rdt_r] = dts[tid];
    if (!ct.fold && !ct.prefix) {
      for (int i = tid; i < (c1 - ct.c) * NC; i += NT) {
        const int e = ct.c + i / NC, src = ct.qpos(e);
        if (src != e) *reinterpret_cast<uint4*>(rbw + (int64_t)e * p.rB_r + (i % NC) * VI) = rB[src * NC + i % NC];
      }
      for (int e = ct.c + tid; e < c1; e += NT)
        if (ct.qpos(e) != e) p.ring_dt[rd0 + (int64_t)e * p.rdt_r] = rdt[ct.qpos(e)];
    }
    int32_t* mw = p.meta + (int64_t)s * p.meta_s + (int64_t)u * p.meta_h;
    if (tid == 0) {
      mw[0] = ct.base;
      mw[p.meta_i] = k;
    }
    if (tid < k && tid < p.Kmax) mw[(2 + tid) * p.meta_i] = smask[tid];  // this thread's own mask (m2_masks)
  };
  if (CS == 1) shared_writes();  // the lone block: its barrier 1 ordered every read before these writes
  __syncthreads();  // 2: masks, wq, eSQ, G, BC, jx, jb

  // ---- 4. y coefficients M[t][j] (j < c1: ring token j; c1 + s: new token s) and scale_t = rho_t eSQ ------------
  for (int i = tid; i < k * J; i += NT) {
    const int t = i / J, j = i - t * J;
    const unsigned mk = static_cast<unsigned>(smask[t]);
    float m = 0.f;
    if (j < c1) {
      float suf = 0.f;
      for (int sn = t; sn >= 0; --sn)
        if ((mk >> sn) & 1u) suf += dts[sn];
      m = __expf(Au * suf) * wq[j] * G[j * K1 + t];
    } else if ((mk >> (j - c1)) & 1u) {
      const int sj = j - c1;
      float suf = 0.f;  // the path's dt after sj, summed from t down (as verify_m2_kernel's epilogue)
      for (int sn = t; sn > sj; --sn)
        if ((mk >> sn) & 1u) suf += dts[sn];
      m = dts[sj] * __expf(Au * suf) * BC[t * K1 + sj];
    }
    Ms[t * JM + j] = m;
  }
  if (tid < k) {
    const unsigned mk = static_cast<unsigned>(smask[tid]);
    float suf = 0.f;
    for (int sn = tid; sn >= 0; --sn)
      if ((mk >> sn) & 1u) suf += dts[sn];
    scale[tid] = __expf(Au * suf) * scal[0];
  }
  __syncthreads();  // 3

  // ---- 5. per warp, once its rows land: y = scale . (h0 . C^T) + X^T M^T + D x, times silu(z); fold ------------
  cp_async_wait<0>();  // this thread's tile chunks
  __syncwarp();        // ... and the other lanes' of this warp: the warp's rows are complete
  for (int nt = 0; nt * 8 < k; ++nt) {
    const int t0 = nt * 8 + 2 * q, tb = nt * 8 + g;  // this lane's output tokens; its C / M fragments' token
    const float sc0 = t0 < k ? scale[t0] : 0.f, sc1 = t0 + 1 < k ? scale[t0 + 1] : 0.f;
    const TI* crow = reinterpret_cast<const TI*>(Cin) + (tb < k ? tb : 0) * N + q * VT;
    for (int mt = warp; mt < MTB; mt += NW) {
      const int r0 = mt * 16 + g, r1 = r0 + 8;
      float d[4] = {0.f, 0.f, 0.f, 0.f};
      // S = h0 . C^T; C's fragment is read per k-step (not held: registers for more blocks an SM). Columns as in
      // verify_m2tc_kernel: lane q's chunk gc * 4 + q of rows r0, r1 against the same columns of C_tb.
#pragma unroll 4
      for (int gc = 0; gc < N / (4 * VT); ++gc) {
        float h0[VT], h1[VT], cv[VT];
        SV<T>::unpack(tile[r0 * CPR + ((gc * 4 + q) ^ tc_swz(r0))], h0);
        SV<T>::unpack(tile[r1 * CPR + ((gc * 4 + q) ^ tc_swz(r1))], h1);
        lds_in<TI, VT>(crow + gc * 4 * VT, cv);
#pragma unroll
        for (int e = 0; e < VT; e += 2) {
          const float c0 = tb < k ? cv[e] : 0.f, c1v = tb < k ? cv[e + 1] : 0.f;
          const float ch0 = kSplitI ? tf32_hi(c0) : c0, ch1 = kSplitI ? tf32_hi(c1v) : c1v;
          mma_acc<kSplitS, kSplitI>(d, h0[e], h1[e], h0[e + 1], h1[e + 1], ch0, ch1, c0 - ch0, c1v - ch1);
        }
      }
      d[0] *= sc0;
      d[1] *= sc1;
      d[2] *= sc0;
      d[3] *= sc1;
      for (int j0 = 0; j0 < J; j0 += 8) {  // + X^T M^T: A[row][j] = X_j[row], B[j][t] = M[t][j]
        const int ja = j0 + q, jc = ja + 4;
        const float a0 = ja < J ? SV<TI>::to_f(smt[jx[ja] + r0]) : 0.f;
        const float a1 = ja < J ? SV<TI>::to_f(smt[jx[ja] + r1]) : 0.f;
        const float a2 = jc < J ? SV<TI>::to_f(smt[jx[jc] + r0]) : 0.f;
        const float a3 = jc < J ? SV<TI>::to_f(smt[jx[jc] + r1]) : 0.f;
        const float m0 = ja < J && tb < k ? Ms[tb * JM + ja] : 0.f;
        const float m1 = jc < J && tb < k ? Ms[tb * JM + jc] : 0.f;
        const float mh0 = tf32_hi(m0), mh1 = tf32_hi(m1);
        mma_acc<kSplitI, true>(d, a0, a1, a2, a3, mh0, mh1, m0 - mh0, m1 - mh1);
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = i < 2 ? r0 : r1, t = t0 + (i & 1);
        if (t < k) {
          const TI* xr = reinterpret_cast<const TI*>(xin) + t * RB + r;
          float out = fmaf(Ds[r], SV<TI>::to_f(*xr), d[i]);
          if (hasz) out *= silu_f(SV<TI>::to_f(reinterpret_cast<const TI*>(zin)[t * RB + r]));
          y[t * p.y_k + r] = SV<TI>::from_f(out);
        }
      }
    }
  }
  if (ct.fold) {  // h_c = eSQ h0 + X^T B, X[e][row] = wq_e x_e[row]: per row tile, 32 columns at a time
    const float eSQ = scal[0];
    for (int mt = warp; mt < MTB; mt += NW) {
      const int r0 = mt * 16 + g, r1 = r0 + 8;
#pragma unroll 1
      for (int n0 = 0; n0 < N; n0 += 32) {
        float d[4][4];
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) d[nt][0] = d[nt][1] = d[nt][2] = d[nt][3] = 0.f;
        for (int ks = 0; ks * 8 < c1; ++ks) {
          const int e0 = ks * 8 + q, e1 = e0 + 4;
          const float w0 = e0 < c1 ? wq[e0] : 0.f, w1 = e1 < c1 ? wq[e1] : 0.f;
          const float a0 = e0 < c1 ? w0 * SV<TI>::to_f(smt[jx[e0] + r0]) : 0.f;
          const float a1 = e0 < c1 ? w0 * SV<TI>::to_f(smt[jx[e0] + r1]) : 0.f;
          const float a2 = e1 < c1 ? w1 * SV<TI>::to_f(smt[jx[e1] + r0]) : 0.f;
          const float a3 = e1 < c1 ? w1 * SV<TI>::to_f(smt[jx[e1] + r1]) : 0.f;
#pragma unroll
          for (int nt = 0; nt < 4; ++nt) {
            const int col = n0 + nt * 8 + g;
            const float bv0 = e0 < c1 ? SV<TI>::to_f(smt[jb[e0] + col]) : 0.f;
            const float bv1 = e1 < c1 ? SV<TI>::to_f(smt[jb[e1] + col]) : 0.f;
            const float bh0 = kSplitI ? tf32_hi(bv0) : bv0, bh1 = kSplitI ? tf32_hi(bv1) : bv1;
            mma_acc<true, kSplitI>(d[nt], a0, a1, a2, a3, bh0, bh1, bv0 - bh0, bv1 - bh1);
          }
        }
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) {
          const int col = n0 + nt * 8 + 2 * q, ch = col / VT, w = col % VT;  // (col, col + 1): one chunk
#pragma unroll
          for (int hf = 0; hf < 2; ++hf) {
            const int r = hf ? r1 : r0;
            const T* hp = reinterpret_cast<const T*>(tile + r * CPR + (ch ^ tc_swz(r))) + w;
            const float v0 = fmaf(eSQ, SV<T>::to_f(hp[0]), d[nt][2 * hf]);
            const float v1 = fmaf(eSQ, SV<T>::to_f(hp[1]), d[nt][2 * hf + 1]);
            T* dst = st + (int64_t)r * p.st_p + col;
            if constexpr (sizeof(T) == 4) {
              *reinterpret_cast<float2*>(dst) = make_float2(v0, v1);
            } else {
              dst[0] = SV<T>::from_f(v0);
              dst[1] = SV<T>::from_f(v1);
            }
          }
        }
      }
    }
  }
  if (CS > 1) {  // every block of the unit has read the shared rows (arrived after barrier 1): rank 0 writes them
    __syncwarp();  // the barrier is .aligned: the warp reconverged after its row loops
    cluster_wait();
    if (rank == 0) shared_writes();
  }
}

// Warps a block (MK_VERIFY_TCO_WARPS=4|8, environment, read once; default 4): 16 rows each, so with clusters a
// block holds 64 (or 128) rows of a unit and a unit is P / 64 (P / 128) blocks.
inline int m2tco_warps() {
  static const int v = [] {
    const char* e = std::getenv("MK_VERIFY_TCO_WARPS");
    const int w = e != nullptr ? std::atoi(e) : 0;
    return w == 8 ? 8 : 4;
  }();
  return v;
}

// Whether verify_m2tco_kernel serves these parameters: the Mamba-2 layout with 16-byte rows (m2_io_fits), N 64 or
// 128, P a power of two in [16, 256]; rows a block: 16 * warps where clusters run (sm_90), else all P; the block's
// state tile <= 64 KB; R <= the block's threads (ring dt, meta: a word a thread). *rows, *smem: the launch's.
template <typename T>
inline bool m2tco_fits(const VerifyStepParams& p, bool clusters, int nw, int* rows, size_t* smem) {
  constexpr int VT = SV<T>::V;
  const int VI = p.in_dtype == DType::kFloat32 ? 4 : 8;
  if (!m2_io_fits(p, VT, VI)) return false;
  if (!(p.N == 64 || p.N == 128)) return false;
  if (p.P < 16 || p.P > 256 || (p.P & (p.P - 1)) != 0) return false;
  const int64_t rb = clusters && p.P > 16 * nw ? 16 * nw : p.P;
  if (rb < VI || rb > 2 * 32 * nw || rb * p.N * static_cast<int64_t>(sizeof(T)) > 64 * 1024) return false;
  if (p.k > kMaxK || p.R > 32 * nw) return false;
  const size_t bytes = static_cast<size_t>(m2tco_layout(p.k, rb, p.N, p.R, VT, VI).words) * 4;
  if (bytes > 200 * 1024) return false;
  *rows = static_cast<int>(rb);
  *smem = bytes;
  return true;
}

}  // namespace verify_kernels
}  // namespace mamba_kernels
