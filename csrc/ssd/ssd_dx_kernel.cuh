// The dx stage (B2) of the chunked SSD's Triton backward as one persistent CUDA kernel (sm_80+, mma.sync; no torch).
// Semantics and layouts: SsdDxParams in ssd.h; the Triton twin is _ssd_bwd_dx_kernel (mamba_kernels/ssd/_triton_bwd.py)
// with DA_OUT off (the state-out d a term is the dC launch's).
//
// Why a CUDA kernel: the Triton kernel holds ~250 registers of tiles a thread (2 CTAs of 4 warps an SM) and re-reads
// the chunk's C B^T and B tiles for every head. Here one CTA an SM walks a contiguous range of (chunk, head) items,
// head fastest, so consecutive items share the chunk's CB and B (a whole group at g = 1: 80 heads at b4 l4096 h80
// p64 n128), which stay in shared memory until the (chunk, group) changes; each item's dy / x / dS tiles and its
// decay cumsum / dt' rows are brought by cp.async into one of two stages while the previous item computes.
//
// Work of one item (8 warps; warp w owns the p columns 32 (w / 4) .. +31 and the row blocks w % 4 and 7 - w % 4 of 16
// source tokens s, so that every warp has 9 of the 36 causal 16 x 16 blocks):
//   du  = e_s (B dS^T)_s            (A = B rows from shared memory, B = dS rows; e_s = exp(a_L - a_s))
//   du += (CB o exp(a_t - a_s))^T dy (A = CB^T by ldmatrix.trans, decay-masked in registers; B = dy)
// then dx = dt' du + D dy (stored from the accumulators), and the row / column sums added atomically.
#pragma once
#include "ssd/ssd_common.cuh"

