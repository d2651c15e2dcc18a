// Mamba-2 SSM verify step as an overlapping kernel pair (CUDA headers only, no torch): the same contract, cache
// format and closed form as verify_m2tc_kernel (docs/verify_step_design.md), for the split pair's shapes
// (m2split_fits), with the two kernels running side by side instead of one after the other.
//
// Why: in the split pair (verify_m2split_kernel.cuh) the stream kernel needs the prep kernel's record before it can
// finish a unit, so it is the prep kernel's programmatic dependent; the prep grid (2048 small blocks at b64 h32)
// fills every SM until it retires, and the stream overlaps only its tail: H200 b64 k4 a call without a fold ~58 us
// against ~40 for the stream alone, and the call that folds every unit ~107 us. Here the dependency is turned round:
//   - verify_m2ostr_kernel (launched first; one persistent block an SM, 1 block by its shared memory): walks its units
//     (unit = blockIdx.x + i * gridDim.x) with two stages in flight: each unit's state tile, C rows, meta row,
//     accepted count and ring dt by cp.async, the next-but-one unit's copies issued as soon as a stage is free. It
//     forms S_t = h0 . C_t on tensor cores into the scratch (sd), and for a unit that folds reads its control words
//     itself (m2_control_words: the prep kernel does not write a meta row before the stream grid has completed),
//     stages its committed ring rows, computes the ring weights and folds (m2tc_fold). It needs nothing from the
//     prep kernel, and it triggers the dependent launch at its start.
//   - verify_m2oprep_kernel (the stream kernel's programmatic dependent; persistent 2-warp blocks in the shared
//     memory and registers the stream blocks leave on each SM): per unit, everything that does not need the state
//     (as verify_m2prep_kernel: yx_t, scale_t into the scratch; the ring rows of a unit that does not fold and the
//     tree compaction); then griddepcontrol.wait (the stream grid has completed: every meta row and committed ring
//     row it reads has been read, sd is written) and per unit y_t = silu(z_t) (scale_t S_t + yx_t), the meta row,
//     and for a unit that folded its new tokens at ring [0, k).
// Races excluded by that order: the stream kernel reads meta rows, ring dt and ring rows of folding units; the prep
// kernel writes before its wait only ring rows / ring dt of units that do not fold, and the scratch.
#pragma once
#include "verify/verify_m2split_kernel.cuh"

