// CUDA dispatch of the SSD forward by input dtype (no torch). The kernels live in ssd_fwd_{bf16,fp16,fp32}.cu.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "ssd/ssd.h"

namespace mamba_kernels {
namespace ssd_cuda {
template <typename in_t>
cudaError_t launch_ssd_fwd(const SsdFwdCudaParams& p, cudaStream_t stream);
extern template cudaError_t launch_ssd_fwd<float>(const SsdFwdCudaParams&, cudaStream_t);
extern template cudaError_t launch_ssd_fwd<__half>(const SsdFwdCudaParams&, cudaStream_t);
extern template cudaError_t launch_ssd_fwd<__nv_bfloat16>(const SsdFwdCudaParams&, cudaStream_t);
}  // namespace ssd_cuda

const char* ssd_fwd_cuda(const SsdFwdCudaParams& p, void* stream) {
  if (p.dstate < 1 || p.dstate > kSsdCudaMaxDstate) return "ssd_fwd_cuda: dstate must be in [1, 128]";
  if (p.chunk_size <= 0 || p.chunk_size % kSsdCudaChunkMultiple != 0)
    return "ssd_fwd_cuda: chunk_size must be a positive multiple of 64";
  if (p.cu_seqlens != nullptr && p.chunk_offsets == nullptr) return "ssd_fwd_cuda: cu_seqlens needs chunk_offsets";
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  cudaError_t err;
  switch (p.in_dtype) {
    case DType::kFloat32: err = ssd_cuda::launch_ssd_fwd<float>(p, s); break;
    case DType::kFloat16: err = ssd_cuda::launch_ssd_fwd<__half>(p, s); break;
    case DType::kBFloat16: err = ssd_cuda::launch_ssd_fwd<__nv_bfloat16>(p, s); break;
    default: return "ssd_fwd_cuda: unsupported input dtype (fp32, fp16, bf16)";
  }
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace mamba_kernels
