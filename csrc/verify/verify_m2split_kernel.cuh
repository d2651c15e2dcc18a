// Mamba-2 SSM verify step as a kernel pair (CUDA headers only, no torch): the same contract, cache format and
// closed form as verify_m2tc_kernel (docs/verify_step_design.md), for the same shapes (m2tc_fits), split so that the
// state stream does not wait on the per-unit bookkeeping.
//
// Why: verify_m2tc_kernel streams its 64 KB tiles at b64 k4 (h 32, p = n = 128, fp32 state) in ~72 us against ~38
// for the same block structure with nothing after the tile lands (bench/results/lab, session 10 probe): each unit's
// control words, ring staging (loads that depend on them), ring weights and B . C dots form a chain of dependent
// latencies behind three block barriers, and at 2 blocks an SM nothing streams while both blocks walk it.
//   - verify_m2prep_kernel (a small block a unit, no state access): everything that does not need the state:
//     control words, ring B rows, ring weights, B . C dots, and per new token t the coefficients of the state-free
//     part of y, yx_t = rho_t (sum_e wq_e (B_e . C_t) x_e) + (path term) + D x_t, and scale_t = rho_t eSQ, written to
//     the per-call scratch p.work; the new tokens' ring B rows and dt, the tree compaction and the meta row of every
//     unit that does not fold. It triggers the dependent launch at its start.
//   - verify_m2str_kernel (a unit a block, launched as a programmatic dependent of the prep kernel on sm_90): the
//     state tile by cp.async and its dots S_t = h0 . C_t on tensor cores (m2tc_state_dots; the first wave's blocks
//     both before they wait on the prep grid, griddepcontrol.wait; later ones after the scratch record's header);
//     yx_t from the record and the staged x rows while the tile is in flight, and the new tokens' x ring rows; then
//     y_t = silu(z_t) (scale_t S_t + yx_t), and for a unit that folds the fold (m2tc_fold; its ring rows staged with
//     the record), then its new tokens' ring B rows and dt and its meta row.
// Shared memory of the stream kernel at P = N = 128, fp32 state, k 4, ring 16: ~78 KB (2 blocks an SM).
#pragma once
#include "common/griddep.h"
#include "verify/verify_m2tc_kernel.cuh"

