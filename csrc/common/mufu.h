// Single special-function-unit (MUFU) operations, independent of --use_fast_math, for the CUDA kernels; plain
// host math when a kernel source is compiled for the CPU emulations (tests/cuda_emu, csrc/conv1d/emu).
#pragma once
#include <cmath>

#include <cuda_runtime.h>

namespace mamba_kernels {

// log2(e): exp(v) = 2^(v log2 e), one MUFU.EX2 by fast_exp2 (the operand pre-scaled once where it is reused).
constexpr float kLog2e = 1.4426950408889634f;

// 2^x: one MUFU.EX2 (ex2.approx.ftz, ~2 ulp).
__device__ __forceinline__ float fast_exp2(float x) {
#if defined(__CUDA_ARCH__)
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#else
  return exp2f(x);
#endif
}

// 1 / d: one MUFU.RCP (rcp.approx.ftz, ~1 ulp; rcp(inf) = 0). __fdividef(1, d) adds an FADD per call that only
// flushes a denormal result.
__device__ __forceinline__ float fast_rcp(float d) {
#if defined(__CUDA_ARCH__)
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(d));
  return r;
#else
  return 1.f / d;
#endif
}

}  // namespace mamba_kernels
