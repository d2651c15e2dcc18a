// Mamba-1 selective scan forward, CUDA. CUDA headers only (no torch).
//
// Design: the scan is sequential in time per (batch row, channel, state); b*d*n independent recurrences
// (131k at b2 d4096 n16) are plenty of parallelism, so there is no scan across time at all. Each thread
// owns kSPT consecutive states of one channel in registers (fp32); TPC = ceil(n / kSPT) (a power of two
// <= 32) adjacent lanes share a channel and sum y_t = C_t . h_t with xor-shuffles. A block of 128 threads
// owns CPB = 128 / TPC channels of one (batch row, B/C group) and walks time in chunks of `chunk` steps:
//   1. load:    delta (+bias, softplus) and delta*u for CPB x chunk, coalesced along time, into smem (fp32);
//               variable B/C tiles (n x chunk) into smem, transposed to [time][state] (zero padded to NP)
//   2. compute: h = exp2(delta * A*log2e) * h + (delta*u) * B_t;  y = sum C_t h   (ex2.approx: 1 MUFU op)
//               y overwrites the delta*u slot it came from (every lane of the channel has read that slot
//               before the shuffle that produced y, so the overwrite is ordered after those reads)
//   3. output:  out = (y + D u) * silu(z), coalesced along time
// Varlen: the block walks the packed sequences of its channels one after the other, restarting each from
// its own initial state and writing its own last state. The exps (d*l*n) are the floor.
// Training (p.states set): before each chunk whose offset in its sequence is a multiple of 2^ckpt_log2, the
// block saves the state h entering it (fp32, (b, d, n_chunks, n)); the backward restarts from these. The
// launcher then caps the chunk at 2^ckpt_log2 so those offsets fall on chunk starts.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/static_switch.h"
#include "selective_scan/selective_scan.h"

