// Mamba-1 selective scan forward, "sequential slices" variant (lab knob MK_SS_FWD_SEQ=1; default off, so the
// production build never compiles this). Included by selective_scan_fwd_kernel.cuh after its helpers.
//
// Design: a thread owns one channel and a slice of kS = MK_SS_FWD_SEQ_S consecutive states (kL = n / kS
// adjacent lanes a channel, kL a power of two <= 32; other n fall back to the production kernel) and walks
// the sequence SEQUENTIALLY in time, 8 tokens at a time, with no scan across lanes:
//   h[s] = ex2(dt_t A[s] log2e) h[s] + (dt_t u_t) B_t[s],   y_t += C_t[s] h[s]
// (kS independent chains; the exponentials do not depend on h). Per block of 8 tokens:
//   - lane r < min(kL, 8) of a channel loads its kTok = 8 / min(kL, 8) tokens of delta and u (one vector
//     load each), computes dt = softplus(delta + bias) and dt u for them; 2 x 8 shuffles broadcast the 8
//     (dt, dt u) pairs to the channel's lanes (lanes r >= 8 duplicate lane r % 8's work, unused);
//   - per state of the slice: B and C rows (variable: 8 tokens as one 16-byte vector for 16-bit inputs, two
//     for fp32, through L1, shared by all channels of a group; constant: registers), then the 8 steps;
//   - y (8 partial sums over the slice) is reduced over the kL lanes by a reduce-scatter butterfly (xor
//     offsets min(kL, 8) / 2 .. 1, each level sending half of the remaining vector; then all-reduce levels
//     8 .. kL / 2 of one value): lane r < min(kL, 8) ends with the full y of its own kTok tokens, and writes
//     out = (y + D u) silu(z) for them (z loaded as one vector).
// Features as in the production kernel: initial_state, last_state, varlen (a thread walks each sequence in
// turn from its own initial state; 8-token blocks start at the sequence start, unaligned ones load scalars),
// training checkpoints (p.states: the state entering every chunk of 2^ckpt_log2 >= 8 steps: block starts),
// delta_bias, softplus, D, z, fp32 / fp16 / bf16, any l (tail blocks: masked scalar loads, dt = 0 past the
// end: decay 1, input 0), any d (threads past the last channel compute on it and store nothing).
// MK_SS_FWD_SEQ_PREFETCH (1): every 128 bytes of a row, an L2 prefetch of the row's next 128-byte line (u,
// delta, z, the slice's B / C rows), so that with only ~8 warps an SM the next loads hit L2, not HBM.
// Static cost (sm_90a, nvcc 13.0, bf16, variable B/C, n = 16; hot path of the time loop, one lane, one
// aligned 8-token block, prefetch block excluded (+29 every 8th block)): S = 4: 451 instructions per 8 x 4
// (token, state) = 14.1 (221 registers); S = 8: 12.0 (254); S = 2: 16.6 (144); no spills. Of the 14.1:
// FMUL dt A, MUFU.EX2, FMUL dtu B, FFMA h, FFMA y = 5, the bf16 -> fp32 unpack of B and C (one LOP3 or SHF a
// value, done by every lane that reads it) = 2, and the per-lane work per 8 tokens spread over only S
// states: softplus (2 tokens ~28), 16 SHFL of (dt, dt u), the y reduction (6 SHFL + 12 FSEL + 6 FADD), the
// epilogue (~18), 11 loads, addressing / loop / branches (~60). The production kernel measures ~9.3.
// Blocks of kSeqThreads = 128 threads (128 / kL channels of one batch row); grid (ceil(d kL / 128), batch).
#pragma once

#ifndef MK_SS_FWD_SEQ_S
#define MK_SS_FWD_SEQ_S 4
#endif
#ifndef MK_SS_FWD_SEQ_PREFETCH
#define MK_SS_FWD_SEQ_PREFETCH 1
#endif
#ifndef MK_SS_FWD_SEQ_MIN_BLOCKS
#define MK_SS_FWD_SEQ_MIN_BLOCKS 2
#endif

