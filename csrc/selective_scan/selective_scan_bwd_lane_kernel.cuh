// Mamba-1 selective scan backward, "state-lane" kernel (CUDA headers only): the fast path for n = 16 with variable B
// and C (packed sequences too: a block walks one sequence, LaneSeq), and checkpoints every 32 steps (the tile).
// Included at the end of selective_scan_bwd_kernel.cuh (it uses that file's helpers and
// selective_scan_lane_common.cuh); launch_selective_scan_bwd picks it.
//
// Why: the time-parallel backward (selective_scan_bwd_kernel) spends 45.6 instructions a (token, state) (ncu at
// 96d9c93: two 5-level shuffle scans a state and a 256-token tile, the dB / dC flush through shared memory) and
// measured 1.59 ms at b2 d4096 l4096. Here, as in the state-lane forward, lane (channel, j) owns 4 of the 16 states
// of one channel and walks time in order (no scans); a block has 4 recurrence warps (R, 32 channels of one (batch
// row, B/C group)) and 4 load / epilogue warps (E), which share two buffers of tiles through named barriers
// (FULL: E -> R, DONE: R -> E). Tiles of 32 tokens are walked from the LAST. Per tile, R:
//   F: from the state the forward saved at the tile start, runs the tile forward (a = 2^(dt A log2e), h = a h +
//      dt u B: one MUFU and three FP32 ops a (token, state)) and keeps the state entering each 4-token group in
//      shared memory (a float4 a lane and group);
//   R: per group, last first: recomputes the group's 4 steps from its entering state (a and h in registers; y's
//      partial C h and dC = dy h on the way), then runs them backward with the adjoint q (dL/dh entering from the
//      right): g = C dy + q, sum g B, dB = g dt u, q = g a, w = q h_{t-1}, sum A w, dA += dt w: 7 FP32 ops.
//   Per (token, state) that is 2 MUFU and ~15 FP32 ops, against 1 MUFU and ~35 in the time-parallel kernel.
// Sums over states (y, sum g B, sum A w: per (channel, token)) are reduced over the channel's 4 lanes by shuffles
// and written in place of the group's dt / dt u / dy, which R no longer needs; dB / dC (per (token, state), summed
// over channels) are reduced over the warp's 8 channels by shuffles -- each lane holds its 4 states in a lane-
// dependent order (slot i = state 4 j + (i ^ perm)) so that the first two levels need no select -- into the warp's
// rows of a dB / dC tile, which E sums over the 4 warps and adds to the fp32 (b, g, n, l) gradients (float4
// atomics on sm_90). E converts tile inputs (dt = softplus(delta + bias), dt u, dy = dout silu(z); B and C to fp32)
// two tiles ahead, and per finished tile reloads its raw inputs (L2) for du = dt sum g B + D dy, ddelta = (u sum g B
// + ln2 sum A2 w) softplus'(.), dz = dout (y + D u) silu'(z), dD, ddelta_bias.
// Tokens past the end get dt = 0, dt u = 0, dy = 0 (B / C load as 0): a = 1, the state and the adjoint pass
// unchanged and add nothing; channels past the group's end likewise (their lanes start with q = 0).
#pragma once

#ifndef MK_SS_BWD_LANE
#define MK_SS_BWD_LANE 1  // 1: launch_selective_scan_bwd takes this kernel where it applies; 0: never
#endif