namespace mamba_kernels {
namespace verify_kernels {

// One stage of the stream kernel (words): the swizzled tile, the raw C rows of the new tokens, the meta row's first
// 2 + min(Kmax, kMaxK) words, the accepted count, the ring dt (R).
struct M2OvlStage {
  int tile, raw_c, meta, acc, rdt, words;
};
// The stream kernel's shared memory (words): two stages, then a folding unit's committed ring rows (raw: x then B),
// their dt in committed order (dtq), the ring weights (wq), eSQ (scal).
struct M2OvlLayout {
  M2OvlStage st;
  int stage0, stage1, ring, dtq, wq, scal, words;
};
__host__ __device__ __forceinline__ M2OvlLayout m2ovl_layout(int64_t k, int64_t P, int64_t N, int64_t R, int VT,
                                                             int VI) {
  const int64_t K1 = k > 0 ? k : 1;
  M2OvlLayout l;
  int o = 0;
  l.st.tile = o; o += static_cast<int>(P * (N / VT) * 4);
  l.st.raw_c = o; o += static_cast<int>(K1 * N / VI * 4);
  l.st.meta = o; o += up4(2 + kMaxK);
  l.st.acc = o; o += 4;
  l.st.rdt = o; o += up4(R);
  l.st.words = o;
  l.stage0 = 0;
  l.stage1 = o;
  o += l.st.words;
  l.ring = o; o += static_cast<int>(R * (P + N) / VI * 4);
  l.dtq = o; o += up4(R);
  l.wq = o; o += up4(R);
  l.scal = o; o += 4;
  l.words = o;
  return l;
}

// Threads of the stream kernel that copy the scalars of a unit: meta words [0, nm) by threads [0, nm), the accepted
// count by kOvlAccThread, ring dt e by thread kOvlRdtThread0 + e (R <= 64 <= NT - kOvlRdtThread0).
constexpr int kOvlAccThread = 40, kOvlRdtThread0 = 64;

template <typename T, typename TI, int N, int NW>
__global__ void __launch_bounds__(NW * 32, 16 / NW) verify_m2ostr_kernel(const VerifyStepParams p) {
  constexpr int NT = NW * 32;
  constexpr int VT = SV<T>::V, VI = SV<TI>::V, NC = N / VI;
  griddep_launch_dependents();  // the prep kernel's blocks may start beside this grid's
  MK_VERIFY_DYN_SMEM(smem_f4);
  float* smf = reinterpret_cast<float*>(smem_f4);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, q = lane & 3;
  const int H = static_cast<int>(p.H), k = static_cast<int>(p.k), P = static_cast<int>(p.P);
  const int R = static_cast<int>(p.R), HG = H / static_cast<int>(p.G);
  const int PC = P / VI, lPC = ilog2(PC), lNC = ilog2(NC);
  const int64_t units = p.batch * p.H, G0 = gridDim.x;
  const int nm = 2 + static_cast<int>(p.Kmax < kMaxK ? p.Kmax : kMaxK);
  const M2OvlLayout lay = m2ovl_layout(k, P, N, R, SV<T>::V, VI);
  const M2SplitWs W = m2split_ws(k, R, P);
  uint4* raw_ring = reinterpret_cast<uint4*>(smf + lay.ring);
  float* dtq = smf + lay.dtq;
  float* wq = smf + lay.wq;
  float* scal = smf + lay.scal;
  auto stage = [&](int i) { return smf + ((i & 1) ? lay.stage1 : lay.stage0); };
  auto slot_of = [&](int64_t unit) -> int {
    if (unit >= units) return -1;
    const int s = p.slots[(unit / H) * p.slots_stride];
    return (s < 0 || s >= p.S) ? -1 : s;  // -1: padding row or no unit (nothing copied, nothing done)
  };
  // Copies of `unit` (slot s) into stage sb; one cp.async group committed in any case.
  auto issue = [&](int64_t unit, int s, float* sb) {
    if (s >= 0) {
      const int b = static_cast<int>(unit / H), u = static_cast<int>(unit - (unit / H) * H), gi = u / HG;
      const T* st = static_cast<const T*>(p.state) + (int64_t)s * p.st_s + (int64_t)u * p.st_h;
      m2tc_stage_tile<T, N, NW>(reinterpret_cast<uint4*>(sb + lay.st.tile), st, p.st_p, P, warp, lane);
      const TI* Cb = static_cast<const TI*>(p.C) + (int64_t)b * p.C_b + (int64_t)gi * p.C_g;
      uint4* rc = reinterpret_cast<uint4*>(sb + lay.st.raw_c);
      for (int i = tid; i < k * NC; i += NT) cp_async16(rc + i, Cb + (i >> lNC) * p.C_k + (i & (NC - 1)) * VI);
      const int32_t* mrow = p.meta + (int64_t)s * p.meta_s + (int64_t)u * p.meta_h;
      if (tid < nm) cp_async4(sb + lay.st.meta + tid, mrow + tid * p.meta_i);
      if (tid == kOvlAccThread) cp_async4(sb + lay.st.acc, p.accepted + b * p.accepted_stride);
      const int e = tid - kOvlRdtThread0;
      if (e >= 0 && e < R)
        cp_async4(sb + lay.st.rdt + e, p.ring_dt + (int64_t)s * p.rdt_s + (int64_t)e * p.rdt_r + (int64_t)u * p.rdt_h);
    }
    cp_async_commit();
  };

  int64_t unit = blockIdx.x;
  int s_cur = slot_of(unit), s_nxt = slot_of(unit + G0);
  issue(unit, s_cur, stage(0));
  issue(unit + G0, s_nxt, stage(1));
  for (int i = 0; unit < units; ++i, unit += G0) {
    const int s_pre = slot_of(unit + 2 * G0);  // its load's latency under this unit's work
    float* sb = stage(i);
    cp_async_wait<1>();  // this unit's copies (the next unit's stay in flight)
    __syncthreads();
    if (s_cur >= 0) {
      const int s = s_cur, u = static_cast<int>(unit - (unit / H) * H);
      const uint4* tile = reinterpret_cast<const uint4*>(sb + lay.st.tile);
      float* wsu = p.work + unit * p.work_unit;
      m2tc_state_dots<T, TI, N, NW>(tile, reinterpret_cast<const uint4*>(sb + lay.st.raw_c), wsu + W.sd, k, P, warp,
                                    g, q);
      const int* sm = reinterpret_cast<const int*>(sb + lay.st.meta);
      const M2Ctl ct = m2_control_words(p, sm[0], sm[1], [sm](int a) { return sm[2 + a]; },
                                        reinterpret_cast<const int*>(sb + lay.st.acc)[0], R, k);
      if (ct.fold) {  // the same for every thread of the block (shared words)
        // committed ring rows (x, then B) by plain 16-byte loads, kRB a thread in flight at once
        const int64_t rx0 = (int64_t)s * p.rx_s + (int64_t)u * p.rx_h, rb0 = (int64_t)s * p.rB_s + (int64_t)u * p.rB_h;
        const int nrx = ct.c1 * PC, nring = ct.c1 * (PC + NC);
        constexpr int kRB = 4;
        for (int j0 = tid; j0 < nring; j0 += kRB * NT) {
          uint4 v[kRB];
#pragma unroll
          for (int r = 0; r < kRB; ++r) {
            const int j = j0 + r * NT;
            if (j < nring) {
              const TI* src = j < nrx ? static_cast<const TI*>(p.ring_x) + rx0 + ct.qpos(j >> lPC) * p.rx_r +
                                            (j & (PC - 1)) * VI
                                      : static_cast<const TI*>(p.ring_B) + rb0 + ct.qpos((j - nrx) >> lNC) * p.rB_r +
                                            ((j - nrx) & (NC - 1)) * VI;
              v[r] = *reinterpret_cast<const uint4*>(src);
            }
          }
#pragma unroll
          for (int r = 0; r < kRB; ++r)
            if (j0 + r * NT < nring) raw_ring[j0 + r * NT] = v[r];
        }
        if (tid < ct.c1) dtq[tid] = sb[lay.st.rdt + ct.qpos(tid)];
        __syncthreads();
        if (warp == 0) m2_ring_weights(dtq, wq, scal, ct.c1, p.A[u * p.A_h], lane);
        __syncthreads();
        T* st = static_cast<T*>(p.state) + (int64_t)s * p.st_s + (int64_t)u * p.st_h;
        m2tc_fold<T, TI, N, NW>(tile, raw_ring, wq, scal[0], st, p.st_p, ct.c1, P, warp, g, q);
      }
    }
    __syncthreads();  // every warp is done with this stage (and the ring rows)
    issue(unit + 2 * G0, s_pre, sb);
    s_cur = s_nxt;
    s_nxt = s_pre;
  }
  cp_async_wait<0>();
}

// The per-unit part of verify_m2prep_kernel (2 warps, no state access) for unit (b, u) with slot s: writes the record
// (header [0] fold, [1] c, [2] c1, [3] path, [4] eSQ, [5] base; scale, dts, masks, yx), the ring rows / ring dt of a
// unit that does not fold and its tree compaction; not the meta row.
template <typename TI, int N>
__device__ __forceinline__ void m2oprep_unit(const VerifyStepParams& p, float4* smem_f4, int b, int u, int s,
                                             float* wsu) {
  constexpr int NT = kSplitPrepThreads, NW = NT / 32;
  constexpr int VI = SV<TI>::V, NC = N / VI;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, q = lane & 3;
  const int H = static_cast<int>(p.H), k = static_cast<int>(p.k), P = static_cast<int>(p.P);
  const int R = static_cast<int>(p.R), PC = P / VI, lPC = ilog2(PC);
  const int gi = u / (H / static_cast<int>(p.G));
  M2CommonLayout lay;
  m2_place_common(lay, 0, k, P, N, R, VI, true);
  const M2Smem sm = m2_smem(lay, smem_f4);
  const int nxc = k * PC, nbc = k * NC;
  {
    const TI* xb = static_cast<const TI*>(p.x) + (int64_t)b * p.x_b + (int64_t)u * p.x_h;
    for (int i = tid; i < nxc; i += NT) cp_async16(sm.raw_in + i, xb + (i >> lPC) * p.x_k + (i & (PC - 1)) * VI);
    const TI* Bb = static_cast<const TI*>(p.B) + (int64_t)b * p.B_b + (int64_t)gi * p.B_g;
    const TI* Cb = static_cast<const TI*>(p.C) + (int64_t)b * p.C_b + (int64_t)gi * p.C_g;
    for (int i = tid; i < nbc; i += NT) {
      cp_async16(sm.raw_in + nxc + i, Bb + (i / NC) * p.B_k + (i % NC) * VI);
      cp_async16(sm.raw_in + nxc + nbc + i, Cb + (i / NC) * p.C_k + (i % NC) * VI);
    }
  }
  cp_async_commit();
  const int nm = 2 + static_cast<int>(p.Kmax < kMaxK ? p.Kmax : kMaxK);
  const M2Scalars sc = m2_load_scalars<TI>(p, b, u, s, tid, k, nm);
  for (int i = tid; i < P; i += NT) sm.Ds[i] = p.D != nullptr ? p.D[u * p.D_h + i * p.D_p] : 0.f;
  cp_async_wait<0>();
  m2_store_scalars(p, sc, sm.smeta, sm.spar, sm.dts, tid, k, nm);
  __syncthreads();

  const M2Ctl ct = m2_control(p, sm.smeta, sc.accv, R, k);
  const int64_t rx0 = (int64_t)s * p.rx_s + (int64_t)u * p.rx_h, rb0 = (int64_t)s * p.rB_s + (int64_t)u * p.rB_h;
  const float dq = m2_stage_ring<TI>(p, ct, sm.raw_ring, rx0, rb0, s, u, PC, NC, tid, NT);
  cp_async_commit();
  m2_masks(sm.spar, sm.smask, tid, k);
  cp_async_wait<0>();
  if (tid < ct.c1) sm.dtq[tid] = dq;
  __syncthreads();

  if (warp == 0) m2_ring_weights(sm.dtq, sm.wq, sm.scal, ct.c1, sc.Au, lane);
  m2tc_bc_dots<TI, N, NW>(sm, sm.raw_in + nxc + nbc, sm.raw_in + nxc, ct.c1, k, P, warp, g, q);
  __syncthreads();

  const M2SplitWs W = m2split_ws(k, R, P);
  m2_outputs<TI, true>(p, ct, sm, nullptr, k, P, N, R, sc.Au, rx0, rb0, s, u, tid, NT, wsu + W.yx, wsu + W.scale);
  if (tid == 0) {
    int* wi = reinterpret_cast<int*>(wsu);
    wi[0] = ct.fold ? 1 : 0;
    wi[1] = ct.c;
    wi[2] = ct.c1;
    wi[3] = static_cast<int>(ct.path);
    wsu[4] = sm.scal[0];
    wi[5] = ct.base;
  }
  if (tid < k) {
    wsu[W.dts + tid] = sm.dts[tid];
    reinterpret_cast<int*>(wsu)[W.masks + tid] = sm.smask[tid];
  }
  if (!ct.fold) m2_finish<TI, false>(p, ct, sm, k, P, N, rx0, rb0, s, u, tid, NT);
}

// After the stream grid: y_t = silu(z_t) (scale_t S_t + yx_t) of unit (b, u), its meta row and, when it folded, its
// new tokens at ring [0, k). wsu: its record (written by this block before the wait, sd by the stream kernel).
template <typename TI>
__device__ __forceinline__ void m2oprep_tail(const VerifyStepParams& p, int b, int u, int s, const float* wsu) {
  constexpr int NT = kSplitPrepThreads, VI = SV<TI>::V;
  const int tid = threadIdx.x;
  const int H = static_cast<int>(p.H), k = static_cast<int>(p.k), P = static_cast<int>(p.P);
  const int R = static_cast<int>(p.R), N = static_cast<int>(p.N), PC = P / VI, NC = N / VI;
  const int lPC = ilog2(PC), lNC = ilog2(NC);
  const M2SplitWs W = m2split_ws(k, R, P);
  TI* y = static_cast<TI*>(p.y) + (int64_t)b * p.y_b + (int64_t)u * p.y_h;
  const TI* zb = p.z != nullptr ? static_cast<const TI*>(p.z) + (int64_t)b * p.z_b + (int64_t)u * p.z_h : nullptr;
  for (int i = tid; i < k * PC; i += NT) {
    const int t = i >> lPC, p0 = (i & (PC - 1)) * VI;
    float sd[VI], yx[VI], out[VI];
    lds_vec<VI>(wsu + W.sd + t * P + p0, sd);
    lds_vec<VI>(wsu + W.yx + t * P + p0, yx);
    const float sc = wsu[W.scale + t];
#pragma unroll
    for (int v = 0; v < VI; ++v) out[v] = fmaf(sc, sd[v], yx[v]);
    if (zb != nullptr) {
      float zv[VI];
      SV<TI>::unpack(*reinterpret_cast<const uint4*>(zb + t * p.z_k + p0), zv);
#pragma unroll
      for (int v = 0; v < VI; ++v) out[v] *= silu_f(zv[v]);
    }
    *reinterpret_cast<uint4*>(y + t * p.y_k + p0) = SV<TI>::pack(out);
  }
  const int* wi = reinterpret_cast<const int*>(wsu);
  int32_t* mrow = p.meta + (int64_t)s * p.meta_s + (int64_t)u * p.meta_h;
  if (tid == 0) {
    mrow[0] = wi[5];
    mrow[p.meta_i] = k;
  }
  if (tid < k && tid < p.Kmax) mrow[(2 + tid) * p.meta_i] = wi[W.masks + tid];
  if (wi[0] == 0) return;
  // folded: the new tokens' x, B rows and dt at ring [0, k) (k <= Kmax <= R)
  const int gi = u / (H / static_cast<int>(p.G));
  const TI* xb = static_cast<const TI*>(p.x) + (int64_t)b * p.x_b + (int64_t)u * p.x_h;
  const TI* Bb = static_cast<const TI*>(p.B) + (int64_t)b * p.B_b + (int64_t)gi * p.B_g;
  TI* rx = static_cast<TI*>(p.ring_x) + (int64_t)s * p.rx_s + (int64_t)u * p.rx_h;
  TI* rB = static_cast<TI*>(p.ring_B) + (int64_t)s * p.rB_s + (int64_t)u * p.rB_h;
  for (int i = tid; i < k * PC; i += NT)
    *reinterpret_cast<uint4*>(rx + (i >> lPC) * p.rx_r + (i & (PC - 1)) * VI) =
        *reinterpret_cast<const uint4*>(xb + (i >> lPC) * p.x_k + (i & (PC - 1)) * VI);
  for (int i = tid; i < k * NC; i += NT)
    *reinterpret_cast<uint4*>(rB + (i >> lNC) * p.rB_r + (i & (NC - 1)) * VI) =
        *reinterpret_cast<const uint4*>(Bb + (i >> lNC) * p.B_k + (i & (NC - 1)) * VI);
  if (tid < k) p.ring_dt[(int64_t)s * p.rdt_s + (int64_t)tid * p.rdt_r + (int64_t)u * p.rdt_h] = wsu[W.dts + tid];
}

template <typename TI, int N, int MinBlocks>
__global__ void __launch_bounds__(kSplitPrepThreads, MinBlocks) verify_m2oprep_kernel(const VerifyStepParams p) {
  MK_VERIFY_DYN_SMEM(smem_f4);
  const int H = static_cast<int>(p.H);
  const int64_t units = p.batch * p.H;
  for (int64_t unit = blockIdx.x; unit < units; unit += gridDim.x) {
    const int b = static_cast<int>(unit / H), u = static_cast<int>(unit - (unit / H) * H);
    const int s = p.slots[b * p.slots_stride];
    if (s < 0 || s >= p.S) continue;
    m2oprep_unit<TI, N>(p, smem_f4, b, u, s, p.work + unit * p.work_unit);
    __syncthreads();  // shared memory is the next unit's
  }
  griddep_wait();  // the stream grid has completed: sd written, every meta / ring row it reads read
  __syncthreads();
  for (int64_t unit = blockIdx.x; unit < units; unit += gridDim.x) {
    const int b = static_cast<int>(unit / H), u = static_cast<int>(unit - (unit / H) * H);
    const int s = p.slots[b * p.slots_stride];
    if (s < 0 || s >= p.S) {  // padding row: y = 0, cache untouched
      m2_zero_y<TI>(static_cast<TI*>(p.y) + (int64_t)b * p.y_b + (int64_t)u * p.y_h, p.y_k, static_cast<int>(p.k),
                    static_cast<int>(p.P) / SV<TI>::V, threadIdx.x, kSplitPrepThreads);
      continue;
    }
    m2oprep_tail<TI>(p, b, u, s, p.work + unit * p.work_unit);
  }
}

// Whether the overlapping pair serves p (m2split_fits, R <= 64); *str_smem / *prep_smem: the two kernels' shared
// memory bytes.
template <typename T>
inline bool m2ovl_fits(const VerifyStepParams& p, size_t* str_smem, size_t* prep_smem) {
  size_t s0 = 0, s1 = 0;
  if (!m2split_fits<T>(p, &s0, &s1)) return false;
  if (p.R > 64) return false;  // ring dt copied a thread a token (kOvlRdtThread0 + R <= 128 threads)
  const int VI = p.in_dtype == DType::kFloat32 ? 4 : 8;
  const size_t str = static_cast<size_t>(m2ovl_layout(p.k, p.P, p.N, p.R, SV<T>::V, VI).words) * 4;
  if (str > 227 * 1024) return false;
  *str_smem = str;
  *prep_smem = s1;
  return true;
}

}  // namespace verify_kernels
}  // namespace mamba_kernels
