// C++ OpenMP CPU kernels of the verify family (no torch headers here).
//
// Semantics: python_ref.verify.verify_step_cache_ref / conv_verify_step_ref; cache layout and algorithm:
// docs/verify_step_design.md; op contract: docs/verify_lowlevel_ops.md. Every tensor is addressed through its
// raw pointer and int64 element strides (any may be 0). Arithmetic is fp32, or fp64 when the state or the
// inputs are fp64. fp16 / bf16 are converted by hand (round-to-nearest-even when storing).
//
// Work split: SSM step: one task per (batch row, unit); fused step: one task per (batch row, group) (owns the
// group's x / B / C conv channels and its units); conv step: one task per (batch row, channel block), with the
// per-slot meta read before and written after the parallel region. Each task reads everything it needs of the
// ring / window / meta before it writes any of it.
//
// This file is also the declaration of its own entry points: verify_bind_cpu.cpp includes it with
// MK_VERIFY_CPU_DECLS_ONLY defined and gets only the parameter structs and function declarations below (the
// structs are CPU-local; the CUDA backend has its own csrc/verify/verify.h).
#ifndef MK_VERIFY_CPU_DECLS
#define MK_VERIFY_CPU_DECLS
#include <cstdint>

#include "common/dtype.h"

namespace mamba_kernels {
namespace verify_cpu {

// SSM verify step (and the fused Mamba-2 step, which also uses the conv fields). Strides are in elements.
// Canonical shapes: x, z, y (batch, k, H, P); dt (batch, k, H, Pd); A (H, Pa, Na); B, C (batch, k, G, N);
// D (H, P); dt_bias (H, Pd); state (S, H, P, N); ring_x (S, R, H, P); ring_B (S, R, H, N);
// ring_dt (S, R, H, Pd); meta (S, H, 2 + Kmax) int32; slots, accepted (batch,) int32; parents (batch, k).
// Fused: xBC (batch, k, dc), conv_weight (dc, width), conv_bias (dc,), window (S, width - 1 + Kmax, dc).
struct VerifyStepParams {
  int64_t batch = 0, k = 0, H = 0, P = 0, N = 0, G = 1, Pd = 1, Pa = 1, Na = 1, S = 0, R = 0, Kmax = 0;
  bool use_fp64 = false;  // arithmetic in double (state or inputs fp64), else float
  DType in_dtype = DType::kFloat32;  // x, B, C, z, y, ring_x, ring_B (and xBC, window in the fused step)
  DType dt_dtype = DType::kFloat32, A_dtype = DType::kFloat32, D_dtype = DType::kFloat32,
        dt_bias_dtype = DType::kFloat32, state_dtype = DType::kFloat32, ring_dt_dtype = DType::kFloat32;
  const void* x = nullptr;
  const void* dt = nullptr;
  const void* A = nullptr;
  const void* B = nullptr;
  const void* C = nullptr;
  const void* D = nullptr;        // nullptr: no skip term
  const void* z = nullptr;        // nullptr: no gate
  const void* dt_bias = nullptr;  // nullptr: no bias
  void* state = nullptr;
  void* ring_x = nullptr;
  void* ring_B = nullptr;
  void* ring_dt = nullptr;
  int32_t* meta = nullptr;
  const int32_t* slots = nullptr;
  const int32_t* accepted = nullptr;
  const int32_t* parents = nullptr;  // nullptr: chain
  void* y = nullptr;
  bool accepted_is_node = false, dt_softplus = false, fold_all = false;
  double dt_min = 0, dt_max = 0;
  int64_t x_s[4] = {}, dt_s[4] = {}, A_s[3] = {}, B_s[4] = {}, C_s[4] = {}, D_s[2] = {}, z_s[4] = {},
          dt_bias_s[2] = {}, state_s[4] = {}, ring_x_s[4] = {}, ring_B_s[4] = {}, ring_dt_s[4] = {}, meta_s[3] = {},
          slots_s = 0, accepted_s = 0, parents_s[2] = {}, y_s[4] = {};
  // Fused step only.
  const void* xBC = nullptr;
  const void* conv_weight = nullptr;
  const void* conv_bias = nullptr;  // nullptr: no bias
  void* window = nullptr;
  DType conv_weight_dtype = DType::kFloat32, conv_bias_dtype = DType::kFloat32;
  int64_t width = 0, dc = 0;
  bool conv_silu = false;
  int64_t xBC_s[3] = {}, conv_weight_s[2] = {}, conv_bias_s = 0, window_s[3] = {};
};

// Standalone conv step with rollback: x, out (batch, k, dc); window (S, width - 1 + Kmax, dc);
// meta (S, 1 + Kmax) int32; weight (dc, width); bias (dc,).
struct ConvStepParams {
  int64_t batch = 0, k = 0, dc = 0, width = 0, S = 0, Kmax = 0;
  bool use_fp64 = false, accepted_is_node = false, silu = false;
  DType x_dtype = DType::kFloat32, out_dtype = DType::kFloat32, window_dtype = DType::kFloat32,
        weight_dtype = DType::kFloat32, bias_dtype = DType::kFloat32;
  const void* x = nullptr;
  void* window = nullptr;
  int32_t* meta = nullptr;
  const void* weight = nullptr;
  const void* bias = nullptr;  // nullptr: no bias
  const int32_t* slots = nullptr;
  const int32_t* accepted = nullptr;
  const int32_t* parents = nullptr;  // nullptr: chain
  void* out = nullptr;
  int64_t x_s[3] = {}, window_s[3] = {}, meta_s[2] = {}, weight_s[2] = {}, bias_s = 0, slots_s = 0,
          accepted_s = 0, parents_s[2] = {}, out_s[3] = {};
};

void verify_step(const VerifyStepParams& p);
void verify_step_fused(const VerifyStepParams& p);
void conv_verify_step(const ConvStepParams& p);

}  // namespace verify_cpu
}  // namespace mamba_kernels
#endif  // MK_VERIFY_CPU_DECLS

