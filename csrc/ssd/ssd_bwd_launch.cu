// CUDA dispatch of the SSD backward by input dtype (no torch). The kernels: ssd_bwd_kernel.cuh and
// ssd_bwd_chunk_kernel.cuh, launched in order by ssd_bwd_launch.cuh's launch_ssd_bwd, instantiated in
// ssd_bwd_{bf16,fp16,fp32}.cu.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/smem_optin.h"
#include "ssd/ssd.h"

namespace mamba_kernels {
namespace ssd_bwd {
template <typename in_t>
cudaError_t launch_ssd_bwd(const SsdBwdCudaParams& p, cudaStream_t stream);
extern template cudaError_t launch_ssd_bwd<float>(const SsdBwdCudaParams&, cudaStream_t);
extern template cudaError_t launch_ssd_bwd<__half>(const SsdBwdCudaParams&, cudaStream_t);
extern template cudaError_t launch_ssd_bwd<__nv_bfloat16>(const SsdBwdCudaParams&, cudaStream_t);
}  // namespace ssd_bwd

const char* ssd_bwd_cuda(const SsdBwdCudaParams& p, void* stream) {
  if (p.dstate < 1 || p.dstate > kSsdCudaMaxDstate) return "ssd_bwd_cuda: dstate must be in [1, 128]";
  if (p.headdim < 1 || p.headdim > kSsdBwdMaxHeaddim) return "ssd_bwd_cuda: headdim must be in [1, 128]";
  if (p.chunk_size <= 0 || p.chunk_size % kSsdCudaChunkMultiple != 0)
    return "ssd_bwd_cuda: chunk_size must be a positive multiple of 64";
  if (p.ngroups < 1 || p.nheads % p.ngroups != 0) return "ssd_bwd_cuda: ngroups must divide nheads";
  if (p.nheads > 65535 || p.nseq > 65535) return "ssd_bwd_cuda: at most 65535 heads and sequences";
  if (p.cu_seqlens != nullptr && (p.chunk_offsets == nullptr || p.batch != 1))
    return "ssd_bwd_cuda: cu_seqlens needs chunk_offsets and batch 1";
  if (p.cu_seqlens == nullptr && p.n_slots < p.batch * ((p.seqlen + p.chunk_size - 1) / p.chunk_size))
    return "ssd_bwd_cuda: n_slots is less than the number of chunks";
  if ((p.z == nullptr) != (p.ypre == nullptr) || (p.z != nullptr && p.dz == nullptr))
    return "ssd_bwd_cuda: z needs ypre and dz";
  if ((p.D == nullptr) != (p.dD == nullptr)) return "ssd_bwd_cuda: D needs dD";
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  cudaError_t err;
  switch (p.in_dtype) {
    case DType::kFloat32: err = ssd_bwd::launch_ssd_bwd<float>(p, s); break;
    case DType::kFloat16: err = ssd_bwd::launch_ssd_bwd<__half>(p, s); break;
    case DType::kBFloat16: err = ssd_bwd::launch_ssd_bwd<__nv_bfloat16>(p, s); break;
    default: return "ssd_bwd_cuda: unsupported input dtype (fp32, fp16, bf16)";
  }
  return err == cudaSuccess ? nullptr : launch_error_string(err);
}

}  // namespace mamba_kernels
