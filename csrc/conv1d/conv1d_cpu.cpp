// C++ OpenMP CPU kernels of the causal depthwise conv1d: forward, backward, decode update.
// No torch here: raw pointers + the params struct of conv1d.h. Any strides; fp32/fp16/bf16/fp64 storage,
// accumulation in fp32 (fp64 for fp64 inputs). Plain loops: this backend is the readable, exact one.
#include <cmath>
#include <cstring>
#include <vector>

#include "conv1d/conv1d.h"

namespace mamba_kernels {
namespace conv1d {
namespace {

// ---- storage types and conversions (IEEE round-to-nearest-even, NaN kept) ------------------------------
struct half_t { uint16_t bits; };
struct bf16_t { uint16_t bits; };

inline float bits_to_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t float_to_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    if (mant == 0) return bits_to_float(sign);
    exp = 113;  // subnormal: normalise (value = mant * 2^-24)
    while ((mant & 0x400u) == 0) { mant <<= 1; --exp; }
    mant &= 0x3ffu;
    return bits_to_float(sign | (exp << 23) | (mant << 13));
  }
  if (exp == 31) return bits_to_float(sign | 0x7f800000u | (mant << 13));
  return bits_to_float(sign | ((exp + 112) << 23) | (mant << 13));
}

inline uint16_t float_to_half(float f) {
  const uint32_t x = float_to_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u));
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (a < 0x38800000u) {                                                // below 2^-14: subnormal or zero
    if (a < 0x33000000u) return static_cast<uint16_t>(sign);           // below 2^-25: rounds to zero
    const uint32_t e = a >> 23;
    const uint32_t m = (a & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (r & 1u))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  const uint32_t r = a - 0x38000000u;  // rebias the exponent (127 - 15) << 23
  return static_cast<uint16_t>(sign | ((r + 0x0fffu + ((r >> 13) & 1u)) >> 13));
}

inline float bf16_to_float(uint16_t h) { return bits_to_float(static_cast<uint32_t>(h) << 16); }

inline uint16_t float_to_bf16(float f) {
  const uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

template <typename T, typename A> inline A load(const T& v) { return static_cast<A>(v); }
template <> inline float load<half_t, float>(const half_t& v) { return half_to_float(v.bits); }
template <> inline float load<bf16_t, float>(const bf16_t& v) { return bf16_to_float(v.bits); }

template <typename T, typename A> inline T store(A v) { return static_cast<T>(v); }
template <> inline half_t store<half_t, float>(float v) { return half_t{float_to_half(v)}; }
template <> inline bf16_t store<bf16_t, float>(float v) { return bf16_t{float_to_bf16(v)}; }

template <typename A>
inline A load_any(const void* ptr, DType dt, int64_t i) {
  switch (dt) {
    case DType::kFloat32: return static_cast<A>(static_cast<const float*>(ptr)[i]);
    case DType::kFloat64: return static_cast<A>(static_cast<const double*>(ptr)[i]);
    case DType::kFloat16: return static_cast<A>(half_to_float(static_cast<const uint16_t*>(ptr)[i]));
    case DType::kBFloat16: return static_cast<A>(bf16_to_float(static_cast<const uint16_t*>(ptr)[i]));
  }
  return A(0);
}

template <typename A> inline A sigmoid(A z) { return A(1) / (A(1) + std::exp(-z)); }

// Bounds of sequence n: batch row `b` and positions [s, e) along the row.
inline void seq_bounds(const Conv1dParams& p, int64_t n, int64_t& b, int64_t& s, int64_t& e) {
  if (p.cu_seqlens) { b = 0; s = p.cu_seqlens[n]; e = p.cu_seqlens[n + 1]; }
  else { b = n; s = 0; e = p.seqlen; }
}

// x of one (sequence, channel) extended to the left with the initial state (or zeros).
template <typename T, typename A>
struct ExtRow {
  const T* x; int64_t l_stride;
  const T* init; int64_t init_w_stride;  // nullptr: zeros
  int64_t s, width;
  A operator()(int64_t pos) const {
    if (pos >= s) return load<T, A>(x[pos * l_stride]);
    const int64_t j = pos - s + width - 1;
    return (init != nullptr && j >= 0) ? load<T, A>(init[j * init_w_stride]) : A(0);
  }
};

template <typename T, typename A>
ExtRow<T, A> ext_row(const Conv1dParams& p, int64_t n, int64_t c, int64_t b, int64_t s) {
  ExtRow<T, A> r;
  r.x = static_cast<const T*>(p.x) + b * p.x_batch_stride + c * p.x_c_stride;
  r.l_stride = p.x_l_stride;
  r.init = p.initial_states ? static_cast<const T*>(p.initial_states) + n * p.init_n_stride + c * p.init_c_stride
                            : nullptr;
  r.init_w_stride = p.init_w_stride;
  r.s = s;
  r.width = p.width;
  return r;
}

template <typename A>
void load_weights(const Conv1dParams& p, int64_t c, A* w, A& bias) {
  for (int64_t i = 0; i < p.width; ++i) w[i] = load_any<A>(p.weight, p.w_dtype, c * p.w_c_stride + i * p.w_w_stride);
  bias = p.bias ? load_any<A>(p.bias, p.b_dtype, c * p.bias_stride) : A(0);
}

// ---- forward -------------------------------------------------------------------------------------------
template <typename T, typename A>
void fwd_impl(const Conv1dParams& p) {
  const int64_t W = p.width;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < p.nseq; ++n) {
    for (int64_t c = 0; c < p.dim; ++c) {
      int64_t b, s, e;
      seq_bounds(p, n, b, s, e);
      A w[kMaxWidth], bias;
      load_weights(p, c, w, bias);
      const auto xe = ext_row<T, A>(p, n, c, b, s);
      T* y = static_cast<T*>(p.y) + b * p.y_batch_stride + c * p.y_c_stride;
      for (int64_t t = s; t < e; ++t) {
        A z = bias;
        for (int64_t i = 0; i < W; ++i) z += w[i] * xe(t - W + 1 + i);
        y[t * p.y_l_stride] = store<T, A>(p.silu ? z * sigmoid(z) : z);
      }
      if (p.final_states) {
        T* f = static_cast<T*>(p.final_states) + n * p.final_n_stride + c * p.final_c_stride;
        for (int64_t j = 0; j < W - 1; ++j) f[j * p.final_w_stride] = store<T, A>(xe(e - (W - 1) + j));
      }
    }
  }
}

