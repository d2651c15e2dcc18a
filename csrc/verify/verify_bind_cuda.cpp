// Torch binding of the verify family's CUDA kernels (csrc/verify/verify_launch.cu) into mamba_kernels._cuda.
// Op contract: docs/verify_lowlevel_ops.md. The public API (mamba_kernels/verify/interface.py) validates the
// inputs; the checks here guard the raw-pointer kernels against what they cannot handle (they are O(1): no
// device sync, nothing allocated, so the ops stay CUDA-graph capturable).
#include <ATen/core/Tensor.h>
#include <torch/library.h>
#ifndef MK_VERIFY_EMULATION  // (defined only by the CPU emulation that tests the kernels without a GPU)
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <optional>

#include "common/bind_utils.h"
#include "verify/verify.h"
#include "verify/verify_bind_checks.h"

namespace mamba_kernels {
namespace {

// Current device + stream of the op.
#ifndef MK_VERIFY_EMULATION
struct DeviceScope {
  c10::cuda::CUDAGuard guard;
  void* stream;
  explicit DeviceScope(const at::Device& d)
      : guard(d), stream(c10::cuda::getCurrentCUDAStream(d.index()).stream()) {}
};
inline bool on_device(const at::Tensor& t) { return t.is_cuda(); }
#else
struct DeviceScope {
  void* stream = nullptr;
  explicit DeviceScope(const at::Device&) {}
};
inline bool on_device(const at::Tensor&) { return true; }
#endif

void check_dev(const at::Tensor& t, const char* name, int64_t ndim, const at::Device& dev) {
  TORCH_CHECK(on_device(t), name, ": expected a CUDA tensor, got ", t.device());
  TORCH_CHECK(t.device() == dev, name, ": expected device ", dev, ", got ", t.device());
  TORCH_CHECK(t.dim() == ndim, name, ": expected ", ndim, " dimensions, got ", t.dim());
}

void check_int32(const at::Tensor& t, const char* name, int64_t ndim, const at::Device& dev) {
  check_dev(t, name, ndim, dev);
  TORCH_CHECK_TYPE(t.scalar_type() == at::kInt, name, ": expected int32, got ", t.scalar_type());
}

void check_f32(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat, name, ": expected float32, got ", t.scalar_type());
}

void check_dtype(const at::Tensor& t, const char* name, DType want) {
  TORCH_CHECK_TYPE(to_dtype_code(t, name) == want, name, ": expected the dtype of x, got ", t.scalar_type());
}

// Innermost stride 1 (the kernels address the last dimension densely); size-1 dims are fine with any stride.
void check_last_dense(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.size(-1) <= 1 || t.stride(-1) == 1, name, ": the last dimension must have stride 1");
}

DType cuda_float_dtype(const at::Tensor& t, const char* name) {
  const DType d = to_dtype_code(t, name);
  TORCH_CHECK_TYPE(d != DType::kFloat64, name, ": float64 is not supported by the CUDA backend");
  return d;
}

void run(const char* err) { TORCH_CHECK(err == nullptr, "mamba_kernels verify (CUDA): ", err ? err : ""); }

namespace vc = verify_checks;

// Strides of the leading dimensions of t, in order (the innermost one is 1 and not stored).
template <class... S>
void lead_strides(const at::Tensor& t, S&... s) {
  int64_t d = 0;
  ((s = t.stride(d++)), ...);
}

// Data pointer of an input (in) or an output (out), with its leading strides written to s.
template <class... S>
const void* in(const at::Tensor& t, S&... s) {
  lead_strides(t, s...);
  return t.const_data_ptr();
}

template <class... S>
void* out(const at::Tensor& t, S&... s) {
  lead_strides(t, s...);
  return t.data_ptr();
}

// Whether the optional fp32 input t is present (then checked: on dev, ndim dimensions, fp32).
bool opt_f32(const std::optional<at::Tensor>& t, const char* name, int64_t ndim, const at::Device& dev) {
  if (!t.has_value()) return false;
  check_dev(*t, name, ndim, dev);
  check_f32(*t, name);
  return true;
}

// Optional conv bias (dc,): conv_bias of the fused step, bias of the conv step.
void fill_bias(const std::optional<at::Tensor>& bias, const char* name, int64_t dc, const at::Device& dev,
               const void*& ptr, DType& dtype, int64_t& stride) {
  if (!bias.has_value()) return;
  check_dev(*bias, name, 1, dev);
  TORCH_CHECK(bias->size(0) == dc, name, ": expected (dc,), got ", bias->sizes());
  ptr = bias->const_data_ptr();
  dtype = cuda_float_dtype(*bias, name);
  stride = bias->stride(0);
}

