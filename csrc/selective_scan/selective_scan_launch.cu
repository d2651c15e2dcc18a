// CUDA dispatch of the selective scan by input dtype (no torch). The per-dtype kernels live in
// selective_scan_{fwd,bwd}_{fp32,fp16,bf16}.cu.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "selective_scan/selective_scan.h"

namespace mamba_kernels {
namespace ss {
template <typename in_t>
cudaError_t launch_selective_scan_fwd(const SelectiveScanParams& p, cudaStream_t stream);
extern template cudaError_t launch_selective_scan_fwd<float>(const SelectiveScanParams&, cudaStream_t);
extern template cudaError_t launch_selective_scan_fwd<__half>(const SelectiveScanParams&, cudaStream_t);
extern template cudaError_t launch_selective_scan_fwd<__nv_bfloat16>(const SelectiveScanParams&, cudaStream_t);
template <typename in_t>
const char* launch_selective_scan_bwd(const SelectiveScanParams& p, cudaStream_t stream);
extern template const char* launch_selective_scan_bwd<float>(const SelectiveScanParams&, cudaStream_t);
extern template const char* launch_selective_scan_bwd<__half>(const SelectiveScanParams&, cudaStream_t);
extern template const char* launch_selective_scan_bwd<__nv_bfloat16>(const SelectiveScanParams&, cudaStream_t);
}  // namespace ss

const char* selective_scan_fwd_cuda(const SelectiveScanParams& p, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  cudaError_t err;
  switch (p.in_dtype) {
    case DType::kFloat32: err = ss::launch_selective_scan_fwd<float>(p, s); break;
    case DType::kFloat16: err = ss::launch_selective_scan_fwd<__half>(p, s); break;
    case DType::kBFloat16: err = ss::launch_selective_scan_fwd<__nv_bfloat16>(p, s); break;
    default: return "selective_scan_fwd_cuda: unsupported input dtype (fp32, fp16, bf16)";
  }
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

const char* selective_scan_bwd_cuda(const SelectiveScanParams& p, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (p.in_dtype) {
    case DType::kFloat32: return ss::launch_selective_scan_bwd<float>(p, s);
    case DType::kFloat16: return ss::launch_selective_scan_bwd<__half>(p, s);
    case DType::kBFloat16: return ss::launch_selective_scan_bwd<__nv_bfloat16>(p, s);
    default: return "selective_scan_bwd_cuda: unsupported input dtype (fp32, fp16, bf16)";
  }
}

}  // namespace mamba_kernels