// ---- backward: dpre = dy * act'(pre); dx, dweight, dbias, dinitial_states ----------------------------------
template <typename T, typename A>
void bwd_impl(const Conv1dParams& p) {
  const int64_t W = p.width;
#pragma omp parallel
  {
    std::vector<A> dp;
#pragma omp for schedule(static)
    for (int64_t c = 0; c < p.dim; ++c) {  // one thread owns channel c: dweight[c] / dbias[c] need no atomics
      A w[kMaxWidth], bias;
      load_weights(p, c, w, bias);
      A dw[kMaxWidth] = {}, db = A(0);
      for (int64_t n = 0; n < p.nseq; ++n) {
        int64_t b, s, e;
        seq_bounds(p, n, b, s, e);
        const int64_t len = e - s;
        const auto xe = ext_row<T, A>(p, n, c, b, s);
        const T* dy = static_cast<const T*>(p.dy) + b * p.dy_batch_stride + c * p.dy_c_stride;
        T* dx = static_cast<T*>(p.dx) + b * p.dx_batch_stride + c * p.dx_c_stride;
        const T* dfin = p.dfinal_states
            ? static_cast<const T*>(p.dfinal_states) + n * p.dfinal_n_stride + c * p.dfinal_c_stride : nullptr;
        dp.assign(static_cast<size_t>(len), A(0));
        for (int64_t t = s; t < e; ++t) {
          const A g = load<T, A>(dy[t * p.dy_l_stride]);
          if (p.silu) {
            A z = bias;
            for (int64_t i = 0; i < W; ++i) z += w[i] * xe(t - W + 1 + i);
            const A sg = sigmoid(z);
            dp[t - s] = g * sg * (A(1) + z * (A(1) - sg));
          } else {
            dp[t - s] = g;
          }
        }
        for (int64_t t = s; t < e; ++t) {
          A acc = A(0);
          for (int64_t i = 0; i < W; ++i) {
            const int64_t q = t + W - 1 - i;  // output position that tap i of x[t] feeds
            if (q < e) acc += w[i] * dp[q - s];
          }
          if (dfin && t >= e - (W - 1)) acc += load<T, A>(dfin[(t - e + W - 1) * p.dfinal_w_stride]);
          dx[t * p.dx_l_stride] = store<T, A>(acc);
          for (int64_t i = 0; i < W; ++i) dw[i] += dp[t - s] * xe(t - W + 1 + i);
          db += dp[t - s];
        }
        if (p.dinitial_states) {
          T* di = static_cast<T*>(p.dinitial_states) + n * p.dinit_n_stride + c * p.dinit_c_stride;
          for (int64_t j = 0; j < W - 1; ++j) {  // state entry j stands for position s - (W - 1) + j
            A acc = A(0);
            for (int64_t t = s; t <= s + j && t < e; ++t) acc += w[s + j - t] * dp[t - s];
            if (dfin && j >= len) acc += load<T, A>(dfin[(j - len) * p.dfinal_w_stride]);
            di[j * p.dinit_w_stride] = store<T, A>(acc);
          }
        }
      }
      A* dwo = static_cast<A*>(p.dweight);
      for (int64_t i = 0; i < W; ++i) dwo[c * W + i] = dw[i];
      if (p.dbias) static_cast<A*>(p.dbias)[c] = db;
    }
  }
}

