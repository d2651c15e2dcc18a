// SSM verify step + fused Mamba-2 step, state dtype __nv_bfloat16 (one file per state dtype: parallel compilation).
#include "verify/verify_ssm_launch.cuh"

namespace mamba_kernels {

const char* verify_ssm_cuda_bf16(const VerifyStepParams& p, void* stream) {
  return verify_kernels::launch_verify_ssm<__nv_bfloat16>(p, static_cast<cudaStream_t>(stream));
}

}  // namespace mamba_kernels
