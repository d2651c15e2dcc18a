// Device helpers shared by the conv1d CUDA kernels: conversions, 16-byte vector loads/stores, SiLU,
// sequence lookup for varlen. CUDA headers only.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "common/cp_async.h"
#include "common/dtype.h"
#include "common/mufu.h"
#include "conv1d/conv1d.h"

// ---- Performance knobs (the one place they are documented). Each is a preprocessor macro with the production
// default, so that scripts/lab/conv1d_lab.cu can build variants (-D...) and compare them in one GPU batch; the
// CPU emulation takes the same flags (CONV1D_EMU_DEFINES="-DX=1 ..." python csrc/conv1d/emu/run.py).
//   MK_CONV1D_FWD_CF_IMPL        channel-first forward: 0 persistent pipelined warps, 1 flat grid (default;
//                                conv1d_fwd_flat_kernel.cuh: one tile per warp, all loads issued up front)
//   MK_CONV1D_FWD_CF_MIN_BLOCKS  persistent cf forward, width-4 bucket: min blocks/SM (6 = <= 80 registers; 5 as
//                                before 176dc98)
//   MK_CONV1D_FWD_CF_GROUP       persistent cf forward: chunks per load group for 16-bit types (4; fp32 half)
//   MK_CONV1D_FWD_CF_PF          persistent cf forward L2 prefetch bits: 1 group g+2 (b328ef7), 2 next piece
//                                (dacf092); default 3
//   MK_CONV1D_FWD_CF_ROT         cf halo: 1 one rotation shuffle per value (e230a73, default), 0 shfl_up + bcast
//   MK_CONV1D_FLAT_G             flat cf forward: 16-byte chunks per lane, all loaded up front (8; fp32 half)
//   MK_CONV1D_FLAT_MIN_BLOCKS    flat cf forward: min blocks/SM (1: no register cap)
//   MK_CONV1D_FWD_CL_PD          cl forward: L2 prefetch distance in groups (0 = off, default)
//   MK_CONV1D_FWD_CL_MIN_BLOCKS  cl forward, width-4 bucket: min blocks/SM (4)
//   MK_CONV1D_CL_MAX_TL          cl forward / backward: longest tile per warp in steps (1024)
//   MK_CONV1D_BWD_CF_MIN_BLOCKS  cf backward, width-4 bucket: min blocks/SM (4)
//   MK_CONV1D_BWD_CF_GROUP       cf backward: chunks of x and of dy per load group, 16-bit types (2; fp32 half)
//   MK_CONV1D_BWD_CF_PF          cf backward L2 prefetch bits: 1 group g-2, 2 next segment; default 3
//   MK_CONV1D_BWD_CF_PERSISTENT  cf backward: 1 persistent grid, 0 one segment per warp (big grid, default)
//   MK_CONV1D_BWD_CF_IMPL        channel-first backward: 0 segments of pipelined warps, 1 flat grid (default)
//                                (conv1d_bwd_flat_kernel.cuh: one tile per warp, all x / dy loads up front;
//                                falls back to 0 when its grid would exceed 2^31 blocks)
//   MK_CONV1D_BWD_FLAT_G         flat cf backward: 16-byte chunks of x and of dy per lane (4; fp32 half)
//   MK_CONV1D_BWD_FLAT_MIN_BLOCKS flat cf backward, width-4 bucket: min blocks/SM (6: <= 85 registers)
//   MK_CONV1D_BWD_CL_MIN_BLOCKS  cl backward, width-4 bucket: min blocks/SM (4)
//   MK_CONV1D_BWD_CL_GROUP       cl backward: steps per load group, 16-bit types, width-4 bucket (8)
//   MK_CONV1D_UPD_THREADS        decode update: threads per block (256)
//   MK_CONV1D_UPD_CPT            decode update: channels per thread (2); a block covers THREADS * CPT channels
//   MK_CONV1D_UPD_VEC            decode update: 1 the vectorised one-token path where it applies (default), 0 never
//   MK_CONV1D_BF16_WORDS         bf16 tile values converted from 32-bit words (0; lab knob, not yet measured)
//   MK_CONV1D_LAB_MIN_INST       speed-lab builds only (0): instantiate the tiled fwd / bwd kernels for bf16 and
//                                the width-4 bucket alone (6x faster builds; other inputs launch nothing)
// Defaults from the lab runs on the H200 (2026-11-29, bf16 w4 silu, b4 d6144 l4096; bench/results/lab/README.md):
// flat cf forward G 8 0.106 ms (95% of copy bandwidth; persistent 0.156), cl forward prefetch off and 4 blocks/SM
// 0.114 ms (prefetch 3: 0.148; a flat cl grid measured 0.140), flat cf backward 6 blocks/SM 0.199 ms (1: 0.208;
// segments 0.262), update b64 vectorised 6.0 us back-to-back (scalar 256 x 2: 8.0).
#ifndef MK_CONV1D_FWD_CF_IMPL
#define MK_CONV1D_FWD_CF_IMPL 1
#endif
#ifndef MK_CONV1D_FWD_CF_MIN_BLOCKS
#define MK_CONV1D_FWD_CF_MIN_BLOCKS 6
#endif
#ifndef MK_CONV1D_FWD_CF_GROUP
#define MK_CONV1D_FWD_CF_GROUP 4
#endif
#ifndef MK_CONV1D_FWD_CF_PF
#define MK_CONV1D_FWD_CF_PF 3
#endif
#ifndef MK_CONV1D_FWD_CF_ROT
#define MK_CONV1D_FWD_CF_ROT 1
#endif
#ifndef MK_CONV1D_FLAT_G
#define MK_CONV1D_FLAT_G 8
#endif
#ifndef MK_CONV1D_FLAT_MIN_BLOCKS
#define MK_CONV1D_FLAT_MIN_BLOCKS 1
#endif
#ifndef MK_CONV1D_FWD_CL_PD
#define MK_CONV1D_FWD_CL_PD 0
#endif
#ifndef MK_CONV1D_FWD_CL_MIN_BLOCKS
#define MK_CONV1D_FWD_CL_MIN_BLOCKS 4
#endif
#ifndef MK_CONV1D_CL_MAX_TL
#define MK_CONV1D_CL_MAX_TL 1024
#endif
#ifndef MK_CONV1D_BWD_CF_MIN_BLOCKS
#define MK_CONV1D_BWD_CF_MIN_BLOCKS 4
#endif
#ifndef MK_CONV1D_BWD_CF_GROUP
#define MK_CONV1D_BWD_CF_GROUP 2
#endif
#ifndef MK_CONV1D_BWD_CF_PF
#define MK_CONV1D_BWD_CF_PF 3
#endif
#ifndef MK_CONV1D_BWD_CF_PERSISTENT
#define MK_CONV1D_BWD_CF_PERSISTENT 0
#endif
#ifndef MK_CONV1D_BWD_CF_IMPL
#define MK_CONV1D_BWD_CF_IMPL 1
#endif
#ifndef MK_CONV1D_BWD_FLAT_G
#define MK_CONV1D_BWD_FLAT_G 4
#endif
#ifndef MK_CONV1D_BWD_FLAT_MIN_BLOCKS
#define MK_CONV1D_BWD_FLAT_MIN_BLOCKS 6
#endif
#ifndef MK_CONV1D_BWD_CL_MIN_BLOCKS
#define MK_CONV1D_BWD_CL_MIN_BLOCKS 4
#endif
#ifndef MK_CONV1D_BWD_CL_GROUP
#define MK_CONV1D_BWD_CL_GROUP 8
#endif
#ifndef MK_CONV1D_UPD_THREADS
#define MK_CONV1D_UPD_THREADS 256
#endif
#ifndef MK_CONV1D_UPD_CPT
#define MK_CONV1D_UPD_CPT 2
#endif
#ifndef MK_CONV1D_UPD_VEC
#define MK_CONV1D_UPD_VEC 1
#endif
#ifndef MK_CONV1D_LAB_MIN_INST
#define MK_CONV1D_LAB_MIN_INST 0
#endif
#ifndef MK_CONV1D_BF16_WORDS
#define MK_CONV1D_BF16_WORDS 0
#endif

