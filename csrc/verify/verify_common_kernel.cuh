// Device helpers shared by the verify kernels (CUDA headers only, no torch).
//
// Small tensors (x, z, B, C, dt, y, ring_x, ring_B, xBC, conv window, conv weight) are read and written
// through `ld_any` / `st_any` with a runtime dtype: they are staged through shared memory as fp32, so the
// dtype switch costs nothing measurable and keeps the number of template instantiations low. Only the state
// (the one big stream) is typed at compile time (16-byte vector loads).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/cp_async.h"
#include "common/dtype.h"
#include "common/softplus.h"
#include "verify/verify.h"
#include "verify/verify_offsets.cuh"

namespace mamba_kernels {
namespace verify_kernels {

// Dynamic shared memory of a kernel (a macro so that the CPU emulation of these kernels can provide it).
#ifndef MK_VERIFY_DYN_SMEM
#define MK_VERIFY_DYN_SMEM(name) extern __shared__ float4 name[]
#endif

constexpr int kMaxThreads = 256;  // SSM / fused blocks
constexpr int kConvThreads = 512; // standalone conv blocks
constexpr int kQC = 16;           // ring tokens staged per chunk
constexpr int kKC = 4;            // new tokens per dot chunk
constexpr int kMaxK = 32;         // max draft tokens (masks are 32-bit)
constexpr int kMaxWidth = 8;      // max conv width

__device__ __forceinline__ float ld_any(const void* ptr, int64_t i, DType t) {
  if (t == DType::kBFloat16) return __bfloat162float(static_cast<const __nv_bfloat16*>(ptr)[i]);
  if (t == DType::kFloat16) return __half2float(static_cast<const __half*>(ptr)[i]);
  if (t == DType::kFloat64) return static_cast<float>(static_cast<const double*>(ptr)[i]);
  return static_cast<const float*>(ptr)[i];
}

__device__ __forceinline__ void st_any(void* ptr, int64_t i, DType t, float v) {
  if (t == DType::kBFloat16) {
    static_cast<__nv_bfloat16*>(ptr)[i] = __float2bfloat16_rn(v);
  } else if (t == DType::kFloat16) {
    static_cast<__half*>(ptr)[i] = __float2half_rn(v);
  } else if (t == DType::kFloat64) {
    static_cast<double*>(ptr)[i] = static_cast<double>(v);
  } else {
    static_cast<float*>(ptr)[i] = v;
  }
}

__device__ __forceinline__ float silu_f(float v) { return v / (1.f + __expf(-v)); }

__host__ __device__ __forceinline__ unsigned low_mask(int kp) {
  return kp >= 32 ? 0xffffffffu : (kp <= 0 ? 0u : ((1u << kp) - 1u));
}

// Lanes sharing a state row: N values in segments of V, at most SPL segments per lane (a power of two <= 32).
__host__ __device__ __forceinline__ int lanes_per_row(int64_t N, int V, int SPL) {
  const int64_t NS = (N + V - 1) / V;
  const int64_t need = (NS + SPL - 1) / SPL;
  int L = 1;
  while (L < need && L < 32) L <<= 1;
  return L;
}

__host__ __device__ __forceinline__ int up4(int64_t x) { return static_cast<int>((x + 3) & ~int64_t(3)); }

// PP: VerifyStepParams, or a kernel's compact parameter struct with dt_softplus, dt_min, dt_max.
template <typename PP>
__device__ __forceinline__ float process_dt(float v, const PP& p) {
  if (p.dt_softplus) v = softplus_f(v);  // x above 20 returned as is (torch's threshold), see common/softplus.h
  const float lo = static_cast<float>(p.dt_min), hi = static_cast<float>(p.dt_max);
  v = v < lo ? lo : v;  // NaN stays NaN, as torch.clamp
  v = v > hi ? hi : v;
  return v;
}

// Zero y[b, :, u, :] for u in [u0, u0 + nu) (padding rows).
__device__ __forceinline__ void zero_y(const VerifyStepParams& p, int64_t b, int64_t u0, int64_t nu) {
  const int64_t total = p.k * nu * p.P;
  for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
    const int64_t pp = i % p.P, r = i / p.P, uu = r % nu, t = r / nu;
    st_any(p.y, b * p.y_b + t * p.y_k + (u0 + uu) * p.y_h + pp, p.in_dtype, 0.f);
  }
}

// ------------------------------------------------------------------------------------------------------
// State element type: V elements = 16 bytes, converted to / from fp32.
// ------------------------------------------------------------------------------------------------------
template <typename T>
struct SV;

template <>
struct SV<float> {
  static constexpr int V = 4;
  __device__ __forceinline__ static float to_f(float v) { return v; }
  __device__ __forceinline__ static float from_f(float v) { return v; }
  __device__ __forceinline__ static void unpack(const uint4& r, float (&o)[V]) {
    o[0] = __uint_as_float(r.x);
    o[1] = __uint_as_float(r.y);
    o[2] = __uint_as_float(r.z);
    o[3] = __uint_as_float(r.w);
  }
  __device__ __forceinline__ static uint4 pack(const float (&o)[V]) {
    return make_uint4(__float_as_uint(o[0]), __float_as_uint(o[1]), __float_as_uint(o[2]), __float_as_uint(o[3]));
  }
  // elements [0, 2) of an 8-byte aligned pointer (shared memory)
  __device__ __forceinline__ static void load2(const float* ptr, float (&o)[2]) {
    const float2 v = *reinterpret_cast<const float2*>(ptr);
    o[0] = v.x;
    o[1] = v.y;
  }
};

// 16-bit element types: 8 values in 16 bytes, converted pairwise (Pair: __half2 / __nv_bfloat162) with the
// packed conversion instructions.
__device__ __forceinline__ float2 pair_to_float2(__half2 h) { return __half22float2(h); }
__device__ __forceinline__ float2 pair_to_float2(__nv_bfloat162 h) { return __bfloat1622float2(h); }
__device__ __forceinline__ void float2_to_pair(float a, float b, __half2& h) { h = __floats2half2_rn(a, b); }
__device__ __forceinline__ void float2_to_pair(float a, float b, __nv_bfloat162& h) { h = __floats2bfloat162_rn(a, b); }

template <typename E, typename Pair>
struct SV16 {
  static constexpr int V = 8;
  __device__ __forceinline__ static float to_f(E v) { return static_cast<float>(v); }
  __device__ __forceinline__ static E from_f(float v) { return E(v); }  // round to nearest even (both types)
  __device__ __forceinline__ static float2 up(unsigned w) {
    Pair h;
    *reinterpret_cast<unsigned*>(&h) = w;
    return pair_to_float2(h);
  }
  __device__ __forceinline__ static unsigned down(float a, float b) {
    Pair h;
    float2_to_pair(a, b, h);
    return *reinterpret_cast<unsigned*>(&h);
  }
  __device__ __forceinline__ static void unpack(const uint4& r, float (&o)[V]) {
    const unsigned w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = up(w[i]);
      o[2 * i] = f.x;
      o[2 * i + 1] = f.y;
    }
  }
  __device__ __forceinline__ static uint4 pack(const float (&o)[V]) {
    return make_uint4(down(o[0], o[1]), down(o[2], o[3]), down(o[4], o[5]), down(o[6], o[7]));
  }
  // elements [0, 2) of a 4-byte aligned pointer (shared memory): one packed conversion
  __device__ __forceinline__ static void load2(const E* ptr, float (&o)[2]) {
    const float2 f = up(*reinterpret_cast<const unsigned*>(ptr));
    o[0] = f.x;
    o[1] = f.y;
  }
};