#ifndef MK_VERIFY_CPU_DECLS_ONLY

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace mamba_kernels {
namespace verify_cpu {
namespace {

// ---------------------------------------------------------------------------------------------------------
// fp16 / bf16 <-> fp32 by hand
// ---------------------------------------------------------------------------------------------------------
inline uint32_t f32_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float bits_f32(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

inline float bf16_to_f32(uint16_t h) { return bits_f32(uint32_t(h) << 16); }

inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);  // NaN stays (quiet) NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                         // round to nearest even
  return uint16_t(u >> 16);
}

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {
    const float mag = std::ldexp(float(m), -24);  // zero or subnormal, exact
    return bits_f32(f32_bits(mag) | sign);
  }
  if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));  // inf / NaN
  return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

inline uint16_t f32_to_f16(float f) {
  const uint32_t u = f32_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // NaN
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // >= 65520 rounds to inf (and inf itself)
  if (a < 0x38800000u) {                                   // below 2^-14: half subnormal or zero
    const float r = std::nearbyint(bits_f32(a) * 16777216.0f);  // exact scaling; RNE (default mode)
    return uint16_t(sign | uint16_t(r));                         // 1024 -> smallest normal, correct
  }
  const uint32_t r = a + 0xfffu + ((a >> 13) & 1u) - (112u << 23);  // RNE, rebias exponent
  return uint16_t(sign | uint16_t(r >> 13));
}

template <typename Acc>
inline Acc load_one(const void* base, DType dt, int64_t i) {
  switch (dt) {
    case DType::kFloat32: return Acc(static_cast<const float*>(base)[i]);
    case DType::kFloat16: return Acc(f16_to_f32(static_cast<const uint16_t*>(base)[i]));
    case DType::kBFloat16: return Acc(bf16_to_f32(static_cast<const uint16_t*>(base)[i]));
    case DType::kFloat64: return Acc(static_cast<const double*>(base)[i]);
  }
  return Acc(0);
}

template <typename Acc>
inline void store_one(void* base, DType dt, int64_t i, Acc v) {
  switch (dt) {
    case DType::kFloat32: static_cast<float*>(base)[i] = float(v); break;
    case DType::kFloat16: static_cast<uint16_t*>(base)[i] = f32_to_f16(float(v)); break;
    case DType::kBFloat16: static_cast<uint16_t*>(base)[i] = f32_to_bf16(float(v)); break;
    case DType::kFloat64: static_cast<double*>(base)[i] = double(v); break;
  }
}