namespace mamba_kernels {
namespace ss {

// Shape and shared memory of the state-lane backward (4 states a lane: LaneCfg<4>).
struct BwdLane {
  using Cfg = LaneCfg<4>;
  static constexpr int kTT = Cfg::kTT;          // 32 tokens a tile = the checkpoint chunk
  static constexpr int kTP = Cfg::kTP;          // row pitch (floats)
  static constexpr int kCh = Cfg::kCh;          // 32 channels a block
  static constexpr int kRWarps = Cfg::kWarps;   // 4 recurrence warps (and as many E warps)
  static constexpr int kRThreads = Cfg::kThreads;
  static constexpr int kBlockThreads = 2 * kRThreads;
  static constexpr int kGroups = kTT / 4;       // 4-token groups a tile
  static constexpr int kCkptLog2 = 5;
  static_assert((1 << kCkptLog2) == kTT, "checkpoints on tile starts");
  // A buffer (floats): B rows 0..15 and C rows 16..31 at bc_row(n) [32][kTP]; dt, dt u, dy [kCh][kTP] each (R
  // overwrites a group's columns with y, sum g B, sum A2 w once done with it); per R warp dB rows 0..15 and dC rows
  // 16..31 at bc_row(n) [kRWarps][32][kTP].
  static constexpr int kBufFloats = (2 * kLaneN + 3 * kCh + kRWarps * 2 * kLaneN) * kTP;
  // after the two buffers: per R warp the states entering its groups, [kGroups][32 lanes] float4
  static constexpr int kSmemBytes = 2 * kBufFloats * 4 + kRWarps * kGroups * 32 * 16;
  static constexpr int kFull = 1, kDone = 3;    // named barrier ids (+ buffer 0 / 1)
  float *bc, *dt, *du, *dy, *dbc;
  __device__ __forceinline__ explicit BwdLane(float* base) {
    bc = base;
    dt = bc + 2 * kLaneN * kTP;
    du = dt + kCh * kTP;
    dy = du + kCh * kTP;
    dbc = dy + kCh * kTP;
  }
};

// One butterfly level of a reduce-scatter over the lanes `off` apart: lo + the partner's lo when `hi` is false, hi +
// the partner's hi when true.
__device__ __forceinline__ float rs_pair(float lo, float hi_v, int off, bool hi) {
  return (hi ? hi_v : lo) + __shfl_xor_sync(kFullMask, hi ? lo : hi_v, off);
}

// s[token] (a lane's 4 tokens of a per-(channel, token) sum over its states) summed over the channel's 4 lanes (^1: j
// bit 0, ^4: j bit 1): the lane keeps token 2 a_hi + c_hi.
__device__ __forceinline__ float channel_token_sum(const float (&s)[4], bool a_hi, bool c_hi) {
  const float t0 = rs_pair(s[0], s[2], 1, a_hi), t1 = rs_pair(s[1], s[3], 1, a_hi);  // tokens {0,1} or {2,3}
  return rs_pair(t0, t1, 4, c_hi);
}

// v[token][slot] (a lane's 4 tokens x its 4 state slots) summed over the warp's 8 channels (lanes ^16, ^8, ^2) into
// r[token] for the state of slot 0: slots {0, 1} + the ^16 partner's {2, 3}, slot 0 + the ^8 partner's 1 (the same
// states, by the lane-dependent slot order: no selects), then summed with the ^2 partner, both keeping the result.
__device__ __forceinline__ void warp_channel_sum(const float (&v)[4][4], float (&r)[4]) {
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const float s0 = v[k][0] + __shfl_xor_sync(kFullMask, v[k][2], 16);
    const float s1 = v[k][1] + __shfl_xor_sync(kFullMask, v[k][3], 16);
    r[k] = s0 + __shfl_xor_sync(kFullMask, s1, 8);
    r[k] += __shfl_xor_sync(kFullMask, r[k], 2);
  }
}

template <typename in_t>
__global__ void __launch_bounds__(BwdLane::kBlockThreads, 2)
selective_scan_bwd_lane_kernel(const SelectiveScanParams p) {
  using Cfg = BwdLane::Cfg;
  constexpr int kTT = BwdLane::kTT, kTP = BwdLane::kTP, kCh = BwdLane::kCh, kN = kLaneN;
  extern __shared__ float4 smem_f4[];
  float* const smem = reinterpret_cast<float*>(smem_f4);
  auto bufs = [&](int bi) { return BwdLane(smem + bi * BwdLane::kBufFloats); };
  static_assert(BwdLane::kFull == 1 && BwdLane::kDone == 3, "barrier ids 1..4 (named_bar_1to4)");
  auto bar_sync = [](int id) { named_bar_1to4<BwdLane::kBlockThreads, true>(id); };
  auto bar_arrive = [](int id) { named_bar_1to4<BwdLane::kBlockThreads, false>(id); };

  const bool is_e = int(threadIdx.x) >= BwdLane::kRThreads;
  const int tid = is_e ? int(threadIdx.x) - BwdLane::kRThreads : int(threadIdx.x);
  const LaneSeq sq(p, reinterpret_cast<int*>(smem));
  const int64_t b = sq.b, grp = blockIdx.y, G = gridDim.y;
  const int64_t dpg = p.dim / G;
  const int64_t cblk = int64_t(blockIdx.x) * kCh;
  const int64_t L = sq.len, s0 = sq.s0, Lrow = p.seqlen;  // the walk's tokens; its rows start at s0
  const int64_t n_tiles = (L + kTT - 1) / kTT;
  auto tile_t0 = [&](int64_t it) { return (n_tiles - 1 - it) * kTT; };  // tiles from the last
  int ch2, j;
  Cfg::role(tid, ch2, j);
  const bool c2_ok = cblk + ch2 < dpg;
  const int64_t c2 = grp * dpg + (c2_ok ? cblk + ch2 : 0);  // idle lanes compute on the group's first channel

  if (is_e) {
    // ---- load / epilogue role: tokens 8 j .. 8 j + 7 of each tile of channel c2, and kBCItems B / C pieces
    const int64_t tj = 8 * j, ts = s0 + tj;  // the item's first token in a tile, in its row
    const in_t* __restrict__ dl_row = static_cast<const in_t*>(p.delta) + b * p.delta_batch_stride + c2 * p.delta_d_stride + ts;
    const in_t* __restrict__ u_row = static_cast<const in_t*>(p.u) + b * p.u_batch_stride + c2 * p.u_d_stride + ts;
    const in_t* __restrict__ do_row = static_cast<const in_t*>(p.dout) + b * p.dout_batch_stride + c2 * p.dout_d_stride + ts;
    const in_t* __restrict__ z_row = p.z ? static_cast<const in_t*>(p.z) + b * p.z_batch_stride + c2 * p.z_d_stride + ts : nullptr;
    const int64_t orow = (b * p.dim + c2) * Lrow + ts;  // du, ddelta, dz: (b, d, l) contiguous
    in_t* __restrict__ du_out = static_cast<in_t*>(p.du) + orow;
    in_t* __restrict__ dd_out = static_cast<in_t*>(p.ddelta) + orow;
    in_t* __restrict__ dz_out = p.z ? static_cast<in_t*>(p.dz) + orow : nullptr;
    const float bias = p.delta_bias ? static_cast<const float*>(p.delta_bias)[c2] : 0.f;
    const float Dv = p.D ? static_cast<const float*>(p.D)[c2] : 0.f;
    LaneBCPieces<in_t, Cfg> bcp;
    bcp.init(p, b, s0, grp, tid);
    const bool rows_aligned = bcp.aligned && ((reinterpret_cast<uintptr_t>(dl_row) | reinterpret_cast<uintptr_t>(u_row) |
                                         reinterpret_cast<uintptr_t>(do_row) | reinterpret_cast<uintptr_t>(z_row)) & 15) == 0;
    struct Raw {
      Raw8<in_t> dl, u, dout, z;
    };
    auto load_raw = [&](Raw& r, int64_t t0) {
      if (rows_aligned && t0 + kTT <= L) {
        r.dl.load_vec(dl_row + t0);
        r.u.load_vec(u_row + t0);
        r.dout.load_vec(do_row + t0);
        if (z_row) r.z.load_vec(z_row + t0);
        return;
      }
      const int nv = clamp_nv(L - t0 - tj);
      r.dl.load(dl_row + t0, nv);
      r.u.load(u_row + t0, nv);
      r.dout.load(do_row + t0, nv);
      if (z_row) r.z.load(z_row + t0, nv);
    };
    auto issue_loads = [&](Raw& r, int64_t t0) {
      load_raw(r, t0);
      bcp.issue(t0, L, rows_aligned && t0 + kTT <= L);
    };
    // The loaded inputs -> this thread's piece of its channel's dt, dt u, dy rows (zeros past the end and on
    // channels past the group's end), and the B / C tiles.
    auto convert = [&](const Raw& r, int64_t t0, const BwdLane& bf) {
      const int nv = c2_ok ? clamp_nv(L - t0 - tj) : 0;
      float dt[8], dtu[8], dy[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const float x = r.dl[i] + bias;
        dt[i] = p.delta_softplus ? softplus_f(x) : x;
        dy[i] = z_row ? r.dout[i] * silu_f(r.z[i]) : r.dout[i];
      }
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        if (i >= nv) dt[i] = dy[i] = 0.f;
        dtu[i] = dt[i] * r.u[i];
      }
      auto store8 = [&](float* tile, const float (&v)[8]) {
        float4* pr = reinterpret_cast<float4*>(tile + ch2 * kTP + tj);
        pr[0] = make_float4(v[0], v[1], v[2], v[3]);
        pr[1] = make_float4(v[4], v[5], v[6], v[7]);
      };
      store8(bf.dt, dt);
      store8(bf.du, dtu);
      store8(bf.dy, dy);
      bcp.store(bf.bc);
    };
    float dD_acc = 0.f, dbias_acc = 0.f;
    float* __restrict__ dBg = static_cast<float*>(p.dB) + (b * G + grp) * kN * Lrow + s0;
    float* __restrict__ dCg = static_cast<float*>(p.dC) + (b * G + grp) * kN * Lrow + s0;
    // A finished tile: the per-token gradients of the thread's 8 tokens, and 2 of the tile's 256 dB / dC float4s.
    auto epilogue = [&](const Raw& r, int64_t t0, const BwdLane& bf) {
      const int nv = c2_ok ? clamp_nv(L - t0 - tj) : 0;
      if (nv > 0) {
        float y[8], sgb[8], saw[8];
        auto load8 = [&](const float* tile, float (&v)[8]) {
          const float4* pr = reinterpret_cast<const float4*>(tile + ch2 * kTP + tj);
          const float4 a = pr[0], e = pr[1];
          v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = e.x; v[5] = e.y; v[6] = e.z; v[7] = e.w;
        };
        load8(bf.dt, y);
        load8(bf.du, sgb);
        load8(bf.dy, saw);
        float du[8], dd[8], dz[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          const float x = r.dl[i] + bias, uu = r.u[i], dov = r.dout[i];
          float dt = x, dsp = 1.f;
          if (p.delta_softplus) {
            dt = softplus_f(x);
            dsp = __fdividef(1.f, 1.f + __expf(-x));  // softplus' = sigmoid
          }
          float dyv = dov;
          if (z_row) {  // out = (y + D u) silu(z): dy = dout silu(z), dz = dout (y + D u) silu'(z)
            const float zz = r.z[i], sz = __fdividef(1.f, 1.f + __expf(-zz));
            dyv = dov * zz * sz;
            dz[i] = dov * fmaf(Dv, uu, y[i]) * sz * (1.f + zz * (1.f - sz));
          }
          du[i] = fmaf(Dv, dyv, dt * sgb[i]);
          dd[i] = fmaf(saw[i], kLn2, uu * sgb[i]) * dsp;
          if (i < nv) {
            dD_acc = fmaf(dyv, uu, dD_acc);
            dbias_acc += dd[i];
          }
        }
        store_run<8>(du_out + t0, nv, du);
        store_run<8>(dd_out + t0, nv, dd);
        if (z_row) store_run<8>(dz_out + t0, nv, dz);
      }
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {  // item -> (dB | dC, state, 4-token quad): a quad-warp reads one row
        const int idx = tid + rr * BwdLane::kRThreads;
        const int kind = idx >> 7, n = (idx >> 3) & 15, q = idx & 7;
        const float4* src = reinterpret_cast<const float4*>(bf.dbc + (kind * kN + Cfg::bc_row(n)) * kTP + 4 * q);
        float4 acc = src[0];
#pragma unroll
        for (int w = 1; w < BwdLane::kRWarps; ++w) {
          const float4 v = src[w * 2 * kN * kTP / 4];
          acc.x += v.x; acc.y += v.y; acc.z += v.z; acc.w += v.w;
        }
        const int64_t t = t0 + 4 * q;
        const int64_t cnt = L - t < 0 ? 0 : (L - t < 4 ? L - t : 4);
        atomic_add4((kind ? dCg : dBg) + n * Lrow + t, int(cnt), acc);
      }
    };

    Raw nxt, cur;
    for (int64_t it = 0; it < 2 && it < n_tiles; ++it) {
      issue_loads(nxt, tile_t0(it));
      convert(nxt, tile_t0(it), bufs(int(it)));
      bar_arrive(BwdLane::kFull + int(it));
    }
    for (int64_t it = 0; it < n_tiles; ++it) {
      const int bi = int(it & 1);
      const bool more = it + 2 < n_tiles;
      if (more) issue_loads(nxt, tile_t0(it + 2));  // in flight while R finishes tile it
      load_raw(cur, tile_t0(it));                  // this tile's inputs again (L2), for the epilogue
      bar_sync(BwdLane::kDone + bi);
      epilogue(cur, tile_t0(it), bufs(bi));
      if (more) {
        convert(nxt, tile_t0(it + 2), bufs(bi));
        bar_arrive(BwdLane::kFull + bi);
      }
    }
    if (c2_ok) {
      if (p.dD) atomicAdd(static_cast<float*>(p.dD) + c2, dD_acc);
      if (p.ddelta_bias) atomicAdd(static_cast<float*>(p.ddelta_bias) + c2, dbias_acc);
    }
    return;
  }

