// CUDA dispatch of the SSD head-walk stages (ssd_dx_kernel.cuh, ssd_scan_kernel.cuh; no torch): checks the sizes the
// kernels are built for (p 64, n 128, chunk 128) and launches them for bf16 inputs.
#include "ssd/ssd_dx_kernel.cuh"
#include "ssd/ssd_scan_kernel.cuh"

namespace mamba_kernels {
namespace {

const char* check_walk(const SsdWalkParams& p) {
  if (p.nheads < 1 || p.ngroups < 1 || p.nheads % p.ngroups != 0) return "ngroups must divide nheads";
  if (p.nheads * kSsdWalkHeaddim * kSsdWalkChunk >= (int64_t(1) << 31))  // the tile loads' 32-bit row offsets
    return "nheads * 64 * 128 must be below 2^31";
  if (p.ngroups * kSsdWalkDstate * kSsdWalkChunk >= (int64_t(1) << 31)) return "ngroups * 128 * 128 must be below 2^31";
  if (p.num_ctas < 1) return "num_ctas must be positive";
  if (p.n_slots < 0 || p.seqlen < 0 || p.batch < 0) return "negative size";
  if (p.tab == nullptr && p.n_slots > p.batch * p.chunks_per_row) return "n_slots exceeds the batch's chunks";
  if (p.cb == nullptr || p.rows == nullptr || p.a == nullptr || p.dtp == nullptr) return "missing input";
  return nullptr;
}

}  // namespace

const char* ssd_dx_cuda(const SsdDxParams& p, void* stream) {
  if (const char* e = check_walk(p.w)) return e;
  const cudaError_t e = ssd_walk::launch_walk(ssd_walk::ssd_dx_kernel<__nv_bfloat16>, p, p.w,
                                              static_cast<cudaStream_t>(stream));
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

const char* ssd_scan_cuda(const SsdScanParams& p, void* stream) {
  if (const char* e = check_walk(p.w)) return e;
  const cudaError_t e = ssd_walk::launch_walk(ssd_walk::ssd_scan_kernel<__nv_bfloat16>, p, p.w,
                                              static_cast<cudaStream_t>(stream));
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

}  // namespace mamba_kernels
