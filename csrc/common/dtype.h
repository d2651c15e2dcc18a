// Element types shared by kernels and bindings, without any torch header.
#pragma once
#include <cstdint>

namespace mamba_kernels {

// Matches the order used by the binding helper `to_dtype_code`.
enum class DType : int32_t { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2, kFloat64 = 3 };

}  // namespace mamba_kernels
