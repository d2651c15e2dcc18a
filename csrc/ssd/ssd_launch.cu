// CUDA dispatch of the SSD forward by input dtype and path (no torch). The kernels live in
// ssd_fwd_{bf16,fp16,fp32}.cu: the chunk-parallel pipeline (ssd_chunk_kernel.cuh, default) and the fused kernel
// (ssd_fwd_kernel.cuh, MK_SSD_CUDA_FUSED=1, read once, or params.path = 1).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>

#include "common/smem_optin.h"
#include "ssd/ssd.h"

namespace mamba_kernels {
namespace ssd_cuda {
template <typename in_t>
cudaError_t launch_ssd_fwd(const SsdFwdCudaParams& p, cudaStream_t stream);
template <typename in_t>
cudaError_t launch_ssd_fwd_chunked(const SsdFwdCudaParams& p, cudaStream_t stream);
extern template cudaError_t launch_ssd_fwd<float>(const SsdFwdCudaParams&, cudaStream_t);
extern template cudaError_t launch_ssd_fwd<__half>(const SsdFwdCudaParams&, cudaStream_t);
extern template cudaError_t launch_ssd_fwd<__nv_bfloat16>(const SsdFwdCudaParams&, cudaStream_t);
extern template cudaError_t launch_ssd_fwd_chunked<float>(const SsdFwdCudaParams&, cudaStream_t);
extern template cudaError_t launch_ssd_fwd_chunked<__half>(const SsdFwdCudaParams&, cudaStream_t);
extern template cudaError_t launch_ssd_fwd_chunked<__nv_bfloat16>(const SsdFwdCudaParams&, cudaStream_t);

// 16-byte rows for cp.async: tiles of the input type (bf16, fp32), aligned bases, p, n and every row stride in
// whole 16-byte pieces.
inline bool rows_16b(const SsdFwdCudaParams& p) {
  if (p.in_dtype == DType::kFloat16) return false;  // fp16 inputs are converted to fp32 tiles
  const int64_t ve = p.in_dtype == DType::kFloat32 ? 4 : 8;
  auto al = [](const void* q) { return (reinterpret_cast<uintptr_t>(q) & 15u) == 0; };
  auto mul = [ve](int64_t a, int64_t b, int64_t c) { return a % ve == 0 && b % ve == 0 && c % ve == 0; };
  bool ok = p.headdim % ve == 0 && p.dstate % ve == 0 && al(p.x) && al(p.B) && al(p.C) &&
            mul(p.x_batch_stride, p.x_l_stride, p.x_head_stride) &&
            mul(p.B_batch_stride, p.B_l_stride, p.B_group_stride) &&
            mul(p.C_batch_stride, p.C_l_stride, p.C_group_stride);
  if (p.z) ok = ok && al(p.z) && mul(p.z_batch_stride, p.z_l_stride, p.z_head_stride);
  return ok;
}
}  // namespace ssd_cuda

bool ssd_fwd_cuda_chunked(int path) {
  static const bool env_fused = [] {
    const char* e = std::getenv("MK_SSD_CUDA_FUSED");
    return e != nullptr && e[0] == '1' && e[1] == '\0';
  }();
  return path == 2 || (path == 0 && !env_fused);
}

const char* ssd_fwd_cuda(const SsdFwdCudaParams& params, void* stream) {
  SsdFwdCudaParams p = params;
  if (p.dstate < 1 || p.dstate > kSsdCudaMaxDstate) return "ssd_fwd_cuda: dstate must be in [1, 128]";
  if (p.chunk_size <= 0 || p.chunk_size % kSsdCudaChunkMultiple != 0)
    return "ssd_fwd_cuda: chunk_size must be a positive multiple of 64";
  if (p.cu_seqlens != nullptr && p.chunk_offsets == nullptr) return "ssd_fwd_cuda: cu_seqlens needs chunk_offsets";
  const bool chunked = ssd_fwd_cuda_chunked(p.path);
  if (chunked && (p.states_in == nullptr || p.chunk_decay == nullptr || p.n_slots < 0))
    return "ssd_fwd_cuda: the chunk-parallel path needs states_in, chunk_decay and n_slots";
  if (chunked && p.cu_seqlens == nullptr && p.n_slots < p.batch * ((p.seqlen + p.chunk_size - 1) / p.chunk_size))
    return "ssd_fwd_cuda: n_slots is less than the number of chunks";
  p.vec16 = ssd_cuda::rows_16b(p);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  cudaError_t err;
  switch (p.in_dtype) {
    case DType::kFloat32:
      err = chunked ? ssd_cuda::launch_ssd_fwd_chunked<float>(p, s) : ssd_cuda::launch_ssd_fwd<float>(p, s);
      break;
    case DType::kFloat16:
      err = chunked ? ssd_cuda::launch_ssd_fwd_chunked<__half>(p, s) : ssd_cuda::launch_ssd_fwd<__half>(p, s);
      break;
    case DType::kBFloat16:
      err = chunked ? ssd_cuda::launch_ssd_fwd_chunked<__nv_bfloat16>(p, s)
                    : ssd_cuda::launch_ssd_fwd<__nv_bfloat16>(p, s);
      break;
    default: return "ssd_fwd_cuda: unsupported input dtype (fp32, fp16, bf16)";
  }
  return err == cudaSuccess ? nullptr : launch_error_string(err);
}

}  // namespace mamba_kernels
