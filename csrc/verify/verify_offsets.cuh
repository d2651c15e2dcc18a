// Base offsets of the verify kernels in 32-bit arithmetic where they fit (CUDA headers only, no torch): eoff and
// the host check offsets_fit32 that picks a kernel's 32-bit or int64 instantiation.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <initializer_list>

#include "verify/verify.h"

namespace mamba_kernels {
namespace verify_kernels {

// Element offset i0 s0 + i1 s1 + i2 s2 of a kernel's base pointers. k32: in 32-bit arithmetic (the host checked
// offsets_fit32), one IMAD a term and one widening at the pointer; else int64, ~4 instructions a term. Why: in the
// one-token decode kernels the ~15 base pointers' int64 products were ~250 SASS instructions between the slot's load
// and the state's (ncu, Mamba-1 b1 k1, session 48): a latency chain at small batch, issue slots at large.
template <bool k32>
__device__ __forceinline__ int64_t eoff(int i0, int64_t s0, int i1 = 0, int64_t s1 = 0, int i2 = 0, int64_t s2 = 0) {
  if constexpr (k32) {
    return i0 * static_cast<int32_t>(s0) + i1 * static_cast<int32_t>(s1) + i2 * static_cast<int32_t>(s2);
  } else {
    return static_cast<int64_t>(i0) * s0 + static_cast<int64_t>(i1) * s1 + static_cast<int64_t>(i2) * s2;
  }
}

// Host side: whether every element offset a verify kernel forms from p (any index of every tensor p addresses)
// stays under 2^30 in magnitude, so that eoff<true> (sums of up to three such terms plus a column) cannot overflow
// int32. MK_VERIFY_WIDE_OFFSETS=1 (read at every launch; for tests) answers false: the int64 instantiations.
inline bool offsets_fit32(const VerifyStepParams& p) {
  const char* e = std::getenv("MK_VERIFY_WIDE_OFFSETS");
  if (e != nullptr && e[0] == '1') return false;
  const int64_t Bt = p.batch, K = p.k > p.Kmax ? p.k : p.Kmax, H = p.H, P = p.P, N = p.N, S = p.S, R = p.R;
  auto fits = [](std::initializer_list<int64_t> extent_stride) {  // pairs (extent, stride)
    int64_t span = 0;
    for (auto it = extent_stride.begin(); it != extent_stride.end(); it += 2) {
      const int64_t ext = it[0] > 1 ? it[0] - 1 : 0, st = std::llabs(it[1]);
      if (ext != 0 && st > (int64_t(1) << 30) / ext) return false;
      span += ext * st;
    }
    return span < (int64_t(1) << 30);
  };
  return fits({Bt, p.slots_stride}) && fits({Bt, p.accepted_stride}) &&
         fits({Bt, p.y_b, K, p.y_k, H, p.y_h, P, 1}) && fits({S, p.meta_s, H, p.meta_h, K + 3, p.meta_i}) &&
         fits({S, p.st_s, H, p.st_h, P, p.st_p, N, 1}) && fits({S, p.rx_s, H, p.rx_h, R, p.rx_r, P, 1}) &&
         fits({S, p.rB_s, H, p.rB_h, R, p.rB_r, N, 1}) && fits({S, p.rdt_s, H, p.rdt_h, R, p.rdt_r, P, p.rdt_p}) &&
         fits({Bt, p.x_b, K, p.x_k, H, p.x_h, P, 1}) && fits({Bt, p.z_b, K, p.z_k, H, p.z_h, P, 1}) &&
         fits({Bt, p.dt_b, K, p.dt_k, H, p.dt_h, P, p.dt_p}) && fits({Bt, p.B_b, K, p.B_k, p.G, p.B_g, N, 1}) &&
         fits({Bt, p.C_b, K, p.C_k, p.G, p.C_g, N, 1}) && fits({H, p.A_h, P, p.A_p, N, p.A_n}) &&
         fits({H, p.D_h, P, p.D_p}) && fits({H, p.dtb_h, P, p.dtb_p}) && fits({Bt, p.par_b, K, p.par_k});
}

}  // namespace verify_kernels
}  // namespace mamba_kernels
