// Mamba-1 selective scan forward, "state-lane" kernel (CUDA headers only): the fast path for n = 16 with
// variable B and C, packed sequences too (the Mamba-1 layers of the distilled hybrids; a block walks one batch row
// or one packed sequence: LaneSeq). Included at the end of
// selective_scan_fwd_kernel.cuh (it uses that file's helpers); launch_selective_scan_fwd picks it.
//
// Why a second forward: the time-parallel kernel (selective_scan_fwd_kernel) spends ~9.3 instructions a
// (token, state) and a 5-level shuffle scan a state and a 512-token tile, and measured 0.39 ms at b2 d4096 l4096
// (39% issue efficiency: its scan chains leave the schedulers idle). Here no scan: each lane owns kS states of
// one channel and walks time in order (h_t = a_t h_{t-1} + b_t: a 4-cycle FFMA chain a state), so a (token,
// state) costs one MUFU.EX2 and four FP32 ops; what a scan did for parallelism comes from the b * d * 16 / kS
// lanes. A block holds kCh channels of one (batch row, B/C group) and walks the sequence in tiles of kTT = 8 kL
// tokens (kL = 16 / kS lanes a channel), in two phases separated by block barriers:
//   P2 (recurrence): lane (channel, j) runs its kS states over the tile from fp32 tiles in shared memory
//       (steps dt, dt u of its channel; B and C rows of its states: float4 reads, conflict-free) and writes
//       its partial y (sum over its kS states of C h) to a [lane][token] tile;
//   P3 + P1: every thread sums the kL partials of 8 tokens of one channel, adds D u, gates by silu(z) and
//       stores out; then converts the NEXT tile's inputs, whose global loads it issued before P2 (so their
//       latency hides behind the recurrence), into the step / B / C tiles (softplus once per (token, channel)).
// Tokens past the sequence end get dt = 0 (a = 1, b = 0: the state is unchanged, so after the last tile the
// lanes hold the last state). The training checkpoints (the state entering each 2^ckpt_log2-step chunk) are
// written at tile starts, and with 64-token tiles (2 states a lane) also at token 32: the launcher takes this kernel
// when 2^ckpt_log2 is a multiple of 32 (32 where the state-lane backward serves, else 256).
// H200 lab (fwd ms, b2 d4096 l4096 / b8 d2048 l2048 / b1 d8192 l8192; the time-parallel kernel 0.389 / 0.392 /
// 0.763; lab runs at 64b31e5 .. 96f0c45): 2 states a lane in 4-warp blocks 0.357 / 0.354 / 0.703 (2 warps 0.477 /
// 0.412 / 0.944, 8 warps 0.365 / 0.362 / 0.717); 4 states a lane in 4-warp blocks 0.370 / 0.296 / 0.724 (8 warps
// 0.396 / 0.307 / 0.784, 16 warps 0.660 / 0.334 / 1.305): 4 states a lane cost fewer instructions a (token,
// state) but leave too few lanes to hide latency below b * d = 16384. 1 state a lane 0.496 / 0.492. Bench after the
// load / epilogue set-up moved out of the tile loop (56c96c6): 0.356 / 0.285 / 0.698. Warp-private
// tiles (each warp loading its own B / C, no block barrier): slower (4 states 0.379 / 0.321, 2 states 0.458 /
// 0.456): the B / C conversion per warp costs more than the barriers. Barrier placement (the epilogue before the
// first barrier; double-buffered B / C tiles with one barrier a tile): within 2% (lab run 4, 47c2498), removed.
// Session 23 (H200 lab 2026-12-02; ncu at 56c96c6 had L1 / shared memory 90% busy, the kernel's limit): lanes placed
// for pair-uniform shared reads (MK_SS_LANE_PAIRMAP) 0.350 / 0.281 / 0.688 -> 0.310 / 0.265 / 0.608 (ncu: L1 73%,
// IPC 2.07 -> 2.40); whole aligned tiles loaded without per-load tests 0.310 / 0.267 / 0.616 -> 0.303 / 0.260 /
// 0.595; conflict-free B / C tile stores: equal within noise (kept); 4 states a lane from b * d = 8192: 0.297 at
// b2 d4096, 0.586 at b1 d8192. The warp-specialised kernel at 4 states a lane (kSpec, below): 0.258 / 0.257 / 0.503
// (bench).
#pragma once

