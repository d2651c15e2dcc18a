// SSM verify step and fused Mamba-2 step: the per-unit device code (CUDA headers only, no torch).
//
// One block per (batch row, unit) [plain step] or per (batch row, group) [fused step, loops over the group's
// heads]. The block owns everything it writes for its (slot, unit): y rows, the state tile, ring entries, meta.
//
// Per unit, with h0 = state[s, u] (P x N), Q = the committed ring tokens (ring [0, c) then c + accepted path),
// new nodes t < k with path(t) (ancestor-or-self mask):
//   Mamba-2 (scalar decay per head; closed form, so the state is touched by ONE multiply-add per element and
//   new token when nothing is folded):
//     wq_e = dt_e exp(A sum_{e' > e in Q} dt_e'),  eSQ = exp(A sum_Q dt)
//     h_c  = eSQ h0 + sum_e wq_e x_e (x) B_e                      (the committed state; materialised only on fold)
//     hcC_t[p] = (h_c . C_t)[p] = eSQ (h0 . C_t)[p] + sum_e wq_e x_e[p] (B_e . C_t)       (no fold)
//     y_t[p] = rho_t hcC_t[p] + sum_{s in path(t)} dt_s exp(A sum_{s' in path(t), s' > s} dt_s') (B_s . C_t) x_s[p]
//              + D[p] x_t[p],  rho_t = exp(A sum_{path(t)} dt);   y *= silu(z)
//   Mamba-1 (per-element decay): h = h0 replayed over Q element-wise, then the nodes are stepped element-wise
//     (chain: running state; tree: a node whose parent is not the previous node restarts from h_c along its path).
// The state tile is streamed once with 16-byte loads: a row of N is split into segments of V elements (16 B);
// L lanes (a power of two) share a row, each lane holds up to SPL segments of each of RPT rows in registers.
// Row dot products (h . C_t) are reduced over the L lanes with xor shuffles, kKC tokens at a time.
// On fold the committed state h_c is written back (state dtype); otherwise the state is not written.
// Then the new tokens go to the ring at base (0 on fold, c1 otherwise; tree paths are compacted to [c, c1)),
// and meta = [base, k, masks].
// This file: the per-unit device function ssm_unit and its configuration (SsmCfg, SsmLayout); the __global__
// kernels that call it are in verify_ssm_kernel.cuh.
#pragma once
#include "verify/verify_common_kernel.cuh"

