// Shared by the CUDA-kernel emulation drivers (selective_scan_emu.cpp, ssd_emu.cpp): conversions between the
// input dtypes and double, and the error report (relative RMS and max error against a double reference).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

template <typename T> T cvt(double x);
template <> inline float cvt<float>(double x) { return float(x); }
template <> inline __nv_bfloat16 cvt<__nv_bfloat16>(double x) { return __float2bfloat16_rn(float(x)); }
template <> inline __half cvt<__half>(double x) { return __float2half_rn(float(x)); }
inline double back(float x) { return x; }
inline double back(__nv_bfloat16 x) { return __bfloat162float(x); }
inline double back(__half x) { return __half2float(x); }

// check(what, actual, expected, rms_tol, max_tol): fails on NaN / inf, a relative RMS error above rms_tol, or a max
// error above max_tol times the largest |expected|; appends " what=rms/max" (and "(FAIL)") to msg.
struct Report {
  bool ok = true;
  std::string msg;
  void check(const char* what, const std::vector<double>& a, const std::vector<double>& e, double rms_tol,
             double max_tol) {
    if (a.size() != e.size()) { ok = false; msg += std::string(" ") + what + ":size"; return; }
    if (a.empty()) return;
    double num = 0, den = 0, mx = 0, scale = 0;
    bool nan = false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (!std::isfinite(a[i])) nan = true;
      num += (a[i] - e[i]) * (a[i] - e[i]);
      den += e[i] * e[i];
      mx = std::max(mx, std::fabs(a[i] - e[i]));
      scale = std::max(scale, std::fabs(e[i]));
    }
    const double rel = std::sqrt(num / std::max(den, 1e-300));
    const bool good = !nan && rel <= rms_tol && mx <= max_tol * std::max(scale, 1e-30);
    char buf[200];
    std::snprintf(buf, sizeof buf, " %s=%.1e/%.1e%s", what, nan ? NAN : rel, mx / std::max(scale, 1e-30),
                  good ? "" : "(FAIL)");
    msg += buf;
    ok = ok && good;
  }
};