namespace mamba_kernels {
namespace ss {

constexpr int kSeqS = MK_SS_FWD_SEQ_S;          // states per thread
constexpr int kSeqThreads = 128;
constexpr bool kSeqPrefetch = MK_SS_FWD_SEQ_PREFETCH != 0;  // L2 prefetch of the next 128-byte lines
constexpr int kSeqMinBlocks = MK_SS_FWD_SEQ_MIN_BLOCKS;  // 2 x 4 warps = 8 warps an SM: <= 255 registers
static_assert(kSeqS == 2 || kSeqS == 4 || kSeqS == 8, "MK_SS_FWD_SEQ_S: 2, 4 or 8");

template <int kBytes> struct RawVec;
template <> struct RawVec<16> { using T = uint4; };
template <> struct RawVec<8> { using T = unsigned long long; };
template <> struct RawVec<4> { using T = unsigned; };
template <> struct RawVec<2> { using T = unsigned short; };

// v[0..kN) = p[0..nv) as floats, zeros beyond. kVec: nv == kN and p aligned to min(16, kN * sizeof(in_t))
// bytes (vector loads of <= 16 bytes); else masked scalar loads.
template <bool kVec, int kN, typename in_t>
__device__ __forceinline__ void seq_load(const in_t* __restrict__ p, int nv, float (&v)[kN]) {
  constexpr int kBytes = kN * int(sizeof(in_t)), kChunk = kBytes < 16 ? kBytes : 16;
  constexpr int kPer = kChunk / int(sizeof(in_t));
  using V = typename RawVec<kChunk>::T;
  if constexpr (kVec) {
#pragma unroll
    for (int k = 0; k < kN / kPer; ++k) {
      const V raw = reinterpret_cast<const V*>(p)[k];
      const in_t* e = reinterpret_cast<const in_t*>(&raw);
#pragma unroll
      for (int i = 0; i < kPer; ++i) v[k * kPer + i] = to_f(e[i]);
    }
  } else {
#pragma unroll
    for (int i = 0; i < kN; ++i) v[i] = i < nv ? to_f(p[i]) : 0.f;
  }
}
// p[0..nv) = v[0..nv), same conditions.
template <bool kVec, int kN, typename in_t>
__device__ __forceinline__ void seq_store(in_t* __restrict__ p, int nv, const float (&v)[kN]) {
  constexpr int kBytes = kN * int(sizeof(in_t)), kChunk = kBytes < 16 ? kBytes : 16;
  constexpr int kPer = kChunk / int(sizeof(in_t));
  using V = typename RawVec<kChunk>::T;
  if constexpr (kVec) {
#pragma unroll
    for (int k = 0; k < kN / kPer; ++k) {
      V raw;
      in_t* e = reinterpret_cast<in_t*>(&raw);
#pragma unroll
      for (int i = 0; i < kPer; ++i) e[i] = from_f<in_t>(v[k * kPer + i]);
      reinterpret_cast<V*>(p)[k] = raw;
    }
  } else {
#pragma unroll
    for (int i = 0; i < kN; ++i)
      if (i < nv) p[i] = from_f<in_t>(v[i]);
  }
}

// 8 tokens of a B / C row kept packed in registers (uint4s: one for 16-bit inputs, two for fp32) and unpacked
// at use (bf16: one SHF or LOP3 a value; the PRMT + IMAD pair nvcc emits for a plain conversion costs two).
template <typename in_t> constexpr int raw8_words() { return int(sizeof(in_t)) * 8 / 16; }
__device__ __forceinline__ unsigned u4_get(const uint4& v, int k) {
  return k == 0 ? v.x : (k == 1 ? v.y : (k == 2 ? v.z : v.w));
}
__device__ __forceinline__ void u4_set(uint4& v, int k, unsigned x) {
  if (k == 0) v.x = x; else if (k == 1) v.y = x; else if (k == 2) v.z = x; else v.w = x;
}
// kVec: p 16-byte aligned, all 8 tokens valid; else tokens >= nv are zero (scalar loads).
template <bool kVec, typename in_t>
__device__ __forceinline__ void load_raw8(const in_t* __restrict__ p, int nv, uint4 (&r)[raw8_words<in_t>()]) {
  constexpr int kW = raw8_words<in_t>();
  if constexpr (kVec) {
#pragma unroll
    for (int k = 0; k < kW; ++k) r[k] = reinterpret_cast<const uint4*>(p)[k];
  } else if constexpr (sizeof(in_t) == 4) {
    const unsigned* q = reinterpret_cast<const unsigned*>(p);
#pragma unroll
    for (int i = 0; i < 8; ++i) u4_set(r[i / 4], i % 4, i < nv ? q[i] : 0u);
  } else {
    const unsigned short* q = reinterpret_cast<const unsigned short*>(p);
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const unsigned lo = 2 * w < nv ? unsigned(q[2 * w]) : 0u, hi = 2 * w + 1 < nv ? unsigned(q[2 * w + 1]) : 0u;
      u4_set(r[0], w, lo | (hi << 16));
    }
  }
}
template <typename in_t>
__device__ __forceinline__ float raw8_at(const uint4 (&r)[raw8_words<in_t>()], int i) {
  if constexpr (sizeof(in_t) == 4) {
    return bits_as<float>(u4_get(r[i / 4], i % 4));
  } else if constexpr (std::is_same<in_t, __nv_bfloat16>::value) {
    const unsigned w = u4_get(r[0], i / 2);
    return bits_as<float>(i % 2 == 0 ? w << 16 : w & 0xffff0000u);
  } else {
    const unsigned w = u4_get(r[0], i / 2);
    const unsigned short hbits = (unsigned short)(i % 2 == 0 ? (w & 0xffffu) : (w >> 16));
    in_t e;
    __builtin_memcpy(&e, &hbits, 2);
    return to_f(e);
  }
}

// kS states x 8 steps from the block's B / C rows (Bp, Cp at the block's first token; constant B/C
// (kVarB / kVarC false) from Bc / Cc): h[j] = ex2(dt A2[j]) h[j] + dtu B, y += C h. The rows are loaded
// first (kVec: 16-byte vectors, whole aligned block; else masked scalars), so that the step code exists once.
template <bool kVarB, bool kVarC, int kS, typename in_t>
__device__ __forceinline__ void seq_steps(bool vec, const in_t* __restrict__ Bp, const in_t* __restrict__ Cp,
                                          int64_t Bs, int64_t Cs, int nv, const float (&dt)[8],
                                          const float (&dtu)[8], const float (&A2)[kS], const float (&Bc)[kS],
                                          const float (&Cc)[kS], float (&h)[kS], float (&y)[8]) {
  constexpr int kW = raw8_words<in_t>();
  uint4 rB[kVarB ? kS : 1][kW], rC[kVarC ? kS : 1][kW];
  if (vec) {
#pragma unroll
    for (int j = 0; j < kS; ++j) {
      if constexpr (kVarB) load_raw8<true>(Bp + j * Bs, nv, rB[j]);
      if constexpr (kVarC) load_raw8<true>(Cp + j * Cs, nv, rC[j]);
    }
  } else {
#pragma unroll
    for (int j = 0; j < kS; ++j) {
      if constexpr (kVarB) load_raw8<false>(Bp + j * Bs, nv, rB[j]);
      if constexpr (kVarC) load_raw8<false>(Cp + j * Cs, nv, rC[j]);
    }
  }
#pragma unroll
  for (int j = 0; j < kS; ++j) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const float a = fast_exp2(dt[i] * A2[j]);
      h[j] = fmaf(a, h[j], dtu[i] * (kVarB ? raw8_at<in_t>(rB[kVarB ? j : 0], i) : Bc[j]));
      y[i] = fmaf(kVarC ? raw8_at<in_t>(rC[kVarC ? j : 0], i) : Cc[j], h[j], y[i]);
    }
  }
}

