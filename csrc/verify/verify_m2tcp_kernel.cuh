// Mamba-2 SSM verify step on tensor cores, persistent and pipelined (experimental; CUDA headers only): the unit
// work of verify_m2tc_kernel (verify_m2tc_kernel.cuh: same contract, closed form, fragments and shared-memory
// layout) in a grid of one block an SM that walks the units with two shared-memory buffers, so that a unit's
// inputs, state tile and scalars are loaded while the unit before computes (docs/verify_step_design.md, "batch
// 64, k 4"). Chosen only by MK_VERIFY_KERNEL=tcp until measured on the H200; m2tc_unit repeats
// verify_m2tc_kernel's body with the pipeline's hooks, so that the measured kernel stays as it was: once
// this one is measured, one of the two goes.
#pragma once
#include "verify/verify_m2tc_kernel.cuh"

namespace mamba_kernels {
namespace verify_kernels {

// The new-token inputs of unit (b, u) -> raw_in by cp.async: x, z token rows of PC chunks, B, C token rows of NC
// chunks (one loop per tensor: no per-chunk dispatch). All NT threads call.
template <typename TI, int N, int NT>
__device__ __forceinline__ void m2tc_issue_inputs(const VerifyStepParams& p, uint4* raw_in, int b, int u, int k,
                                                  int tid) {
  constexpr int VI = SV<TI>::V, NC = N / VI;
  const int P = static_cast<int>(p.P), PC = P / VI, lPC = ilog2(PC);
  const int gi = u / (static_cast<int>(p.H) / static_cast<int>(p.G));
  const int nxc = k * PC, nzc = p.z != nullptr ? k * PC : 0, nbc = k * NC;
  const TI* xb = static_cast<const TI*>(p.x) + (int64_t)b * p.x_b + (int64_t)u * p.x_h;
  for (int i = tid; i < nxc; i += NT) cp_async16(raw_in + i, xb + (i >> lPC) * p.x_k + (i & (PC - 1)) * VI);
  if (p.z != nullptr) {
    const TI* zb = static_cast<const TI*>(p.z) + (int64_t)b * p.z_b + (int64_t)u * p.z_h;
    for (int i = tid; i < nzc; i += NT) cp_async16(raw_in + nxc + i, zb + (i >> lPC) * p.z_k + (i & (PC - 1)) * VI);
  }
  const TI* Bb = static_cast<const TI*>(p.B) + (int64_t)b * p.B_b + (int64_t)gi * p.B_g;
  const TI* Cb = static_cast<const TI*>(p.C) + (int64_t)b * p.C_b + (int64_t)gi * p.C_g;
  for (int i = tid; i < nbc; i += NT) {
    cp_async16(raw_in + nxc + nzc + i, Bb + (i / NC) * p.B_k + (i % NC) * VI);
    cp_async16(raw_in + nxc + nzc + nbc + i, Cb + (i / NC) * p.C_k + (i % NC) * VI);
  }
}

// The state tile of (slot s, head u) -> tile by cp.async, swizzled: warp mt % NW copies (and later reads) rows
// [16 mt, 16 mt + 16): lane = (row lr of RP, chunk lc). All NT threads call.
template <typename T, int N, int NW>
__device__ __forceinline__ void m2tc_issue_tile(const VerifyStepParams& p, uint4* tile, int s, int u, int warp,
                                                int lane) {
  constexpr int VT = SV<T>::V, CPR = N / VT, RP = 32 / CPR;
  const int MT = static_cast<int>(p.P) / 16;
  const T* st = static_cast<const T*>(p.state) + (int64_t)s * p.st_s + (int64_t)u * p.st_h;
  const int lc = lane % CPR, lr = lane / CPR;
  for (int mt = warp; mt < MT; mt += NW) {
    const T* src = st + (mt * 16 + lr) * p.st_p + lc * VT;
    uint4* dst = tile + (mt * 16 + lr) * CPR;
#pragma unroll
    for (int i = 0; i < 16 / RP; ++i) {
      const int r = lr + i * RP;  // row parity = r's parity (16 mt is even)
      cp_async16(dst + i * RP * CPR + (lc ^ tc_swz(r)), src + i * RP * p.st_p);
    }
  }
}

// Unit (batch row b, head u) with slot s (a valid slot), its shared memory at smem_f4: verify_m2tc_kernel's body,
// except that the inputs and the tile were copied into this buffer during the unit before (the only cp.async group
// pending at entry), the scalars and D value come in registers (`sc`, `dval`), and issue_next() starts the next
// unit's copies right after this unit's ring copies (so the ring's group is the older one).
template <typename T, typename TI, int N, int NW, typename NextFn>
__device__ __forceinline__ void m2tc_unit(const VerifyStepParams& p, float4* smem_f4, int b, int u, int s,
                                          const M2Scalars& sc, float dval, NextFn&& issue_next) {
  constexpr int NT = NW * 32;
  constexpr int VT = SV<T>::V, CPR = N / VT;  // state elements a chunk, chunks a row
  constexpr int VI = SV<TI>::V, NC = N / VI;  // input elements a chunk, chunks a B / C row
  constexpr bool kSplitS = sizeof(T) == 4, kSplitI = sizeof(TI) == 4;  // operands not exact in tf32
  float* smf = reinterpret_cast<float*>(smem_f4);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, q = lane & 3;
  const int k = static_cast<int>(p.k), K1 = k > 0 ? k : 1;
  const int P = static_cast<int>(p.P), R = static_cast<int>(p.R);
  const int PC = P / VI, MT = P / 16;
  TI* y = static_cast<TI*>(p.y) + (int64_t)b * p.y_b + (int64_t)u * p.y_h;
  const M2TcLayout lay = m2tc_layout(k, P, N, R, VT, VI);
  uint4* tile = reinterpret_cast<uint4*>(smf + lay.tile);
  const M2Smem sm = m2_smem(lay, smem_f4);
  const auto& [xs, Sd, Ds, dts, dtq, wq, G, BC, scal, smeta, spar, smask, raw_in, raw_ring] = sm;

  // ---- 1. inputs and tile landed (copied during the unit before); scalars, x -> fp32 ------------------------------
  const int nxc = k * PC, nzc = p.z != nullptr ? k * PC : 0, nbc = k * NC;
  T* st = static_cast<T*>(p.state) + (int64_t)s * p.st_s + (int64_t)u * p.st_h;
  const int nm = 2 + static_cast<int>(p.Kmax < kMaxK ? p.Kmax : kMaxK);
  if (tid < P) Ds[tid] = dval;  // P <= NT (m2tcp_fits)
  cp_async_wait<0>();  // this thread's copies of this unit's inputs and tile (made during the unit before)
  const float Au = sc.Au;
  for (int i = tid; i < nxc; i += NT) {  // x -> fp32 (z, B, C stay raw)
    float o[VI];
    SV<TI>::unpack(raw_in[i], o);
    sts_vec<VI>(xs + i * VI, o);
  }
  m2_store_scalars(p, sc, smeta, spar, dts, tid, k, nm);
  __syncthreads();  // 1

  // ---- 2. control words, ring (cp.async, then the next unit's group), state dots on tensor cores -------------
  const M2Ctl ct = m2_control(p, smeta, nm, sc.accv, R, k);
  const int c1 = ct.c1, nrx = c1 * PC;
  const int64_t rx0 = (int64_t)s * p.rx_s + (int64_t)u * p.rx_h, rb0 = (int64_t)s * p.rB_s + (int64_t)u * p.rB_h;
  const float dq = m2_stage_ring<TI>(p, ct, raw_ring, rx0, rb0, s, u, PC, NC, tid, NT);
  cp_async_commit();
  issue_next();  // the next unit's copies (a newer group than the ring's)
  m2_masks(spar, smask, tid, k);
  const uint4* Craw = raw_in + nxc + nzc + nbc;
  const uint4* Bnew = raw_in + nxc + nzc;
  // (the tile landed before barrier 1)
  // S_t[row] = h0[row] . C_t: per (16-row m-tile, 8-token n-tile), N / 8 mma k-steps (x2 / x3 with splits).
  for (int nt = 0; nt * 8 < k; ++nt) {
    float cf[N / 4], cfl[N / 4];
    load_c_frag<TI, N, VT, kSplitI>(Craw, nt * 8 + g, k, q, cf, cfl);
    for (int mt = warp; mt < MT; mt += NW) {
      const int r0 = mt * 16 + g, r1 = r0 + 8;
      float d[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int gc = 0; gc < N / (4 * VT); ++gc) {
        float h0[VT], h1[VT];
        SV<T>::unpack(tile[r0 * CPR + ((gc * 4 + q) ^ tc_swz(r0))], h0);
        SV<T>::unpack(tile[r1 * CPR + ((gc * 4 + q) ^ tc_swz(r1))], h1);
#pragma unroll
        for (int e = 0; e < VT; e += 2)
          mma_acc<kSplitS, kSplitI>(d, h0[e], h1[e], h0[e + 1], h1[e + 1], cf[gc * VT + e], cf[gc * VT + e + 1],
                                    cfl[gc * VT + e], cfl[gc * VT + e + 1]);
      }
      const int t0 = nt * 8 + 2 * q;
      if (t0 < k) {
        Sd[t0 * P + r0] = d[0];
        Sd[t0 * P + r1] = d[2];
      }
      if (t0 + 1 < k) {
        Sd[(t0 + 1) * P + r0] = d[1];
        Sd[(t0 + 1) * P + r1] = d[3];
      }
    }
  }
  cp_async_wait<1>();  // the ring, which stays raw in shared memory (the next unit's copies may be in flight)
  if (tid < c1) dtq[tid] = dq;
  __syncthreads();  // 2

  // ---- 3. ring weights (warp 0); dots [B_ring; B_new] . C^T on tensor cores -----------------------------------
  if (warp == 0) m2_ring_weights(dtq, wq, scal, c1, Au, lane);
  {  // rows e < c1: G[e][t] = B_e . C_t (ring); rows c1 + s: BC[t][s] = B_s . C_t (new tokens)
    const int nrow = c1 + k, nmt = (nrow + 15) / 16, nnt = (k + 7) / 8;
    for (int nt = 0; nt < nnt; ++nt) {
      if (warp >= nmt) break;
      float cf[N / 4], cfl[N / 4];
      load_c_frag<TI, N, VI, kSplitI>(Craw, nt * 8 + g, k, q, cf, cfl);
      for (int mt = warp; mt < nmt; mt += NW) {
        const int r0 = mt * 16 + g, r1 = r0 + 8;
        auto brow = [&sm, c1, nrx, Bnew](int r) -> const uint4* {
          return r < c1 ? sm.raw_ring + nrx + r * NC : Bnew + (r - c1) * NC;
        };
        const uint4* b0 = brow(r0 < nrow ? r0 : 0);
        const uint4* b1 = brow(r1 < nrow ? r1 : 0);
        float d[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int gc = 0; gc < N / (4 * VI); ++gc) {
          float v0[VI], v1[VI];
          SV<TI>::unpack(b0[gc * 4 + q], v0);
          SV<TI>::unpack(b1[gc * 4 + q], v1);
#pragma unroll
          for (int e = 0; e < VI; ++e) {  // rows past the end: zeros (shared memory there is not data)
            v0[e] = r0 < nrow ? v0[e] : 0.f;
            v1[e] = r1 < nrow ? v1[e] : 0.f;
          }
#pragma unroll
          for (int e = 0; e < VI; e += 2)
            mma_acc<kSplitI, kSplitI>(d, v0[e], v1[e], v0[e + 1], v1[e + 1], cf[gc * VI + e], cf[gc * VI + e + 1],
                                      cfl[gc * VI + e], cfl[gc * VI + e + 1]);
        }
        const int t0 = nt * 8 + 2 * q;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int r = i < 2 ? r0 : r1, t = t0 + (i & 1);
          if (r < nrow && t < k) {
            if (r < c1) G[r * K1 + t] = d[i];
            else BC[t * K1 + (r - c1)] = d[i];
          }
        }
      }
    }
  }
  __syncthreads();  // 3