namespace mamba_kernels {
namespace conv1d {

constexpr unsigned kFullMask = 0xffffffffu;

template <typename T> __device__ __forceinline__ float to_f(T v);
template <> __device__ __forceinline__ float to_f<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Weight / bias of any of the three dtypes (a few per thread: a runtime dtype costs nothing, but see below).
// Straight-line code: two 16-bit loads (the high half of an fp32 value; for 16-bit types the same half again),
// then selects. A switch of 16- and 32-bit loads compiles to predicated loads into one register, and every later
// one (even predicated off) waits for an earlier one that was issued (write after write); a branch per dtype
// puts the conversion right after the load. Either way the warp stalls until each weight arrives, behind the x
// loads in flight: that cost the channel-first backward 35 us at b4 d6144 l4096 with bf16 weights (228 vs 193 us
// with fp32 weights) and the forward ~5 us.
__device__ __forceinline__ float load_any(const void* ptr, DType dt, int64_t i) {
  const bool f32 = dt == DType::kFloat32;
  const unsigned short* h = static_cast<const unsigned short*>(ptr) + (f32 ? 2 * i : i);
  const uint32_t lo = __ldg(h);             // fp32: the low half (little-endian)
  const uint32_t hi = __ldg(f32 ? h + 1 : h);
  const uint32_t bits = f32 ? (lo | (hi << 16)) : (lo << 16);
  const float f16 = __half2float(__ushort_as_half(static_cast<unsigned short>(lo)));
  return dt == DType::kFloat16 ? f16 : __uint_as_float(bits);
}

// Raw storage of N elements of T moved as 4-, 8- or 16-byte words.
template <int kBytes> struct VecWord;
template <> struct VecWord<4> { using type = uint32_t; };
template <> struct VecWord<8> { using type = uint2; };
template <> struct VecWord<16> { using type = uint4; };

// Two floats packed into one 32-bit word of T (round to nearest even); fp32 has one float per word.
template <typename T> __device__ __forceinline__ uint32_t pack2(float a, float b);
template <> __device__ __forceinline__ uint32_t pack2<__half>(float a, float b) {
  const __half2 h = __floats2half2_rn(a, b);
  return *reinterpret_cast<const uint32_t*>(&h);
}
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float a, float b) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// One 16-, 8- or 4-byte store. Inline PTX on the device: left to itself the compiler re-derives the address
// in strength-reduced loops, loses the 16-byte alignment and splits the store into four 4-byte ones. No
// "memory" clobber: the kernels never read what they store (outputs do not alias inputs), and a clobber would
// cost the read-only (.nc) loads.
template <int kWordBytes> struct WordStore;
template <> struct WordStore<16> {
  static __device__ __forceinline__ void st(void* p, const uint32_t* u) {
#if defined(__CUDA_ARCH__)
    asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(u[0]), "r"(u[1]), "r"(u[2]), "r"(u[3]));
#else
    *static_cast<uint4*>(p) = make_uint4(u[0], u[1], u[2], u[3]);
#endif
  }
};
template <> struct WordStore<8> {
  static __device__ __forceinline__ void st(void* p, const uint32_t* u) {
#if defined(__CUDA_ARCH__)
    asm volatile("st.global.v2.b32 [%0], {%1, %2};" ::"l"(p), "r"(u[0]), "r"(u[1]));
#else
    *static_cast<uint2*>(p) = make_uint2(u[0], u[1]);
#endif
  }
};
template <> struct WordStore<4> {
  static __device__ __forceinline__ void st(void* p, const uint32_t* u) { *static_cast<uint32_t*>(p) = u[0]; }
};

