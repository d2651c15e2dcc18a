// Mamba-1 selective scan forward, CUDA. CUDA headers only (no torch).
//
// Design (issue 5): the recurrence h_t = a_t h_{t-1} + b_t, a_t = exp(delta_t A_n), b_t = delta_t u_t B_t[n],
// is a parallel scan over time. One WARP owns one channel and a tile of kFwdTile = 32 x kFwdT = 512 tokens:
// lane r owns the run of kFwdT = 16 consecutive tokens (u, delta, z, out moved with 16-byte vector
// loads/stores). A block of kFwdWarps = 8 warps holds 8 channels of one (batch row, B/C group) and walks the
// sequence tile by tile; variable B/C tiles (kFwdNS = 16 states x 512 tokens, fp32, laid out so that a warp's
// float4 reads are conflict-free) are loaded once per block and shared by its 8 channels. Per state n each lane:
//   pass 1: a_t = ex2(delta_t A_n log2e) (one MUFU op per (t, n): the floor), b_t = delta_t u_t B_t[n], and
//           the run's composite (decay ex2(A_n log2e sum delta), local end state from zero), kept in registers
//   scan:   lane 0 folds the carry (the state entering the tile, in shared memory, touched by lane 0 only)
//           into its composite; a 5-level __shfl_up inclusive scan (the shuffle's own valid predicate supplies
//           the identity) gives every run's end state; lane r's entering state is lane r-1's (lane 0: the
//           carry); lane 31's is the next tile's carry
//   pass 2: h_t = a_t h_{t-1} + b_t from the entering state, y_t += C_t[n] h_t   (y in 16 registers)
// then out = (y + D u) silu(z). Issue per (t, n): 1 MUFU + 5 FP32 + 0.25 LDS.128 + (~33 scan instructions
// per 16 tokens) ~ 10 instructions; per (t, channel) ~40 more (softplus, silu, loads, stores), /n.
// n is walked in slices of kFwdNS (the tiles reloaded per slice); any n up to 256.
// Varlen: the block walks the packed sequences one after another, each restarting its tile grid at the
// sequence start (runs then may start unaligned: the loads fall back to scalar ones) from its own initial
// state, writing its own last state.
// Training (p.states set): the state entering every chunk of 2^ckpt_log2 >= kFwdT steps of each sequence is
// the entering state of the run starting there; that lane writes it (fp32, (b, d, n_chunks, n)).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "common/cp_async.h"
#include "common/mufu.h"
#include "common/softplus.h"
#include "common/static_switch.h"
#include "selective_scan/selective_scan.h"