// dst[j] = src[j * stride], j < n (switch hoisted out of the loop).
template <typename Acc>
void load_vec(Acc* dst, const void* base, DType dt, int64_t off, int64_t n, int64_t stride) {
  switch (dt) {
    case DType::kFloat32: {
      const float* p = static_cast<const float*>(base) + off;
      for (int64_t j = 0; j < n; ++j) dst[j] = Acc(p[j * stride]);
    } break;
    case DType::kFloat16: {
      const uint16_t* p = static_cast<const uint16_t*>(base) + off;
      for (int64_t j = 0; j < n; ++j) dst[j] = Acc(f16_to_f32(p[j * stride]));
    } break;
    case DType::kBFloat16: {
      const uint16_t* p = static_cast<const uint16_t*>(base) + off;
      for (int64_t j = 0; j < n; ++j) dst[j] = Acc(bf16_to_f32(p[j * stride]));
    } break;
    case DType::kFloat64: {
      const double* p = static_cast<const double*>(base) + off;
      for (int64_t j = 0; j < n; ++j) dst[j] = Acc(p[j * stride]);
    } break;
  }
}

template <typename Acc>
void store_vec(void* base, DType dt, int64_t off, int64_t n, int64_t stride, const Acc* src) {
  switch (dt) {
    case DType::kFloat32: {
      float* p = static_cast<float*>(base) + off;
      for (int64_t j = 0; j < n; ++j) p[j * stride] = float(src[j]);
    } break;
    case DType::kFloat16: {
      uint16_t* p = static_cast<uint16_t*>(base) + off;
      for (int64_t j = 0; j < n; ++j) p[j * stride] = f32_to_f16(float(src[j]));
    } break;
    case DType::kBFloat16: {
      uint16_t* p = static_cast<uint16_t*>(base) + off;
      for (int64_t j = 0; j < n; ++j) p[j * stride] = f32_to_bf16(float(src[j]));
    } break;
    case DType::kFloat64: {
      double* p = static_cast<double*>(base) + off;
      for (int64_t j = 0; j < n; ++j) p[j * stride] = double(src[j]);
    } break;
  }
}

template <typename Acc>
inline Acc silu(Acc v) { return v / (Acc(1) + std::exp(-v)); }

// ---------------------------------------------------------------------------------------------------------
// Per (row, slot) bookkeeping shared by all backends' algorithm
// ---------------------------------------------------------------------------------------------------------
constexpr int kMaxK = 32;

struct Commit {
  int64_t c = 0, kp = 0, m = 0, c1 = 0;
  uint32_t path = 0;
  int path_nodes[kMaxK];  // increasing
};

// a = accepted node (chain: num_accepted - 1), clamped to [-1, kp - 1]; masks = the pending nodes' masks.
inline void decode_commit(int64_t c, int64_t kp, int64_t a, const int32_t* masks, int64_t mask_stride,
                          int64_t R, int64_t Kmax, Commit& out) {
  // Defensive clamps (a consistent cache never needs them): never index outside the ring / meta.
  c = std::min<int64_t>(std::max<int64_t>(c, 0), R);
  kp = std::min<int64_t>(std::max<int64_t>(kp, 0), std::min<int64_t>(Kmax, R - c));
  a = std::min<int64_t>(a, kp - 1);
  uint32_t path = 0;
  if (a >= 0) path = uint32_t(masks[a * mask_stride]);
  if (kp < 32) path &= (uint32_t(1) << kp) - 1u;
  out.c = c;
  out.kp = kp;
  out.path = path;
  out.m = 0;
  for (int t = 0; t < kp; ++t)
    if ((path >> t) & 1u) out.path_nodes[out.m++] = t;
  out.c1 = c + out.m;
}

// New nodes' parents (invalid parent -> root) and ancestor-or-self masks.
inline void new_masks(const int32_t* parents, int64_t par_stride, int64_t k, int* par, uint32_t* masks) {
  for (int64_t t = 0; t < k; ++t) {
    int64_t p = parents ? int64_t(parents[t * par_stride]) : t - 1;
    if (p >= t || p < -1) p = -1;
    par[t] = int(p);
    masks[t] = (p < 0 ? 0u : masks[p]) | (uint32_t(1) << t);
  }
}

inline bool slot_ok(int64_t s, int64_t S) { return s >= 0 && s < S; }

