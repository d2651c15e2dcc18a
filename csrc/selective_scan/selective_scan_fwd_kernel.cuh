// Mamba-1 selective scan forward, CUDA. CUDA headers only (no torch).
//
// Design (issue 5): the recurrence h_t = a_t h_{t-1} + b_t, a_t = exp(delta_t A_n), b_t = delta_t u_t B_t[n],
// is a parallel scan over time. One WARP owns one channel and a tile of kTile = 32 x kRunT = 256 tokens:
// lane r owns the run of kRunT = 8 consecutive tokens [8r, 8r + 8) (u, delta, z, out moved with 16-byte
// vector loads/stores). A block of kFwdWarps = 8 warps holds 8 channels of one (batch row, B/C group) and
// walks the sequence tile by tile; variable B/C tiles (kNS = 16 states x 256 tokens, fp32, swizzled so that
// lane r's two float4 of a state are conflict-free) are loaded once per block and shared by its 8 channels.
// Per state n of the tile each lane:
//   pass 1: a_t = ex2(delta_t A_n log2e) (one MUFU op per (t, n): the floor), b_t = delta_t u_t B_t[n], and the
//           run's composite (prod a, local end state from zero)  -- a_t, b_t kept in registers
//   scan:   lane 0 folds the carry (the state entering the tile, kept in shared memory, touched by lane 0
//           only) into its composite; a 5-level __shfl_up inclusive scan of the composites gives every run's
//           true end state; lane r's entering state is lane r-1's (lane 0: the carry); lane 31's is the
//           next tile's carry (broadcast by one __shfl_sync)
//   pass 2: h_t = a_t h_{t-1} + b_t from the entering state, y_t += C_t[n] h_t   (y in 8 registers)
// then out = (y + D u) silu(z). Cost per (t, n): 1 MUFU + 6 FP32 ops + 0.5 LDS.128 (B, C) + 12/8 shuffles.
// States beyond n = 16 are walked in slices of kNS (the tiles reloaded per slice); any n up to 256.
// Varlen: the block walks the packed sequences one after another, each restarting its tile grid at the
// sequence start (runs then may start unaligned: the loads fall back to scalar ones) from its own initial
// state, writing its own last state.
// Training (p.states set): the state entering every chunk of 2^ckpt_log2 >= kRunT steps of each sequence is
// the entering state of the run starting there; that lane writes it (fp32, (b, d, n_chunks, n)).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/static_switch.h"
#include "selective_scan/selective_scan.h"

