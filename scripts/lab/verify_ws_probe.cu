// Can a persistent, warp-specialised block hide the verify split pair's prep work under the state stream? (session
// 49; bench/notes/verify_step.md "Where b64 k4 stands"). The split pair at b64 k4 runs the prep kernel (~13 us on an
// H100: 2,048 units, ~1,700 instructions a warp in 2 warps a unit, three dependent global round trips) ahead of the
// stream kernel (the 2,048 64 KB fp32 state tiles); every attempt to overlap the two kernels made the prep's
// per-unit chains slower (session 30, session 49's flag hand-over). This probe measures the structure alone, no
// library: one block an SM walking units blockIdx.x, + gridDim.x, ...; one producer warp streaming each tile as two
// 32 KB halves by cp.async.bulk into NS stages (mbarrier complete_tx); 8 consumer warps that read every element of
// a stage (a sum: the state dots' shared-memory traffic without the tensor cores) and release it; and NPAIR pairs of
// "prep" warps that run, per unit, a synthetic chain shaped like the prep kernel's: three dependent global loads
// (an L2-resident 4 KB input a unit) each followed by WORK instructions of FMAs, a pair barrier between phases, a
// record in shared memory that the consumers wait for (mbarrier) before they finish the unit.
//   nvcc -O3 -std=c++17 -arch=sm_90a -o /tmp/verify_ws_probe scripts/lab/verify_ws_probe.cu
//   /tmp/verify_ws_probe [units=2048] [reps=30]
// Prints, per variant: median time (CUDA events over back-to-back launches) and the state bytes' GB/s.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CK(x)                                                                         \
  do {                                                                                \
    cudaError_t e_ = (x);                                                             \
    if (e_ != cudaSuccess) {                                                          \
      std::fprintf(stderr, "%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); \
      std::exit(1);                                                                   \
    }                                                                                 \
  } while (0)

constexpr int kHalfBytes = 32768;               // half a 64 KB tile
constexpr int kHalfF4 = kHalfBytes / 16;        // float4s a half
constexpr int kInWords = 1024;                  // 4 KB of prep input a unit
constexpr int kConsumerWarps = 8;

__device__ __forceinline__ unsigned smem_u32(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void mbar_init(uint64_t* b, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(b)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* b) {
  asm volatile("{\n .reg .b64 st;\n mbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(smem_u32(b)) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx_arrive(uint64_t* b, unsigned bytes) {
  asm volatile("{\n .reg .b64 st;\n mbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1;\n}\n" ::"r"(smem_u32(b)),
               "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* b, unsigned parity) {
  asm volatile(
      "{\n .reg .pred p;\n WAIT_%=:\n mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n @!p bra WAIT_%=;\n}\n" ::"r"(
          smem_u32(b)),
      "r"(parity)
      : "memory");
}
__device__ __forceinline__ void bulk_g2s(void* dst, const void* src, unsigned bytes, uint64_t* bar, uint64_t pol) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;\n" ::"r"(
          smem_u32(dst)),
      "l"(src), "r"(bytes), "r"(smem_u32(bar)), "l"(pol)
      : "memory");
}
__device__ __forceinline__ uint64_t evict_first() {
  uint64_t pol;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(pol));
  return pol;
}
__device__ __forceinline__ void pair_sync(int id) { asm volatile("bar.sync %0, 64;\n" ::"r"(id) : "memory"); }

// WORK dependent-ish FMAs in 4 independent chains (ILP 4, as a mixed prep phase), seeded by v.
__device__ __forceinline__ float work(float v, int n) {
  float a = v, b = v + 1.f, c = v + 2.f, d = v + 3.f;
  for (int i = 0; i < n; i += 4) {
    a = fmaf(a, 0.9999f, 1e-3f);
    b = fmaf(b, 0.9998f, 2e-3f);
    c = fmaf(c, 0.9997f, 3e-3f);
    d = fmaf(d, 0.9996f, 4e-3f);
  }
  return (a + b) + (c + d);
}

// Block: warp 0 producer, warps 1..8 consumers, then 2 * npair prep warps. Shared memory: NS stages of 32 KB, the
// mbarriers, and npair x 2 record slots of 64 floats.
template <int NS>
__global__ void ws_probe(const float4* __restrict__ st, const float* __restrict__ in, float* out, int units, int npair,
                         int work_n) {
  extern __shared__ __align__(128) unsigned char smem[];
  float4* stage = reinterpret_cast<float4*>(smem);
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + NS * kHalfBytes);
  uint64_t* empty = full + NS;
  uint64_t* rec_full = empty + NS;   // [npair][2]
  uint64_t* rec_empty = rec_full + 16;
  float* rec = reinterpret_cast<float*>(rec_empty + 16);  // [npair][2][64]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (threadIdx.x == 0) {
    for (int s = 0; s < NS; ++s) {
      mbar_init(full + s, 1);
      mbar_init(empty + s, kConsumerWarps);
    }
    for (int r = 0; r < 2 * npair; ++r) {
      mbar_init(rec_full + r, 2);                    // the pair's two warps
      mbar_init(rec_empty + r, kConsumerWarps);      // the consumers
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
  const int n_mine = units > (int)blockIdx.x ? (units - 1 - (int)blockIdx.x) / (int)gridDim.x + 1 : 0;
  if (warp == 0) {  // producer
    if (lane == 0) {
      const uint64_t pol = evict_first();
      int cnt = 0;
      for (int i = 0; i < n_mine; ++i) {
        const size_t u = blockIdx.x + (size_t)i * gridDim.x;
        for (int h = 0; h < 2; ++h, ++cnt) {
          const int s = cnt % NS;
          if (cnt >= NS) mbar_wait(empty + s, ((cnt / NS) - 1) & 1);
          mbar_expect_tx_arrive(full + s, kHalfBytes);
          bulk_g2s(stage + (size_t)s * kHalfF4, st + (u * 2 + h) * kHalfF4, kHalfBytes, full + s, pol);
        }
      }
    }
    return;
  }
  if (warp <= kConsumerWarps) {  // consumers
    const int ct = threadIdx.x - 32;  // 0..255
    int cnt = 0;
    for (int i = 0; i < n_mine; ++i) {
      float acc = 0.f;
      for (int h = 0; h < 2; ++h, ++cnt) {
        const int s = cnt % NS;
        mbar_wait(full + s, (cnt / NS) & 1);
        const float4* sp = stage + (size_t)s * kHalfF4;
#pragma unroll 8
        for (int j = ct; j < kHalfF4; j += 256) {
          const float4 v = sp[j];
          acc = fmaf(v.x, 1.0001f, acc) + fmaf(v.y, 0.9999f, v.z) + v.w;
        }
        __syncwarp();
        if (lane == 0) mbar_arrive(empty + s);
      }
      for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
      if (npair > 0) {  // the unit's prep record
        const int pr = i % npair, slot = (i / npair) & 1, r = pr * 2 + slot;
        mbar_wait(rec_full + r, ((i / npair) >> 1) & 1);
        acc += rec[r * 64 + lane];
        __syncwarp();
        if (lane == 0) mbar_arrive(rec_empty + r);
      }
      if (lane == 0) atomicAdd(out + blockIdx.x + (size_t)i * gridDim.x, acc);
    }
    return;
  }
  // prep pairs: pair pr takes this block's units i = pr, pr + npair, ...
  const int pw = warp - 1 - kConsumerWarps, pr = pw >> 1;
  if (pr >= npair) return;
  const int bar_id = 1 + pr;
  int j = 0;
  for (int i = pr; i < n_mine; i += npair, ++j) {
    const size_t u = blockIdx.x + (size_t)i * gridDim.x;
    const float* inu = in + u * kInWords;
    // three dependent round trips, each followed by work_n FMAs and a pair barrier
    float v = inu[(pw & 1) * 32 + lane];
    v = work(v, work_n);
    pair_sync(bar_id);
    const int idx1 = (__float_as_int(v) & 7) * 64 + (pw & 1) * 32 + lane;
    v += inu[512 + (idx1 & 511)];
    v = work(v, work_n);
    pair_sync(bar_id);
    const int idx2 = (__float_as_int(v) & 3) * 128 + lane;
    v += inu[idx2 & 1023];
    v = work(v, work_n);
    const int slot = j & 1, r = pr * 2 + slot;
    if (j >= 2) mbar_wait(rec_empty + r, ((j >> 1) - 1) & 1);
    if ((pw & 1) == 0) rec[r * 64 + lane] = v; else rec[r * 64 + 32 + lane] = v;
    __syncwarp();
    if (lane == 0) mbar_arrive(rec_full + r);
  }
}

// Reference point: the prep chains alone, one 64-thread block a unit (as verify_m2prep_kernel), 16 blocks an SM.
__global__ void __launch_bounds__(64, 16) prep_alone(const float* __restrict__ in, float* out, int work_n) {
  const int pw = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const float* inu = in + (size_t)blockIdx.x * kInWords;
  float v = inu[pw * 32 + lane];
  v = work(v, work_n);
  __syncthreads();
  const int idx1 = (__float_as_int(v) & 7) * 64 + pw * 32 + lane;
  v += inu[512 + (idx1 & 511)];
  v = work(v, work_n);
  __syncthreads();
  const int idx2 = (__float_as_int(v) & 3) * 128 + lane;
  v += inu[idx2 & 1023];
  v = work(v, work_n);
  if (lane == 0) atomicAdd(out + blockIdx.x, v);
}

template <typename F>
static float time_us(F&& f, int reps) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) f();
  CK(cudaDeviceSynchronize());
  std::vector<float> t;
  for (int r = 0; r < reps; ++r) {
    CK(cudaEventRecord(a));
    f();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float ms = 0.f;
    CK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms * 1000.f);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

int main(int argc, char** argv) {
  const int units = argc > 1 ? std::atoi(argv[1]) : 2048;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 30;
  int dev = 0, sms = 0;
  CK(cudaGetDevice(&dev));
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const size_t st_bytes = (size_t)units * 2 * kHalfBytes;
  float4* st;
  float *in, *out;
  CK(cudaMalloc(&st, st_bytes));
  CK(cudaMalloc(&in, (size_t)units * kInWords * 4));
  CK(cudaMalloc(&out, (size_t)units * 4));
  CK(cudaMemset(st, 0x3c, st_bytes));  // 0.0115f-ish floats: nothing is zero
  CK(cudaMemset(in, 0x3c, (size_t)units * kInWords * 4));
  std::printf("%d units x 64 KB = %.1f MB, %d SMs\n", units, st_bytes / 1e6, sms);
  const int work_ns[] = {180, 380};
  for (int wn : work_ns) {
    const float t = time_us([&] { prep_alone<<<units, 64>>>(in, out, wn); }, reps);
    std::printf("prep alone, work %4d                          %7.1f us\n", wn, t);
  }
  auto run_ws = [&](auto kern, int ns, int npair, int wn) {
    const int threads = 32 * (1 + kConsumerWarps + 2 * npair);
    const size_t smem = (size_t)ns * kHalfBytes + (2 * ns + 32) * 8 + 16 * 64 * 4;
    CK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    const float t = time_us([&] { kern<<<sms, threads, smem>>>(st, in, out, units, npair, wn); }, reps);
    std::printf("ws NS %d (%3d KB) prep pairs %d work %4d      %7.1f us  %6.0f GB/s\n", ns, (int)(smem >> 10), npair,
                wn, t, st_bytes / (t * 1e3));
  };
  for (int ns : {4, 6}) {
    for (int npair : {0, 2, 4, 6}) {
      for (int wn : {180, 380}) {
        if (npair == 0 && wn != 180) continue;
        if (ns == 4) run_ws(ws_probe<4>, 4, npair, wn);
        else run_ws(ws_probe<6>, 6, npair, wn);
      }
    }
  }
  CK(cudaDeviceSynchronize());
  return 0;
}
