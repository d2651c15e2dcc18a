// Launch sequence of the CUDA SSD backward (K0..K6 of ssd_bwd_kernel.cuh / ssd_bwd_chunk_kernel.cuh on one stream),
// instantiated per input dtype in ssd_bwd_{bf16,fp16,fp32}.cu (and in the CPU emulation,
// tests/cuda_emu/ssd_bwd_emu.cpp); checked and dispatched by ssd_bwd_cuda (ssd_bwd_launch.cu). Kept apart from the
// kernels to keep each file short.
#pragma once
#include "ssd/ssd_bwd_chunk_kernel.cuh"

namespace mamba_kernels {
namespace ssd_bwd {

// ------------------------------------------------------------------------------------------ launch
template <typename K>
inline cudaError_t bwd_launch(K kernel, dim3 grid, int64_t smem, cudaStream_t stream, const SsdBwdCudaParams& p) {
  cudaLaunchConfig_t cfg = {};
  cfg.blockDim = dim3(kThr);
  cfg.gridDim = grid;
  cfg.dynamicSmemBytes = size_t(smem);
  cfg.stream = stream;
  cudaError_t e = cudaSuccess;
  e = opt_in_smem(kernel, smem, "ssd_bwd_cuda");
  if (e == cudaSuccess) e = cudaLaunchKernelEx(&cfg, kernel, p);
  return e == cudaSuccess ? cudaGetLastError() : e;
}

// K0..K6 on one stream (instantiated in ssd_bwd_{bf16,fp16,fp32}.cu); checked by ssd_bwd_cuda (ssd_bwd_launch.cu).
template <typename in_t>
cudaError_t launch_ssd_bwd(const SsdBwdCudaParams& p, cudaStream_t stream) {
  using E = typename TileType<in_t>::E;
  if (p.nseq == 0 || p.nheads == 0 || p.headdim == 0) return cudaSuccess;
  const BwdSmem<E> S(p.dstate, p.headdim);
  const int64_t H = p.nheads, npb = (p.headdim + kC - 1) / kC, nb = p.chunk_size / kT;
  const int64_t pairs = (p.n_slots > 0 ? p.n_slots : 1) * H;
  const int64_t nsplit = ssd_bwd_group_split(H, p.ngroups);
  if (nsplit > 1 && (p.dcb32 == nullptr || p.dbc32 == nullptr)) return cudaErrorInvalidValue;
  const int64_t nhead_blk = p.n_slots * npb * H, ndcb = p.n_slots * (nb * (nb + 1) / 2) * nsplit * p.ngroups;
  const int64_t ndbc = p.n_slots * 2 * nb * nsplit * p.ngroups;
  if (nhead_blk > 0x7fffffffLL || ndcb > 0x7fffffffLL || ndbc > 0x7fffffffLL || pairs / kWarps + 1 > 0x7fffffffLL)
    return cudaErrorInvalidValue;
  cudaError_t e = bwd_launch(ssd_bwd_cumsum_kernel<in_t>, dim3(unsigned((pairs + kWarps - 1) / kWarps)), 0, stream, p);
  // grid-stride kernels: a few waves of 8 CTAs an SM on the largest GPUs are enough to stream the scratch
  const int64_t zn =
      p.n_slots * p.ngroups * p.chunk_size * p.chunk_size + 2 * p.batch * p.seqlen * p.ngroups * p.dstate;
  const unsigned zgrid = unsigned(std::min<int64_t>((zn + kThr - 1) / kThr, 132 * 8 * 4));
  if (e == cudaSuccess && nsplit > 1 && zn > 0) e = bwd_launch(ssd_bwd_zero_kernel<in_t>, dim3(zgrid), 0, stream, p);
  if (e == cudaSuccess && nhead_blk > 0)
    e = bwd_launch(ssd_bwd_dstate_kernel<in_t>, dim3(unsigned(nhead_blk)), S.k1, stream, p);
  const int64_t pn = p.headdim * p.dstate;
  if (e == cudaSuccess) {
    if (pn % 4 == 0)
      e = bwd_launch(ssd_bwd_pass_kernel<in_t, 4>, dim3(unsigned((pn + 4 * kThr - 1) / (4 * kThr)), unsigned(H),
                                                  unsigned(p.nseq)), 0, stream, p);
    else
      e = bwd_launch(ssd_bwd_pass_kernel<in_t, 1>, dim3(unsigned((pn + kThr - 1) / kThr), unsigned(H), unsigned(p.nseq)),
                     0, stream, p);
  }
  if (e != cudaSuccess || p.n_slots == 0) return e;
  e = bwd_launch(ssd_bwd_dcb_kernel<in_t>, dim3(unsigned(ndcb)), S.k3 + (k3_stages<in_t>(p) - 1) * S.k3_stage, stream,
                 p);
  if (e == cudaSuccess) e = bwd_launch(ssd_bwd_dx_kernel<in_t>, dim3(unsigned(nhead_blk)), S.k4, stream, p);
  if (e == cudaSuccess) e = bwd_launch(ssd_bwd_dbc_kernel<in_t>, dim3(unsigned(ndbc)), S.k5, stream, p);
  if (e == cudaSuccess && nsplit > 1 && p.batch * p.seqlen > 0) {
    const int64_t cn = 2 * p.batch * p.seqlen * p.ngroups * p.dstate;
    const unsigned cgrid = unsigned(std::min<int64_t>((cn + kThr - 1) / kThr, 132 * 8 * 4));
    e = bwd_launch(ssd_bwd_dbc_cvt_kernel<in_t>, dim3(cgrid), 0, stream, p);
  }
  if (e == cudaSuccess)
    e = bwd_launch(ssd_bwd_dt_kernel<in_t>, dim3(unsigned((p.n_slots * H + kWarps - 1) / kWarps)), 0, stream, p);
  return e;
}

}  // namespace ssd_bwd
}  // namespace mamba_kernels
