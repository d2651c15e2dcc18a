// Mamba-2 SSM verify step for one draft token (k = 1) at small batch, fp32 state: a decode kernel (CUDA headers
// only, no torch). Same contract and cache format as the other verify kernels (docs/verify_step_design.md), with
// one policy difference that the format allows: it folds on every call (write-back is not deferred: the committed
// tokens are folded into `state` now and the new token is left pending at ring position 0), so the next call finds
// at most one pending token at ring position 0 and no committed ring tokens, and every input it needs, that
// token's ring row included, is known before any control word is read.
//
// Why: at batch 1 the deferred-fold kernels spend ~7 us a call in their dependent chain (control words -> ring
// rows -> dots -> three block barriers -> epilogue), against ~2.5 us of kernel for mamba_ssm's decode. Here a
// thread issues all its loads at once (one memory round trip), then folds, scores and writes: a handful of
// FMAs an element, two shuffles a row, no block barrier. The state is read and (when a token was committed)
// written once a call, which at small batch costs nothing (the grid does not fill the GPU's bandwidth).
//
// Block = 128 threads = 32 rows of one unit, 4 lanes a row, lane q holding the row's 16-byte state chunks q,
// q + 4, ... (the 4 lanes of a row read 64 contiguous bytes); B, C and the ring's B at the same columns. A unit's
// P / 32 blocks share its control words, ring_B row and ring_dt: every block reads them and one writer overwrites them
// once all have read (the default: the last warp to count itself in, kLast below; MK_VERIFY_DEC_LAST=0: rank 0 of a
// thread-block cluster, sm_90, after a cluster barrier). The general replay (committed ring tokens left by a
// deferred-fold call, or a path of several pending nodes) loads those ring rows one after another: correct, slower,
// once.
#pragma once
#include <cstdint>
#include <cstdlib>

#include "verify/verify_m2_steps.cuh"