namespace mamba_kernels {
namespace ss {

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// 2^x with the special-function unit (one MUFU.EX2), independent of --use_fast_math.
__device__ __forceinline__ float fast_exp2(float x) {
#if defined(__CUDA_ARCH__)
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#else
  return exp2f(x);  // host compilation of the kernel source (CPU emulation in tests/cuda_emu)
#endif
}
__device__ __forceinline__ float softplus_f(float x) { return x <= 20.f ? log1pf(__expf(x)) : x; }
__device__ __forceinline__ float silu_f(float x) { return x / (1.f + __expf(-x)); }

constexpr unsigned kFullMask = 0xffffffffu;
constexpr float kLog2e = 1.4426950408889634f;
constexpr int kRunT = 8;                  // tokens per lane
constexpr int kTile = 32 * kRunT;         // tokens per warp (one channel) per tile
constexpr int kFwdWarps = 8;              // channels per block (sharing the B/C tiles)
constexpr int kFwdThreads = 32 * kFwdWarps;
constexpr int kNS = 16;                   // states per B/C tile slice

// v[0..8) = p[0..nv) as floats, zeros beyond; one or two 16-byte loads when the run is whole and aligned.
template <typename in_t>
__device__ __forceinline__ void load_run(const in_t* __restrict__ p, int nv, float (&v)[kRunT]) {
  constexpr int kVec = 16 / int(sizeof(in_t));
  if (nv == kRunT && (reinterpret_cast<uintptr_t>(p) & 15) == 0) {
#pragma unroll
    for (int k = 0; k < kRunT / kVec; ++k) {
      const uint4 raw = reinterpret_cast<const uint4*>(p)[k];
      const in_t* e = reinterpret_cast<const in_t*>(&raw);
#pragma unroll
      for (int i = 0; i < kVec; ++i) v[k * kVec + i] = to_f(e[i]);
    }
  } else {
#pragma unroll
    for (int i = 0; i < kRunT; ++i) v[i] = i < nv ? to_f(p[i]) : 0.f;
  }
}

// p[0..nv) = v[0..nv) (one or two 16-byte stores when the run is whole and aligned).
template <typename in_t>
__device__ __forceinline__ void store_run(in_t* __restrict__ p, int nv, const float (&v)[kRunT]) {
  constexpr int kVec = 16 / int(sizeof(in_t));
  if (nv == kRunT && (reinterpret_cast<uintptr_t>(p) & 15) == 0) {
#pragma unroll
    for (int k = 0; k < kRunT / kVec; ++k) {
      uint4 raw;
      in_t* e = reinterpret_cast<in_t*>(&raw);
#pragma unroll
      for (int i = 0; i < kVec; ++i) e[i] = from_f<in_t>(v[k * kVec + i]);
      reinterpret_cast<uint4*>(p)[k] = raw;
    }
  } else {
#pragma unroll
    for (int i = 0; i < kRunT; ++i)
      if (i < nv) p[i] = from_f<in_t>(v[i]);
  }
}

// Shared-memory bytes of the forward: B and/or C tiles [kNS][kTile] and the carries [kFwdWarps][n].
inline int64_t fwd_smem_bytes(int64_t n, bool var_b, bool var_c) {
  return 4 * ((int64_t(var_b) + int64_t(var_c)) * kNS * kTile + kFwdWarps * n);
}

// Loads rows ns0 .. ns0 + nsl of a variable B or C (tokens t0 .. t0 + kTile, zeros past s1) into a tile.
template <typename in_t>
__device__ __forceinline__ void load_tile(float* tile, const in_t* __restrict__ src, int64_t dstate_stride,
                                          int ns0, int nsl, int64_t t0, int64_t s1) {
  for (int idx = threadIdx.x; idx < nsl * 32; idx += kFwdThreads) {
    const int s = idx >> 5, r = idx & 31;
    const int64_t tr = t0 + r * kRunT;
    const int nv = int(s1 - tr < 0 ? 0 : (s1 - tr < kRunT ? s1 - tr : kRunT));
    float v[kRunT];
    load_run(src + (ns0 + s) * dstate_stride + tr, nv, v);
    float4* row = reinterpret_cast<float4*>(tile + s * kTile);
    row[r] = make_float4(v[0], v[1], v[2], v[3]);
    row[32 + r] = make_float4(v[4], v[5], v[6], v[7]);
  }
}

template <typename in_t, bool kVarB, bool kVarC>
__global__ void __launch_bounds__(kFwdThreads, 3)
selective_scan_fwd_kernel(const SelectiveScanParams p) {
  extern __shared__ float4 smem_f4[];
  float* smem = reinterpret_cast<float*>(smem_f4);
  float* s_B = smem;                                   // [kNS][kTile] (swizzled, see tile_swz)
  float* s_C = s_B + (kVarB ? kNS * kTile : 0);        // [kNS][kTile]
  float* s_carry = s_C + (kVarC ? kNS * kTile : 0);    // [kFwdWarps][n]

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t b = blockIdx.z, grp = blockIdx.y;
  const int64_t dpg = p.dim / gridDim.y;               // channels of one group (all when B, C constant)
  const int64_t cblk = int64_t(blockIdx.x) * kFwdWarps;
  const bool c_ok = cblk + warp < dpg;                 // idle warps compute on channel c0, store nothing
  const int64_t c = grp * dpg + cblk + (c_ok ? warp : 0);
  const int n = int(p.dstate);
  float* carry = s_carry + warp * n;                   // read and written by lane 0 only

  const in_t* __restrict__ u = static_cast<const in_t*>(p.u) + b * p.u_batch_stride + c * p.u_d_stride;
  const in_t* __restrict__ dl = static_cast<const in_t*>(p.delta) + b * p.delta_batch_stride + c * p.delta_d_stride;
  const in_t* __restrict__ zp = p.z ? static_cast<const in_t*>(p.z) + b * p.z_batch_stride + c * p.z_d_stride : nullptr;
  in_t* __restrict__ out = static_cast<in_t*>(p.out) + b * p.out_batch_stride + c * p.out_d_stride;
  const float* __restrict__ Arow = static_cast<const float*>(p.A) + c * p.A_d_stride;
  const float* __restrict__ Bc = kVarB ? nullptr : static_cast<const float*>(p.B) + c * p.B_d_stride;
  const float* __restrict__ Cc = kVarC ? nullptr : static_cast<const float*>(p.C) + c * p.C_d_stride;
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
      const int64_t tr = t0 + lane * kRunT;  // this lane's run
      const int nv = int(s1 - tr < 0 ? 0 : (s1 - tr < kRunT ? s1 - tr : kRunT));
      float dt[kRunT], dtu[kRunT], y[kRunT];
      load_run(dl + tr, nv, dt);
      load_run(u + tr, nv, dtu);
#pragma unroll
      for (int i = 0; i < kRunT; ++i) {
        float x = dt[i] + bias;
        if (p.delta_softplus) x = softplus_f(x);
        dt[i] = i < nv ? x : 0.f;  // steps past the end: a = 1, b = 0 (identity)
        y[i] = Dv * dtu[i];
        dtu[i] *= dt[i];
      }
      const int64_t off = tr - s0;
      const bool save = states != nullptr && c_ok && nv > 0 && (off & ck_mask) == 0;
      float* st = save ? states + ((b * p.dim + c) * p.states_n_chunks + ck_base + (off >> p.ckpt_log2)) * n : nullptr;
      for (int ns0 = 0; ns0 < n; ns0 += kNS) {
        const int nsl = n - ns0 < kNS ? n - ns0 : kNS;
        if constexpr (kVarB || kVarC) {
          __syncthreads();  // every warp is done with the previous tiles
          if constexpr (kVarB) load_tile(s_B, Bv, p.B_dstate_stride, ns0, nsl, t0, s1);
          if constexpr (kVarC) load_tile(s_C, Cv, p.C_dstate_stride, ns0, nsl, t0, s1);
          __syncthreads();
        }
#pragma unroll 1
        for (int s = 0; s < nsl; ++s) {
          const int sn = ns0 + s;
          const float A2 = Arow[sn] * kLog2e;
          float Bt[kRunT], Ct[kRunT];
          if constexpr (kVarB) {
            const float4* row = reinterpret_cast<const float4*>(s_B + s * kTile);
            const float4 v0 = row[lane], v1 = row[32 + lane];
            Bt[0] = v0.x; Bt[1] = v0.y; Bt[2] = v0.z; Bt[3] = v0.w; Bt[4] = v1.x; Bt[5] = v1.y; Bt[6] = v1.z; Bt[7] = v1.w;
          } else {
#pragma unroll
            for (int i = 0; i < kRunT; ++i) Bt[i] = Bc[sn];
          }
          float a[kRunT], bb[kRunT], Al = 1.f, Bl = 0.f;
#pragma unroll
          for (int i = 0; i < kRunT; ++i) {
            a[i] = fast_exp2(dt[i] * A2);
            bb[i] = dtu[i] * Bt[i];
            Bl = fmaf(a[i], Bl, bb[i]);
            Al *= a[i];
          }
          float cin = 0.f;
          if (lane == 0) {
            cin = carry[sn];
            Bl = fmaf(Al, cin, Bl);
          }
#pragma unroll
          for (int o = 1; o < 32; o <<= 1) {
            const float Ap = __shfl_up_sync(kFullMask, Al, o), Bp = __shfl_up_sync(kFullMask, Bl, o);
            if (lane >= o) {
              Bl = fmaf(Al, Bp, Bl);
              Al *= Ap;
            }
          }
          float h = __shfl_up_sync(kFullMask, Bl, 1);
          const float tot = __shfl_sync(kFullMask, Bl, 31);
          if (lane == 0) {
            h = cin;
            carry[sn] = tot;
          }
          if (save) st[sn] = h;
          if constexpr (kVarC) {
            const float4* row = reinterpret_cast<const float4*>(s_C + s * kTile);
            const float4 v0 = row[lane], v1 = row[32 + lane];
            Ct[0] = v0.x; Ct[1] = v0.y; Ct[2] = v0.z; Ct[3] = v0.w; Ct[4] = v1.x; Ct[5] = v1.y; Ct[6] = v1.z; Ct[7] = v1.w;
          } else {
#pragma unroll
            for (int i = 0; i < kRunT; ++i) Ct[i] = Cc[sn];
          }
#pragma unroll
          for (int i = 0; i < kRunT; ++i) {
            h = fmaf(a[i], h, bb[i]);
            y[i] = fmaf(Ct[i], h, y[i]);
          }
        }
      }
      if (c_ok && nv > 0) {
        if (zp) {
          float zz[kRunT];
          load_run(zp + tr, nv, zz);
#pragma unroll
          for (int i = 0; i < kRunT; ++i) y[i] *= silu_f(zz[i]);
        }
        store_run(out + tr, nv, y);
      }
    }
    ck_base += (s1 - s0 + ck_mask) >> p.ckpt_log2;
    if (p.last_state && c_ok && lane == 0)
      for (int s = 0; s < n; ++s) static_cast<float*>(p.last_state)[(slot * p.dim + c) * n + s] = carry[s];
  }
}

