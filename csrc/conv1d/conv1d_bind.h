// Shared by conv1d_bind_cpu.cpp and conv1d_bind_cuda.cpp (torch side only; kernels never include this):
// fills the params structs from tensors and checks what the kernels rely on. The public Python op has
// already validated the arguments with readable errors; these TORCH_CHECKs guard the raw-pointer contract.
//
// Op schemas (x, y, dy, dx are logical (b, d, l) views with any strides; states (nseq, d, w-1)):
//   _conv1d_fwd_<be>(x, weight, bias?, initial_states?, cu_seqlens?, y!, final_states!?, silu[, channel_last])
//   _conv1d_bwd_<be>(x, weight, bias?, initial_states?, cu_seqlens?, dy, dfinal_states?, dx!, dweight!,
//                    dbias!?, dinitial_states!?, silu[, channel_last])
//   _conv1d_update_<be>(x, conv_state!, weight, bias?, slots?, out!, silu)     x/out (b, d, k)
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>

#include "common/bind_utils.h"
#include "conv1d/conv1d.h"

namespace mamba_kernels {
namespace conv1d {

inline void check_same(const at::Tensor& t, const at::Tensor& ref, const char* name) {
  TORCH_CHECK(t.device() == ref.device(), name, ": expected device ", ref.device(), ", got ", t.device());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), name, ": expected dtype ", ref.scalar_type(), ", got ",
              t.scalar_type());
}

inline void check_state(const std::optional<at::Tensor>& t, const at::Tensor& x, int64_t nseq, int64_t dim,
                        int64_t width, const char* name) {
  if (!t) return;
  check_same(*t, x, name);
  TORCH_CHECK(t->dim() == 3 && t->size(0) == nseq && t->size(1) == dim && t->size(2) == width - 1, name,
              ": expected shape (", nseq, ", ", dim, ", ", width - 1, "), got ", t->sizes());
}

// Forward fields (+ the shared input fields of the backward).
inline Conv1dParams make_params(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                const std::optional<at::Tensor>& initial_states,
                                const std::optional<at::Tensor>& cu_seqlens, bool silu) {
  TORCH_CHECK(x.dim() == 3, "x: expected a (b, d, l) view, got ", x.sizes());
  TORCH_CHECK(weight.dim() == 2 && weight.size(0) == x.size(1), "weight: expected (", x.size(1), ", w), got ",
              weight.sizes());
  TORCH_CHECK(weight.size(1) >= kMinWidth && weight.size(1) <= kMaxWidth, "weight: width must be in [",
              kMinWidth, ", ", kMaxWidth, "], got ", weight.size(1));
  TORCH_CHECK(weight.device() == x.device(), "weight: wrong device");
  Conv1dParams p;
  p.batch = x.size(0); p.dim = x.size(1); p.seqlen = x.size(2); p.width = weight.size(1);
  p.silu = silu;
  p.x_dtype = to_dtype_code(x, "x");
  p.w_dtype = to_dtype_code(weight, "weight");
  p.x = x.const_data_ptr();
  p.x_batch_stride = x.stride(0); p.x_c_stride = x.stride(1); p.x_l_stride = x.stride(2);
  p.weight = weight.const_data_ptr();
  p.w_c_stride = weight.stride(0); p.w_w_stride = weight.stride(1);
  if (bias) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == p.dim && bias->device() == x.device(),
                "bias: expected (", p.dim, ",) on the device of x");
    p.b_dtype = to_dtype_code(*bias, "bias");
    p.bias = bias->const_data_ptr();
    p.bias_stride = bias->stride(0);
  }
  p.nseq = p.batch;
  if (cu_seqlens) {
    TORCH_CHECK(cu_seqlens->scalar_type() == at::kInt && cu_seqlens->dim() == 1 && cu_seqlens->is_contiguous() &&
                cu_seqlens->numel() >= 1 && cu_seqlens->device() == x.device(),
                "cu_seqlens: expected a contiguous (nseq + 1,) int32 tensor on the device of x");
    TORCH_CHECK(p.batch == 1, "x: varlen (cu_seqlens) needs batch 1, got ", p.batch);
    p.cu_seqlens = cu_seqlens->const_data_ptr<int32_t>();
    p.nseq = cu_seqlens->numel() - 1;
  }
  check_state(initial_states, x, p.nseq, p.dim, p.width, "initial_states");
  if (initial_states) {
    p.initial_states = initial_states->const_data_ptr();
    p.init_n_stride = initial_states->stride(0); p.init_c_stride = initial_states->stride(1);
    p.init_w_stride = initial_states->stride(2);
  }
  return p;
}

inline void set_fwd_outputs(Conv1dParams& p, const at::Tensor& x, const at::Tensor& y,
                            const std::optional<at::Tensor>& final_states) {
  check_same(y, x, "y");
  TORCH_CHECK(y.sizes() == x.sizes(), "y: expected the shape of x");
  p.y = y.data_ptr();
  p.y_batch_stride = y.stride(0); p.y_c_stride = y.stride(1); p.y_l_stride = y.stride(2);
  check_state(final_states, x, p.nseq, p.dim, p.width, "final_states");
  if (final_states) {
    p.final_states = final_states->data_ptr();
    p.final_n_stride = final_states->stride(0); p.final_c_stride = final_states->stride(1);
    p.final_w_stride = final_states->stride(2);
  }
}