template <>
struct SV<__half> : SV16<__half, __half2> {};

template <>
struct SV<__nv_bfloat16> : SV16<__nv_bfloat16, __nv_bfloat162> {};

// One segment = V consecutive elements [n0, n0 + V) of a state row; elements >= N read as 0, never touched.
template <typename T>
__device__ __forceinline__ void load_seg(const T* row, int64_t n0, int64_t N, bool vec, float (&o)[SV<T>::V]) {
  constexpr int V = SV<T>::V;
  if (vec && n0 + V <= N) {
    SV<T>::unpack(__ldcs(reinterpret_cast<const uint4*>(row + n0)), o);
  } else {
#pragma unroll
    for (int v = 0; v < V; ++v) o[v] = (n0 + v < N) ? SV<T>::to_f(row[n0 + v]) : 0.f;
  }
}

template <typename T>
__device__ __forceinline__ void store_seg(T* row, int64_t n0, int64_t N, bool vec, const float (&o)[SV<T>::V]) {
  constexpr int V = SV<T>::V;
  if (vec && n0 + V <= N) {
    __stcs(reinterpret_cast<uint4*>(row + n0), SV<T>::pack(o));
  } else {
#pragma unroll
    for (int v = 0; v < V; ++v) {
      if (n0 + v < N) row[n0 + v] = SV<T>::from_f(o[v]);
    }
  }
}