namespace mamba_kernels {
namespace verify_kernels {

template <typename T, bool M1>
struct SsmCfg {
  static constexpr int V = SV<T>::V;
  // Max segments per lane per row. Mamba-2: 64 B (fp32) / 32 B per lane-row, few lanes per row (cheap row
  // reductions). Mamba-1: one segment, so a short row (n = 16) still spreads over several lanes (its per-element
  // exp work dominates, and three register tiles are live: h, the committed h_c, A).
  static constexpr int SPL = M1 ? 1 : ((V == 4) ? 4 : 2);
  static constexpr int RPT = M1 ? 2 : 4;  // rows per thread per pass
};

// Shared memory layout in 32-bit words (float or int); every array starts 16-byte aligned.
struct SsmLayout {
  int xs, Bs, Cs, dts, zs, Ds, ydot, Wt, rho, xq, Bq, dtqc, dtqall, wq, G, scal;  // float arrays
  int Qpos, par, mask, ctx, taps, mrow;                                  // int arrays
  int words;
};


__host__ __device__ __forceinline__ SsmLayout ssm_layout(int64_t k, int64_t P, int64_t N, int64_t Pd, int64_t R,
                                                        int V) {
  const int64_t K1 = k > 0 ? k : 1;
  const int64_t Npad = (N + V - 1) / V * V;
  SsmLayout l;
  int o = 0;
  l.xs = o; o += up4(K1 * P);
  l.Bs = o; o += up4(K1 * Npad);
  l.Cs = o; o += up4(K1 * Npad);
  l.dts = o; o += up4(K1 * Pd);
  l.zs = o; o += up4(K1 * P);
  l.Ds = o; o += up4(P);
  l.ydot = o; o += up4(K1 * P);
  l.Wt = o; o += up4(K1 * K1);
  l.rho = o; o += up4(K1);
  l.xq = o; o += up4(kQC * P);
  l.Bq = o; o += up4(kQC * Npad);
  l.dtqc = o; o += up4(kQC * Pd);
  l.dtqall = o; o += up4(R);
  l.wq = o; o += up4(R);
  l.G = o; o += up4(kQC * K1);
  l.scal = o; o += 4;
  l.Qpos = o; o += up4(R);
  l.par = o; o += up4(kMaxK);
  l.mask = o; o += up4(kMaxK);
  l.ctx = o; o += up4(kCtxWords);
  l.taps = o; o += up4(kMaxK * kMaxWidth);
  l.mrow = o; o += up4(2 + kMaxK);
  l.words = o;
  return l;
}


// One (batch row b, slot s, unit u) of the SSM verify step. All threads of the block call it.
// Order (one global round trip for everything but the ring): the first state loads are issued, then
// `setup_load()` issues the control reads into registers (returns them), then the dt / z / D loads are issued,
// then `prep()` fills xs[t][p], Bs[t][n], Cs[t][n] (fp32, rows padded with zeros to Npad) for t < k (it may only
// use what was in shared memory before the call; it issues all its loads before its first store), then
// `setup(pre)` must leave ctx / par / mask / Qpos in shared memory and end with __syncthreads(). The ring chunk
// (x, B, dt) is then fetched in one more round trip with 16-byte loads.
// Ends with __syncthreads(), so shared memory may be reused by the caller.
template <typename T, bool M1, typename SetupLoad, typename Setup, typename Prep>
__device__ __forceinline__ void ssm_unit(const VerifyStepParams& p, float* smf, const SsmLayout& lay, int b, int s,
                                         int u, SetupLoad&& setup_load, Setup&& setup, Prep&& prep) {
  using Cfg = SsmCfg<T, M1>;
  constexpr int V = Cfg::V, SPL = Cfg::SPL, RPT = Cfg::RPT, KC = kKC;
  int* smi = reinterpret_cast<int*>(smf);
  const int tid = threadIdx.x, nthr = blockDim.x, lane = tid & 31, warp = tid >> 5, nwarp = nthr >> 5;
  const int k = static_cast<int>(p.k);
  const int K1 = k > 0 ? k : 1;
  const int64_t P = p.P, N = p.N, Pd = p.Pd, R = p.R;
  const int NS = static_cast<int>((N + V - 1) / V);
  const int Npad = NS * V;
  const int L = lanes_per_row(N, V, SPL);
  const int lir = tid & (L - 1), rg = tid / L, nrg = nthr / L;
  const int rows_pp = RPT * nrg;
  const int nrp = static_cast<int>((P + rows_pp - 1) / rows_pp);
  const int segs_pp = L * SPL;
  const int ncp = (NS + segs_pp - 1) / segs_pp;
  const int npass = nrp * ncp;

  float* xs = smf + lay.xs;
  float* Bs = smf + lay.Bs;
  float* Cs = smf + lay.Cs;
  float* dts = smf + lay.dts;
  float* zs = smf + lay.zs;
  float* Ds = smf + lay.Ds;
  float* ydot = smf + lay.ydot;
  float* Wt = smf + lay.Wt;
  float* rho = smf + lay.rho;
  float* xq = smf + lay.xq;
  float* Bq = smf + lay.Bq;
  float* dtqc = smf + lay.dtqc;
  float* dtqall = smf + lay.dtqall;
  float* wq = smf + lay.wq;
  float* G = smf + lay.G;
  float* scal = smf + lay.scal;
  const int* Qpos = smi + lay.Qpos;
  const int* spar = smi + lay.par;
  const int* smask = smi + lay.mask;
  const int* ctx = smi + lay.ctx;

  T* st = static_cast<T*>(p.state) + s * p.st_s + u * p.st_h;
  const bool vec = (reinterpret_cast<uintptr_t>(p.state) % 16 == 0) && (p.st_s % V == 0) && (p.st_h % V == 0) &&
                   (p.st_p % V == 0);

  // Rows / segments of this thread in a pass.
  auto row_of = [&](int pass, int rr) -> int { return (pass / ncp) * rows_pp + rr * nrg + rg; };
  auto seg_of = [&](int pass, int j) -> int { return (pass % ncp) * segs_pp + j * L + lir; };

  float h[RPT][SPL][V];
  auto load_pass = [&](int pass) {
#pragma unroll
    for (int rr = 0; rr < RPT; ++rr) {
      const int row = row_of(pass, rr);
#pragma unroll
      for (int j = 0; j < SPL; ++j) {
        const int seg = seg_of(pass, j);
        if (row < P && seg < NS) {
          load_seg<T>(st + row * p.st_p, static_cast<int64_t>(seg) * V, N, vec, h[rr][j]);
        } else {
#pragma unroll
          for (int v = 0; v < V; ++v) h[rr][j][v] = 0.f;
        }
      }
    }
  };
  auto store_pass = [&](int pass) {
#pragma unroll
    for (int rr = 0; rr < RPT; ++rr) {
      const int row = row_of(pass, rr);
#pragma unroll
      for (int j = 0; j < SPL; ++j) {
        const int seg = seg_of(pass, j);
        if (row < P && seg < NS) store_seg<T>(st + row * p.st_p, static_cast<int64_t>(seg) * V, N, vec, h[rr][j]);
      }
    }
  };

  load_pass(0);                 // the state stream starts before anything else
  const auto pre = setup_load();  // control reads (registers; nothing waits on them yet)
  // Processed dt, gate and skip inputs: loads issued now, stored after prep() (one shared round trip).
  const int nkd = k * static_cast<int>(Pd);
  float dtv = 0.f, dv = 0.f;
  if (tid < nkd) {
    const int t = tid / static_cast<int>(Pd), pd = tid - t * static_cast<int>(Pd);
    dtv = ld_any(p.dt, b * p.dt_b + t * p.dt_k + u * p.dt_h + pd * p.dt_p, p.in_dtype);
  }
  if (p.D != nullptr && tid < P) dv = p.D[u * p.D_h + tid * p.D_p];
  prep();  // new-token inputs (loads issued before its stores)
  auto proc_dt = [&](int i, float v) {
    const int t = i / static_cast<int>(Pd), pd = i - t * static_cast<int>(Pd);
    if (p.dt_bias != nullptr) v += p.dt_bias[u * p.dtb_h + pd * p.dtb_p];
    dts[i] = process_dt(v, p);
  };
  if (tid < nkd) proc_dt(tid, dtv);
  for (int i = tid + nthr; i < nkd; i += nthr) {
    const int t = i / static_cast<int>(Pd), pd = i - t * static_cast<int>(Pd);
    proc_dt(i, ld_any(p.dt, b * p.dt_b + t * p.dt_k + u * p.dt_h + pd * p.dt_p, p.in_dtype));
  }
  if (p.D != nullptr) {
    if (tid < P) Ds[tid] = dv;
    for (int64_t i = tid + nthr; i < P; i += nthr) Ds[i] = p.D[u * p.D_h + i * p.D_p];
  }
  const float Au = M1 ? 0.f : p.A[u * p.A_h];
  setup(pre);  // ends with __syncthreads()

  const int c = ctx[kCtxC], c1 = ctx[kCtxC1];
  const bool fold = ctx[kCtxFold] != 0;
  const int base = ctx[kCtxBase];

  // Stage ring tokens [q0, q0 + nq) of Q (x, B, and Mamba-1 dt) into shared memory as fp32 (exact copies).
  const bool al_rx = al8(p.rx_s, p.rx_r, p.rx_h), al_rB = al8(p.rB_s, p.rB_r, p.rB_h);
  const bool unit_rd = Pd == 1 || p.rdt_p == 1;  // RowStage rows are contiguous
  const bool al_rd = al8(p.rdt_s, p.rdt_r, p.rdt_h) && unit_rd;
  auto load_chunk = [&](int q0, int nq) {
    const int* qp = Qpos + q0;
    const int64_t x0 = s * p.rx_s + u * p.rx_h, xr = p.rx_r, b0 = s * p.rB_s + u * p.rB_h, br = p.rB_r;
    const int64_t d0 = s * p.rdt_s + u * p.rdt_h, dr = p.rdt_r;
    auto xoff = [qp, x0, xr](int r) -> int64_t { return x0 + qp[r] * xr; };
    auto boff = [qp, b0, br](int r) -> int64_t { return b0 + qp[r] * br; };
    auto doff = [qp, d0, dr](int r) -> int64_t { return d0 + qp[r] * dr; };
    auto sx = row_stage<1>(p.ring_x, p.in_dtype, nq, static_cast<int>(P), xoff, al_rx);
    auto sb = row_stage<1>(p.ring_B, p.in_dtype, nq, static_cast<int>(N), boff, al_rB);
    auto sd = row_stage<1>(p.ring_dt, DType::kFloat32, (M1 && unit_rd) ? nq : 0, static_cast<int>(Pd), doff, al_rd);
    sx.load();
    sb.load();
    if (M1) sd.load();
    sx.store([&](int r, int pp, float v) { xq[r * P + pp] = v; });
    sb.store([&](int r, int n, float v) { Bq[r * Npad + n] = v; });
    if (Npad > N) {
      const int w = Npad - static_cast<int>(N);
      for (int i = tid; i < nq * w; i += nthr) {
        const int r = i / w;
        Bq[r * Npad + N + (i - r * w)] = 0.f;
      }
    }
    if (M1) sd.store([&](int r, int pd, float v) { dtqc[r * Pd + pd] = v; });
    if (M1 && !unit_rd) {
      for (int64_t i = tid; i < static_cast<int64_t>(nq) * Pd; i += nthr) {
        const int64_t ii = i / Pd, pd = i - ii * Pd;
        dtqc[i] = p.ring_dt[s * p.rdt_s + Qpos[q0 + ii] * p.rdt_r + u * p.rdt_h + pd * p.rdt_p];
      }
    }
  };
  // The chunk buffers hold chunk `held` (uniform); chunk 0 is prefetched with the ring dt.
  int held = -1;
  auto get_chunk = [&](int q0, int nq) {
    if (held != q0) {
      __syncthreads();  // everyone is done with the previous chunk
      load_chunk(q0, nq);
      __syncthreads();
      held = q0;
    }
  };
  // The gate (needed only by the epilogue) and the Mamba-2 ring dt: loads overlap ring chunk 0's.
  const int64_t z0 = b * p.z_b + u * p.z_h, zk = p.z_k;
  auto zoff = [z0, zk](int t) -> int64_t { return z0 + t * zk; };
  auto zst = row_stage<1>(p.z, p.in_dtype, p.z != nullptr ? k : 0, static_cast<int>(P), zoff,
                          al8(p.z_b, p.z_k, p.z_h));
  zst.load();
  float dq0 = 0.f;
  if (!M1 && tid < c1) dq0 = p.ring_dt[s * p.rdt_s + Qpos[tid] * p.rdt_r + u * p.rdt_h];
  if (c1 > 0) {
    load_chunk(0, c1 < kQC ? c1 : kQC);
    held = 0;
  }
  if (!M1) {
    if (tid < c1) dtqall[tid] = dq0;
    for (int i = tid + nthr; i < c1; i += nthr) dtqall[i] = p.ring_dt[s * p.rdt_s + Qpos[i] * p.rdt_r + u * p.rdt_h];
  }
  zst.store([&](int t, int pp, float v) { zs[t * P + pp] = silu_f(v); });
  __syncthreads();

  if (!M1) {
    // warp 0: suffix sums of the ring dt -> wq, eSQ.
    if (warp == 0) {
      float carry = 0.f;
      for (int cb = ((c1 + 31) / 32 - 1) * 32; cb >= 0; cb -= 32) {
        const int i = cb + lane;
        const float d = i < c1 ? dtqall[i] : 0.f;
        float incl = d;  // inclusive suffix sum within the chunk
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
          const float o = __shfl_down_sync(0xffffffffu, incl, off);
          if (lane + off < 32) incl += o;
        }
        float excl = __shfl_down_sync(0xffffffffu, incl, 1);
        if (lane == 31) excl = 0.f;
        if (i < c1) wq[i] = d * __expf(Au * (carry + excl));
        carry += __shfl_sync(0xffffffffu, incl, 0);
      }
      if (lane == 0) scal[0] = __expf(Au * carry);  // eSQ
    }
    // other warps (or warp 0 when alone): Wt[t][s] (s <= t) and rho[t].
    const int npairs = k * (k + 1) / 2;
    const int wstep = nwarp > 1 ? nwarp - 1 : 1;
    for (int pi = nwarp > 1 ? warp - 1 : warp; pi >= 0 && pi < npairs; pi += wstep) {
      int t = 0;
      while ((t + 1) * (t + 2) / 2 <= pi) ++t;
      const int sn = pi - t * (t + 1) / 2;
      const unsigned mt = static_cast<unsigned>(smask[t]);
      if (!((mt >> sn) & 1u)) {
        if (lane == 0) Wt[t * K1 + sn] = 0.f;
        continue;
      }
      float d = 0.f;
      for (int n = lane; n < N; n += 32) d = fmaf(Bs[sn * Npad + n], Cs[t * Npad + n], d);
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) d += __shfl_xor_sync(0xffffffffu, d, off);
      if (lane == 0) {
        float suf = 0.f;
        for (int q = sn + 1; q <= t; ++q) {
          if ((mt >> q) & 1u) suf += dts[q];
        }
        Wt[t * K1 + sn] = dts[sn] * __expf(Au * suf) * d;
        if (sn == t) {
          float tot = 0.f;
          for (int q = 0; q <= t; ++q) {
            if ((mt >> q) & 1u) tot += dts[q];
          }
          rho[t] = __expf(Au * tot);
        }
      }
    }
    __syncthreads();
  }
  const float eSQ = M1 ? 1.f : scal[0];

