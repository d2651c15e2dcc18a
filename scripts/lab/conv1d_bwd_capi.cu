// A C entry point to the conv1d channel-first backward built with the speed lab's flags (no torch), so that a
// Python process can time the lab's build of the kernel on torch tensors beside the library's build of the same
// source (the open question in bench/NOTES.md: same SASS, 190 us in the lab binary, 228 us in the torch process).
// Build: nvcc <lab flags> -Xcompiler -fPIC -shared scripts/lab/conv1d_bwd_capi.cu csrc/conv1d/conv1d_launch.cu
//        csrc/conv1d/conv1d_fwd_launch.cu csrc/conv1d/conv1d_bwd_launch.cu -o libconv1d_bwd_capi.so
// Used by scripts/lab/probe_conv1d_bwd_capi.py (also from a Python process without torch: the standalone entry
// allocates, fills and times by itself).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>

#include "conv1d/conv1d.h"

using namespace mamba_kernels;
using namespace mamba_kernels::conv1d;

static Conv1dParams bf16_cf_params(const void* x, const void* dy, void* dx, const void* w, const void* bias, void* dw,
                                   void* db, float* dwp, float* dbp, int64_t b, int64_t d, int64_t l, int width,
                                   int w_dtype) {
  Conv1dParams p;
  p.batch = b; p.dim = d; p.seqlen = l; p.width = width; p.nseq = b; p.silu = true;
  p.x_dtype = DType::kBFloat16;
  p.w_dtype = p.b_dtype = w_dtype ? DType::kBFloat16 : DType::kFloat32;
  p.x = x; p.dy = dy; p.dx = dx;
  p.x_batch_stride = p.dy_batch_stride = p.dx_batch_stride = p.y_batch_stride = d * l;
  p.x_c_stride = p.dy_c_stride = p.dx_c_stride = p.y_c_stride = l;
  p.x_l_stride = p.dy_l_stride = p.dx_l_stride = p.y_l_stride = 1;
  p.weight = w; p.w_c_stride = width; p.w_w_stride = 1;
  p.bias = bias; p.bias_stride = 1;
  p.dweight = dw; p.dbias = db; p.dweight_partial = dwp; p.dbias_partial = dbp;
  return p;
}

template <typename T>
static __global__ void fill_uniform(T* p, int64_t n, uint32_t seed, float scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15; h *= 2246822519u; h ^= h >> 13;
    p[i] = static_cast<T>(scale * ((h >> 8) * (2.f / 16777216.f) - 1.f));
  }
}

extern "C" {
// Rows of fp32 partials the backward needs (dweight partials are rows * d * width floats, dbias rows * d).
int64_t mk_lab_bwd_cf_partials(int64_t b, int64_t d, int64_t l, int width) {
  const Conv1dParams p = bf16_cf_params(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                        nullptr, b, d, l, width, 1);
  return conv1d_bwd_num_partials(p, false);
}
// bf16 x / dy / dx (b, d, l) contiguous, silu; weight / bias / dweight / dbias bf16 (w_dtype 1) or fp32 (0).
// Returns 0, or 1 when the launcher reports an error. stream: a cudaStream_t (0: the legacy default stream).
int mk_lab_bwd_cf(const void* x, const void* dy, void* dx, const void* w, const void* bias, void* dw, void* db,
                  float* dwp, float* dbp, int64_t b, int64_t d, int64_t l, int width, int w_dtype, void* stream) {
  const Conv1dParams p = bf16_cf_params(x, dy, dx, w, bias, dw, db, dwp, dbp, b, d, l, width, w_dtype);
  return conv1d_bwd_cuda(p, false, stream) == nullptr ? 0 : 1;
}

// Device and context settings that could differ between processes (written into buf as one line).
void mk_lab_settings(char* buf, int n) {
  size_t persist = 0, stack = 0, heap = 0;
  unsigned flags = 0;
  cudaFuncCache cache = cudaFuncCachePreferNone;
  int dev = 0, l2 = 0, persist_max = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetLimit(&persist, cudaLimitPersistingL2CacheSize);
  cudaDeviceGetLimit(&stack, cudaLimitStackSize);
  cudaDeviceGetLimit(&heap, cudaLimitMallocHeapSize);
  cudaGetDeviceFlags(&flags);
  cudaDeviceGetCacheConfig(&cache);
  cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev);
  cudaDeviceGetAttribute(&persist_max, cudaDevAttrMaxPersistingL2CacheSize, dev);
  snprintf(buf, n, "persisting L2 %zu (max %d, L2 %d), stack %zu, heap %zu, device flags 0x%x, cache config %d", persist,
           persist_max, l2, stack, heap, flags, static_cast<int>(cache));
}