// V fp32 values from 16-byte aligned shared memory.
template <int V>
__device__ __forceinline__ void lds_vec(const float* ptr, float (&o)[V]) {
#pragma unroll
  for (int i = 0; i < V; i += 4) {
    const float4 f = *reinterpret_cast<const float4*>(ptr + i);
    o[i] = f.x;
    o[i + 1] = f.y;
    o[i + 2] = f.z;
    o[i + 3] = f.w;
  }
}

// ------------------------------------------------------------------------------------------------------
// 16-byte staging of small row tensors (runtime dtype) into shared memory as fp32.
// RowStage: `nrows` rows of `len` elements, row r at element offset off(r) of `src`. load() issues this thread's
// first NV 16-byte loads into registers and returns at once (nothing waits on them), so that several tensors'
// loads (and the state stream) are in flight together; store(st) converts them and calls st(row, col, value),
// then does any remaining vectors (load-then-store), or the whole scalar path when `aligned` (every row offset a
// multiple of 8 elements) or the base / length does not allow 16-byte loads.
// ------------------------------------------------------------------------------------------------------
__device__ __forceinline__ void unpack16(const uint4& r, DType t, float (&o)[8]) {
  if (t == DType::kFloat32) {
    o[0] = __uint_as_float(r.x);
    o[1] = __uint_as_float(r.y);
    o[2] = __uint_as_float(r.z);
    o[3] = __uint_as_float(r.w);
    o[4] = o[5] = o[6] = o[7] = 0.f;
  } else if (t == DType::kBFloat16) {
    SV<__nv_bfloat16>::unpack(r, o);
  } else {
    SV<__half>::unpack(r, o);
  }
}

// Thread-block cluster barrier (sm_90), split: arrive (release: this thread's earlier memory accesses are
// ordered before the other blocks' accesses after their wait) and wait (acquire). Every thread of every block
// of the cluster arrives once and then waits once. Called uniformly by whole warps (.aligned). The launcher clusters
// only on sm_90. The CPU emulation runs a cluster's blocks one after another, rank 0 last, and makes the wait a
// block barrier (what the cluster barrier guarantees among one block's threads).
__device__ __forceinline__ void cluster_arrive() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void cluster_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#elif defined(MK_EMU_CLUSTER_WAIT)
  MK_EMU_CLUSTER_WAIT();
#endif
}