template <typename in_t, bool kVarB, bool kVarC, int kL>
__global__ void __launch_bounds__(kSeqThreads, kSeqMinBlocks)
selective_scan_fwd_seq_kernel(const SelectiveScanParams p) {
  constexpr int kS = kSeqS, kTT = 8;
  constexpr int kLw = kL < 8 ? kL : 8;  // lanes of a channel doing the per-token work
  constexpr int kTok = kTT / kLw;       // tokens per working lane
  const int tid = threadIdx.x, lane = tid & 31;
  const int r = tid & (kL - 1);         // lane within the channel
  const int rw = r & (kLw - 1);         // its per-token slot (lanes >= 8 duplicate)
  const unsigned base = unsigned(lane & ~(kL - 1));
  const int64_t cl = int64_t(blockIdx.x) * (kSeqThreads / kL) + tid / kL;
  const bool c_ok = cl < p.dim;
  const int64_t c = c_ok ? cl : p.dim - 1;
  const int64_t b = blockIdx.y;
  const int n = int(p.dstate);
  const int s0st = r * kS;              // first state of the slice
  const int64_t groups = (kVarB || kVarC) ? p.n_groups : 1;
  const int64_t grp = c / (p.dim / groups);

  const in_t* __restrict__ u = static_cast<const in_t*>(p.u) + b * p.u_batch_stride + c * p.u_d_stride;
  const in_t* __restrict__ dl = static_cast<const in_t*>(p.delta) + b * p.delta_batch_stride + c * p.delta_d_stride;
  const in_t* __restrict__ zp = p.z ? static_cast<const in_t*>(p.z) + b * p.z_batch_stride + c * p.z_d_stride : nullptr;
  in_t* __restrict__ out = static_cast<in_t*>(p.out) + b * p.out_batch_stride + c * p.out_d_stride;
  const in_t* __restrict__ Bv = kVarB ? static_cast<const in_t*>(p.B) + b * p.B_batch_stride + grp * p.B_group_stride + s0st * p.B_dstate_stride : nullptr;
  const in_t* __restrict__ Cv = kVarC ? static_cast<const in_t*>(p.C) + b * p.C_batch_stride + grp * p.C_group_stride + s0st * p.C_dstate_stride : nullptr;
  float A2[kS], Bc[kS], Cc[kS], h[kS];
#pragma unroll
  for (int j = 0; j < kS; ++j) {
    A2[j] = static_cast<const float*>(p.A)[c * p.A_d_stride + s0st + j] * kLog2e;
    Bc[j] = kVarB ? 0.f : static_cast<const float*>(p.B)[c * p.B_d_stride + s0st + j];
    Cc[j] = kVarC ? 0.f : static_cast<const float*>(p.C)[c * p.C_d_stride + s0st + j];
  }
  // every row this thread reads or writes 16-byte aligned at token 0 (then whole 8-token blocks starting at
  // a token multiple of kVecT take the vector loads: one decision per block)
  constexpr int kVecT = 16 / int(sizeof(in_t));
  auto al16 = [](const void* q) { return (reinterpret_cast<uintptr_t>(q) & 15) == 0; };
  bool row_vec = al16(u) && al16(dl) && al16(out) && (zp == nullptr || al16(zp));
  if constexpr (kVarB) row_vec = row_vec && al16(Bv) && p.B_dstate_stride % kVecT == 0;
  if constexpr (kVarC) row_vec = row_vec && al16(Cv) && p.C_dstate_stride % kVecT == 0;
  const float Dv = p.D ? static_cast<const float*>(p.D)[c] : 0.f;
  const float bias = p.delta_bias ? static_cast<const float*>(p.delta_bias)[c] : 0.f;

  float* __restrict__ states = static_cast<float*>(p.states);
  const int64_t ck_mask = (int64_t(1) << p.ckpt_log2) - 1;
  int64_t ck_base = 0;
  const int64_t nseq = p.cu_seqlens ? p.n_seqs : 1;
  for (int64_t q = 0; q < nseq; ++q) {
    const int64_t s0 = p.cu_seqlens ? p.cu_seqlens[q] : 0;
    const int64_t s1 = p.cu_seqlens ? p.cu_seqlens[q + 1] : p.seqlen;
    const int64_t slot = p.cu_seqlens ? q : b;
#pragma unroll
    for (int j = 0; j < kS; ++j)
      h[j] = p.initial_state ? static_cast<const float*>(p.initial_state)[(slot * p.dim + c) * n + s0st + j] : 0.f;
    // this lane's own tokens (rw kTok .. + kTok of each block) and the slice's B / C rows, advanced per block
    const int64_t ow = s0 + rw * kTok;
    const in_t* __restrict__ dq = dl + ow;
    const in_t* __restrict__ uq = u + ow;
    const in_t* __restrict__ zq = zp ? zp + ow : nullptr;
    in_t* __restrict__ oq = out + ow;
    const in_t* __restrict__ Bq = kVarB ? Bv + s0 : Bv;
    const in_t* __restrict__ Cq = kVarC ? Cv + s0 : Cv;
#pragma unroll 1
    for (int64_t t0 = s0; t0 < s1; t0 += kTT) {
      const int nv = int(s1 - t0 < kTT ? s1 - t0 : kTT);
      const int64_t off = t0 - s0;
      if (states != nullptr && c_ok && (off & ck_mask) == 0) {
        float* st = states + ((b * p.dim + c) * p.states_n_chunks + ck_base + (off >> p.ckpt_log2)) * n + s0st;
#pragma unroll
        for (int j = 0; j < kS; ++j) st[j] = h[j];
      }
      if constexpr (kSeqPrefetch) {  // once per 128-byte line of a row: the next line of every row (hints)
        constexpr int kLineT = 128 / int(sizeof(in_t));
        if ((off & (kLineT - 1)) == 0 && t0 + kLineT < s1) {
          prefetch_l2(dq + kLineT);
          prefetch_l2(uq + kLineT);
          if (zq) prefetch_l2(zq + kLineT);
#pragma unroll
          for (int j = 0; j < kS; ++j) {
            if constexpr (kVarB) prefetch_l2(Bq + j * p.B_dstate_stride + kLineT);
            if constexpr (kVarC) prefetch_l2(Cq + j * p.C_dstate_stride + kLineT);
          }
        }
      }
      const bool vec = row_vec && nv == kTT && (t0 & (kVecT - 1)) == 0;
      // own tokens: dt = softplus(delta + bias), dt u; zero past the end
      const int nw = nv - rw * kTok <= 0 ? 0 : (nv - rw * kTok < kTok ? nv - rw * kTok : kTok);
      float dtw[kTok], uw[kTok], dtuw[kTok];
      if (vec) {
        seq_load<true>(dq, kTok, dtw);
        seq_load<true>(uq, kTok, uw);
      } else {
        seq_load<false>(dq, nw, dtw);
        seq_load<false>(uq, nw, uw);
      }
#pragma unroll
      for (int i = 0; i < kTok; ++i) {
        float x = dtw[i] + bias;
        if (p.delta_softplus) x = softplus_f(x);
        dtw[i] = i < nw ? x : 0.f;
        dtuw[i] = dtw[i] * uw[i];
      }
      float dt[kTT], dtu[kTT], y[kTT];
#pragma unroll
      for (int i = 0; i < kTT; ++i) {
        const unsigned src = base + unsigned(i / kTok);
        dt[i] = __shfl_sync(kFullMask, dtw[i % kTok], int(src));
        dtu[i] = __shfl_sync(kFullMask, dtuw[i % kTok], int(src));
        y[i] = 0.f;
      }
      // the 8 steps of the slice's states: vector B/C loads for a whole aligned block (one decision per
      // block, no shuffles inside the branch), masked scalar loads otherwise
      seq_steps<kVarB, kVarC, kS>(vec, Bq, Cq, p.B_dstate_stride, p.C_dstate_stride, nv, dt, dtu, A2, Bc, Cc, h, y);
      // reduce-scatter over the channel's lanes: lane r keeps tokens rw kTok .. + kTok in y[0 .. kTok)
      int m = kTT;
#pragma unroll
      for (int o = kLw / 2; o >= 1; o >>= 1) {
        const bool hi = (r & o) != 0;
        m >>= 1;
#pragma unroll
        for (int k = 0; k < kTT / 2; ++k) {
          if (k < m) {
            const float send = hi ? y[k] : y[k + m];
            const float keep = hi ? y[k + m] : y[k];
            y[k] = keep + __shfl_xor_sync(kFullMask, send, o);
          }
        }
      }
#pragma unroll
      for (int o = 8; o < kL; o <<= 1) y[0] += __shfl_xor_sync(kFullMask, y[0], o);
      if (c_ok && r < kLw && nw > 0) {
        float ov[kTok];
#pragma unroll
        for (int i = 0; i < kTok; ++i) ov[i] = fmaf(Dv, uw[i], y[i]);
        if (zq) {
          float zz[kTok];
          if (vec) seq_load<true>(zq, kTok, zz);
          else seq_load<false>(zq, nw, zz);
#pragma unroll
          for (int i = 0; i < kTok; ++i) ov[i] *= silu_f(zz[i]);
        }
        if (vec) seq_store<true>(oq, kTok, ov);
        else seq_store<false>(oq, nw, ov);
      }
      dq += kTT;
      uq += kTT;
      oq += kTT;
      if (zq) zq += kTT;
      if constexpr (kVarB) Bq += kTT;
      if constexpr (kVarC) Cq += kTT;
    }
    ck_base += (s1 - s0 + ck_mask) >> p.ckpt_log2;
    if (p.last_state && c_ok) {
      float* ls = static_cast<float*>(p.last_state) + (slot * p.dim + c) * n + s0st;
#pragma unroll
      for (int j = 0; j < kS; ++j) ls[j] = h[j];
    }
  }
}