// ---------------------------------------------------------------------------------------------------------
// SSM core for one (row b, slot s, unit u): materialise, score, write back.
// xs (k, P), Bs (k, N), Cs (k, N): the new tokens' inputs in Acc (row-major, contiguous).
// ---------------------------------------------------------------------------------------------------------
template <typename Acc>
struct Work {
  std::vector<Acc> xs, Bs, Cs, dts, zs, rx, rB, rdt, Ab, Db, h, node_h, yrow;
  void reserve(const VerifyStepParams& p) {
    const int64_t K = std::max<int64_t>(p.k, 1), R = std::max<int64_t>(p.R, 1);
    xs.resize(K * p.P); Bs.resize(K * p.N); Cs.resize(K * p.N); dts.resize(K * p.Pd); zs.resize(K * p.P);
    rx.resize(R * p.P); rB.resize(R * p.N); rdt.resize(R * p.Pd);
    Ab.resize(p.Pa * p.Na); Db.resize(p.P); h.resize(p.N); node_h.resize(K * p.N); yrow.resize(p.P);
  }
};

template <typename Acc>
void ssm_unit(const VerifyStepParams& p, int64_t b, int64_t s, int64_t u, const Commit& cm, const int* par,
              const uint32_t* masks, Work<Acc>& w) {
  const int64_t k = p.k, P = p.P, N = p.N, Pd = p.Pd, Pa = p.Pa, Na = p.Na;
  // Processed dt of the new tokens (k, Pd).
  for (int64_t t = 0; t < k; ++t) {
    for (int64_t j = 0; j < Pd; ++j) {
      Acc v = load_one<Acc>(p.dt, p.dt_dtype, b * p.dt_s[0] + t * p.dt_s[1] + u * p.dt_s[2] + j * p.dt_s[3]);
      if (p.dt_bias) v += load_one<Acc>(p.dt_bias, p.dt_bias_dtype, u * p.dt_bias_s[0] + j * p.dt_bias_s[1]);
      if (p.dt_softplus) v = v > Acc(20) ? v : std::log1p(std::exp(v));
      if (v < Acc(p.dt_min)) v = Acc(p.dt_min);
      if (v > Acc(p.dt_max)) v = Acc(p.dt_max);
      w.dts[t * Pd + j] = v;
    }
  }
  if (p.z)
    for (int64_t t = 0; t < k; ++t)
      load_vec(&w.zs[t * P], p.z, p.in_dtype, b * p.z_s[0] + t * p.z_s[1] + u * p.z_s[2], P, p.z_s[3]);
  for (int64_t i = 0; i < Pa; ++i)
    load_vec(&w.Ab[i * Na], p.A, p.A_dtype, u * p.A_s[0] + i * p.A_s[1], Na, p.A_s[2]);
  if (p.D) load_vec(w.Db.data(), p.D, p.D_dtype, u * p.D_s[0], P, p.D_s[1]);

  // Committed ring tokens ([0, c) then c + path nodes), buffered in Acc.
  for (int64_t i = 0; i < cm.c1; ++i) {
    const int64_t pos = i < cm.c ? i : cm.c + cm.path_nodes[i - cm.c];
    load_vec(&w.rx[i * P], p.ring_x, p.in_dtype, s * p.ring_x_s[0] + pos * p.ring_x_s[1] + u * p.ring_x_s[2], P,
             p.ring_x_s[3]);
    load_vec(&w.rB[i * N], p.ring_B, p.in_dtype, s * p.ring_B_s[0] + pos * p.ring_B_s[1] + u * p.ring_B_s[2], N,
             p.ring_B_s[3]);
    load_vec(&w.rdt[i * Pd], p.ring_dt, p.ring_dt_dtype,
             s * p.ring_dt_s[0] + pos * p.ring_dt_s[1] + u * p.ring_dt_s[2], Pd, p.ring_dt_s[3]);
  }

  const bool fold = p.fold_all || cm.c1 + k > p.R;
  const bool chain = p.parents == nullptr;
  Acc* h = w.h.data();
  for (int64_t ch = 0; ch < P; ++ch) {
    const Acc* Arow = &w.Ab[(Pa == 1 ? 0 : ch) * Na];
    const int64_t jd = Pd == 1 ? 0 : ch;
    const int64_t st_off = s * p.state_s[0] + u * p.state_s[1] + ch * p.state_s[2];
    load_vec(h, p.state, p.state_dtype, st_off, N, p.state_s[3]);
    for (int64_t i = 0; i < cm.c1; ++i) {
      const Acc dt = w.rdt[i * Pd + jd], dx = dt * w.rx[i * P + ch];
      const Acc* Bv = &w.rB[i * N];
      if (Na == 1) {
        const Acc dA = std::exp(dt * Arow[0]);
        for (int64_t n = 0; n < N; ++n) h[n] = dA * h[n] + dx * Bv[n];
      } else {
        for (int64_t n = 0; n < N; ++n) h[n] = std::exp(dt * Arow[n]) * h[n] + dx * Bv[n];
      }
    }
    if (fold) store_vec(p.state, p.state_dtype, st_off, N, p.state_s[3], h);
    // Score the new nodes.
    for (int64_t t = 0; t < k; ++t) {
      const Acc* hp = (chain ? t == 0 : par[t] < 0) ? h : &w.node_h[(chain ? t - 1 : par[t]) * N];
      Acc* ht = &w.node_h[t * N];
      const Acc dt = w.dts[t * Pd + jd], xv = w.xs[t * P + ch], dx = dt * xv;
      const Acc* Bv = &w.Bs[t * N];
      const Acc* Cv = &w.Cs[t * N];
      Acc yv = 0;
      if (Na == 1) {
        const Acc dA = std::exp(dt * Arow[0]);
        for (int64_t n = 0; n < N; ++n) { ht[n] = dA * hp[n] + dx * Bv[n]; yv += ht[n] * Cv[n]; }
      } else {
        for (int64_t n = 0; n < N; ++n) {
          ht[n] = std::exp(dt * Arow[n]) * hp[n] + dx * Bv[n];
          yv += ht[n] * Cv[n];
        }
      }
      if (p.D) yv += w.Db[ch] * xv;
      if (p.z) yv *= silu(w.zs[t * P + ch]);
      store_one(p.y, p.in_dtype, b * p.y_s[0] + t * p.y_s[1] + u * p.y_s[2] + ch * p.y_s[3], yv);
    }
  }

  // Write back the ring (all reads of it are done) and the meta.
  int64_t base = 0;
  if (!fold) {
    base = cm.c1;
    for (int64_t i = 0; i < cm.m; ++i) {
      if (cm.path_nodes[i] == i) continue;  // already in place
      const int64_t pos = cm.c + i, j = cm.c + i;
      store_vec(p.ring_x, p.in_dtype, s * p.ring_x_s[0] + pos * p.ring_x_s[1] + u * p.ring_x_s[2], P,
                p.ring_x_s[3], &w.rx[j * P]);
      store_vec(p.ring_B, p.in_dtype, s * p.ring_B_s[0] + pos * p.ring_B_s[1] + u * p.ring_B_s[2], N,
                p.ring_B_s[3], &w.rB[j * N]);
      store_vec(p.ring_dt, p.ring_dt_dtype, s * p.ring_dt_s[0] + pos * p.ring_dt_s[1] + u * p.ring_dt_s[2], Pd,
                p.ring_dt_s[3], &w.rdt[j * Pd]);
    }
  }
  const int64_t kw = std::min<int64_t>(k, p.R - base);  // k <= R always for valid input
  for (int64_t t = 0; t < kw; ++t) {
    const int64_t pos = base + t;
    store_vec(p.ring_x, p.in_dtype, s * p.ring_x_s[0] + pos * p.ring_x_s[1] + u * p.ring_x_s[2], P,
              p.ring_x_s[3], &w.xs[t * P]);
    store_vec(p.ring_B, p.in_dtype, s * p.ring_B_s[0] + pos * p.ring_B_s[1] + u * p.ring_B_s[2], N,
              p.ring_B_s[3], &w.Bs[t * N]);
    store_vec(p.ring_dt, p.ring_dt_dtype, s * p.ring_dt_s[0] + pos * p.ring_dt_s[1] + u * p.ring_dt_s[2], Pd,
              p.ring_dt_s[3], &w.dts[t * Pd]);
  }
  int32_t* meta = p.meta + s * p.meta_s[0] + u * p.meta_s[1];
  meta[0] = int32_t(base);
  meta[p.meta_s[2]] = int32_t(kw);
  for (int64_t t = 0; t < kw && t < p.Kmax; ++t) meta[(2 + t) * p.meta_s[2]] = int32_t(masks[t]);
}