// Rows [0, nrows) of `len` elements of dtype t (row r at element offset off(r) of src) -> fp32 dst[r * len + col],
// in two steps by the same thread: issue() starts the copies (16-byte cp.async into the raw staging area when every
// row is 16-byte aligned: nothing is held in registers, so many tensors and the state stream are in flight at
// once; otherwise plain loads straight into dst), finish(f) (after cp_async_wait_all) converts this thread's own
// chunks: dst = f(value). A __syncthreads() must follow before other threads read dst.
template <typename Off>
struct AsyncRows {
  const char* src;
  DType t;
  int nrows, len;
  Off off;
  bool vec;
  __device__ __forceinline__ AsyncRows(const void* src_, DType t_, int nrows_, int len_, Off off_, bool aligned)
      : src(static_cast<const char*>(src_)), t(t_), nrows(nrows_), len(len_), off(off_) {
    const int ve = t == DType::kFloat32 ? 4 : 8;
    vec = aligned && t != DType::kFloat64 && len % ve == 0 && reinterpret_cast<uintptr_t>(src_) % 16 == 0;
  }
  __device__ __forceinline__ void issue(uint4* raw, float* dst) const {
    const int es = t == DType::kFloat32 ? 4 : 2, ve = 16 / es;
    if (vec) {
      const int nvr = len / ve;
      for (int i = threadIdx.x; i < nrows * nvr; i += blockDim.x) {
        const int r = i / nvr, cv = i - r * nvr;
        cp_async16(raw + i, src + (off(r) + static_cast<int64_t>(cv) * ve) * es);
      }
    } else {
      for (int i = threadIdx.x; i < nrows * len; i += blockDim.x) {
        const int r = i / len, col = i - r * len;
        dst[i] = ld_any(src, off(r) + col, t);
      }
    }
  }
  template <typename F>
  __device__ __forceinline__ void finish(const uint4* raw, float* dst, F&& f) const {
    if (vec) {
      const int ve = t == DType::kFloat32 ? 4 : 8, nvr = len / ve;
      for (int i = threadIdx.x; i < nrows * nvr; i += blockDim.x) {
        float o[8];
        unpack16(raw[i], t, o);
        float* d = dst + i * ve;  // rows are whole chunks: chunk i starts at element i * ve of dst
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          if (e < ve) d[e] = f(o[e]);
        }
      }
    } else {  // plain loads went straight to dst; apply f in place (the rare unaligned path)
      for (int i = threadIdx.x; i < nrows * len; i += blockDim.x) dst[i] = f(dst[i]);
    }
  }
};

template <typename Off>
__device__ __forceinline__ AsyncRows<Off> async_rows(const void* src, DType t, int nrows, int len, Off off,
                                                     bool aligned) {
  return AsyncRows<Off>(src, t, nrows, len, off, aligned);
}

template <int NV, typename Off>
struct RowStage {
  const char* src;
  DType t;
  int nrows, len, ve, es, nvr, total;
  bool vec;
  Off off;
  uint4 r[NV];
  __device__ __forceinline__ RowStage(const void* src_, DType t_, int nrows_, int len_, Off off_, bool aligned)
      : src(static_cast<const char*>(src_)), t(t_), nrows(nrows_), len(len_), off(off_) {
    es = t == DType::kFloat32 ? 4 : 2;
    ve = 16 / es;
    vec = aligned && t != DType::kFloat64 && (len % ve == 0) && (reinterpret_cast<uintptr_t>(src_) % 16 == 0);
    nvr = vec ? len / ve : 1;
    total = vec ? nrows * nvr : 0;
  }
  __device__ __forceinline__ uint4 ldv(int i) const {
    const int row = i / nvr, cv = i - row * nvr;
    return *reinterpret_cast<const uint4*>(src + (off(row) + static_cast<int64_t>(cv) * ve) * es);
  }
  __device__ __forceinline__ void load() {
#pragma unroll
    for (int j = 0; j < NV; ++j) {
      const int i = threadIdx.x + j * blockDim.x;
      if (i < total) r[j] = ldv(i);
    }
  }
  template <typename St>
  __device__ __forceinline__ void put(int i, const uint4& v, St& st) const {
    const int row = i / nvr, c0 = (i - row * nvr) * ve;
    float o[8];
    unpack16(v, t, o);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      if (e < ve) st(row, c0 + e, o[e]);
    }
  }
  template <typename St>
  __device__ __forceinline__ void store(St&& st) {
    const int nthr = blockDim.x;
#pragma unroll
    for (int j = 0; j < NV; ++j) {
      const int i = threadIdx.x + j * nthr;
      if (i < total) put(i, r[j], st);
    }
    for (int i = threadIdx.x + NV * nthr; i < total; i += nthr) put(i, ldv(i), st);
    if (!vec) {
      for (int i = threadIdx.x; i < nrows * len; i += nthr) {
        const int row = i / len, col = i - row * len;
        st(row, col, ld_any(src, off(row) + col, t));
      }
    }
  }
};