template <typename T, int N>
struct Vec {
  static constexpr int kBytes = N * static_cast<int>(sizeof(T));
  static constexpr int kWordBytes = kBytes >= 16 ? 16 : kBytes;
  static constexpr int kWords = kBytes / kWordBytes;
  static_assert(kBytes == 4 || kBytes == 8 || kBytes % 16 == 0, "vector of 4, 8 or 16k bytes");
  using Word = typename VecWord<kWordBytes>::type;

  // p must be kWordBytes-aligned (checked on the host: base pointer and strides). Inputs are read-only for the
  // whole kernel, so the loads go through the non-coherent path (__ldg, ld.global.nc).
  static __device__ __forceinline__ void load(const T* __restrict__ p, float (&out)[N]) {
    Word w[kWords];
#pragma unroll
    for (int i = 0; i < kWords; ++i) w[i] = __ldg(reinterpret_cast<const Word*>(p) + i);
    const T* e = reinterpret_cast<const T*>(w);
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = to_f(e[i]);
  }
  // Packed explicitly into 32-bit words, so that the compiler emits one 16-byte (or 8-byte) store.
  static __device__ __forceinline__ void store(T* __restrict__ p, const float (&in)[N]) {
    constexpr int kU32 = kBytes / 4;
    uint32_t u[kU32];
    if constexpr (sizeof(T) == 4) {
#pragma unroll
      for (int i = 0; i < kU32; ++i) u[i] = __float_as_uint(in[i]);
    } else {
#pragma unroll
      for (int i = 0; i < kU32; ++i) u[i] = pack2<T>(in[2 * i], in[2 * i + 1]);
    }
#pragma unroll
    for (int i = 0; i < kWords; ++i) WordStore<kWordBytes>::st(reinterpret_cast<Word*>(p) + i, u + i * (kWordBytes / 4));
  }
};