// ---- Tuning knobs (preprocessor, -D...; defaults = the production build; timed by the lab variants lane_*)
//   MK_SS_FWD_LANE          1: launch_selective_scan_fwd takes this kernel where it applies (1); 0: never
//   MK_SS_LANE_WARPS2       warps per block with 2 states a lane (4)
//   MK_SS_LANE_WARPS4       warps per block with 4 states a lane (4)
//   MK_SS_LANE_S4_MIN_BD    4 states a lane when batch * dim >= this (8192: 256 blocks of 32 channels; 16384
//                           before the pair map: H200 lab 2026-12-02 run 2, b2 d4096 0.297 ms with 4 states a
//                           lane against 0.303 with 2, b1 d8192 0.586 against 0.595)
//   MK_SS_LANE_SPEC         1: with 4 states a lane, the warp-specialised kernel (LaneBuf: recurrence warps and load /
//                           epilogue warps on two buffers of tiles) (1; H200 bench 2026-12-02 at e9d3475: fwd
//                           0.258 / 0.257 / 0.503 ms against 0.298 / 0.257 / 0.583). Measured and reverted
//                           (d39a1c5): the recurrence warps summing each channel's lane partials by shuffles,
//                           E reading one y row a channel: 0.271 / 0.268 / 0.529 (the recurrence warps are the
//                           limit, the XU pipe's; E's extra work is not). Measured and not kept (lab 2026-12-02
//                           run 1 at 8656332, with the one-MUFU softplus): E issuing tile t + 3's loads right
//                           after handing over t + 2: 0.246 / 0.246 / 0.479 against 0.247 / 0.243 / 0.483 (equal);
//                           and also computing t + 2's steps before waiting for R (128 registers): 0.250 /
//                           0.251 / 0.487 (slower). Decays on the FMA pipe (poly_exp2) for 1 or 2 of a recurrence
//                           step's 16 (run 2 at 96d9c93, knob since removed): 0.250 / 0.248 / 0.488 and 0.257 /
//                           0.261 / 0.501 against 0.246 / 0.245 / 0.483 (slower: issue is as busy as the XU pipe)
//   MK_SS_LANE_UNROLL       unroll of the recurrence's 4-token steps (4)
//   MK_SS_LANE_PAIRMAP      1: lanes (channel, j) placed so that lanes n and n^1 share a channel and lanes n and
//                           n^2 share j (LaneCfg::role): the step tiles' and the B / C tiles' 16-byte reads are
//                           then pair-uniform, which the shared-memory pipe serves in half the wavefronts
//                           (ncu at 56c96c6: L1 / shared 90% busy, the kernel's limit); 0: lane = channel kL + j
//   MK_SS_LANE_PF           1: the recurrence reads the next 4-token step's dt / dt u before the current step's
//                           math (software pipelining; ncu: the step's first FMUL waiting on its dt load was the
//                           top stall) (1; H200 lab 2026-11-30 run 1: 0.348 / 0.281 / 0.688 ms against 0.356 /
//                           0.285 / 0.701 with 0)
// Environment (read once per process by the launcher): MK_SS_FWD_KERNEL=scan forces the time-parallel kernel,
// MK_SS_LANE_S=2|4 the states per lane, MK_SS_LANE_SPEC=0|1 the warp-specialised kernel at 4 states a lane.
#ifndef MK_SS_FWD_LANE
#define MK_SS_FWD_LANE 1
#endif
#ifndef MK_SS_LANE_WARPS2
#define MK_SS_LANE_WARPS2 4
#endif
#ifndef MK_SS_LANE_WARPS4
#define MK_SS_LANE_WARPS4 4
#endif
#ifndef MK_SS_LANE_PF
#define MK_SS_LANE_PF 1
#endif
#ifndef MK_SS_LANE_S4_MIN_BD
#define MK_SS_LANE_S4_MIN_BD 8192
#endif
#ifndef MK_SS_LANE_PAIRMAP
#define MK_SS_LANE_PAIRMAP 1
#endif
#ifndef MK_SS_LANE_SPEC
#define MK_SS_LANE_SPEC 1
#endif
#ifndef MK_SS_LANE_UNROLL
#define MK_SS_LANE_UNROLL 4
#endif

#include <cstdlib>
#include <cstring>

