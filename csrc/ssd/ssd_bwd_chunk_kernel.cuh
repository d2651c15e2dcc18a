// CUDA backward of the chunked SSD: the chunk-parallel tensor-core kernels K3 (CB, dCB, intra-chunk d a), K4 (dx, d dt',
// state-path d a, dD) and K5 (dB, dC), and the launch sequence of K0..K6. Overview and equations: ssd_bwd_kernel.cuh.
//
// Fragment conventions (mma.m16n8k16 via ssd_common.cuh's Frag<E>): warp w owns accumulator rows 16 w .. 16 w + 15; a
// lane (g = lane / 4, q = lane % 4) holds rows g, g + 8 at columns 8 j + 2 q, + 1 of n-tile j. A operands come from
// row-major shared tiles (Frag::a_rows), from transposed tiles or with element-wise factors (scalar reads + a_from);
// B operands from tiles with k contiguous (Frag::b_cols) or k strided (b_rows2: ldmatrix.trans for bf16).
//
// Why these shapes: every 64-token block is one k16-step-aligned tile, so the causal structure inside a chunk of Q
// tokens is (Q / 64)^2 / 2 block pairs; dCB and CB live in (slot, group, Q, Q) scratch so that the per-head kernel K4
// and the per-group kernel K5 read them instead of recomputing C B^T per head (h / g = 80 heads share it at the
// issue shape b4 l4096 h80 p64 n128 g1).
//
// Resources (nvcc -O3 --use_fast_math -Xptxas -v, sm_90a, registers; no spills except fp32 / fp16 K4: 88 bytes):
//   bf16: K1 142, K3 168, K4 255, K5 160, K0 / K2 / K6 / zero / cvt <= 48.  fp32 tiles: K1 136, K3 188, K4 255, K5 160.
// Shared memory (bf16, p 64 / 128, n 128): K1 26 KB, K3 54 / 70 KB, K4 89 KB (two stages), K5 52 / 77 KB; fp32
// tiles up to 149 KB (K5 at p = n = 128: fits sm_80's 163 KB).
// Where the time goes, estimated (no per-kernel profile yet) at the issue shape b4 l4096 h80 p64 n128 g1 Q256, bf16,
// H200 (4.8 TB/s, 132 SMs); "first" is the first version (15.7 ms measured in all), "now" this one:
//   K1  1.0 GB HBM (dout, z, ypre in; dz, dy, G_c out) >= 0.21 ms. first ~1 ms: one element in flight a thread (the
//       global stores between loads serialise them); now 16-byte pieces, 4 in flight: ~0.3 ms.
//   K2  ~0.7 GB (dS r/w, h_in, d h_in, dinit), element-parallel: ~0.15-0.2 ms either way.
//   K3  840 MB of L2 tile reads (dy, x per head and block pair), 27 GFLOP: first ~3-5 ms (640 CTAs, <= 3 an SM, each
//       80 heads of two element-serial 8 KB tile loads); now 6400 CTAs of 8 heads, 16-byte batched loads, plus 26 M
//       fp32 atomics for dCB: ~0.3-0.5 ms.
//   K4  5120 CTAs at 2 an SM (253 registers), ~420 KB of tiles a CTA (2.1 GB from L2, 0.84 GB from HBM) >= 0.2 ms:
//       first ~6-8 ms (element-serial loads); now ~0.5-0.8 ms, the heaviest kernel: the (dy_t, CB) block-pair tiles
//       (10 of the 14 tile pairs a CTA) are prefetched by cp.async one pair ahead (bf16); the per-source-block x, dy,
//       B, C tiles and dS / h_in still wait.
//   K5  st (dS or h_in, 32 KB fp32 a head) + uw tiles: first ~3 ms (512 CTAs x 80 serial heads); now 5120 CTAs of 8
//       heads plus 42 M fp32 atomics into dbc32: ~0.3-0.5 ms.
//   K0 / K6 / zero (50 MB) / cvt: ~0.05 ms together.  Sum now ~1.8-2.5 ms against the first 15.7 (estimate).
// Known gaps: K4 re-reads dy_t / CB blocks per source block (10 block pairs a chunk at Q = 256) and holds 253
// registers (2 CTAs an SM); K3 / K5 atomics could be 2-wide (red.global.add.v2.f32, sm_90).
#pragma once
#include "ssd/ssd_bwd_kernel.cuh"