// ---- decode update -------------------------------------------------------------------------------------
template <typename T, typename A>
void update_impl(const Conv1dUpdateParams& p) {
  const int64_t W = p.width, L = p.state_len, K = p.k;
#pragma omp parallel
  {
    std::vector<A> old_state, yloc;
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < p.batch; ++b) {
      for (int64_t c = 0; c < p.dim; ++c) {
        const int64_t slot = p.slots ? static_cast<int64_t>(p.slots[b]) : b;
        T* out = static_cast<T*>(p.out) + b * p.out_batch_stride + c * p.out_c_stride;
        if (slot < 0 || slot >= p.nslots) {  // padding row: state untouched, output zero
          for (int64_t t = 0; t < K; ++t) out[t * p.out_l_stride] = store<T, A>(A(0));
          continue;
        }
        A w[kMaxWidth], bias;
        for (int64_t i = 0; i < W; ++i)
          w[i] = load_any<A>(p.weight, p.w_dtype, c * p.w_c_stride + i * p.w_w_stride);
        bias = p.bias ? load_any<A>(p.bias, p.b_dtype, c * p.bias_stride) : A(0);
        const T* x = static_cast<const T*>(p.x) + b * p.x_batch_stride + c * p.x_c_stride;
        T* st = static_cast<T*>(p.conv_state) + slot * p.state_n_stride + c * p.state_c_stride;
        old_state.resize(static_cast<size_t>(L));
        for (int64_t j = 0; j < L; ++j) old_state[j] = load<T, A>(st[j * p.state_l_stride]);
        auto ext = [&](int64_t q) -> A {  // [old state, x] at column q
          return q < L ? old_state[q] : load<T, A>(x[(q - L) * p.x_l_stride]);
        };
        yloc.resize(static_cast<size_t>(K));
        for (int64_t t = 0; t < K; ++t) {
          A z = bias;
          for (int64_t i = 0; i < W; ++i) z += w[i] * ext(L + t - W + 1 + i);
          yloc[t] = p.silu ? z * sigmoid(z) : z;
        }
        // Every read of x is done before `out` is written, so out may alias x.
        for (int64_t j = 0; j < L; ++j) st[j * p.state_l_stride] = store<T, A>(ext(K + j));
        for (int64_t t = 0; t < K; ++t) out[t * p.out_l_stride] = store<T, A>(yloc[t]);
      }
    }
  }
}

}  // namespace

void conv1d_fwd_cpu(const Conv1dParams& p) {
  switch (p.x_dtype) {
    case DType::kFloat32: return fwd_impl<float, float>(p);
    case DType::kFloat64: return fwd_impl<double, double>(p);
    case DType::kFloat16: return fwd_impl<half_t, float>(p);
    case DType::kBFloat16: return fwd_impl<bf16_t, float>(p);
  }
}

void conv1d_bwd_cpu(const Conv1dParams& p) {
  switch (p.x_dtype) {
    case DType::kFloat32: return bwd_impl<float, float>(p);
    case DType::kFloat64: return bwd_impl<double, double>(p);
    case DType::kFloat16: return bwd_impl<half_t, float>(p);
    case DType::kBFloat16: return bwd_impl<bf16_t, float>(p);
  }
}

void conv1d_update_cpu(const Conv1dUpdateParams& p) {
  switch (p.x_dtype) {
    case DType::kFloat32: return update_impl<float, float>(p);
    case DType::kFloat64: return update_impl<double, double>(p);
    case DType::kFloat16: return update_impl<half_t, float>(p);
    case DType::kBFloat16: return update_impl<bf16_t, float>(p);
  }
}

}  // namespace conv1d
}  // namespace mamba_kernels
