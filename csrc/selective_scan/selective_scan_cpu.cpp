// Mamba-1 selective scan on the CPU: OpenMP over channels, a sequential loop over time per channel,
// the n-vector state in a local buffer. All tensors are of one compute type T (float or double); the
// caller converts. See selective_scan.h for layouts and python_ref/selective_scan.py for the math.
#include <cmath>
#include <vector>

#include "selective_scan/selective_scan.h"

namespace mamba_kernels {
namespace {

template <typename T>
inline T softplus(T x) { return x <= T(20) ? std::log1p(std::exp(x)) : x; }

template <typename T>
inline T sigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }

// Sequence boundaries of state slot `slot` (a batch row, or a packed sequence).
inline void seq_range(const SelectiveScanParams& p, int64_t slot, int64_t* t0, int64_t* t1) {
  if (p.cu_seqlens) { *t0 = p.cu_seqlens[slot]; *t1 = p.cu_seqlens[slot + 1]; }
  else { *t0 = 0; *t1 = p.seqlen; }
}

// Per (batch row, channel) view of the inputs.
template <typename T>
struct Row {
  const T *u, *dt, *z, *A, *Bc, *Cc, *Bv, *Cv;  // Bc/Cc constant rows, Bv/Cv variable (dstate, seqlen)
  int64_t Bv_s, Cv_s;
  T D, bias;
  Row(const SelectiveScanParams& p, int64_t b, int64_t c) {
    u = static_cast<const T*>(p.u) + b * p.u_batch_stride + c * p.u_d_stride;
    dt = static_cast<const T*>(p.delta) + b * p.delta_batch_stride + c * p.delta_d_stride;
    z = p.z ? static_cast<const T*>(p.z) + b * p.z_batch_stride + c * p.z_d_stride : nullptr;
    A = static_cast<const T*>(p.A) + c * p.A_d_stride;
    const int64_t grp = c / (p.dim / p.n_groups);
    Bc = Cc = Bv = Cv = nullptr;
    if (p.is_variable_B) Bv = static_cast<const T*>(p.B) + b * p.B_batch_stride + grp * p.B_group_stride;
    else Bc = static_cast<const T*>(p.B) + c * p.B_d_stride;
    if (p.is_variable_C) Cv = static_cast<const T*>(p.C) + b * p.C_batch_stride + grp * p.C_group_stride;
    else Cc = static_cast<const T*>(p.C) + c * p.C_d_stride;
    Bv_s = p.B_dstate_stride; Cv_s = p.C_dstate_stride;
    D = p.D ? static_cast<const T*>(p.D)[c] : T(0);
    bias = p.delta_bias ? static_cast<const T*>(p.delta_bias)[c] : T(0);
  }
  inline T B(int64_t s, int64_t t) const { return Bv ? Bv[s * Bv_s + t] : Bc[s]; }
  inline T C(int64_t s, int64_t t) const { return Cv ? Cv[s * Cv_s + t] : Cc[s]; }
  inline T delta(int64_t t, bool sp) const { T x = dt[t] + bias; return sp ? softplus(x) : x; }
};

template <typename T>
void fwd_impl(const SelectiveScanParams& p) {
  const int64_t n = p.dstate;
  const int64_t nslots_per_row = p.cu_seqlens ? p.n_seqs : 1;
#pragma omp parallel
  {
    std::vector<T> h(n);
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < p.batch; ++b) {
      for (int64_t c = 0; c < p.dim; ++c) {
        const Row<T> r(p, b, c);
        T* out = static_cast<T*>(p.out) + b * p.out_batch_stride + c * p.out_d_stride;
        for (int64_t q = 0; q < nslots_per_row; ++q) {
          const int64_t slot = p.cu_seqlens ? q : b;
          int64_t t0, t1;
          seq_range(p, q, &t0, &t1);
          const int64_t soff = (slot * p.dim + c) * n;
          for (int64_t s = 0; s < n; ++s)
            h[s] = p.initial_state ? static_cast<const T*>(p.initial_state)[soff + s] : T(0);
          for (int64_t t = t0; t < t1; ++t) {
            const T dt = r.delta(t, p.delta_softplus);
            const T du = dt * r.u[t];
            T y = T(0);
            for (int64_t s = 0; s < n; ++s) {
              h[s] = std::exp(dt * r.A[s]) * h[s] + du * r.B(s, t);
              y += r.C(s, t) * h[s];
            }
            y += r.D * r.u[t];
            if (r.z) { const T zz = r.z[t]; y *= zz * sigmoid(zz); }
            out[t] = y;
          }
          if (p.last_state)
            for (int64_t s = 0; s < n; ++s) static_cast<T*>(p.last_state)[soff + s] = h[s];
        }
      }
    }
  }
}

