// Mamba-2 SSM verify step as a kernel pair (CUDA headers only, no torch): the same contract, cache format and
// closed form as verify_m2tc_kernel (docs/verify_step_design.md), for the same shapes (m2tc_fits), split so that the
// state stream does not wait on the per-unit bookkeeping.
//
// Why: verify_m2tc_kernel streams its 64 KB tiles at b64 k4 (h 32, p = n = 128, fp32 state) in ~72 us against ~38
// for the same block structure with nothing after the tile lands (bench/results/lab, session 10 probe): each unit's
// control words, ring staging (loads that depend on them), ring weights and B . C dots form a chain of dependent
// latencies behind three block barriers, and at 2 blocks an SM nothing streams while both blocks walk it.
//   - verify_m2prep_kernel (a small block a unit, no state access): everything that does not need the state:
//     control words, ring rows, ring weights, B . C dots, and per new token t the state-free part of y,
//     yx_t = rho_t (sum_e wq_e (B_e . C_t) x_e) + (path term) + D x_t and scale_t = rho_t eSQ, written to the per-call
//     scratch p.work; the new tokens' ring writes, the tree compaction and the meta row of every unit that does not
//     fold. It triggers the dependent launch at its start.
//   - verify_m2str_kernel (a unit a block, launched as a programmatic dependent of the prep kernel on sm_90): the
//     state tile by cp.async (the first wave's blocks before they wait on the prep grid, griddepcontrol.wait; later
//     ones after the scratch record's header) and its dots S_t = h0 . C_t on tensor cores (m2tc_state_dots); then
//     y_t = silu(z_t) (scale_t S_t + yx_t), and for a unit that folds the fold (m2tc_fold; its ring rows staged with
//     the record, while the tile is in flight), then its new tokens' ring writes and meta row.
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
// dts (k, processed new dt), masks (k), wq (R, ring weights), yx (k, P). dts, masks, wq are written for folding units
// only (the stream kernel finishes those); every offset a multiple of 4 words.
struct M2SplitWs {
  int scale, dts, masks, wq, yx, words;
};
__host__ __device__ __forceinline__ M2SplitWs m2split_ws(int64_t k, int64_t R, int64_t P) {
  const int64_t K1 = k > 0 ? k : 1;
  M2SplitWs w;
  int o = 8;
  w.scale = o; o += up4(K1);
  w.dts = o; o += up4(K1);
  w.masks = o; o += up4(K1);
  w.wq = o; o += up4(R);
  w.yx = o; o += up4(K1 * P);
  w.words = o;
  return w;
}

// The stream kernel's shared memory (words): the swizzled tile; the dots (k, P) fp32; the unit's scratch record
// (copied after griddepcontrol.wait, while the tile is in flight; yx at rec + yx); a folding unit's committed ring rows
// (raw, laid out as M2Smem's raw_ring: room for R tokens, B rows from m2_ring_b; staged with the record); the raw
// z and C rows of the new tokens.
struct M2StrLayout {
  int tile, dots, rec, ring, raw_z, raw_c, words;
};
__host__ __device__ __forceinline__ M2StrLayout m2str_layout(int64_t k, int64_t P, int64_t N, int64_t R, int VT, int VI,
                                                             bool has_z) {
  const int64_t K1 = k > 0 ? k : 1;
  M2StrLayout l;
  int o = 0;
  l.tile = o; o += static_cast<int>(P * (N / VT) * 4);
  l.dots = o; o += up4(K1 * P);
  l.rec = o; o += m2split_ws(k, R, P).words;
  l.ring = o; o += static_cast<int>(R * (P + N) / VI * 4);
  l.raw_z = o; o += has_z ? static_cast<int>(K1 * P / VI * 4) : 0;
  l.raw_c = o; o += static_cast<int>(K1 * N / VI * 4);
  l.words = o;
  return l;
}

