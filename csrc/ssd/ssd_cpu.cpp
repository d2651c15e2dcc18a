// C++ OpenMP CPU forward of the SSD scan. No torch headers.
//
// On a CPU the sequential form of the scan is the efficient one (the chunked form exists for tensor cores), and
// it computes the same function: per sequence and head, for each token t
//   dt_t = clamp(softplus(dt_t + dt_bias)),  h <- exp(dt_t A) h + dt_t x_t B_t^T,  y_t = h C_t + D x_t,
//   y_t <- y_t * silu(z_t).
// The state entering every chunk (a chunk starts every chunk_size tokens from each sequence start) is written to
// states_in, so the output matches the chunked algorithm's, including the prefix-caching chunk states.
#include <cmath>
#include <cstring>
#include <vector>

#include "ssd/ssd.h"

namespace mamba_kernels {
namespace {

template <typename T>
void run(const SsdFwdParams& P) {
  const int64_t l = P.seqlen, h = P.nheads, p = P.headdim, n = P.dstate, g = P.ngroups, Q = P.chunk_size;
  const int64_t hpg = h / g, pn = p * n;
  const T* x = static_cast<const T*>(P.x);
  const T* dt = static_cast<const T*>(P.dt);
  const T* A = static_cast<const T*>(P.A);
  const T* B = static_cast<const T*>(P.B);
  const T* C = static_cast<const T*>(P.C);
  const T* D = static_cast<const T*>(P.D);
  const T* z = static_cast<const T*>(P.z);
  const T* bias = static_cast<const T*>(P.dt_bias);
  const T* init = static_cast<const T*>(P.initial_states);
  T* out = static_cast<T*>(P.out);
  T* states_in = static_cast<T*>(P.states_in);
  T* final_states = static_cast<T*>(P.final_states);
  const int64_t nwork = P.nseq * h;
#pragma omp parallel
  {
    std::vector<T> st(pn);
#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < nwork; ++w) {
      const int64_t si = w / h, hh = w % h, grp = hh / hpg;
      const int64_t row = P.seq_info[si * 4], start = P.seq_info[si * 4 + 1], len = P.seq_info[si * 4 + 2],
                    slot0 = P.seq_info[si * 4 + 3];
      if (init) {
        std::memcpy(st.data(), init + (si * h + hh) * pn, sizeof(T) * pn);
      } else {
        std::fill(st.begin(), st.end(), T(0));
      }
      const T a = A[hh];
      for (int64_t t = 0; t < len; ++t) {
        const int64_t tok = row * l + start + t;
        if (t % Q == 0) std::memcpy(states_in + ((slot0 + t / Q) * h + hh) * pn, st.data(), sizeof(T) * pn);
        T d = dt[tok * h + hh];
        if (bias) d += bias[hh];
        if (P.dt_softplus) d = d <= T(20) ? std::log1p(std::exp(d)) : d;
        if (P.has_dt_limit) d = std::fmin(std::fmax(d, T(P.dt_min)), T(P.dt_max));
        const T decay = std::exp(d * a);
        const T* Bt = B + (tok * g + grp) * n;
        const T* Ct = C + (tok * g + grp) * n;
        const int64_t xo = (tok * h + hh) * p;
        for (int64_t pp = 0; pp < p; ++pp) {
          const T xv = x[xo + pp];
          const T xd = xv * d;
          T* s = st.data() + pp * n;
          T acc = 0;
          for (int64_t nn = 0; nn < n; ++nn) {
            const T v = s[nn] * decay + xd * Bt[nn];
            s[nn] = v;
            acc += v * Ct[nn];
          }
          if (D) acc += xv * (P.D_per_channel ? D[hh * p + pp] : D[hh]);
          if (z) {
            const T zv = z[xo + pp];
            acc *= zv / (T(1) + std::exp(-zv));
          }
          out[xo + pp] = acc;
        }
      }
      std::memcpy(final_states + (si * h + hh) * pn, st.data(), sizeof(T) * pn);
    }
  }
}

}  // namespace

int ssd_fwd_cpu(const SsdFwdParams& params) {
  switch (params.dtype) {
    case DType::kFloat32: run<float>(params); return 0;
    case DType::kFloat64: run<double>(params); return 0;
    default: return 1;
  }
}

}  // namespace mamba_kernels