// Backward. Parallel over channels (each thread owns dA/dD/dbias/constant dB,dC of its channels and
// loops over batch rows), per sequence: forward recompute keeping every state, then a reverse sweep
// with g = dL/dh_t:  g_t = C_t dy_t + exp(delta_{t+1} A) g_{t+1},  g_end = dlast_state.
template <typename T>
void bwd_impl(const SelectiveScanParams& p) {
  const int64_t n = p.dstate, L = p.seqlen;
  const int64_t nslots_per_row = p.cu_seqlens ? p.n_seqs : 1;
#pragma omp parallel
  {
    std::vector<T> hs, g(n), dAc(n), dBc(n), dCc(n), ys;
#pragma omp for schedule(static)
    for (int64_t c = 0; c < p.dim; ++c) {
      std::fill(dAc.begin(), dAc.end(), T(0));
      std::fill(dBc.begin(), dBc.end(), T(0));
      std::fill(dCc.begin(), dCc.end(), T(0));
      T dD = 0, dbias = 0;
      for (int64_t b = 0; b < p.batch; ++b) {
        const Row<T> r(p, b, c);
        const T* dout = static_cast<const T*>(p.dout) + b * p.dout_batch_stride + c * p.dout_d_stride;
        const int64_t row = (b * p.dim + c) * L;
        T* du = static_cast<T*>(p.du) + row;
        T* ddelta = static_cast<T*>(p.ddelta) + row;
        T* dz = p.z ? static_cast<T*>(p.dz) + row : nullptr;
        T* dBv = p.is_variable_B ? static_cast<T*>(p.dB) + row * n : nullptr;  // (dstate, seqlen)
        T* dCv = p.is_variable_C ? static_cast<T*>(p.dC) + row * n : nullptr;
        for (int64_t q = 0; q < nslots_per_row; ++q) {
          const int64_t slot = p.cu_seqlens ? q : b;
          int64_t t0, t1;
          seq_range(p, q, &t0, &t1);
          const int64_t len = t1 - t0, soff = (slot * p.dim + c) * n;
          hs.assign((len + 1) * n, T(0));  // hs[k] = state after k steps (hs[0] = initial)
          ys.assign(len, T(0));
          if (p.initial_state)
            for (int64_t s = 0; s < n; ++s) hs[s] = static_cast<const T*>(p.initial_state)[soff + s];
          for (int64_t k = 0; k < len; ++k) {
            const int64_t t = t0 + k;
            const T dt = r.delta(t, p.delta_softplus), du_ = dt * r.u[t];
            T y = 0;
            for (int64_t s = 0; s < n; ++s) {
              const T hv = std::exp(dt * r.A[s]) * hs[k * n + s] + du_ * r.B(s, t);
              hs[(k + 1) * n + s] = hv;
              y += r.C(s, t) * hv;
            }
            ys[k] = y + r.D * r.u[t];
          }
          for (int64_t s = 0; s < n; ++s)
            g[s] = p.dlast_state ? static_cast<const T*>(p.dlast_state)[soff + s] : T(0);
          for (int64_t k = len - 1; k >= 0; --k) {
            const int64_t t = t0 + k;
            const T raw = r.dt[t] + r.bias;
            const T dt = p.delta_softplus ? softplus(raw) : raw;
            const T ut = r.u[t];
            T dy = dout[t];
            if (r.z) {
              const T zz = r.z[t], sz = sigmoid(zz);
              dz[t] = dy * ys[k] * sz * (T(1) + zz * (T(1) - sz));
              dy *= zz * sz;
            }
            dD += dy * ut;
            T du_acc = dy * r.D, ddt = 0;
            for (int64_t s = 0; s < n; ++s) {
              const T hcur = hs[(k + 1) * n + s], hprev = hs[k * n + s];
              const T a = std::exp(dt * r.A[s]), Bs = r.B(s, t);
              const T gs = g[s] + r.C(s, t) * dy;
              const T dCs = dy * hcur, dBs = gs * dt * ut;
              if (dCv) dCv[s * L + t] = dCs; else dCc[s] += dCs;
              if (dBv) dBv[s * L + t] = dBs; else dBc[s] += dBs;
              du_acc += gs * dt * Bs;
              ddt += gs * (r.A[s] * a * hprev + Bs * ut);
              dAc[s] += gs * dt * a * hprev;
              g[s] = gs * a;
            }
            du[t] = du_acc;
            if (p.delta_softplus) ddt *= sigmoid(raw);
            ddelta[t] = ddt;
            dbias += ddt;
          }
          if (p.dinitial_state)
            for (int64_t s = 0; s < n; ++s) static_cast<T*>(p.dinitial_state)[soff + s] = g[s];
        }
      }
      for (int64_t s = 0; s < n; ++s) {
        static_cast<T*>(p.dA)[c * n + s] = dAc[s];
        if (!p.is_variable_B) static_cast<T*>(p.dB)[c * n + s] = dBc[s];
        if (!p.is_variable_C) static_cast<T*>(p.dC)[c * n + s] = dCc[s];
      }
      if (p.dD) static_cast<T*>(p.dD)[c] = dD;
      if (p.ddelta_bias) static_cast<T*>(p.ddelta_bias)[c] = dbias;
    }
  }
}

}  // namespace

void selective_scan_fwd_cpu(const SelectiveScanParams& p) {
  if (p.in_dtype == DType::kFloat64) fwd_impl<double>(p); else fwd_impl<float>(p);
}

void selective_scan_bwd_cpu(const SelectiveScanParams& p) {
  if (p.in_dtype == DType::kFloat64) bwd_impl<double>(p); else bwd_impl<float>(p);
}

}  // namespace mamba_kernels