  // ---- recurrence role: lane (ch2, j) owns states 4 j .. 4 j + 3 of channel c2, slot i holding state 4 j + (i ^
  // perm). perm = the lane's bits 4 and 3 (channel bits 2 and 1 under the pair map), the partners of the dB / dC
  // reduction's first two levels: a lane's slots 2, 3 then hold the states of its level-1 partner's slots 0, 1,
  // and its slot 1 those of its level-2 partner's slot 0.
  const int lane = tid & 31, warp = tid >> 5;
  const int perm = ((lane >> 4) & 1) * 2 + ((lane >> 3) & 1);
  float A2[4], q[4], dA[4], h[4], hck[4];
  int boff[4];  // the slots' B rows in a buffer (C: + kN kTP)
  const float* __restrict__ states = static_cast<const float*>(p.states);
  const float* __restrict__ ck_row = states + ((b * p.dim + c2) * p.states_n_chunks + sq.ck_base) * kN + 4 * j;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int st = 4 * j + (i ^ perm);
    A2[i] = static_cast<const float*>(p.A)[c2 * p.A_d_stride + st] * kLog2e;
    q[i] = (p.dlast_state && c2_ok) ? static_cast<const float*>(p.dlast_state)[(sq.slot * p.dim + c2) * kN + st] : 0.f;
    dA[i] = 0.f;
    boff[i] = Cfg::bc_row(st) * kTP;
    hck[i] = n_tiles > 0 ? ck_row[(n_tiles - 1) * kN + (i ^ perm)] : 0.f;
  }
  float4* const gst = reinterpret_cast<float4*>(smem + 2 * BwdLane::kBufFloats) + warp * BwdLane::kGroups * 32 + lane;
  const bool a_hi = (lane & 1) != 0, c_hi = (lane & 4) != 0;  // the channel-sum levels' halves (j bits 0, 1)
  const int tt = 2 * (lane & 1) + ((lane >> 2) & 1);         // the token of a group whose sums this lane writes

  for (int64_t it = 0; it < n_tiles; ++it) {
    const int bi = int(it & 1);
#pragma unroll
    for (int i = 0; i < 4; ++i) h[i] = hck[i];
    if (it + 1 < n_tiles)  // the next tile's entering state, in flight meanwhile
#pragma unroll
      for (int i = 0; i < 4; ++i) hck[i] = ck_row[(n_tiles - 2 - it) * kN + (i ^ perm)];
    bar_sync(BwdLane::kFull + bi);
    const BwdLane bf = bufs(bi);
    float* const dtr = bf.dt + ch2 * kTP;
    float* const dur = bf.du + ch2 * kTP;
    float* const dyr = bf.dy + ch2 * kTP;
    // F: the tile forward, keeping each group's entering state
#pragma unroll 2
    for (int g = 0; g < BwdLane::kGroups; ++g) {
      gst[g * 32] = make_float4(h[0], h[1], h[2], h[3]);
      const float4 dt4 = *reinterpret_cast<const float4*>(dtr + 4 * g);
      const float4 du4 = *reinterpret_cast<const float4*>(dur + 4 * g);
      const float dt[4] = {dt4.x, dt4.y, dt4.z, dt4.w}, du[4] = {du4.x, du4.y, du4.z, du4.w};
      float Bt[4][4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float4 v = *reinterpret_cast<const float4*>(bf.bc + boff[i] + 4 * g);
        Bt[i][0] = v.x; Bt[i][1] = v.y; Bt[i][2] = v.z; Bt[i][3] = v.w;
      }
#pragma unroll
      for (int k = 0; k < 4; ++k)
#pragma unroll
        for (int i = 0; i < 4; ++i) h[i] = fmaf(fast_exp2(dt[k] * A2[i]), h[i], du[k] * Bt[i][k]);
    }
    // R: the groups backward
    float* const dbw = bf.dbc + warp * 2 * kN * kTP;
#pragma unroll 1
    for (int g = BwdLane::kGroups - 1; g >= 0; --g) {
      const float4 hp4 = gst[g * 32];
      const float4 dt4 = *reinterpret_cast<const float4*>(dtr + 4 * g);
      const float4 du4 = *reinterpret_cast<const float4*>(dur + 4 * g);
      const float4 dy4 = *reinterpret_cast<const float4*>(dyr + 4 * g);
      const float dt[4] = {dt4.x, dt4.y, dt4.z, dt4.w}, du[4] = {du4.x, du4.y, du4.z, du4.w};
      const float dy[4] = {dy4.x, dy4.y, dy4.z, dy4.w};
      float Bt[4][4], Ct[4][4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float4 v = *reinterpret_cast<const float4*>(bf.bc + boff[i] + 4 * g);
        const float4 w = *reinterpret_cast<const float4*>(bf.bc + kN * kTP + boff[i] + 4 * g);
        Bt[i][0] = v.x; Bt[i][1] = v.y; Bt[i][2] = v.z; Bt[i][3] = v.w;
        Ct[i][0] = w.x; Ct[i][1] = w.y; Ct[i][2] = w.z; Ct[i][3] = w.w;
      }
      // the group forward again: a, h_{t-1} (hp), the partial y and dC = dy h_t
      float a[4][4], hp[4][4], ysum[4], dC[4][4];
      float hh[4] = {hp4.x, hp4.y, hp4.z, hp4.w};
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        ysum[k] = 0.f;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          hp[k][i] = hh[i];
          a[k][i] = fast_exp2(dt[k] * A2[i]);
          hh[i] = fmaf(a[k][i], hh[i], du[k] * Bt[i][k]);
          ysum[k] = fmaf(Ct[i][k], hh[i], ysum[k]);
          dC[k][i] = dy[k] * hh[i];
        }
      }
      // dC over the warp's 8 channels
      float rc[4];
      warp_channel_sum(dC, rc);
      // backward over the group
      float sgb[4], saw[4], dB[4][4];