#include "common/named_barrier.h"
#include "common/smem_optin.h"
#include "selective_scan/selective_scan_lane_common.cuh"  // LaneCfg, Raw8, LaneSeq, LaneBCPieces (uses the knobs above)

namespace mamba_kernels {
namespace ss {

constexpr int kLaneUnroll = MK_SS_LANE_UNROLL;  // (a macro is not expanded in #pragma unroll)

// kSpec (warp-specialised): the block has kThreads recurrence threads (R) and kThreads load / epilogue threads
// (E); E converts tile t + 1 and finishes tile t - 1 while R runs tile t, through two buffers of tiles and the
// named barriers kFull + buffer (E -> R: the buffer's inputs are in, its partial y read) and kDone + buffer
// (R -> E: its inputs read, its partial y written). Why: the recurrence is MUFU-bound (one MUFU.EX2 a (token,
// state), the XU pipe's 16 a cycle an SM) and the epilogue FP32 / integer bound; in one role per warp the two
// phases alternate behind block barriers and add up (ncu at b2 d4096, 4 states a lane: XU 56% of peak, 1.9
// warps a scheduler). A buffer: the B / C tiles, steps dt and dt u, partial y, and (kSpec) D u and z.
template <int kS, bool kSpec>
struct LaneBuf {
  using Cfg = LaneCfg<kS>;
  static constexpr int kFloats = (2 * kLaneN + (kSpec ? 4 : 2) * Cfg::kCh + Cfg::kThreads) * Cfg::kTP;
  static constexpr int kBlockThreads = (kSpec ? 2 : 1) * Cfg::kThreads;
  static constexpr int kSmemBytes = (kSpec ? 2 : 1) * kFloats * 4;  // the kernel's buffers (kSpec: two)
  static constexpr int kFull = 1, kDone = 3;  // named barrier ids (+ buffer 0 / 1)
  float *bc, *dt, *du, *y, *dv, *z;
  __device__ __forceinline__ explicit LaneBuf(float* base) {
    bc = base;                             // B rows 0..15, C rows 16..31: [32][kTP]
    dt = bc + 2 * kLaneN * Cfg::kTP;       // [kCh][kTP]
    du = dt + Cfg::kCh * Cfg::kTP;         // [kCh][kTP]
    y = du + Cfg::kCh * Cfg::kTP;          // [kThreads][kTP]
    dv = y + Cfg::kThreads * Cfg::kTP;     // [kCh][kTP] (kSpec)
    z = dv + Cfg::kCh * Cfg::kTP;          // [kCh][kTP] (kSpec)
  }
};

template <typename in_t, int kS, bool kSpec>
__global__ void __launch_bounds__(LaneBuf<kS, kSpec>::kBlockThreads, LaneCfg<kS>::kMinBlocks / (kSpec ? 2 : 1))
selective_scan_fwd_lane_kernel(const SelectiveScanParams p) {
  using Cfg = LaneCfg<kS>;
  using Buf = LaneBuf<kS, kSpec>;
  extern __shared__ float4 smem_f4[];
  float* const smem = reinterpret_cast<float*>(smem_f4);
  auto bufs = [&](int bi) { return Buf(smem + bi * Buf::kFloats); };
  static_assert(Buf::kFull == 1 && Buf::kDone == 3, "barrier ids 1..4 (named_bar_1to4)");
  auto bar_sync = [](int id) { named_bar_1to4<Buf::kBlockThreads, true>(id); };
  auto bar_arrive = [](int id) { named_bar_1to4<Buf::kBlockThreads, false>(id); };

  // kSpec: threads kThreads.. are E; tid is the thread's index in its group (0..kThreads-1 in both), which sets its
  // (channel, j) role
  const bool is_e = kSpec && int(threadIdx.x) >= Cfg::kThreads;
  const int tid = is_e ? int(threadIdx.x) - Cfg::kThreads : int(threadIdx.x);
  const LaneSeq sq(p, reinterpret_cast<int*>(smem));
  const int64_t b = sq.b, grp = blockIdx.y;
  const int64_t dpg = p.dim / gridDim.y;
  const int64_t cbase = grp * dpg, cblk = int64_t(blockIdx.x) * Cfg::kCh;
  const int64_t L = sq.len;  // the walk's tokens; rows are offset by sq.s0
  const int n = kLaneN;
  // ---- recurrence role: lane (ch2, j) owns states j*S .. j*S + S - 1 of channel ch2
  int ch2, j;
  Cfg::role(tid, ch2, j);
  const bool c2_ok = cblk + ch2 < dpg;
  const int64_t c2 = cbase + (c2_ok ? cblk + ch2 : 0);  // idle lanes past the group compute on its first channel
  float A2[Cfg::kS], h[Cfg::kS];
#pragma unroll
  for (int s = 0; s < Cfg::kS; ++s) {
    const int st = j * Cfg::kS + s;
    A2[s] = static_cast<const float*>(p.A)[c2 * p.A_d_stride + st] * kLog2e;
    h[s] = p.initial_state ? static_cast<const float*>(p.initial_state)[(sq.slot * p.dim + c2) * n + st] : 0.f;
  }

  // ---- load / epilogue role: the thread's item is tokens 8 j .. 8 j + 7 of every tile of its own channel c2
  // (kTT = 8 kL), and kBCItems 8-token pieces of B / C rows; pointers, per-channel constants and alignment are
  // fixed for the whole walk (only t0 moves), so they are set up once here.
  const int64_t tj = 8 * j, s0 = sq.s0;
  const in_t* __restrict__ dl_row = static_cast<const in_t*>(p.delta) + b * p.delta_batch_stride + c2 * p.delta_d_stride + s0 + tj;
  const in_t* __restrict__ u_row = static_cast<const in_t*>(p.u) + b * p.u_batch_stride + c2 * p.u_d_stride + s0 + tj;
  const in_t* __restrict__ z_row = p.z ? static_cast<const in_t*>(p.z) + b * p.z_batch_stride + c2 * p.z_d_stride + s0 + tj : nullptr;
  in_t* __restrict__ out_row = static_cast<in_t*>(p.out) + b * p.out_batch_stride + c2 * p.out_d_stride + s0 + tj;
  const float bias = p.delta_bias ? static_cast<const float*>(p.delta_bias)[c2] : 0.f;
  const float Dv = p.D ? static_cast<const float*>(p.D)[c2] : 0.f;
  LaneBCPieces<in_t, Cfg> bcp;  // the thread's kBCItems 8-token pieces of B / C rows
  bcp.init(p, b, s0, grp, tid);
  Raw8<in_t> rdt, ru, rz;                      // the next tile's inputs (and bcp's)
  float Du_cur[8], z_cur[8];                   // the tile's D u, z
  // Whether every input row of this thread starts 16-byte aligned (tiles move by kTT elements, a multiple of 16
  // bytes, so it holds at every tile): whole tiles then load without per-load range and alignment tests.
  const bool rows_aligned = bcp.aligned && ((reinterpret_cast<uintptr_t>(dl_row) | reinterpret_cast<uintptr_t>(u_row) |
                                             reinterpret_cast<uintptr_t>(z_row)) & 15) == 0;
  auto issue_loads = [&](int64_t t0) {
    const bool fast = rows_aligned && t0 + Cfg::kTT <= L;
    if (fast) {
      rdt.load_vec(dl_row + t0);
      ru.load_vec(u_row + t0);
      if (z_row) rz.load_vec(z_row + t0);
    } else {
      const int nv = clamp_nv(L - t0 - tj);
      rdt.load(dl_row + t0, nv);
      ru.load(u_row + t0, nv);
      if (z_row) rz.load(z_row + t0, nv);
    }
    bcp.issue(t0, L, fast);
  };
  // The loaded inputs -> this thread's piece of its channel's step tiles (dt, dt u); D u and z kept for the
  // epilogue (in registers; kSpec: in the buffer). Tokens past the end (last tile only) get dt = 0: a = 1, b = 0.
  auto convert_steps = [&](int64_t t0, const Buf& bf) {
    float dt[8], dtu[8];
    // the softplus test outside the loop (tested per element, it cost a branch and a constant move each)
    if (p.delta_softplus) {
#pragma unroll
      for (int i = 0; i < 8; ++i) dt[i] = softplus_f(rdt[i] + bias);
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) dt[i] = rdt[i] + bias;
    }
    if (t0 + Cfg::kTT > L) {
      const int nv = clamp_nv(L - t0 - tj);
#pragma unroll
      for (int i = 0; i < 8; ++i)
        if (i >= nv) dt[i] = 0.f;
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const float uu = ru[i];
      dtu[i] = dt[i] * uu;
      Du_cur[i] = Dv * uu;
      z_cur[i] = z_row ? rz[i] : 0.f;
    }
    // 8 floats of the thread's channel row at tokens tj.. of a [kCh][kTP] tile: two 16-byte stores
    auto store8 = [&](float* tile, const float (&v)[8]) {
      float4* pr = reinterpret_cast<float4*>(tile + ch2 * Cfg::kTP + tj);
      pr[0] = make_float4(v[0], v[1], v[2], v[3]);
      pr[1] = make_float4(v[4], v[5], v[6], v[7]);
    };
    if constexpr (kSpec) {  // kept for the epilogue two tiles later: in the buffer, by the same thread
      store8(bf.dv, Du_cur);
      store8(bf.z, z_cur);
    }
    store8(bf.dt, dt);
    store8(bf.du, dtu);
  };
  // The loaded B / C pieces -> the B / C tiles.
  auto convert_bc = [&](const Buf& bf) { bcp.store(bf.bc); };
  // y of the thread's 8 tokens: the sum of its channel's kL partials (in a fixed summation order)
  // + D u, gated by silu(z).
  auto epilogue = [&](int64_t t0, const Buf& bf) {
    const int nv = clamp_nv(L - t0 - tj);
    if (!c2_ok || nv == 0) return;
    if constexpr (kSpec) {
      const float4* pv = reinterpret_cast<const float4*>(bf.dv + ch2 * Cfg::kTP + tj);
      const float4* pz = reinterpret_cast<const float4*>(bf.z + ch2 * Cfg::kTP + tj);
      const float4 v0 = pv[0], v1 = pv[1], z0 = pz[0], z1 = pz[1];
      Du_cur[0] = v0.x; Du_cur[1] = v0.y; Du_cur[2] = v0.z; Du_cur[3] = v0.w;
      Du_cur[4] = v1.x; Du_cur[5] = v1.y; Du_cur[6] = v1.z; Du_cur[7] = v1.w;
      z_cur[0] = z0.x; z_cur[1] = z0.y; z_cur[2] = z0.z; z_cur[3] = z0.w;
      z_cur[4] = z1.x; z_cur[5] = z1.y; z_cur[6] = z1.z; z_cur[7] = z1.w;
    }
    float y[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) y[i] = Du_cur[i];
    // with MK_SS_LANE_PAIRMAP the channels of lane bit 1 = 1 read their partials in the order q ^ 1: the two
    // channels of a quarter-warp then read rows of opposite bank parity (else 2-way conflicts)
    const int q_flip = MK_SS_LANE_PAIRMAP != 0 ? (tid >> 1) & 1 : 0;
#pragma unroll
    for (int q = 0; q < Cfg::kL; ++q) {
      const float4* pr = reinterpret_cast<const float4*>(bf.y + Cfg::thread_of(ch2, q ^ q_flip) * Cfg::kTP + tj);
      const float4 a = pr[0], e = pr[1];
      y[0] += a.x; y[1] += a.y; y[2] += a.z; y[3] += a.w;
      y[4] += e.x; y[5] += e.y; y[6] += e.z; y[7] += e.w;
    }
    if (z_row)
#pragma unroll
      for (int i = 0; i < 8; ++i) y[i] *= silu_f(z_cur[i]);
    store_run<8>(out_row + t0, nv, y);
  };

