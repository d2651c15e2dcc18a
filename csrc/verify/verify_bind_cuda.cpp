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
  TORCH_CHECK(p.Kmax >= 1 && p.Kmax <= 32 && p.Kmax <= p.R, "meta: need 1 <= Kmax <= min(32, R), got Kmax ",
              p.Kmax, " and R ", p.R);
  TORCH_CHECK(p.k <= p.Kmax, "y: k = ", p.k, " exceeds Kmax = ", p.Kmax);
  TORCH_CHECK(p.Pd == 1 || p.Pd == p.P, "ring_dt: last dim must be 1 or P");
  TORCH_CHECK(A.size(0) == p.H && (p.Pa == 1 || p.Pa == p.P) && (p.Na == 1 || p.Na == p.N),
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

  p.dt = dt.const_data_ptr();
  p.dt_b = dt.stride(0);
  p.dt_k = dt.stride(1);
  p.dt_h = dt.stride(2);
  p.dt_p = p.Pd > 1 ? dt.stride(3) : 0;
  p.A = A.const_data_ptr<float>();
  p.A_h = A.stride(0);
  p.A_p = p.Pa > 1 ? A.stride(1) : 0;
  p.A_n = p.Na > 1 ? A.stride(2) : 0;
  if (D.has_value()) {
    check_dev(*D, "D", 2, dev);
    check_f32(*D, "D");
    TORCH_CHECK(D->size(0) == p.H && D->size(1) == p.P, "D: expected (H, P), got ", D->sizes());
    p.D = D->const_data_ptr<float>();
    p.D_h = D->stride(0);
    p.D_p = D->stride(1);
  }
  if (z.has_value()) {
    check_dev(*z, "z", 4, dev);
    check_dtype(*z, "z", p.in_dtype);
    check_last_dense(*z, "z");
    TORCH_CHECK(z->sizes() == y.sizes(), "z: expected ", y.sizes(), ", got ", z->sizes());
    p.z = z->const_data_ptr();
    p.z_b = z->stride(0);
    p.z_k = z->stride(1);
    p.z_h = z->stride(2);
  }
  if (dt_bias.has_value()) {
    check_dev(*dt_bias, "dt_bias", 2, dev);
    check_f32(*dt_bias, "dt_bias");
    TORCH_CHECK(dt_bias->size(0) == p.H && dt_bias->size(1) == p.Pd, "dt_bias: expected (H, Pd), got ",
                dt_bias->sizes());
    p.dt_bias = dt_bias->const_data_ptr<float>();
    p.dtb_h = dt_bias->stride(0);
    p.dtb_p = p.Pd > 1 ? dt_bias->stride(1) : 0;
  }
  p.state = state.data_ptr();
  p.st_s = state.stride(0);
  p.st_h = state.stride(1);
  p.st_p = state.stride(2);
  p.ring_x = ring_x.data_ptr();
  p.rx_s = ring_x.stride(0);
  p.rx_r = ring_x.stride(1);
  p.rx_h = ring_x.stride(2);
  p.ring_B = ring_B.data_ptr();
  p.rB_s = ring_B.stride(0);
  p.rB_r = ring_B.stride(1);
  p.rB_h = ring_B.stride(2);
  p.ring_dt = ring_dt.data_ptr<float>();
  p.rdt_s = ring_dt.stride(0);
  p.rdt_r = ring_dt.stride(1);
  p.rdt_h = ring_dt.stride(2);
  p.rdt_p = p.Pd > 1 ? ring_dt.stride(3) : 0;
  p.meta = meta.data_ptr<int32_t>();
  p.meta_s = meta.stride(0);
  p.meta_h = meta.stride(1);
  p.meta_i = meta.stride(2);
  p.slots = slots.const_data_ptr<int32_t>();
  p.slots_stride = slots.stride(0);
  p.accepted = accepted.const_data_ptr<int32_t>();
  p.accepted_stride = accepted.stride(0);
  p.accepted_is_node = accepted_is_node;
  if (parents.has_value()) {
    check_int32(*parents, "parents", 2, dev);
    TORCH_CHECK(parents->size(0) == p.batch && parents->size(1) == p.k, "parents: expected (b, k), got ",
                parents->sizes());
    p.parents = parents->const_data_ptr<int32_t>();
    p.par_b = parents->stride(0);
    p.par_k = parents->stride(1);
  }
  p.y = y.data_ptr();
  p.y_b = y.stride(0);
  p.y_k = y.stride(1);
  p.y_h = y.stride(2);
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
  TORCH_CHECK(x.sizes() == y.sizes(), "x: expected ", y.sizes(), ", got ", x.sizes());
  check_dtype(x, "x", p.in_dtype);
  check_dtype(B, "B", p.in_dtype);
  check_dtype(C, "C", p.in_dtype);
  check_last_dense(x, "x");
  check_last_dense(B, "B");
  check_last_dense(C, "C");
  p.G = B.size(2);
  TORCH_CHECK(p.G >= 1 && p.H % p.G == 0, "B: the number of groups must divide H");
  TORCH_CHECK(B.size(0) == p.batch && B.size(1) == p.k && B.size(3) == p.N && C.sizes() == B.sizes(),
              "B / C: expected (b, k, G, N), got ", B.sizes(), " and ", C.sizes());
  p.x = x.const_data_ptr();
  p.x_b = x.stride(0);
  p.x_k = x.stride(1);
  p.x_h = x.stride(2);
  p.B = B.const_data_ptr();
  p.B_b = B.stride(0);
  p.B_k = B.stride(1);
  p.B_g = B.stride(2);
  p.C = C.const_data_ptr();
  p.C_b = C.stride(0);
  p.C_k = C.stride(1);
  p.C_g = C.stride(2);
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
  TORCH_CHECK(p.Pd == 1 && p.Pa == 1 && p.Na == 1, "verify_step_fused is the Mamba-2 step (Pd = 1, A (H, 1, 1))");
  check_dtype(xBC, "xBC", p.in_dtype);
  check_dtype(conv_window, "conv_window", p.in_dtype);
  p.dc = xBC.size(2);
  TORCH_CHECK(xBC.size(0) == p.batch && xBC.size(1) == p.k, "xBC: expected (b, k, dc), got ", xBC.sizes());
  const int64_t rest = p.dc - p.H * p.P;
  TORCH_CHECK(rest > 0 && rest % (2 * p.N) == 0, "xBC: dc must be H*P + 2*G*N, got ", p.dc);
  p.G = rest / (2 * p.N);
  TORCH_CHECK(p.H % p.G == 0, "xBC: the number of groups must divide H");
  p.width = conv_weight.size(1);
  TORCH_CHECK(conv_weight.size(0) == p.dc && p.width >= 2 && p.width <= 8,
              "conv_weight: expected (dc, w) with w in 2..8, got ", conv_weight.sizes());
  TORCH_CHECK(conv_window.size(0) == p.S && conv_window.size(1) == p.width - 1 + p.Kmax &&
                  conv_window.size(2) == p.dc,
              "conv_window: expected (S, w - 1 + Kmax, dc), got ", conv_window.sizes());
  p.fused = true;
  p.xBC = xBC.const_data_ptr();
  p.xBC_b = xBC.stride(0);
  p.xBC_k = xBC.stride(1);
  p.xBC_c = xBC.stride(2);
  p.conv_weight = conv_weight.const_data_ptr();
  p.conv_weight_dtype = cuda_float_dtype(conv_weight, "conv_weight");
  p.cw_c = conv_weight.stride(0);
  p.cw_w = conv_weight.stride(1);
  if (conv_bias.has_value()) {
    check_dev(*conv_bias, "conv_bias", 1, dev);
    TORCH_CHECK(conv_bias->size(0) == p.dc, "conv_bias: expected (dc,), got ", conv_bias->sizes());
    p.conv_bias = conv_bias->const_data_ptr();
    p.conv_bias_dtype = cuda_float_dtype(*conv_bias, "conv_bias");
    p.cb_c = conv_bias->stride(0);
  }
  p.conv_silu = conv_silu;
  p.conv_window = conv_window.data_ptr();
  p.win_s = conv_window.stride(0);
  p.win_i = conv_window.stride(1);
  p.win_c = conv_window.stride(2);
  run(verify_step_cuda(p, scope.stream));
}