// N consecutive elements starting at p[0] (stride `stride`), of which the first n_valid exist; the rest read
// as zero. Vectorised when `vec` (aligned, unit stride) and all N exist.
template <typename T, int N>
__device__ __forceinline__ void load_n(const T* __restrict__ p, int64_t stride, int64_t n_valid, bool vec,
                                       float (&out)[N]) {
  if (vec && n_valid >= N) {
    Vec<T, N>::load(p, out);
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = i < n_valid ? to_f(p[i * stride]) : 0.f;
  }
}

template <typename T, int N>
__device__ __forceinline__ void store_n(T* __restrict__ p, int64_t stride, int64_t n_valid, bool vec,
                                        const float (&in)[N]) {
  if (vec && n_valid >= N) {
    Vec<T, N>::store(p, in);
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i)
      if (i < n_valid) p[i * stride] = from_f<T>(in[i]);
  }
}

// N elements kept as raw storage (converted at use): prefetched data costs half the registers for 16-bit types.
// load_raw: N consecutive elements of which the first n_valid exist (the rest read as zero).
template <typename T, int N>
struct alignas(16) Raw {
  T e[N];
};

// Element e of r as float. MK_CONV1D_BF16_WORDS (lab knob, 0): 1 converts bf16 from the 32-bit words (the high
// element by one AND, the low one by one shift), where the compiler otherwise extracts the high half first
// (PRMT + shift: 1.5 instructions a value instead of 1).
template <typename T, int N>
__device__ __forceinline__ float raw_f(const Raw<T, N>& r, int e) {
#if MK_CONV1D_BF16_WORDS
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    const uint32_t w = reinterpret_cast<const uint32_t*>(&r)[e >> 1];
    return __uint_as_float((e & 1) ? (w & 0xffff0000u) : (w << 16));
  }
#endif
  return to_f(r.e[e]);
}