  // ---- 4. y, ring writes, fold, tree compaction, meta ------------------------------------------------------------
  m2_outputs<TI>(p, ct, sm, y, k, P, N, R, Au, rx0, rb0, s, u, tid, NT);
  const float eSQ = scal[0];
  if (ct.fold) {  // h_c = eSQ h0 + X^T B, X[e][p] = wq_e x_e[p]: per m-tile, all N / 8 n-tiles, ceil(c1 / 8) k-steps
    const TI* xr = reinterpret_cast<const TI*>(raw_ring);            // x_e[p] at e * P + p
    const TI* br = reinterpret_cast<const TI*>(raw_ring + nrx);      // B_e[n] at e * N + n
    for (int mt = warp; mt < MT; mt += NW) {
      const int r0 = mt * 16 + g, r1 = r0 + 8;
      float d[N / 8][4];
#pragma unroll
      for (int nt = 0; nt < N / 8; ++nt) d[nt][0] = d[nt][1] = d[nt][2] = d[nt][3] = 0.f;
      for (int ks = 0; ks * 8 < c1; ++ks) {
        const int e0 = ks * 8 + q, e1 = e0 + 4;
        const float w0 = e0 < c1 ? wq[e0] : 0.f, w1 = e1 < c1 ? wq[e1] : 0.f;
        const float a0 = e0 < c1 ? w0 * SV<TI>::to_f(xr[e0 * P + r0]) : 0.f;
        const float a1 = e0 < c1 ? w0 * SV<TI>::to_f(xr[e0 * P + r1]) : 0.f;
        const float a2 = e1 < c1 ? w1 * SV<TI>::to_f(xr[e1 * P + r0]) : 0.f;
        const float a3 = e1 < c1 ? w1 * SV<TI>::to_f(xr[e1 * P + r1]) : 0.f;
#pragma unroll
        for (int nt = 0; nt < N / 8; ++nt) {
          const float bv0 = e0 < c1 ? SV<TI>::to_f(br[e0 * N + nt * 8 + g]) : 0.f;
          const float bv1 = e1 < c1 ? SV<TI>::to_f(br[e1 * N + nt * 8 + g]) : 0.f;
          const float bh0 = kSplitI ? tf32_hi(bv0) : bv0, bh1 = kSplitI ? tf32_hi(bv1) : bv1;
          mma_acc<true, kSplitI>(d[nt], a0, a1, a2, a3, bh0, bh1, bv0 - bh0, bv1 - bh1);
        }
      }
#pragma unroll
      for (int nt = 0; nt < N / 8; ++nt) {
        const int col = nt * 8 + 2 * q, ch = col / VT, w = col % VT;  // the pair (col, col + 1) is in one chunk
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          const int r = hf ? r1 : r0;
          const T* hp = reinterpret_cast<const T*>(tile + r * CPR + (ch ^ tc_swz(r))) + w;
          const float v0 = fmaf(eSQ, SV<T>::to_f(hp[0]), d[nt][2 * hf]);
          const float v1 = fmaf(eSQ, SV<T>::to_f(hp[1]), d[nt][2 * hf + 1]);
          T* dst = st + r * p.st_p + col;
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
  m2_finish<TI>(p, ct, sm, k, P, N, rx0, rb0, s, u, tid, NT);
}

// y rows of a padding batch row (slot outside [0, S)): zeros; the cache is untouched. All NT threads call.
template <typename TI, int NT>
__device__ __forceinline__ void m2tc_padding(const VerifyStepParams& p, int b, int u, int tid) {
  constexpr int VI = SV<TI>::V;
  const int k = static_cast<int>(p.k), PC = static_cast<int>(p.P) / VI, lPC = ilog2(PC);
  TI* y = static_cast<TI*>(p.y) + (int64_t)b * p.y_b + (int64_t)u * p.y_h;
  for (int i = tid; i < k * PC; i += NT) {
    const int t = i >> lPC, c = i & (PC - 1);
    *reinterpret_cast<uint4*>(y + t * p.y_k + c * VI) = make_uint4(0u, 0u, 0u, 0u);
  }
}

// Persistent, pipelined variant (experimental, MK_VERIFY_KERNEL=tcp; docs/verify_step_design.md, "batch 64, k 4"):
// a grid of one block an SM walks the units blockIdx.x, + gridDim.x, ... with two shared-memory buffers; while a
// unit computes, the next unit's inputs and state tile are copied into the other buffer (cp.async, issued right
// after this unit's ring copies) and its scalars, D value and the slot of the unit after it load into registers,
// so a unit starts with its data in place. Units never share global state within a call ((slot, head) rows are
// private and slots distinct), so only the buffers need ordering: one barrier ends every unit, and the copies
// into a buffer start in the unit after the one that last read it.
template <typename T, typename TI, int N, int NW>
__global__ void __launch_bounds__(NW * 32, 1) verify_m2tcp_kernel(const VerifyStepParams p, int buf_words) {
  constexpr int NT = NW * 32, VI = SV<TI>::V;
  MK_VERIFY_DYN_SMEM(smem_f4);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int H = static_cast<int>(p.H), units = static_cast<int>(p.batch * p.H);
  const int k = static_cast<int>(p.k), P = static_cast<int>(p.P), R = static_cast<int>(p.R);
  const int nm = 2 + static_cast<int>(p.Kmax < kMaxK ? p.Kmax : kMaxK);
  const M2TcLayout lay = m2tc_layout(k, P, N, R, SV<T>::V, VI);
  auto buf = [&](int j) { return smem_f4 + (j & 1) * (buf_words / 4); };
  auto slot_of = [&](int unit) { return unit < units ? p.slots[(unit / H) * p.slots_stride] : -1; };
  auto valid = [&](int sl) { return sl >= 0 && sl < p.S; };
  // Copies and register loads of unit `unit` (slot sl) into buffer j; commits one cp.async group (maybe empty).
  M2Scalars nsc{};
  float nd = 0.f;
  auto issue = [&](int unit, int sl, int j) {
    if (valid(sl)) {  // slot_of gives -1 past the last unit
      const int bb = unit / H, uu = unit - bb * H;
      float* f = reinterpret_cast<float*>(buf(j));
      m2tc_issue_inputs<TI, N, NT>(p, reinterpret_cast<uint4*>(f + lay.raw_in), bb, uu, k, tid);
      m2tc_issue_tile<T, N, NW>(p, reinterpret_cast<uint4*>(f + lay.tile), sl, uu, warp, lane);
      nsc = m2_load_scalars<TI>(p, bb, uu, sl, tid, k, nm);
      nd = (p.D != nullptr && tid < P) ? p.D[uu * p.D_h + tid * p.D_p] : 0.f;
    }
    cp_async_commit();
  };
  int unit = blockIdx.x, s = slot_of(unit), s_next = slot_of(unit + static_cast<int>(gridDim.x));
  issue(unit, s, 0);
  for (int j = 0; unit < units; ++j) {
    const int next = unit + static_cast<int>(gridDim.x), after = next + static_cast<int>(gridDim.x);
    const int b = unit / H, u = unit - b * H;
    const M2Scalars sc = nsc;
    const float dv = nd;
    int s_after = -1;
    auto issue_next = [&] {
      s_after = slot_of(after);  // loads now, used one unit later
      issue(next, s_next, j + 1);
    };
    if (valid(s)) {
      m2tc_unit<T, TI, N, NW>(p, buf(j), b, u, s, sc, dv, issue_next);
    } else {
      issue_next();
      m2tc_padding<TI, NT>(p, b, u, tid);
    }
    __syncthreads();  // this unit's buffer is free for the unit after the next one
    unit = next;
    s = s_next;
    s_next = s_after;
  }
  cp_async_wait<0>();
}

// Whether verify_m2tcp_kernel serves these parameters: m2tc_fits with 8 warps (P >= 128, so P <= 256 threads),
// N 128; *smem: two buffers, *buf_words: one buffer's 32-bit words.
template <typename T>
inline bool m2tcp_fits(const VerifyStepParams& p, size_t* smem, int* buf_words) {
  size_t one = 0;
  if (p.N != 128 || p.P < 128 || !m2tc_fits<T>(p, &one)) return false;
  const int words = static_cast<int>((one / 4 + 3) / 4 * 4);  // 16-byte aligned buffers
  if (2 * static_cast<size_t>(words) * 4 > 220 * 1024) return false;
  *buf_words = words;
  *smem = 2 * static_cast<size_t>(words) * 4;
  return true;
}

}  // namespace verify_kernels
}  // namespace mamba_kernels