namespace mamba_kernels {
namespace ssd_bwd {

// Buffers of K4's (dy_t, CB) block-pair tiles: two (cp.async prefetch of the next pair while this one is in the
// mma) for 2-byte tiles; one for fp32 tiles, whose second stage would take K4 to 172 KB (over sm_80's 163 KB).
template <typename E> constexpr int k4_stages() { return sizeof(E) == 2 ? 2 : 1; }

// Shared-memory sizes (bytes) of the chunk kernels; E is the tile element type.
template <typename E> struct BwdSmem {
  int ldn, ldx, ldq, ldp, kp, nk;
  int64_t k1, k3, k4_union, k4, k5;
  __host__ __device__ explicit BwdSmem(int64_t n, int64_t P) {
    nk = int((n + 15) / 16);
    kp = int((P + 15) / 16);
    ldn = tile_ld<E>(n);
    ldx = tile_ld<E>(kC);
    ldq = tile_ld<E>(kT);
    ldp = tile_ld<E>(P);
    const int64_t es = int64_t(sizeof(E));
    k1 = (int64_t(kT) * ldx + int64_t(kT) * ldn) * es + kT * 4;
    k3 = (2 * int64_t(kT) * ldn + 2 * int64_t(kT) * ldp) * es + (3 * kT + kWarps * kT) * 4;
    const int64_t u1 = k4_stages<E>() * (int64_t(kT) * ldx + int64_t(kT) * ldq), u2 = int64_t(kT) * ldn;
    k4_union = u1 > u2 ? u1 : u2;
    k4 = (2 * int64_t(kC) * ldn + 2 * int64_t(kT) * ldx + k4_union) * es + (2 + k4_stages<E>()) * kT * 4;
    k5 = (int64_t(kT) * ldn + int64_t(kT) * ldq + int64_t(kT) * ldp + 16 * int64_t(kp) * ldn) * es + kT * 4;
  }
};

// Accumulator element (j, e) of the lane: row offset 8 (e >> 1) from r0, column 8 j + 2 q + (e & 1).
// A fragment register i: row offset 8 ((i >> 1) & 1), k offset (i & 1) + 8 (i >> 2) (ssd_common.cuh's Frag order).

// ------------------------------------------------------------------------------------------ K3: CB, dCB, d a intra
// grid: n_slots x (nb (nb + 1) / 2) x head blocks x g, groups fastest; block pair (tb, sb), tb >= sb, of 64-token
// blocks. A CTA walks the heads of one head block (ssd_bwd_group_heads); with more than one block a group, the dCB
// partials go by fp32 atomics into the zeroed dcb32 (the tile-type dcb is then unused), and only head block 0
// stores CB (every block computes it: it weights the intra-chunk d a of its own heads).
template <typename in_t>
__global__ void __launch_bounds__(kThr) ssd_bwd_dcb_kernel(const SsdBwdCudaParams p) {
  using E = typename TileType<in_t>::E;
  using F = Frag<E>;
  extern __shared__ float4 ssd_bwd_smem[];
  const int64_t NG = p.ngroups, H = p.nheads, P = p.headdim, Q = p.chunk_size, L = p.seqlen, n = p.dstate;
  const int nb = int(Q / kT), npairs = nb * (nb + 1) / 2;
  const int64_t hpg = H / NG, hc = ssd_bwd_group_heads(hpg), nhb = (hpg + hc - 1) / hc;
  const int64_t bid = blockIdx.x, grp = bid % NG, hb = (bid / NG) % nhb, rest = bid / NG / nhb, slot = rest / npairs;
  int tb = 0, sb = int(rest % npairs);
  while (sb > tb) { sb -= tb + 1; ++tb; }
  int64_t row, t0, clen;
  if (!ssd_cuda::chunk_of_slot(p, slot, row, t0, clen) || int64_t(tb) * kT >= clen) return;
  const int tl = int(clen - int64_t(tb) * kT < kT ? clen - int64_t(tb) * kT : kT);
  const int sl = int(clen - int64_t(sb) * kT < kT ? clen - int64_t(sb) * kT : kT);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, q = lane & 3, r0 = 16 * warp + g;
  const BwdSmem<E> S(n, P);
  const int ldn = S.ldn, ldp = S.ldp, nk = S.nk, kp = S.kp;
  E* ct = reinterpret_cast<E*>(ssd_bwd_smem);
  E* bs = ct + kT * ldn;
  E* dyt = bs + kT * ldn;
  E* xs = dyt + kT * ldp;
  float* at = reinterpret_cast<float*>(xs + kT * ldp);
  float* as = at + kT;
  float* dts = as + kT;
  float* red = dts + kT;
  const in_t* Cg = static_cast<const in_t*>(p.C) + ((row * L + t0) * NG + grp) * n;
  const in_t* Bg = static_cast<const in_t*>(p.B) + ((row * L + t0) * NG + grp) * n;
  tile_load(ct, ldn, Cg + int64_t(tb) * kT * NG * n, NG * n, tl, int(n), kT, 16 * nk);
  tile_load(bs, ldn, Bg + int64_t(sb) * kT * NG * n, NG * n, sl, int(n), kT, 16 * nk);
  __syncthreads();
  // CB block (t rows, s columns), causal inside the diagonal block, zero past the chunk; stored in the tile type and
  // used rounded (K4 reads the stored copy)
  float cbv[8][4];
#pragma unroll
  for (int j = 0; j < 8; ++j) cbv[j][0] = cbv[j][1] = cbv[j][2] = cbv[j][3] = 0.f;
  for (int kk = 0; kk < nk; ++kk) {
    const typename F::A fa = F::a_rows(ct + 16 * warp * ldn + 16 * kk, ldn, g, q);
#pragma unroll
    for (int j = 0; j < 8; ++j) F::mma(cbv[j], fa, F::b_cols(bs + 8 * j * ldn + 16 * kk, ldn, g, q));
  }
  const int64_t blk = ((slot * NG + grp) * Q + int64_t(tb) * kT) * Q + int64_t(sb) * kT;
  E* cbg = static_cast<E*>(p.cb) + blk;
  bool ok[8][4];
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int t = r0 + 8 * (e >> 1), s = 8 * j + 2 * q + (e & 1);
      ok[j][e] = t < tl && s < sl && (tb > sb || s <= t);
      const E v = from_f<E>(ok[j][e] ? cbv[j][e] : 0.f);
      if (hb == 0) cbg[int64_t(t) * Q + s] = v;
      cbv[j][e] = to_f(v);
    }
  float acc[8][4];
#pragma unroll
  for (int j = 0; j < 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
  const int64_t h_end = (hb + 1) * hc < hpg ? (hb + 1) * hc : hpg;
  for (int64_t jh = hb * hc; jh < h_end; ++jh) {
    const int64_t head = grp * hpg + jh, ab = (row * H + head) * L + t0;
    tile_load(dyt, ldp, static_cast<const E*>(p.dy) + ((row * L + t0 + int64_t(tb) * kT) * H + head) * P, H * P, tl,
              int(P), kT, 16 * kp);
    tile_load(xs, ldp, static_cast<const in_t*>(p.x) + ((row * L + t0 + int64_t(sb) * kT) * H + head) * P, H * P, sl,
              int(P), kT, 16 * kp);
    if (tid < kT) {
      at[tid] = tid < tl ? p.a[ab + int64_t(tb) * kT + tid] : 0.f;
      as[tid] = tid < sl ? p.a[ab + int64_t(sb) * kT + tid] : 0.f;
      dts[tid] = tid < sl ? p.dtp[ab + int64_t(sb) * kT + tid] : 0.f;
    }
    __syncthreads();
    float dm[8][4];  // dy_t . x_s over p
#pragma unroll
    for (int j = 0; j < 8; ++j) dm[j][0] = dm[j][1] = dm[j][2] = dm[j][3] = 0.f;
    for (int kk = 0; kk < kp; ++kk) {
      const typename F::A fa = F::a_rows(dyt + 16 * warp * ldp + 16 * kk, ldp, g, q);
#pragma unroll
      for (int j = 0; j < 8; ++j) F::mma(dm[j], fa, F::b_cols(xs + 8 * j * ldp + 16 * kk, ldp, g, q));
    }
    float rs[2] = {0.f, 0.f}, cs[8][2];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      cs[j][0] = cs[j][1] = 0.f;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int t = r0 + 8 * (e >> 1), s = 8 * j + 2 * q + (e & 1);
        const float gv = ok[j][e] ? dm[j][e] * expf(at[t] - as[s]) * dts[s] : 0.f;
        acc[j][e] += gv;
        const float gc = gv * cbv[j][e];
        rs[e >> 1] += gc;
        cs[j][e & 1] += gc;
      }
    }
    const float rs0 = quad_sum(rs[0]), rs1 = quad_sum(rs[1]);
    if (q == 0) {
      if (r0 < tl) atomicAdd(p.da + ab + int64_t(tb) * kT + r0, rs0);
      if (r0 + 8 < tl) atomicAdd(p.da + ab + int64_t(tb) * kT + r0 + 8, rs1);
    }
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float v = col_sum(cs[j][e]);
        if (g == 0) red[warp * kT + 8 * j + 2 * q + e] = v;
      }
    __syncthreads();  // red complete; every warp is done with dyt / xs / at / as / dts of this head
    if (tid < sl) atomicAdd(p.da + ab + int64_t(sb) * kT + tid, -(red[tid] + red[kT + tid] + red[2 * kT + tid] +
                                                                 red[3 * kT + tid]));
  }
  if (nhb > 1) {  // partial sum over this block's heads; zero outside the triangle / chunk: no add needed there
    float* d32 = p.dcb32 + blk;
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        if (ok[j][e]) atomicAdd(d32 + int64_t(r0 + 8 * (e >> 1)) * Q + 8 * j + 2 * q + (e & 1), acc[j][e]);
    return;
  }
  E* dcbg = static_cast<E*>(p.dcb) + blk;
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) dcbg[int64_t(r0 + 8 * (e >> 1)) * Q + 8 * j + 2 * q + (e & 1)] = from_f<E>(acc[j][e]);
}