  float* __restrict__ states = static_cast<float*>(p.states);
  const int64_t ck_mask = (int64_t(1) << p.ckpt_log2) - 1;
  // P2 on one tile: the checkpoint (if due), then the recurrence, 4 tokens a step (float4 reads of the step and
  // B / C tiles), the lane's partial y into the buffer's row tid.
  auto recurrence = [&](int64_t t0, const Buf& bf) {
    if (states != nullptr && c2_ok && (t0 & ck_mask) == 0) {
      float* st = states + ((b * p.dim + c2) * p.states_n_chunks + sq.ck_base + (t0 >> p.ckpt_log2)) * n + j * Cfg::kS;
#pragma unroll
      for (int s = 0; s < Cfg::kS; ++s) st[s] = h[s];
    }
    const float* dtr = bf.dt + ch2 * Cfg::kTP;
    const float* dur = bf.du + ch2 * Cfg::kTP;
    float* yr = bf.y + tid * Cfg::kTP;
    float4 dt4, du4;
    if constexpr (MK_SS_LANE_PF != 0) {
      dt4 = *reinterpret_cast<const float4*>(dtr);
      du4 = *reinterpret_cast<const float4*>(dur);
    }
    auto step = [&](int tq) {
      float4 dt4n, du4n;  // the next step's (MK_SS_LANE_PF), or this step's read here
      if constexpr (MK_SS_LANE_PF != 0) {
        const int tn = tq + 4 < Cfg::kTT ? tq + 4 : tq;
        dt4n = *reinterpret_cast<const float4*>(dtr + tn);
        du4n = *reinterpret_cast<const float4*>(dur + tn);
      } else {
        dt4 = *reinterpret_cast<const float4*>(dtr + tq);
        du4 = *reinterpret_cast<const float4*>(dur + tq);
      }
      const float dt[4] = {dt4.x, dt4.y, dt4.z, dt4.w}, du[4] = {du4.x, du4.y, du4.z, du4.w};
      float Bt[Cfg::kS][4], Ct[Cfg::kS][4];
#pragma unroll
      for (int s = 0; s < Cfg::kS; ++s) {
        const float4 bq = *reinterpret_cast<const float4*>(bf.bc + (s * Cfg::kL + j) * Cfg::kTP + tq);
        const float4 cq = *reinterpret_cast<const float4*>(bf.bc + (kLaneN + s * Cfg::kL + j) * Cfg::kTP + tq);
        Bt[s][0] = bq.x; Bt[s][1] = bq.y; Bt[s][2] = bq.z; Bt[s][3] = bq.w;
        Ct[s][0] = cq.x; Ct[s][1] = cq.y; Ct[s][2] = cq.z; Ct[s][3] = cq.w;
      }
      float yp[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        yp[k] = 0.f;
#pragma unroll
        for (int s = 0; s < Cfg::kS; ++s) {
          const float a = fast_exp2(dt[k] * A2[s]);
          h[s] = fmaf(a, h[s], du[k] * Bt[s][k]);
          yp[k] = fmaf(Ct[s][k], h[s], yp[k]);
        }
      }
      *reinterpret_cast<float4*>(yr + tq) = make_float4(yp[0], yp[1], yp[2], yp[3]);
      if constexpr (MK_SS_LANE_PF != 0) {
        dt4 = dt4n;
        du4 = du4n;
      }
    };
    if constexpr (Cfg::kTT > 32) {  // 64-token tiles: the state at token 32 is a checkpoint too when they are 32 apart
#pragma unroll kLaneUnroll
      for (int tq = 0; tq < 32; tq += 4) step(tq);
      if (states != nullptr && c2_ok && ((t0 + 32) & ck_mask) == 0 && t0 + 32 < L) {
        float* st = states + ((b * p.dim + c2) * p.states_n_chunks + sq.ck_base + ((t0 + 32) >> p.ckpt_log2)) * n + j * Cfg::kS;
#pragma unroll
        for (int s = 0; s < Cfg::kS; ++s) st[s] = h[s];
      }
#pragma unroll kLaneUnroll
      for (int tq = 32; tq < Cfg::kTT; tq += 4) step(tq);
    } else {
#pragma unroll kLaneUnroll
      for (int tq = 0; tq < Cfg::kTT; tq += 4) step(tq);
    }
  };

