// Mamba-1 selective scan backward, CUDA. CUDA headers only (no torch).
//
// Same thread layout as the forward (selective_scan_fwd_kernel.cuh): a block of 128 threads owns CPB channels
// of one (batch row, B/C group); TPC lanes share a channel, each owning kSPT of its states in registers. Time is
// walked in chunks of K = 2^ckpt_log2 steps, in REVERSE, starting each chunk from the state the forward saved
// at its entry (p.states). Per chunk (the math mirrors bwd_impl in selective_scan_cpu.cpp):
//   P1 load      delta (+bias, softplus), u, dy = dout silu(z) (or dout) for CPB x K, coalesced along time,
//                into smem (fp32); variable B/C tiles (n x K) transposed to [time][state]
//   P2 recompute h forward from the saved state, storing the state ENTERING each step (hprev) in smem slots
//                private to the thread (so P4 can follow without a block barrier)
//   P4 sweep     t = K-1 .. 0 with the adjoint g = dL/dh (registers, carried across chunks):
//                  a = exp(dt A), gs = g + C_t dy_t, h_t = a hprev + dt u B_t
//                  du   = D dy + dt sum_n gs B             ddelta = (sum_n gs (A a hprev + B u)) softplus'
//                  y    = sum_n C h_t (for dz)             dA += dt gs a hprev (registers)
//                  dB_t += gs dt u,  dC_t += dy h_t        g = gs a
//                du, ddelta, y + D u: summed over the TPC lanes of the channel by a shuffle reduce-scatter;
//                their lanes write them over the delta / u slots they came from (after a __syncwarp: every
//                lane of the channel has read those slots) and into the y tile. Variable dB/dC: summed over
//                the channels of the warp by a shuffle reduce-scatter, the warp's sums stored in smem;
//                constant dB/dC: registers.
//   P5 store     du, ddelta, dz (= dout (y + D u) silu'(z), re-reading dout and z) coalesced along time;
//                variable dB/dC summed over the block's warps and added to the fp32 (b, g, n, l) buffers with
//                atomicAdd (the group's other channel blocks add to the same)
// At the end of each sequence g is dinitial_state; at the end of the kernel dA, dD, ddelta_bias and constant
// dB/dC are added (atomicAdd over batch rows and channel blocks) into zeroed fp32 buffers.
// Shared memory per step of K: 128*kSPT (hprev) + 4*(CPB+1) (tiles) + n_var*(NP+4) (B/C) + 4*n_var*NP+1
// (warp sums) floats; the interface picks K per n so that it stays near 100 KB (bwd_smem_bytes).
// Cost per state and step: 2 exps (recompute + sweep; the forward's third), ~15 FMAs, and per warp and step
// ~30 shared-memory wavefronts / shuffles: the latter likely bound it.
#pragma once
#include "selective_scan/selective_scan_fwd_kernel.cuh"

