// The dynamic shared memory a block may opt into on a CUDA device, and opting a kernel into it with a readable error;
// the device's SM count (host code; CUDA runtime only). Why: several kernels need more than an RTX 30xx / 40xx gives
// a block (101376 bytes; A100 166912, H100 / H200 232448), and cudaFuncSetAttribute then only says "invalid argument".
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>

namespace mamba_kernels {

// Device `device`'s opt-in shared memory a block in bytes (48 KB, what every device gives, when the runtime cannot
// say). Not cached: one attribute query.
inline int64_t smem_optin_of(int device) {
  int v = 0;
  return cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) == cudaSuccess && v > 0 ? v
                                                                                                           : 48 * 1024;
}

// The current device's, cached per device.
inline int64_t device_smem_optin() {
  static int64_t cached[64] = {0};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0) return 48 * 1024;
  if (dev >= 64) return smem_optin_of(dev);
  if (cached[dev] == 0) cached[dev] = smem_optin_of(dev);
  return cached[dev];
}

// The current device's SM count (0 when the runtime cannot say), cached per device.
inline int device_sm_count() {
  static int cached[64] = {0};  // 0 unknown, -1 not available
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return 0;
  if (cached[dev] == 0) {
    int n = 0;
    cached[dev] = cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess && n > 0 ? n : -1;
    (void)cudaGetLastError();  // a failed query must not be reported as the next launch's error
  }
  return cached[dev] > 0 ? cached[dev] : 0;
}

// The last opt_in_smem refusal of this thread ("" when none), for the launcher's error string.
inline char* smem_refusal() {
  static thread_local char msg[192] = "";
  return msg;
}

// Lets `kernel` take `bytes` of dynamic shared memory (above the default 48 KB: the opt-in attribute). When the
// current device allows less: cudaErrorInvalidValue, and smem_refusal() names the kernel's need and the limit.
template <typename K>
cudaError_t opt_in_smem(K kernel, int64_t bytes, const char* what) {
  if (bytes <= 48 * 1024) return cudaSuccess;
  const int64_t optin = device_smem_optin();
  if (bytes > optin) {
    std::snprintf(smem_refusal(), 192, "%s needs %lld bytes of shared memory a block; this GPU allows %lld", what,
                  static_cast<long long>(bytes), static_cast<long long>(optin));
    return cudaErrorInvalidValue;
  }
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
}

// A launcher's error string for err: the refusal message when opt_in_smem refused (then cleared), else the runtime's.
inline const char* launch_error_string(cudaError_t err) {
  char* m = smem_refusal();
  if (err == cudaErrorInvalidValue && m[0] != '\0') {
    static thread_local char out[192];
    std::snprintf(out, sizeof(out), "%s", m);
    m[0] = '\0';
    return out;
  }
  return cudaGetErrorString(err);
}

}  // namespace mamba_kernels