// ------------------------------------------------------------------------------------------ K4: dx, d dt', d a, dD
// grid: n_slots x channel blocks x h, heads fastest. Per source block sb: du (64 s x 64 channels) in registers.
template <typename in_t>
__global__ void __launch_bounds__(kThr) ssd_bwd_dx_kernel(const SsdBwdCudaParams p) {
  using E = typename TileType<in_t>::E;
  using F = Frag<E>;
  extern __shared__ float4 ssd_bwd_smem[];
  int64_t head, slot, row, t0, clen;
  int ch0;
  decode_head_block(p, head, ch0, slot);
  if (!ssd_cuda::chunk_of_slot(p, slot, row, t0, clen)) return;
  const int64_t NG = p.ngroups, H = p.nheads, P = p.headdim, Q = p.chunk_size, L = p.seqlen, n = p.dstate;
  const int64_t grp = head / (H / NG), ab = (row * H + head) * L + t0;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, q = lane & 3, r0 = 16 * warp + g;
  const int nch = int(P - ch0 < kC ? P - ch0 : kC);
  const BwdSmem<E> S(n, P);
  const int ldn = S.ldn, ldx = S.ldx, ldq = S.ldq, nk = S.nk;
  E* dSs = reinterpret_cast<E*>(ssd_bwd_smem);
  E* hins = dSs + kC * ldn;
  E* xsm = hins + kC * ldn;
  E* dys = xsm + kT * ldx;
  E* un = dys + kT * ldx;  // union: stages of (dy_t tile, CB block) while du is accumulated, then the B_s / C_s tile
  E* bc = un;
  constexpr int kSt = k4_stages<E>();
  float* as = reinterpret_cast<float*>(un + S.k4_union);
  float* dts = as + kT;
  float* at_st = dts + kT;  // exp argument a_t of the stage's target block, kSt x kT
  // 16-byte cp.async pieces for the dy_t tile need whole 8-channel pieces (P, nch multiples of 16 / sizeof(E)); the CB
  // block always qualifies (Q a multiple of 64). Otherwise the (synchronous) tile_load fills the stage.
  const bool dy_async = P % (16 / int(sizeof(E))) == 0 && (reinterpret_cast<uintptr_t>(p.dy) & 15) == 0 &&
                        (reinterpret_cast<uintptr_t>(p.cb) & 15) == 0;
  const int64_t so = (slot * H + head) * P * n + int64_t(ch0) * n;
  tile_load(dSs, ldn, p.dS + so, n, nch, int(n), kC, 16 * nk);
  tile_load(hins, ldn, p.states_in + so, n, nch, int(n), kC, 16 * nk);
  const float aL = p.a[ab + clen - 1];
  const E* dyg = static_cast<const E*>(p.dy) + ((row * L + t0) * H + head) * P + ch0;
  const in_t* xg = static_cast<const in_t*>(p.x) + ((row * L + t0) * H + head) * P + ch0;
  in_t* dxg = static_cast<in_t*>(p.dx) + ((row * L + t0) * H + head) * P + ch0;
  const E* cbg = static_cast<const E*>(p.cb) + (slot * NG + grp) * Q * Q;
  float Dc[8][2];
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int c = 8 * j + 2 * q + e;
      Dc[j][e] = (p.D && c < nch) ? p.D[p.D_per_channel ? head * P + ch0 + c : head] : 0.f;
    }
  float dal = 0.f, dD[8][2];