// dweight / dbias dtypes: grad_param_dtype, or (CUDA: nullopt) those of weight / bias.
inline void set_bwd_fields(Conv1dParams& p, const at::Tensor& x, const at::Tensor& dy,
                           const std::optional<at::Tensor>& dfinal_states, const at::Tensor& dx,
                           const at::Tensor& dweight, const std::optional<at::Tensor>& dbias,
                           const std::optional<at::Tensor>& dinitial_states,
                           std::optional<at::ScalarType> grad_param_dtype, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias) {
  check_same(dy, x, "dy");
  check_same(dx, x, "dx");
  TORCH_CHECK(dy.sizes() == x.sizes() && dx.sizes() == x.sizes(), "dy, dx: expected the shape of x");
  p.dy = dy.const_data_ptr();
  p.dy_batch_stride = dy.stride(0); p.dy_c_stride = dy.stride(1); p.dy_l_stride = dy.stride(2);
  p.dx = dx.data_ptr();
  p.dx_batch_stride = dx.stride(0); p.dx_c_stride = dx.stride(1); p.dx_l_stride = dx.stride(2);
  check_state(dfinal_states, x, p.nseq, p.dim, p.width, "dfinal_states");
  if (dfinal_states) {
    p.dfinal_states = dfinal_states->const_data_ptr();
    p.dfinal_n_stride = dfinal_states->stride(0); p.dfinal_c_stride = dfinal_states->stride(1);
    p.dfinal_w_stride = dfinal_states->stride(2);
  }
  check_state(dinitial_states, x, p.nseq, p.dim, p.width, "dinitial_states");
  if (dinitial_states) {
    p.dinitial_states = dinitial_states->data_ptr();
    p.dinit_n_stride = dinitial_states->stride(0); p.dinit_c_stride = dinitial_states->stride(1);
    p.dinit_w_stride = dinitial_states->stride(2);
  }
  const auto dw_dtype = grad_param_dtype.value_or(weight.scalar_type());
  TORCH_CHECK(dweight.scalar_type() == dw_dtype && dweight.is_contiguous() && dweight.dim() == 2 &&
              dweight.size(0) == p.dim && dweight.size(1) == p.width && dweight.device() == x.device(),
              "dweight: expected a contiguous (", p.dim, ", ", p.width, ") ", dw_dtype, " tensor");
  p.dweight = dweight.data_ptr();
  if (dbias) {
    TORCH_CHECK(bias.has_value(), "dbias: given without bias");
    const auto db_dtype = grad_param_dtype.value_or(bias->scalar_type());
    TORCH_CHECK(dbias->scalar_type() == db_dtype && dbias->is_contiguous() && dbias->dim() == 1 &&
                dbias->size(0) == p.dim && dbias->device() == x.device(),
                "dbias: expected a contiguous (", p.dim, ",) ", db_dtype, " tensor");
    p.dbias = dbias->data_ptr();
  }
}

inline Conv1dUpdateParams make_update_params(const at::Tensor& x, const at::Tensor& conv_state,
                                             const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                             const std::optional<at::Tensor>& slots, const at::Tensor& out,
                                             bool silu) {
  TORCH_CHECK(x.dim() == 3, "x: expected a (b, d, k) view, got ", x.sizes());
  TORCH_CHECK(weight.dim() == 2 && weight.size(0) == x.size(1) && weight.size(1) >= kMinWidth &&
              weight.size(1) <= kMaxWidth && weight.device() == x.device(),
              "weight: expected (d, w) with w in [2, 8] on the device of x, got ", weight.sizes());
  check_same(conv_state, x, "conv_state");
  TORCH_CHECK(conv_state.dim() == 3 && conv_state.size(1) == x.size(1) && conv_state.size(2) >= weight.size(1) - 1,
              "conv_state: expected (S, ", x.size(1), ", >= ", weight.size(1) - 1, "), got ", conv_state.sizes());
  check_same(out, x, "out");
  TORCH_CHECK(out.sizes() == x.sizes(), "out: expected the shape of x");
  Conv1dUpdateParams p;
  p.batch = x.size(0); p.dim = x.size(1); p.k = x.size(2); p.width = weight.size(1);
  p.state_len = conv_state.size(2); p.nslots = conv_state.size(0);
  p.silu = silu;
  p.x_dtype = to_dtype_code(x, "x");
  p.w_dtype = to_dtype_code(weight, "weight");
  p.x = x.const_data_ptr();
  p.x_batch_stride = x.stride(0); p.x_c_stride = x.stride(1); p.x_l_stride = x.stride(2);
  p.out = out.data_ptr();
  p.out_batch_stride = out.stride(0); p.out_c_stride = out.stride(1); p.out_l_stride = out.stride(2);
  p.conv_state = conv_state.data_ptr();
  p.state_n_stride = conv_state.stride(0); p.state_c_stride = conv_state.stride(1);
  p.state_l_stride = conv_state.stride(2);
  p.weight = weight.const_data_ptr();
  p.w_c_stride = weight.stride(0); p.w_w_stride = weight.stride(1);
  if (bias) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == p.dim && bias->device() == x.device(),
                "bias: expected (", p.dim, ",) on the device of x");
    p.b_dtype = to_dtype_code(*bias, "bias");
    p.bias = bias->const_data_ptr();
    p.bias_stride = bias->stride(0);
  }
  if (slots) {
    TORCH_CHECK(slots->scalar_type() == at::kInt && slots->dim() == 1 && slots->size(0) == p.batch &&
                slots->is_contiguous() && slots->device() == x.device(),
                "slots: expected a contiguous (", p.batch, ",) int32 tensor on the device of x");
    p.slots = slots->const_data_ptr<int32_t>();
  } else {
    TORCH_CHECK(p.nslots == p.batch, "conv_state: without slots it needs one state per row (", p.batch,
                "), got ", p.nslots);
  }
  return p;
}

}  // namespace conv1d
}  // namespace mamba_kernels