namespace mamba_kernels {
namespace ssd_dx {

using ssd_cuda::Frag;
constexpr int kQ = 128, kP = 64, kN = 128;
constexpr int kWarps = 8, kThreads = 32 * kWarps;
// shared rows padded by 16 bytes: consecutive rows start 4 banks apart (conflict-free ldmatrix and pair loads)
constexpr int kLdQ = kQ + 8, kLdN = kN + 8, kLdP = kP + 8;
constexpr int kCbBytes = kQ * kLdQ * 2, kBBytes = kQ * kLdN * 2;
constexpr int kTileBytes = kQ * kLdP * 2, kDsBytes = kP * kLdN * 2;
constexpr int kStageBytes = 2 * kTileBytes + kDsBytes + 2 * kQ * 4;  // dy, x, dS, a, dt'
constexpr int kSmemBytes = kCbBytes + kBBytes + 2 * kStageBytes;     // 176 KB: one CTA an SM

// One (chunk slot, head) item: chunk k, head hh of group grp, first token's offsets, valid length ln (0: nothing).
struct Item {
  int64_t k, tok0, ab;
  int hh, grp, ln;
};

// Chunk fields of item `r` (slot r.k, head r.hh already set).
__device__ __forceinline__ void set_chunk(const SsdDxParams& p, Item& r) {
  int64_t row, start, ln;
  if (p.tab != nullptr) {
    row = 0;
    start = p.tab[2 * r.k];
    ln = p.tab[2 * r.k + 1];
  } else {
    row = r.k / p.chunks_per_row;
    start = (r.k - row * p.chunks_per_row) * kQ;
    ln = p.seqlen - start;
  }
  r.ln = int(ln < 0 ? 0 : (ln > kQ ? kQ : ln));
  r.tok0 = row * p.seqlen + start;
  r.ab = (row * p.nheads + r.hh) * p.seqlen + start;
}

// The item after `r` (head fastest): a new chunk's fields only when the head wraps.
__device__ __forceinline__ Item next_item(const SsdDxParams& p, Item r) {
  if (++r.hh == p.nheads) {
    r.hh = 0;
    ++r.k;
    set_chunk(p, r);
  } else {
    r.ab += p.seqlen;
  }
  r.grp = int(r.hh / (p.nheads / p.ngroups));
  return r;
}

__device__ __forceinline__ Item item_of(const SsdDxParams& p, int64_t it) {
  Item r;
  r.k = it / p.nheads;
  r.hh = int(it - r.k * p.nheads);
  r.grp = int(r.hh / (p.nheads / p.ngroups));
  set_chunk(p, r);
  return r;
}

__device__ __forceinline__ void unpack_bf16x2(uint32_t w, float& lo, float& hi) {
#if defined(__CUDA_ARCH__)
  lo = __uint_as_float(w << 16);
  hi = __uint_as_float(w & 0xffff0000u);
#else
  const uint32_t a = w << 16, b = w & 0xffff0000u;
  __builtin_memcpy(&lo, &a, 4);
  __builtin_memcpy(&hi, &b, 4);
#endif
}

// Stage tiles of item `it`: dy, x (rows >= ln zero), dS, a, dt' (rows >= ln zero).
template <typename E>
__device__ __forceinline__ void load_stage(const SsdDxParams& p, const Item& it, char* st, int tid) {
  E* dys = reinterpret_cast<E*>(st);
  E* xs = reinterpret_cast<E*>(st + kTileBytes);
  E* dss = reinterpret_cast<E*>(st + 2 * kTileBytes);
  float* as = reinterpret_cast<float*>(st + 2 * kTileBytes + kDsBytes);
  const int64_t hp = p.nheads * kP, base = (it.tok0 * p.nheads + it.hh) * kP;
  const E* dyg = static_cast<const E*>(p.dy) + base;
  const E* xg = static_cast<const E*>(p.x) + base;
#pragma unroll
  for (int i = tid; i < kQ * (kP / 8); i += kThreads) {
    const int r = i / (kP / 8), c = (i % (kP / 8)) * 8;
    if (r < it.ln) {
      cp_async16(dys + r * kLdP + c, dyg + r * hp + c);
      cp_async16(xs + r * kLdP + c, xg + r * hp + c);
    } else {
      ssd_cuda::zero16(dys + r * kLdP + c);
      ssd_cuda::zero16(xs + r * kLdP + c);
    }
  }
  const E* dsg = static_cast<const E*>(p.dS) + (it.k * p.nheads + it.hh) * int64_t(kP * kN);
#pragma unroll
  for (int i = tid; i < kP * (kN / 8); i += kThreads) {
    const int r = i / (kN / 8), c = (i % (kN / 8)) * 8;
    cp_async16(dss + r * kLdN + c, dsg + r * kN + c);
  }
  const int r = tid % kQ;
  const float* src = (tid < kQ ? p.a : p.dtp) + it.ab + r;
  float* dst = as + tid;  // a in as[0 .. Q), dt' in as[Q .. 2Q)
  if (r < it.ln) cp_async4(dst, src); else *dst = 0.f;
}

// The chunk's C B^T (rows >= ln zero; the upper triangle is read but masked) and B rows (rows >= ln zero) of the
// item's group.
template <typename E>
__device__ __forceinline__ void load_cb_b(const SsdDxParams& p, const Item& it, E* cbs, E* bs, int tid) {
  const E* cbg = static_cast<const E*>(p.cb) + (it.k * p.ngroups + it.grp) * int64_t(kQ * kQ);
  const E* bg = static_cast<const E*>(p.B) + (it.tok0 * p.ngroups + it.grp) * kN;
  const int64_t gn = p.ngroups * kN;
#pragma unroll 4
  for (int i = tid; i < kQ * (kQ / 8); i += kThreads) {
    const int r = i / (kQ / 8), c = (i % (kQ / 8)) * 8;  // rows past the chunk zero: they meet u_t = 0
    if (r < it.ln) cp_async16(cbs + r * kLdQ + c, cbg + r * kQ + c); else ssd_cuda::zero16(cbs + r * kLdQ + c);
  }
#pragma unroll 4
  for (int i = tid; i < kQ * (kN / 8); i += kThreads) {
    const int r = i / (kN / 8), c = (i % (kN / 8)) * 8;
    if (r < it.ln) cp_async16(bs + r * kLdN + c, bg + r * gn + c); else ssd_cuda::zero16(bs + r * kLdN + c);
  }
}

// (cb(t, s), cb(t + 1, s)) of one A register, times exp(a_t - a_s) where s <= t < ln, else 0 (the unwritten upper
// triangle may hold anything: select, never multiply). Diagonal blocks only.
__device__ __forceinline__ uint32_t decay_pair(uint32_t w, int s, int t, float a_s, float a_t0, float a_t1, int ln) {
  float lo, hi;
  unpack_bf16x2(w, lo, hi);
  lo = (t >= s && t < ln) ? lo * __expf(a_t0 - a_s) : 0.f;
  hi = (t + 1 >= s && t + 1 < ln) ? hi * __expf(a_t1 - a_s) : 0.f;
  return ssd_cuda::pack_bf16(lo, hi);
}

// (cb(t, s) u_t, cb(t + 1, s) u_{t+1}) of one A register (off-diagonal blocks: every t > s).
__device__ __forceinline__ uint32_t scale_pair(uint32_t w, float u0, float u1) {
  float lo, hi;
  unpack_bf16x2(w, lo, hi);
  return ssd_cuda::pack_bf16(lo * u0, hi * u1);
}

// v[0 .. H) += the partner lane's matching half (lane ^ lane_xor): the upper lane keeps v[H .. 2H) in v[0 .. H), the
// lower one v[0 .. H); summed with what the partner held there.
template <int H>
__device__ __forceinline__ void swap_halves_sum(float (&v)[16], bool upper, int lane_xor) {
#pragma unroll
  for (int i = 0; i < H; ++i) {
    const float send = upper ? v[i] : v[i + H];
    const float keep = upper ? v[i + H] : v[i];
    v[i] = keep + __shfl_xor_sync(0xffffffffu, send, lane_xor);
  }
}

// One item. Warp w owns the 16 source rows of block rb = w (w < 4) or 11 - w and all 64 p columns, so that the two
// warps of a scheduler (w, w + 4) share 9 of the 36 causal blocks. With a_r = a at the block's last valid token,
// exp(a_t - a_s) = u_t v_s for t in later blocks (u_t = exp(a_t - a_r), v_s = exp(a_r - a_s)) and e_s = w_r v_s
// (w_r = exp(a_L - a_r)), hence  du_s = v_s (w_r P_s + sum_t cb(t, s) u_t dy_t) + (diagonal block, exact decays),
// P = B dS^T: 4 exps a lane a later block instead of 8 masked ones.
template <typename E>
__device__ __forceinline__ void compute_item(const SsdDxParams& p, const Item& it, const E* cbs, const E* bs,
                                             const char* st, int warp, int lane) {
  const E* dys = reinterpret_cast<const E*>(st);
  const E* xs = reinterpret_cast<const E*>(st + kTileBytes);
  const E* dss = reinterpret_cast<const E*>(st + 2 * kTileBytes);
  const float* as = reinterpret_cast<const float*>(st + 2 * kTileBytes + kDsBytes);
  const float* dts = as + kQ;
  const int ln = it.ln;
  const int rb = warp < 4 ? warp : 11 - warp, s0 = 16 * rb;
  if (s0 >= ln) return;  // no valid source row in this warp's block
  const int g = lane >> 2, q = lane & 3, m = lane >> 3, r8 = lane & 7;
  const int sA = s0 + g, sB = sA + 8;
  float Dc[8][2];  // issued first: their latency hides behind the dots
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 2; ++e)
      Dc[j][e] = p.D == nullptr ? 0.f : (p.D_per_channel ? p.D[it.hh * kP + 8 * j + 2 * q + e] : p.D[it.hh]);
  const float a_r = as[s0 + 15 < ln ? s0 + 15 : ln - 1], a_last = as[ln - 1];
  float acc[8][4];
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[j][e] = 0.f;
  // P = B dS^T over n: A = B rows (rows 0-7 / 8-15 x k 0-7 / 8-15), B = dS rows (c 0-7 / 8-15 x k 0-7 / 8-15)
#pragma unroll
  for (int kk = 0; kk < kN / 16; ++kk) {
    typename Frag<E>::A af;
    ssd_cuda::ldsm_x4(af.r, bs + (s0 + r8 + 8 * (m & 1)) * kLdN + 16 * kk + 8 * (m >> 1));
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
      uint32_t r[4];
      ssd_cuda::ldsm_x4(r, dss + (16 * jj + r8 + 8 * (m >> 1)) * kLdN + 16 * kk + 8 * (m & 1));
      const typename Frag<E>::B b0{{r[0], r[1]}}, b1{{r[2], r[3]}};
      Frag<E>::mma(acc[2 * jj], af, b0);
      Frag<E>::mma(acc[2 * jj + 1], af, b1);
    }
  }
  // x rows sA / sB in registers (also for the epilogue); q_s = x_s . P_s, scaled by e_s below
  uint32_t xw[8][2];
  float qv[2] = {0.f, 0.f};
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      xw[j][hf] = *reinterpret_cast<const uint32_t*>(xs + (sA + 8 * hf) * kLdP + 8 * j + 2 * q);
      float x0, x1;
      unpack_bf16x2(xw[j][hf], x0, x1);
      qv[hf] += x0 * acc[j][2 * hf] + x1 * acc[j][2 * hf + 1];
    }
  const float w_r = __expf(a_last - a_r);
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[j][e] *= w_r;
  // later target blocks: A(s, t) = cb(t, s) u_t (CB rows >= ln are zero in shared memory, u_t = 0 there)
  for (int tb = rb + 1; tb < kQ / 16 && 16 * tb < ln; ++tb) {
    uint32_t r[4];  // matrices (t 0-7, s 0-7) (t 0-7, s 8-15) (t 8-15, s 0-7) (t 8-15, s 8-15), transposed
    ssd_cuda::ldsm_x4_trans(r, cbs + (16 * tb + r8 + 8 * (m >> 1)) * kLdQ + s0 + 8 * (m & 1));
    const int t0 = 16 * tb + 2 * q;
    const float u0 = t0 < ln ? __expf(as[t0] - a_r) : 0.f, u1 = t0 + 1 < ln ? __expf(as[t0 + 1] - a_r) : 0.f;
    const float u8 = t0 + 8 < ln ? __expf(as[t0 + 8] - a_r) : 0.f;
    const float u9 = t0 + 9 < ln ? __expf(as[t0 + 9] - a_r) : 0.f;
    typename Frag<E>::A af;
    af.r[0] = scale_pair(r[0], u0, u1);
    af.r[1] = scale_pair(r[1], u0, u1);
    af.r[2] = scale_pair(r[2], u8, u9);
    af.r[3] = scale_pair(r[3], u8, u9);
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
      typename Frag<E>::B b0, b1;
      ssd_cuda::b_rows2<E>(b0, b1, dys + 16 * tb * kLdP + 16 * jj, kLdP, g, q);
      Frag<E>::mma(acc[2 * jj], af, b0);
      Frag<E>::mma(acc[2 * jj + 1], af, b1);
    }
  }
  const float a_sA = as[sA], a_sB = as[sB];
  const float v[2] = {sA < ln ? __expf(a_r - a_sA) : 0.f, sB < ln ? __expf(a_r - a_sB) : 0.f};
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[j][e] *= v[e >> 1];
  qv[0] *= w_r * v[0];
  qv[1] *= w_r * v[1];
  {  // diagonal block: exact, masked decays
    uint32_t r[4];
    ssd_cuda::ldsm_x4_trans(r, cbs + (s0 + r8 + 8 * (m >> 1)) * kLdQ + s0 + 8 * (m & 1));
    const int t0 = s0 + 2 * q;
    const float at0 = as[t0], at1 = as[t0 + 1], at8 = as[t0 + 8], at9 = as[t0 + 9];
    typename Frag<E>::A af;
    af.r[0] = decay_pair(r[0], sA, t0, a_sA, at0, at1, ln);
    af.r[1] = decay_pair(r[1], sB, t0, a_sB, at0, at1, ln);
    af.r[2] = decay_pair(r[2], sA, t0 + 8, a_sA, at8, at9, ln);
    af.r[3] = decay_pair(r[3], sB, t0 + 8, a_sB, at8, at9, ln);
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
      typename Frag<E>::B b0, b1;
      ssd_cuda::b_rows2<E>(b0, b1, dys + s0 * kLdP + 16 * jj, kLdP, g, q);
      Frag<E>::mma(acc[2 * jj], af, b0);
      Frag<E>::mma(acc[2 * jj + 1], af, b1);
    }
  }
  // epilogue: dx = dt' du + D dy; d dt' row sums x.du; dD column sums dy.x
  float dDp[16];  // [2 j + e]: column 8 j + 2 q + e