template <int NV, typename Off>
__device__ __forceinline__ RowStage<NV, Off> row_stage(const void* src, DType t, int nrows, int len, Off off,
                                                       bool aligned) {
  return RowStage<NV, Off>(src, t, nrows, len, off, aligned);
}

__host__ __device__ __forceinline__ bool al8(int64_t a, int64_t b, int64_t c) {
  return a % 8 == 0 && b % 8 == 0 && c % 8 == 0;
}

// ------------------------------------------------------------------------------------------------------
// Per-(slot, unit) control: committed path, new-node masks, ring positions to replay, conv taps.
// ------------------------------------------------------------------------------------------------------
enum CtxField { kCtxC = 0, kCtxKp, kCtxPath, kCtxC1, kCtxFold, kCtxBase, kCtxWords = 8 };

// Block-cooperative (all threads call it; contains two __syncthreads()).
//   meta_row: &meta[s, u, 0] (SSM: [c, kp, masks..]) or &meta[s, 0] (conv: [kp, masks..]), element stride meta_i.
//   R > 0: SSM (ring of R), else conv (no ring, no fold).
// Fills ctx[kCtx*], spar[t] / smask[t] (t < k), sQpos[i] (i < c1: ring positions replayed in order) and,
// when width > 0, staps[t * 8 + q]: the source of conv tap q (distance q from the newest) of node t: a node index
// >= 0 (raw input of the new token), or -1 - j for entry j (oldest first) of the committed window.
// Every meta / parents value is sanitised so that no later index can leave its tensor.
__device__ __forceinline__ void setup_ctx(const int32_t* meta_row, int64_t meta_i, int64_t Kmax, int64_t R,
                                          const int32_t* accepted_ptr, bool is_node, const int32_t* par_row,
                                          int64_t par_k, int k, bool fold_all, int width, int* ctx, int* spar,
                                          int* smask, int* sQpos, int* staps) {
  const int tid = threadIdx.x, nthr = blockDim.x;
  const bool ssm = R > 0;
  if (tid == 0) {
    const int64_t off = ssm ? 2 : 1;
    int c = ssm ? meta_row[0] : 0;
    int kp = ssm ? meta_row[meta_i] : meta_row[0];
    const int acc = *accepted_ptr;
    c = c < 0 ? 0 : c;
    if (ssm && c > R) c = (int)R;
    int64_t kp_max = Kmax < kMaxK ? Kmax : kMaxK;
    if (ssm && kp_max > R - c) kp_max = R - c;
    kp = kp < 0 ? 0 : (kp > kp_max ? (int)kp_max : kp);
    int a = is_node ? acc : acc - 1;
    if (a > kp - 1) a = kp - 1;
    const unsigned path = a >= 0 ? (static_cast<unsigned>(meta_row[(off + a) * meta_i]) & low_mask(kp)) : 0u;
    const int c1 = c + __popc(path);
    const bool fold = ssm && (fold_all || (int64_t)c1 + k > R);
    ctx[kCtxC] = c;
    ctx[kCtxKp] = kp;
    ctx[kCtxPath] = static_cast<int>(path);
    ctx[kCtxC1] = c1;
    ctx[kCtxFold] = fold ? 1 : 0;
    ctx[kCtxBase] = fold ? 0 : c1;
  }
  if (tid < k) {
    int pr = par_row != nullptr ? par_row[tid * par_k] : tid - 1;
    if (pr < 0 || pr >= tid) pr = -1;
    spar[tid] = pr;
  }
  __syncthreads();
  if (tid < k) {
    unsigned m = 1u << tid;
    for (int q = spar[tid]; q >= 0; q = spar[q]) m |= 1u << q;
    smask[tid] = static_cast<int>(m);
    if (width > 0) {
      int node = tid, d = 0;
      for (int q = 0; q < kMaxWidth; ++q) {
        int src = 0;
        if (q < width) {
          if (node >= 0) {
            src = node;
            node = spar[node];
            ++d;
          } else {
            src = -1 - (width - 2 - q + d);  // committed entry (w - 2 - (q - d)), in [0, w - 1)
          }
        }
        staps[tid * kMaxWidth + q] = src;
      }
    }
  }
  if (ssm) {
    const int c = ctx[kCtxC], c1 = ctx[kCtxC1];
    const unsigned path = static_cast<unsigned>(ctx[kCtxPath]);
    for (int i = tid; i < c1; i += nthr) {
      int pos = i;
      if (i >= c) {
        unsigned pm = path;
        for (int r = 0; r < i - c; ++r) pm &= pm - 1u;
        pos = c + __ffs(pm) - 1;
      }
      sQpos[i] = pos;
    }
  }
  __syncthreads();
}