// ---- Tuning knobs (preprocessor, -D...; defaults = the production build). Timed by the framework-free lab
// scripts/lab/run_selective_scan_lab.sh; checked on the CPU by scripts/lab/selective_scan_emu_variants.sh.
//   MK_SS_FWD_T           tokens per lane, forward: 16 (126 regs, 2 blocks/SM) or 8 (prepared alternative)
//   MK_SS_FWD_MIN_BLOCKS  __launch_bounds__ min blocks per SM, forward (0 = auto: 2 for T >= 16, else 3)
//   MK_SS_FWD_WARPS       channels (warps) per forward block sharing the B/C tiles (8)
//   MK_SS_FWD_SP          states scanned together per iteration (1; 2 interleaves two independent
//                         shuffle-scan chains for latency hiding, at twice the per-state registers)
//   MK_SS_FWD_POLY16      of every 16 per-token decays a_t = 2^x, how many are computed by poly_exp2 on the
//                         FMA pipe instead of MUFU.EX2 (0 = all MUFU; 16 = all polynomial, run decay too)
//   MK_SS_FWD_PSCAN       1: the cross-lane scan level is 2 SHFL + a predicated FFMA and FMUL (the shuffle's valid
//                         predicate guards the update) instead of 2 SHFL + 2 SEL + FFMA + FMUL: 10 fewer
//                         instructions a state (157 -> 147 per 16 tokens) and no SEL on the shuffle chain (1)
//   MK_SS_FWD_PCHAIN      1: pass 1 keeps the run's cumulative decays P_i = a_0..a_i (an FMUL chain beside the
//                         state chain) and the local states hl_i (from zero) instead of (a_i, b_i): the run decay
//                         is P_last (no A sdt FMUL + MUFU: 16 MUFU a state, the floor) and pass 2 is
//                         h_i = P_i h_in + hl_i, y_i += C_i h_i: 32 independent FFMAs, no 16-deep chain after the
//                         scan; +13 instructions a state, same registers (1)
//   MK_SS_FWD_PREFETCH    1: at each tile start, prefetch.global.L2 the next tile's delta, u, B, C rows and this
//                         tile's z (one prefetch per lane a run, one per thread per 128-byte tile line), so the
//                         loads at the next tile start (behind a __syncthreads) hit L2 instead of HBM (1)
//                         (H200 lab run 12, 94ff8e8, fwd ms at b2 d4096 / b8 d2048 / b1 d8192: all three 0.389 /
//                         0.393 / 0.764 against 0.417 / 0.407 / 0.822 with all three 0; PSCAN alone 0.407 /
//                         0.398 / 0.810, PCHAIN alone 0.411 / 0.406 / 0.810, PREFETCH alone 0.391 / 0.400 / 0.765)
//   MK_SS_BWD_CLUSTER     see selective_scan_bwd_kernel.cuh (1)
//   MK_SS_BWD_POLY16      the same for the backward's recomputation of a_t (0)
//   MK_SS_POLY_DEG        degree of poly_exp2's polynomial: 5 (rel. err 1.9e-7), 4 (2.9e-6), 3 (1.0e-4)
//   MK_SS_BWD_T           tokens per lane, backward (8; 4 and 16 are allowed by the fetch roles)
//   MK_SS_BWD_NS          states per backward slice = dB/dC flush granularity (4; 2, 8 allowed: NS*32*T/8 <= 128)
//   MK_SS_BWD_WARPS       channels per backward block = channels summed per dB/dC atomic flush (16; 12..32)
//   MK_SS_BWD_MIN_BLOCKS  __launch_bounds__ min blocks per SM, backward (1)
//   MK_SS_BWD_NO_DBC_FLUSH  1: DIAGNOSTIC ONLY, skip the variable dB/dC atomics (wrong dB/dC) to time their share
#ifndef MK_SS_FWD_T
#define MK_SS_FWD_T 16
#endif
#ifndef MK_SS_FWD_MIN_BLOCKS
#define MK_SS_FWD_MIN_BLOCKS 0
#endif
#ifndef MK_SS_FWD_WARPS
#define MK_SS_FWD_WARPS 8
#endif
#ifndef MK_SS_FWD_SP
#define MK_SS_FWD_SP 1
#endif
#ifndef MK_SS_FWD_POLY16
#define MK_SS_FWD_POLY16 0
#endif
#ifndef MK_SS_FWD_PSCAN
#define MK_SS_FWD_PSCAN 1
#endif
#ifndef MK_SS_FWD_PCHAIN
#define MK_SS_FWD_PCHAIN 1
#endif
#ifndef MK_SS_FWD_PREFETCH
#define MK_SS_FWD_PREFETCH 1
#endif
#ifndef MK_SS_BWD_POLY16
#define MK_SS_BWD_POLY16 0
#endif
#ifndef MK_SS_POLY_DEG
#define MK_SS_POLY_DEG 5
#endif