#pragma unroll
  for (int i = 0; i < 16; ++i) dDp[i] = 0.f;
  float dal = 0.f;
  const int64_t hp = p.nheads * kP;
  E* dxg = static_cast<E*>(p.dx) + (it.tok0 * p.nheads + it.hh) * kP;
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    const int s = sA + 8 * hf;
    const float dt_s = dts[s];
    E* dxr = dxg + s * hp + 2 * q;
    float ddt = 0.f;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      float x0, x1, y0, y1;
      unpack_bf16x2(xw[j][hf], x0, x1);
      unpack_bf16x2(*reinterpret_cast<const uint32_t*>(dys + s * kLdP + 8 * j + 2 * q), y0, y1);
      const float du0 = acc[j][2 * hf], du1 = acc[j][2 * hf + 1];
      ddt += x0 * du0 + x1 * du1;
      dDp[2 * j] += y0 * x0;
      dDp[2 * j + 1] += y1 * x1;
      if (s < ln)
        *reinterpret_cast<uint32_t*>(dxr + 8 * j) =
            ssd_cuda::pack_bf16(du0 * dt_s + Dc[j][0] * y0, du1 * dt_s + Dc[j][1] * y1);
    }
    float qs = qv[hf];
    ddt += __shfl_xor_sync(0xffffffffu, ddt, 1);
    ddt += __shfl_xor_sync(0xffffffffu, ddt, 2);
    qs += __shfl_xor_sync(0xffffffffu, qs, 1);
    qs += __shfl_xor_sync(0xffffffffu, qs, 2);
    if (q == 0 && s < ln) {
      atomicAdd(p.ddtp + it.ab + s, ddt);
      atomicAdd(p.da + it.ab + s, -dt_s * qs);
      dal += dt_s * qs;
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) dal += __shfl_xor_sync(0xffffffffu, dal, o);
  if (lane == 0) atomicAdd(p.dalast + it.k * p.nheads + it.hh, dal);
  if (p.dD != nullptr) {
    // sum the 16 column partials over the 8 row groups g, halving the values a lane holds at each step (lanes
    // differing in bit b of g swap halves): the lane ends with the column pair 8 jb + 2 q, +1 of its own
    swap_halves_sum<8>(dDp, g & 1, 4);
    swap_halves_sum<4>(dDp, g & 2, 8);
    swap_halves_sum<2>(dDp, g & 4, 16);
    const int jb = (g & 1) * 4 + (g & 2) + ((g >> 2) & 1);  // (2 jb) = 8 (g&1) + 4 (g>>1 &1) + 2 (g>>2 &1)
    atomicAdd(p.dD + it.hh * kP + 8 * jb + 2 * q, dDp[0]);
    atomicAdd(p.dD + it.hh * kP + 8 * jb + 2 * q + 1, dDp[1]);
  }
}