// SSM control with its global reads issued early (ctx_preload: registers, nothing waits on them), so that they
// overlap the state stream and the new-token loads; setup_ctx_ssm then does setup_ctx's work (ssm, width 0) from
// them with no dependent global read. smeta: shared scratch of 2 + kMaxK ints.
struct CtxPre {
  int mv = 0, acc = 0, par = -1;
};

__device__ __forceinline__ CtxPre ctx_preload(const int32_t* meta_row, int64_t meta_i, int64_t Kmax,
                                              const int32_t* accepted_ptr, const int32_t* par_row, int64_t par_k,
                                              int k) {
  CtxPre c;
  const int tid = threadIdx.x;
  const int nm = 2 + static_cast<int>(Kmax < kMaxK ? Kmax : kMaxK);
  if (tid < nm) c.mv = meta_row[tid * meta_i];
  c.acc = *accepted_ptr;
  if (tid < k) c.par = par_row != nullptr ? par_row[tid * par_k] : tid - 1;
  return c;
}

__device__ __forceinline__ void setup_ctx_ssm(const CtxPre& pre, const int32_t* meta_row, int64_t meta_i,
                                              int64_t Kmax, int64_t R, bool is_node, int k, bool fold_all, int* ctx,
                                              int* spar, int* smask, int* sQpos, int* smeta) {
  const int tid = threadIdx.x, nthr = blockDim.x;
  const int nm = 2 + static_cast<int>(Kmax < kMaxK ? Kmax : kMaxK);
  if (tid < nm) smeta[tid] = pre.mv;
  for (int i = tid + nthr; i < nm; i += nthr) smeta[i] = meta_row[i * meta_i];
  if (tid < k) {
    int pr = pre.par;
    if (pr < 0 || pr >= tid) pr = -1;
    spar[tid] = pr;
  }
  __syncthreads();
  // Every thread derives the control words (same values as setup_ctx).
  int c = smeta[0];
  int kp = smeta[1];
  c = c < 0 ? 0 : c;
  if (c > R) c = static_cast<int>(R);
  int64_t kp_max = Kmax < kMaxK ? Kmax : kMaxK;
  if (kp_max > R - c) kp_max = R - c;
  kp = kp < 0 ? 0 : (kp > kp_max ? static_cast<int>(kp_max) : kp);
  int a = is_node ? pre.acc : pre.acc - 1;
  if (a > kp - 1) a = kp - 1;
  const unsigned path = a >= 0 ? (static_cast<unsigned>(smeta[2 + a]) & low_mask(kp)) : 0u;
  const int c1 = c + __popc(path);
  const bool fold = fold_all || static_cast<int64_t>(c1) + k > R;
  if (tid == 0) {
    ctx[kCtxC] = c;
    ctx[kCtxKp] = kp;
    ctx[kCtxPath] = static_cast<int>(path);
    ctx[kCtxC1] = c1;
    ctx[kCtxFold] = fold ? 1 : 0;
    ctx[kCtxBase] = fold ? 0 : c1;
  }
  if (tid < k) {
    unsigned m = 1u << tid;
    for (int q = spar[tid]; q >= 0; q = spar[q]) m |= 1u << q;
    smask[tid] = static_cast<int>(m);
  }
  for (int i = tid; i < c1; i += nthr) {
    int pos = i;
    if (i >= c) {
      unsigned pm = path;
      for (int r = 0; r < i - c; ++r) pm &= pm - 1u;
      pos = c + __ffs(pm) - 1;
    }
    sQpos[i] = pos;
  }
  __syncthreads();
}