void conv_verify_step_cuda_op(const at::Tensor& x, at::Tensor window, at::Tensor meta, const at::Tensor& weight,
                              const std::optional<at::Tensor>& bias, const at::Tensor& slots,
                              const at::Tensor& accepted, bool accepted_is_node,
                              const std::optional<at::Tensor>& parents, at::Tensor out, bool silu) {
  const at::Device dev = window.device();
  check_dev(x, "x", 3, dev);
  check_dev(window, "window", 3, dev);
  check_int32(meta, "meta", 2, dev);
  check_dev(weight, "weight", 2, dev);
  check_int32(slots, "slots", 1, dev);
  check_int32(accepted, "accepted", 1, dev);
  check_dev(out, "out", 3, dev);
  const DeviceScope scope(dev);
  ConvVerifyParams p;
  p.in_dtype = cuda_float_dtype(x, "x");
  check_dtype(window, "window", p.in_dtype);
  check_dtype(out, "out", p.in_dtype);
  p.weight_dtype = cuda_float_dtype(weight, "weight");
  p.batch = x.size(0);
  p.k = x.size(1);
  p.dc = x.size(2);
  p.width = weight.size(1);
  p.S = window.size(0);
  p.Kmax = meta.size(1) - 1;
  TORCH_CHECK(p.Kmax >= 1 && p.Kmax <= 32, "meta: need 1 <= Kmax <= 32, got ", p.Kmax);
  TORCH_CHECK(p.k <= p.Kmax, "x: k = ", p.k, " exceeds Kmax = ", p.Kmax);
  TORCH_CHECK(weight.size(0) == p.dc && p.width >= 2 && p.width <= 8, "weight: expected (dc, w) with w in 2..8, got ",
              weight.sizes());
  TORCH_CHECK(window.size(1) == p.width - 1 + p.Kmax && window.size(2) == p.dc,
              "window: expected (S, w - 1 + Kmax, dc), got ", window.sizes());
  TORCH_CHECK(meta.size(0) == p.S, "meta: expected (S, 1 + Kmax), got ", meta.sizes());
  TORCH_CHECK(out.sizes() == x.sizes(), "out: expected ", x.sizes(), ", got ", out.sizes());
  TORCH_CHECK(slots.size(0) == p.batch && accepted.size(0) == p.batch, "slots / accepted: expected (b,)");
  p.accepted_is_node = accepted_is_node;
  p.silu = silu;
  p.x = x.const_data_ptr();
  p.x_b = x.stride(0);
  p.x_k = x.stride(1);
  p.x_c = x.stride(2);
  p.window = window.data_ptr();
  p.win_s = window.stride(0);
  p.win_i = window.stride(1);
  p.win_c = window.stride(2);
  p.meta = meta.data_ptr<int32_t>();
  p.meta_s = meta.stride(0);
  p.meta_i = meta.stride(1);
  p.weight = weight.const_data_ptr();
  p.w_c = weight.stride(0);
  p.w_w = weight.stride(1);
  if (bias.has_value()) {
    check_dev(*bias, "bias", 1, dev);
    TORCH_CHECK(bias->size(0) == p.dc, "bias: expected (dc,), got ", bias->sizes());
    p.bias = bias->const_data_ptr();
    p.bias_dtype = cuda_float_dtype(*bias, "bias");
    p.b_c = bias->stride(0);
  }
  p.slots = slots.const_data_ptr<int32_t>();
  p.slots_stride = slots.stride(0);
  p.accepted = accepted.const_data_ptr<int32_t>();
  p.accepted_stride = accepted.stride(0);
  if (parents.has_value()) {
    check_int32(*parents, "parents", 2, dev);
    TORCH_CHECK(parents->size(0) == p.batch && parents->size(1) == p.k, "parents: expected (b, k), got ",
                parents->sizes());
    p.parents = parents->const_data_ptr<int32_t>();
    p.par_b = parents->stride(0);
    p.par_k = parents->stride(1);
  }
  p.out = out.data_ptr();
  p.out_b = out.stride(0);
  p.out_k = out.stride(1);
  p.out_c = out.stride(2);
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