template <typename T, int N>
__device__ __forceinline__ void load_raw(const T* __restrict__ p, int64_t n_valid, bool vec, Raw<T, N>& r) {
  using V = Vec<T, N>;
  if (vec && n_valid >= N) {
#pragma unroll
    for (int i = 0; i < V::kWords; ++i)
      reinterpret_cast<typename V::Word*>(&r)[i] = __ldg(reinterpret_cast<const typename V::Word*>(p) + i);
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) r.e[i] = i < n_valid ? p[i] : from_f<T>(0.f);
  }
}

// Fast-math SiLU and its derivative (MUFU exp + reciprocal, common/mufu.h). exp(-z) = inf for z < -88 gives
// s = 0: finite.
__device__ __forceinline__ float sigmoid_f(float z) { return fast_rcp(1.f + __expf(-z)); }
__device__ __forceinline__ float silu_f(float z) { return z * sigmoid_f(z); }
__device__ __forceinline__ float dsilu_f(float z) {
  const float s = sigmoid_f(z);
  return s * (1.f + z * (1.f - s));
}

// SiLU of a forward output. (tanh.approx would make the sigmoid one MUFU op instead of two, but its 2^-11
// error is absolute near t = -1: for z < 0 the output's relative error reaches ~|z| 2^-12 / sigmoid(z), a few
// 16-bit ulps at z ~ -2 and far more further out. The exact form keeps MUFU at ~50% of its rate at HBM speed.)
template <typename T> __device__ __forceinline__ float silu_out(float z) { return silu_f(z); }

// Pre-activation at position e of a lane's kN consecutive positions, from its window [prev (the kW - 1 inputs
// before them) | xc]; taps i < pad of the width bucket are absent. Channel-first kernels (forward and backward).
template <int kW, int kN>
__device__ __forceinline__ float cf_pre(const float (&w)[kW], int pad, float bias, const float (&prev)[kW - 1],
                                        const float (&xc)[kN], int e) {
  float acc = bias;
#pragma unroll
  for (int i = 0; i < kW; ++i) {
    const int q = e + i;
    if (i >= pad) acc = fmaf(w[i], q < kW - 1 ? prev[q] : xc[q - (kW - 1)], acc);
  }
  return acc;
}


// Varlen: the sequence that contains position t (0 <= t < total): the largest n with cu[n] <= t. Empty
// sequences are never returned (their start equals the next start, and the largest index wins).
__device__ __forceinline__ int64_t find_seq(const int32_t* __restrict__ cu, int64_t nseq, int64_t t) {
  int64_t lo = 0, hi = nseq - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) >> 1;
    if (static_cast<int64_t>(cu[mid]) <= t) lo = mid; else hi = mid - 1;
  }
  return lo;
}

// Host side: may a kernel use 16-byte vector accesses on this tensor? Its base must be 16-byte aligned and
// every stride that moves between vectors (batch, and channel or time) a multiple of 16 bytes.
inline bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }
inline bool stride16(int64_t stride, int64_t size, int64_t elt_bytes) {
  return size <= 1 || (stride * elt_bytes) % 16 == 0;
}

// Host side: how many blocks of `kernel` (with `threads` threads) the current device holds at once (SMs x
// resident blocks per SM), cached per kernel and device. Used to size grids in whole waves.
template <typename Kernel>
inline int64_t resident_blocks(Kernel kernel, int threads) {
  constexpr int kMaxDevices = 64;
  static int cache[kMaxDevices] = {};  // 0: not yet known (a benign race: every writer stores the same value)
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0) dev = 0;
  if (dev < kMaxDevices && cache[dev] > 0) return cache[dev];
  int sms = 0, per_sm = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms < 1) sms = 1;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, 0) != cudaSuccess || per_sm < 1)
    per_sm = 1;
  (void)cudaGetLastError();  // a failed query must not be reported as the next launch's error
  const int n = sms * per_sm;
  if (dev < kMaxDevices) cache[dev] = n;
  return n;
}

}  // namespace conv1d
}  // namespace mamba_kernels
