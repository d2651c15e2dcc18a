// CUDA SSD forward for fp16 inputs (fp32 tiles, 3xTF32) (one file per dtype so they compile in parallel).
#include "ssd/ssd_fwd_kernel.cuh"

namespace mamba_kernels {
namespace ssd_cuda {
template cudaError_t launch_ssd_fwd<__half>(const SsdFwdCudaParams& p, cudaStream_t stream);
}  // namespace ssd_cuda
}  // namespace mamba_kernels