// One unit (batch row b, head u) of the prep work, by the kSplitPrepThreads threads tid of a block whose shared memory
// (m2_place_common, prep) starts at smem_f4: its loads (new x, B, C rows and D by cp.async, its scalars into
// registers), control words, ring rows, weights, B . C dots, and the record (m2split_ws offsets) into wsu (the
// per-call scratch in global memory); the ring writes and meta row of a unit that does not fold. Returns at once for a
// padding row. KT > 0: k == KT, a compile-time constant (fixed-length copy and token loops: the
// launcher's choice for bf16 inputs, N 128, 32-bit offsets, k 2 / 4 / 8); 0: p.k.
template <typename TI, int N, bool kO32, int KT = 0>
__device__ __forceinline__ void m2prep_unit(const VerifyStepParams& p, int b, int u, float4* smem_f4, float* wsu,
                                            int tid) {
  constexpr int NT = kSplitPrepThreads, NW = NT / 32, VI = SV<TI>::V, NC = N / VI;
  const int lane = tid & 31, warp = tid >> 5, g = lane >> 2, q = lane & 3;
  const int H = static_cast<int>(p.H), k = KT > 0 ? KT : static_cast<int>(p.k), P = static_cast<int>(p.P);
  const int R = static_cast<int>(p.R), PC = P / VI, lPC = ilog2(PC);
  const int gi = u / (H / static_cast<int>(p.G));
  M2CommonLayout lay;
  m2_place_common(lay, 0, k, P, N, R, VI, true);
  const M2Smem sm = m2_smem(lay, smem_f4);
  const auto& [xs, Sd, Ds, dts, dtq, wq, G, BC, scal, smeta, spar, smask, raw_in, raw_ring] = sm;
  const int s = p.slots[eoff<kO32>(b, p.slots_stride)];
  if (s < 0 || s >= p.S) return;  // padding row: the stream kernel writes y = 0
  // new x, B, C (raw, in that order; x is read raw by the outputs)
  const int nxc = k * PC, nbc = k * NC;
  const TI* xb = static_cast<const TI*>(p.x) + eoff<kO32>(b, p.x_b, u, p.x_h);
  for (int i = tid; i < nxc; i += NT)
    cp_async16(raw_in + i, xb + eoff<kO32>(i >> lPC, p.x_k, (i & (PC - 1)) * VI, 1));
  const TI* Bb = static_cast<const TI*>(p.B) + eoff<kO32>(b, p.B_b, gi, p.B_g);
  const TI* Cb = static_cast<const TI*>(p.C) + eoff<kO32>(b, p.C_b, gi, p.C_g);
  for (int i = tid; i < nbc; i += NT) {
    cp_async16(raw_in + nxc + i, Bb + eoff<kO32>(i / NC, p.B_k, (i % NC) * VI, 1));
    cp_async16(raw_in + nxc + nbc + i, Cb + eoff<kO32>(i / NC, p.C_k, (i % NC) * VI, 1));
  }
  // D (0 without one: nothing read, p.A stands in as a valid address)
  for (int i = tid; i < P; i += NT)
    cp_async4_zfill(Ds + i, p.D != nullptr ? static_cast<const void*>(p.D + eoff<kO32>(u, p.D_h, i, p.D_p))
                                           : static_cast<const void*>(p.A), p.D != nullptr);
  cp_async_commit();
  const int nm = 2 + static_cast<int>(p.Kmax < kMaxK ? p.Kmax : kMaxK);
  const M2Scalars sc = m2_load_scalars<TI, kO32>(p, b, u, s, tid, k, nm);
  cp_async_wait<0>();
  m2_store_scalars(p, sc, smeta, spar, dts, tid, k, nm);
  __syncthreads();  // 1

  const M2Ctl ct = m2_control(p, smeta, sc.accv, R, k);
  const int64_t rx0 = eoff<kO32>(s, p.rx_s, u, p.rx_h), rb0 = eoff<kO32>(s, p.rB_s, u, p.rB_h);
  const float dq = m2_stage_ring<TI, kO32>(p, ct, raw_ring, rx0, rb0, s, u, PC, NC, tid, NT);
  cp_async_commit();
  m2_masks(spar, smask, tid, k);
  cp_async_wait<0>();
  if (tid < ct.c1) dtq[tid] = dq;
  __syncthreads();  // 2

  // the ring weights on the last warp, beside the dots (one 16-row tile, i.e. warp 0 alone, up to c1 + k = 16)
  if (warp == NW - 1) m2_ring_weights(dtq, wq, scal, ct.c1, sc.Au, lane);
  m2tc_bc_dots<TI, N, NW>(sm, raw_in + nxc + nbc, raw_in + nxc, ct.c1, k, P, R, warp, g, q);
  __syncthreads();  // 3

  const M2SplitWs W = m2split_ws(k, R, P);
  m2_outputs<TI, true, kO32>(p, ct, sm, nullptr, k, P, N, R, sc.Au, rx0, rb0, s, u, tid, NT, wsu + W.yx,
                             wsu + W.scale);
  if (tid == 0) {
    int* wi = reinterpret_cast<int*>(wsu);
    wi[0] = ct.fold ? 1 : 0;
    wi[1] = ct.c;
    wi[2] = ct.c1;
    wi[3] = static_cast<int>(ct.path);
    wsu[4] = scal[0];
  }
  if (ct.fold) {  // what the stream kernel needs to finish the unit
    if (tid < k) {
      wsu[W.dts + tid] = dts[tid];
      reinterpret_cast<int*>(wsu)[W.masks + tid] = smask[tid];
    }
    if (tid < ct.c1) wsu[W.wq + tid] = wq[tid];
  } else {
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

// The control words of a unit from its record's header (fold, c, c1, path; the ring base is 0 when it folds).
__device__ __forceinline__ M2Ctl m2split_ctl(int fold, int c, int c1, int path) {
  M2Ctl ct;
  ct.fold = fold != 0;
  ct.c = c;
  ct.c1 = c1;
  ct.path = static_cast<unsigned>(path);
  ct.base = 0;
  ct.prefix = (ct.path & (ct.path + 1u)) == 0u;
  return ct;
}

// y_t = silu(z_t) (scale_t S_t + yx_t) of one unit (y: its output, b and u applied) from the dots Sd (k, P), the
// record rec (m2split_ws offsets W) and the raw z rows (when p.z); threads tid of NT.
template <typename TI>
__device__ __forceinline__ void m2split_y(const VerifyStepParams& p, TI* y, const float* Sd, const float* rec,
                                          const M2SplitWs& W, const uint4* raw_z, int k, int P, int tid, int NT) {
  constexpr int VI = SV<TI>::V;
  const int PC = P / VI, lPC = ilog2(PC);
  for (int i = tid; i < k * PC; i += NT) {
    const int t = i >> lPC, p0 = (i & (PC - 1)) * VI;
    float sd[VI], yx[VI], out[VI];
    lds_vec<VI>(Sd + t * P + p0, sd);
    lds_vec<VI>(rec + W.yx + t * P + p0, yx);
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

// A folding unit's new tokens' x and B rows (xb: its x rows of the call, Bb: its group's B rows) -> its ring rows
// rx / rB [0, k) (base 0: k <= Kmax <= R, every new token has a ring row), by the NT threads tid: first_x() /
// first_b() load this thread's first chunk of each before the fold (the loads' latency under its work; ncu of a
// folding call: copies issued after the fold waited on them), store() writes them and copies any rest.
template <typename TI>
struct M2FoldNewRows {
  const VerifyStepParams& p;
  const TI *xb, *Bb;
  TI *rx, *rB;
  int k, PC, NC, lPC, lNC, tid, NT;
  static constexpr int VI = SV<TI>::V;
  __device__ __forceinline__ const uint4* x_src(int i) const {
    return reinterpret_cast<const uint4*>(xb + (i >> lPC) * p.x_k + (i & (PC - 1)) * VI);
  }
  __device__ __forceinline__ const uint4* b_src(int i) const {
    return reinterpret_cast<const uint4*>(Bb + (i >> lNC) * p.B_k + (i & (NC - 1)) * VI);
  }
  __device__ __forceinline__ uint4* x_dst(int i) const {
    return reinterpret_cast<uint4*>(rx + (i >> lPC) * p.rx_r + (i & (PC - 1)) * VI);
  }
  __device__ __forceinline__ uint4* b_dst(int i) const {
    return reinterpret_cast<uint4*>(rB + (i >> lNC) * p.rB_r + (i & (NC - 1)) * VI);
  }
  __device__ __forceinline__ uint4 first_x() const { return tid < k * PC ? *x_src(tid) : make_uint4(0u, 0u, 0u, 0u); }
  __device__ __forceinline__ uint4 first_b() const { return tid < k * NC ? *b_src(tid) : make_uint4(0u, 0u, 0u, 0u); }
  __device__ __forceinline__ void store(uint4 x0, uint4 b0) const {
    if (tid < k * PC) *x_dst(tid) = x0;
    if (tid < k * NC) *b_dst(tid) = b0;
    for (int i = tid + NT; i < k * PC; i += NT) *x_dst(i) = *x_src(i);
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

  // ---- the new C (and z) rows (group 1), the state tile (group 2), the state dots: nothing here reads the scratch
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
  // complete and read the record's header words (fold, c, c1, path) straight from global memory before their tile's
  // copies, so that this load does not queue behind 64 KB (ncu of a folding call: 18% of the stream's stall samples
  // waited on it there).
  T* st = static_cast<T*>(p.state) + (int64_t)s * p.st_s + (int64_t)u * p.st_h;
  const bool early = blockIdx.x < p.tile_early;  // the first wave: the tile before the wait (tile_early_blocks)
  if (early) m2tc_stage_tile<T, N, NW, true>(tile, st, p.st_p, P, warp, lane);
  griddep_wait();  // the prep kernel's scratch, ring and meta writes are complete and visible
  const M2SplitWs W = m2split_ws(k, R, P);
  const float* wsu = p.work + ((int64_t)b * H + u) * p.work_unit;
  const int4 hdr = *reinterpret_cast<const int4*>(wsu);
  // The tile's copies under an L2 evict-first policy: the 64 KB a unit is read once a call, and streamed with the
  // normal policy they push out of L2 what is read again (the ring rows and inputs of the next call's prep kernel,
  // 13.9 us against 14.4, the scratch). H200, b64 mean per call k2 / k4 / k8 54.5 / 60.8 / 82.6 us against 56.9 /
  // 63.0 / 83.5; the fold's write-back under the same policy lost at k8 (86.8).
  if (!early) m2tc_stage_tile<T, N, NW, true>(tile, st, p.st_p, P, warp, lane);
  cp_async_commit();
  // The unit's scratch record by cp.async (group 3) while the tile is in flight, and, for a unit that folds, its
  // committed ring rows too.
  for (int i = tid; i < W.words / 4; i += NT) cp_async16(rec + 4 * i, wsu + 4 * i);
  const M2Ctl ct = m2split_ctl(hdr.x, hdr.y, hdr.z, hdr.w);
  const int64_t rx0 = (int64_t)s * p.rx_s + (int64_t)u * p.rx_h, rb0 = (int64_t)s * p.rB_s + (int64_t)u * p.rB_h;
  if (ct.fold) m2_stage_ring<TI>(p, ct, raw_ring, rx0, rb0, s, u, PC, NC, tid, NT);
  cp_async_commit();
  cp_async_wait<2>();
  __syncthreads();     // the C and z rows, from every thread's copies
  cp_async_wait<1>();  // this thread's tile chunks
  __syncwarp();        // ... and the other lanes' of this warp: the warp's rows are complete
  m2tc_state_dots<T, TI, N, NW>(tile, raw_c, Sd, k, P, warp, g, q);
  cp_async_wait<0>();
  __syncthreads();  // every warp's dots, the record, the ring rows

  // ---- y_t = silu(z_t) (scale_t S_t + yx_t)
  m2split_y<TI>(p, y, Sd, rec, W, raw_z, k, P, tid, NT);
  if (!ct.fold) return;  // the prep kernel wrote this unit's ring and meta

  // ---- fold: h = eSQ h0 + X^T B over the committed ring tokens; then the new tokens at ring [0, k) and the meta row
  const float eSQ = rec[4];
  const float* wq = rec + W.wq;
  const M2FoldNewRows<TI> rows{p, static_cast<const TI*>(p.x) + (int64_t)b * p.x_b + (int64_t)u * p.x_h,
                         static_cast<const TI*>(p.B) + (int64_t)b * p.B_b + (int64_t)gi * p.B_g,
                         static_cast<TI*>(p.ring_x) + rx0, static_cast<TI*>(p.ring_B) + rb0, k, PC, NC, lPC, lNC, tid,
                         NT};
  const uint4 x0 = rows.first_x(), b0 = rows.first_b();
  m2tc_fold<T, TI, N, NW>(tile, raw_ring, wq, eSQ, st, p.st_p, ct.c1, P, R, warp, g, q);
  rows.store(x0, b0);
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