#pragma unroll
  for (int j = 0; j < 8; ++j) dD[j][0] = dD[j][1] = 0.f;
  const int nbv = int((clen + kT - 1) / kT);
  for (int sb = 0; sb < nbv; ++sb) {
    const int sl = int(clen - int64_t(sb) * kT < kT ? clen - int64_t(sb) * kT : kT);
    const int64_t s0 = int64_t(sb) * kT;
    tile_load(xsm, ldx, xg + s0 * H * P, H * P, sl, nch, kT, kC);
    tile_load(dys, ldx, dyg + s0 * H * P, H * P, sl, nch, kT, kC);
    if (tid < kT) {
      as[tid] = tid < sl ? p.a[ab + s0 + tid] : 0.f;
      dts[tid] = tid < sl ? p.dtp[ab + s0 + tid] : 0.f;
    }
    float du[8][4];
#pragma unroll
    for (int j = 0; j < 8; ++j) du[j][0] = du[j][1] = du[j][2] = du[j][3] = 0.f;
    // stage `buf` <- target block tb's dy_t tile, CB block (K3 wrote the whole block) and a_t
    auto issue = [&](int tb, int buf) {
      const int tl = int(clen - int64_t(tb) * kT < kT ? clen - int64_t(tb) * kT : kT);
      E* dyt = un + buf * (kT * ldx + kT * ldq);
      E* cbt = dyt + kT * ldx;
      if (dy_async) {
        tile_copy_async(dyt, ldx, dyg + int64_t(tb) * kT * H * P, H * P, tl, nch, kT, kC);
        tile_copy_async(cbt, ldq, cbg + int64_t(tb) * kT * Q + s0, Q, kT, kT, kT, kT);
      } else {
        tile_load(dyt, ldx, dyg + int64_t(tb) * kT * H * P, H * P, tl, nch, kT, kC);
        tile_load(cbt, ldq, cbg + int64_t(tb) * kT * Q + s0, Q, kT, kT, kT, kT);
      }
      if (tid < kT) at_st[buf * kT + tid] = tid < tl ? p.a[ab + int64_t(tb) * kT + tid] : 0.f;
    };
    if (kSt == 2) {
      issue(sb, 0);
      cp_async_commit();
    }
    for (int tb = sb; tb < nbv; ++tb) {  // du_s += sum_t (CB_ts exp(a_t - a_s)) dy_t, t >= s
      const int tl = int(clen - int64_t(tb) * kT < kT ? clen - int64_t(tb) * kT : kT);
      const int buf = kSt == 2 ? (tb - sb) & 1 : 0;
      if (kSt == 2) {  // prefetch the next pair into the other stage (freed by the previous iteration's barrier)
        if (tb + 1 < nbv) issue(tb + 1, buf ^ 1);
        cp_async_commit();
        cp_async_wait<1>();  // this pair's group has landed (the newest one may still be in flight)
      } else {
        issue(tb, 0);
        cp_async_commit();
        cp_async_wait<0>();
      }
      __syncthreads();
      const E* dyt = un + buf * (kT * ldx + kT * ldq);
      const E* cbt = dyt + kT * ldx;
      const float* at = at_st + buf * kT;
#pragma unroll
      for (int kt = 0; kt < 4; ++kt) {
        if (16 * kt < tl) {
          float av[8];
#pragma unroll
          for (int i = 0; i < 8; ++i) {
            const int s = r0 + 8 * ((i >> 1) & 1), t = 16 * kt + 2 * q + (i & 1) + 8 * (i >> 2);
            av[i] = (t < tl && s < sl && (tb > sb || t >= s)) ? to_f(cbt[t * ldq + s]) * expf(at[t] - as[s]) : 0.f;
          }
          const typename F::A fa = F::a_from(av);
#pragma unroll
          for (int j = 0; j < 8; j += 2) {
            typename F::B b0, b1;
            b_rows2<E>(b0, b1, dyt + 16 * kt * ldx + 8 * j, ldx, g, q);
            F::mma(du[j], fa, b0);
            F::mma(du[j + 1], fa, b1);
          }
        }
      }
      __syncthreads();
    }
    // state-in path B_s dS^T (times exp(a_L - a_s) below), then the state-out path's C_s h_in^T (for d a only)
    const in_t* bcg = static_cast<const in_t*>(p.B) + ((row * L + t0 + s0) * NG + grp) * n;
    tile_load(bc, ldn, bcg, NG * n, sl, int(n), kT, 16 * nk);
    __syncthreads();
    float dus[8][4], yo[8][4];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      dus[j][0] = dus[j][1] = dus[j][2] = dus[j][3] = 0.f;
      yo[j][0] = yo[j][1] = yo[j][2] = yo[j][3] = 0.f;
    }
    for (int kk = 0; kk < nk; ++kk) {
      const typename F::A fa = F::a_rows(bc + 16 * warp * ldn + 16 * kk, ldn, g, q);
#pragma unroll
      for (int j = 0; j < 8; ++j) F::mma(dus[j], fa, F::b_cols(dSs + 8 * j * ldn + 16 * kk, ldn, g, q));
    }
    __syncthreads();
    tile_load(bc, ldn, static_cast<const in_t*>(p.C) + ((row * L + t0 + s0) * NG + grp) * n, NG * n, sl, int(n), kT,
              16 * nk);
    __syncthreads();
    for (int kk = 0; kk < nk; ++kk) {
      const typename F::A fa = F::a_rows(bc + 16 * warp * ldn + 16 * kk, ldn, g, q);
#pragma unroll
      for (int j = 0; j < 8; ++j) F::mma(yo[j], fa, F::b_cols(hins + 8 * j * ldn + 16 * kk, ldn, g, q));
    }
    // element-wise: dx, and the per-token sums (quads hold a row)
    float es[2], rq[2] = {0.f, 0.f}, rdat[2] = {0.f, 0.f}, rddt[2] = {0.f, 0.f};
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) es[hr] = r0 + 8 * hr < sl ? expf(aL - as[r0 + 8 * hr]) : 0.f;
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int hr = e >> 1, s = r0 + 8 * hr, c = 8 * j + 2 * q + (e & 1);
        const float xv = to_f(xsm[s * ldx + c]), dyv = to_f(dys[s * ldx + c]);
        const float vs = dus[j][e] * es[hr], duv = du[j][e] + vs;
        rq[hr] += xv * vs;
        rdat[hr] += dyv * yo[j][e];
        rddt[hr] += xv * duv;
        dD[j][e & 1] += dyv * xv;
        if (s < sl && c < nch) dxg[(s0 + s) * H * P + c] = from_f<in_t>(duv * dts[s] + Dc[j][e & 1] * dyv);
      }
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const float qs = quad_sum(rq[hr]), dat = quad_sum(rdat[hr]), dd = quad_sum(rddt[hr]);
      const int s = r0 + 8 * hr;
      if (q == 0 && s < sl) {
        atomicAdd(p.ddtp + ab + s0 + s, dd);
        atomicAdd(p.da + ab + s0 + s, expf(as[s]) * dat - dts[s] * qs);
        dal += dts[s] * qs;
      }
    }
    __syncthreads();  // before the next source block's tiles replace these
  }
  dal = warp_sum(dal);
  if (lane == 0) atomicAdd(p.dalast + slot * H + head, dal);
  if (p.dD) {
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float v = col_sum(dD[j][e]);
        const int c = 8 * j + 2 * q + e;
        if (g == 0 && c < nch) atomicAdd(p.dD + head * P + ch0 + c, v);
      }
  }
}

