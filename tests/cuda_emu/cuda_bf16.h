// Host emulation of __nv_bfloat16 (tests only; see cuda_runtime.h in this folder).
#pragma once
#include <cstdint>
#include <cstring>

#include "cuda_runtime.h"

struct __nv_bfloat16 {
  unsigned short x;
};
inline float __bfloat162float(__nv_bfloat16 b) {
  const uint32_t u = uint32_t(b.x) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{0x7fc0};  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                     // round to nearest even
  return __nv_bfloat16{static_cast<unsigned short>(u >> 16)};
}
