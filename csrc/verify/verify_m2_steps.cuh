// The steps of a Mamba-2 verify unit (one batch row, one head) that verify_m2_kernel and verify_m2tc_kernel share
// (CUDA headers only): the control words after committing the accepted path, staging the ring's committed rows,
// the draft masks, the ring weights, the y epilogue with the new tokens' ring writes, the tree-path compaction and
// the meta row. The two kernels differ in how they read the state tile (FMAs vs tensor cores) and fold it.
// Semantics: docs/verify_step_design.md; closed form: the header of verify_m2_kernel.cuh.
#pragma once
#include "verify/verify_common_kernel.cuh"

namespace mamba_kernels {
namespace verify_kernels {

// Index of the n-th (0-based) set bit of m (m has more than n set bits).
__device__ __forceinline__ int nth_set_bit(unsigned m, int n) {
  for (int i = 0; i < n; ++i) m &= m - 1u;
  return __ffs(static_cast<int>(m)) - 1;
}

__device__ __forceinline__ int ilog2(int v) { return __ffs(v) - 1; }  // v a power of two

template <int VI>
__device__ __forceinline__ void sts_vec(float* dst, const float (&v)[VI]) {
#pragma unroll
  for (int i = 0; i < VI; i += 4) *reinterpret_cast<float4*>(dst + i) = make_float4(v[i], v[i + 1], v[i + 2], v[i + 3]);
}

// Shared memory of a unit, as both kernels lay it out (fp32 unless said): xs (k, P) new x; Sd (k, P) state dots;
// Ds (P); dts (k) new dt; dtq (R) ring dt; wq (R) ring weights; G (R, K1) ring B . C; BC (K1, K1) new B . C;
// scal[0] = eSQ; smeta (2 + Kmax) int; spar, smask (k) int; raw_in: x, z, B, C chunks of the new tokens
// (k PC, k PC if z, k NC, k NC); raw_ring: the committed ring tokens' x chunks (token e at e PC), then their B chunks
// from m2_ring_b(R, PC) on (token e at m2_ring_b + e NC).
struct M2Smem {
  float *xs, *Sd, *Ds, *dts, *dtq, *wq, *G, *BC, *scal;
  int *smeta, *spar, *smask;
  uint4 *raw_in, *raw_ring;
};

// The chunk where raw_ring's B rows start (after room for R x rows of PC chunks): a place that does not depend on c1.
// Every kernel's raw_ring (M2Smem, the split stream kernel's M2StrLayout ring) has room for R tokens' x and B rows.
__host__ __device__ __forceinline__ int m2_ring_b(int R, int PC) { return R * PC; }

// Word offsets (32-bit words, every array 16-byte aligned) of the arrays both kernels keep in shared memory (see
// M2Smem); each kernel's layout adds its state-tile staging.
struct M2CommonLayout {
  int raw_in, raw_ring;                              // uint4 chunks as copied (VI input elements each)
  int xs, S, Ds, dts, dtq, wq, G, BC, scal;          // fp32
  int meta, par, mask;                               // int
};

// Places the common arrays from word o; returns the next free word. prep (the split pair's prep kernel: no state
// tile, no gate): no space for S or xs (it reads x raw), raw_in without the z rows.
__host__ __device__ __forceinline__ int m2_place_common(M2CommonLayout& l, int o, int64_t k, int64_t P, int64_t N,
                                                        int64_t R, int VI, bool prep = false) {
  const int64_t K1 = k > 0 ? k : 1;
  l.raw_in = o; o += static_cast<int>(K1 * ((prep ? 1 : 2) * P + 2 * N) / VI * 4);
  l.raw_ring = o; o += static_cast<int>(R * (P + N) / VI * 4);
  l.xs = o; o += prep ? 0 : up4(K1 * P);
  l.S = o; o += prep ? 0 : up4(K1 * P);
  l.Ds = o; o += up4(P);
  l.dts = o; o += up4(K1);
  l.dtq = o; o += up4(R);
  l.wq = o; o += up4(R);
  l.G = o; o += up4(R * K1);
  l.BC = o; o += up4(K1 * K1);
  l.scal = o; o += 4;
  l.meta = o; o += up4(2 + kMaxK);
  l.par = o; o += up4(kMaxK);
  l.mask = o; o += up4(kMaxK);
  return o;
}

// Host checks both Mamba-2 kernels need: Mamba-2 layout (not fused), fp32 / fp16 / bf16 inputs, every row of
// state (VT elements a 16-byte chunk), x, z, B, C, y, ring_x, ring_B (VI a chunk) 16-byte aligned, and the
// per-row terms of the in-kernel offsets within 32 bits (the per-batch / per-slot terms are promoted to 64 bits).
inline bool m2_io_fits(const VerifyStepParams& p, int VT, int VI) {
  if (p.fused || !(p.Pa == 1 && p.Na == 1 && p.Pd == 1)) return false;
  if (p.in_dtype == DType::kFloat64) return false;
  auto al = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  auto mult = [](int64_t a, int64_t b, int64_t c, int m) { return a % m == 0 && b % m == 0 && c % m == 0; };
  if (!al(p.state) || !mult(p.st_s, p.st_h, p.st_p, VT)) return false;
  if (!al(p.x) || !mult(p.x_b, p.x_k, p.x_h, VI) || !al(p.y) || !mult(p.y_b, p.y_k, p.y_h, VI)) return false;
  if (p.z != nullptr && (!al(p.z) || !mult(p.z_b, p.z_k, p.z_h, VI))) return false;
  if (!al(p.B) || !mult(p.B_b, p.B_k, p.B_g, VI) || !al(p.C) || !mult(p.C_b, p.C_k, p.C_g, VI)) return false;
  if (!al(p.ring_x) || !mult(p.rx_s, p.rx_r, p.rx_h, VI) || !al(p.ring_B) || !mult(p.rB_s, p.rB_r, p.rB_h, VI))
    return false;
  const int64_t lim = int64_t(1) << 30;
  return !(p.S > lim || p.batch > lim || p.x_k * p.k > lim || p.y_k * p.k > lim || p.z_k * p.k > lim ||
           p.B_k * p.k > lim || p.C_k * p.k > lim || p.rx_r * p.R > lim || p.rB_r * p.R > lim ||
           p.st_p * p.P > lim || p.D_p * p.P > lim || p.D_h * p.H > lim || p.A_h * p.H > lim ||
           p.dtb_h * p.H > lim || p.par_k * p.k > lim || p.par_b * p.batch > lim || p.dt_k * p.k > lim ||
           p.dt_h * p.H > lim || p.meta_i * (2 + p.Kmax) > lim || p.slots_stride * p.batch > lim ||
           p.accepted_stride * p.batch > lim);
}

// Per-thread scalars of a unit, loaded before the first barrier: meta word tid (< nm), the accepted count, parent
// and raw dt of draft node tid (< k), A and dt_bias of the head.
struct M2Scalars {
  int mv, accv, par;
  float dtv, Au, dtb;
};

// kO32 (here and in the helpers below): offsets in 32-bit arithmetic (eoff; offsets_fit32(p) holds).
template <typename TI, bool kO32 = false>
__device__ __forceinline__ M2Scalars m2_load_scalars(const VerifyStepParams& p, int b, int u, int s, int tid, int k,
                                                     int nm) {
  M2Scalars v;
  const int32_t* meta_row = p.meta + eoff<kO32>(s, p.meta_s, u, p.meta_h);
  v.mv = tid < nm ? meta_row[eoff<kO32>(tid, p.meta_i)] : 0;
  v.accv = p.accepted[eoff<kO32>(b, p.accepted_stride)];
  v.par = -1;
  if (tid < k) v.par = p.parents != nullptr ? p.parents[eoff<kO32>(b, p.par_b, tid, p.par_k)] : tid - 1;
  v.dtv = 0.f;
  if (tid < k) v.dtv = SV<TI>::to_f(static_cast<const TI*>(p.dt)[eoff<kO32>(b, p.dt_b, tid, p.dt_k, u, p.dt_h)]);
  v.Au = p.A[eoff<kO32>(u, p.A_h)];
  v.dtb = p.dt_bias != nullptr ? p.dt_bias[eoff<kO32>(u, p.dtb_h)] : 0.f;
  return v;
}

// smeta, spar (parents before the node, else -1) and dts (processed dt) from them; a barrier must follow.
__device__ __forceinline__ void m2_store_scalars(const VerifyStepParams& p, const M2Scalars& v, int* smeta, int* spar,
                                                 float* dts, int tid, int k, int nm) {
  if (tid < nm) smeta[tid] = v.mv;
  if (tid < k) {
    spar[tid] = (v.par < 0 || v.par >= tid) ? -1 : v.par;
    dts[tid] = process_dt(v.dtv + v.dtb, p);
  }
}

// The common arrays of a kernel's layout.
__device__ __forceinline__ M2Smem m2_smem(const M2CommonLayout& l, float4* smem) {
  float* f = reinterpret_cast<float*>(smem);
  int* i = reinterpret_cast<int*>(smem);
  return M2Smem{f + l.xs, f + l.S, f + l.Ds, f + l.dts, f + l.dtq, f + l.wq, f + l.G, f + l.BC, f + l.scal,
                i + l.meta, i + l.par, i + l.mask, reinterpret_cast<uint4*>(f + l.raw_in),
                reinterpret_cast<uint4*>(f + l.raw_ring)};
}

// Control state after committing the accepted path of the pending draft.
struct M2Ctl {
  int c, c1, base;  // committed ring tokens before / after; ring position of the new tokens
  unsigned path;    // committed draft nodes (bit mask)
  bool fold, prefix;
  // Ring position e's source: committed tokens before c stay, path nodes are the set bits of `path`.
  __device__ __forceinline__ int qpos(int e) const { return (e < c || prefix) ? e : c + nth_set_bit(path, e - c); }
};

// From the meta row's words: m0 = c, m1 = kp as stored (clamped here: a corrupt row never indexes out of the ring),
// mask_at(a) = the mask word of pending node a (read only for the accepted node, 0 <= a < kp).
// PP: VerifyStepParams, or a kernel's compact parameter struct with Kmax, accepted_is_node, fold_all.
template <typename PP, typename MaskAt>
__device__ __forceinline__ M2Ctl m2_control_words(const PP& p, int m0, int m1, MaskAt&& mask_at,
                                                  int accv, int R, int k) {
  M2Ctl t;
  const int c = m0 < 0 ? 0 : (m0 > R ? R : m0);
  int kp_max = static_cast<int>(p.Kmax < kMaxK ? p.Kmax : kMaxK);
  if (kp_max > R - c) kp_max = R - c;
  const int kp = m1 < 0 ? 0 : (m1 > kp_max ? kp_max : m1);
  int a = p.accepted_is_node ? accv : accv - 1;
  if (a > kp - 1) a = kp - 1;
  t.c = c;
  t.path = a >= 0 ? (static_cast<unsigned>(mask_at(a)) & low_mask(kp)) : 0u;
  t.c1 = c + __popc(t.path);
  t.fold = p.fold_all || t.c1 + k > R;
  t.base = t.fold ? 0 : t.c1;
  t.prefix = (t.path & (t.path + 1u)) == 0u;  // path = nodes 0..m-1: ring positions need no compaction
  return t;
}

// The same from the meta row staged in shared memory (smeta[0, nm), nm = 2 + min(Kmax, kMaxK)).
__device__ __forceinline__ M2Ctl m2_control(const VerifyStepParams& p, const int* smeta, int accv, int R, int k) {
  return m2_control_words(p, smeta[0], smeta[1], [smeta](int a) { return smeta[2 + a]; }, accv, R, k);
}

// Ring rows of the c1 committed tokens (x: PC chunks, B: NC chunks a token) -> raw_ring by cp.async; rx0 / rb0:
// the unit's ring_x / ring_B offsets. Thread tid of nthreads copies its share; with_x / with_b: which rows (the split
// pair's prep kernel needs the B rows for its dots and the x rows only to compact a tree path; its stream kernel the
// x rows, and the B rows of a unit that folds). Returns the ring dt of committed token tid (0 past c1), for dtq.
template <typename TI, bool kO32 = false>
__device__ __forceinline__ float m2_stage_ring(const VerifyStepParams& p, const M2Ctl& ct, uint4* raw_ring,
                                               int64_t rx0, int64_t rb0, int s, int u, int PC, int NC,
                                               int tid, int nthreads, bool with_x = true, bool with_b = true) {
  constexpr int VI = SV<TI>::V;
  const int lPC = ilog2(PC), lNC = ilog2(NC), nrx = ct.c1 * PC, n_ring = ct.c1 * (PC + NC);
  const int rbo = m2_ring_b(static_cast<int>(p.R), PC);
  for (int i = with_x ? tid : nrx + tid; i < (with_b ? n_ring : nrx); i += nthreads) {
    if (i < nrx) {
      cp_async16(raw_ring + i, static_cast<const TI*>(p.ring_x) + rx0 +
                                   eoff<kO32>(ct.qpos(i >> lPC), p.rx_r, (i & (PC - 1)) * VI, 1));
    } else {
      const int j = i - nrx;
      cp_async16(raw_ring + rbo + j, static_cast<const TI*>(p.ring_B) + rb0 +
                                         eoff<kO32>(ct.qpos(j >> lNC), p.rB_r, (j & (NC - 1)) * VI, 1));
    }
  }
  if (tid >= ct.c1) return 0.f;
  return p.ring_dt[eoff<kO32>(s, p.rdt_s, ct.qpos(tid), p.rdt_r, u, p.rdt_h)];
}

// Ancestor-or-self mask of draft node t from its parents (spar: parent before the node, else -1).
__device__ __forceinline__ unsigned node_mask(const int* spar, int t) {
  unsigned m = 1u << t;
  for (int q = spar[t]; q >= 0; q = spar[q]) m |= 1u << q;
  return m;
}

// smask[t] = node_mask(spar, t) (thread t < k; spar written before a barrier).
__device__ __forceinline__ void m2_masks(const int* spar, int* smask, int tid, int k) {
  if (tid < k) smask[tid] = static_cast<int>(node_mask(spar, tid));
}

// One warp: wq_e = dt_e exp(A sum_{e' > e} dt_e'), eSQ = exp(A sum_e dt_e) -> scal[0].
__device__ __forceinline__ void m2_ring_weights(const float* dtq, float* wq, float* scal, int c1, float Au,
                                                int lane) {
  float carry = 0.f;
  for (int cb = ((c1 + 31) / 32 - 1) * 32; cb >= 0; cb -= 32) {
    const int i = cb + lane;
    const float d = i < c1 ? dtq[i] : 0.f;
    float incl = d;  // inclusive suffix sum within the 32-chunk
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
      const float o = __shfl_down_sync(0xffffffffu, incl, off);
      if (lane + off < 32) incl += o;
    }
    if (i < c1) wq[i] = d * __expf(Au * (carry + incl - d));
    carry += __shfl_sync(0xffffffffu, incl, 0);
  }
  if (lane == 0) scal[0] = __expf(Au * carry);
}

// The new tokens' B rows (raw chunks at rawB, k NC) and processed dt (dts) into the ring at ct.base (positions < R).
template <typename TI, bool kO32 = false>
__device__ __forceinline__ void m2_ring_new_b(const VerifyStepParams& p, const M2Ctl& ct, const uint4* rawB,
                                              const float* dts, int k, int N, int64_t rb0, int s, int u, int tid,
                                              int nthreads) {
  constexpr int VI = SV<TI>::V;
  const int NC = N / VI, lNC = ilog2(NC), R = static_cast<int>(p.R);
  const int64_t rbw = rb0 + eoff<kO32>(ct.base, p.rB_r);
  for (int i = tid; i < k * NC; i += nthreads) {
    const int t = i >> lNC, n0 = (i & (NC - 1)) * VI;
    if (ct.base + t < R)
      *reinterpret_cast<uint4*>(static_cast<TI*>(p.ring_B) + rbw + eoff<kO32>(t, p.rB_r, n0, 1)) = rawB[i];
  }
  if (tid < k && ct.base + tid < R)
    p.ring_dt[eoff<kO32>(s, p.rdt_s, ct.base + tid, p.rdt_r, u, p.rdt_h)] = dts[tid];
}

// y of every (token t, VI channels from p0) by the closed form, times silu(z); the new tokens' x, B and dt into the
// ring at base (positions < R). y: this unit's output (b, u applied). Thread tid of nthreads.
template <typename TI, bool kO32 = false>
__device__ __forceinline__ void m2_outputs(const VerifyStepParams& p, const M2Ctl& ct, const M2Smem& sm, TI* y,
                                           int k, int P, int N, int R, float Au, int64_t rx0, int64_t rb0,
                                           int s, int u, int tid, int nthreads) {
  constexpr int VI = SV<TI>::V;
  const int PC = P / VI, lPC = ilog2(PC), K1 = k > 0 ? k : 1;
  const int nxc = k * PC, nzc = p.z != nullptr ? k * PC : 0;
  const float eSQ = sm.scal[0];
  const int64_t rxw = rx0 + eoff<kO32>(ct.base, p.rx_r);
  for (int i = tid; i < k * PC; i += nthreads) {
    const int t = i >> lPC, pc = i & (PC - 1), p0 = pc * VI;
    float hc[VI], ws[VI], xv[VI];
    lds_vec<VI>(sm.Sd + t * P + p0, hc);
#pragma unroll
    for (int e = 0; e < VI; ++e) hc[e] *= eSQ;
#pragma unroll
    for (int e = 0; e < VI; ++e) ws[e] = 0.f;
    for (int e = 0; e < ct.c1; ++e) {
      const float coef = sm.wq[e] * sm.G[e * K1 + t];
      SV<TI>::unpack(sm.raw_ring[e * PC + pc], xv);
#pragma unroll
      for (int v = 0; v < VI; ++v) hc[v] = fmaf(coef, xv[v], hc[v]);
    }
    // Path of t from t down: W[t][s] = dt_s exp(A * (sum of the path's dt after s)) BC[t][s]; rho_t at the end.
    const unsigned mt = static_cast<unsigned>(sm.smask[t]);
    float suf = 0.f;
    for (int sn = t; sn >= 0; --sn) {
      if ((mt >> sn) & 1u) {
        const float w = sm.dts[sn] * __expf(Au * suf) * sm.BC[t * K1 + sn];
        lds_vec<VI>(sm.xs + sn * P + pc * VI, xv);
#pragma unroll
        for (int v = 0; v < VI; ++v) ws[v] = fmaf(w, xv[v], ws[v]);
        suf += sm.dts[sn];
      }
    }
    const float rho = __expf(Au * suf);
    float dv[VI], out[VI];
    lds_vec<VI>(sm.xs + t * P + pc * VI, xv);
    lds_vec<VI>(sm.Ds + p0, dv);
#pragma unroll
    for (int v = 0; v < VI; ++v) out[v] = fmaf(dv[v], xv[v], fmaf(rho, hc[v], ws[v]));
    if (p.z != nullptr) {
      float zv[VI];
      SV<TI>::unpack(sm.raw_in[nxc + i], zv);
#pragma unroll
      for (int v = 0; v < VI; ++v) out[v] *= silu_f(zv[v]);
    }
    *reinterpret_cast<uint4*>(y + eoff<kO32>(t, p.y_k, p0, 1)) = SV<TI>::pack(out);
    if (ct.base + t < R)
      *reinterpret_cast<uint4*>(static_cast<TI*>(p.ring_x) + rxw + eoff<kO32>(t, p.rx_r, p0, 1)) = sm.raw_in[i];
  }
  m2_ring_new_b<TI, kO32>(p, ct, sm.raw_in + nxc + nzc, sm.dts, k, N, rb0, s, u, tid, nthreads);
}

// Without a fold, a tree path's committed nodes are compacted to ring [c, c1) (after every ring read); then the
// meta row = [base, k, masks].
template <typename TI, bool kO32 = false>
__device__ __forceinline__ void m2_finish(const VerifyStepParams& p, const M2Ctl& ct, const M2Smem& sm, int k, int P,
                                          int N, int64_t rx0, int64_t rb0, int s, int u, int tid,
                                          int nthreads) {
  constexpr int VI = SV<TI>::V;
  const int PC = P / VI, NC = N / VI, lPC = ilog2(PC), lNC = ilog2(NC);
  const int rbo = m2_ring_b(static_cast<int>(p.R), PC);
  if (!ct.fold && !ct.prefix) {
    const int m = ct.c1 - ct.c;
    for (int i = tid; i < m * (PC + NC); i += nthreads) {
      const bool isx = i < m * PC;
      const int jj = isx ? i : i - m * PC;
      const int e = ct.c + (isx ? (jj >> lPC) : (jj >> lNC));
      if (ct.qpos(e) == e) continue;
      if (isx) {
        *reinterpret_cast<uint4*>(static_cast<TI*>(p.ring_x) + rx0 + eoff<kO32>(e, p.rx_r, (jj & (PC - 1)) * VI, 1)) =
            sm.raw_ring[e * PC + (jj & (PC - 1))];
      } else {
        *reinterpret_cast<uint4*>(static_cast<TI*>(p.ring_B) + rb0 + eoff<kO32>(e, p.rB_r, (jj & (NC - 1)) * VI, 1)) =
            sm.raw_ring[rbo + e * NC + (jj & (NC - 1))];
      }
    }
    if (tid < m && ct.qpos(ct.c + tid) != ct.c + tid)
      p.ring_dt[eoff<kO32>(s, p.rdt_s, ct.c + tid, p.rdt_r, u, p.rdt_h)] = sm.dtq[ct.c + tid];
  }
  int32_t* mrow = p.meta + eoff<kO32>(s, p.meta_s, u, p.meta_h);
  if (tid == 0) {
    mrow[0] = ct.base;
    mrow[p.meta_i] = k;
  }
  if (tid < k && tid < p.Kmax) mrow[eoff<kO32>(2 + tid, p.meta_i)] = sm.smask[tid];
}

}  // namespace verify_kernels
}  // namespace mamba_kernels
