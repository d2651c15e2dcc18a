// Backward kernels for fp32 inputs (one file per dtype so they compile in parallel).
#include "common/smem_optin.h"
#include "selective_scan/selective_scan_bwd_kernel.cuh"

namespace mamba_kernels {
namespace ss {
template const char* launch_selective_scan_bwd<float>(const SelectiveScanParams& p, cudaStream_t stream);
}  // namespace ss

// (here rather than in selective_scan_launch.cu: the backward's shared-memory layout lives in its kernel header)
bool selective_scan_bwd_fits(int64_t dstate, bool var_b, bool var_c, int device) {
  if (ss::bwd_lane_shape(dstate, var_b, var_c) && ss::BwdLane::kSmemBytes <= smem_optin_of(device)) return true;
  return ss::bwd_smem_bytes(dstate, var_b, var_c) <= smem_optin_of(device);
}

int selective_scan_cuda_ckpt_chunk(int64_t dstate, bool var_b, bool var_c) {
  return ss::bwd_lane_shape(dstate, var_b, var_c) ? ss::BwdLane::kTT : 256;
}
}  // namespace mamba_kernels