// Launch for one input dtype: 2 x 2 kernels (variable B, variable C).
template <typename in_t>
cudaError_t launch_selective_scan_fwd(const SelectiveScanParams& p, cudaStream_t stream) {
  const bool var_b = p.is_variable_B, var_c = p.is_variable_C;
  const int64_t groups = (var_b || var_c) ? p.n_groups : 1;
  const int64_t dpg = p.dim / groups;
  if (p.batch == 0 || p.dim == 0) return cudaSuccess;
  if (p.batch > 65535 || groups > 65535 || p.dstate < 1 || p.dstate > 256) return cudaErrorInvalidConfiguration;
  if (p.states != nullptr && p.ckpt_log2 < 3) return cudaErrorInvalidValue;  // chunks start on runs of 8
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned((dpg + kFwdWarps - 1) / kFwdWarps), unsigned(groups), unsigned(p.batch));
  cfg.blockDim = dim3(kFwdThreads);
  cfg.dynamicSmemBytes = size_t(fwd_smem_bytes(p.dstate, var_b, var_c));  // <= 40 KB
  cfg.stream = stream;
  cudaError_t err = MK_BOOL_SWITCH(var_b, kVarB, [&] {
    return MK_BOOL_SWITCH(var_c, kVarC, [&] {
      return cudaLaunchKernelEx(&cfg, selective_scan_fwd_kernel<in_t, kVarB, kVarC>, p);
    });
  });
  return err != cudaSuccess ? err : cudaGetLastError();
}

}  // namespace ss
}  // namespace mamba_kernels