  // Reduce acc over the L lanes of a row and store the row dots of tokens [t0, t0 + KC).
  auto reduce_store = [&](float (&acc)[RPT][KC], int pass, int t0) {
#pragma unroll
    for (int rr = 0; rr < RPT; ++rr) {
#pragma unroll
      for (int tt = 0; tt < KC; ++tt) {
        for (int off = L >> 1; off > 0; off >>= 1) acc[rr][tt] += __shfl_xor_sync(0xffffffffu, acc[rr][tt], off);
      }
    }
    if (lir == 0) {
      const bool first = (pass % ncp) == 0;
#pragma unroll
      for (int rr = 0; rr < RPT; ++rr) {
        const int row = row_of(pass, rr);
        if (row < P) {
#pragma unroll
          for (int tt = 0; tt < KC; ++tt) {
            const int t = t0 + tt;
            if (t < k) {
              float* d = ydot + t * P + row;
              *d = first ? acc[rr][tt] : *d + acc[rr][tt];
            }
          }
        }
      }
    }
  };

  // Tree compaction: ring[pos] = ring[Qpos[pos]] for the staged chunk (positions >= c that move). Safe: every
  // later read is at Qpos[j] >= j > pos, and this chunk's reads finished at the preceding __syncthreads().
  auto compact_chunk = [&](int q0, int nq) {
    for (int64_t i = tid; i < static_cast<int64_t>(nq) * P; i += nthr) {
      const int64_t ii = i / P, pp = i - ii * P;
      const int pos = q0 + static_cast<int>(ii);
      if (pos >= c && Qpos[pos] != pos) st_any(p.ring_x, s * p.rx_s + pos * p.rx_r + u * p.rx_h + pp, p.in_dtype, xq[i]);
    }
    for (int64_t i = tid; i < static_cast<int64_t>(nq) * N; i += nthr) {
      const int64_t ii = i / N, n = i - ii * N;
      const int pos = q0 + static_cast<int>(ii);
      if (pos >= c && Qpos[pos] != pos)
        st_any(p.ring_B, s * p.rB_s + pos * p.rB_r + u * p.rB_h + n, p.in_dtype, Bq[ii * Npad + n]);
    }
    for (int64_t i = tid; i < static_cast<int64_t>(nq) * Pd; i += nthr) {
      const int64_t ii = i / Pd, pd = i - ii * Pd;
      const int pos = q0 + static_cast<int>(ii);
      if (pos >= c && Qpos[pos] != pos)
        p.ring_dt[s * p.rdt_s + pos * p.rdt_r + u * p.rdt_h + pd * p.rdt_p] = M1 ? dtqc[i] : dtqall[pos];
    }
  };