namespace mamba_kernels {
namespace verify_kernels {

// 2 warps a unit, at most 64 registers: 16 blocks an SM, so that every prep block of b64 h32 (2048) is resident at
// once and the dependent stream grid may start when they retire.
constexpr int kSplitPrepThreads = 64;

// Scratch words of one (batch row, unit): [0] fold, [1] c, [2] c1, [3] path, [4] eSQ (float bits), then scale (k),
// dts (k, processed new dt), masks (k), wq (R, ring weights), coef (k rows of cs words). coef[t][j]: the weight of
// x row j in yx_t, the state-free part of y_t (j < c1: committed ring token j; c1 + sn: new token sn, 0 off t's
// path); dts and wq are written for folding units only (the stream kernel finishes those); every offset a multiple of
// 4 words.
struct M2SplitWs {
  int scale, dts, masks, wq, coef, cs, words;
};
__host__ __device__ __forceinline__ M2SplitWs m2split_ws(int64_t k, int64_t R) {
  const int64_t K1 = k > 0 ? k : 1;
  M2SplitWs w;
  int o = 8;
  w.scale = o; o += up4(K1);
  w.dts = o; o += up4(K1);
  w.masks = o; o += up4(K1);
  w.wq = o; o += up4(R);
  w.cs = up4(R + K1);  // c1 + k <= R + k rows of x
  w.coef = o; o += static_cast<int>(K1) * w.cs;
  w.words = o;
  return w;
}

// The stream kernel's shared memory (words): the swizzled tile; the dots (k, P) fp32; the unit's scratch record
// (m2split_ws); the committed ring rows (raw, laid out as M2Smem's raw_ring: room for R tokens' x rows, then B rows
// from m2_ring_b; B rows only for a unit that folds); the raw z and C rows of the new tokens; the raw new x rows;
// D (P) fp32; yx (k, P) fp32, the state-free part of y.
struct M2StrLayout {
  int tile, dots, rec, ring, raw_z, raw_c, raw_x, Ds, yx, words;
};
__host__ __device__ __forceinline__ M2StrLayout m2str_layout(int64_t k, int64_t P, int64_t N, int64_t R, int VT, int VI,
                                                             bool has_z) {
  const int64_t K1 = k > 0 ? k : 1;
  M2StrLayout l;
  int o = 0;
  l.tile = o; o += static_cast<int>(P * (N / VT) * 4);
  l.dots = o; o += up4(K1 * P);
  l.rec = o; o += m2split_ws(k, R).words;
  l.ring = o; o += static_cast<int>(R * (P + N) / VI * 4);
  l.raw_z = o; o += has_z ? static_cast<int>(K1 * P / VI * 4) : 0;
  l.raw_c = o; o += static_cast<int>(K1 * N / VI * 4);
  l.raw_x = o; o += static_cast<int>(K1 * P / VI * 4);
  l.Ds = o; o += up4(P);
  l.yx = o; o += up4(K1 * P);
  l.words = o;
  return l;
}

// The record's coefficients (m2split_ws): coef[t][j] for j < c1 + k and scale_t = rho_t eSQ, where rho_t =
// exp(A * (sum of dt over t's path)); ring token j: rho_t wq_j (B_j . C_t); path node sn of t: dt_sn exp(A * (sum of
// the path's dt after sn)) (B_sn . C_t), summed from t down as verify_m2_kernel's epilogue (m2_outputs) does; 0 for
// a new token off the path (whose x the stream kernel never reads: a non-finite x there reaches no other token).
// After the barrier that publishes dts, smask, wq, scal, G and BC. Thread tid of nthreads.
__device__ __forceinline__ void m2prep_coefs(const M2Smem& sm, const M2Ctl& ct, const M2SplitWs& W, float Au, int k,
                                             float* wsu, int tid, int nthreads) {
  const int K1 = k > 0 ? k : 1, CJ = ct.c1 + k;
  const float eSQ = sm.scal[0];
  for (int i = tid; i < k * CJ; i += nthreads) {
    const int t = i / CJ, j = i - t * CJ, sn0 = j - ct.c1;
    const unsigned mt = static_cast<unsigned>(sm.smask[t]);
    float tot = 0.f, suf = 0.f;  // the path's dt sum, and its part after node sn0
    for (int sn = t; sn >= 0; --sn) {
      if ((mt >> sn) & 1u) {
        if (sn == sn0) suf = tot;
        tot += sm.dts[sn];
      }
    }
    const float rho = __expf(Au * tot);
    float v = 0.f;
    if (sn0 < 0) v = rho * (sm.wq[j] * sm.G[j * K1 + t]);
    else if (sn0 <= t && ((mt >> sn0) & 1u)) v = sm.dts[sn0] * __expf(Au * suf) * sm.BC[t * K1 + sn0];
    wsu[W.coef + t * W.cs + j] = v;
    if (j == 0) wsu[W.scale + t] = rho * eSQ;
  }
}

// One unit (batch row b, head u) of the prep work, by the kSplitPrepThreads threads tid of a block whose shared memory
// (m2_place_common, prep) starts at smem_f4: its loads (new B and C rows by cp.async, its scalars into registers),
// control words, ring rows (B; x only to compact a tree path), weights, B . C dots, and the record (m2split_ws
// offsets: header, scale, masks, the coefficients of yx) into wsu (the per-call scratch in global memory); the new
// tokens' B rows and dt, the tree compaction and the meta row of a unit that does not fold (the stream kernel writes
// the new tokens' x rows). No x row is read here: the stream kernel forms yx from them while its tile is in flight.
// Returns at once for a padding row. KT > 0: k == KT, a compile-time constant (fixed-length copy and token loops: the
// launcher's choice for bf16 inputs, N 128, 32-bit offsets, k 2 / 4 / 8); 0: p.k.
template <typename TI, int N, bool kO32, int KT = 0>
__device__ __forceinline__ void m2prep_unit(const VerifyStepParams& p, int b, int u, float4* smem_f4, float* wsu,
                                            int tid) {
  constexpr int NT = kSplitPrepThreads, NW = NT / 32, VI = SV<TI>::V, NC = N / VI;
  const int lane = tid & 31, warp = tid >> 5, g = lane >> 2, q = lane & 3;
  const int H = static_cast<int>(p.H), k = KT > 0 ? KT : static_cast<int>(p.k), P = static_cast<int>(p.P);
  const int R = static_cast<int>(p.R), PC = P / VI;
  const int gi = u / (H / static_cast<int>(p.G));
  M2CommonLayout lay;
  m2_place_common(lay, 0, k, P, N, R, VI, true);
  const M2Smem sm = m2_smem(lay, smem_f4);
  const auto& [xs, Sd, Ds, dts, dtq, wq, G, BC, scal, smeta, spar, smask, raw_in, raw_ring] = sm;
  const int s = p.slots[eoff<kO32>(b, p.slots_stride)];
  if (s < 0 || s >= p.S) return;  // padding row: the stream kernel writes y = 0
  // new B, C (raw, after room for the x rows that m2_place_common keeps: the dots' layout)
  const int nxc = k * PC, nbc = k * NC;
  const TI* Bb = static_cast<const TI*>(p.B) + eoff<kO32>(b, p.B_b, gi, p.B_g);
  const TI* Cb = static_cast<const TI*>(p.C) + eoff<kO32>(b, p.C_b, gi, p.C_g);
  for (int i = tid; i < nbc; i += NT) {
    cp_async16(raw_in + nxc + i, Bb + eoff<kO32>(i / NC, p.B_k, (i % NC) * VI, 1));
    cp_async16(raw_in + nxc + nbc + i, Cb + eoff<kO32>(i / NC, p.C_k, (i % NC) * VI, 1));
  }
  cp_async_commit();
  const int nm = 2 + static_cast<int>(p.Kmax < kMaxK ? p.Kmax : kMaxK);
  const M2Scalars sc = m2_load_scalars<TI, kO32>(p, b, u, s, tid, k, nm);
  cp_async_wait<0>();
  m2_store_scalars(p, sc, smeta, spar, dts, tid, k, nm);
  __syncthreads();  // 1

  const M2Ctl ct = m2_control(p, smeta, sc.accv, R, k);
  const int64_t rx0 = eoff<kO32>(s, p.rx_s, u, p.rx_h), rb0 = eoff<kO32>(s, p.rB_s, u, p.rB_h);
  const bool compact = !ct.fold && !ct.prefix;  // m2_finish moves x rows too
  const float dq = m2_stage_ring<TI, kO32>(p, ct, raw_ring, rx0, rb0, s, u, PC, NC, tid, NT, compact, true);
  cp_async_commit();
  m2_masks(spar, smask, tid, k);
  cp_async_wait<0>();
  if (tid < ct.c1) dtq[tid] = dq;
  __syncthreads();  // 2

  // the ring weights on the last warp, beside the dots (one 16-row tile, i.e. warp 0 alone, up to c1 + k = 16)
  if (warp == NW - 1) m2_ring_weights(dtq, wq, scal, ct.c1, sc.Au, lane);
  m2tc_bc_dots<TI, N, NW>(sm, raw_in + nxc + nbc, raw_in + nxc, ct.c1, k, P, R, warp, g, q);
  __syncthreads();  // 3

  const M2SplitWs W = m2split_ws(k, R);
  m2prep_coefs(sm, ct, W, sc.Au, k, wsu, tid, NT);
  if (tid == 0) {
    int* wi = reinterpret_cast<int*>(wsu);
    wi[0] = ct.fold ? 1 : 0;
    wi[1] = ct.c;
    wi[2] = ct.c1;
    wi[3] = static_cast<int>(ct.path);
    wsu[4] = scal[0];
  }
  if (tid < k) reinterpret_cast<int*>(wsu)[W.masks + tid] = smask[tid];
  if (ct.fold) {  // what the stream kernel needs to finish the unit
    if (tid < k) wsu[W.dts + tid] = dts[tid];
    if (tid < ct.c1) wsu[W.wq + tid] = wq[tid];
  } else {
    m2_ring_new_b<TI, kO32>(p, ct, raw_in + nxc, dts, k, N, rb0, s, u, tid, NT);
    m2_finish<TI, kO32>(p, ct, sm, k, P, N, rx0, rb0, s, u, tid, NT);
  }
}

// kO32: offsets in 32-bit arithmetic (eoff; offsets_fit32(p) holds; the scratch's offsets stay int64). KT: as
// m2prep_unit's (0: any k).
template <typename TI, int N, bool kO32, int KT = 0>
__global__ void __launch_bounds__(kSplitPrepThreads, 16) verify_m2prep_kernel(const VerifyStepParams p) {
  griddep_launch_dependents();  // the stream kernel's blocks may start streaming their tiles now
  MK_VERIFY_DYN_SMEM(smem_f4);
  const int H = static_cast<int>(p.H);
  const int b = blockIdx.x / H, u = blockIdx.x - (blockIdx.x / H) * H;
  m2prep_unit<TI, N, kO32, KT>(p, b, u, smem_f4, p.work + ((int64_t)b * H + u) * p.work_unit, threadIdx.x);
}

// The control words of a unit from its record's header (fold, c, c1, path), base and prefix derived as in
// m2_control_words.
__device__ __forceinline__ M2Ctl m2split_ctl(int fold, int c, int c1, int path) {
  M2Ctl ct;
  ct.fold = fold != 0;
  ct.c = c;
  ct.c1 = c1;
  ct.path = static_cast<unsigned>(path);
  ct.base = ct.fold ? 0 : c1;
  ct.prefix = (ct.path & (ct.path + 1u)) == 0u;
  return ct;
}

// The state-free part of y of one unit, yx_t = sum_j coef[t][j] X_j + D x_t (fp32, (k, P) at yx), from the record
// rec (m2split_ws offsets W), the committed ring tokens' raw x rows (rx: row j at j P) and the new tokens' (xn: row sn
// at sn P): two channels a thread and item, the ring rows for every token, then the nodes on t's path (masks). Ds:
// D (P) or nullptr. Threads tid of NT.
template <typename TI>
__device__ __forceinline__ void m2split_yx(const float* rec, const M2SplitWs& W, const TI* rx, const TI* xn,
                                           const float* Ds, float* yx, int c1, int k, int P, int tid, int NT) {
  const int HP = P / 2, lHP = ilog2(HP);
  const int* masks = reinterpret_cast<const int*>(rec) + W.masks;
  for (int i = tid; i < k * HP; i += NT) {
    const int t = i >> lHP, p0 = (i & (HP - 1)) * 2;
    const float* cf = rec + W.coef + t * W.cs;
    float a0 = 0.f, a1 = 0.f, v[2];
    for (int j = 0; j < c1; ++j) {
      SV<TI>::load2(rx + j * P + p0, v);
      a0 = fmaf(cf[j], v[0], a0);
      a1 = fmaf(cf[j], v[1], a1);
    }
    const unsigned mt = static_cast<unsigned>(masks[t]);
    for (int sn = 0; sn <= t; ++sn) {
      if ((mt >> sn) & 1u) {
        SV<TI>::load2(xn + sn * P + p0, v);
        a0 = fmaf(cf[c1 + sn], v[0], a0);
        a1 = fmaf(cf[c1 + sn], v[1], a1);
      }
    }
    if (Ds != nullptr) {  // the path loop's last load was x_t (a node's mask always holds the node)
      a0 = fmaf(Ds[p0], v[0], a0);
      a1 = fmaf(Ds[p0 + 1], v[1], a1);
    }
    *reinterpret_cast<float2*>(yx + t * P + p0) = make_float2(a0, a1);
  }
}

// y_t = silu(z_t) (scale_t S_t + yx_t) of one unit (y: its output, b and u applied) from the dots Sd (k, P), yx (k, P),
// the record rec (m2split_ws offsets W: scale) and the raw z rows (when p.z); threads tid of NT.
template <typename TI>
__device__ __forceinline__ void m2split_y(const VerifyStepParams& p, TI* y, const float* Sd, const float* yxs,
                                          const float* rec, const M2SplitWs& W, const uint4* raw_z, int k, int P,
                                          int tid, int NT) {
  constexpr int VI = SV<TI>::V;
  const int PC = P / VI, lPC = ilog2(PC);
  for (int i = tid; i < k * PC; i += NT) {
    const int t = i >> lPC, p0 = (i & (PC - 1)) * VI;
    float sd[VI], yx[VI], out[VI];
    lds_vec<VI>(Sd + t * P + p0, sd);
    lds_vec<VI>(yxs + t * P + p0, yx);
    const float sc = rec[W.scale + t];
#pragma unroll
    for (int v = 0; v < VI; ++v) out[v] = fmaf(sc, sd[v], yx[v]);
    if (p.z != nullptr) {
      float zv[VI];
      SV<TI>::unpack(raw_z[i], zv);
#pragma unroll
      for (int v = 0; v < VI; ++v) out[v] *= silu_f(zv[v]);
    }
    *reinterpret_cast<uint4*>(y + t * p.y_k + p0) = SV<TI>::pack(out);
  }
}

// A folding unit's new tokens' ring dt and its meta row [0, k, masks], from its record (after the fold's reads).
__device__ __forceinline__ void m2split_fold_meta(const VerifyStepParams& p, const float* rec, const M2SplitWs& W,
                                                  int s, int u, int k, int tid) {
  int32_t* mrow = p.meta + (int64_t)s * p.meta_s + (int64_t)u * p.meta_h;
  if (tid < k) {
    p.ring_dt[(int64_t)s * p.rdt_s + (int64_t)tid * p.rdt_r + (int64_t)u * p.rdt_h] = rec[W.dts + tid];
    if (tid < p.Kmax) mrow[(2 + tid) * p.meta_i] = reinterpret_cast<const int*>(rec)[W.masks + tid];
  }
  if (tid == 0) {
    mrow[0] = 0;
    mrow[p.meta_i] = k;
  }
}

// A folding unit's new tokens' B rows (Bb: its group's B rows in global memory) -> its ring rows rB [0, k) (base 0:
// k <= Kmax <= R, every new token has a ring row), by the NT threads tid: first_b() loads this thread's first B chunk
// before the fold (the load's latency under its work; ncu of a folding call: copies issued after the fold waited on
// them), store() writes the rows. (The new x rows were written before the dots, from shared memory.)
template <typename TI>
struct M2FoldNewB {
  const VerifyStepParams& p;
  const TI* Bb;
  TI* rB;
  int k, NC, lNC, tid, NT;
  static constexpr int VI = SV<TI>::V;
  __device__ __forceinline__ const uint4* b_src(int i) const {
    return reinterpret_cast<const uint4*>(Bb + (i >> lNC) * p.B_k + (i & (NC - 1)) * VI);
  }
  __device__ __forceinline__ uint4* b_dst(int i) const {
    return reinterpret_cast<uint4*>(rB + (i >> lNC) * p.rB_r + (i & (NC - 1)) * VI);
  }
  __device__ __forceinline__ uint4 first_b() const { return tid < k * NC ? *b_src(tid) : make_uint4(0u, 0u, 0u, 0u); }
  __device__ __forceinline__ void store(uint4 b0) const {
    if (tid < k * NC) *b_dst(tid) = b0;
    for (int i = tid + NT; i < k * NC; i += NT) *b_dst(i) = *b_src(i);
  }
};

template <typename T, typename TI, int N, int NW>
__global__ void __launch_bounds__(NW * 32, 2) verify_m2str_kernel(const VerifyStepParams p) {
  constexpr int NT = NW * 32;
  constexpr int VT = SV<T>::V, VI = SV<TI>::V, NC = N / VI;
  MK_VERIFY_DYN_SMEM(smem_f4);
  float* smf = reinterpret_cast<float*>(smem_f4);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, q = lane & 3;
  const int H = static_cast<int>(p.H);
  const int b = blockIdx.x / H, u = blockIdx.x - (blockIdx.x / H) * H;
  const int s = p.slots[b * p.slots_stride];
  const int k = static_cast<int>(p.k), P = static_cast<int>(p.P), R = static_cast<int>(p.R);
  const int PC = P / VI, lPC = ilog2(PC), lNC = ilog2(NC);
  TI* y = static_cast<TI*>(p.y) + (int64_t)b * p.y_b + (int64_t)u * p.y_h;
  if (s < 0 || s >= p.S) {  // padding row: y = 0, cache untouched
    m2_zero_y<TI>(y, p.y_k, k, PC, tid, NT);
    return;
  }
  const int gi = u / (H / static_cast<int>(p.G));
  const M2StrLayout lay = m2str_layout(k, P, N, R, VT, VI, p.z != nullptr);
  uint4* tile = reinterpret_cast<uint4*>(smf + lay.tile);
  float* Sd = smf + lay.dots;
  float* rec = smf + lay.rec;  // the scratch record (m2split_ws offsets)
  uint4* raw_ring = reinterpret_cast<uint4*>(smf + lay.ring);
  uint4* raw_z = reinterpret_cast<uint4*>(smf + lay.raw_z);
  uint4* raw_c = reinterpret_cast<uint4*>(smf + lay.raw_c);
  uint4* raw_x = reinterpret_cast<uint4*>(smf + lay.raw_x);
  float* Ds = smf + lay.Ds;
  float* yx = smf + lay.yx;

  // ---- the new C (and z) rows (group 1); the first wave's blocks: the state tile (group 2)
  const int nzc = p.z != nullptr ? k * PC : 0, ncc = k * NC;
  if (p.z != nullptr) {
    const TI* zb = static_cast<const TI*>(p.z) + (int64_t)b * p.z_b + (int64_t)u * p.z_h;
    for (int i = tid; i < nzc; i += NT) cp_async16(raw_z + i, zb + (i >> lPC) * p.z_k + (i & (PC - 1)) * VI);
  }
  const TI* Cb = static_cast<const TI*>(p.C) + (int64_t)b * p.C_b + (int64_t)gi * p.C_g;
  for (int i = tid; i < ncc; i += NT) cp_async16(raw_c + i, Cb + (i >> lNC) * p.C_k + (i & (NC - 1)) * VI);
  cp_async_commit();
  // The first wave's blocks (tile_early) issue their tile now: they are resident while the prep grid finishes and
  // wait for it below (the prep kernel never writes the state, and what wrote it before, e.g. the previous call's
  // fold, completed before the prep grid started: the prep is a normal launch). Later blocks find the prep grid
  // complete and read the record's header words (fold, c, c1, path) straight from global memory, then issue the
  // unit's small rows (below) before their tile's copies, so that these do not queue behind 64 KB (ncu of a folding
  // call: 18% of the stream's stall samples waited on the record there) and yx is formed while the tile is in flight.
  // The tile's copies run under an L2 evict-first policy: the 64 KB a unit is read once a call, and streamed with the
  // normal policy they push out of L2 what is read again (the ring rows and inputs of the next call's prep kernel,
  // 13.9 us against 14.4, the scratch). H200, b64 mean per call k2 / k4 / k8 54.5 / 60.8 / 82.6 us against 56.9 /
  // 63.0 / 83.5; the fold's write-back under the same policy lost at k8 (86.8).
  T* st = static_cast<T*>(p.state) + (int64_t)s * p.st_s + (int64_t)u * p.st_h;
  const bool early = blockIdx.x < p.tile_early;  // the first wave: the tile before the wait (tile_early_blocks)
  // A first-wave block also forms its state dots before the wait: they need only the tile and the C rows, and what
  // is left after the wait (record, yx, y) is then shorter, so the first wave retires and the next tiles start
  // sooner. H100, b64 ring 16, mean per call (two alternating rounds against e3d1727 built in the same call): k2 / k4
  // / k8 62.5 / 70.2-70.3 / 92.8-92.9 us against 64.0-64.1 / 71.7 / 94.6.
  if (early) {
    m2tc_stage_tile<T, N, NW, true>(tile, st, p.st_p, P, warp, lane);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();  // the C and z rows and the tile, from every thread's copies
    m2tc_state_dots<T, TI, N, NW>(tile, raw_c, Sd, k, P, warp, g, q);
  }
  griddep_wait();  // the prep kernel's scratch, ring and meta writes are complete and visible
  const M2SplitWs W = m2split_ws(k, R);
  const float* wsu = p.work + ((int64_t)b * H + u) * p.work_unit;
  const int4 hdr = *reinterpret_cast<const int4*>(wsu);
  const M2Ctl ct = m2split_ctl(hdr.x, hdr.y, hdr.z, hdr.w);
  // ---- the unit's small rows (group 2; for the first wave the only group in flight): the scratch record; the
  // committed ring tokens' x rows (where the prep kernel left them: compacted to [0, c1) unless the unit folds) and,
  // for a unit that folds, their B rows; the new x rows; D
  for (int i = tid; i < W.words / 4; i += NT) cp_async16(rec + 4 * i, wsu + 4 * i);
  const int64_t rx0 = (int64_t)s * p.rx_s + (int64_t)u * p.rx_h, rb0 = (int64_t)s * p.rB_s + (int64_t)u * p.rB_h;
  M2Ctl ring_ct = ct;
  ring_ct.prefix = ring_ct.prefix || !ct.fold;  // qpos(e) = e
  m2_stage_ring<TI>(p, ring_ct, raw_ring, rx0, rb0, s, u, PC, NC, tid, NT, true, ct.fold);
  const TI* xb = static_cast<const TI*>(p.x) + (int64_t)b * p.x_b + (int64_t)u * p.x_h;
  for (int i = tid; i < k * PC; i += NT) cp_async16(raw_x + i, xb + (i >> lPC) * p.x_k + (i & (PC - 1)) * VI);
  if (p.D != nullptr)
    for (int i = tid; i < P; i += NT) cp_async4(Ds + i, p.D + (int64_t)u * p.D_h + (int64_t)i * p.D_p);
  cp_async_commit();
  if (!early) {
    m2tc_stage_tile<T, N, NW, true>(tile, st, p.st_p, P, warp, lane);
    cp_async_commit();
    cp_async_wait<1>();  // groups 1 and 2
  } else {
    cp_async_wait<0>();
  }
  __syncthreads();  // the C and z rows, the record, the x rows, D, from every thread's copies

  // ---- yx (under the tile's flight); the new tokens' x rows into the ring, from shared memory: at c1 for a unit that
  // does not fold (c1 + k <= R), at 0 for one that folds (its committed rows are staged in raw_ring above, and the
  // fold reads only those, so their global rows may be overwritten now)
  m2split_yx<TI>(rec, W, reinterpret_cast<const TI*>(raw_ring), reinterpret_cast<const TI*>(raw_x),
                 p.D != nullptr ? Ds : nullptr, yx, ct.c1, k, P, tid, NT);
  TI* rxw = static_cast<TI*>(p.ring_x) + rx0 + (int64_t)ct.base * p.rx_r;
  for (int i = tid; i < k * PC; i += NT)
    *reinterpret_cast<uint4*>(rxw + (i >> lPC) * p.rx_r + (i & (PC - 1)) * VI) = raw_x[i];
  if (!early) {  // (a first-wave block formed them before the wait)
    cp_async_wait<0>();  // this thread's tile chunks
    __syncwarp();        // ... and the other lanes' of this warp: the warp's rows are complete
    m2tc_state_dots<T, TI, N, NW>(tile, raw_c, Sd, k, P, warp, g, q);
  }
  __syncthreads();  // every warp's dots and yx

  // ---- y_t = silu(z_t) (scale_t S_t + yx_t)
  m2split_y<TI>(p, y, Sd, yx, rec, W, raw_z, k, P, tid, NT);
  if (!ct.fold) return;  // the prep kernel wrote the rest of this unit's ring (B, dt, compaction) and meta row

  // ---- fold: h = eSQ h0 + X^T B over the committed ring tokens; the new tokens' B rows at ring [0, k); the meta row
  const float eSQ = rec[4];
  const float* wq = rec + W.wq;
  const M2FoldNewB<TI> newb{p, static_cast<const TI*>(p.B) + (int64_t)b * p.B_b + (int64_t)gi * p.B_g,
                            static_cast<TI*>(p.ring_B) + rb0, k, NC, lNC, tid, NT};
  const uint4 b0 = newb.first_b();
  m2tc_fold<T, TI, N, NW>(tile, raw_ring, wq, eSQ, st, p.st_p, ct.c1, P, R, warp, g, q);
  newb.store(b0);
  m2split_fold_meta(p, rec, W, s, u, k, tid);
}

// Warps of a stream block: MK_VERIFY_SPLIT_WARPS=4|8 (environment, read once), else 8 at P >= 128 (H200, b64 h32
// p = n = 128, fp32 state, CUDA-graph call times: k4 57.9 us with 8 warps vs 60.7 with 4, k8 71.9 vs 78.8), else 4.
inline int m2split_warps(int64_t P) {
  static const int forced = warps_from_env("MK_VERIFY_SPLIT_WARPS");
  return tc_block_warps(forced, P);
}

// Whether the pair serves these parameters (m2tc_fits, R <= kSplitPrepThreads); *str_smem / *prep_smem: the two
// kernels' shared memory bytes.
template <typename T>
inline bool m2split_fits(const VerifyStepParams& p, size_t* str_smem, size_t* prep_smem) {
  size_t tc_smem = 0;
  if (!m2tc_fits<T>(p, &tc_smem)) return false;
  if (p.R > kSplitPrepThreads) return false;  // a thread a committed ring token (prep: ring dt; stream: wq)
  constexpr int VT = SV<T>::V;
  const int VI = p.in_dtype == DType::kFloat32 ? 4 : 8;
  const size_t str = static_cast<size_t>(m2str_layout(p.k, p.P, p.N, p.R, VT, VI, p.z != nullptr).words) * 4;
  M2CommonLayout l;
  const size_t prep = static_cast<size_t>(m2_place_common(l, 0, p.k, p.P, p.N, p.R, VI, true)) * 4;
  if (str > 200 * 1024 || prep > 200 * 1024) return false;
  *str_smem = str;
  *prep_smem = prep;
  return true;
}

}  // namespace verify_kernels
}  // namespace mamba_kernels
