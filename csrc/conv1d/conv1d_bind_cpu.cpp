// Torch binding of the CPU conv1d kernels (goes into mamba_kernels._C). Thin: fills the params struct.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "conv1d/conv1d_bind.h"

namespace mamba_kernels {
namespace conv1d {
namespace {

void check_cpu(const at::Tensor& x) { TORCH_CHECK(x.device().is_cpu(), "x: expected a CPU tensor"); }

// cu_seqlens lives on the CPU here, so its values are checked too (the kernels index with them).
void check_cu_values(const Conv1dParams& p) {
  if (!p.cu_seqlens) return;
  TORCH_CHECK(p.cu_seqlens[0] == 0, "cu_seqlens: must start at 0, got ", p.cu_seqlens[0]);
  for (int64_t n = 0; n < p.nseq; ++n)
    TORCH_CHECK(p.cu_seqlens[n + 1] >= p.cu_seqlens[n], "cu_seqlens: must be non-decreasing");
  TORCH_CHECK(p.cu_seqlens[p.nseq] == p.seqlen, "cu_seqlens: must end at the token count ", p.seqlen, ", got ",
              p.cu_seqlens[p.nseq]);
}

void fwd(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
         const std::optional<at::Tensor>& initial_states, const std::optional<at::Tensor>& cu_seqlens, at::Tensor y,
         std::optional<at::Tensor> final_states, bool silu) {
  check_cpu(x);
  auto p = make_params(x, weight, bias, initial_states, cu_seqlens, silu);
  check_cu_values(p);
  set_fwd_outputs(p, x, y, final_states);
  conv1d_fwd_cpu(p);
}

void bwd(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
         const std::optional<at::Tensor>& initial_states, const std::optional<at::Tensor>& cu_seqlens,
         const at::Tensor& dy, const std::optional<at::Tensor>& dfinal_states, at::Tensor dx, at::Tensor dweight,
         std::optional<at::Tensor> dbias, std::optional<at::Tensor> dinitial_states, bool silu) {
  check_cpu(x);
  auto p = make_params(x, weight, bias, initial_states, cu_seqlens, silu);
  check_cu_values(p);
  set_bwd_fields(p, x, dy, dfinal_states, dx, dweight, dbias, dinitial_states,
                 x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat, weight, bias);
  conv1d_bwd_cpu(p);
}

void update(const at::Tensor& x, at::Tensor conv_state, const at::Tensor& weight,
            const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& slots, at::Tensor out, bool silu) {
  check_cpu(x);
  auto p = make_update_params(x, conv_state, weight, bias, slots, out, silu);
  conv1d_update_cpu(p);
}

}  // namespace
}  // namespace conv1d
}  // namespace mamba_kernels

TORCH_LIBRARY_FRAGMENT(mamba_kernels, m) {
  m.def("_conv1d_fwd_cpu(Tensor x, Tensor weight, Tensor? bias, Tensor? initial_states, Tensor? cu_seqlens, "
        "Tensor(a!) y, Tensor(b!)? final_states, bool silu) -> ()");
  m.def("_conv1d_bwd_cpu(Tensor x, Tensor weight, Tensor? bias, Tensor? initial_states, Tensor? cu_seqlens, "
        "Tensor dy, Tensor? dfinal_states, Tensor(a!) dx, Tensor(b!) dweight, Tensor(c!)? dbias, "
        "Tensor(d!)? dinitial_states, bool silu) -> ()");
  m.def("_conv1d_update_cpu(Tensor x, Tensor(a!) conv_state, Tensor weight, Tensor? bias, Tensor? slots, "
        "Tensor(b!) out, bool silu) -> ()");
}

// A CPU kernel (not a catch-all): the ops then accept fake / meta kernels (interface.py registers one for the
// update, which the public function calls directly).
TORCH_LIBRARY_IMPL(mamba_kernels, CPU, m) {
  m.impl("_conv1d_fwd_cpu", &mamba_kernels::conv1d::fwd);
  m.impl("_conv1d_bwd_cpu", &mamba_kernels::conv1d::bwd);
  m.impl("_conv1d_update_cpu", &mamba_kernels::conv1d::update);
}
