// Torch binding of the verify family's CPU kernels (csrc/verify/verify_cpu.cpp) into mamba_kernels._C.
// Op contract: docs/verify_lowlevel_ops.md. The public API (mamba_kernels/verify/interface.py) validates the
// inputs; the checks here only guard the raw-pointer kernels against what they cannot handle.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <cmath>
#include <optional>

#include "common/bind_utils.h"

#define MK_VERIFY_CPU_DECLS_ONLY
#include "verify/verify_cpu.cpp"  // parameter structs + declarations only
#undef MK_VERIFY_CPU_DECLS_ONLY

namespace mamba_kernels {
namespace {

using verify_cpu::ConvStepParams;
using verify_cpu::VerifyStepParams;

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

// Fills the fields shared by the plain and the fused SSM step.
void fill_common(VerifyStepParams& p, const at::Tensor& dt, const at::Tensor& A, const std::optional<at::Tensor>& D,
                 const std::optional<at::Tensor>& z, const std::optional<at::Tensor>& dt_bias, at::Tensor& state,
                 at::Tensor& ring_x, at::Tensor& ring_B, at::Tensor& ring_dt, at::Tensor& meta,
                 const at::Tensor& slots, const at::Tensor& accepted, bool accepted_is_node,
                 const std::optional<at::Tensor>& parents, at::Tensor& y, bool dt_softplus, double dt_min,
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
  p.batch = y.size(0);
  p.k = y.size(1);
  p.S = state.size(0);
  p.H = state.size(1);
  p.P = state.size(2);
  p.N = state.size(3);
  p.R = ring_x.size(1);
  p.Kmax = meta.size(2) - 2;
  p.Pd = ring_dt.size(3);
  p.Pa = A.size(1);
  p.Na = A.size(2);
  TORCH_CHECK(p.Kmax >= 0 && p.Kmax <= 32 && p.Kmax <= p.R, "meta: need 0 <= Kmax <= min(32, R), got Kmax ", p.Kmax,
              " and R ", p.R);
  TORCH_CHECK(p.k <= p.Kmax, "y: k = ", p.k, " exceeds Kmax = ", p.Kmax);
  TORCH_CHECK(p.Pd == 1 || p.Pd == p.P, "ring_dt: last dim must be 1 or P");
  TORCH_CHECK((p.Pa == 1 || p.Pa == p.P) && (p.Na == 1 || p.Na == p.N) && A.size(0) == p.H,
              "A: expected (H, 1 | P, 1 | N), got ", A.sizes());
  TORCH_CHECK(y.size(2) == p.H && y.size(3) == p.P, "y: expected (b, k, H, P), got ", y.sizes());
  TORCH_CHECK(dt.size(0) == p.batch && dt.size(1) == p.k && dt.size(2) == p.H && dt.size(3) == p.Pd,
              "dt: expected (b, k, H, Pd), got ", dt.sizes());
  TORCH_CHECK(ring_x.size(0) == p.S && ring_x.size(2) == p.H && ring_x.size(3) == p.P, "ring_x: bad shape ",
              ring_x.sizes());
  TORCH_CHECK(ring_B.size(0) == p.S && ring_B.size(1) == p.R && ring_B.size(2) == p.H && ring_B.size(3) == p.N,
              "ring_B: bad shape ", ring_B.sizes());
  TORCH_CHECK(ring_dt.size(0) == p.S && ring_dt.size(1) == p.R && ring_dt.size(2) == p.H, "ring_dt: bad shape ",
              ring_dt.sizes());
  TORCH_CHECK(meta.size(0) == p.S && meta.size(1) == p.H, "meta: bad shape ", meta.sizes());
  TORCH_CHECK(slots.size(0) == p.batch && accepted.size(0) == p.batch, "slots / accepted: expected (b,)");
  p.in_dtype = in_dtype;
  TORCH_CHECK_TYPE(to_dtype_code(y, "y") == in_dtype, "y: expected the dtype of x");
  TORCH_CHECK_TYPE(to_dtype_code(ring_x, "ring_x") == in_dtype && to_dtype_code(ring_B, "ring_B") == in_dtype,
                   "ring_x / ring_B: expected the dtype of x");
  p.dt_dtype = to_dtype_code(dt, "dt");
  p.A_dtype = to_dtype_code(A, "A");
  p.state_dtype = to_dtype_code(state, "state");
  p.ring_dt_dtype = to_dtype_code(ring_dt, "ring_dt");
  p.use_fp64 = p.state_dtype == DType::kFloat64 || in_dtype == DType::kFloat64;
  p.dt = dt.const_data_ptr();
  strides(dt, p.dt_s);
  p.A = A.const_data_ptr();
  strides(A, p.A_s);
  if (D.has_value()) {
    check_cpu(*D, "D", 2);
    TORCH_CHECK(D->size(0) == p.H && D->size(1) == p.P, "D: expected (H, P), got ", D->sizes());
    p.D = D->const_data_ptr();
    p.D_dtype = to_dtype_code(*D, "D");
    strides(*D, p.D_s);
  }
  if (z.has_value()) {
    check_cpu(*z, "z", 4);
    TORCH_CHECK(z->sizes() == y.sizes(), "z: expected ", y.sizes(), ", got ", z->sizes());
    TORCH_CHECK_TYPE(to_dtype_code(*z, "z") == in_dtype, "z: expected the dtype of x");
    p.z = z->const_data_ptr();
    strides(*z, p.z_s);
  }
  if (dt_bias.has_value()) {
    check_cpu(*dt_bias, "dt_bias", 2);
    TORCH_CHECK(dt_bias->size(0) == p.H && dt_bias->size(1) == p.Pd, "dt_bias: expected (H, Pd), got ",
                dt_bias->sizes());
    p.dt_bias = dt_bias->const_data_ptr();
    p.dt_bias_dtype = to_dtype_code(*dt_bias, "dt_bias");
    strides(*dt_bias, p.dt_bias_s);
  }
  p.state = state.data_ptr();
  strides(state, p.state_s);
  p.ring_x = ring_x.data_ptr();
  strides(ring_x, p.ring_x_s);
  p.ring_B = ring_B.data_ptr();
  strides(ring_B, p.ring_B_s);
  p.ring_dt = ring_dt.data_ptr();
  strides(ring_dt, p.ring_dt_s);
  p.meta = meta.data_ptr<int32_t>();
  strides(meta, p.meta_s);
  p.slots = slots.const_data_ptr<int32_t>();
  p.slots_s = slots.stride(0);
  p.accepted = accepted.const_data_ptr<int32_t>();
  p.accepted_s = accepted.stride(0);
  p.accepted_is_node = accepted_is_node;
  if (parents.has_value()) {
    check_int32(*parents, "parents", 2);
    TORCH_CHECK(parents->size(0) == p.batch && parents->size(1) == p.k, "parents: expected (b, k), got ",
                parents->sizes());
    p.parents = parents->const_data_ptr<int32_t>();
    strides(*parents, p.parents_s);
  }
  p.y = y.data_ptr();
  strides(y, p.y_s);
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
  const DType in = to_dtype_code(x, "x");
  fill_common(p, dt, A, D, z, dt_bias, state, ring_x, ring_B, ring_dt, meta, slots, accepted, accepted_is_node,
              parents, y, dt_softplus, dt_min, dt_max, fold_all, in);
  TORCH_CHECK(x.sizes() == y.sizes(), "x: expected ", y.sizes(), ", got ", x.sizes());
  p.G = B.size(2);
  TORCH_CHECK(p.G >= 1 && p.H % p.G == 0, "B: the number of groups must divide H");
  TORCH_CHECK(B.size(0) == p.batch && B.size(1) == p.k && B.size(3) == p.N && C.sizes() == B.sizes(),
              "B / C: expected (b, k, G, N), got ", B.sizes(), " and ", C.sizes());
  TORCH_CHECK_TYPE(to_dtype_code(B, "B") == in && to_dtype_code(C, "C") == in, "B / C: expected the dtype of x");
  p.x = x.const_data_ptr();
  strides(x, p.x_s);
  p.B = B.const_data_ptr();
  strides(B, p.B_s);
  p.C = C.const_data_ptr();
  strides(C, p.C_s);
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
  const DType in = to_dtype_code(xBC, "xBC");
  fill_common(p, dt, A, D, z, dt_bias, state, ring_x, ring_B, ring_dt, meta, slots, accepted, accepted_is_node,
              parents, y, dt_softplus, dt_min, dt_max, fold_all, in);
  TORCH_CHECK(p.Pd == 1 && p.Pa == 1 && p.Na == 1, "verify_step_fused is the Mamba-2 step (Pd = 1, A (H, 1, 1))");
  p.dc = xBC.size(2);
  TORCH_CHECK(xBC.size(0) == p.batch && xBC.size(1) == p.k, "xBC: expected (b, k, dc), got ", xBC.sizes());
  const int64_t rest = p.dc - p.H * p.P;
  TORCH_CHECK(rest > 0 && p.N > 0 && rest % (2 * p.N) == 0, "xBC: dc must be H*P + 2*G*N");
  p.G = rest / (2 * p.N);
  TORCH_CHECK(p.H % p.G == 0, "xBC: the number of groups must divide H");
  p.width = conv_weight.size(1);
  TORCH_CHECK(conv_weight.size(0) == p.dc && p.width >= 2 && p.width <= 8, "conv_weight: expected (dc, w), w in 2..8");
  TORCH_CHECK(conv_window.size(0) == p.S && conv_window.size(1) == p.width - 1 + p.Kmax && conv_window.size(2) == p.dc,
              "conv_window: expected (S, w - 1 + Kmax, dc), got ", conv_window.sizes());
  TORCH_CHECK_TYPE(to_dtype_code(conv_window, "conv_window") == in, "conv_window: expected the dtype of xBC");
  p.xBC = xBC.const_data_ptr();
  strides(xBC, p.xBC_s);
  p.conv_weight = conv_weight.const_data_ptr();
  p.conv_weight_dtype = to_dtype_code(conv_weight, "conv_weight");
  strides(conv_weight, p.conv_weight_s);
  if (conv_bias.has_value()) {
    check_cpu(*conv_bias, "conv_bias", 1);
    TORCH_CHECK(conv_bias->size(0) == p.dc, "conv_bias: expected (dc,)");
    p.conv_bias = conv_bias->const_data_ptr();
    p.conv_bias_dtype = to_dtype_code(*conv_bias, "conv_bias");
    p.conv_bias_s = conv_bias->stride(0);
  }
  p.conv_silu = conv_silu;
  p.window = conv_window.data_ptr();
  strides(conv_window, p.window_s);
  verify_cpu::verify_step_fused(p);
}

void conv_verify_step_cpu(const at::Tensor& x, at::Tensor window, at::Tensor meta, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias, const at::Tensor& slots, const at::Tensor& accepted,
                          bool accepted_is_node, const std::optional<at::Tensor>& parents, at::Tensor out,
                          bool silu) {
  check_cpu(x, "x", 3);
  check_cpu(window, "window", 3);
  check_int32(meta, "meta", 2);
  check_cpu(weight, "weight", 2);
  check_int32(slots, "slots", 1);
  check_int32(accepted, "accepted", 1);
  check_cpu(out, "out", 3);
  ConvStepParams p;
  p.batch = x.size(0);
  p.k = x.size(1);
  p.dc = x.size(2);
  p.width = weight.size(1);
  p.S = window.size(0);
  p.Kmax = meta.size(1) - 1;
  TORCH_CHECK(p.Kmax >= 0 && p.Kmax <= 32, "meta: need 0 <= Kmax <= 32");
  TORCH_CHECK(p.k <= p.Kmax, "x: k = ", p.k, " exceeds Kmax = ", p.Kmax);
  TORCH_CHECK(weight.size(0) == p.dc && p.width >= 1, "weight: expected (dc, w), got ", weight.sizes());
  TORCH_CHECK(window.size(1) == p.width - 1 + p.Kmax && window.size(2) == p.dc,
              "window: expected (S, w - 1 + Kmax, dc), got ", window.sizes());
  TORCH_CHECK(meta.size(0) == p.S, "meta: expected (S, 1 + Kmax), got ", meta.sizes());
  TORCH_CHECK(out.sizes() == x.sizes(), "out: expected ", x.sizes(), ", got ", out.sizes());
  TORCH_CHECK(slots.size(0) == p.batch && accepted.size(0) == p.batch, "slots / accepted: expected (b,)");
  p.x_dtype = to_dtype_code(x, "x");
  p.out_dtype = to_dtype_code(out, "out");
  p.window_dtype = to_dtype_code(window, "window");
  p.weight_dtype = to_dtype_code(weight, "weight");
  p.use_fp64 = p.x_dtype == DType::kFloat64 || p.window_dtype == DType::kFloat64;
  p.accepted_is_node = accepted_is_node;
  p.silu = silu;
  p.x = x.const_data_ptr();
  strides(x, p.x_s);
  p.window = window.data_ptr();
  strides(window, p.window_s);
  p.meta = meta.data_ptr<int32_t>();
  strides(meta, p.meta_s);
  p.weight = weight.const_data_ptr();
  strides(weight, p.weight_s);
  if (bias.has_value()) {
    check_cpu(*bias, "bias", 1);
    TORCH_CHECK(bias->size(0) == p.dc, "bias: expected (dc,)");
    p.bias = bias->const_data_ptr();
    p.bias_dtype = to_dtype_code(*bias, "bias");
    p.bias_s = bias->stride(0);
  }
  p.slots = slots.const_data_ptr<int32_t>();
  p.slots_s = slots.stride(0);
  p.accepted = accepted.const_data_ptr<int32_t>();
  p.accepted_s = accepted.stride(0);
  if (parents.has_value()) {
    check_int32(*parents, "parents", 2);
    TORCH_CHECK(parents->size(0) == p.batch && parents->size(1) == p.k, "parents: expected (b, k), got ",
                parents->sizes());
    p.parents = parents->const_data_ptr<int32_t>();
    strides(*parents, p.parents_s);
  }
  p.out = out.data_ptr();
  strides(out, p.out_s);
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
