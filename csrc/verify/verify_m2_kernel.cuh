// Mamba-2 SSM verify step, latency-lean kernel (CUDA headers only, no torch). Same contract and cache format as
// verify_ssm_kernel (docs/verify_step_design.md); used for the Mamba-2 layout when the state tile fits one pass of
// the block's registers (launch_verify_ssm picks it; the general kernel remains the fallback).
//
// Why a second kernel: the general one spent ~28 us per block at batch 64 (ncu: 0.4 issued instructions per cycle
// per scheduler, ~5.6k instructions per warp, 650 B of spills), mostly on per-element 64-bit index divisions in
// ring / epilogue loops and seven block barriers. Here a block is one (batch row, head) with 256 threads and does:
//   1. one global round trip: its state tile (16-byte loads into registers: 64 fp32 / 128 16-bit values a thread),
//      the control words, and the new tokens' x, z, B, C, dt, D;                                      barrier 1
//   2. the control words (every thread, from shared memory), the ring loads (registers, in flight while) the state
//      dots S_t = h0 . C_t are reduced, and the new tokens' B_s . C_t dots;                           barrier 2
//   3. ring dt suffix sums (warp 0), the node weights rho_t, W[t][s] (warp 1), ring dots G[e][t] = B_e . C_t;
//                                                                                                     barrier 3
//   4. fold (h_c = eSQ h0 + sum_e wq_e x_e (x) B_e, written back), y, ring and meta writes.
// Closed form (as in verify_ssm_kernel): with the committed ring tokens e (dt_e, x_e, B_e) and node t's path,
//   y_t[p] = rho_t (eSQ S_t[p] + sum_e wq_e G[e][t] x_e[p]) + sum_{s in path(t)} W[t][s] x_s[p] + D[p] x_t[p],
//   wq_e = dt_e exp(A sum_{e' > e} dt_e'), eSQ = exp(A sum_e dt_e), rho_t = exp(A sum_{path(t)} dt),
//   W[t][s] = dt_s exp(A sum_{s' in path(t), s' > s} dt_s') (B_s . C_t);  then y *= silu(z).
#pragma once
#include "verify/verify_common_kernel.cuh"