// slots, accepted (checked by the caller), accepted_is_node and the optional parents of either params struct.
template <class Params>
void fill_rows(Params& p, const at::Device& dev, const at::Tensor& slots, const at::Tensor& accepted,
               bool accepted_is_node, const std::optional<at::Tensor>& parents) {
  p.slots = slots.const_data_ptr<int32_t>();
  p.slots_stride = slots.stride(0);
  p.accepted = accepted.const_data_ptr<int32_t>();
  p.accepted_stride = accepted.stride(0);
  p.accepted_is_node = accepted_is_node;
  if (parents.has_value()) {
    check_int32(*parents, "parents", 2, dev);
    vc::check_parents(*parents, p.batch, p.k);
    p.parents = parents->const_data_ptr<int32_t>();
    lead_strides(*parents, p.par_b, p.par_k);
  }
}

// Fields shared by the plain and the fused SSM step (everything but x, B, C / xBC, conv).
void fill_common(VerifyStepParams& p, const at::Device& dev, const at::Tensor& dt, const at::Tensor& A,
                 const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& z,
                 const std::optional<at::Tensor>& dt_bias, const at::Tensor& state, const at::Tensor& ring_x,
                 const at::Tensor& ring_B, const at::Tensor& ring_dt, const at::Tensor& meta, const at::Tensor& slots,
                 const at::Tensor& accepted, bool accepted_is_node, const std::optional<at::Tensor>& parents,
                 const at::Tensor& y, bool dt_softplus, double dt_min, double dt_max, bool fold_all) {
  check_dev(dt, "dt", 4, dev);
  check_dev(A, "A", 3, dev);
  check_dev(state, "state", 4, dev);
  check_dev(ring_x, "ring_x", 4, dev);
  check_dev(ring_B, "ring_B", 4, dev);
  check_dev(ring_dt, "ring_dt", 4, dev);
  check_int32(meta, "meta", 3, dev);
  check_int32(slots, "slots", 1, dev);
  check_int32(accepted, "accepted", 1, dev);
  check_dev(y, "y", 4, dev);
  p.in_dtype = cuda_float_dtype(y, "y");
  p.state_dtype = cuda_float_dtype(state, "state");
  check_dtype(dt, "dt", p.in_dtype);
  check_dtype(ring_x, "ring_x", p.in_dtype);
  check_dtype(ring_B, "ring_B", p.in_dtype);
  check_f32(A, "A");
  check_f32(ring_dt, "ring_dt");
  check_last_dense(state, "state");
  check_last_dense(ring_x, "ring_x");
  check_last_dense(ring_B, "ring_B");
  check_last_dense(y, "y");
  vc::ssm_sizes(p, /*min_kmax=*/1, dt, A, state, ring_x, ring_B, ring_dt, meta, slots, accepted, y);

  p.dt = in(dt, p.dt_b, p.dt_k, p.dt_h);
  p.dt_p = p.Pd > 1 ? dt.stride(3) : 0;
  p.A = A.const_data_ptr<float>();
  p.A_h = A.stride(0);
  p.A_p = p.Pa > 1 ? A.stride(1) : 0;
  p.A_n = p.Na > 1 ? A.stride(2) : 0;
  if (opt_f32(D, "D", 2, dev)) {
    vc::check_D(p, *D);
    p.D = D->const_data_ptr<float>();
    lead_strides(*D, p.D_h, p.D_p);
  }
  if (z.has_value()) {
    check_dev(*z, "z", 4, dev);
    check_dtype(*z, "z", p.in_dtype);
    check_last_dense(*z, "z");
    vc::check_z(*z, y);
    p.z = in(*z, p.z_b, p.z_k, p.z_h);
  }
  if (opt_f32(dt_bias, "dt_bias", 2, dev)) {
    vc::check_dt_bias(p, *dt_bias);
    p.dt_bias = dt_bias->const_data_ptr<float>();
    p.dtb_h = dt_bias->stride(0);
    p.dtb_p = p.Pd > 1 ? dt_bias->stride(1) : 0;
  }
  p.state = out(state, p.st_s, p.st_h, p.st_p);
  p.ring_x = out(ring_x, p.rx_s, p.rx_r, p.rx_h);
  p.ring_B = out(ring_B, p.rB_s, p.rB_r, p.rB_h);
  p.ring_dt = ring_dt.data_ptr<float>();
  lead_strides(ring_dt, p.rdt_s, p.rdt_r, p.rdt_h);
  p.rdt_p = p.Pd > 1 ? ring_dt.stride(3) : 0;
  p.meta = meta.data_ptr<int32_t>();
  lead_strides(meta, p.meta_s, p.meta_h, p.meta_i);
  fill_rows(p, dev, slots, accepted, accepted_is_node, parents);
  p.y = out(y, p.y_b, p.y_k, p.y_h);
  p.dt_softplus = dt_softplus;
  p.dt_min = dt_min;
  p.dt_max = dt_max;
  p.fold_all = fold_all;
}

