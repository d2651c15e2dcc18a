// Torch binding of the SSD CPU forward (csrc/ssd/ssd_cpu.cpp) into mamba_kernels._C:
//   torch.ops.mamba_kernels._ssd_fwd_cpu(...) writes out, states_in, final_states in place.
// Called only from mamba_kernels/ssd/cpu.py, which validates shapes, makes every tensor contiguous in one float
// dtype (float32 or float64) and zero-fills states_in (unused chunk slots stay zero).
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <optional>

#include "common/bind_utils.h"
#include "ssd/ssd.h"
#include "ssd/ssd_bind_sizes.h"

namespace mamba_kernels {
namespace {

void check(const at::Tensor& t, const char* name, at::ScalarType st) {
  TORCH_CHECK(t.device().is_cpu(), name, ": expected a CPU tensor, got ", t.device());
  TORCH_CHECK(t.is_contiguous(), name, ": expected a contiguous tensor");
  TORCH_CHECK_TYPE(t.scalar_type() == st, name, ": expected ", st, ", got ", t.scalar_type());
}

const void* opt(const std::optional<at::Tensor>& t, const char* name, at::ScalarType st) {
  if (!t.has_value()) return nullptr;
  check(*t, name, st);
  return t->const_data_ptr();
}

void ssd_fwd_cpu_op(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                    const at::Tensor& C, const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& z,
                    const std::optional<at::Tensor>& dt_bias, const std::optional<at::Tensor>& initial_states,
                    const at::Tensor& seq_info, int64_t chunk_size, bool dt_softplus, bool has_dt_limit,
                    double dt_min, double dt_max, at::Tensor& out, at::Tensor& states_in, at::Tensor& final_states) {
  const auto st = x.scalar_type();
  TORCH_CHECK_TYPE(st == at::kFloat || st == at::kDouble, "x: expected float32 or float64, got ", st);
  for (auto [t, name] : {std::pair{&x, "x"}, {&dt, "dt"}, {&A, "A"}, {&B, "B"}, {&C, "C"}, {&out, "out"},
                         {&states_in, "states_in"}, {&final_states, "final_states"}}) {
    check(*t, name, st);
  }
  check(seq_info, "seq_info", at::kLong);
  TORCH_CHECK(seq_info.dim() == 2 && seq_info.size(1) == 4, "seq_info: expected (nseq, 4)");
  SsdFwdParams p{};
  ssd_read_sizes(p, x, B, chunk_size);
  p.nseq = seq_info.size(0);
  TORCH_CHECK(final_states.size(0) == p.nseq, "final_states: expected nseq rows");
  p.dtype = to_dtype_code(x, "x");
  p.x = x.const_data_ptr();
  p.dt = dt.const_data_ptr();
  p.A = A.const_data_ptr();
  p.B = B.const_data_ptr();
  p.C = C.const_data_ptr();
  p.D = opt(D, "D", st);
  p.D_per_channel = D.has_value() && D->dim() == 2;
  p.z = opt(z, "z", st);
  p.dt_bias = opt(dt_bias, "dt_bias", st);
  p.initial_states = opt(initial_states, "initial_states", st);
  p.seq_info = seq_info.const_data_ptr<int64_t>();
  p.dt_softplus = dt_softplus;
  p.has_dt_limit = has_dt_limit;
  p.dt_min = dt_min;
  p.dt_max = dt_max;
  p.out = out.mutable_data_ptr();
  p.states_in = states_in.mutable_data_ptr();
  p.final_states = final_states.mutable_data_ptr();
  TORCH_CHECK(ssd_fwd_cpu(p) == 0, "ssd_fwd_cpu: unsupported dtype");
}

}  // namespace
}  // namespace mamba_kernels

TORCH_LIBRARY_FRAGMENT(mamba_kernels, m) {
  m.def(
      "_ssd_fwd_cpu(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, Tensor? dt_bias, "
      "Tensor? initial_states, Tensor seq_info, int chunk_size, bool dt_softplus, bool has_dt_limit, "
      "float dt_min, float dt_max, Tensor(a!) out, Tensor(b!) states_in, Tensor(c!) final_states) -> ()");
  m.impl("_ssd_fwd_cpu", c10::DispatchKey::CPU, &mamba_kernels::ssd_fwd_cpu_op);
}
