// Host emulation of the __half type (round to nearest even), see cuda_runtime.h.
#pragma once
#include <cstdint>
#include <cstring>
struct __half { uint16_t bits; };
inline __half __ushort_as_half(unsigned short v) { return __half{v}; }
inline float __half2float(__half hv) {
  const uint16_t h = hv.bits;
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, u;
  if (exp == 0) {
    if (mant == 0) u = sign;
    else { exp = 113; while ((mant & 0x400u) == 0) { mant <<= 1; --exp; } mant &= 0x3ffu; u = sign | (exp << 23) | (mant << 13); }
  } else if (exp == 31) u = sign | 0x7f800000u | (mant << 13);
  else u = sign | ((exp + 112) << 23) | (mant << 13);
  float f; std::memcpy(&f, &u, 4); return f;
}
inline __half __float2half_rn(float f) {
  uint32_t x; std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) return __half{static_cast<uint16_t>(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u))};
  if (a >= 0x477ff000u) return __half{static_cast<uint16_t>(sign | 0x7c00u)};
  if (a < 0x38800000u) {
    if (a < 0x33000000u) return __half{static_cast<uint16_t>(sign)};
    const uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u, shift = 126 - e;
    uint32_t r = m >> shift; const uint32_t rem = m & ((1u << shift) - 1), hw = 1u << (shift - 1);
    if (rem > hw || (rem == hw && (r & 1u))) ++r;
    return __half{static_cast<uint16_t>(sign | r)};
  }
  const uint32_t r = a - 0x38000000u;
  return __half{static_cast<uint16_t>(sign | ((r + 0x0fffu + ((r >> 13) & 1u)) >> 13))};
}
struct __half2 { __half x, y; };
inline __half2 __floats2half2_rn(float a, float b) { return __half2{__float2half_rn(a), __float2half_rn(b)}; }
