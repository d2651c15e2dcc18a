// Helpers for the thin torch binding files only (never included by kernels).
// Narrow headers keep each binding translation unit fast to compile.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "common/dtype.h"

namespace mamba_kernels {

inline DType to_dtype_code(const at::Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::kFloat32;
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    case at::kDouble: return DType::kFloat64;
    default: TORCH_CHECK_TYPE(false, name, ": unsupported dtype ", t.scalar_type());
  }
}

// t: a contiguous tensor of dtype st with numel elements on the CUDA device of `like` (the op's main input).
inline void check_cuda_dense(const at::Tensor& t, const at::Tensor& like, const char* name, at::ScalarType st,
                             int64_t numel) {
  TORCH_CHECK(t.is_cuda() && t.device() == like.device(), name, ": expected a CUDA tensor on ", like.device());
  TORCH_CHECK_TYPE(t.scalar_type() == st, name, ": expected ", st, ", got ", t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), name, ": expected a contiguous tensor");
  TORCH_CHECK(t.numel() == numel, name, ": expected ", numel, " elements, got ", t.numel());
}

// Optional tensor -> raw pointer (nullptr when absent).
inline const void* opt_ptr(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->const_data_ptr() : nullptr;
}

}  // namespace mamba_kernels
