// Torch binding of the CUDA conv1d kernels (goes into mamba_kernels._cuda). Thin: fills the params struct,
// allocates the backward's fp32 dweight / dbias partial rows (reduced in a fixed order by a kernel that writes
// dweight / dbias in the dtypes of weight / bias) and launches on the current stream.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "conv1d/conv1d_bind.h"

namespace mamba_kernels {
namespace conv1d {
namespace {

void check_cuda(const at::Tensor& x) { TORCH_CHECK(x.is_cuda(), "x: expected a CUDA tensor"); }

void fwd(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
         const std::optional<at::Tensor>& initial_states, const std::optional<at::Tensor>& cu_seqlens, at::Tensor y,
         std::optional<at::Tensor> final_states, bool silu, bool channel_last) {
  check_cuda(x);
  const c10::cuda::CUDAGuard guard(x.device());
  auto p = make_params(x, weight, bias, initial_states, cu_seqlens, silu);
  set_fwd_outputs(p, x, y, final_states);
  const char* err = conv1d_fwd_cuda(p, channel_last, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == nullptr, "conv1d forward (CUDA): ", err);
}

void bwd(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
         const std::optional<at::Tensor>& initial_states, const std::optional<at::Tensor>& cu_seqlens,
         const at::Tensor& dy, const std::optional<at::Tensor>& dfinal_states, at::Tensor dx, at::Tensor dweight,
         std::optional<at::Tensor> dbias, std::optional<at::Tensor> dinitial_states, bool silu, bool channel_last) {
  check_cuda(x);
  const c10::cuda::CUDAGuard guard(x.device());
  auto p = make_params(x, weight, bias, initial_states, cu_seqlens, silu);
  set_bwd_fields(p, x, dy, dfinal_states, dx, dweight, dbias, dinitial_states, std::nullopt, weight, bias);
  const int64_t np = conv1d_bwd_num_partials(p, channel_last);
  const auto f32 = dweight.options().dtype(at::kFloat);
  at::Tensor dw_part = dweight.new_empty({np, p.dim, p.width}, f32);
  at::Tensor db_part;
  p.dweight_partial = dw_part.data_ptr<float>();
  if (dbias) {
    db_part = dweight.new_empty({np, p.dim}, f32);
    p.dbias_partial = db_part.data_ptr<float>();
  }
  const char* err = conv1d_bwd_cuda(p, channel_last, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == nullptr, "conv1d backward (CUDA): ", err);
}

void update(const at::Tensor& x, at::Tensor conv_state, const at::Tensor& weight,
            const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& slots, at::Tensor out, bool silu) {
  check_cuda(x);
  const c10::cuda::CUDAGuard guard(x.device());
  auto p = make_update_params(x, conv_state, weight, bias, slots, out, silu);
  const char* err = conv1d_update_cuda(p, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == nullptr, "conv1d update (CUDA): ", err);
}

}  // namespace
}  // namespace conv1d
}  // namespace mamba_kernels

TORCH_LIBRARY_FRAGMENT(mamba_kernels, m) {
  m.def("_conv1d_fwd_cuda(Tensor x, Tensor weight, Tensor? bias, Tensor? initial_states, Tensor? cu_seqlens, "
        "Tensor(a!) y, Tensor(b!)? final_states, bool silu, bool channel_last) -> ()");
  m.def("_conv1d_bwd_cuda(Tensor x, Tensor weight, Tensor? bias, Tensor? initial_states, Tensor? cu_seqlens, "
        "Tensor dy, Tensor? dfinal_states, Tensor(a!) dx, Tensor(b!) dweight, Tensor(c!)? dbias, "
        "Tensor(d!)? dinitial_states, bool silu, bool channel_last) -> ()");
  m.def("_conv1d_update_cuda(Tensor x, Tensor(a!) conv_state, Tensor weight, Tensor? bias, Tensor? slots, "
        "Tensor(b!) out, bool silu) -> ()");
}

TORCH_LIBRARY_IMPL(mamba_kernels, CUDA, m) {
  m.impl("_conv1d_fwd_cuda", &mamba_kernels::conv1d::fwd);
  m.impl("_conv1d_bwd_cuda", &mamba_kernels::conv1d::bwd);
  m.impl("_conv1d_update_cuda", &mamba_kernels::conv1d::update);
}
