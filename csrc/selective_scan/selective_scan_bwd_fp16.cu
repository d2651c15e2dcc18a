// Backward kernels for fp16 inputs (one file per dtype so they compile in parallel).
#include "selective_scan/selective_scan_bwd_kernel.cuh"

namespace mamba_kernels {
namespace ss {
template const char* launch_selective_scan_bwd<__half>(const SelectiveScanParams& p, cudaStream_t stream);
}  // namespace ss
}  // namespace mamba_kernels