#pragma unroll
      for (int k = 3; k >= 0; --k) {
        sgb[k] = saw[k] = 0.f;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float gg = fmaf(Ct[i][k], dy[k], q[i]);
          sgb[k] = fmaf(gg, Bt[i][k], sgb[k]);
          dB[k][i] = gg * du[k];
          q[i] = gg * a[k][i];
          const float w = q[i] * hp[k][i];
          saw[k] = fmaf(A2[i], w, saw[k]);
          dA[i] = fmaf(dt[k], w, dA[i]);
        }
      }
      float rb[4];
      warp_channel_sum(dB, rb);
      // the warp's dB / dC rows of state 4 j + perm (slot 0): lanes with channel bit 0 clear write dB, set dC
      {
        const bool wc = (lane & 2) != 0;
        const int row = (wc ? kN : 0) * kTP + boff[0];
        *reinterpret_cast<float4*>(dbw + row + 4 * g) =
            wc ? make_float4(rc[0], rc[1], rc[2], rc[3]) : make_float4(rb[0], rb[1], rb[2], rb[3]);
      }
      // y, sum g B, sum A2 w over the channel's 4 lanes, one token a lane, in place of dt, dt u, dy
      const float ys = channel_token_sum(ysum, a_hi, c_hi), gbs = channel_token_sum(sgb, a_hi, c_hi);
      const float aws = channel_token_sum(saw, a_hi, c_hi);
      __syncwarp();  // every lane of the channel has read the group's dt / dt u / dy
      dtr[4 * g + tt] = ys;
      dur[4 * g + tt] = gbs;
      dyr[4 * g + tt] = aws;
    }
    bar_arrive(BwdLane::kDone + bi);
  }
  if (c2_ok) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int st = 4 * j + (i ^ perm);
      atomicAdd(static_cast<float*>(p.dA) + c2 * kN + st, dA[i]);
      if (p.dinitial_state) static_cast<float*>(p.dinitial_state)[(sq.slot * p.dim + c2) * kN + st] = q[i];
    }
  }
}

