// CUDA dispatch of the verify family (no torch): state dtype -> verify_ssm_<dtype>.cu; the conv step here.
#include "verify/verify.h"
#include "verify/verify_conv_kernel.cuh"
#include "verify/verify_ssm_launch.cuh"

namespace mamba_kernels {

const char* verify_step_cuda(const VerifyStepParams& p, void* stream) {
  switch (p.state_dtype) {
    case DType::kFloat32: return verify_ssm_cuda_f32(p, stream);
    case DType::kFloat16: return verify_ssm_cuda_f16(p, stream);
    case DType::kBFloat16: return verify_ssm_cuda_bf16(p, stream);
    default: return "verify_step_cuda: state dtype must be float32, float16 or bfloat16";
  }
}

int64_t verify_step_cuda_workspace(const VerifyStepParams& p) {
  using namespace verify_kernels;
  const bool clusters = device_has_clusters();
  const size_t optin = static_cast<size_t>(device_smem_optin());  // as launch_verify_ssm's choice
  switch (p.state_dtype) {
    case DType::kFloat32: return split_workspace_words<float>(p, clusters, true, optin);
    case DType::kFloat16: return split_workspace_words<__half>(p, clusters, true, optin);
    case DType::kBFloat16: return split_workspace_words<__nv_bfloat16>(p, clusters, true, optin);
    default: return 0;
  }
}

const char* conv_verify_step_cuda(const ConvVerifyParams& p, void* stream) {
  using namespace verify_kernels;
  int threads = 0;
  if (const char* err = conv_launch_config(p, &threads)) return err;
  if (p.batch == 0) return nullptr;
  conv_verify_kernel<<<static_cast<unsigned>(p.batch), static_cast<unsigned>(threads), 0,
                       static_cast<cudaStream_t>(stream)>>>(p);
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace mamba_kernels
