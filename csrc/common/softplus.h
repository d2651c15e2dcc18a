// softplus(x) = log(1 + e^x) for the CUDA kernels (CUDA headers only; plain host math when a kernel source is compiled
// for the CPU emulations): the selective scan's dt (once per (token, channel), both directions) and the verify
// kernels' dt (process_dt).
#pragma once
#include <cmath>

#include <cuda_runtime.h>

namespace mamba_kernels {

// max(x, 0) + log1p(e), e = e^-|x| in (0, 1]; log1p(e) = e P(e), P the degree-8 minimax fit of log1p(e) / e on
// (0, 1] (Lawson iterations in float64, coefficients rounded to float): one MUFU (the exp) and 10 FP32 ops. Max
// relative error 1.8e-6 on [-40, 40] (5.1e-7 on |x| < 10; the float exponent's rounding dominates at large |x|);
// above 20 it returns x exactly (e < 2.1e-9 is below half an ulp of x), as torch's threshold; NaN stays NaN,
// softplus(-inf) = 0, softplus(inf) = inf. The atanh series it replaced (log1p(e) = 2 atanh(e / (2 + e)), to s^13:
// two MUFU, exp and rcp, ~13 FP32 ops, 1.9e-6) cost the selective scan's state-lane forward 5.7% (H200 lab
// 2026-12-02 run 1: 0.262 / 0.258 / 0.508 ms against 0.247 / 0.243 / 0.483); log1pf(__expf(x)) costs ~30.
__device__ __forceinline__ float softplus_f(float x) {
  const float e = __expf(-fabsf(x));
  float q = fmaf(e, 0.00523269223f, -0.0295052305f);
  q = fmaf(q, e, 0.0782259405f);
  q = fmaf(q, e, -0.136632442f);
  q = fmaf(q, e, 0.191060066f);
  q = fmaf(q, e, -0.24842982f);
  q = fmaf(q, e, 0.333190978f);
  q = fmaf(q, e, -0.499994934f);
  q = fmaf(q, e, 0.99999994f);
  return fmaf(e, q, fmaxf(x, 0.f));
}

}  // namespace mamba_kernels
