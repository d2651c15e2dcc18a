// Standalone conv step with rollback: CUDA kernel (CUDA headers only, no torch).
// One block per batch row (its slot's conv meta is read and written by this block only); each thread owns
// whole channels (reads, then rewrites, its window column), looping over the channels.
#pragma once
#include "verify/verify_common_kernel.cuh"

namespace mamba_kernels {
namespace verify_kernels {

__global__ void __launch_bounds__(kConvThreads) conv_verify_kernel(const ConvVerifyParams p) {
  __shared__ int ctx[kCtxWords];
  __shared__ int spar[kMaxK];
  __shared__ int smask[kMaxK];
  __shared__ int staps[kMaxK * kMaxWidth];
  const int64_t b = blockIdx.x;
  const int tid = threadIdx.x, nthr = blockDim.x;
  const int k = static_cast<int>(p.k);
  const int64_t s = p.slots[b * p.slots_stride];
  if (s < 0 || s >= p.S) {
    for (int64_t i = tid; i < p.k * p.dc; i += nthr) {
      const int64_t t = i / p.dc, ch = i - t * p.dc;
      st_any(p.out, b * p.out_b + t * p.out_k + ch * p.out_c, p.in_dtype, 0.f);
    }
    return;
  }
  const int width = static_cast<int>(p.width);
  setup_ctx(p.meta + s * p.meta_s, p.meta_i, p.Kmax, 0, p.accepted + b * p.accepted_stride, p.accepted_is_node,
            p.parents != nullptr ? p.parents + b * p.par_b : nullptr, p.par_k, k, false, width, ctx, spar, smask,
            nullptr, staps);
  const unsigned path = static_cast<unsigned>(ctx[kCtxPath]);
  for (int64_t ch = tid; ch < p.dc; ch += nthr) {
    conv_channel(p.window, s * p.win_s, p.win_i, p.win_c, p.x, b * p.x_b, p.x_k, p.x_c, p.in_dtype, p.weight,
                 p.w_c, p.w_w, p.weight_dtype, p.bias, p.b_c, p.bias_dtype, ch, width, k, p.Kmax, path, staps,
                 p.silu, [&](int t, float o) { st_any(p.out, b * p.out_b + t * p.out_k + ch * p.out_c, p.in_dtype, o); });
  }
  __syncthreads();  // every thread read its meta-derived state long ago; keep the write last anyway
  if (tid == 0) {
    int32_t* m = p.meta + s * p.meta_s;
    m[0] = k;
    for (int t = 0; t < k && t < p.Kmax; ++t) m[(1 + t) * p.meta_i] = smask[t];
  }
}

// Launch check / geometry (shared with the CPU emulation): returns an error or nullptr; sets threads.
inline const char* conv_launch_config(const ConvVerifyParams& p, int* threads) {
  if (p.k < 0 || p.k > kMaxK || p.k > p.Kmax || p.Kmax > kMaxK) return "conv_verify_step_cuda: need 0 <= k <= Kmax <= 32";
  if (p.width < 2 || p.width > kMaxWidth) return "conv_verify_step_cuda: width must be in [2, 8]";
  if (p.in_dtype == DType::kFloat64) return "conv_verify_step_cuda: float64 is not supported on CUDA";
  if (p.batch > 0x7fffffff) return "conv_verify_step_cuda: batch too large";
  int64_t t = (p.dc + 31) / 32 * 32;
  t = t < 32 ? 32 : (t > kConvThreads ? kConvThreads : t);
  *threads = static_cast<int>(t);
  return nullptr;
}

}  // namespace verify_kernels
}  // namespace mamba_kernels
