// Mamba-2 SSM verify step split in two kernels (experimental, MK_VERIFY_KERNEL=split; CUDA headers only). Same
// contract, cache format and closed form as verify_m2_kernel (docs/verify_step_design.md, its header).
//
// Why: the one-kernel paths walk, per (row, head) unit, a chain of dependent phases (control words -> ring rows ->
// dots -> barriers -> epilogue) while their 64 KB state tile is staged; at batch 64 (2048 units, 2 blocks an SM)
// the SMs have no loads in flight for much of the time (DRAM 49%, 0.070 ms for a 0.032 ms read floor). Here
//   1. verify_m2prep_kernel (a block a unit, no state access) does every per-unit step that does not touch the
//      state: control words, the accepted path, the draft masks, the ring weights, the dots B_e . C_t and
//      B_s . C_t, and writes the unit's coefficients of the closed form to a per-call table;
//   2. verify_m2str_kernel streams the state: a unit's P rows over a thread-block cluster of P / 16 blocks of
//      16 rows (8 lanes a row), each block loading its rows and the table at once, then y by the closed form from
//      S_t = h0 . C_t, the fold, its rows of ring_x; rank 0 of the cluster writes the unit's ring_B / ring_dt /
//      meta rows after a cluster barrier (every block has read the ring_B rows its fold needs).
// The table (per (batch row, unit), 32-bit words; M2SplitTab): [c, c1, base, fold, prefix] then qpos (R) ints,
// eSQ, wq (R), dts (K), masks (K), coefS (K) = rho_t eSQ, coefX (R x K) = rho_t wq_e G[e][t], coefN (K x K) =
// W[t][s] (0 off the path), with K = max(k, 1):
//   y_t[p] = coefS[t] S_t[p] + sum_e coefX[e][t] x_e[p] + sum_s coefN[t][s] x_s[p] + D[p] x_t[p],  * silu(z_t[p])
//   fold:    h_c = eSQ h0 + sum_e wq_e x_e (x) B_e.
#pragma once
#include "verify/verify_m2dec_kernel.cuh"
#include "verify/verify_m2_steps.cuh"