// Lanes per channel of the sequential kernel for dstate n, or 0 where it does not apply (production kernel).
inline int fwd_seq_lanes(int64_t n) {
  if (n < kSeqS || n % kSeqS != 0) return 0;
  const int64_t L = n / kSeqS;
  return (L <= 32 && (L & (L - 1)) == 0) ? int(L) : 0;
}

template <typename in_t, bool kVarB, bool kVarC>
cudaError_t launch_selective_scan_fwd_seq(const SelectiveScanParams& p, int L, cudaStream_t stream) {
  auto go = [&](auto kernel, int lanes) {
    const int64_t ch_per_block = kSeqThreads / lanes;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(unsigned((p.dim + ch_per_block - 1) / ch_per_block), unsigned(p.batch), 1u);
    cfg.blockDim = dim3(kSeqThreads);
    cfg.dynamicSmemBytes = 0;
    cfg.stream = stream;
    return cudaLaunchKernelEx(&cfg, kernel, p);
  };
  switch (L) {
    case 1: return go(selective_scan_fwd_seq_kernel<in_t, kVarB, kVarC, 1>, 1);
    case 2: return go(selective_scan_fwd_seq_kernel<in_t, kVarB, kVarC, 2>, 2);
    case 4: return go(selective_scan_fwd_seq_kernel<in_t, kVarB, kVarC, 4>, 4);
    case 8: return go(selective_scan_fwd_seq_kernel<in_t, kVarB, kVarC, 8>, 8);
    case 16: return go(selective_scan_fwd_seq_kernel<in_t, kVarB, kVarC, 16>, 16);
    case 32: return go(selective_scan_fwd_seq_kernel<in_t, kVarB, kVarC, 32>, 32);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace ss
}  // namespace mamba_kernels