  for (int pass = 0; pass < npass; ++pass) {
    if (pass > 0) load_pass(pass);
    int rows[RPT];
    int segs[SPL];
#pragma unroll
    for (int rr = 0; rr < RPT; ++rr) rows[rr] = row_of(pass, rr);
#pragma unroll
    for (int j = 0; j < SPL; ++j) segs[j] = seg_of(pass, j);
#define MK_RV(rr) (rows[rr] < P)
#define MK_SV(j) (segs[j] < NS)
    if constexpr (M1) {
      float a[RPT][SPL][V];
#pragma unroll
      for (int rr = 0; rr < RPT; ++rr) {
#pragma unroll
        for (int j = 0; j < SPL; ++j) {
#pragma unroll
          for (int v = 0; v < V; ++v) {
            const int64_t n = static_cast<int64_t>(segs[j]) * V + v;
            a[rr][j][v] = (MK_RV(rr) && MK_SV(j) && n < N) ? p.A[u * p.A_h + rows[rr] * p.A_p + n * p.A_n] : 0.f;
          }
        }
      }
      // Element-wise step of token q (x, dt from xsrc / dsrc rows; B from bsrc row).
      auto step = [&](const float* xsrc, const float* dsrc, const float* bsrc) {
#pragma unroll
        for (int rr = 0; rr < RPT; ++rr) {
          const float dtp = MK_RV(rr) ? dsrc[Pd > 1 ? rows[rr] : 0] : 0.f;
          const float dx = MK_RV(rr) ? dtp * xsrc[rows[rr]] : 0.f;
#pragma unroll
          for (int j = 0; j < SPL; ++j) {
            float bv[V];
            if (MK_SV(j)) {
              lds_vec<V>(bsrc + segs[j] * V, bv);
            } else {
#pragma unroll
              for (int v = 0; v < V; ++v) bv[v] = 0.f;
            }
#pragma unroll
            for (int v = 0; v < V; ++v) h[rr][j][v] = fmaf(__expf(dtp * a[rr][j][v]), h[rr][j][v], dx * bv[v]);
          }
        }
      };
      for (int q0 = 0; q0 < c1; q0 += kQC) {
        const int nq = c1 - q0 < kQC ? c1 - q0 : kQC;
        get_chunk(q0, nq);
        if (!fold && pass == npass - 1) compact_chunk(q0, nq);
        for (int ii = 0; ii < nq; ++ii) step(xq + ii * P, dtqc + ii * Pd, Bq + ii * Npad);
      }
      if (fold) store_pass(pass);
      float hc[RPT][SPL][V];
#pragma unroll
      for (int rr = 0; rr < RPT; ++rr)
#pragma unroll
        for (int j = 0; j < SPL; ++j)
#pragma unroll
          for (int v = 0; v < V; ++v) hc[rr][j][v] = h[rr][j][v];
      for (int t0 = 0; t0 < k; t0 += KC) {
        float acc[RPT][KC];
#pragma unroll
        for (int rr = 0; rr < RPT; ++rr)
#pragma unroll
          for (int tt = 0; tt < KC; ++tt) acc[rr][tt] = 0.f;
#pragma unroll
        for (int tt = 0; tt < KC; ++tt) {
          const int t = t0 + tt;
          if (t < k) {
            if (spar[t] != t - 1) {  // not a continuation of the previous node: restart from h_c along the path
#pragma unroll
              for (int rr = 0; rr < RPT; ++rr)
#pragma unroll
                for (int j = 0; j < SPL; ++j)
#pragma unroll
                  for (int v = 0; v < V; ++v) h[rr][j][v] = hc[rr][j][v];
              for (unsigned pm = static_cast<unsigned>(smask[t]) & ~(1u << t); pm != 0u; pm &= pm - 1u) {
                const int q = __ffs(pm) - 1;
                step(xs + q * P, dts + q * Pd, Bs + q * Npad);
              }
            }
            step(xs + t * P, dts + t * Pd, Bs + t * Npad);
#pragma unroll
            for (int j = 0; j < SPL; ++j) {
              if (MK_SV(j)) {
                float cv[V];
                lds_vec<V>(Cs + t * Npad + segs[j] * V, cv);
#pragma unroll
                for (int rr = 0; rr < RPT; ++rr)
#pragma unroll
                  for (int v = 0; v < V; ++v) acc[rr][tt] = fmaf(h[rr][j][v], cv[v], acc[rr][tt]);
              }
            }
          }
        }
        reduce_store(acc, pass, t0);
      }
    } else {
      if (fold) {
        // h_c = eSQ h0 + sum_e (wq_e x_e) (x) B_e, written back.
#pragma unroll
        for (int rr = 0; rr < RPT; ++rr)
#pragma unroll
          for (int j = 0; j < SPL; ++j)
#pragma unroll
            for (int v = 0; v < V; ++v) h[rr][j][v] *= eSQ;
        for (int q0 = 0; q0 < c1; q0 += kQC) {
          const int nq = c1 - q0 < kQC ? c1 - q0 : kQC;
          get_chunk(q0, nq);
          for (int ii = 0; ii < nq; ++ii) {
            const float w = wq[q0 + ii];
            float ux[RPT];
#pragma unroll
            for (int rr = 0; rr < RPT; ++rr) ux[rr] = MK_RV(rr) ? w * xq[ii * P + rows[rr]] : 0.f;
#pragma unroll
            for (int j = 0; j < SPL; ++j) {
              if (MK_SV(j)) {
                float bv[V];
                lds_vec<V>(Bq + ii * Npad + segs[j] * V, bv);
#pragma unroll
                for (int rr = 0; rr < RPT; ++rr)
#pragma unroll
                  for (int v = 0; v < V; ++v) h[rr][j][v] = fmaf(ux[rr], bv[v], h[rr][j][v]);
              }
            }
          }
        }
        store_pass(pass);
      }
      for (int t0 = 0; t0 < k; t0 += KC) {
        float acc[RPT][KC];
#pragma unroll
        for (int rr = 0; rr < RPT; ++rr)
#pragma unroll
          for (int tt = 0; tt < KC; ++tt) acc[rr][tt] = 0.f;
#pragma unroll
        for (int j = 0; j < SPL; ++j) {
          if (MK_SV(j)) {
#pragma unroll
            for (int tt = 0; tt < KC; ++tt) {
              const int t = t0 + tt;
              if (t < k) {
                float cv[V];
                lds_vec<V>(Cs + t * Npad + segs[j] * V, cv);
#pragma unroll
                for (int rr = 0; rr < RPT; ++rr)
#pragma unroll
                  for (int v = 0; v < V; ++v) acc[rr][tt] = fmaf(h[rr][j][v], cv[v], acc[rr][tt]);
              }
            }
          }
        }
        reduce_store(acc, pass, t0);
      }
    }
  }

#undef MK_RV
#undef MK_SV
  if (!M1 && !fold && c1 > 0) {
    // hcC_t = eSQ (h0 . C_t) + sum_e wq_e x_e (B_e . C_t); compacts tree paths in the ring on the way.
    for (int q0 = 0; q0 < c1; q0 += kQC) {
      const int nq = c1 - q0 < kQC ? c1 - q0 : kQC;
      get_chunk(q0, nq);
      compact_chunk(q0, nq);
      for (int pi = warp; pi < nq * k; pi += nwarp) {
        const int ii = pi / k, t = pi - ii * k;
        float d = 0.f;
        for (int n = lane; n < N; n += 32) d = fmaf(Bq[ii * Npad + n], Cs[t * Npad + n], d);
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) d += __shfl_xor_sync(0xffffffffu, d, off);
        if (lane == 0) G[ii * K1 + t] = d * wq[q0 + ii];
      }
      __syncthreads();
      for (int64_t i = tid; i < static_cast<int64_t>(k) * P; i += nthr) {
        const int64_t t = i / P, pp = i - t * P;
        float v = ydot[i];
        if (q0 == 0) v *= eSQ;
        for (int ii = 0; ii < nq; ++ii) v = fmaf(G[ii * K1 + t], xq[ii * P + pp], v);
        ydot[i] = v;
      }
    }
  }
  __syncthreads();

  // Epilogue: y.
  for (int64_t i = tid; i < static_cast<int64_t>(k) * P; i += nthr) {
    const int64_t t = i / P, pp = i - t * P;
    float v;
    if (M1) {
      v = ydot[i];
    } else {
      v = rho[t] * ydot[i];
      for (int q = 0; q <= t; ++q) v = fmaf(Wt[t * K1 + q], xs[q * P + pp], v);
    }
    if (p.D != nullptr) v = fmaf(Ds[pp], xs[i], v);
    if (p.z != nullptr) v *= zs[i];
    st_any(p.y, b * p.y_b + t * p.y_k + u * p.y_h + pp, p.in_dtype, v);
  }
  // New tokens into the ring at [base, base + k) (every ring read finished before the last __syncthreads()).
  for (int64_t i = tid; i < static_cast<int64_t>(k) * P; i += nthr) {
    const int64_t t = i / P, pp = i - t * P;
    const int64_t pos = base + t;
    if (pos < R) st_any(p.ring_x, s * p.rx_s + pos * p.rx_r + u * p.rx_h + pp, p.in_dtype, xs[i]);
  }
  for (int64_t i = tid; i < static_cast<int64_t>(k) * N; i += nthr) {
    const int64_t t = i / N, n = i - t * N;
    const int64_t pos = base + t;
    if (pos < R) st_any(p.ring_B, s * p.rB_s + pos * p.rB_r + u * p.rB_h + n, p.in_dtype, Bs[t * Npad + n]);
  }
  for (int64_t i = tid; i < static_cast<int64_t>(k) * Pd; i += nthr) {
    const int64_t t = i / Pd, pd = i - t * Pd;
    const int64_t pos = base + t;
    if (pos < R) p.ring_dt[s * p.rdt_s + pos * p.rdt_r + u * p.rdt_h + pd * p.rdt_p] = dts[i];
  }
  if (tid == 0) {
    int32_t* m = p.meta + s * p.meta_s + u * p.meta_h;
    m[0] = base;
    m[p.meta_i] = k;
    for (int t = 0; t < k && t < p.Kmax; ++t) m[(2 + t) * p.meta_i] = smask[t];
  }
  __syncthreads();
}

}  // namespace verify_kernels
}  // namespace mamba_kernels