namespace mamba_kernels {
namespace ss {

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

__device__ __forceinline__ float silu_f(float x) { return __fdividef(x, 1.f + __expf(-x)); }

// Bit copies between float and int (the intrinsics on the GPU; memcpy in the CPU emulation of these kernels).
template <typename To, typename From>
__device__ __forceinline__ To bits_as(From v) {
  static_assert(sizeof(To) == sizeof(From), "bits_as: same size only");
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(To) == 4 && std::is_same<To, float>::value) return __int_as_float(v);
  else return __float_as_int(v);
#else
  To r;
  __builtin_memcpy(&r, &v, sizeof(To));
  return r;
#endif
}
// 2^x without the special-function unit (FMA/ALU pipes only: offloads MUFU, which has 1/8 of the FMA pipe's
// throughput), for x <= 0 (decays): x clamped to >= -125 (then ~2^-125 where ex2.approx.ftz gives ~0:
// harmless); j = rint(x) through the 1.5 * 2^23 shifter (exact adds, never contracted or reassociated),
// f = x - j in [-0.5, 0.5], 2^f by a relative-minimax polynomial with p(0) = 1 exactly (fp32 relative error
// incl. rounding: degree 5 1.9e-7, 4 2.9e-6, 3 1.0e-4), then j added into the exponent field (one LEA).
// Degree 5: 1 FMNMX + 3 FADD + 5 FFMA + 1 integer op.
__device__ __forceinline__ float poly_exp2(float x) {
  constexpr float kShift = 12582912.f;  // 1.5 * 2^23: x + kShift holds rint(x) in its low mantissa bits
  x = fmaxf(x, -125.f);
#if defined(__CUDA_ARCH__)
  const float t = __fadd_rn(x, kShift);
  const float f = __fsub_rn(x, __fsub_rn(t, kShift));
#else
  volatile float tv = x + kShift;  // host emulation: no reassociation either
  const float t = tv;
  const float f = x - (t - kShift);
#endif
#if MK_SS_POLY_DEG >= 5
  float q = fmaf(f, 1.32647087e-3f, 9.67151113e-3f);
  q = fmaf(q, f, 5.55073395e-2f);
  q = fmaf(q, f, 2.40222424e-1f);
  q = fmaf(q, f, 6.93147004e-1f);
#elif MK_SS_POLY_DEG == 4
  float q = fmaf(f, 9.58282966e-3f, 5.59064001e-2f);
  q = fmaf(q, f, 2.40240991e-1f);
  q = fmaf(q, f, 6.93124175e-1f);
#else
  float q = fmaf(f, 5.50086908e-2f, 2.42210627e-1f);
  q = fmaf(q, f, 6.93282902e-1f);
#endif
  const float p = fmaf(q, f, 1.f);
  // rint(x) sits in t's low bits; << 23 moves it into the exponent field (t's own high bits shift out)
  return bits_as<float>(bits_as<int>(p) + int(unsigned(bits_as<int>(t)) << 23));
}
// Token i of a run of kT uses the polynomial iff it is one of npoly evenly spread tokens.
__host__ __device__ constexpr bool poly_token(int i, int kT, int npoly) {
  return ((i + 1) * npoly) / kT != (i * npoly) / kT;
}
template <int kPoly16>
__device__ __forceinline__ float decay_exp2(float x, bool poly) {
  if constexpr (kPoly16 == 0) return fast_exp2(x);
  else return poly ? poly_exp2(x) : fast_exp2(x);
}

constexpr unsigned kFullMask = 0xffffffffu;

// __shfl_up_sync / __shfl_down_sync returning `other` where the source lane is out of range (PTX: the
// shuffle's own valid predicate, so the scans below need no compare and no predicated moves).
__device__ __forceinline__ float shfl_up_or(float v, unsigned o, float other) {
#if defined(__CUDA_ARCH__)
  float r;
  asm volatile("{\n .reg .pred p;\n shfl.sync.up.b32 %0|p, %1, %2, 0, -1;\n @!p mov.b32 %0, %3;\n}"
      : "=f"(r) : "f"(v), "r"(o), "f"(other));
  return r;
#else
  const float r = __shfl_up_sync(0xffffffffu, v, o);
  return (threadIdx.x & 31) >= o ? r : other;
#endif
}
__device__ __forceinline__ float shfl_down_or(float v, unsigned o, float other) {
#if defined(__CUDA_ARCH__)
  float r;
  asm volatile("{\n .reg .pred p;\n shfl.sync.down.b32 %0|p, %1, %2, 31, -1;\n @!p mov.b32 %0, %3;\n}"
      : "=f"(r) : "f"(v), "r"(o), "f"(other));
  return r;
#else
  const float r = __shfl_down_sync(0xffffffffu, v, o);
  return (threadIdx.x & 31) + o < 32 ? r : other;
#endif
}
// One level of the inclusive (decay, state) scan, MK_SS_FWD_PSCAN: where lane - o >= 0,
// (A, B) <- (A Ap, A Bp + B) with (Ap, Bp) lane - o's; elsewhere unchanged. The shuffle's valid predicate
// guards the FFMA / FMUL (no SEL). kNeedA = false (last level): B only, A left as it was. kDown: the same level
// right to left (the backward's adjoint scan): where lane + o < 32, with lane + o's values.
// PTX of a level: DIR "up" or "down", CLAMP its shuffle's clamp ("0" up, "31" down).
#define MK_SS_SCAN_LEVEL_AB(DIR, CLAMP)                                                                   \
  "{\n .reg .pred p;\n .reg .f32 ap, bp;\n shfl.sync." DIR ".b32 bp|p, %1, %2, " CLAMP ", -1;\n"       \
  " shfl.sync." DIR ".b32 ap, %0, %2, " CLAMP ", -1;\n @p fma.rn.ftz.f32 %1, %0, bp, %1;\n"             \
  " @p mul.rn.ftz.f32 %0, %0, ap;\n}"
#define MK_SS_SCAN_LEVEL_B(DIR, CLAMP)                                                                    \
  "{\n .reg .pred p;\n .reg .f32 bp;\n shfl.sync." DIR ".b32 bp|p, %1, %2, " CLAMP ", -1;\n"                 \
  " @p fma.rn.ftz.f32 %1, %0, bp, %1;\n}"
template <bool kNeedA, bool kDown = false>
__device__ __forceinline__ void scan_level_pred(float& A, float& B, unsigned o) {
#if defined(__CUDA_ARCH__)
  if constexpr (kDown && kNeedA) asm volatile(MK_SS_SCAN_LEVEL_AB("down", "31") : "+f"(A), "+f"(B) : "r"(o));
  else if constexpr (kDown) asm volatile(MK_SS_SCAN_LEVEL_B("down", "31") : "+f"(A), "+f"(B) : "r"(o));
  else if constexpr (kNeedA) asm volatile(MK_SS_SCAN_LEVEL_AB("up", "0") : "+f"(A), "+f"(B) : "r"(o));
  else asm volatile(MK_SS_SCAN_LEVEL_B("up", "0") : "+f"(A), "+f"(B) : "r"(o));
#else
  float bp, ap = 1.f;
  if constexpr (kDown) {
    bp = __shfl_down_sync(0xffffffffu, B, o);
    if (kNeedA) ap = __shfl_down_sync(0xffffffffu, A, o);
  } else {
    bp = __shfl_up_sync(0xffffffffu, B, o);
    if (kNeedA) ap = __shfl_up_sync(0xffffffffu, A, o);
  }
  const unsigned lane = threadIdx.x & 31;
  if (kDown ? lane + o < 32 : lane >= o) {
    B = fmaf(A, bp, B);
    if (kNeedA) A *= ap;
  }
#endif
}
#undef MK_SS_SCAN_LEVEL_AB
#undef MK_SS_SCAN_LEVEL_B
// Tuning: kFwdT = 16 (126 registers, 2 blocks = 16 warps per SM) halves the scan's share per token against
// kFwdT = 8 (79 registers, 3 blocks = 24 warps per SM, more latency hiding); both pass the emulation.
constexpr int kFwdT = MK_SS_FWD_T;        // tokens per lane (forward)
constexpr int kFwdMinBlocks = MK_SS_FWD_MIN_BLOCKS > 0 ? MK_SS_FWD_MIN_BLOCKS : (kFwdT >= 16 ? 2 : 3);
constexpr int kFwdTile = 32 * kFwdT;      // tokens per warp (one channel) per tile
constexpr int kFwdWarps = MK_SS_FWD_WARPS;  // channels per block (sharing the B/C tiles)
constexpr int kFwdThreads = 32 * kFwdWarps;
constexpr int kFwdNS = 16;                // states per B/C tile slice (n = 16: one tile load per 512 steps)
constexpr int kFwdSP = MK_SS_FWD_SP;      // states per iteration (independent scans interleaved)
constexpr int kFwdPoly16 = MK_SS_FWD_POLY16;
constexpr int kFwdPolyN = kFwdPoly16 * kFwdT / 16;  // polynomial decays per run of kFwdT
constexpr bool kFwdPScan = MK_SS_FWD_PSCAN != 0;
constexpr bool kFwdPChain = MK_SS_FWD_PCHAIN != 0;
constexpr bool kFwdPrefetch = MK_SS_FWD_PREFETCH != 0;
static_assert(kFwdT == 8 || kFwdT == 16 || kFwdT == 32, "MK_SS_FWD_T: 8, 16 or 32");
static_assert(kFwdSP >= 1 && kFwdSP <= 4, "MK_SS_FWD_SP: 1..4");
static_assert(kFwdPoly16 >= 0 && kFwdPoly16 <= 16, "MK_SS_FWD_POLY16: 0..16");
static_assert(kFwdWarps >= 1 && kFwdWarps <= 32, "MK_SS_FWD_WARPS: 1..32");

// v[0..kT) = p[0..nv) as floats, zeros beyond; 16-byte loads when the run is whole and aligned.
template <int kT, typename in_t>
__device__ __forceinline__ void load_run(const in_t* __restrict__ p, int nv, float (&v)[kT]) {
  constexpr int kVec = 16 / int(sizeof(in_t));
  static_assert(kT % kVec == 0, "whole 16-byte vectors per run");
  if (nv == kT && (reinterpret_cast<uintptr_t>(p) & 15) == 0) {
#pragma unroll
    for (int k = 0; k < kT / kVec; ++k) {
      const uint4 raw = reinterpret_cast<const uint4*>(p)[k];
      const in_t* e = reinterpret_cast<const in_t*>(&raw);
#pragma unroll
      for (int i = 0; i < kVec; ++i) v[k * kVec + i] = to_f(e[i]);
    }
  } else {
#pragma unroll
    for (int i = 0; i < kT; ++i) v[i] = i < nv ? to_f(p[i]) : 0.f;
  }
}

// p[0..nv) = v[0..nv) (16-byte stores when the run is whole and aligned).
template <int kT, typename in_t>
__device__ __forceinline__ void store_run(in_t* __restrict__ p, int nv, const float (&v)[kT]) {
  constexpr int kVec = 16 / int(sizeof(in_t));
  if (nv == kT && (reinterpret_cast<uintptr_t>(p) & 15) == 0) {
#pragma unroll
    for (int k = 0; k < kT / kVec; ++k) {
      uint4 raw;
      in_t* e = reinterpret_cast<in_t*>(&raw);
#pragma unroll
      for (int i = 0; i < kVec; ++i) e[i] = from_f<in_t>(v[k * kVec + i]);
      reinterpret_cast<uint4*>(p)[k] = raw;
    }
  } else {
#pragma unroll
    for (int i = 0; i < kT; ++i)
      if (i < nv) p[i] = from_f<in_t>(v[i]);
  }
}

// A tile row holds 32 runs of kT tokens as float4s: float4 number k of lane r's run sits at k * 32 + r, so a
// warp reading (or writing) its lanes' k-th float4 touches 512 contiguous bytes (no bank conflicts).
template <int kT>
__device__ __forceinline__ void read_run(const float* row, int lane, float (&v)[kT]) {
#pragma unroll
  for (int k = 0; k < kT / 4; ++k) {
    const float4 x = reinterpret_cast<const float4*>(row)[k * 32 + lane];
    v[4 * k] = x.x; v[4 * k + 1] = x.y; v[4 * k + 2] = x.z; v[4 * k + 3] = x.w;
  }
}
template <int kT>
__device__ __forceinline__ void write_run(float* row, int lane, const float (&v)[kT]) {
#pragma unroll
  for (int k = 0; k < kT / 4; ++k)
    reinterpret_cast<float4*>(row)[k * 32 + lane] = make_float4(v[4 * k], v[4 * k + 1], v[4 * k + 2], v[4 * k + 3]);
}

// Loads rows ns0 .. ns0 + nsl of a variable B or C (tokens t0 .. t0 + 32 kT, zeros past s1) into a tile
// [nsl][32 kT] (the block's kThreads threads).
template <int kT, int kThreads, typename in_t>
__device__ __forceinline__ void load_tile(float* tile, const in_t* __restrict__ src, int64_t dstate_stride,
                                          int ns0, int nsl, int64_t t0, int64_t s1) {
  for (int idx = threadIdx.x; idx < nsl * 32; idx += kThreads) {
    const int s = idx >> 5, r = idx & 31;
    const int64_t tr = t0 + r * kT;
    const int nv = int(s1 - tr < 0 ? 0 : (s1 - tr < kT ? s1 - tr : kT));
    float v[kT];
    load_run<kT>(src + (ns0 + s) * dstate_stride + tr, nv, v);
    write_run<kT>(tile + s * 32 * kT, r, v);
  }
}

// Per-warp rows of n floats in shared memory: A log2(e), the carry, constant B, constant C.
constexpr int fwd_warp_rows(bool var_b, bool var_c) { return 2 + int(!var_b) + int(!var_c); }

// Rows of a forward B/C tile: min(n, kFwdNS).
__host__ __device__ inline int fwd_tile_rows(int64_t n) { return int(n < kFwdNS ? n : kFwdNS); }

// Shared-memory bytes of the forward: B and/or C tiles [fwd_tile_rows(n)][kFwdTile] (<= 32 KB each), per-warp
// rows [kFwdWarps][rows][n] (<= 32 KB): at most 80 KB (2 blocks per SM).
inline int64_t fwd_smem_bytes(int64_t n, bool var_b, bool var_c) {
  return 4 * ((int64_t(var_b) + int64_t(var_c)) * fwd_tile_rows(n) * kFwdTile +
              int64_t(kFwdWarps) * fwd_warp_rows(var_b, var_c) * n);
}

template <typename in_t, bool kVarB, bool kVarC>
__global__ void __launch_bounds__(kFwdThreads, kFwdMinBlocks)
selective_scan_fwd_kernel(const SelectiveScanParams p) {
  constexpr int kT = kFwdT, kTile = kFwdTile, kNS = kFwdNS;
  extern __shared__ float4 smem_f4[];
  float* smem = reinterpret_cast<float*>(smem_f4);
  const int trows = fwd_tile_rows(p.dstate);
  float* s_B = smem;                                   // [trows][kTile] (layout: read_run)
  float* s_C = s_B + (kVarB ? trows * kTile : 0);      // [trows][kTile]
  float* s_rows = s_C + (kVarC ? trows * kTile : 0);   // [kFwdWarps][kRows][n]
  constexpr int kRows = fwd_warp_rows(kVarB, kVarC);

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t b = blockIdx.z, grp = blockIdx.y;
  const int64_t dpg = p.dim / gridDim.y;               // channels of one group (all when B, C constant)
  const int64_t cblk = int64_t(blockIdx.x) * kFwdWarps;
  const bool c_ok = cblk + warp < dpg;                 // idle warps compute on channel c0, store nothing
  const int64_t c = grp * dpg + cblk + (c_ok ? warp : 0);
  const int n = int(p.dstate);
  float* wA = s_rows + warp * kRows * n;               // A log2(e) of the warp's channel
  float* carry = wA + n;                               // read and written by lane 0 only
  float* wB = carry + n;                               // constant B (kVarB: unused)
  float* wC = wB + (kVarB ? 0 : n);                    // constant C (kVarC: unused)

  const in_t* __restrict__ u = static_cast<const in_t*>(p.u) + b * p.u_batch_stride + c * p.u_d_stride;
  const in_t* __restrict__ dl = static_cast<const in_t*>(p.delta) + b * p.delta_batch_stride + c * p.delta_d_stride;
  const in_t* __restrict__ zp = p.z ? static_cast<const in_t*>(p.z) + b * p.z_batch_stride + c * p.z_d_stride : nullptr;
  in_t* __restrict__ out = static_cast<in_t*>(p.out) + b * p.out_batch_stride + c * p.out_d_stride;
  for (int s = lane; s < n; s += 32) {
    wA[s] = static_cast<const float*>(p.A)[c * p.A_d_stride + s] * kLog2e;
    if (!kVarB) wB[s] = static_cast<const float*>(p.B)[c * p.B_d_stride + s];
    if (!kVarC) wC[s] = static_cast<const float*>(p.C)[c * p.C_d_stride + s];
  }
  __syncwarp();
  const in_t* __restrict__ Bv = kVarB ? static_cast<const in_t*>(p.B) + b * p.B_batch_stride + grp * p.B_group_stride : nullptr;
  const in_t* __restrict__ Cv = kVarC ? static_cast<const in_t*>(p.C) + b * p.C_batch_stride + grp * p.C_group_stride : nullptr;
  const float Dv = p.D ? static_cast<const float*>(p.D)[c] : 0.f;
  const float bias = p.delta_bias ? static_cast<const float*>(p.delta_bias)[c] : 0.f;

  float* __restrict__ states = static_cast<float*>(p.states);
  const int64_t ck_mask = (int64_t(1) << p.ckpt_log2) - 1;
  int64_t ck_base = 0;  // saved chunks of the sequences before this one (varlen)
  const int64_t nseq = p.cu_seqlens ? p.n_seqs : 1;
  for (int64_t q = 0; q < nseq; ++q) {
    const int64_t s0 = p.cu_seqlens ? p.cu_seqlens[q] : 0;
    const int64_t s1 = p.cu_seqlens ? p.cu_seqlens[q + 1] : p.seqlen;
    const int64_t slot = p.cu_seqlens ? q : b;
    if (lane == 0)
      for (int s = 0; s < n; ++s)
        carry[s] = p.initial_state ? static_cast<const float*>(p.initial_state)[(slot * p.dim + c) * n + s] : 0.f;
    for (int64_t t0 = s0; t0 < s1; t0 += kTile) {
      const int64_t tr = t0 + lane * kT;  // this lane's run
      const int nv = int(s1 - tr < 0 ? 0 : (s1 - tr < kT ? s1 - tr : kT));
      float dt[kT], dtu[kT], y[kT];
      load_run<kT>(dl + tr, nv, dt);
      load_run<kT>(u + tr, nv, dtu);
      float sdt = 0.f;  // sum of the run's steps: its decay is ex2(A2 sdt)
#pragma unroll
      for (int i = 0; i < kT; ++i) {
        float x = dt[i] + bias;
        if (p.delta_softplus) x = softplus_f(x);
        dt[i] = i < nv ? x : 0.f;  // steps past the end: a = 1, b = 0 (identity)
        sdt += dt[i];
        y[i] = Dv * dtu[i];
        dtu[i] *= dt[i];
      }
      if constexpr (kFwdPrefetch) {  // the next tile's inputs and this tile's z into L2 (hints only)
        const int64_t tn = tr + kTile, t0n = t0 + kTile;
        if (tn < s1) {
          prefetch_l2(dl + tn);
          prefetch_l2(u + tn);
        }
        if (zp && nv > 0) prefetch_l2(zp + tr);
        if constexpr (kVarB || kVarC) {
          constexpr int kLineT = 128 / int(sizeof(in_t)), kLines = kTile / kLineT;  // 128-byte lines a row
          for (int idx = threadIdx.x; idx < n * kLines; idx += kFwdThreads) {
            const int64_t tt = t0n + (idx % kLines) * kLineT;
            if (tt >= s1) continue;
            if constexpr (kVarB) prefetch_l2(Bv + (idx / kLines) * p.B_dstate_stride + tt);
            if constexpr (kVarC) prefetch_l2(Cv + (idx / kLines) * p.C_dstate_stride + tt);
          }
        }
      }
      const int64_t off = tr - s0;
      const bool save = states != nullptr && c_ok && nv > 0 && (off & ck_mask) == 0;
      float* st = save ? states + ((b * p.dim + c) * p.states_n_chunks + ck_base + (off >> p.ckpt_log2)) * n : nullptr;
      for (int ns0 = 0; ns0 < n; ns0 += kNS) {
        const int nsl = n - ns0 < kNS ? n - ns0 : kNS;
        if constexpr (kVarB || kVarC) {
          __syncthreads();  // every warp is done with the previous tiles
          if constexpr (kVarB) load_tile<kT, kFwdThreads>(s_B, Bv, p.B_dstate_stride, ns0, nsl, t0, s1);
          if constexpr (kVarC) load_tile<kT, kFwdThreads>(s_C, Cv, p.C_dstate_stride, ns0, nsl, t0, s1);
          __syncthreads();
        }
        // kSP states per iteration (kSP = 1: the production loop); slot j >= nsl - s is a no-op state (its
        // decay 1, input 0, entering state 0: h stays 0, adds nothing to y, writes nothing)
#pragma unroll 1
        for (int s = 0; s < nsl; s += kFwdSP) {
          float a[kFwdSP][kT], bb[kFwdSP][kT], Al[kFwdSP], Bl[kFwdSP], cin[kFwdSP], h[kFwdSP];
#pragma unroll
          for (int j = 0; j < kFwdSP; ++j) {
            const bool sok = kFwdSP == 1 || s + j < nsl;
            const int sr = sok ? s + j : s;  // tile row (a loaded one)
            const float A2 = sok ? wA[ns0 + sr] : 0.f;
            float Bt[kT];
            if constexpr (kVarB) read_run<kT>(s_B + sr * kTile, lane, Bt);
            else
#pragma unroll
              for (int i = 0; i < kT; ++i) Bt[i] = wB[ns0 + sr];
            // pass 1: decays (the one exponential per (t, n)) and the run's composite (Al, Bl)
#pragma unroll
            for (int i = 0; i < kT; ++i) {
              a[j][i] = decay_exp2<kFwdPoly16>(dt[i] * A2, poly_token(i, kT, kFwdPolyN));
              bb[j][i] = sok ? dtu[i] * Bt[i] : 0.f;
            }
            if constexpr (kFwdPChain) {  // (a, bb) become (cumulative decay P_i, local state hl_i)
#pragma unroll
              for (int i = 1; i < kT; ++i) {
                bb[j][i] = fmaf(a[j][i], bb[j][i - 1], bb[j][i]);
                a[j][i] *= a[j][i - 1];
              }
              Al[j] = a[j][kT - 1];
              Bl[j] = bb[j][kT - 1];
            } else {
              Al[j] = decay_exp2<kFwdPoly16>(A2 * sdt, kFwdPoly16 == 16);
              Bl[j] = bb[j][0];
#pragma unroll
              for (int i = 1; i < kT; ++i) Bl[j] = fmaf(a[j][i], Bl[j], bb[j][i]);
            }
            cin[j] = 0.f;
            if (lane == 0 && sok) {
              cin[j] = carry[ns0 + sr];
              Bl[j] = fmaf(Al[j], cin[j], Bl[j]);
            }
          }
#pragma unroll
          for (int o = 1; o < 32; o <<= 1) {  // inclusive scans; out-of-range sources are the identity (1, 0)
#pragma unroll
            for (int j = 0; j < kFwdSP; ++j) {
              if constexpr (kFwdPScan) {
                if (o < 16) scan_level_pred<true>(Al[j], Bl[j], o);
                else scan_level_pred<false>(Al[j], Bl[j], o);
              } else {
                const float Ap = shfl_up_or(Al[j], o, 1.f), Bp = shfl_up_or(Bl[j], o, 0.f);
                Bl[j] = fmaf(Al[j], Bp, Bl[j]);
                Al[j] *= Ap;
              }
            }
          }
#pragma unroll
          for (int j = 0; j < kFwdSP; ++j) {
            const bool sok = kFwdSP == 1 || s + j < nsl;
            const int sr = sok ? s + j : s;
            h[j] = __shfl_up_sync(kFullMask, Bl[j], 1);
            const float tot = __shfl_sync(kFullMask, Bl[j], 31);
            if (lane == 0) {
              h[j] = cin[j];
              if (sok) carry[ns0 + sr] = tot;
            }
            if (save && sok) st[ns0 + sr] = h[j];
            // pass 2: states from the entering one, y += C h
            float Ct[kT];
            if constexpr (kVarC) read_run<kT>(s_C + sr * kTile, lane, Ct);
            else
#pragma unroll
              for (int i = 0; i < kT; ++i) Ct[i] = wC[ns0 + sr];
            if constexpr (kFwdPChain) {  // h_i = P_i h_in + hl_i: independent per token
#pragma unroll
              for (int i = 0; i < kT; ++i) y[i] = fmaf(Ct[i], fmaf(a[j][i], h[j], bb[j][i]), y[i]);
            } else {
#pragma unroll
              for (int i = 0; i < kT; ++i) {
                h[j] = fmaf(a[j][i], h[j], bb[j][i]);
                y[i] = fmaf(Ct[i], h[j], y[i]);
              }
            }
          }
        }
      }
      if (c_ok && nv > 0) {
        if (zp) {
          float zz[kT];
          load_run<kT>(zp + tr, nv, zz);
#pragma unroll
          for (int i = 0; i < kT; ++i) y[i] *= silu_f(zz[i]);
        }
        store_run<kT>(out + tr, nv, y);
      }
    }
    ck_base += (s1 - s0 + ck_mask) >> p.ckpt_log2;
    if (p.last_state && c_ok && lane == 0)
      for (int s = 0; s < n; ++s) static_cast<float*>(p.last_state)[(slot * p.dim + c) * n + s] = carry[s];
  }
}

// The state-lane forward (selective_scan_fwd_lane_kernel.cuh, included at the end of this file).
inline bool lane_fwd_applies(const SelectiveScanParams& p);
template <typename in_t>
cudaError_t launch_selective_scan_fwd_lane(const SelectiveScanParams& p, cudaStream_t stream);

// Launch for one input dtype: the state-lane kernel where it applies, else one of 2 x 2 time-parallel kernels
// (variable B, variable C).
template <typename in_t>
cudaError_t launch_selective_scan_fwd(const SelectiveScanParams& p, cudaStream_t stream) {
  const bool var_b = p.is_variable_B, var_c = p.is_variable_C;
  const int64_t groups = (var_b || var_c) ? p.n_groups : 1;
  const int64_t dpg = p.dim / groups;
  if (p.batch == 0 || p.dim == 0) return cudaSuccess;
  if (lane_fwd_applies(p)) return launch_selective_scan_fwd_lane<in_t>(p, stream);
  if (p.batch > 65535 || groups > 65535 || p.dstate < 1 || p.dstate > 256) return cudaErrorInvalidConfiguration;
  if (p.states != nullptr && (int64_t(1) << p.ckpt_log2) < kFwdT) return cudaErrorInvalidValue;  // on run starts
  const int smem = int(fwd_smem_bytes(p.dstate, var_b, var_c));  // <= 80 KB
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned((dpg + kFwdWarps - 1) / kFwdWarps), unsigned(groups), unsigned(p.batch));
  cfg.blockDim = dim3(kFwdThreads);
  cfg.dynamicSmemBytes = size_t(smem);
  cfg.stream = stream;
  cudaError_t err = MK_BOOL_SWITCH(var_b, kVarB, [&] {
    return MK_BOOL_SWITCH(var_c, kVarC, [&] {
      auto kernel = selective_scan_fwd_kernel<in_t, kVarB, kVarC>;
      cudaError_t e = cudaSuccess;
      if (smem > 48 * 1024) e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
      return e != cudaSuccess ? e : cudaLaunchKernelEx(&cfg, kernel, p);
    });
  });
  return err != cudaSuccess ? err : cudaGetLastError();
}

}  // namespace ss
}  // namespace mamba_kernels

#include "selective_scan/selective_scan_fwd_lane_kernel.cuh"  // uses the helpers above