extern __shared__ float4 ssd_dx_smem[];

// Grid: p.num_ctas CTAs (one an SM), each a contiguous range of the n_slots * nheads items, head fastest.
template <typename E>
__global__ void __launch_bounds__(kThreads, 1) ssd_dx_kernel(const SsdDxParams p) {
  char* sm = reinterpret_cast<char*>(ssd_dx_smem);
  E* cbs = reinterpret_cast<E*>(sm);
  E* bs = reinterpret_cast<E*>(sm + kCbBytes);
  char* stage0 = sm + kCbBytes + kBBytes;
  const int64_t total = p.n_slots * p.nheads;
  const int64_t i0 = int64_t(blockIdx.x) * total / gridDim.x, i1 = int64_t(blockIdx.x + 1) * total / gridDim.x;
  if (i0 >= i1) return;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  Item cur = item_of(p, i0);
  int64_t key = cur.k * p.ngroups + cur.grp;
  load_cb_b<E>(p, cur, cbs, bs, tid);
  load_stage<E>(p, cur, stage0, tid);
  cp_async_commit();
  for (int64_t it = i0; it < i1; ++it) {
    char* st = stage0 + ((it - i0) & 1) * kStageBytes;
    char* st_next = stage0 + (((it - i0) & 1) ^ 1) * kStageBytes;
    const bool has_next = it + 1 < i1;
    Item nxt = cur;
    if (has_next) {
      nxt = next_item(p, cur);
      load_stage<E>(p, nxt, st_next, tid);  // its buffer's last reader (item it - 1) passed the barrier below
    }
    cp_async_commit();
    cp_async_wait<1>();  // everything but the copies just issued
    __syncthreads();
    if (cur.ln > 0) compute_item<E>(p, cur, cbs, bs, st, warp, lane);
    __syncthreads();
    if (has_next) {
      const int64_t nkey = nxt.k * p.ngroups + nxt.grp;
      if (nkey != key) load_cb_b<E>(p, nxt, cbs, bs, tid);  // waited for at the next iteration's top
      key = nkey;
      cur = nxt;
    }
    cp_async_commit();
  }
  cp_async_wait<0>();
}

template <typename E>
cudaError_t launch_ssd_dx(const SsdDxParams& p, cudaStream_t stream) {
  const int64_t total = p.n_slots * p.nheads;
  if (total == 0) return cudaSuccess;
  cudaLaunchConfig_t cfg = {};
  cfg.blockDim = dim3(kThreads);
  cfg.gridDim = dim3(unsigned(total < p.num_ctas ? total : p.num_ctas));
  cfg.dynamicSmemBytes = size_t(kSmemBytes);
  cfg.stream = stream;
  cudaError_t e = cudaFuncSetAttribute(ssd_dx_kernel<E>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
  if (e == cudaSuccess) e = cudaLaunchKernelEx(&cfg, ssd_dx_kernel<E>, p);
  return e == cudaSuccess ? cudaGetLastError() : e;
}

}  // namespace ssd_dx
}  // namespace mamba_kernels