void verify_step_cuda_op(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                         const at::Tensor& C, const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& z,
                         const std::optional<at::Tensor>& dt_bias, at::Tensor state, at::Tensor ring_x,
                         at::Tensor ring_B, at::Tensor ring_dt, at::Tensor meta, const at::Tensor& slots,
                         const at::Tensor& accepted, bool accepted_is_node, const std::optional<at::Tensor>& parents,
                         at::Tensor y, bool dt_softplus, double dt_min, double dt_max, bool fold_all) {
  const at::Device dev = state.device();
  check_dev(x, "x", 4, dev);
  check_dev(B, "B", 4, dev);
  check_dev(C, "C", 4, dev);
  const DeviceScope scope(dev);
  VerifyStepParams p;
  fill_common(p, dev, dt, A, D, z, dt_bias, state, ring_x, ring_B, ring_dt, meta, slots, accepted, accepted_is_node,
              parents, y, dt_softplus, dt_min, dt_max, fold_all);
  vc::check_x(x, y);
  check_dtype(x, "x", p.in_dtype);
  check_dtype(B, "B", p.in_dtype);
  check_dtype(C, "C", p.in_dtype);
  check_last_dense(x, "x");
  check_last_dense(B, "B");
  check_last_dense(C, "C");
  vc::BC_groups(p, B, C);
  p.x = in(x, p.x_b, p.x_k, p.x_h);
  p.B = in(B, p.B_b, p.B_k, p.B_g);
  p.C = in(C, p.C_b, p.C_k, p.C_g);
  // Scratch of the split kernel pair (from the caching allocator: no sync; a CUDA graph keeps it in its pool).
  at::Tensor work;
  if (const int64_t unit = verify_step_cuda_workspace(p); unit > 0) {
    work = state.new_empty({p.batch * p.H * unit}, state.options().dtype(at::kFloat));
    p.work = work.data_ptr<float>();
    p.work_unit = unit;
  }
  run(verify_step_cuda(p, scope.stream));
}

void verify_step_fused_cuda_op(const at::Tensor& xBC, const at::Tensor& dt, const at::Tensor& A,
                               const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& z,
                               const std::optional<at::Tensor>& dt_bias, const at::Tensor& conv_weight,
                               const std::optional<at::Tensor>& conv_bias, bool conv_silu, at::Tensor conv_window,
                               at::Tensor state, at::Tensor ring_x, at::Tensor ring_B, at::Tensor ring_dt,
                               at::Tensor meta, const at::Tensor& slots, const at::Tensor& accepted,
                               bool accepted_is_node, const std::optional<at::Tensor>& parents, at::Tensor y,
                               bool dt_softplus, double dt_min, double dt_max, bool fold_all) {
  const at::Device dev = state.device();
  check_dev(xBC, "xBC", 3, dev);
  check_dev(conv_weight, "conv_weight", 2, dev);
  check_dev(conv_window, "conv_window", 3, dev);
  const DeviceScope scope(dev);
  VerifyStepParams p;
  fill_common(p, dev, dt, A, D, z, dt_bias, state, ring_x, ring_B, ring_dt, meta, slots, accepted, accepted_is_node,
              parents, y, dt_softplus, dt_min, dt_max, fold_all);
  vc::check_mamba2(p);
  check_dtype(xBC, "xBC", p.in_dtype);
  check_dtype(conv_window, "conv_window", p.in_dtype);
  vc::xBC_channels(p, xBC);
  const int64_t rest = p.dc - p.H * p.P;
  TORCH_CHECK(rest > 0 && rest % (2 * p.N) == 0, "xBC: dc must be H*P + 2*G*N, got ", p.dc);
  vc::xBC_groups(p);
  p.width = conv_weight.size(1);
  TORCH_CHECK(conv_weight.size(0) == p.dc && p.width >= 2 && p.width <= 8,
              "conv_weight: expected (dc, w) with w in 2..8, got ", conv_weight.sizes());
  vc::check_window(p, conv_window, "conv_window");
  p.fused = true;
  p.xBC = in(xBC, p.xBC_b, p.xBC_k, p.xBC_c);
  p.conv_weight = conv_weight.const_data_ptr();
  p.conv_weight_dtype = cuda_float_dtype(conv_weight, "conv_weight");
  lead_strides(conv_weight, p.cw_c, p.cw_w);
  fill_bias(conv_bias, "conv_bias", p.dc, dev, p.conv_bias, p.conv_bias_dtype, p.cb_c);
  p.conv_silu = conv_silu;
  p.conv_window = out(conv_window, p.win_s, p.win_i, p.win_c);
  run(verify_step_cuda(p, scope.stream));
}

