// Shared by the SSD torch bindings (CPU forward, CUDA forward, CUDA backward; never included by kernels): the sizes
// every one of them reads into its params struct, with the checks they share.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace mamba_kernels {

// x (b, l, h, p) and B (b, l, g, n) -> batch, seqlen, nheads, headdim, ngroups, dstate, chunk_size of p.
template <class Params>
void ssd_read_sizes(Params& p, const at::Tensor& x, const at::Tensor& B, int64_t chunk_size) {
  TORCH_CHECK(x.dim() == 4, "x: expected (b, l, h, p), got ", x.sizes());
  TORCH_CHECK(B.dim() == 4, "B: expected (b, l, g, n), got ", B.sizes());
  TORCH_CHECK(chunk_size > 0, "chunk_size must be positive");
  p.batch = x.size(0);
  p.seqlen = x.size(1);
  p.nheads = x.size(2);
  p.headdim = x.size(3);
  p.ngroups = B.size(2);
  p.dstate = B.size(3);
  p.chunk_size = chunk_size;
  TORCH_CHECK(p.ngroups >= 1 && p.nheads % p.ngroups == 0, "B: g = ", p.ngroups, " must divide h = ", p.nheads);
}

}  // namespace mamba_kernels
