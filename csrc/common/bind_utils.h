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

// Optional tensor -> raw pointer (nullptr when absent).
inline const void* opt_ptr(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->const_data_ptr() : nullptr;
}

}  // namespace mamba_kernels