namespace mamba_kernels {
namespace verify_kernels {

constexpr int kDecThreads = 128;  // a block: kDecThreads / LPR rows, LPR lanes a row
constexpr int64_t kDecMaxBatch = 65535;  // the decode kernels' grids are (units' blocks, batch rows)

// The kernel's parameters, in first-use order. Why not VerifyStepParams: kernel parameters are read through the
// constant cache, and the fields this kernel reads span 608 of its 776 bytes (~10 cache lines); on the H200 at b1 k1
// ~40% of the kernel's warp samples waited on those misses in the prologue (ncu, 2026-11-30). Here they are 432
// bytes, and what the slot check and the first loads need comes first.
struct M2DecParams {  // the first 64 bytes: all the slot check and the first load need
  const int32_t* slots;
  int64_t slots_stride;
  int32_t H, S, P;
  int32_t lcs;  // log2 of the blocks a unit (a unit's blocks are consecutive: unit = block >> lcs)
  void* y;
  int64_t y_b, y_h;
  int32_t R, G, Kmax;
  int32_t* meta;
  int64_t meta_s, meta_h, meta_i;
  const int32_t* accepted;
  int64_t accepted_stride;
  float* state;
  int64_t st_s, st_h, st_p;
  const void* B;
  int64_t B_b, B_g;
  const void* C;
  int64_t C_b, C_g;
  void* ring_x;
  int64_t rx_s, rx_h, rx_r;
  void* ring_B;
  int64_t rB_s, rB_h, rB_r;
  float* ring_dt;
  int64_t rdt_s, rdt_h, rdt_r;
  const void* x;
  int64_t x_b, x_h;
  const void* z;
  int64_t z_b, z_h;
  const float* D;
  int64_t D_h, D_p;
  const void* dt;
  int64_t dt_b, dt_h;
  const float* A;
  int64_t A_h;
  const float* dt_bias;
  int64_t dtb_h;
  float dt_min, dt_max;  // process_dt rounds VerifyStepParams' doubles to float too
  bool accepted_is_node, fold_all, dt_softplus;
};

// Host side: the compact copy of p (m2dec_fits(p, ...) holds, so the sizes fit int32).
inline M2DecParams m2dec_params(const VerifyStepParams& p, int lanes) {
  M2DecParams d;
  const int64_t blocks = p.P / (kDecThreads / lanes);  // 1, 2, 4 or 8 (m2dec_fits)
  d.lcs = 0;
  while ((int64_t{1} << d.lcs) < blocks) ++d.lcs;
  d.slots = p.slots; d.slots_stride = p.slots_stride;
  d.y = p.y; d.y_b = p.y_b; d.y_h = p.y_h;
  d.P = static_cast<int32_t>(p.P); d.H = static_cast<int32_t>(p.H); d.S = static_cast<int32_t>(p.S);
  d.R = static_cast<int32_t>(p.R); d.G = static_cast<int32_t>(p.G); d.Kmax = static_cast<int32_t>(p.Kmax);
  d.meta = p.meta; d.meta_s = p.meta_s; d.meta_h = p.meta_h; d.meta_i = p.meta_i;
  d.accepted = p.accepted; d.accepted_stride = p.accepted_stride;
  d.state = static_cast<float*>(p.state); d.st_s = p.st_s; d.st_h = p.st_h; d.st_p = p.st_p;
  d.B = p.B; d.B_b = p.B_b; d.B_g = p.B_g;
  d.C = p.C; d.C_b = p.C_b; d.C_g = p.C_g;
  d.ring_x = p.ring_x; d.rx_s = p.rx_s; d.rx_h = p.rx_h; d.rx_r = p.rx_r;
  d.ring_B = p.ring_B; d.rB_s = p.rB_s; d.rB_h = p.rB_h; d.rB_r = p.rB_r;
  d.ring_dt = p.ring_dt; d.rdt_s = p.rdt_s; d.rdt_h = p.rdt_h; d.rdt_r = p.rdt_r;
  d.x = p.x; d.x_b = p.x_b; d.x_h = p.x_h;
  d.z = p.z; d.z_b = p.z_b; d.z_h = p.z_h;
  d.D = p.D; d.D_h = p.D_h; d.D_p = p.D_p;
  d.dt = p.dt; d.dt_b = p.dt_b; d.dt_h = p.dt_h;
  d.A = p.A; d.A_h = p.A_h;
  d.dt_bias = p.dt_bias; d.dtb_h = p.dtb_h;
  d.dt_min = static_cast<float>(p.dt_min); d.dt_max = static_cast<float>(p.dt_max);
  d.accepted_is_node = p.accepted_is_node; d.fold_all = p.fold_all; d.dt_softplus = p.dt_softplus;
  return d;
}

// 4 consecutive input elements (8 or 16 bytes, aligned) -> fp32.
template <typename TI>
__device__ __forceinline__ void ld4(const TI* ptr, float (&o)[4]) {
  if constexpr (sizeof(TI) == 4) {
    const float4 v = *reinterpret_cast<const float4*>(ptr);
    o[0] = v.x; o[1] = v.y; o[2] = v.z; o[3] = v.w;
  } else {
    const uint2 w = *reinterpret_cast<const uint2*>(ptr);
    const float2 a = SV<TI>::up(w.x), b = SV<TI>::up(w.y);
    o[0] = a.x; o[1] = a.y; o[2] = b.x; o[3] = b.y;
  }
}
template <typename TI>
__device__ __forceinline__ void st4(TI* ptr, const float (&o)[4]) {
  if constexpr (sizeof(TI) == 4) {
    *reinterpret_cast<float4*>(ptr) = make_float4(o[0], o[1], o[2], o[3]);
  } else {
    TI v[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) v[i] = SV<TI>::from_f(o[i]);
    *reinterpret_cast<uint2*>(ptr) = *reinterpret_cast<const uint2*>(v);
  }
}

// kLast (the default since session 45; MK_VERIFY_DEC_LAST=0: the cluster kernel): no cluster. Each warp of the unit's
// blocks counts itself on the high byte of node 0's mask word (meta column 2) once its reads of the unit's shared rows
// are consumed, and the last of them writes ring_B row 0, ring_dt and the meta row, which resets that byte. No block
// waits for another: the cluster launch, its release arrive (a GPU-scope fence) and its wait are gone. Node 0's mask of
// a meta row with a pending node is 1 (every kernel writes it so); the byte is 0 between calls. H200, h 32 p = n = 128
// (session 45, two alternating rounds): kernel 3.2-3.4 us at b1 against 3.3 with the cluster, 6.3 at b4 against 7.1;
// graph-call means 4.1-4.5 / 8.6 us against 4.5-5.2 / 8.2-10.0 (16 lanes a row: 3.8 / 8.5 us kernel).
constexpr unsigned kDecArrival = 1u << 24;

// 0, computed from v by an instruction the compiler cannot see through: a value that a later instruction (the
// warp's arrival) depends on, so that v's load has returned before the arrival is issued.
__device__ __forceinline__ unsigned dec_after(unsigned v) {
#if defined(__CUDA_ARCH__)
  unsigned z;
  asm volatile("and.b32 %0, %1, 0;" : "=r"(z) : "r"(v));
  return z;
#else
  return v & 0u;
#endif
}

// Grid: (H * (P / ROWS), batch) blocks; clusters of P / ROWS blocks (x) when P > ROWS and not kLast (the launcher's
// job).
// kO32: base offsets in 32-bit arithmetic (eoff; offsets_fit32(p) holds; the last-arrival kernels only).
template <typename TI, int N, int LPR, bool kLast = false, bool kO32 = false>
__global__ void __launch_bounds__(kDecThreads) verify_m2dec_kernel(const M2DecParams p) {
  constexpr int J = N / (4 * LPR), ROWS = kDecThreads / LPR;  // lane q: columns (j * LPR + q) * 4 + [0, 4)
  const int tid = threadIdx.x, q = tid & (LPR - 1);
  // blockIdx = (unit's block, batch row): shifts only, no division, before the slot's load
  const int CS = 1 << p.lcs;
  const int u = static_cast<int>(blockIdx.x >> p.lcs), b = static_cast<int>(blockIdx.y);
  const int rank = static_cast<int>(blockIdx.x & (CS - 1));
  const bool owner = rank == 0;  // writes the unit's meta row, ring_B and ring_dt
  const int H = p.H, R = p.R;
  const int row = rank * ROWS + tid / LPR;
  const int gi = p.G == H ? u : u / (H / p.G);
  auto col = [q](int j) { return (j * LPR + q) * 4; };

  // ---- every load at once: the slot, the loads that do not need it (the new token's inputs, D, A, dt_bias), then
  // the slot's rows (control words, state, pending ring token 0). No branch on the slot before the loads: a padding
  // row (slot outside [0, S)) reads slot 0's rows (m2dec_shape_fits: S >= 1) and returns before it counts itself in
  // or writes anything but y; a padding branch here made the compiler sink the slot-free address math past it.
  const int s_raw = p.slots[eoff<kO32>(b, p.slots_stride)];
  const int accv = p.accepted[eoff<kO32>(b, p.accepted_stride)];
  const TI* Bp = static_cast<const TI*>(p.B) + eoff<kO32>(b, p.B_b, gi, p.B_g);
  const TI* Cp = static_cast<const TI*>(p.C) + eoff<kO32>(b, p.C_b, gi, p.C_g);
  float h[J][4], Bn[J][4], Cn[J][4], Br[J][4];
#pragma unroll
  for (int j = 0; j < J; ++j) {
    ld4<TI>(Bp + col(j), Bn[j]);
    ld4<TI>(Cp + col(j), Cn[j]);
  }
  const float xv = SV<TI>::to_f(static_cast<const TI*>(p.x)[eoff<kO32>(b, p.x_b, u, p.x_h, row, 1)]);
  const float zv = p.z != nullptr ? SV<TI>::to_f(static_cast<const TI*>(p.z)[eoff<kO32>(b, p.z_b, u, p.z_h, row, 1)]) : 0.f;
  const float dv = p.D != nullptr ? p.D[eoff<kO32>(u, p.D_h, row, p.D_p)] : 0.f;
  const float dtraw = SV<TI>::to_f(static_cast<const TI*>(p.dt)[eoff<kO32>(b, p.dt_b, u, p.dt_h)]);
  const float Au = p.A[eoff<kO32>(u, p.A_h)], dtb = p.dt_bias != nullptr ? p.dt_bias[eoff<kO32>(u, p.dtb_h)] : 0.f;
  const bool pad = s_raw < 0 || s_raw >= p.S;
  const int s = pad ? 0 : s_raw;
  TI* y = static_cast<TI*>(p.y) + eoff<kO32>(b, p.y_b, u, p.y_h, row, 1);
  const int32_t* mrow = p.meta + eoff<kO32>(s, p.meta_s, u, p.meta_h);
  const int m0 = mrow[0], m1 = mrow[p.meta_i];
  const int64_t rx0 = eoff<kO32>(s, p.rx_s, u, p.rx_h), rb0 = eoff<kO32>(s, p.rB_s, u, p.rB_h);
  const int64_t rd0 = eoff<kO32>(s, p.rdt_s, u, p.rdt_h);
  const TI* rxp = static_cast<const TI*>(p.ring_x) + rx0 + row;
  const TI* rbp = static_cast<const TI*>(p.ring_B) + rb0;
  float* st = p.state + eoff<kO32>(s, p.st_s, u, p.st_h, row, p.st_p);
#pragma unroll
  for (int j = 0; j < J; ++j) {
    const float4 v = *reinterpret_cast<const float4*>(st + col(j));
    h[j][0] = v.x; h[j][1] = v.y; h[j][2] = v.z; h[j][3] = v.w;
    ld4<TI>(rbp + col(j), Br[j]);
  }
  const float xr0 = SV<TI>::to_f(*rxp), dtr0 = p.ring_dt[rd0];

  // ---- control words (as m2_control), commit the accepted path into h ------------------------------------
  // Node 0's mask word is 1 in every valid meta row (its parent can only be the committed state), so the common
  // case (node 0 accepted) reads no mask word (nor, with kLast, the arrival byte beside it). Reading it cost a third
  // memory round trip: ptxas issued its load only where the accepted node was known to be >= 0, after m0, m1 and
  // the accepted count had returned.
  const M2Ctl ct = m2_control_words(
      p, m0, m1, [&](int a) { return a == 0 ? 1 : mrow[(2 + a) * p.meta_i]; }, accv, R, 1);
  const int c = ct.c, c1 = ct.c1;
  const unsigned path = ct.path;
  auto commit = [&](float dte, float xe, const float (&Be)[J][4]) {  // h = exp(dt A) h + dt x B
    const float da = __expf(dte * Au), w = dte * xe;
#pragma unroll
    for (int j = 0; j < J; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) h[j][e] = fmaf(da, h[j][e], w * Be[j][e]);
  };
  if (c == 0 && (path & ~1u) == 0u) {  // the common case: at most pending token 0, already loaded
    if (path != 0u) commit(dtr0, xr0, Br);
  } else {  // committed ring tokens [0, c), then the path's nodes at c + node, read one after another
    for (int e = 0; e < c1; ++e) {
      const int pos = e < c ? e : c + nth_set_bit(path, e - c);
      float Be[J][4];
#pragma unroll
      for (int j = 0; j < J; ++j) ld4<TI>(rbp + (int64_t)pos * p.rB_r + col(j), Be[j]);
      commit(p.ring_dt[rd0 + (int64_t)pos * p.rdt_r], SV<TI>::to_f(rxp[(int64_t)pos * p.rx_r]), Be);
    }
  }
  // Every read of the unit's meta row, ring_B and ring_dt is done: rank 0 may overwrite them after its wait.
  if (pad) {  // padding row: y = 0, cache untouched; every block of the unit returns here, before any arrival
    if (q == 0) *y = SV<TI>::from_f(0.f);
    return;
  }
  unsigned arrived = 0;  // kLast: the warp's arrival order on the unit (lane 0's, then every lane's)
  if constexpr (kLast) {
    unsigned dep = static_cast<unsigned>(m0 ^ m1) ^ __float_as_uint(xr0) ^ __float_as_uint(dtr0);
#pragma unroll
    for (int j = 0; j < J; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) dep ^= __float_as_uint(Br[j][e]);
    // every lane's loads have returned (its dep is read by the shuffles) before lane 0 counts the warp in
    dep = dec_after(dep);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) dep |= __shfl_xor_sync(0xffffffffu, dep, off);
    if ((tid & 31) == 0) arrived = atomicAdd(reinterpret_cast<unsigned*>(const_cast<int32_t*>(mrow) + 2 * p.meta_i),
                                             kDecArrival + dep);
  } else if (CS > 1) {
    cluster_arrive();
  }