void conv_verify_step_cuda_op(const at::Tensor& x, at::Tensor window, at::Tensor meta, const at::Tensor& weight,
                              const std::optional<at::Tensor>& bias, const at::Tensor& slots,
                              const at::Tensor& accepted, bool accepted_is_node,
                              const std::optional<at::Tensor>& parents, at::Tensor out_, bool silu) {
  const at::Device dev = window.device();
  check_dev(x, "x", 3, dev);
  check_dev(window, "window", 3, dev);
  check_int32(meta, "meta", 2, dev);
  check_dev(weight, "weight", 2, dev);
  check_int32(slots, "slots", 1, dev);
  check_int32(accepted, "accepted", 1, dev);
  check_dev(out_, "out", 3, dev);
  const DeviceScope scope(dev);
  ConvVerifyParams p;
  p.in_dtype = cuda_float_dtype(x, "x");
  check_dtype(window, "window", p.in_dtype);
  check_dtype(out_, "out", p.in_dtype);
  p.weight_dtype = cuda_float_dtype(weight, "weight");
  vc::conv_sizes(p, x, window, meta, weight);
  TORCH_CHECK(p.Kmax >= 1 && p.Kmax <= 32, "meta: need 1 <= Kmax <= 32, got ", p.Kmax);
  vc::check_k(p.k, p.Kmax, "x");
  TORCH_CHECK(weight.size(0) == p.dc && p.width >= 2 && p.width <= 8, "weight: expected (dc, w) with w in 2..8, got ",
              weight.sizes());
  vc::check_conv_shapes(p, x, window, meta, out_, slots, accepted);
  p.silu = silu;
  p.x = in(x, p.x_b, p.x_k, p.x_c);
  p.window = out(window, p.win_s, p.win_i, p.win_c);
  p.meta = meta.data_ptr<int32_t>();
  lead_strides(meta, p.meta_s, p.meta_i);
  p.weight = in(weight, p.w_c, p.w_w);
  fill_bias(bias, "bias", p.dc, dev, p.bias, p.bias_dtype, p.b_c);
  fill_rows(p, dev, slots, accepted, accepted_is_node, parents);
  p.out = out(out_, p.out_b, p.out_k, p.out_c);
  run(conv_verify_step_cuda(p, scope.stream));
}

}  // namespace
}  // namespace mamba_kernels

TORCH_LIBRARY_FRAGMENT(mamba_kernels, m) {
  m.def(
      "_verify_step_cuda(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, Tensor? dt_bias, "
      "Tensor(a!) state, Tensor(b!) ring_x, Tensor(c!) ring_B, Tensor(d!) ring_dt, Tensor(e!) meta, Tensor slots, "
      "Tensor accepted, bool accepted_is_node, Tensor? parents, Tensor(f!) y, bool dt_softplus, float dt_min, "
      "float dt_max, bool fold_all) -> ()",
      &mamba_kernels::verify_step_cuda_op);
  m.def(
      "_verify_step_fused_cuda(Tensor xBC, Tensor dt, Tensor A, Tensor? D, Tensor? z, Tensor? dt_bias, "
      "Tensor conv_weight, Tensor? conv_bias, bool conv_silu, Tensor(a!) conv_window, Tensor(b!) state, "
      "Tensor(c!) ring_x, Tensor(d!) ring_B, Tensor(e!) ring_dt, Tensor(f!) meta, Tensor slots, Tensor accepted, "
      "bool accepted_is_node, Tensor? parents, Tensor(g!) y, bool dt_softplus, float dt_min, float dt_max, "
      "bool fold_all) -> ()",
      &mamba_kernels::verify_step_fused_cuda_op);
  m.def(
      "_conv_verify_step_cuda(Tensor x, Tensor(a!) window, Tensor(b!) meta, Tensor weight, Tensor? bias, "
      "Tensor slots, Tensor accepted, bool accepted_is_node, Tensor? parents, Tensor(c!) out, bool silu) -> ()",
      &mamba_kernels::conv_verify_step_cuda_op);
}