// ------------------------------------------------------------------------------------------------------
// Conv with rollback for one channel (owned by the calling thread: it reads and rewrites its window column).
//   window element (s, i, ch) = win[win0 + i * win_i + ch * win_c]; raw input (b, t, ch) = xr[x0 + t * x_k + ch * x_c].
// Commits the accepted path (bits of `path`, pending raw inputs at window rows w-1+node) into the committed
// w-1 entries, computes act(sum_i weight[i] * seq[-w + i] + bias) for the k new nodes (taps from setup_ctx) and
// calls out(t, value); then rewrites the column: [committed | the k new raw inputs].
// ------------------------------------------------------------------------------------------------------
template <typename OutFn>
__device__ __forceinline__ void conv_channel(void* win, int64_t win0, int64_t win_i, int64_t win_c, const void* xr,
                                             int64_t x0, int64_t x_k, int64_t x_c, DType in_dt, const void* weight, int64_t w_c,
                                             int64_t w_w, DType w_dt, const void* bias, int64_t b_c, DType b_dt,
                                             int64_t ch, int width, int k, int64_t Kmax, unsigned path,
                                             const int* staps, bool silu, OutFn&& out) {
  float cw[kMaxWidth - 1];
  const int64_t cbase = win0 + ch * win_c;
#pragma unroll
  for (int i = 0; i < kMaxWidth - 1; ++i) cw[i] = (i < width - 1) ? ld_any(win, i * win_i + cbase, in_dt) : 0.f;
  for (unsigned pm = path; pm != 0u; pm &= pm - 1u) {
    const int q = __ffs(pm) - 1;
    const float v = ld_any(win, (width - 1 + q) * win_i + cbase, in_dt);
#pragma unroll
    for (int i = 0; i < kMaxWidth - 2; ++i) {
      if (i < width - 2) cw[i] = cw[i + 1];
    }
#pragma unroll
    for (int i = 0; i < kMaxWidth - 1; ++i) {
      if (i == width - 2) cw[i] = v;
    }
  }
  float wt[kMaxWidth];
#pragma unroll
  for (int i = 0; i < kMaxWidth; ++i) wt[i] = (i < width) ? ld_any(weight, ch * w_c + i * w_w, w_dt) : 0.f;
  const float bv = bias != nullptr ? ld_any(bias, ch * b_c, b_dt) : 0.f;
  const int64_t xbase = x0 + ch * x_c;
  for (int t = 0; t < k; ++t) {
    float o = 0.f;
#pragma unroll
    for (int i = 0; i < kMaxWidth; ++i) {
      if (i < width) {
        const int src = staps[t * kMaxWidth + (width - 1 - i)];
        float v;
        if (src >= 0) {
          v = ld_any(xr, src * x_k + xbase, in_dt);
        } else {
          const int j = -1 - src;
          v = 0.f;
#pragma unroll
          for (int jj = 0; jj < kMaxWidth - 1; ++jj) v = (jj == j) ? cw[jj] : v;
        }
        o = fmaf(wt[i], v, o);
      }
    }
    o += bv;
    if (silu) o = silu_f(o);
    out(t, o);
  }
#pragma unroll
  for (int i = 0; i < kMaxWidth - 1; ++i) {
    if (i < width - 1) st_any(win, i * win_i + cbase, in_dt, cw[i]);
  }
  for (int t = 0; t < k && t < Kmax; ++t) {
    st_any(win, (width - 1 + t) * win_i + cbase, in_dt, ld_any(xr, t * x_k + xbase, in_dt));
  }
}

}  // namespace verify_kernels
}  // namespace mamba_kernels
