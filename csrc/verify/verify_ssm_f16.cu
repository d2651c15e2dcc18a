// SSM verify step + fused Mamba-2 step, state dtype __half (one file per state dtype: parallel compilation).
#include "verify/verify_ssm_launch.cuh"

namespace mamba_kernels {

const char* verify_ssm_cuda_f16(const VerifyStepParams& p, void* stream) {
  return verify_kernels::launch_verify_ssm<__half>(p, static_cast<cudaStream_t>(stream));
}

}  // namespace mamba_kernels
