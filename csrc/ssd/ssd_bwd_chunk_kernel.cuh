// CUDA backward of the chunked SSD: the chunk-parallel tensor-core kernels K3 (CB, dCB, intra-chunk d a), K4 (dx,
// d dt', state-path d a, dD) and K5 (dB, dC); their launch sequence with K0..K6 is in ssd_bwd_launch.cuh. Overview
// and equations: ssd_bwd_kernel.cuh.
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
//   bf16: K1 142, K3 168 (capped: 3 CTAs an SM), K4 244, K5 160, K0 / K2 / K6 / zero / cvt <= 48.
//   fp32 tiles: K1 136, K3 188, K4 255, K5 160 (fp16 inputs: K3 255, no spills).
//   sm_80 bf16: K1 156, K3 168 + 8 bytes spill (the cap), K4 255 + 8 bytes, K5 164.
// Shared memory (bf16, p 64 / 128, n 128): K1 26 KB, K3 72 (two stages) / 70 KB (one: g = h), K4 89 KB (two
// stages), K5 52 / 77 KB; fp32
// tiles up to 149 KB (K5 at p = n = 128: fits sm_80's 163 KB).
// Where the time goes, estimated (no per-kernel profile yet) at the issue shape b4 l4096 h80 p64 n128 g1 Q256, bf16,
// H200 (4.8 TB/s, 132 SMs); "first" is the first version (15.7 ms measured in all), "now" this one:
//   K1  1.0 GB HBM (dout, z, ypre in; dz, dy, G_c out) >= 0.21 ms. first ~1 ms: one element in flight a thread (the
//       global stores between loads serialise them); now 16-byte pieces, 4 in flight: ~0.3 ms.
//   K2  ~0.7 GB (dS r/w, h_in, d h_in, dinit), element-parallel: ~0.15-0.2 ms either way.
//   K3  840 MB of L2 tile reads (dy, x per head and block pair), 27 GFLOP: first ~3-5 ms (640 CTAs, <= 3 an SM, each
//       80 heads of two element-serial 8 KB tile loads); now 6400 CTAs of 8 heads, the next head's (dy_t, x_s) tiles
//       prefetched by cp.async, plus 13 M 2-wide fp32 atomics for dCB: ~0.2-0.4 ms.
//   K4  5120 CTAs at 2 an SM (253 registers), ~420 KB of tiles a CTA (2.1 GB from L2, 0.84 GB from HBM) >= 0.2 ms:
//       first ~6-8 ms (element-serial loads); now ~0.5-0.8 ms, the heaviest kernel: the (dy_t, CB) block-pair tiles
//       (10 of the 14 tile pairs a CTA) are prefetched by cp.async one pair ahead (bf16), x_s / dy_s ride in the
//       first pair's group; the B, C tiles and dS / h_in (converted from fp32) still wait.
//   K5  st (dS or h_in, 32 KB fp32 a head) + uw tiles: first ~3 ms (512 CTAs x 80 serial heads); now 5120 CTAs of 8
//       heads (16-byte batched loads; st converts fp32 -> bf16, so no cp.async) plus 21 M 2-wide fp32 atomics into
//       dbc32: ~0.3-0.5 ms.
//   K0 / K6 / zero (33 MB) / cvt: ~0.05 ms together.  Sum now ~1.6-2.4 ms against the first 15.7 (estimate).
// Known gaps: K4 re-reads dy_t / CB blocks per source block (10 block pairs a chunk at Q = 256) and holds 253
// registers (2 CTAs an SM); the head-split atomics are 2-wide on sm_90 only (atomic_add2).
#pragma once
#include "ssd/ssd_bwd_kernel.cuh"