// ------------------------------------------------------------------------------------------ K5: dB, dC
// grid: n_slots x 2 (dB, dC) x nb x head blocks x g, groups fastest. One (64 rows x n) fp32 accumulator; the heads
// of the CTA's head block are the k loop of the second term (uw = x or dy scaled per row, st = dS or h_in per head).
// With more than one head block a group (ssd_bwd_group_split), block 0 adds the first (dCB) term too, every block
// adds its fp32 partial into the zeroed dbc32 by atomics, and ssd_bwd_dbc_cvt_kernel writes dB / dC from it.
template <typename in_t>
__global__ void __launch_bounds__(kThr) ssd_bwd_dbc_kernel(const SsdBwdCudaParams p) {
  using E = typename TileType<in_t>::E;
  using F = Frag<E>;
  extern __shared__ float4 ssd_bwd_smem[];
  const int64_t NG = p.ngroups, H = p.nheads, P = p.headdim, Q = p.chunk_size, L = p.seqlen, n = p.dstate;
  const int nb = int(Q / kT);
  const int64_t hpg = H / NG, hc = ssd_bwd_group_heads(hpg), nhb = (hpg + hc - 1) / hc;
  const int64_t bid = blockIdx.x, grp = bid % NG, hb = (bid / NG) % nhb;
  int64_t rest = bid / NG / nhb;
  const int jb = int(rest % nb);
  rest /= nb;
  const bool is_dc = rest % 2 == 1;
  const int64_t slot = rest / 2;
  int64_t row, t0, clen;
  if (!ssd_cuda::chunk_of_slot(p, slot, row, t0, clen) || int64_t(jb) * kT >= clen) return;
  const int jl = int(clen - int64_t(jb) * kT < kT ? clen - int64_t(jb) * kT : kT);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, q = lane & 3, r0 = 16 * warp + g;
  const BwdSmem<E> S(n, P);
  const int ldn = S.ldn, ldq = S.ldq, ldp = S.ldp, nk = S.nk, kp = S.kp;
  E* tile = reinterpret_cast<E*>(ssd_bwd_smem);
  E* dcbs = tile + kT * ldn;
  E* uw = dcbs + kT * ldq;
  E* st = uw + kT * ldp;
  float* wv = reinterpret_cast<float*>(st + 16 * kp * ldn);
  const int nbv = int((clen + kT - 1) / kT);
  const E* dcbg = static_cast<const E*>(p.dcb) + (slot * NG + grp) * Q * Q;
  float acc[kMaxNT][4];
#pragma unroll
  for (int j = 0; j < kMaxNT; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
  // first term: dCB (stored by K3, zero outside the causal triangle and the chunk) times C_t (dB) or B_s (dC)
  const int b_lo = is_dc ? 0 : jb, b_hi = hb > 0 ? b_lo - 1 : (is_dc ? jb : nbv - 1);
  const in_t* bcg = static_cast<const in_t*>(is_dc ? p.B : p.C) + ((row * L + t0) * NG + grp) * n;
  for (int ob = b_lo; ob <= b_hi; ++ob) {
    const int ol = int(clen - int64_t(ob) * kT < kT ? clen - int64_t(ob) * kT : kT);
    tile_load(tile, ldn, bcg + int64_t(ob) * kT * NG * n, NG * n, ol, int(n), kT, 16 * nk);
    // dB: dcbs[t][j] = dCB block (ob, jb); dC: dcbs[j][s] = dCB block (jb, ob)
    const int64_t bo = is_dc ? int64_t(jb) * kT * Q + int64_t(ob) * kT : int64_t(ob) * kT * Q + int64_t(jb) * kT;
    if (nhb > 1) tile_load(dcbs, ldq, p.dcb32 + (slot * NG + grp) * Q * Q + bo, Q, kT, kT, kT, kT);
    else tile_load(dcbs, ldq, dcbg + bo, Q, kT, kT, kT, kT);
    __syncthreads();
#pragma unroll
    for (int kt = 0; kt < 4; ++kt) {
      if (16 * kt < ol) {
        typename F::A fa;
        if (is_dc) {
          fa = F::a_rows(dcbs + 16 * warp * ldq + 16 * kt, ldq, g, q);
        } else {  // A[j][t] = dCB[t][j]
          float av[8];
#pragma unroll
          for (int i = 0; i < 8; ++i)
            av[i] = to_f(dcbs[(16 * kt + 2 * q + (i & 1) + 8 * (i >> 2)) * ldq + r0 + 8 * ((i >> 1) & 1)]);
          fa = F::a_from(av);
        }
#pragma unroll
        for (int j = 0; j < kMaxNT; j += 2) {
          if (j < 2 * nk) {
            typename F::B b0, b1;
            b_rows2<E>(b0, b1, tile + 16 * kt * ldn + 8 * j, ldn, g, q);
            F::mma(acc[j], fa, b0);
            F::mma(acc[j + 1], fa, b1);
          }
        }
      }
    }
    __syncthreads();
  }
  // second term, over the group's heads: (u_j w_j) st, K = p
  const int64_t j0 = int64_t(jb) * kT, h_end = (hb + 1) * hc < hpg ? (hb + 1) * hc : hpg;
  for (int64_t jh = hb * hc; jh < h_end; ++jh) {
    const int64_t head = grp * hpg + jh, ab = (row * H + head) * L + t0;
    if (tid < kT) {
      float w = 0.f;
      if (tid < jl)
        w = is_dc ? expf(p.a[ab + j0 + tid]) : expf(p.a[ab + clen - 1] - p.a[ab + j0 + tid]) * p.dtp[ab + j0 + tid];
      wv[tid] = w;
    }
    __syncthreads();
    const int64_t uo = ((row * L + t0 + j0) * H + head) * P;
    if (is_dc) tile_load(uw, ldp, static_cast<const E*>(p.dy) + uo, H * P, jl, int(P), kT, 16 * kp, wv);
    else tile_load(uw, ldp, static_cast<const in_t*>(p.x) + uo, H * P, jl, int(P), kT, 16 * kp, wv);
    tile_load(st, ldn, (is_dc ? p.states_in : p.dS) + (slot * H + head) * P * n, n, int(P), int(n), 16 * kp, 16 * nk);
    __syncthreads();
    for (int kk = 0; kk < kp; ++kk) {
      const typename F::A fa = F::a_rows(uw + 16 * warp * ldp + 16 * kk, ldp, g, q);
#pragma unroll
      for (int j = 0; j < kMaxNT; j += 2) {
        if (j < 2 * nk) {
          typename F::B b0, b1;
          b_rows2<E>(b0, b1, st + 16 * kk * ldn + 8 * j, ldn, g, q);
          F::mma(acc[j], fa, b0);
          F::mma(acc[j + 1], fa, b1);
        }
      }
    }
    __syncthreads();
  }
  if (nhb > 1) {
    float* o32 = p.dbc32 + (is_dc ? p.batch * L * NG * n : 0) + ((row * L + t0 + j0) * NG + grp) * n;
#pragma unroll
    for (int j = 0; j < kMaxNT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = r0 + 8 * (e >> 1), c = 8 * j + 2 * q + (e & 1);
        if (r < jl && c < n) atomicAdd(o32 + int64_t(r) * NG * n + c, acc[j][e]);
      }
    return;
  }
  in_t* out = static_cast<in_t*>(is_dc ? p.dC : p.dB) + ((row * L + t0 + j0) * NG + grp) * n;
#pragma unroll
  for (int j = 0; j < kMaxNT; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = r0 + 8 * (e >> 1), c = 8 * j + 2 * q + (e & 1);
      if (r < jl && c < n) out[int64_t(r) * NG * n + c] = from_f<in_t>(acc[j][e]);
    }
}

// ------------------------------------------------------------------------------------------ launch
template <typename K>
inline cudaError_t bwd_launch(K kernel, dim3 grid, int64_t smem, cudaStream_t stream, const SsdBwdCudaParams& p) {
  cudaLaunchConfig_t cfg = {};
  cfg.blockDim = dim3(kThr);
  cfg.gridDim = grid;
  cfg.dynamicSmemBytes = size_t(smem);
  cfg.stream = stream;
  cudaError_t e = cudaSuccess;
  if (smem > 48 * 1024) e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (e == cudaSuccess) e = cudaLaunchKernelEx(&cfg, kernel, p);
  return e == cudaSuccess ? cudaGetLastError() : e;
}

// K0..K6 on one stream (instantiated in ssd_bwd_{bf16,fp16,fp32}.cu); checked by ssd_bwd_cuda (ssd_bwd_launch.cu).
template <typename in_t>
cudaError_t launch_ssd_bwd(const SsdBwdCudaParams& p, cudaStream_t stream) {
  using E = typename TileType<in_t>::E;
  if (p.nseq == 0 || p.nheads == 0 || p.headdim == 0) return cudaSuccess;
  const BwdSmem<E> S(p.dstate, p.headdim);
  const int64_t H = p.nheads, npb = (p.headdim + kC - 1) / kC, nb = p.chunk_size / kT;
  const int64_t pairs = (p.n_slots > 0 ? p.n_slots : 1) * H;
  const int64_t nsplit = ssd_bwd_group_split(H, p.ngroups);
  if (nsplit > 1 && (p.dcb32 == nullptr || p.dbc32 == nullptr)) return cudaErrorInvalidValue;
  const int64_t nhead_blk = p.n_slots * npb * H, ndcb = p.n_slots * (nb * (nb + 1) / 2) * nsplit * p.ngroups;
  const int64_t ndbc = p.n_slots * 2 * nb * nsplit * p.ngroups;
  if (nhead_blk > 0x7fffffffLL || ndcb > 0x7fffffffLL || ndbc > 0x7fffffffLL || pairs / kWarps + 1 > 0x7fffffffLL)
    return cudaErrorInvalidValue;
  cudaError_t e = bwd_launch(ssd_bwd_cumsum_kernel<in_t>, dim3(unsigned((pairs + kWarps - 1) / kWarps)), 0, stream, p);
  // grid-stride kernels: a few waves of 8 CTAs an SM on the largest GPUs are enough to stream the scratch
  const int64_t zn = p.n_slots * p.ngroups * p.chunk_size * p.chunk_size + 2 * p.batch * p.seqlen * p.ngroups * p.dstate;
  const unsigned zgrid = unsigned(std::min<int64_t>((zn + kThr - 1) / kThr, 132 * 8 * 4));
  if (e == cudaSuccess && nsplit > 1 && zn > 0) e = bwd_launch(ssd_bwd_zero_kernel<in_t>, dim3(zgrid), 0, stream, p);
  if (e == cudaSuccess && nhead_blk > 0)
    e = bwd_launch(ssd_bwd_dstate_kernel<in_t>, dim3(unsigned(nhead_blk)), S.k1, stream, p);
  const int64_t pn = p.headdim * p.dstate;
  if (e == cudaSuccess) {
    if (pn % 4 == 0)
      e = bwd_launch(ssd_bwd_pass_kernel<in_t, 4>, dim3(unsigned((pn + 4 * kThr - 1) / (4 * kThr)), unsigned(H),
                                                  unsigned(p.nseq)), 0, stream, p);
    else
      e = bwd_launch(ssd_bwd_pass_kernel<in_t, 1>, dim3(unsigned((pn + kThr - 1) / kThr), unsigned(H), unsigned(p.nseq)),
                     0, stream, p);
  }
  if (e != cudaSuccess || p.n_slots == 0) return e;
  e = bwd_launch(ssd_bwd_dcb_kernel<in_t>, dim3(unsigned(ndcb)), S.k3, stream, p);
  if (e == cudaSuccess) e = bwd_launch(ssd_bwd_dx_kernel<in_t>, dim3(unsigned(nhead_blk)), S.k4, stream, p);
  if (e == cudaSuccess) e = bwd_launch(ssd_bwd_dbc_kernel<in_t>, dim3(unsigned(ndbc)), S.k5, stream, p);
  if (e == cudaSuccess && nsplit > 1 && p.batch * p.seqlen > 0) {
    const int64_t cn = 2 * p.batch * p.seqlen * p.ngroups * p.dstate;
    e = bwd_launch(ssd_bwd_dbc_cvt_kernel<in_t>, dim3(unsigned(std::min<int64_t>((cn + kThr - 1) / kThr, 132 * 8 * 4))),
                   0, stream, p);
  }
  if (e == cudaSuccess)
    e = bwd_launch(ssd_bwd_dt_kernel<in_t>, dim3(unsigned((p.n_slots * H + kWarps - 1) / kWarps)), 0, stream, p);
  return e;
}

}  // namespace ssd_bwd
}  // namespace mamba_kernels