  if constexpr (!kSpec) {
    if (L > 0) {
      issue_loads(0);
      convert_steps(0, bufs(0));
      convert_bc(bufs(0));
    }
    __syncthreads();
    for (int64_t t0 = 0; t0 < L; t0 += Cfg::kTT) {
      const bool more = t0 + Cfg::kTT < L;
      if (more) issue_loads(t0 + Cfg::kTT);  // in flight during the recurrence
      recurrence(t0, bufs(0));
      __syncthreads();  // partial y complete; the step / B / C tiles free
      epilogue(t0, bufs(0));
      if (more) {
        convert_steps(t0 + Cfg::kTT, bufs(0));
        convert_bc(bufs(0));
      }
      __syncthreads();  // the next tile's step / B / C tiles ready; partial y consumed
    }
  } else if (is_e) {
    const int64_t n_tiles = (L + Cfg::kTT - 1) / Cfg::kTT;
    for (int64_t t = 0; t < 2 && t < n_tiles; ++t) {
      issue_loads(t * Cfg::kTT);
      convert_steps(t * Cfg::kTT, bufs(int(t)));
      convert_bc(bufs(int(t)));
      bar_arrive(Buf::kFull + int(t));
    }
    for (int64_t t = 0; t < n_tiles; ++t) {
      const int bi = int(t & 1);
      const bool more = t + 2 < n_tiles;
      if (more) issue_loads((t + 2) * Cfg::kTT);  // in flight while R finishes tile t
      bar_sync(Buf::kDone + bi);
      epilogue(t * Cfg::kTT, bufs(bi));
      if (more) {
        convert_steps((t + 2) * Cfg::kTT, bufs(bi));
        convert_bc(bufs(bi));
        bar_arrive(Buf::kFull + bi);
      }
    }
    return;
  } else {
    const int64_t n_tiles = (L + Cfg::kTT - 1) / Cfg::kTT;
    for (int64_t t = 0; t < n_tiles; ++t) {
      const int bi = int(t & 1);
      bar_sync(Buf::kFull + bi);
      recurrence(t * Cfg::kTT, bufs(bi));
      bar_arrive(Buf::kDone + bi);
    }
  }
  if (p.last_state && c2_ok) {
    float* ls = static_cast<float*>(p.last_state) + (sq.slot * p.dim + c2) * n + j * Cfg::kS;
#pragma unroll
    for (int s = 0; s < Cfg::kS; ++s) ls[s] = h[s];
  }
}

// Whether the state-lane kernel serves p: n = 16, variable B and C (packed or not), checkpoints (if saved) a multiple of
// 32 steps apart (it saves them at tile starts, and with 64-token tiles also at token 32), and not turned off
// (MK_SS_FWD_LANE = 0 at build time, MK_SS_FWD_KERNEL=scan at run time).
inline bool lane_fwd_applies(const SelectiveScanParams& p) {
  static const bool forced_scan = [] {
    const char* e = std::getenv("MK_SS_FWD_KERNEL");
    return e != nullptr && std::strcmp(e, "scan") == 0;
  }();
  return MK_SS_FWD_LANE != 0 && !forced_scan && p.dstate == kLaneN && p.is_variable_B && p.is_variable_C &&
         (p.states == nullptr || p.ckpt_log2 >= 5);
}

// States per lane: 4 (fewer instructions a (token, state)) once b * d fills the GPU with them, else 2 (twice
// the lanes). MK_SS_LANE_S=2|4 in the environment (read once per process) forces one.
inline int lane_states_per_lane(const SelectiveScanParams& p) {
  static const int forced = [] {
    const char* e = std::getenv("MK_SS_LANE_S");
    return e != nullptr ? std::atoi(e) : 0;
  }();
  if (forced == 2 || forced == 4) return forced;
  return p.batch * p.dim >= MK_SS_LANE_S4_MIN_BD ? 4 : 2;
}

// Whether 4 states a lane take the warp-specialised kernel: MK_SS_LANE_SPEC=0|1 in the environment (read once per
// process), else the build's MK_SS_LANE_SPEC; and only where the device gives a block its two buffers (83 KB:
// every arch the build targets by default does, sm_80+ gives >= 99 KB).
inline bool lane_spec_taken() {
  static const bool on = [] {
    const char* e = std::getenv("MK_SS_LANE_SPEC");
    return e != nullptr && *e != 0 ? std::strcmp(e, "0") != 0 : MK_SS_LANE_SPEC != 0;
  }();
  return on && device_smem_optin() >= LaneBuf<4, true>::kSmemBytes;
}

template <typename in_t, int kS, bool kSpec>
cudaError_t launch_lane(const SelectiveScanParams& p, cudaStream_t stream) {
  return launch_lane_grid(selective_scan_fwd_lane_kernel<in_t, kS, kSpec>, p, LaneCfg<kS>::kCh,
                          LaneBuf<kS, kSpec>::kBlockThreads, LaneBuf<kS, kSpec>::kSmemBytes, stream);
}

template <typename in_t>
cudaError_t launch_selective_scan_fwd_lane(const SelectiveScanParams& p, cudaStream_t stream) {
  if (lane_states_per_lane(p) == 4)
    return lane_spec_taken() ? launch_lane<in_t, 4, true>(p, stream) : launch_lane<in_t, 4, false>(p, stream);
  return launch_lane<in_t, 2, false>(p, stream);
}

}  // namespace ss
}  // namespace mamba_kernels