// Whether the state-lane backward serves p: n = 16, variable B and C, checkpoints every 32 steps (the
// forward saved them: selective_scan_cuda_ckpt_chunk asks for that where this kernel applies), not turned off
// (MK_SS_BWD_LANE = 0 at build time, MK_SS_BWD_KERNEL=scan at run time), and the device gives a block its 88 KB.
inline bool bwd_lane_forced_off() {
  static const bool off = [] {
    const char* e = std::getenv("MK_SS_BWD_KERNEL");
    return e != nullptr && std::strcmp(e, "scan") == 0;
  }();
  return MK_SS_BWD_LANE == 0 || off;
}
inline bool bwd_lane_shape(int64_t dstate, bool var_b, bool var_c) {  // packed or not
  return !bwd_lane_forced_off() && dstate == kLaneN && var_b && var_c;
}
inline bool bwd_lane_applies(const SelectiveScanParams& p) {
  return bwd_lane_shape(p.dstate, p.is_variable_B, p.is_variable_C) &&
         p.ckpt_log2 == BwdLane::kCkptLog2 && device_smem_optin() >= BwdLane::kSmemBytes;
}

template <typename in_t>
cudaError_t launch_selective_scan_bwd_lane(const SelectiveScanParams& p, cudaStream_t stream) {
  return launch_lane_grid(selective_scan_bwd_lane_kernel<in_t>, p, BwdLane::kCh, BwdLane::kBlockThreads,
                          BwdLane::kSmemBytes, stream);
}

}  // namespace ss
}  // namespace mamba_kernels
