// CUDA dispatch of the verify family (no torch): state dtype -> verify_ssm_<dtype>.cu; the conv step here.
#include "verify/verify.h"
#include "verify/verify_conv_kernel.cuh"

namespace mamba_kernels {

const char* verify_step_cuda(const VerifyStepParams& p, void* stream) {
  switch (p.state_dtype) {
    case DType::kFloat32: return verify_ssm_cuda_f32(p, stream);
    case DType::kFloat16: return verify_ssm_cuda_f16(p, stream);
    case DType::kBFloat16: return verify_ssm_cuda_bf16(p, stream);
    default: return "verify_step_cuda: state dtype must be float32, float16 or bfloat16";
  }
}

const char* conv_verify_step_cuda(const ConvVerifyParams& p, void* stream) {
  using namespace verify_kernels;
  if (p.k < 0 || p.k > kMaxK || p.k > p.Kmax || p.Kmax > kMaxK) return "conv_verify_step_cuda: need 0 <= k <= Kmax <= 32";
  if (p.width < 2 || p.width > kMaxWidth) return "conv_verify_step_cuda: width must be in [2, 8]";
  if (p.in_dtype == DType::kFloat64) return "conv_verify_step_cuda: float64 is not supported on CUDA";
  if (p.batch == 0) return nullptr;
  if (p.batch > 0x7fffffff) return "conv_verify_step_cuda: batch too large";
  int64_t threads = (p.dc + 31) / 32 * 32;
  threads = threads < 32 ? 32 : (threads > kConvThreads ? kConvThreads : threads);
  conv_verify_kernel<<<static_cast<unsigned>(p.batch), static_cast<unsigned>(threads), 0,
                       static_cast<cudaStream_t>(stream)>>>(p);
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace mamba_kernels