namespace mamba_kernels {
namespace ss {

constexpr int kThreads = 128;
constexpr int kMaxSmem = 48 * 1024;  // stay under the default dynamic shared memory limit

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

// Shared-memory floats of one block: delta and delta*u tiles [chunk][CPB+1], B and C tiles [chunk][NP+4].
__host__ __device__ inline int64_t fwd_smem_bytes(int chunk, int cpb, int np, bool var_b, bool var_c) {
  return 4 * (int64_t(2) * chunk * (cpb + 1) + (var_b ? int64_t(chunk) * (np + 4) : 0) +
              (var_c ? int64_t(chunk) * (np + 4) : 0));
}

template <typename in_t, int kSPT, bool kVarB, bool kVarC>
__global__ void __launch_bounds__(kThreads)
selective_scan_fwd_kernel(const SelectiveScanParams p, const int tpc_log2, const int chunk_log2) {
  static_assert(kSPT % 4 == 0, "states per thread are read as float4");
  extern __shared__ float4 smem_f4[];
  float* smem = reinterpret_cast<float*>(smem_f4);
  const int TPC = 1 << tpc_log2;
  const int CPB = kThreads >> tpc_log2;
  const int CPBp = CPB + 1;          // odd row stride: conflict-free column writes
  const int NP = TPC * kSPT;         // padded state count (multiple of 4)
  const int NPp = NP + 4;
  const int chunk = 1 << chunk_log2;
  float* s_dt = smem;                          // [chunk][CPBp]
  float* s_du = s_dt + chunk * CPBp;           // [chunk][CPBp], then y
  float* s_B = s_du + chunk * CPBp;            // [chunk][NPp]
  float* s_C = s_B + (kVarB ? chunk * NPp : 0);  // [chunk][NPp]

  const int tid = threadIdx.x;
  const int cl = tid >> tpc_log2, sub = tid & (TPC - 1);
  const int64_t b = blockIdx.z, grp = blockIdx.y;
  const int64_t dpg = p.dim / gridDim.y;               // channels of one group (all when B, C constant)
  const int64_t cblk = int64_t(blockIdx.x) * CPB;       // first channel of the block within the group
  const int64_t c0 = grp * dpg + cblk;
  const int n_c = int(dpg - cblk < CPB ? dpg - cblk : CPB);  // valid channels in this block
  const int64_t c = c0 + cl;
  const bool c_ok = cl < n_c;
  const int n = int(p.dstate);
  const bool has_z = p.z != nullptr;

  const in_t* __restrict__ u = static_cast<const in_t*>(p.u) + b * p.u_batch_stride;
  const in_t* __restrict__ dl = static_cast<const in_t*>(p.delta) + b * p.delta_batch_stride;
  const in_t* __restrict__ zp = has_z ? static_cast<const in_t*>(p.z) + b * p.z_batch_stride : nullptr;
  in_t* __restrict__ out = static_cast<in_t*>(p.out) + b * p.out_batch_stride;
  const float* __restrict__ Dp = static_cast<const float*>(p.D);
  const float* __restrict__ biasp = static_cast<const float*>(p.delta_bias);
  const in_t* __restrict__ Bv = kVarB ? static_cast<const in_t*>(p.B) + b * p.B_batch_stride + grp * p.B_group_stride : nullptr;
  const in_t* __restrict__ Cv = kVarC ? static_cast<const in_t*>(p.C) + b * p.C_batch_stride + grp * p.C_group_stride : nullptr;

  float A2[kSPT], Bc[kSPT], Cc[kSPT], h[kSPT];
#pragma unroll
  for (int i = 0; i < kSPT; ++i) {
    const int s = sub * kSPT + i;
    const bool ok = c_ok && s < n;
    A2[i] = ok ? static_cast<const float*>(p.A)[c * p.A_d_stride + s] * 1.4426950408889634f : 0.f;
    Bc[i] = (!kVarB && ok) ? static_cast<const float*>(p.B)[c * p.B_d_stride + s] : 0.f;
    Cc[i] = (!kVarC && ok) ? static_cast<const float*>(p.C)[c * p.C_d_stride + s] : 0.f;
  }

  float* __restrict__ states = static_cast<float*>(p.states);
  const int64_t ck_mask = (int64_t(1) << p.ckpt_log2) - 1;
  int64_t ck_base = 0;  // saved chunks of the sequences before this one (varlen)
  const int64_t nseq = p.cu_seqlens ? p.n_seqs : 1;
  for (int64_t q = 0; q < nseq; ++q) {
    const int64_t s0 = p.cu_seqlens ? p.cu_seqlens[q] : 0;
    const int64_t s1 = p.cu_seqlens ? p.cu_seqlens[q + 1] : p.seqlen;
    const int64_t slot = p.cu_seqlens ? q : b;
#pragma unroll
    for (int i = 0; i < kSPT; ++i) {
      const int s = sub * kSPT + i;
      h[i] = (p.initial_state && c_ok && s < n)
                 ? static_cast<const float*>(p.initial_state)[(slot * p.dim + c) * n + s] : 0.f;
    }
    for (int64_t t0 = s0; t0 < s1; t0 += chunk) {
      const int nt = int(s1 - t0 < chunk ? s1 - t0 : chunk);
      if (states != nullptr && ((t0 - s0) & ck_mask) == 0 && c_ok) {  // save the state entering the chunk
        float* st = states + ((b * p.dim + c) * p.states_n_chunks + ck_base + ((t0 - s0) >> p.ckpt_log2)) * n;
#pragma unroll
        for (int i = 0; i < kSPT; ++i) {
          const int s = sub * kSPT + i;
          if (s < n) st[s] = h[i];
        }
      }
      // 1. load
      for (int idx = tid; idx < CPB * chunk; idx += kThreads) {
        const int j = idx >> chunk_log2, tt = idx & (chunk - 1);
        float dtv = 0.f, duv = 0.f;
        if (j < n_c && tt < nt) {
          const int64_t cc = c0 + j, t = t0 + tt;
          dtv = to_f(dl[cc * p.delta_d_stride + t]) + (biasp ? biasp[cc] : 0.f);
          if (p.delta_softplus) dtv = softplus_f(dtv);
          duv = dtv * to_f(u[cc * p.u_d_stride + t]);
        }
        s_dt[tt * CPBp + j] = dtv;
        s_du[tt * CPBp + j] = duv;
      }
      if (kVarB) {
        for (int idx = tid; idx < NP * chunk; idx += kThreads) {
          const int s = idx >> chunk_log2, tt = idx & (chunk - 1);
          s_B[tt * NPp + s] = (s < n && tt < nt) ? to_f(Bv[s * p.B_dstate_stride + t0 + tt]) : 0.f;
        }
      }
      if (kVarC) {
        for (int idx = tid; idx < NP * chunk; idx += kThreads) {
          const int s = idx >> chunk_log2, tt = idx & (chunk - 1);
          s_C[tt * NPp + s] = (s < n && tt < nt) ? to_f(Cv[s * p.C_dstate_stride + t0 + tt]) : 0.f;
        }
      }
      __syncthreads();
      // 2. compute (every lane runs the loop: the shuffles need the full warp)
#pragma unroll 4
      for (int tt = 0; tt < nt; ++tt) {
        const float dtv = s_dt[tt * CPBp + cl], duv = s_du[tt * CPBp + cl];
        float Bt[kSPT], Ct[kSPT];
#pragma unroll
        for (int k = 0; k < kSPT / 4; ++k) {
          float4 vb = kVarB ? reinterpret_cast<const float4*>(s_B + tt * NPp + sub * kSPT)[k]
                            : make_float4(Bc[4 * k], Bc[4 * k + 1], Bc[4 * k + 2], Bc[4 * k + 3]);
          float4 vc = kVarC ? reinterpret_cast<const float4*>(s_C + tt * NPp + sub * kSPT)[k]
                            : make_float4(Cc[4 * k], Cc[4 * k + 1], Cc[4 * k + 2], Cc[4 * k + 3]);
          Bt[4 * k] = vb.x; Bt[4 * k + 1] = vb.y; Bt[4 * k + 2] = vb.z; Bt[4 * k + 3] = vb.w;
          Ct[4 * k] = vc.x; Ct[4 * k + 1] = vc.y; Ct[4 * k + 2] = vc.z; Ct[4 * k + 3] = vc.w;
        }
        float y = 0.f;
#pragma unroll
        for (int i = 0; i < kSPT; ++i) {
          h[i] = fmaf(fast_exp2(dtv * A2[i]), h[i], duv * Bt[i]);
          y = fmaf(Ct[i], h[i], y);
        }
        for (int off = TPC >> 1; off > 0; off >>= 1) y += __shfl_xor_sync(0xffffffffu, y, off);
        if (sub == 0) s_du[tt * CPBp + cl] = y;
      }
      __syncthreads();
      // 3. output
      for (int idx = tid; idx < CPB * chunk; idx += kThreads) {
        const int j = idx >> chunk_log2, tt = idx & (chunk - 1);
        if (j < n_c && tt < nt) {
          const int64_t cc = c0 + j, t = t0 + tt;
          float y = s_du[tt * CPBp + j];
          if (Dp) y = fmaf(Dp[cc], to_f(u[cc * p.u_d_stride + t]), y);
          if (has_z) y *= silu_f(to_f(zp[cc * p.z_d_stride + t]));
          out[cc * p.out_d_stride + t] = from_f<in_t>(y);
        }
      }
      __syncthreads();  // the next chunk's loads overwrite the tiles read above
    }
    ck_base += (s1 - s0 + ck_mask) >> p.ckpt_log2;
    if (p.last_state) {
#pragma unroll
      for (int i = 0; i < kSPT; ++i) {
        const int s = sub * kSPT + i;
        if (c_ok && s < n) static_cast<float*>(p.last_state)[(slot * p.dim + c) * n + s] = h[i];
      }
    }
  }
}

// Thread layout shared by the forward and the backward kernels.
struct ScanLayout {
  int spt;       // states per thread (kSPT)
  int tpc_log2;  // log2 of the lanes per channel (TPC <= 32: a channel never straddles warps)
  int cpb;       // channels per block
  int np;        // padded state count TPC * spt (a multiple of 4)
};

inline ScanLayout scan_layout(int64_t n) {
  // 4 states per thread keeps enough threads in flight at n = 16 (4 lanes per channel); n > 128 needs 8
  // so that one channel fits in a warp.
  ScanLayout L;
  L.spt = n > 128 ? 8 : 4;
  const int64_t per = (n + L.spt - 1) / L.spt;
  L.tpc_log2 = 0;
  while ((int64_t(1) << L.tpc_log2) < per) ++L.tpc_log2;
  L.cpb = kThreads >> L.tpc_log2;
  L.np = (1 << L.tpc_log2) * L.spt;
  return L;
}

// Launch for one input dtype: picks states/thread, lanes/channel, chunk length; instantiates 2 x 2 x 2
// kernels (kSPT in {4, 8}, variable B, variable C).
template <typename in_t>
cudaError_t launch_selective_scan_fwd(const SelectiveScanParams& p, cudaStream_t stream) {
  const ScanLayout L = scan_layout(p.dstate);
  const int tpc_log2 = L.tpc_log2;
  const bool var_b = p.is_variable_B, var_c = p.is_variable_C;
  const int64_t groups = (var_b || var_c) ? p.n_groups : 1;
  const int64_t dpg = p.dim / groups;
  int chunk_log2 = 6;
  while (chunk_log2 > 1 && fwd_smem_bytes(1 << chunk_log2, L.cpb, L.np, var_b, var_c) > kMaxSmem) --chunk_log2;
  if (p.states != nullptr && chunk_log2 > p.ckpt_log2) chunk_log2 = p.ckpt_log2;  // saves on chunk starts
  const int smem = int(fwd_smem_bytes(1 << chunk_log2, L.cpb, L.np, var_b, var_c));
  if (p.batch == 0 || p.dim == 0) return cudaSuccess;
  if (p.batch > 65535 || groups > 65535) return cudaErrorInvalidConfiguration;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned((dpg + L.cpb - 1) / L.cpb), unsigned(groups), unsigned(p.batch));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = size_t(smem);
  cfg.stream = stream;
  cudaError_t err = MK_BOOL_SWITCH(var_b, kVarB, [&] {
    return MK_BOOL_SWITCH(var_c, kVarC, [&] {
      if (L.spt == 4)
        return cudaLaunchKernelEx(&cfg, selective_scan_fwd_kernel<in_t, 4, kVarB, kVarC>, p, tpc_log2, chunk_log2);
      return cudaLaunchKernelEx(&cfg, selective_scan_fwd_kernel<in_t, 8, kVarB, kVarC>, p, tpc_log2, chunk_log2);
    });
  });
  return err != cudaSuccess ? err : cudaGetLastError();
}

}  // namespace ss
}  // namespace mamba_kernels
