// Torch binding of the verify family's CPU kernels (csrc/verify/verify_cpu.cpp) into mamba_kernels._C.
// Op contract: docs/verify_lowlevel_ops.md. The public API (mamba_kernels/verify/interface.py) validates the
// inputs; the checks here only guard the raw-pointer kernels against what they cannot handle.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <cmath>
#include <optional>

#include "common/bind_utils.h"
#include "verify/verify_bind_checks.h"

#define MK_VERIFY_CPU_DECLS_ONLY
#include "verify/verify_cpu.cpp"  // parameter structs + declarations only
#undef MK_VERIFY_CPU_DECLS_ONLY

namespace mamba_kernels {
namespace {

using verify_cpu::ConvStepParams;
using verify_cpu::VerifyStepParams;
namespace vc = verify_checks;

void check_cpu(const at::Tensor& t, const char* name, int64_t ndim) {
  TORCH_CHECK(t.device().is_cpu(), name, ": expected a CPU tensor, got ", t.device());
  TORCH_CHECK(t.dim() == ndim, name, ": expected ", ndim, " dimensions, got ", t.dim());
}

void check_int32(const at::Tensor& t, const char* name, int64_t ndim) {
  check_cpu(t, name, ndim);
  TORCH_CHECK_TYPE(t.scalar_type() == at::kInt, name, ": expected int32, got ", t.scalar_type());
}

template <size_t K>
void strides(const at::Tensor& t, int64_t (&s)[K]) {
  for (size_t i = 0; i < K; ++i) s[i] = t.stride(int64_t(i));
}

// Data pointer of an input (in) or an output (out), with its strides written to s.
template <size_t K>
const void* in(const at::Tensor& t, int64_t (&s)[K]) {
  strides(t, s);
  return t.const_data_ptr();
}

template <size_t K>
void* out(const at::Tensor& t, int64_t (&s)[K]) {
  strides(t, s);
  return t.data_ptr();
}

// Pointer, dtype code and strides of a present optional input.
template <size_t K>
void fill_opt(const at::Tensor& t, const char* name, const void*& ptr, DType& dtype, int64_t (&s)[K]) {
  ptr = in(t, s);
  dtype = to_dtype_code(t, name);
}

// Optional conv bias (dc,): conv_bias of the fused step, bias of the conv step.
void fill_bias(const std::optional<at::Tensor>& bias, const char* name, int64_t dc, const void*& ptr, DType& dtype,
               int64_t& stride) {
  if (!bias.has_value()) return;
  check_cpu(*bias, name, 1);
  TORCH_CHECK(bias->size(0) == dc, name, ": expected (dc,)");
  ptr = bias->const_data_ptr();
  dtype = to_dtype_code(*bias, name);
  stride = bias->stride(0);
}

// slots, accepted (checked by the caller), accepted_is_node and the optional parents of either params struct.
template <class Params>
void fill_rows(Params& p, const at::Tensor& slots, const at::Tensor& accepted, bool accepted_is_node,
               const std::optional<at::Tensor>& parents) {
  p.slots = slots.const_data_ptr<int32_t>();
  p.slots_s = slots.stride(0);
  p.accepted = accepted.const_data_ptr<int32_t>();
  p.accepted_s = accepted.stride(0);
  p.accepted_is_node = accepted_is_node;
  if (parents.has_value()) {
    check_int32(*parents, "parents", 2);
    vc::check_parents(*parents, p.batch, p.k);
    p.parents = parents->const_data_ptr<int32_t>();
    strides(*parents, p.parents_s);
  }
}

// Fills the fields shared by the plain and the fused SSM step.
void fill_common(VerifyStepParams& p, const at::Tensor& dt, const at::Tensor& A, const std::optional<at::Tensor>& D,
                 const std::optional<at::Tensor>& z, const std::optional<at::Tensor>& dt_bias, const at::Tensor& state,
                 const at::Tensor& ring_x, const at::Tensor& ring_B, const at::Tensor& ring_dt, const at::Tensor& meta,
                 const at::Tensor& slots, const at::Tensor& accepted, bool accepted_is_node,
                 const std::optional<at::Tensor>& parents, const at::Tensor& y, bool dt_softplus, double dt_min,
                 double dt_max, bool fold_all, DType in_dtype) {
  check_cpu(state, "state", 4);
  check_cpu(ring_x, "ring_x", 4);
  check_cpu(ring_B, "ring_B", 4);
  check_cpu(ring_dt, "ring_dt", 4);
  check_int32(meta, "meta", 3);
  check_int32(slots, "slots", 1);
  check_int32(accepted, "accepted", 1);
  check_cpu(y, "y", 4);
  check_cpu(dt, "dt", 4);
  check_cpu(A, "A", 3);
  vc::ssm_sizes(p, /*min_kmax=*/0, dt, A, state, ring_x, ring_B, ring_dt, meta, slots, accepted, y);
  p.in_dtype = in_dtype;
  TORCH_CHECK_TYPE(to_dtype_code(y, "y") == in_dtype, "y: expected the dtype of x");
  TORCH_CHECK_TYPE(to_dtype_code(ring_x, "ring_x") == in_dtype && to_dtype_code(ring_B, "ring_B") == in_dtype,
                   "ring_x / ring_B: expected the dtype of x");
  p.dt_dtype = to_dtype_code(dt, "dt");
  p.A_dtype = to_dtype_code(A, "A");
  p.state_dtype = to_dtype_code(state, "state");
  p.ring_dt_dtype = to_dtype_code(ring_dt, "ring_dt");
  p.use_fp64 = p.state_dtype == DType::kFloat64 || in_dtype == DType::kFloat64;
  p.dt = in(dt, p.dt_s);
  p.A = in(A, p.A_s);
  if (D.has_value()) {
    check_cpu(*D, "D", 2);
    vc::check_D(p, *D);
    fill_opt(*D, "D", p.D, p.D_dtype, p.D_s);
  }
  if (z.has_value()) {
    check_cpu(*z, "z", 4);
    vc::check_z(*z, y);
    TORCH_CHECK_TYPE(to_dtype_code(*z, "z") == in_dtype, "z: expected the dtype of x");
    p.z = in(*z, p.z_s);
  }
  if (dt_bias.has_value()) {
    check_cpu(*dt_bias, "dt_bias", 2);
    vc::check_dt_bias(p, *dt_bias);
    fill_opt(*dt_bias, "dt_bias", p.dt_bias, p.dt_bias_dtype, p.dt_bias_s);
  }
  p.state = out(state, p.state_s);
  p.ring_x = out(ring_x, p.ring_x_s);
  p.ring_B = out(ring_B, p.ring_B_s);
  p.ring_dt = out(ring_dt, p.ring_dt_s);
  p.meta = meta.data_ptr<int32_t>();
  strides(meta, p.meta_s);
  fill_rows(p, slots, accepted, accepted_is_node, parents);
  p.y = out(y, p.y_s);
  p.dt_softplus = dt_softplus;
  p.dt_min = dt_min;
  p.dt_max = dt_max;
  p.fold_all = fold_all;
}

void verify_step_cpu(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                     const at::Tensor& C, const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& z,
                     const std::optional<at::Tensor>& dt_bias, at::Tensor state, at::Tensor ring_x, at::Tensor ring_B,
                     at::Tensor ring_dt, at::Tensor meta, const at::Tensor& slots, const at::Tensor& accepted,
                     bool accepted_is_node, const std::optional<at::Tensor>& parents, at::Tensor y, bool dt_softplus,
                     double dt_min, double dt_max, bool fold_all) {
  check_cpu(x, "x", 4);
  check_cpu(B, "B", 4);
  check_cpu(C, "C", 4);
  VerifyStepParams p;
  const DType in_dtype = to_dtype_code(x, "x");
  fill_common(p, dt, A, D, z, dt_bias, state, ring_x, ring_B, ring_dt, meta, slots, accepted, accepted_is_node,
              parents, y, dt_softplus, dt_min, dt_max, fold_all, in_dtype);
  vc::check_x(x, y);
  vc::BC_groups(p, B, C);
  TORCH_CHECK_TYPE(to_dtype_code(B, "B") == in_dtype && to_dtype_code(C, "C") == in_dtype,
                   "B / C: expected the dtype of x");
  p.x = in(x, p.x_s);
  p.B = in(B, p.B_s);
  p.C = in(C, p.C_s);
  verify_cpu::verify_step(p);
}

void verify_step_fused_cpu(const at::Tensor& xBC, const at::Tensor& dt, const at::Tensor& A,
                           const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& z,
                           const std::optional<at::Tensor>& dt_bias, const at::Tensor& conv_weight,
                           const std::optional<at::Tensor>& conv_bias, bool conv_silu, at::Tensor conv_window,
                           at::Tensor state, at::Tensor ring_x, at::Tensor ring_B, at::Tensor ring_dt,
                           at::Tensor meta, const at::Tensor& slots, const at::Tensor& accepted,
                           bool accepted_is_node, const std::optional<at::Tensor>& parents, at::Tensor y,
                           bool dt_softplus, double dt_min, double dt_max, bool fold_all) {
  check_cpu(xBC, "xBC", 3);
  check_cpu(conv_weight, "conv_weight", 2);
  check_cpu(conv_window, "conv_window", 3);
  VerifyStepParams p;
  const DType in_dtype = to_dtype_code(xBC, "xBC");
  fill_common(p, dt, A, D, z, dt_bias, state, ring_x, ring_B, ring_dt, meta, slots, accepted, accepted_is_node,
              parents, y, dt_softplus, dt_min, dt_max, fold_all, in_dtype);
  vc::check_mamba2(p);
  vc::xBC_channels(p, xBC);
  const int64_t rest = p.dc - p.H * p.P;
  TORCH_CHECK(rest > 0 && p.N > 0 && rest % (2 * p.N) == 0, "xBC: dc must be H*P + 2*G*N");
  vc::xBC_groups(p);
  p.width = conv_weight.size(1);
  TORCH_CHECK(conv_weight.size(0) == p.dc && p.width >= 2 && p.width <= 8, "conv_weight: expected (dc, w), w in 2..8");
  vc::check_window(p, conv_window, "conv_window");
  TORCH_CHECK_TYPE(to_dtype_code(conv_window, "conv_window") == in_dtype, "conv_window: expected the dtype of xBC");
  p.xBC = in(xBC, p.xBC_s);
  fill_opt(conv_weight, "conv_weight", p.conv_weight, p.conv_weight_dtype, p.conv_weight_s);
  fill_bias(conv_bias, "conv_bias", p.dc, p.conv_bias, p.conv_bias_dtype, p.conv_bias_s);
  p.conv_silu = conv_silu;
  p.window = out(conv_window, p.window_s);
  verify_cpu::verify_step_fused(p);
}

void conv_verify_step_cpu(const at::Tensor& x, at::Tensor window, at::Tensor meta, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias, const at::Tensor& slots, const at::Tensor& accepted,
                          bool accepted_is_node, const std::optional<at::Tensor>& parents, at::Tensor out_,
                          bool silu) {
  check_cpu(x, "x", 3);
  check_cpu(window, "window", 3);
  check_int32(meta, "meta", 2);
  check_cpu(weight, "weight", 2);
  check_int32(slots, "slots", 1);
  check_int32(accepted, "accepted", 1);
  check_cpu(out_, "out", 3);
  ConvStepParams p;
  vc::conv_sizes(p, x, window, meta, weight);
  TORCH_CHECK(p.Kmax >= 0 && p.Kmax <= 32, "meta: need 0 <= Kmax <= 32");
  vc::check_k(p.k, p.Kmax, "x");
  TORCH_CHECK(weight.size(0) == p.dc && p.width >= 1, "weight: expected (dc, w), got ", weight.sizes());
  vc::check_conv_shapes(p, x, window, meta, out_, slots, accepted);
  p.x_dtype = to_dtype_code(x, "x");
  p.out_dtype = to_dtype_code(out_, "out");
  p.window_dtype = to_dtype_code(window, "window");
  p.weight_dtype = to_dtype_code(weight, "weight");
  p.use_fp64 = p.x_dtype == DType::kFloat64 || p.window_dtype == DType::kFloat64;
  p.silu = silu;
  p.x = in(x, p.x_s);
  p.window = out(window, p.window_s);
  p.meta = meta.data_ptr<int32_t>();
  strides(meta, p.meta_s);
  p.weight = in(weight, p.weight_s);
  fill_bias(bias, "bias", p.dc, p.bias, p.bias_dtype, p.bias_s);
  fill_rows(p, slots, accepted, accepted_is_node, parents);
  p.out = out(out_, p.out_s);
  verify_cpu::conv_verify_step(p);
}

}  // namespace
}  // namespace mamba_kernels