namespace mamba_kernels {
namespace ss {

constexpr int kWarps = kThreads / 32;
constexpr unsigned kFull = 0xffffffffu;

// Backward shared-memory bytes for a chunk of `chunk` steps (layout in the kernel).
__host__ __device__ inline int64_t bwd_smem_bytes(int chunk, int spt, int cpb, int np, int nvar) {
  const int64_t per_step = int64_t(spt) * kThreads + 4 * int64_t(cpb + 1) + int64_t(nvar) * (np + 4) +
                           (nvar > 0 ? int64_t(kWarps) * nvar * np + 1 : 0);
  return 4 * per_step * chunk;
}

// Level J (lane mask 16 >> J) of the warp's reduce-scatter of v over its channels (lane bits >= log2 TPC),
// top bit first; the recursion unrolls the levels at compile time so that v stays in registers. While a lane
// holds cnt >= 2 values it keeps one half and adds its partner's copy of that half (the partner keeps the
// other); with one value left it all-reduces it (those lane bits go to `dup`). Afterwards v[i] is the warp's
// sum of value number off + i, for i < max(kV >> levels, 1).
template <int J, int kV>
__device__ __forceinline__ void chan_reduce_scatter(float (&v)[kV], int lane, int TPC, int& off, int& dup) {
  if constexpr (J < 5) {
    constexpr int m = 16 >> J;
    if (m < TPC) return;
    constexpr int cnt = kV >> J;
    const bool up = (lane & m) != 0;
    if constexpr (cnt >= 2) {
      constexpr int hc = cnt / 2;
#pragma unroll
      for (int i = 0; i < hc; ++i) {
        const float send = up ? v[i] : v[i + hc];
        const float keep = up ? v[i + hc] : v[i];
        v[i] = keep + __shfl_xor_sync(kFull, send, m);
      }
      if (up) off += hc;
    } else {
      v[0] += __shfl_xor_sync(kFull, v[0], m);
      dup |= m;
    }
    chan_reduce_scatter<J + 1>(v, lane, TPC, off, dup);
  }
}

// Reduce-scatter of the 4 per-channel sums (du, ddelta, y, unused) over the TPC lanes of a channel: at lane
// masks TPC/2, TPC/4, .., 1, halve while >= 2 values are held (upper lanes keep the upper half), then
// all-reduce. The lane's share is fixed by its sub index (chan_sums_share below).
template <int J>
__device__ __forceinline__ void chan_sums_reduce(float (&r)[4], int sub, int TPC) {
  if constexpr (J < 5) {
    const int m = TPC >> (J + 1);
    if (m == 0) return;
    constexpr int cnt = 4 >> J;
    if constexpr (cnt >= 2) {
      constexpr int hc = cnt / 2;
      const bool up = (sub & m) != 0;
#pragma unroll
      for (int i = 0; i < hc; ++i) {
        const float send = up ? r[i] : r[i + hc];
        const float keep = up ? r[i + hc] : r[i];
        r[i] = keep + __shfl_xor_sync(kFull, send, m);
      }
    } else {
      r[0] += __shfl_xor_sync(kFull, r[0], m);
    }
    chan_sums_reduce<J + 1>(r, sub, TPC);
  }
}

// After chan_sums_reduce the lane holds sums number off .. off + cnt - 1 in r[0 .. cnt); `writer`: the one
// lane among equal copies.
struct ChanShare {
  int off, cnt;
  bool writer;
};
__device__ __forceinline__ ChanShare chan_sums_share(int sub, int TPC) {
  ChanShare sh{0, 4, true};
  int dup = 0;
  for (int m = TPC >> 1; m >= 1; m >>= 1) {
    if (sh.cnt >= 2) {
      sh.cnt >>= 1;
      if (sub & m) sh.off += sh.cnt;
    } else {
      dup |= m;
    }
  }
  sh.writer = (sub & dup) == 0;
  return sh;
}

// (__launch_bounds__ minimum of 2 blocks per SM: without it ptxas for sm_90 caps some instances at 80
// registers and spills; shared memory allows about 2 blocks per SM anyway.)
template <typename in_t, int kSPT, bool kVarB, bool kVarC>
__global__ void __launch_bounds__(kThreads, 2)
selective_scan_bwd_kernel(const SelectiveScanParams p, const int tpc_log2, const int chunk_log2) {
  static_assert(kSPT % 4 == 0, "states per thread are stored as float4");
  constexpr int kNVar = int(kVarB) + int(kVarC);  // variable ones among B, C
  constexpr int kV = kNVar * kSPT;                  // dB/dC values per lane per step
  constexpr int kLog2V = kV >= 16 ? 4 : (kV >= 8 ? 3 : (kV >= 4 ? 2 : 0));
  constexpr float kLn2 = 0.6931471805599453f;
  extern __shared__ float4 smem_f4[];
  float* smem = reinterpret_cast<float*>(smem_f4);
  const int TPC = 1 << tpc_log2;
  const int CPB = kThreads >> tpc_log2;
  const int CPBp = CPB + 1;           // odd row stride: conflict-free column accesses
  const int NP = TPC * kSPT;
  const int NPp = NP + 4;
  const int RS = kWarps * kNVar * NP + 1;  // s_red row stride (odd)
  const int chunk = 1 << chunk_log2;
  float4* s_h = smem_f4;                                 // [chunk][kSPT/4][kThreads] float4: hprev
  float* s_B = smem + chunk * kSPT * kThreads;           // [chunk][NPp]
  float* s_C = s_B + (kVarB ? chunk * NPp : 0);          // [chunk][NPp]
  float* s_dt = s_C + (kVarC ? chunk * NPp : 0);         // [chunk][CPBp] delta, then ddelta
  float* s_u = s_dt + chunk * CPBp;                      // [chunk][CPBp] u, then du
  float* s_dy = s_u + chunk * CPBp;                      // [chunk][CPBp] dy = dout * silu(z) (or dout)
  float* s_y = s_dy + chunk * CPBp;                      // [chunk][CPBp] y + D u (with z)
  float* s_red = s_y + chunk * CPBp;                     // [chunk][RS] per-warp dB/dC sums

  const int tid = threadIdx.x;
  const int lane = tid & 31, warp = tid >> 5;
  const int cl = tid >> tpc_log2, sub = tid & (TPC - 1);
  const int64_t b = blockIdx.z, grp = blockIdx.y;
  const int64_t dpg = p.dim / gridDim.y;
  const int64_t cblk = int64_t(blockIdx.x) * CPB;
  const int64_t c0 = grp * dpg + cblk;
  const int n_c = int(dpg - cblk < CPB ? dpg - cblk : CPB);
  const int64_t c = c0 + cl;
  const bool c_ok = cl < n_c;
  const int n = int(p.dstate);
  const int64_t L = p.seqlen;
  const bool has_z = p.z != nullptr;
  // Which per-channel sums (0 du, 1 ddelta, 2 y) this lane writes.
  const ChanShare share = chan_sums_share(sub, TPC);
  const bool du_lane = share.writer && share.off == 0;
  const bool dt_lane = share.writer && share.off <= 1 && 1 < share.off + share.cnt;

  const in_t* __restrict__ u = static_cast<const in_t*>(p.u) + b * p.u_batch_stride;
  const in_t* __restrict__ dl = static_cast<const in_t*>(p.delta) + b * p.delta_batch_stride;
  const in_t* __restrict__ zp = has_z ? static_cast<const in_t*>(p.z) + b * p.z_batch_stride : nullptr;
  const in_t* __restrict__ dout = static_cast<const in_t*>(p.dout) + b * p.dout_batch_stride;
  const float* __restrict__ Dp = static_cast<const float*>(p.D);
  const float* __restrict__ biasp = static_cast<const float*>(p.delta_bias);
  const in_t* __restrict__ Bv = kVarB ? static_cast<const in_t*>(p.B) + b * p.B_batch_stride + grp * p.B_group_stride : nullptr;
  const in_t* __restrict__ Cv = kVarC ? static_cast<const in_t*>(p.C) + b * p.C_batch_stride + grp * p.C_group_stride : nullptr;
  const float* __restrict__ states = static_cast<const float*>(p.states);
  in_t* __restrict__ du_out = static_cast<in_t*>(p.du) + b * p.dim * L;       // (b, d, l) contiguous
  in_t* __restrict__ ddelta_out = static_cast<in_t*>(p.ddelta) + b * p.dim * L;
  in_t* __restrict__ dz_out = has_z ? static_cast<in_t*>(p.dz) + b * p.dim * L : nullptr;
  const int64_t n_groups = gridDim.y;
  float* __restrict__ dBv = kVarB ? static_cast<float*>(p.dB) + (b * n_groups + grp) * n * L : nullptr;
  float* __restrict__ dCv = kVarC ? static_cast<float*>(p.dC) + (b * n_groups + grp) * n * L : nullptr;

  float A2[kSPT], Bc[kSPT], Cc[kSPT];
  float dA_acc[kSPT], dB_acc[kSPT], dC_acc[kSPT];
#pragma unroll
  for (int i = 0; i < kSPT; ++i) {
    const int s = sub * kSPT + i;
    const bool ok = c_ok && s < n;
    A2[i] = ok ? static_cast<const float*>(p.A)[c * p.A_d_stride + s] * 1.4426950408889634f : 0.f;
    Bc[i] = (!kVarB && ok) ? static_cast<const float*>(p.B)[c * p.B_d_stride + s] : 0.f;
    Cc[i] = (!kVarC && ok) ? static_cast<const float*>(p.C)[c * p.C_d_stride + s] : 0.f;
    dA_acc[i] = dB_acc[i] = dC_acc[i] = 0.f;
  }
  const float Dv = (Dp && c_ok) ? Dp[c] : 0.f;
  float dD_acc = 0.f, dbias_acc = 0.f;

  int64_t ck_base = 0;  // saved chunks of the sequences before this one (varlen)
  const int64_t nseq = p.cu_seqlens ? p.n_seqs : 1;
  for (int64_t q = 0; q < nseq; ++q) {
    const int64_t s0 = p.cu_seqlens ? p.cu_seqlens[q] : 0;
    const int64_t s1 = p.cu_seqlens ? p.cu_seqlens[q + 1] : L;
    const int64_t slot = p.cu_seqlens ? q : b;
    const int64_t nck = (s1 - s0 + chunk - 1) >> chunk_log2;
    float g[kSPT];  // dL/dh_t excluding C_t dy_t: starts as dL/d(last state)
#pragma unroll
    for (int i = 0; i < kSPT; ++i) {
      const int s = sub * kSPT + i;
      g[i] = (p.dlast_state && c_ok && s < n)
                 ? static_cast<const float*>(p.dlast_state)[(slot * p.dim + c) * n + s] : 0.f;
    }
    for (int64_t k = nck - 1; k >= 0; --k) {
      const int64_t t0 = s0 + (k << chunk_log2);
      const int nt = int(s1 - t0 < chunk ? s1 - t0 : chunk);
      float h[kSPT];  // the saved state entering the chunk (loaded first: its latency overlaps P1)
      {
        const float* st = c_ok ? states + ((b * p.dim + c) * p.states_n_chunks + ck_base + k) * n : nullptr;
#pragma unroll
        for (int i = 0; i < kSPT; ++i) {
          const int s = sub * kSPT + i;
          h[i] = (c_ok && s < n) ? st[s] : 0.f;
        }
      }
      // P1. load (invalid channels / steps read as zeros: they add nothing to dB/dC below)
#pragma unroll 2
      for (int idx = tid; idx < CPB * chunk; idx += kThreads) {
        const int j = idx >> chunk_log2, tt = idx & (chunk - 1);
        float dtv = 0.f, uv = 0.f, dyv = 0.f;
        if (j < n_c && tt < nt) {
          const int64_t cc = c0 + j, t = t0 + tt;
          dtv = to_f(dl[cc * p.delta_d_stride + t]) + (biasp ? biasp[cc] : 0.f);
          if (p.delta_softplus) dtv = softplus_f(dtv);
          uv = to_f(u[cc * p.u_d_stride + t]);
          dyv = to_f(dout[cc * p.dout_d_stride + t]);
          if (has_z) dyv *= silu_f(to_f(zp[cc * p.z_d_stride + t]));
        }
        s_dt[tt * CPBp + j] = dtv;
        s_u[tt * CPBp + j] = uv;
        s_dy[tt * CPBp + j] = dyv;
      }
      if (kVarB) {
#pragma unroll 2
        for (int idx = tid; idx < NP * chunk; idx += kThreads) {
          const int s = idx >> chunk_log2, tt = idx & (chunk - 1);
          s_B[tt * NPp + s] = (s < n && tt < nt) ? to_f(Bv[s * p.B_dstate_stride + t0 + tt]) : 0.f;
        }
      }
      if (kVarC) {
#pragma unroll 2
        for (int idx = tid; idx < NP * chunk; idx += kThreads) {
          const int s = idx >> chunk_log2, tt = idx & (chunk - 1);
          s_C[tt * NPp + s] = (s < n && tt < nt) ? to_f(Cv[s * p.C_dstate_stride + t0 + tt]) : 0.f;
        }
      }
      __syncthreads();
      // P2. recompute the chunk's states from the saved one. Only s_h (thread-private) is written, and the
      // tiles P4 overwrites belong to this warp's channels: P4 follows without a block barrier.
#pragma unroll 2
      for (int tt = 0; tt < nt; ++tt) {
        const float dtv = s_dt[tt * CPBp + cl];
        const float dtu = dtv * s_u[tt * CPBp + cl];
#pragma unroll
        for (int k4 = 0; k4 < kSPT / 4; ++k4)
          s_h[(tt * (kSPT / 4) + k4) * kThreads + tid] =
              make_float4(h[4 * k4], h[4 * k4 + 1], h[4 * k4 + 2], h[4 * k4 + 3]);
        float Bt[kSPT];
#pragma unroll
        for (int k4 = 0; k4 < kSPT / 4; ++k4) {
          const float4 vb = kVarB ? reinterpret_cast<const float4*>(s_B + tt * NPp + sub * kSPT)[k4]
                                  : make_float4(Bc[4 * k4], Bc[4 * k4 + 1], Bc[4 * k4 + 2], Bc[4 * k4 + 3]);
          Bt[4 * k4] = vb.x; Bt[4 * k4 + 1] = vb.y; Bt[4 * k4 + 2] = vb.z; Bt[4 * k4 + 3] = vb.w;
        }
#pragma unroll
        for (int i = 0; i < kSPT; ++i) h[i] = fmaf(fast_exp2(dtv * A2[i]), h[i], dtu * Bt[i]);
      }
      // P4. reverse sweep
#pragma unroll 2
      for (int tt = nt - 1; tt >= 0; --tt) {
        const float dtv = s_dt[tt * CPBp + cl];
        const float uv = s_u[tt * CPBp + cl];
        const float dyv = s_dy[tt * CPBp + cl];
        const float dtu = dtv * uv;
        float hp[kSPT], Bt[kSPT], Ct[kSPT];
#pragma unroll
        for (int k4 = 0; k4 < kSPT / 4; ++k4) {
          const float4 vh = s_h[(tt * (kSPT / 4) + k4) * kThreads + tid];
          const float4 vb = kVarB ? reinterpret_cast<const float4*>(s_B + tt * NPp + sub * kSPT)[k4]
                                  : make_float4(Bc[4 * k4], Bc[4 * k4 + 1], Bc[4 * k4 + 2], Bc[4 * k4 + 3]);
          const float4 vc = kVarC ? reinterpret_cast<const float4*>(s_C + tt * NPp + sub * kSPT)[k4]
                                  : make_float4(Cc[4 * k4], Cc[4 * k4 + 1], Cc[4 * k4 + 2], Cc[4 * k4 + 3]);
          hp[4 * k4] = vh.x; hp[4 * k4 + 1] = vh.y; hp[4 * k4 + 2] = vh.z; hp[4 * k4 + 3] = vh.w;
          Bt[4 * k4] = vb.x; Bt[4 * k4 + 1] = vb.y; Bt[4 * k4 + 2] = vb.z; Bt[4 * k4 + 3] = vb.w;
          Ct[4 * k4] = vc.x; Ct[4 * k4 + 1] = vc.y; Ct[4 * k4 + 2] = vc.z; Ct[4 * k4 + 3] = vc.w;
        }
        float v[kV > 0 ? kV : 1];    // [0, kSPT): dB (if variable), then dC (if variable)
        float sgb = 0.f, sda = 0.f;  // sum_n gs B, sum_n A2 gs a hprev
        float y = 0.f;               // sum_n C h_t
#pragma unroll
        for (int i = 0; i < kSPT; ++i) {
          const float a = fast_exp2(dtv * A2[i]);
          const float gs = fmaf(Ct[i], dyv, g[i]);
          const float ht = fmaf(a, hp[i], dtu * Bt[i]);
          if constexpr (kVarB) v[i] = gs * dtu; else dB_acc[i] = fmaf(gs, dtu, dB_acc[i]);
          if constexpr (kVarC) v[(kVarB ? kSPT : 0) + i] = dyv * ht; else dC_acc[i] = fmaf(dyv, ht, dC_acc[i]);
          y = fmaf(Ct[i], ht, y);
          sgb = fmaf(gs, Bt[i], sgb);
          const float gn = gs * a;
          const float w = gn * hp[i];
          dA_acc[i] = fmaf(dtv, w, dA_acc[i]);
          sda = fmaf(A2[i], w, sda);
          g[i] = gn;
        }
        // Per-channel sums over the TPC lanes: du (without D dy), ddelta (before softplus'), y.
        float r[4] = {dtv * sgb, fmaf(sda, kLn2, uv * sgb), y, 0.f};
        chan_sums_reduce<0>(r, sub, TPC);
        // The writers overwrite the u / delta slots of step tt that every lane of the channel has read (du's
        // partials do not depend on every lane's u): order those reads before the writes.
        __syncwarp();
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          if (share.writer && i < share.cnt) {
            const int o = share.off + i;
            if (o == 0) {
              s_u[tt * CPBp + cl] = fmaf(Dv, dyv, r[i]);
              dD_acc = fmaf(dyv, uv, dD_acc);
            } else if (o == 1) {
              // softplus'(raw) = sigmoid(raw) = 1 - exp(-softplus(raw))
              const float ddt = p.delta_softplus ? -r[i] * expm1f(-dtv) : r[i];
              s_dt[tt * CPBp + cl] = ddt;
              dbias_acc += ddt;
            } else if (o == 2 && has_z) {
              s_y[tt * CPBp + cl] = fmaf(Dv, uv, r[i]);
            }
          }
        }
        if constexpr (kV > 0) {
          // Sum v over the channels of the warp, then store the warp's sums (one lane per value).
          int off = 0, dup = 0;  // dup: lane bits whose lanes end with equal values
          chan_reduce_scatter<0>(v, lane, TPC, off, dup);
          if ((lane & dup) == 0) {
            const int levels = 5 - tpc_log2;
            const int held = levels >= kLog2V ? 1 : (kV >> levels);
            float* row = s_red + tt * RS + warp * (kNVar * NP);
#pragma unroll
            for (int i = 0; i < kV; ++i) {
              if (i < held) {
                const int o = off + i;  // value number: which = o / kSPT (B then C), state = sub*kSPT + o%kSPT
                row[(o / kSPT) * NP + sub * kSPT + (o % kSPT)] = v[i];
              }
            }
          }
        }
      }
      __syncthreads();
      // P5. store du, ddelta, dz; add the block's dB/dC
      for (int idx = tid; idx < CPB * chunk; idx += kThreads) {
        const int j = idx >> chunk_log2, tt = idx & (chunk - 1);
        if (j < n_c && tt < nt) {
          const int64_t cc = c0 + j, t = t0 + tt, o = cc * L + t;
          du_out[o] = from_f<in_t>(s_u[tt * CPBp + j]);
          ddelta_out[o] = from_f<in_t>(s_dt[tt * CPBp + j]);
          if (has_z) {  // out = (y + D u) silu(z):  dz = dout (y + D u) silu'(z)
            const float zz = to_f(zp[cc * p.z_d_stride + t]);
            const float sz = 1.f / (1.f + __expf(-zz));
            const float dov = to_f(dout[cc * p.dout_d_stride + t]);
            dz_out[o] = from_f<in_t>(dov * s_y[tt * CPBp + j] * sz * (1.f + zz * (1.f - sz)));
          }
        }
      }
      if constexpr (kNVar > 0) {
        for (int idx = tid; idx < kNVar * n * chunk; idx += kThreads) {
          const int tt = idx & (chunk - 1), r = idx >> chunk_log2;
          const int which = r / n, s = r - which * n;
          if (tt < nt) {
            float acc = 0.f;
#pragma unroll
            for (int w = 0; w < kWarps; ++w) acc += s_red[tt * RS + w * (kNVar * NP) + which * NP + s];
            float* dst = (kVarB && which == 0) ? dBv : dCv;
            atomicAdd(dst + int64_t(s) * L + t0 + tt, acc);
          }
        }
      }
      __syncthreads();  // the next chunk's loads overwrite the tiles read above
    }
    if (p.dinitial_state) {
#pragma unroll
      for (int i = 0; i < kSPT; ++i) {
        const int s = sub * kSPT + i;
        if (c_ok && s < n) static_cast<float*>(p.dinitial_state)[(slot * p.dim + c) * n + s] = g[i];
      }
    }
    ck_base += nck;
  }
  // Weights: sums over this block's batch row (and sequences); other batch rows add to the same.
#pragma unroll
  for (int i = 0; i < kSPT; ++i) {
    const int s = sub * kSPT + i;
    if (c_ok && s < n) {
      atomicAdd(static_cast<float*>(p.dA) + c * n + s, dA_acc[i]);
      if (!kVarB) atomicAdd(static_cast<float*>(p.dB) + c * n + s, dB_acc[i]);
      if (!kVarC) atomicAdd(static_cast<float*>(p.dC) + c * n + s, dC_acc[i]);
    }
  }
  if (c_ok && du_lane && p.dD) atomicAdd(static_cast<float*>(p.dD) + c, dD_acc);
  if (c_ok && dt_lane && p.ddelta_bias) atomicAdd(static_cast<float*>(p.ddelta_bias) + c, dbias_acc);
}

// Launch for one input dtype: same layout as the forward, chunk = 2^ckpt_log2 (the forward saved its states
// at that spacing); 2 x 2 x 2 kernels (kSPT in {4, 8}, variable B, variable C). Returns an error or nullptr.
template <typename in_t>
const char* launch_selective_scan_bwd(const SelectiveScanParams& p, cudaStream_t stream) {
  const ScanLayout Ly = scan_layout(p.dstate);
  const bool var_b = p.is_variable_B, var_c = p.is_variable_C;
  const int64_t groups = (var_b || var_c) ? p.n_groups : 1;
  const int64_t dpg = p.dim / groups;
  const int chunk_log2 = p.ckpt_log2;
  if (chunk_log2 < 0 || chunk_log2 > 8) return "selective_scan_bwd_cuda: ckpt_log2 must be in [0, 8]";
  const int64_t smem = bwd_smem_bytes(1 << chunk_log2, Ly.spt, Ly.cpb, Ly.np, int(var_b) + int(var_c));
  if (p.batch == 0 || p.dim == 0) return nullptr;
  if (p.batch > 65535 || groups > 65535) return "selective_scan_bwd_cuda: batch and groups must be <= 65535";
  int dev = 0, max_smem = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
  if (err != cudaSuccess) return cudaGetErrorString(err);
  if (smem > max_smem)
    return "selective_scan_bwd_cuda: the checkpoint chunk needs more shared memory than this GPU has per block";
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned((dpg + Ly.cpb - 1) / Ly.cpb), unsigned(groups), unsigned(p.batch));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = size_t(smem);
  cfg.stream = stream;
  const int tpc_log2 = Ly.tpc_log2;
  err = MK_BOOL_SWITCH(var_b, kVarB, [&] {
    return MK_BOOL_SWITCH(var_c, kVarC, [&] {
      auto launch = [&](auto kernel) {
        cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
        return e != cudaSuccess ? e : cudaLaunchKernelEx(&cfg, kernel, p, tpc_log2, chunk_log2);
      };
      if (Ly.spt == 4) return launch(selective_scan_bwd_kernel<in_t, 4, kVarB, kVarC>);
      return launch(selective_scan_bwd_kernel<in_t, 8, kVarB, kVarC>);
    });
  });
  if (err == cudaSuccess) err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace ss
}  // namespace mamba_kernels