// Allocates x, dy, dx (cudaMalloc), the weights and the partials, fills x / dy, then times `batch` back-to-back
// launches between two events, `rounds` times; writes the per-launch median (us) to *us. Returns 0 on success.
// w_dtype: 1 bf16 weight / bias (as the torch probes), 0 fp32 (as the lab binary); both filled uniform in
// (-wscale, wscale).
int mk_lab_bwd_cf_standalone(int64_t b, int64_t d, int64_t l, int rounds, int batch, int w_dtype, float wscale,
                             float* us) {
  const int width = 4;
  const int64_t n = b * d * l, rows = mk_lab_bwd_cf_partials(b, d, l, width);
  void *x, *dy, *dx, *w, *bias, *dw, *db;
  float *dwp, *dbp;
  const int64_t ws = w_dtype ? 2 : 4;
  if (cudaMalloc(&x, n * 2) || cudaMalloc(&dy, n * 2) || cudaMalloc(&dx, n * 2) || cudaMalloc(&w, d * width * ws) ||
      cudaMalloc(&bias, d * ws) || cudaMalloc(&dw, d * width * ws) || cudaMalloc(&db, d * ws) ||
      cudaMalloc(&dwp, rows * d * width * 4) || cudaMalloc(&dbp, rows * d * 4))
    return 1;
  fill_uniform<<<1024, 256>>>(static_cast<__nv_bfloat16*>(x), n, 1u, 1.f);
  fill_uniform<<<1024, 256>>>(static_cast<__nv_bfloat16*>(dy), n, 2u, 1.f);
  if (w_dtype) {
    fill_uniform<<<64, 256>>>(static_cast<__nv_bfloat16*>(w), d * width, 3u, wscale);
    fill_uniform<<<64, 256>>>(static_cast<__nv_bfloat16*>(bias), d, 4u, wscale);
  } else {
    fill_uniform<<<64, 256>>>(static_cast<float*>(w), d * width, 3u, wscale);
    fill_uniform<<<64, 256>>>(static_cast<float*>(bias), d, 4u, wscale);
  }
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  float t[64];
  rounds = rounds < 64 ? rounds : 64;
  int rc = 0;
  for (int r = 0; r < rounds && !rc; ++r) {
    cudaEventRecord(e0);
    for (int i = 0; i < batch && !rc; ++i) rc = mk_lab_bwd_cf(x, dy, dx, w, bias, dw, db, dwp, dbp, b, d, l, width, w_dtype, nullptr);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    cudaEventElapsedTime(&t[r], e0, e1);
    t[r] *= 1e3f / batch;
  }
  for (int i = 1; i < rounds; ++i)  // insertion sort: median
    for (int j = i; j > 0 && t[j] < t[j - 1]; --j) { const float s = t[j]; t[j] = t[j - 1]; t[j - 1] = s; }
  *us = rounds > 0 ? t[rounds / 2] : 0.f;
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  for (void* q : {x, dy, dx, w, bias, dw, db, static_cast<void*>(dwp), static_cast<void*>(dbp)}) cudaFree(q);
  return rc || cudaGetLastError() != cudaSuccess;
}
}
