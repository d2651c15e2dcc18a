// CUDA SSD forward for fp16 inputs (one file per dtype so they compile in parallel): the fused kernel and the
// chunk-parallel pipeline.
#include "ssd/ssd_chunk_kernel.cuh"
#include "ssd/ssd_fwd_kernel.cuh"

namespace mamba_kernels {
namespace ssd_cuda {
template cudaError_t launch_ssd_fwd<__half>(const SsdFwdCudaParams& p, cudaStream_t stream);
template cudaError_t launch_ssd_fwd_chunked<__half>(const SsdFwdCudaParams& p, cudaStream_t stream);
}  // namespace ssd_cuda
}  // namespace mamba_kernels