namespace mamba_kernels {
namespace ssd_bwd {

// Buffers of K4's (dy_t, CB) block-pair tiles: two (cp.async prefetch of the next pair while this one is in the
// mma) for 2-byte tiles; one for fp32 tiles, whose second stage would take K4 to 172 KB (over sm_80's 163 KB).
template <typename E> constexpr int k4_stages() { return sizeof(E) == 2 ? 2 : 1; }

// Buffers of K3's per-head (dy_t, x_s) tiles: two (cp.async prefetch of the next head while this one is in the mma)
// when a CTA walks more than one head and both tiles are plain 16-byte copies of 2-byte tiles (bf16 x; p a multiple
// of 8; aligned pointers; fp32 tiles would spill under the extra registers); else one, as at g = h where a CTA has
// a single head and the
// second stage would only cost occupancy (K3 at p 128: 104 KB against 70).
template <typename in_t>
__host__ __device__ inline int k3_stages(const SsdBwdCudaParams& p) {
  using E = typename TileType<in_t>::E;
  constexpr int V = 16 / int(sizeof(E));
  return (sizeof(E) == 2 && ssd_bwd_group_heads(p.nheads / p.ngroups) > 1 && std::is_same<in_t, E>::value &&
          p.headdim % V == 0 &&
          ((reinterpret_cast<uintptr_t>(p.x) | reinterpret_cast<uintptr_t>(p.dy)) & 15) == 0) ? 2 : 1;
}

// K3's minimum CTAs an SM (register cap 168): 3 for bf16 tiles, which fit without spills (12 warps an SM to hide the
// tile loads; uncapped, the two-stage version took 216). fp32 tiles (3xTF32 fragments) spill ~100 bytes under that
// cap, and even under an explicit minimum of 1 (255 registers, 20 bytes): 0 leaves ptxas its own choice (no spills).
template <typename in_t> constexpr int k3_min_ctas() {
  return sizeof(typename TileType<in_t>::E) == 2 ? 3 : 0;
}

// Shared-memory sizes (bytes) of the chunk kernels; E is the tile element type.
template <typename E> struct BwdSmem {
  int ldn, ldx, ldq, ldp, kp, nk;
  int64_t k1, k3, k3_stage, k4_union, k4, k5;
  __host__ __device__ explicit BwdSmem(int64_t n, int64_t P) {
    nk = int((n + 15) / 16);
    kp = int((P + 15) / 16);
    ldn = tile_ld<E>(n);
    ldx = tile_ld<E>(kC);
    ldq = tile_ld<E>(kT);
    ldp = tile_ld<E>(P);
    const int64_t es = int64_t(sizeof(E));
    k1 = (int64_t(kT) * ldx + int64_t(kT) * ldn) * es + kT * 4;
    k3 = (2 * int64_t(kT) * ldn + 2 * int64_t(kT) * ldp) * es + (3 * kT + kWarps * kT) * 4;  // one stage
    k3_stage = 2 * int64_t(kT) * ldp * es + 3 * kT * 4;  // what a second stage adds
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
__global__ void __launch_bounds__(kThr, k3_min_ctas<in_t>()) ssd_bwd_dcb_kernel(const SsdBwdCudaParams p) {
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
  const int nst = k3_stages<in_t>(p);
  E* ct = reinterpret_cast<E*>(ssd_bwd_smem);
  E* bs = ct + kT * ldn;
  E* tiles = bs + kT * ldn;  // stage b: dy_t tile at tiles + 2 b kT ldp, x_s tile kT ldp after it
  float* vecs = reinterpret_cast<float*>(tiles + 2 * nst * kT * ldp);  // stage b: a_t, a_s, dt'_s at vecs + 3 b kT
  float* red = vecs + 3 * nst * kT;
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
  // inside the chunk and the causal triangle (recomputed where needed: an ok[8][4] array held 32 registers)
  auto okf = [&](int j, int e) {
    const int t = r0 + 8 * (e >> 1), s = 8 * j + 2 * q + (e & 1);
    return t < tl && s < sl && (tb > sb || s <= t);
  };
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int t = r0 + 8 * (e >> 1), s = 8 * j + 2 * q + (e & 1);
      const E v = from_f<E>(okf(j, e) ? cbv[j][e] : 0.f);
      if (hb == 0) cbg[int64_t(t) * Q + s] = v;
      cbv[j][e] = to_f(v);
    }
  float acc[8][4];
#pragma unroll
  for (int j = 0; j < 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
  const int64_t h_end = (hb + 1) * hc < hpg ? (hb + 1) * hc : hpg;
  auto issue = [&](int64_t jh, int buf) {  // stage buf <- head jh's tiles and per-token vectors
    const int64_t head = grp * hpg + jh, ab = (row * H + head) * L + t0;
    E* dyt = tiles + 2 * buf * kT * ldp;
    E* xs = dyt + kT * ldp;
    const E* dysrc = static_cast<const E*>(p.dy) + ((row * L + t0 + int64_t(tb) * kT) * H + head) * P;
    const in_t* xsrc = static_cast<const in_t*>(p.x) + ((row * L + t0 + int64_t(sb) * kT) * H + head) * P;
    bool done = false;
    if constexpr (std::is_same<in_t, E>::value) {
      if (nst == 2) {
        tile_copy_async(dyt, ldp, dysrc, H * P, tl, int(P), kT, 16 * kp);
        tile_copy_async(xs, ldp, xsrc, H * P, sl, int(P), kT, 16 * kp);
        done = true;
      }
    }
    if (!done) {
      tile_load(dyt, ldp, dysrc, H * P, tl, int(P), kT, 16 * kp);
      tile_load(xs, ldp, xsrc, H * P, sl, int(P), kT, 16 * kp);
    }
    if (tid < kT) {
      float* v = vecs + 3 * buf * kT;
      v[tid] = tid < tl ? p.a[ab + int64_t(tb) * kT + tid] : 0.f;
      v[kT + tid] = tid < sl ? p.a[ab + int64_t(sb) * kT + tid] : 0.f;
      v[2 * kT + tid] = tid < sl ? p.dtp[ab + int64_t(sb) * kT + tid] : 0.f;
    }
  };
  if (nst == 2 && hb * hc < h_end) {
    issue(hb * hc, 0);
    cp_async_commit();
  }
  for (int64_t jh = hb * hc; jh < h_end; ++jh) {
    const int64_t head = grp * hpg + jh, ab = (row * H + head) * L + t0;
    const int buf = nst == 2 ? int((jh - hb * hc) & 1) : 0;
    if (nst == 2) {  // prefetch the next head into the other stage (freed by the previous iteration's barrier)
      if (jh + 1 < h_end) issue(jh + 1, buf ^ 1);
      cp_async_commit();
      cp_async_wait<1>();  // this head's group has landed
    } else {
      issue(jh, 0);
    }
    __syncthreads();
    const E* dyt = tiles + 2 * buf * kT * ldp;
    const E* xs = dyt + kT * ldp;
    const float* at = vecs + 3 * buf * kT;
    const float* as = at + kT;
    const float* dts = as + kT;
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
        const float gv = okf(j, e) ? dm[j][e] * expf(at[t] - as[s]) * dts[s] : 0.f;
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
    float* d32 = p.dcb32 + blk;  // column pairs 8 j + 2 q, + 1: even offsets (Q, blk even), acc 0 where !ok
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; e += 2)
        if (okf(j, e) || okf(j, e + 1))
          atomic_add2(d32 + int64_t(r0 + 8 * (e >> 1)) * Q + 8 * j + 2 * q, acc[j][e], acc[j][e + 1]);
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
    // x_s, dy_s: by cp.async in the group of the first block pair's stage (one wait covers all four tiles, in
    // flight together) for bf16 (x already in the tile type); else loaded here (fp32 tiles: the async path cost 16
    // more bytes of spill)
    bool xdy_async = false;
    if constexpr (std::is_same<in_t, E>::value && sizeof(E) == 2) {
      if (dy_async && (reinterpret_cast<uintptr_t>(p.x) & 15) == 0) {
        tile_copy_async(xsm, ldx, xg + s0 * H * P, H * P, sl, nch, kT, kC);
        tile_copy_async(dys, ldx, dyg + s0 * H * P, H * P, sl, nch, kT, kC);
        xdy_async = true;
      }
    }
    if (!xdy_async) {
      tile_load(xsm, ldx, xg + s0 * H * P, H * P, sl, nch, kT, kC);
      tile_load(dys, ldx, dyg + s0 * H * P, H * P, sl, nch, kT, kC);
    }
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
          mma_row_tiles<E>(du, fa, dyt + 16 * kt * ldx, ldx, 8, g, q);
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
        mma_row_tiles<E>(acc, fa, tile + 16 * kt * ldn, ldn, 2 * nk, g, q);
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
      mma_row_tiles<E>(acc, fa, st + 16 * kk * ldn, ldn, 2 * nk, g, q);
    }
    __syncthreads();
  }
  if (nhb > 1) {
    float* o32 = p.dbc32 + (is_dc ? p.batch * L * NG * n : 0) + ((row * L + t0 + j0) * NG + grp) * n;
    if (n % 2 == 0) {  // column pairs at even offsets: 2-wide atomics
#pragma unroll
      for (int j = 0; j < kMaxNT; ++j)
#pragma unroll
        for (int e = 0; e < 4; e += 2) {
          const int r = r0 + 8 * (e >> 1), c = 8 * j + 2 * q;
          if (r < jl && c < n) atomic_add2(o32 + int64_t(r) * NG * n + c, acc[j][e], acc[j][e + 1]);
        }
      return;
    }
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

}  // namespace ssd_bwd
}  // namespace mamba_kernels