namespace mamba_kernels {
namespace verify_kernels {

// Word offsets of a unit's table.
struct M2SplitTab {
  int qpos, eSQ, wq, dts, masks, coefS, coefX, coefN, words;
};
__host__ __device__ __forceinline__ M2SplitTab m2split_tab(int64_t k, int64_t R) {
  const int K = static_cast<int>(k > 0 ? k : 1), r = static_cast<int>(R);
  M2SplitTab t;
  int o = 8;  // c, c1, base, fold, prefix (+ padding)
  t.qpos = o; o += r;
  t.eSQ = o; o += 1;
  t.wq = o; o += r;
  t.dts = o; o += K;
  t.masks = o; o += K;
  t.coefS = o; o += K;
  t.coefX = o; o += r * K;
  t.coefN = o; o += K * K;
  t.words = up4(o);
  return t;
}

// Shared memory of the prep kernel: the common arrays (M2CommonLayout: raw_in holds the new tokens' inputs, raw_ring
// the committed ring rows) plus rho (K).
__host__ __device__ __forceinline__ int m2prep_words(int64_t k, int64_t P, int64_t N, int64_t R, int VI, M2CommonLayout* l,
                                                     int* rho) {
  int o = m2_place_common(*l, 0, k, P, N, R, VI);
  *rho = o;
  o += up4(k > 0 ? k : 1);
  return o;
}

// ---- 1. per-unit coefficients (a block a (batch row, unit); NT threads) ---------------------------------------
template <typename TI, int N, int NT>
__global__ void __launch_bounds__(NT) verify_m2prep_kernel(const VerifyStepParams p, float* work, int64_t work_words) {
  constexpr int VI = SV<TI>::V, NC = N / VI;
  MK_VERIFY_DYN_SMEM(smem_f4);
  const int tid = threadIdx.x;
  const int H = static_cast<int>(p.H), R = static_cast<int>(p.R);
  const int b = blockIdx.x / H, u = blockIdx.x - (blockIdx.x / H) * H;
  const int s = p.slots[b * p.slots_stride];
  if (s < 0 || s >= p.S) return;  // padding: the stream kernel writes y = 0
  const int k = static_cast<int>(p.k), K1 = k > 0 ? k : 1;
  const int P = static_cast<int>(p.P);
  const int gi = u / (H / static_cast<int>(p.G));
  M2CommonLayout lay;
  int rho_off = 0;
  m2prep_words(k, P, N, R, VI, &lay, &rho_off);
  const M2Smem sm = m2_smem(lay, smem_f4);
  float* rho = reinterpret_cast<float*>(smem_f4) + rho_off;
  // raw_in: B rows of the new tokens (k NC chunks), then C rows (k NC); raw_ring: B rows of the committed tokens
  uint4* Bn = sm.raw_in;
  uint4* Cn = sm.raw_in + k * NC;
  const TI* Bb = static_cast<const TI*>(p.B) + (int64_t)b * p.B_b + (int64_t)gi * p.B_g;
  const TI* Cb = static_cast<const TI*>(p.C) + (int64_t)b * p.C_b + (int64_t)gi * p.C_g;
  for (int i = tid; i < k * NC; i += NT) {
    cp_async16(Bn + i, Bb + (i / NC) * p.B_k + (i % NC) * VI);
    cp_async16(Cn + i, Cb + (i / NC) * p.C_k + (i % NC) * VI);
  }
  const int nm = 2 + static_cast<int>(p.Kmax < kMaxK ? p.Kmax : kMaxK);  // <= 34 < NT
  const M2Scalars sc = m2_load_scalars<TI>(p, b, u, s, tid, k, nm);
  const float Au = sc.Au;
  m2_store_scalars(p, sc, sm.smeta, sm.spar, sm.dts, tid, k, nm);
  __syncthreads();  // 1

  const M2Ctl ct = m2_control(p, sm.smeta, sc.accv, R, k);
  const int c1 = ct.c1;
  const int64_t rb0 = (int64_t)s * p.rB_s + (int64_t)u * p.rB_h;
  for (int i = tid; i < c1 * NC; i += NT)
    cp_async16(sm.raw_ring + i, static_cast<const TI*>(p.ring_B) + rb0 + ct.qpos(i / NC) * p.rB_r + (i % NC) * VI);
  for (int e = tid; e < c1; e += NT) sm.dtq[e] = p.ring_dt[s * p.rdt_s + (int64_t)ct.qpos(e) * p.rdt_r + u * p.rdt_h];
  m2_masks(sm.spar, sm.smask, tid, k);
  cp_async_wait_all();
  __syncthreads();  // 2

  if (tid < 32) m2_ring_weights(sm.dtq, sm.wq, sm.scal, c1, Au, tid);
  // Dots: rows r < c1 are ring B rows (G[r][t]), rows c1 + j the new B rows (BC[t][j]), each against C_t.
  for (int i = tid; i < (c1 + k) * k; i += NT) {
    const int r = i / k, t = i - (i / k) * k;
    const uint4* br = r < c1 ? sm.raw_ring + r * NC : Bn + (r - c1) * NC;
    float acc = 0.f;
    for (int ch = 0; ch < NC; ++ch) {
      float bv[VI], cv[VI];
      SV<TI>::unpack(br[ch], bv);
      SV<TI>::unpack(Cn[t * NC + ch], cv);
#pragma unroll
      for (int e = 0; e < VI; ++e) acc = fmaf(bv[e], cv[e], acc);
    }
    if (r < c1) sm.G[r * K1 + t] = acc;
    else sm.BC[t * K1 + (r - c1)] = acc;
  }
  __syncthreads();  // 3

  float* tab = work + ((int64_t)b * H + u) * work_words;
  const M2SplitTab tl = m2split_tab(k, R);
  if (tid < k) {  // node t: rho_t and its path weights W[t][s] (as m2_outputs), the draft mask, dt
    const int t = tid;
    const unsigned mt = static_cast<unsigned>(sm.smask[t]);
    float suf = 0.f;
    for (int sn = K1 - 1; sn >= 0; --sn) {
      float w = 0.f;
      if (sn <= t && ((mt >> sn) & 1u)) {
        w = sm.dts[sn] * __expf(Au * suf) * sm.BC[t * K1 + sn];
        suf += sm.dts[sn];
      }
      tab[tl.coefN + t * K1 + sn] = w;
    }
    rho[t] = __expf(Au * suf);
    tab[tl.coefS + t] = rho[t] * sm.scal[0];
    tab[tl.dts + t] = sm.dts[t];
    reinterpret_cast<int*>(tab)[tl.masks + t] = sm.smask[t];
  }
  if (tid == 0) {
    int* ti = reinterpret_cast<int*>(tab);
    ti[0] = ct.c;
    ti[1] = c1;
    ti[2] = ct.base;
    ti[3] = ct.fold ? 1 : 0;
    ti[4] = ct.prefix ? 1 : 0;
    tab[tl.eSQ] = sm.scal[0];
  }
  for (int e = tid; e < c1; e += NT) {
    reinterpret_cast<int*>(tab)[tl.qpos + e] = ct.qpos(e);
    tab[tl.wq + e] = sm.wq[e];
  }
  __syncthreads();  // 4: rho
  for (int i = tid; i < c1 * k; i += NT) {
    const int e = i / k, t = i - (i / k) * k;
    tab[tl.coefX + e * K1 + t] = rho[t] * sm.wq[e] * sm.G[e * K1 + t];
  }
}

// ---- 2. stream the state (a cluster of P / 16 blocks a unit; 16 rows a block, 8 lanes a row) -------------------
constexpr int kStrThreads = 128, kStrLanes = 8, kStrRows = kStrThreads / kStrLanes;

template <typename T, typename TI, int N>
__global__ void __launch_bounds__(kStrThreads) verify_m2str_kernel(const VerifyStepParams p, const float* work,
                                                                   int64_t work_words) {
  constexpr int LPR = kStrLanes, J = N / (4 * LPR);  // lane q: columns (j LPR + q) 4 + [0, 4)
  const int tid = threadIdx.x, q = tid & (LPR - 1);
  const int CS = static_cast<int>(p.P) / kStrRows;
  const int unit = blockIdx.x / CS, rank = blockIdx.x - unit * CS;
  const int H = static_cast<int>(p.H), R = static_cast<int>(p.R);
  const int b = unit / H, u = unit - b * H;
  const int row = rank * kStrRows + tid / LPR;
  const int k = static_cast<int>(p.k), K1 = k > 0 ? k : 1;
  const int s = p.slots[b * p.slots_stride];
  TI* y = static_cast<TI*>(p.y) + (int64_t)b * p.y_b + (int64_t)u * p.y_h + row;
  if (s < 0 || s >= p.S) {  // padding row (every block of the cluster returns here)
    if (q == 0)
      for (int t = 0; t < k; ++t) y[t * p.y_k] = SV<TI>::from_f(0.f);
    return;
  }
  const int gi = u / (H / static_cast<int>(p.G));
  auto col = [q](int j) { return (j * LPR + q) * 4; };
  T* st = static_cast<T*>(p.state) + (int64_t)s * p.st_s + (int64_t)u * p.st_h + (int64_t)row * p.st_p;
  float h[J][4];
#pragma unroll
  for (int j = 0; j < J; ++j) {
    if constexpr (sizeof(T) == 4) {
      const float4 v = *reinterpret_cast<const float4*>(st + col(j));
      h[j][0] = v.x; h[j][1] = v.y; h[j][2] = v.z; h[j][3] = v.w;
    } else {
      ld4<T>(st + col(j), h[j]);
    }
  }
  const float* tab = work + ((int64_t)b * H + u) * work_words;
  const int* ti = reinterpret_cast<const int*>(tab);
  const M2SplitTab tl = m2split_tab(k, R);
  const int c = ti[0], c1 = ti[1], base = ti[2];
  const bool fold = ti[3] != 0, prefix = ti[4] != 0;
  const TI* xin = static_cast<const TI*>(p.x) + (int64_t)b * p.x_b + (int64_t)u * p.x_h + row;
  const TI* Cin = static_cast<const TI*>(p.C) + (int64_t)b * p.C_b + (int64_t)gi * p.C_g;
  TI* rx = static_cast<TI*>(p.ring_x) + (int64_t)s * p.rx_s + (int64_t)u * p.rx_h + row;
  const float dv = p.D != nullptr ? p.D[u * p.D_h + row * p.D_p] : 0.f;

  // ---- y by the closed form ----------------------------------------------------------------------------------
  for (int t = 0; t < k; ++t) {
    float Cv[J][4];
#pragma unroll
    for (int j = 0; j < J; ++j) ld4<TI>(Cin + t * p.C_k + col(j), Cv[j]);
    float S = 0.f;
#pragma unroll
    for (int j = 0; j < J; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) S = fmaf(h[j][e], Cv[j][e], S);
#pragma unroll
    for (int off = 1; off < LPR; off <<= 1) S += __shfl_xor_sync(0xffffffffu, S, off);
    float out = tab[tl.coefS + t] * S;
    for (int e = 0; e < c1; ++e)
      out = fmaf(tab[tl.coefX + e * K1 + t], SV<TI>::to_f(rx[(int64_t)ti[tl.qpos + e] * p.rx_r]), out);
    for (int sn = 0; sn <= t; ++sn) out = fmaf(tab[tl.coefN + t * K1 + sn], SV<TI>::to_f(xin[sn * p.x_k]), out);
    out = fmaf(dv, SV<TI>::to_f(xin[t * p.x_k]), out);
    if (p.z != nullptr)
      out *= silu_f(SV<TI>::to_f(static_cast<const TI*>(p.z)[(int64_t)b * p.z_b + (int64_t)u * p.z_h + row + t * p.z_k]));
    if (q == 0) y[t * p.y_k] = SV<TI>::from_f(out);
  }

  // ---- fold: h_c = eSQ h0 + sum_e wq_e x_e (x) B_e (this block's rows) ----------------------------------------
  if (fold) {
    const float eSQ = tab[tl.eSQ];
#pragma unroll
    for (int j = 0; j < J; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) h[j][e] *= eSQ;
    const TI* rB = static_cast<const TI*>(p.ring_B) + (int64_t)s * p.rB_s + (int64_t)u * p.rB_h;
    for (int e = 0; e < c1; ++e) {
      const int pos = ti[tl.qpos + e];
      const float w = tab[tl.wq + e] * SV<TI>::to_f(rx[(int64_t)pos * p.rx_r]);
#pragma unroll
      for (int j = 0; j < J; ++j) {
        float Bv[4];
        ld4<TI>(rB + (int64_t)pos * p.rB_r + col(j), Bv);
#pragma unroll
        for (int e2 = 0; e2 < 4; ++e2) h[j][e2] = fmaf(w, Bv[e2], h[j][e2]);
      }
    }
#pragma unroll
    for (int j = 0; j < J; ++j) {
      if constexpr (sizeof(T) == 4) {
        *reinterpret_cast<float4*>(st + col(j)) = make_float4(h[j][0], h[j][1], h[j][2], h[j][3]);
      } else {
        st4<T>(st + col(j), h[j]);
      }
    }
  }
  // Every read of the unit's ring_B rows (the fold) and of this block's ring_x rows (y, fold) is issued and used.
  cluster_arrive();
  __syncwarp();  // the lanes of a row have read its ring_x entries before lane 0 rewrites them
  if (q == 0) {  // this block's rows of ring_x: the tree path compacted (destination <= source), the new tokens
    if (!fold && !prefix)
      for (int i = 0; i < c1 - c; ++i) {
        const int pos = ti[tl.qpos + c + i];
        if (pos != c + i) rx[(int64_t)(c + i) * p.rx_r] = rx[(int64_t)pos * p.rx_r];
      }
    for (int t = 0; t < k && base + t < R; ++t) rx[(int64_t)(base + t) * p.rx_r] = xin[t * p.x_k];
  }
  cluster_wait();
  if (rank != 0) return;
  // ---- rank 0: the unit's ring_B / ring_dt / meta rows --------------------------------------------------------
  TI* rBw = static_cast<TI*>(p.ring_B) + (int64_t)s * p.rB_s + (int64_t)u * p.rB_h;
  float* rdt = p.ring_dt + (int64_t)s * p.rdt_s + (int64_t)u * p.rdt_h;
  if (!fold && !prefix) {  // each column by one thread, increasing destination: no source overwritten first
    for (int n = tid; n < N; n += kStrThreads)
      for (int i = 0; i < c1 - c; ++i) {
        const int pos = ti[tl.qpos + c + i];
        if (pos != c + i) rBw[(int64_t)(c + i) * p.rB_r + n] = rBw[(int64_t)pos * p.rB_r + n];
      }
    if (tid == 0)
      for (int i = 0; i < c1 - c; ++i) {
        const int pos = ti[tl.qpos + c + i];
        if (pos != c + i) rdt[(int64_t)(c + i) * p.rdt_r] = rdt[(int64_t)pos * p.rdt_r];
      }
  }
  __syncthreads();  // the compaction's reads before the new rows overwrite [base, base + k)
  const TI* Bin = static_cast<const TI*>(p.B) + (int64_t)b * p.B_b + (int64_t)gi * p.B_g;
  for (int i = tid; i < k * N; i += kStrThreads) {
    const int t = i / N, n = i - (i / N) * N;
    if (base + t < R) rBw[(int64_t)(base + t) * p.rB_r + n] = Bin[t * p.B_k + n];
  }
  if (tid < k && base + tid < R) rdt[(int64_t)(base + tid) * p.rdt_r] = tab[tl.dts + tid];
  int32_t* mrow = p.meta + (int64_t)s * p.meta_s + (int64_t)u * p.meta_h;
  if (tid == 0) {
    mrow[0] = base;
    mrow[p.meta_i] = k;
  }
  if (tid < k && tid < p.Kmax) mrow[(2 + tid) * p.meta_i] = ti[tl.masks + tid];
}

// Whether the split pair serves these parameters: the Mamba-2 layout with 16-byte rows (m2_io_fits), N 64 or 128,
// P in {16, 32, 64, 128} (a cluster of P / 16 blocks), clusters (sm_90). *prep_smem: the prep kernel's bytes.
inline bool m2split_fits(const VerifyStepParams& p, int VT, bool clusters, size_t* prep_smem) {
  const int VI = p.in_dtype == DType::kFloat32 ? 4 : 8;
  if (!clusters || !m2_io_fits(p, VT, VI)) return false;
  if (!(p.N == 64 || p.N == 128) || !(p.P == 16 || p.P == 32 || p.P == 64 || p.P == 128)) return false;
  M2CommonLayout l;
  int rho = 0;
  const size_t bytes = static_cast<size_t>(m2prep_words(p.k, p.P, p.N, p.R, VI, &l, &rho)) * 4;
  if (bytes > 200 * 1024) return false;
  *prep_smem = bytes;
  return true;
}

}  // namespace verify_kernels
}  // namespace mamba_kernels