namespace mamba_kernels {
namespace verify_kernels {

constexpr int kM2Threads = 256;
constexpr int kM2Rpt = 4;  // state rows per thread

template <typename T>
struct M2Cfg {
  static constexpr int V = SV<T>::V;
  static constexpr int SPL = V == 4 ? 4 : 2;  // 16-byte segments per lane and row: 16 state values
};

// Shared memory layout in 32-bit words; every array 16-byte aligned.
struct M2Layout {
  int xs, zs, Bs, Cs, dts, Ds, S, xq, Bq, dtq, wq, G, BC, W, rho, scal;  // floats
  int meta, par, mask;                                                   // ints
  int raw_in, raw_ring;                                                  // uint4 staging (cp.async)
  int words;
};

__host__ __device__ __forceinline__ M2Layout m2_layout(int64_t k, int64_t P, int64_t N, int64_t R) {
  const int64_t K1 = k > 0 ? k : 1;
  M2Layout l;
  int o = 0;
  l.xs = o; o += up4(K1 * P);
  l.zs = o; o += up4(K1 * P);
  l.Bs = o; o += up4(K1 * N);
  l.Cs = o; o += up4(K1 * N);
  l.dts = o; o += up4(K1);
  l.Ds = o; o += up4(P);
  l.S = o; o += up4(K1 * P);
  l.xq = o; o += up4(R * P);
  l.Bq = o; o += up4(R * N);
  l.dtq = o; o += up4(R);
  l.wq = o; o += up4(R);
  l.G = o; o += up4(R * K1);
  l.BC = o; o += up4(K1 * K1);
  l.W = o; o += up4(K1 * K1);
  l.rho = o; o += up4(K1);
  l.scal = o; o += 4;
  l.meta = o; o += up4(2 + kMaxK);
  l.par = o; o += up4(kMaxK);
  l.mask = o; o += up4(kMaxK);
  // Raw 16-byte chunks as copied (2 or 4 bytes an element; sized for 4): new x, z, B, C; ring x, B.
  l.raw_in = o; o += up4(K1 * (2 * P + 2 * N));
  l.raw_ring = o; o += up4(R * (P + N));
  l.words = o;
  return l;
}

// Index of the n-th (0-based) set bit of m (m has more than n set bits).
__device__ __forceinline__ int nth_set_bit(unsigned m, int n) {
  for (int i = 0; i < n; ++i) m &= m - 1u;
  return __ffs(static_cast<int>(m)) - 1;
}

// Sum over the lanes of an L-lane group (L a power of two <= 32; groups are aligned lane ranges).
__device__ __forceinline__ float group_sum(float v, int L) {
  for (int off = L >> 1; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

template <typename T>
__global__ void __launch_bounds__(kM2Threads, 2) verify_m2_kernel(const VerifyStepParams p) {
  using Cfg = M2Cfg<T>;
  constexpr int V = Cfg::V, SPL = Cfg::SPL, RPT = kM2Rpt, NT = kM2Threads;
  MK_VERIFY_DYN_SMEM(smem_f4);
  float* smf = reinterpret_cast<float*>(smem_f4);
  int* smi = reinterpret_cast<int*>(smem_f4);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t b = blockIdx.x / p.H, u = blockIdx.x % p.H;
  const int64_t s = p.slots[b * p.slots_stride];
  if (s < 0 || s >= p.S) {
    zero_y(p, b, u, 1);
    return;
  }
  const int k = static_cast<int>(p.k), K1 = k > 0 ? k : 1;
  const int P = static_cast<int>(p.P), N = static_cast<int>(p.N), R = static_cast<int>(p.R);
  const int NS = N / V;
  const int L = lanes_per_row(N, V, SPL);
  const int lir = tid & (L - 1), rg = tid / L, nrg = NT / L;
  const int64_t g = u / (p.H / p.G);
  const M2Layout lay = m2_layout(k, P, N, R);
  float* xs = smf + lay.xs;
  float* zs = smf + lay.zs;
  float* Bs = smf + lay.Bs;
  float* Cs = smf + lay.Cs;
  float* dts = smf + lay.dts;
  float* Ds = smf + lay.Ds;
  float* Sd = smf + lay.S;
  float* xq = smf + lay.xq;
  float* Bq = smf + lay.Bq;
  float* dtq = smf + lay.dtq;
  float* wq = smf + lay.wq;
  float* G = smf + lay.G;
  float* BC = smf + lay.BC;
  float* W = smf + lay.W;
  float* rho = smf + lay.rho;
  float* scal = smf + lay.scal;
  int* smeta = smi + lay.meta;
  int* spar = smi + lay.par;
  int* smask = smi + lay.mask;

  // ---- 1. one round trip: state tile, control, new-token inputs --------------------------------------------
  T* st = static_cast<T*>(p.state) + s * p.st_s + u * p.st_h;
  float h[RPT][SPL][V];
#pragma unroll
  for (int rr = 0; rr < RPT; ++rr) {
    const int row = rr * nrg + rg;
#pragma unroll
    for (int j = 0; j < SPL; ++j) {
      const int seg = j * L + lir;
      if (row < P && seg < NS) {
        SV<T>::unpack(__ldcs(reinterpret_cast<const uint4*>(st + row * p.st_p + seg * V)), h[rr][j]);
      } else {
#pragma unroll
        for (int v = 0; v < V; ++v) h[rr][j][v] = 0.f;
      }
    }
  }
  const int32_t* meta_row = p.meta + s * p.meta_s + u * p.meta_h;
  const int nm = 2 + static_cast<int>(p.Kmax < kMaxK ? p.Kmax : kMaxK);
  const int mv = tid < nm ? meta_row[tid * p.meta_i] : 0;
  const int accv = p.accepted[b * p.accepted_stride];
  int par = -1;
  if (tid < k) par = p.parents != nullptr ? p.parents[b * p.par_b + tid * p.par_k] : tid - 1;
  const float dtv = tid < k ? ld_any(p.dt, b * p.dt_b + tid * p.dt_k + u * p.dt_h, p.in_dtype) : 0.f;
  const float Au = p.A[u * p.A_h];
  const float dtb = p.dt_bias != nullptr ? p.dt_bias[u * p.dtb_h] : 0.f;
  // New-token rows: cp.async into the raw staging area (x | z | B | C, each whole 16-byte chunks).
  const int64_t x0 = b * p.x_b + u * p.x_h, xk = p.x_k, z0 = b * p.z_b + u * p.z_h, zk = p.z_k;
  const int64_t b0 = b * p.B_b + g * p.B_g, bk = p.B_k, c0 = b * p.C_b + g * p.C_g, ck = p.C_k;
  const auto ax = async_rows(p.x, p.in_dtype, k, P, [x0, xk](int t) -> int64_t { return x0 + t * xk; },
                             al8(p.x_b, p.x_k, p.x_h));
  const auto az = async_rows(p.z, p.in_dtype, p.z != nullptr ? k : 0, P,
                             [z0, zk](int t) -> int64_t { return z0 + t * zk; }, al8(p.z_b, p.z_k, p.z_h));
  const auto ab = async_rows(p.B, p.in_dtype, k, N, [b0, bk](int t) -> int64_t { return b0 + t * bk; },
                             al8(p.B_b, p.B_k, p.B_g));
  const auto ac = async_rows(p.C, p.in_dtype, k, N, [c0, ck](int t) -> int64_t { return c0 + t * ck; },
                             al8(p.C_b, p.C_k, p.C_g));
  uint4* raw = reinterpret_cast<uint4*>(smf + lay.raw_in);
  const int es = p.in_dtype == DType::kFloat32 ? 4 : 2;
  uint4* raw_x = raw;  // chunk offsets: rows of P (or N) elements are P * es / 16 chunks
  uint4* raw_z = raw_x + k * P * es / 16;
  uint4* raw_b = raw_z + k * P * es / 16;
  uint4* raw_c = raw_b + k * N * es / 16;
  ax.issue(raw_x, xs);
  az.issue(raw_z, zs);
  ab.issue(raw_b, Bs);
  ac.issue(raw_c, Cs);
  for (int i = tid; i < P; i += NT) Ds[i] = p.D != nullptr ? p.D[u * p.D_h + i * p.D_p] : 0.f;
  cp_async_wait_all();
  ax.finish(raw_x, xs, [](float v) { return v; });
  az.finish(raw_z, zs, [](float v) { return silu_f(v); });
  ab.finish(raw_b, Bs, [](float v) { return v; });
  ac.finish(raw_c, Cs, [](float v) { return v; });
  if (tid < nm) smeta[tid] = mv;
  if (tid < k) {
    spar[tid] = (par < 0 || par >= tid) ? -1 : par;
    dts[tid] = process_dt(dtv + dtb, p);
  }
  __syncthreads();  // 1

  // ---- 2. control words, ring loads in flight during the state dots ----------------------------------------
  int c = smeta[0];
  c = c < 0 ? 0 : (c > R ? R : c);
  int kp_max = nm - 2;
  if (kp_max > R - c) kp_max = R - c;
  const int kp = smeta[1] < 0 ? 0 : (smeta[1] > kp_max ? kp_max : smeta[1]);
  int a = p.accepted_is_node ? accv : accv - 1;
  if (a > kp - 1) a = kp - 1;
  const unsigned path = a >= 0 ? (static_cast<unsigned>(smeta[2 + a]) & low_mask(kp)) : 0u;
  const int c1 = c + __popc(path);
  const bool fold = p.fold_all || c1 + k > R;
  const int base = fold ? 0 : c1;
  const bool prefix = (path & (path + 1u)) == 0u;  // the path is nodes 0..m-1: ring positions need no compaction
  auto qpos = [c, path, prefix](int e) -> int {
    return (e < c || prefix) ? e : c + nth_set_bit(path, e - c);
  };
  const int64_t rx0 = s * p.rx_s + u * p.rx_h, rxr = p.rx_r, rb0 = s * p.rB_s + u * p.rB_h, rbr = p.rB_r;
  const auto rx = async_rows(p.ring_x, p.in_dtype, c1, P,
                             [rx0, rxr, qpos](int e) -> int64_t { return rx0 + qpos(e) * rxr; },
                             al8(p.rx_s, p.rx_r, p.rx_h));
  const auto rb = async_rows(p.ring_B, p.in_dtype, c1, N,
                             [rb0, rbr, qpos](int e) -> int64_t { return rb0 + qpos(e) * rbr; },
                             al8(p.rB_s, p.rB_r, p.rB_h));
  uint4* raw_rx = reinterpret_cast<uint4*>(smf + lay.raw_ring);
  uint4* raw_rb = raw_rx + c1 * P * es / 16;
  rx.issue(raw_rx, xq);
  rb.issue(raw_rb, Bq);
  float dq = 0.f;
  if (tid < c1) dq = p.ring_dt[s * p.rdt_s + static_cast<int64_t>(qpos(tid)) * p.rdt_r + u * p.rdt_h];
  if (tid < k) {  // ancestor-or-self mask of node t
    unsigned m = 1u << tid;
    for (int q = spar[tid]; q >= 0; q = spar[q]) m |= 1u << q;
    smask[tid] = static_cast<int>(m);
  }
  // State dots S_t[row] = h0[row] . C_t, one token at a time (bounded registers: the tile + one C row slice),
  // reduced over the L lanes of a row.
#pragma unroll 1
  for (int t = 0; t < k; ++t) {
    float acc[RPT];
#pragma unroll
    for (int rr = 0; rr < RPT; ++rr) acc[rr] = 0.f;
#pragma unroll
    for (int j = 0; j < SPL; ++j) {
      const int seg = j * L + lir;
      if (seg < NS) {
        float cv[V];
        lds_vec<V>(Cs + t * N + seg * V, cv);
#pragma unroll
        for (int rr = 0; rr < RPT; ++rr)
#pragma unroll
          for (int v = 0; v < V; ++v) acc[rr] = fmaf(h[rr][j][v], cv[v], acc[rr]);
      }
    }
#pragma unroll
    for (int rr = 0; rr < RPT; ++rr) {
      const int row = rr * nrg + rg;
      const float v = group_sum(acc[rr], L);
      if (lir == 0 && row < P) Sd[t * P + row] = v;
    }
  }
  // New-token dots BC[t][s] = B_s . C_t (s <= t), one warp per pair.
  const int npairs = k * (k + 1) / 2;
  for (int pi = warp; pi < npairs; pi += NT / 32) {
    int t = 0;
    while ((t + 1) * (t + 2) / 2 <= pi) ++t;
    const int sn = pi - t * (t + 1) / 2;
    float d = 0.f;
    for (int n = lane; n < N; n += 32) d = fmaf(Bs[sn * N + n], Cs[t * N + n], d);
    d = group_sum(d, 32);
    if (lane == 0) BC[t * K1 + sn] = d;
  }
  cp_async_wait_all();
  rx.finish(raw_rx, xq, [](float v) { return v; });
  rb.finish(raw_rb, Bq, [](float v) { return v; });
  if (tid < c1) dtq[tid] = dq;
  __syncthreads();  // 2

  // ---- 3. ring weights (warp 0), node weights (warp 1), ring dots (all warps) -------------------------------
  if (warp == 0) {  // wq_e = dt_e exp(A * sum_{e' > e} dt_e'), eSQ = exp(A * sum_e dt_e)
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
  } else if (warp == 1) {  // rho_t, W[t][s] (zero off the path)
    for (int i = lane; i < k * k; i += 32) {
      const int t = i / k, sn = i - t * k;
      const unsigned mt = static_cast<unsigned>(smask[t]);
      float w = 0.f;
      if (sn <= t && ((mt >> sn) & 1u)) {
        float suf = 0.f;
        for (int q = sn + 1; q <= t; ++q) suf += ((mt >> q) & 1u) ? dts[q] : 0.f;
        w = dts[sn] * __expf(Au * suf) * BC[t * K1 + sn];
      }
      W[t * K1 + sn] = w;
      if (sn == 0) {
        float tot = 0.f;
        for (int q = 0; q <= t; ++q) tot += ((mt >> q) & 1u) ? dts[q] : 0.f;
        rho[t] = __expf(Au * tot);
      }
    }
  }
  {  // G[e][t] = B_e . C_t, 8 lanes per pair (the trip count is uniform per warp: the shuffles need all lanes)
    const int gl = lane & 7, npair = c1 * k;
    for (int p0 = warp * 4; p0 < npair; p0 += NT / 8) {
      const int pi = p0 + (lane >> 3);
      float d = 0.f;
      if (pi < npair) {
        const int e = pi / k, t = pi - e * k;
        for (int n = gl; n < N; n += 8) d = fmaf(Bq[e * N + n], Cs[t * N + n], d);
      }
      d = group_sum(d, 8);
      if (gl == 0 && pi < npair) G[(pi / k) * K1 + pi % k] = d;
    }
  }
  __syncthreads();  // 3

  // ---- 4. fold, y, ring and meta writes ---------------------------------------------------------------------
  const float eSQ = scal[0];
  if (fold) {  // h_c = eSQ h0 + sum_e (wq_e x_e) (x) B_e, written back in the state dtype
    // h0 is read again (mostly from L2) rather than kept live in registers since step 1: a fold is one call in
    // ~R / accepted, and keeping the tile live would cost ~70 registers through steps 2-3 (spills, occupancy).
#pragma unroll
    for (int rr = 0; rr < RPT; ++rr) {
      const int row = rr * nrg + rg;
#pragma unroll
      for (int j = 0; j < SPL; ++j) {
        const int seg = j * L + lir;
        if (row < P && seg < NS) {
          SV<T>::unpack(*reinterpret_cast<const uint4*>(st + row * p.st_p + seg * V), h[rr][j]);
        } else {
#pragma unroll
          for (int v = 0; v < V; ++v) h[rr][j][v] = 0.f;
        }
#pragma unroll
        for (int v = 0; v < V; ++v) h[rr][j][v] *= eSQ;
      }
    }
    for (int e = 0; e < c1; ++e) {
      const float w = wq[e];
      float ux[RPT];
#pragma unroll
      for (int rr = 0; rr < RPT; ++rr) {
        const int row = rr * nrg + rg;
        ux[rr] = row < P ? w * xq[e * P + row] : 0.f;
      }
#pragma unroll
      for (int j = 0; j < SPL; ++j) {
        const int seg = j * L + lir;
        if (seg < NS) {
          float bv[V];
          lds_vec<V>(Bq + e * N + seg * V, bv);
#pragma unroll
          for (int rr = 0; rr < RPT; ++rr)
#pragma unroll
            for (int v = 0; v < V; ++v) h[rr][j][v] = fmaf(ux[rr], bv[v], h[rr][j][v]);
        }
      }
    }
#pragma unroll
    for (int rr = 0; rr < RPT; ++rr) {
      const int row = rr * nrg + rg;
#pragma unroll
      for (int j = 0; j < SPL; ++j) {
        const int seg = j * L + lir;
        if (row < P && seg < NS) __stcs(reinterpret_cast<uint4*>(st + row * p.st_p + seg * V), SV<T>::pack(h[rr][j]));
      }
    }
  }
  // y and the new tokens' x into the ring at [base, base + k).
  for (int i = tid; i < k * P; i += NT) {
    const int t = i / P, pp = i - t * P;
    float hc = eSQ * Sd[i];
    for (int e = 0; e < c1; ++e) hc = fmaf(wq[e] * G[e * K1 + t], xq[e * P + pp], hc);
    float v = rho[t] * hc;
    for (int q = 0; q <= t; ++q) v = fmaf(W[t * K1 + q], xs[q * P + pp], v);
    v = fmaf(Ds[pp], xs[i], v);
    if (p.z != nullptr) v *= zs[i];
    st_any(p.y, b * p.y_b + t * p.y_k + u * p.y_h + pp, p.in_dtype, v);
    if (base + t < R) st_any(p.ring_x, s * p.rx_s + (base + t) * p.rx_r + u * p.rx_h + pp, p.in_dtype, xs[i]);
  }
  for (int i = tid; i < k * N; i += NT) {
    const int t = i / N, n = i - t * N;
    if (base + t < R) st_any(p.ring_B, s * p.rB_s + (base + t) * p.rB_r + u * p.rB_h + n, p.in_dtype, Bs[i]);
  }
  if (tid < k && base + tid < R) p.ring_dt[s * p.rdt_s + (base + tid) * p.rdt_r + u * p.rdt_h] = dts[tid];
  if (!fold && !prefix) {  // tree path: compact the committed nodes to ring [c, c1) (all ring reads are done)
    const int m = c1 - c;
    for (int i = tid; i < m * P; i += NT) {
      const int e = c + i / P, pp = i % P;
      if (qpos(e) != e) st_any(p.ring_x, s * p.rx_s + e * p.rx_r + u * p.rx_h + pp, p.in_dtype, xq[e * P + pp]);
    }
    for (int i = tid; i < m * N; i += NT) {
      const int e = c + i / N, n = i % N;
      if (qpos(e) != e) st_any(p.ring_B, s * p.rB_s + e * p.rB_r + u * p.rB_h + n, p.in_dtype, Bq[e * N + n]);
    }
    if (tid < m && qpos(c + tid) != c + tid) p.ring_dt[s * p.rdt_s + (c + tid) * p.rdt_r + u * p.rdt_h] = dtq[c + tid];
  }
  int32_t* mrow = p.meta + s * p.meta_s + u * p.meta_h;
  if (tid == 0) {
    mrow[0] = base;
    mrow[p.meta_i] = k;
  }
  if (tid < k && tid < p.Kmax) mrow[(2 + tid) * p.meta_i] = smask[tid];
}

// Whether the lean kernel serves these parameters (else the general verify_ssm_kernel): Mamba-2 layout, the state
// tile in one pass of 256 threads x 4 rows x 16 values, 16-byte aligned state rows, and shared memory <= 96 KiB.
template <typename T>
inline bool m2_fits(const VerifyStepParams& p, size_t* smem) {
  constexpr int V = SV<T>::V, SPL = M2Cfg<T>::SPL;
  if (p.fused || !(p.Pa == 1 && p.Na == 1 && p.Pd == 1)) return false;
  if (p.N % V != 0 || p.N > 32 * SPL * V) return false;
  const int L = lanes_per_row(p.N, V, SPL);
  if (p.P > static_cast<int64_t>(kM2Rpt) * (kM2Threads / L)) return false;
  if (p.st_s % V != 0 || p.st_h % V != 0 || p.st_p % V != 0 || reinterpret_cast<uintptr_t>(p.state) % 16 != 0)
    return false;
  if (p.R > 1024 || p.P * p.k > (int64_t(1) << 24)) return false;
  const size_t bytes = static_cast<size_t>(m2_layout(p.k, p.P, p.N, p.R).words) * 4;
  if (bytes > 96 * 1024) return false;
  *smem = bytes;
  return true;
}

}  // namespace verify_kernels
}  // namespace mamba_kernels
