// CUDA dispatch of the SSD backward's dx stage (ssd_dx_kernel.cuh; no torch): checks the sizes the kernel is built
// for and launches it for bf16 inputs.
#include "ssd/ssd_dx_kernel.cuh"

namespace mamba_kernels {

const char* ssd_dx_cuda(const SsdDxParams& p, void* stream) {
  if (p.nheads < 1 || p.ngroups < 1 || p.nheads % p.ngroups != 0) return "ssd_dx_cuda: ngroups must divide nheads";
  if (p.num_ctas < 1) return "ssd_dx_cuda: num_ctas must be positive";
  if (p.n_slots < 0 || p.seqlen < 0 || p.batch < 0) return "ssd_dx_cuda: negative size";
  if (p.tab == nullptr && p.n_slots > p.batch * p.chunks_per_row)
    return "ssd_dx_cuda: n_slots exceeds the batch's chunks";
  const cudaError_t e = ssd_dx::launch_ssd_dx<__nv_bfloat16>(p, static_cast<cudaStream_t>(stream));
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

}  // namespace mamba_kernels