TORCH_LIBRARY_FRAGMENT(mamba_kernels, m) {
  m.def(
      "_verify_step_cpu(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, Tensor? dt_bias, "
      "Tensor(a!) state, Tensor(b!) ring_x, Tensor(c!) ring_B, Tensor(d!) ring_dt, Tensor(e!) meta, Tensor slots, "
      "Tensor accepted, bool accepted_is_node, Tensor? parents, Tensor(f!) y, bool dt_softplus, float dt_min, "
      "float dt_max, bool fold_all) -> ()",
      &mamba_kernels::verify_step_cpu);
  m.def(
      "_verify_step_fused_cpu(Tensor xBC, Tensor dt, Tensor A, Tensor? D, Tensor? z, Tensor? dt_bias, "
      "Tensor conv_weight, Tensor? conv_bias, bool conv_silu, Tensor(a!) conv_window, Tensor(b!) state, "
      "Tensor(c!) ring_x, Tensor(d!) ring_B, Tensor(e!) ring_dt, Tensor(f!) meta, Tensor slots, Tensor accepted, "
      "bool accepted_is_node, Tensor? parents, Tensor(g!) y, bool dt_softplus, float dt_min, float dt_max, "
      "bool fold_all) -> ()",
      &mamba_kernels::verify_step_fused_cpu);
  m.def(
      "_conv_verify_step_cpu(Tensor x, Tensor(a!) window, Tensor(b!) meta, Tensor weight, Tensor? bias, "
      "Tensor slots, Tensor accepted, bool accepted_is_node, Tensor? parents, Tensor(c!) out, bool silu) -> ()",
      &mamba_kernels::conv_verify_step_cpu);
}
