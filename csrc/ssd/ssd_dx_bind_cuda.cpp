// Torch binding of the SSD backward's CUDA dx stage (goes into mamba_kernels._cuda). Thin: checks and the params
// struct. torch.ops.mamba_kernels._ssd_dx_cuda(...) writes dx and adds into the fp32 accumulators ddtp, da, dalast
// and dD (when D is given); called only from mamba_kernels/ssd/cuda_dx.py inside the Triton backward (triton.py),
// which owns every tensor's layout (SsdDxParams in ssd.h).
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>

#include "common/bind_utils.h"
#include "ssd/ssd.h"

namespace mamba_kernels {
namespace {

void ssd_dx_cuda_op(const at::Tensor& x, const at::Tensor& dy, const at::Tensor& B, const at::Tensor& cb,
                    const at::Tensor& dtp, const at::Tensor& a, const at::Tensor& dS, const std::optional<at::Tensor>& D,
                    const std::optional<at::Tensor>& tab, int64_t n_slots, int64_t num_ctas, at::Tensor& dx,
                    at::Tensor& ddtp, at::Tensor& da, at::Tensor& dalast, at::Tensor& dD) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 4, "x: expected a CUDA (b, l, h, p) tensor");
  TORCH_CHECK_TYPE(x.scalar_type() == at::kBFloat16, "x: expected bf16");
  TORCH_CHECK(B.dim() == 4, "B: expected (b, l, g, n)");
  const int64_t b = x.size(0), l = x.size(1), h = x.size(2), P = x.size(3), g = B.size(2), n = B.size(3);
  const int64_t Q = kSsdDxChunk;
  TORCH_CHECK(P == kSsdDxHeaddim && n == kSsdDxDstate, "ssd_dx_cuda: expected p = 64 and n = 128, got p = ", P,
              ", n = ", n);
  TORCH_CHECK(g >= 1 && h % g == 0, "B: its group count must divide the head count");
  TORCH_CHECK(n_slots >= 0, "n_slots: expected >= 0");
  const auto bf = at::kBFloat16, f32 = at::kFloat;
  const int64_t xs = b * l * h * P, hl = b * h * l, slots = std::max<int64_t>(n_slots, 1);
  check_cuda_dense(x, x, "x", bf, xs);
  check_cuda_dense(dy, x, "dy", bf, xs);
  check_cuda_dense(B, x, "B", bf, b * l * g * n);
  TORCH_CHECK(cb.numel() >= n_slots * g * Q * Q, "cb: expected (n_slots, g, 128, 128)");
  check_cuda_dense(cb, x, "cb", bf, cb.numel());
  check_cuda_dense(dtp, x, "dtp", f32, hl);
  check_cuda_dense(a, x, "a", f32, hl);
  check_cuda_dense(dS, x, "dS", bf, slots * h * P * n);
  check_cuda_dense(dx, x, "dx", bf, xs);
  check_cuda_dense(ddtp, x, "ddtp", f32, hl);
  check_cuda_dense(da, x, "da", f32, hl);
  check_cuda_dense(dalast, x, "dalast", f32, slots * h);
  SsdDxParams p;
  p.batch = b;
  p.seqlen = l;
  p.nheads = h;
  p.ngroups = g;
  p.n_slots = n_slots;
  p.chunks_per_row = (l + Q - 1) / Q;
  p.num_ctas = num_ctas;
  p.x = x.const_data_ptr();
  p.dy = dy.const_data_ptr();
  p.B = B.const_data_ptr();
  p.cb = cb.const_data_ptr();
  p.dS = dS.const_data_ptr();
  p.dtp = dtp.const_data_ptr<float>();
  p.a = a.const_data_ptr<float>();
  p.D = nullptr;
  p.D_per_channel = false;
  p.dD = nullptr;
  if (D) {
    TORCH_CHECK(D->numel() == h || D->numel() == h * P, "D: expected (h) or (h, p)");
    check_cuda_dense(*D, x, "D", f32, D->numel());
    check_cuda_dense(dD, x, "dD", f32, h * P);
    p.D = D->const_data_ptr<float>();
    p.D_per_channel = D->numel() == h * P;
    p.dD = dD.mutable_data_ptr<float>();
  }
  p.tab = nullptr;
  if (tab) {
    TORCH_CHECK(b == 1, "tab (cu_seqlens): expected batch size 1");
    check_cuda_dense(*tab, x, "tab", at::kInt, 2 * n_slots);
    p.tab = tab->const_data_ptr<int32_t>();
  } else {
    TORCH_CHECK(n_slots == b * p.chunks_per_row, "n_slots: expected ", b * p.chunks_per_row);
  }
  p.dx = dx.mutable_data_ptr();
  p.ddtp = ddtp.mutable_data_ptr<float>();
  p.da = da.mutable_data_ptr<float>();
  p.dalast = dalast.mutable_data_ptr<float>();
  c10::cuda::CUDAGuard guard(x.device());
  const char* err = ssd_dx_cuda(p, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == nullptr, "ssd_dx_cuda: ", err ? err : "");
}

}  // namespace
}  // namespace mamba_kernels

TORCH_LIBRARY_FRAGMENT(mamba_kernels, m) {
  m.def(
      "_ssd_dx_cuda(Tensor x, Tensor dy, Tensor B, Tensor cb, Tensor dtp, Tensor a, Tensor dS, Tensor? D, "
      "Tensor? tab, int n_slots, int num_ctas, Tensor(a!) dx, Tensor(b!) ddtp, Tensor(c!) da, Tensor(d!) dalast, "
      "Tensor(e!) dD) -> ()",
      &mamba_kernels::ssd_dx_cuda_op);
}
