// CUDA SSD backward for fp32 inputs (one file per dtype so they compile in parallel).
#include "ssd/ssd_bwd_launch.cuh"

namespace mamba_kernels {
namespace ssd_bwd {
template cudaError_t launch_ssd_bwd<float>(const SsdBwdCudaParams& p, cudaStream_t stream);
}  // namespace ssd_bwd
}  // namespace mamba_kernels