template <typename Acc>
void zero_y_unit(const VerifyStepParams& p, int64_t b, int64_t u) {
  for (int64_t t = 0; t < p.k; ++t)
    for (int64_t ch = 0; ch < p.P; ++ch)
      store_one(p.y, p.in_dtype, b * p.y_s[0] + t * p.y_s[1] + u * p.y_s[2] + ch * p.y_s[3], Acc(0));
}

inline void read_commit(const VerifyStepParams& p, int64_t b, int64_t s, int64_t u, Commit& cm) {
  const int32_t* meta = p.meta + s * p.meta_s[0] + u * p.meta_s[1];
  const int64_t acc = p.accepted[b * p.accepted_s];
  decode_commit(meta[0], meta[p.meta_s[2]], p.accepted_is_node ? acc : acc - 1, meta + 2 * p.meta_s[2],
                p.meta_s[2], p.R, p.Kmax, cm);
}

template <typename Acc>
void verify_step_impl(const VerifyStepParams& p) {
  const int64_t hpg = p.H / p.G;
#pragma omp parallel
  {
    Work<Acc> w;
    w.reserve(p);
    int par[kMaxK];
    uint32_t masks[kMaxK];
#pragma omp for schedule(static)
    for (int64_t bu = 0; bu < p.batch * p.H; ++bu) {
      const int64_t b = bu / p.H, u = bu % p.H, g = u / hpg;
      const int64_t s = p.slots[b * p.slots_s];
      if (!slot_ok(s, p.S)) { zero_y_unit<Acc>(p, b, u); continue; }
      Commit cm;
      read_commit(p, b, s, u, cm);
      new_masks(p.parents ? p.parents + b * p.parents_s[0] : nullptr, p.parents_s[1], p.k, par, masks);
      for (int64_t t = 0; t < p.k; ++t) {
        load_vec(&w.xs[t * p.P], p.x, p.in_dtype, b * p.x_s[0] + t * p.x_s[1] + u * p.x_s[2], p.P, p.x_s[3]);
        load_vec(&w.Bs[t * p.N], p.B, p.in_dtype, b * p.B_s[0] + t * p.B_s[1] + g * p.B_s[2], p.N, p.B_s[3]);
        load_vec(&w.Cs[t * p.N], p.C, p.in_dtype, b * p.C_s[0] + t * p.C_s[1] + g * p.C_s[2], p.N, p.C_s[3]);
      }
      ssm_unit<Acc>(p, b, s, u, cm, par, masks, w);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Conv with rollback for one channel: committed window (w-1 values) after the commit, outputs for k nodes.
// win: column of the window (stride ws), rows [0, w-1) committed, [w-1, w-1+kp) pending.
// ---------------------------------------------------------------------------------------------------------
template <typename Acc>
struct ConvChannel {
  // Inputs: cm (commit), masks of new nodes (ancestor-or-self), raw new inputs xr[k] (Acc), weight[w], bias.
  static void run(const Acc* win_committed, const Acc* win_pending, const Commit& cm, int64_t width,
                  const uint32_t* masks, int64_t k, const Acc* xr, const Acc* wt, Acc bias, bool silu_act,
                  Acc* cw /* out: w-1 committed */, Acc* out /* out: k */) {
    const int64_t w1 = width - 1;
    // committed window after the commit = last w-1 of (win[0, w-1) ++ pending[path nodes]).
    for (int64_t j = 0; j < w1; ++j) {
      const int64_t q = cm.m + j;  // index into the concatenation
      cw[j] = q < w1 ? win_committed[q] : win_pending[cm.path_nodes[q - w1]];
    }
    for (int64_t t = 0; t < k; ++t) {
      // path of t in increasing order: nodes i <= t with bit i of masks[t]
      int nodes[kMaxK];
      int L = 0;
      for (int64_t i = 0; i <= t; ++i)
        if ((masks[t] >> i) & 1u) nodes[L++] = int(i);
      Acc o = bias;
      // seq = cw ++ xr[nodes]; seq[-w + i] = seq[L - 1 + i]
      for (int64_t i = 0; i < width; ++i) {
        const int64_t q = L - 1 + i;
        const Acc v = q < w1 ? cw[q] : xr[nodes[q - w1]];
        o += wt[i] * v;
      }
      out[t] = silu_act ? silu(o) : o;
    }
  }
};

template <typename Acc>
void conv_step_impl(const ConvStepParams& p) {
  const int64_t w1 = p.width - 1, k = p.k;
  // Per row: commit decoded from the (old) meta, new masks. Read before anything is written.
  std::vector<Commit> cms(p.batch);
  std::vector<uint32_t> masks(p.batch * kMaxK);
  std::vector<int64_t> slot(p.batch);
  for (int64_t b = 0; b < p.batch; ++b) {
    const int64_t s = p.slots[b * p.slots_s];
    slot[b] = slot_ok(s, p.S) ? s : -1;
    int par[kMaxK];
    new_masks(p.parents ? p.parents + b * p.parents_s[0] : nullptr, p.parents_s[1], k, par, &masks[b * kMaxK]);
    if (slot[b] < 0) continue;
    const int32_t* meta = p.meta + s * p.meta_s[0];
    const int64_t acc = p.accepted[b * p.accepted_s];
    // conv meta has no ring: c = 0, ring length = Kmax.
    decode_commit(0, meta[0], p.accepted_is_node ? acc : acc - 1, meta + p.meta_s[1], p.meta_s[1], p.Kmax,
                  p.Kmax, cms[b]);
  }
  constexpr int64_t kBlock = 64;
  const int64_t nblk = (p.dc + kBlock - 1) / kBlock;
#pragma omp parallel
  {
    std::vector<Acc> wc(std::max<int64_t>(w1, 1)), wp(kMaxK), xr(std::max<int64_t>(k, 1)), wt(p.width),
        cw(std::max<int64_t>(w1, 1)), out(std::max<int64_t>(k, 1));
#pragma omp for schedule(static)
    for (int64_t bc = 0; bc < p.batch * nblk; ++bc) {
      const int64_t b = bc / nblk, c0 = (bc % nblk) * kBlock, c1 = std::min(c0 + kBlock, p.dc);
      const int64_t s = slot[b];
      for (int64_t ch = c0; ch < c1; ++ch) {
        if (s < 0) {
          for (int64_t t = 0; t < k; ++t)
            store_one(p.out, p.out_dtype, b * p.out_s[0] + t * p.out_s[1] + ch * p.out_s[2], Acc(0));
          continue;
        }
        const Commit& cm = cms[b];
        const int64_t woff = s * p.window_s[0] + ch * p.window_s[2];
        load_vec(wc.data(), p.window, p.window_dtype, woff, w1, p.window_s[1]);
        load_vec(wp.data(), p.window, p.window_dtype, woff + w1 * p.window_s[1], cm.kp, p.window_s[1]);
        load_vec(xr.data(), p.x, p.x_dtype, b * p.x_s[0] + ch * p.x_s[2], k, p.x_s[1]);
        load_vec(wt.data(), p.weight, p.weight_dtype, ch * p.weight_s[0], p.width, p.weight_s[1]);
        const Acc bias = p.bias ? load_one<Acc>(p.bias, p.bias_dtype, ch * p.bias_s) : Acc(0);
        ConvChannel<Acc>::run(wc.data(), wp.data(), cm, p.width, &masks[b * kMaxK], k, xr.data(), wt.data(),
                              bias, p.silu, cw.data(), out.data());
        store_vec(p.out, p.out_dtype, b * p.out_s[0] + ch * p.out_s[2], k, p.out_s[1], out.data());
        store_vec(p.window, p.window_dtype, woff, w1, p.window_s[1], cw.data());
        store_vec(p.window, p.window_dtype, woff + w1 * p.window_s[1], std::min(k, p.Kmax), p.window_s[1],
                  xr.data());
      }
    }
  }
  for (int64_t b = 0; b < p.batch; ++b) {
    if (slot[b] < 0) continue;
    int32_t* meta = p.meta + slot[b] * p.meta_s[0];
    const int64_t kw = std::min(k, p.Kmax);
    meta[0] = int32_t(kw);
    for (int64_t t = 0; t < kw; ++t) meta[(1 + t) * p.meta_s[1]] = int32_t(masks[b * kMaxK + t]);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Fused Mamba-2 step: one task per (row, group).
// ---------------------------------------------------------------------------------------------------------
template <typename Acc>
void fused_step_impl(const VerifyStepParams& p) {
  const int64_t hpg = p.H / p.G, k = p.k, P = p.P, N = p.N, w1 = p.width - 1, HP = p.H * p.P;
#pragma omp parallel
  {
    Work<Acc> w;
    w.reserve(p);
    std::vector<Acc> xconv(std::max<int64_t>(k, 1) * hpg * P);  // (hh, t, ch)
    std::vector<Acc> wc(std::max<int64_t>(w1, 1)), wp(kMaxK), xr(std::max<int64_t>(k, 1)), wt(p.width),
        cw(std::max<int64_t>(w1, 1)), out(std::max<int64_t>(k, 1));
    int par[kMaxK];
    uint32_t masks[kMaxK];
#pragma omp for schedule(static)
    for (int64_t bg = 0; bg < p.batch * p.G; ++bg) {
      const int64_t b = bg / p.G, g = bg % p.G, u0 = g * hpg;
      const int64_t s = p.slots[b * p.slots_s];
      if (!slot_ok(s, p.S)) {
        for (int64_t u = u0; u < u0 + hpg; ++u) zero_y_unit<Acc>(p, b, u);
        continue;
      }
      Commit cm;
      read_commit(p, b, s, u0, cm);  // every unit of the slot holds the same meta
      new_masks(p.parents ? p.parents + b * p.parents_s[0] : nullptr, p.parents_s[1], k, par, masks);
      // Conv with rollback over the group's channels: x of its heads, then B, then C.
      const int64_t nch = hpg * P + 2 * N;
      for (int64_t j = 0; j < nch; ++j) {
        int64_t ch;
        if (j < hpg * P) ch = u0 * P + j;
        else if (j < hpg * P + N) ch = HP + g * N + (j - hpg * P);
        else ch = HP + p.G * N + g * N + (j - hpg * P - N);
        const int64_t woff = s * p.window_s[0] + ch * p.window_s[2];
        load_vec(wc.data(), p.window, p.in_dtype, woff, w1, p.window_s[1]);
        load_vec(wp.data(), p.window, p.in_dtype, woff + w1 * p.window_s[1], cm.kp, p.window_s[1]);
        load_vec(xr.data(), p.xBC, p.in_dtype, b * p.xBC_s[0] + ch * p.xBC_s[2], k, p.xBC_s[1]);
        load_vec(wt.data(), p.conv_weight, p.conv_weight_dtype, ch * p.conv_weight_s[0], p.width,
                 p.conv_weight_s[1]);
        const Acc bias = p.conv_bias ? load_one<Acc>(p.conv_bias, p.conv_bias_dtype, ch * p.conv_bias_s) : Acc(0);
        ConvChannel<Acc>::run(wc.data(), wp.data(), cm, p.width, masks, k, xr.data(), wt.data(), bias,
                              p.conv_silu, cw.data(), out.data());
        if (j < hpg * P) {
          for (int64_t t = 0; t < k; ++t) xconv[((j / P) * k + t) * P + j % P] = out[t];
        } else if (j < hpg * P + N) {
          for (int64_t t = 0; t < k; ++t) w.Bs[t * N + (j - hpg * P)] = out[t];
        } else {
          for (int64_t t = 0; t < k; ++t) w.Cs[t * N + (j - hpg * P - N)] = out[t];
        }
        store_vec(p.window, p.in_dtype, woff, w1, p.window_s[1], cw.data());
        store_vec(p.window, p.in_dtype, woff + w1 * p.window_s[1], std::min(k, p.Kmax), p.window_s[1], xr.data());
      }
      for (int64_t hh = 0; hh < hpg; ++hh) {
        std::copy(&xconv[hh * k * P], &xconv[hh * k * P] + k * P, w.xs.begin());
        ssm_unit<Acc>(p, b, s, u0 + hh, cm, par, masks, w);
      }
    }
  }
}

}  // namespace

void verify_step(const VerifyStepParams& p) {
  if (p.use_fp64) verify_step_impl<double>(p);
  else verify_step_impl<float>(p);
}

void verify_step_fused(const VerifyStepParams& p) {
  if (p.use_fp64) fused_step_impl<double>(p);
  else fused_step_impl<float>(p);
}

void conv_verify_step(const ConvStepParams& p) {
  if (p.use_fp64) conv_step_impl<double>(p);
  else conv_step_impl<float>(p);
}

}  // namespace verify_cpu
}  // namespace mamba_kernels
#endif  // MK_VERIFY_CPU_DECLS_ONLY