  // ---- fold (the committed state), score the new token -----------------------------------------------------
  if (c1 > 0) {
#pragma unroll
    for (int j = 0; j < J; ++j) *reinterpret_cast<float4*>(st + col(j)) = make_float4(h[j][0], h[j][1], h[j][2], h[j][3]);
  }
  const float dtn = process_dt(dtraw + dtb, p);
  float hc = 0.f, bc = 0.f;  // h . C and B . C over this lane's columns
#pragma unroll
  for (int j = 0; j < J; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      hc = fmaf(h[j][e], Cn[j][e], hc);
      bc = fmaf(Bn[j][e], Cn[j][e], bc);
    }
#pragma unroll
  for (int off = 1; off < LPR; off <<= 1) {
    hc += __shfl_xor_sync(0xffffffffu, hc, off);
    bc += __shfl_xor_sync(0xffffffffu, bc, off);
  }
  float out = fmaf(__expf(dtn * Au), hc, fmaf(dtn * xv, bc, dv * xv));
  if (p.z != nullptr) out *= silu_f(zv);
  if (q == 0) {
    *y = SV<TI>::from_f(out);
    *const_cast<TI*>(rxp) = SV<TI>::from_f(xv);  // new token -> ring position 0 (x is exact in TI)
  }
  bool writer;  // the lanes that write the unit's ring_B row 0 (LPR lanes of one row), ring_dt and meta row
  if constexpr (kLast) {
    // the unit's last warp to arrive (CS blocks x 4 warps) writes; its first LPR lanes hold the new B row
    arrived = __shfl_sync(0xffffffffu, arrived, 0);
    writer = (arrived >> 24) == static_cast<unsigned>(CS * (kDecThreads / 32) - 1) && (tid & 31) < LPR;
  } else {
    if (CS > 1) cluster_wait();  // a lone block (no cluster launch): its own threads' reads before row 0's writes
    else __syncthreads();
    writer = owner && tid < LPR;
  }
  if (writer) {  // row 0's lanes (kLast: the last warp's first row): the new token's B row, dt, the meta row [0, 1, 1]
#pragma unroll
    for (int j = 0; j < J; ++j) st4<TI>(const_cast<TI*>(rbp) + col(j), Bn[j]);
    if (q == 0) {
      p.ring_dt[rd0] = dtn;
      int32_t* mw = p.meta + eoff<kO32>(s, p.meta_s, u, p.meta_h);
      mw[0] = 0;
      mw[p.meta_i] = 1;
      mw[2 * p.meta_i] = 1;
    }
  }
}

// Whether the decode kernels' geometry serves these parameters (any k): fp32 state, the Mamba-2 layout with 16-byte
// aligned rows (m2_io_fits), N 64 or 128, P = (128 / lpr rows a block) x {1, 2, 4, 8} blocks (lpr 16, the
// last-arrival lab's: also 16 blocks); clusters (sm_90) unless one block holds P (the lab passes true: it needs none).
inline bool m2dec_shape_fits(const VerifyStepParams& p, bool clusters, int lpr) {
  const int VI = p.in_dtype == DType::kFloat32 ? 4 : 8;
  if (p.state_dtype != DType::kFloat32 || !m2_io_fits(p, 4, VI)) return false;
  if (!(p.N == 64 || p.N == 128) || p.N < 4 * lpr) return false;
  if (p.S > INT32_MAX || p.H > INT32_MAX || p.G > INT32_MAX || p.R > INT32_MAX) return false;  // M2DecParams' int32
  // a padding row reads slot 0 (S >= 1); batch rows are blockIdx.y
  if (p.S < 1 || p.batch > kDecMaxBatch) return false;
  const int64_t rows = kDecThreads / lpr;
  if (!(p.P == rows || p.P == 2 * rows || p.P == 4 * rows || p.P == 8 * rows || (lpr == 16 && p.P == 16 * rows)))
    return false;
  return clusters || p.P == rows;
}
// Whether verify_m2dec_kernel serves these parameters: one token, the decode geometry.
inline bool m2dec_fits(const VerifyStepParams& p, bool clusters, int lpr) {
  return p.k == 1 && m2dec_shape_fits(p, clusters, lpr);
}

// verify_m2dec_kernel<.., true> (the default): no cluster (the unit's last warp writes its shared rows), so any
// device runs it, clusters or not. MK_VERIFY_DEC_LAST=0 (environment, read at every launch) keeps the cluster kernel.
inline bool m2dec_last() {
  const char* e = std::getenv("MK_VERIFY_DEC_LAST");
  return !(e != nullptr && e[0] == '0');
}

// Lanes a row: 8 (16 rows a block) where a unit's P / 16 blocks fit one cluster (P <= 128), else 4 (32 rows).
// H200, h 32 p 128 n 128, b1: 3.41 us kernel time with 8 lanes, 3.64 with 4 (b4: 7.58 / 7.79).
// MK_VERIFY_DEC_LANES=4|8|16 (environment, read once) forces it (benchmarks, tests); 16 (8 rows a block, up to 16
// blocks a unit, 8 states a lane; slower: 3.8 us at b1) only for the one-token last-arrival kernel (last), else 8.
inline int m2dec_lanes(int64_t P, bool last = false) {
  static const int forced = [] {
    const char* e = std::getenv("MK_VERIFY_DEC_LANES");
    const int v = e != nullptr ? std::atoi(e) : 0;
    return v == 4 || v == 8 || v == 16 ? v : 0;
  }();
  if (forced == 16) return last ? 16 : 8;
  return forced != 0 ? forced : (P <= 128 ? 8 : 4);
}

}  // namespace verify_kernels
}  // namespace mamba_kernels
