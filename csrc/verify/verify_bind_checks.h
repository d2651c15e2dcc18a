// Argument checks shared by the verify family's torch bindings (verify_bind_cpu.cpp, verify_bind_cuda.cpp):
// the sizes the three ops (_verify_step_*, _verify_step_fused_*, _conv_verify_step_*) read from their tensors
// and the shape relations between those tensors. What differs per backend (device, dtype and stride rules, the
// Kmax / width ranges a kernel supports) stays in the binding. The templates take either backend's params struct
// (same size field names: batch, k, H, P, N, G, S, R, Kmax, Pd, Pa, Na, dc, width); every tensor's number of
// dimensions is checked by the binding before it calls these.
// Narrow torch headers only and no CUDA header: the CPU binding includes it too.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>

#include "common/bind_utils.h"

namespace mamba_kernels {
namespace verify_checks {

// `name`: k = .. exceeds Kmax (k is the size of dim 1 of `name`).
inline void check_k(int64_t k, int64_t Kmax, const char* name) {
  TORCH_CHECK(k <= Kmax, name, ": k = ", k, " exceeds Kmax = ", Kmax);
}

// slots, accepted (batch,).
inline void check_slots_accepted(const at::Tensor& slots, const at::Tensor& accepted, int64_t batch) {
  TORCH_CHECK(slots.size(0) == batch && accepted.size(0) == batch, "slots / accepted: expected (b,)");
}

// parents (batch, k).
inline void check_parents(const at::Tensor& parents, int64_t batch, int64_t k) {
  TORCH_CHECK(parents.size(0) == batch && parents.size(1) == k, "parents: expected (b, k), got ", parents.sizes());
}

// Conv window (S, width - 1 + Kmax, dc): conv_window of the fused step, window of the conv step.
template <class Params>
void check_window(const Params& p, const at::Tensor& window, const char* name) {
  TORCH_CHECK(window.size(0) == p.S && window.size(1) == p.width - 1 + p.Kmax && window.size(2) == p.dc, name,
              ": expected (S, w - 1 + Kmax, dc), got ", window.sizes());
}

// ---- SSM step (plain and fused) ----

// Reads batch, k, S, H, P, N, R, Kmax, Pd, Pa, Na into p and checks the shapes of the tensors both SSM steps
// take. The kernels need min_kmax <= Kmax <= min(32, R).
template <class Params>
void ssm_sizes(Params& p, int64_t min_kmax, const at::Tensor& dt, const at::Tensor& A, const at::Tensor& state,
               const at::Tensor& ring_x, const at::Tensor& ring_B, const at::Tensor& ring_dt, const at::Tensor& meta,
               const at::Tensor& slots, const at::Tensor& accepted, const at::Tensor& y) {
  p.batch = y.size(0);
  p.k = y.size(1);
  p.S = state.size(0);
  p.H = state.size(1);
  p.P = state.size(2);
  p.N = state.size(3);
  p.R = ring_x.size(1);
  p.Kmax = meta.size(2) - 2;
  p.Pd = ring_dt.size(3);
  p.Pa = A.size(1);
  p.Na = A.size(2);
  TORCH_CHECK(p.Kmax >= min_kmax && p.Kmax <= 32 && p.Kmax <= p.R, "meta: need ", min_kmax,
              " <= Kmax <= min(32, R), got Kmax ", p.Kmax, " and R ", p.R);
  check_k(p.k, p.Kmax, "y");
  TORCH_CHECK(p.Pd == 1 || p.Pd == p.P, "ring_dt: last dim must be 1 or P");
  TORCH_CHECK(A.size(0) == p.H && (p.Pa == 1 || p.Pa == p.P) && (p.Na == 1 || p.Na == p.N),
              "A: expected (H, 1 | P, 1 | N), got ", A.sizes());
  TORCH_CHECK(y.size(2) == p.H && y.size(3) == p.P, "y: expected (b, k, H, P), got ", y.sizes());
  TORCH_CHECK(dt.size(0) == p.batch && dt.size(1) == p.k && dt.size(2) == p.H && dt.size(3) == p.Pd,
              "dt: expected (b, k, H, Pd), got ", dt.sizes());
  TORCH_CHECK(ring_x.size(0) == p.S && ring_x.size(2) == p.H && ring_x.size(3) == p.P, "ring_x: bad shape ",
              ring_x.sizes());
  TORCH_CHECK(ring_B.size(0) == p.S && ring_B.size(1) == p.R && ring_B.size(2) == p.H && ring_B.size(3) == p.N,
              "ring_B: bad shape ", ring_B.sizes());
  TORCH_CHECK(ring_dt.size(0) == p.S && ring_dt.size(1) == p.R && ring_dt.size(2) == p.H, "ring_dt: bad shape ",
              ring_dt.sizes());
  TORCH_CHECK(meta.size(0) == p.S && meta.size(1) == p.H, "meta: bad shape ", meta.sizes());
  check_slots_accepted(slots, accepted, p.batch);
}

// D (H, P).
template <class Params>
void check_D(const Params& p, const at::Tensor& D) {
  TORCH_CHECK(D.size(0) == p.H && D.size(1) == p.P, "D: expected (H, P), got ", D.sizes());
}

// z: the shape of y.
inline void check_z(const at::Tensor& z, const at::Tensor& y) {
  TORCH_CHECK(z.sizes() == y.sizes(), "z: expected ", y.sizes(), ", got ", z.sizes());
}

// dt_bias (H, Pd).
template <class Params>
void check_dt_bias(const Params& p, const at::Tensor& dt_bias) {
  TORCH_CHECK(dt_bias.size(0) == p.H && dt_bias.size(1) == p.Pd, "dt_bias: expected (H, Pd), got ",
              dt_bias.sizes());
}

// Plain step: x the shape of y.
inline void check_x(const at::Tensor& x, const at::Tensor& y) {
  TORCH_CHECK(x.sizes() == y.sizes(), "x: expected ", y.sizes(), ", got ", x.sizes());
}

// Plain step: B, C (b, k, G, N) with G dividing H; sets p.G.
template <class Params>
void BC_groups(Params& p, const at::Tensor& B, const at::Tensor& C) {
  p.G = B.size(2);
  TORCH_CHECK(p.G >= 1 && p.H % p.G == 0, "B: the number of groups must divide H");
  TORCH_CHECK(B.size(0) == p.batch && B.size(1) == p.k && B.size(3) == p.N && C.sizes() == B.sizes(),
              "B / C: expected (b, k, G, N), got ", B.sizes(), " and ", C.sizes());
}

// Fused step: the Mamba-2 step only (dt / dt_bias / ring_dt per unit, scalar A per unit).
template <class Params>
void check_mamba2(const Params& p) {
  TORCH_CHECK(p.Pd == 1 && p.Pa == 1 && p.Na == 1, "verify_step_fused is the Mamba-2 step (Pd = 1, A (H, 1, 1))");
}

// Fused step: xBC (b, k, dc); sets p.dc.
template <class Params>
void xBC_channels(Params& p, const at::Tensor& xBC) {
  p.dc = xBC.size(2);
  TORCH_CHECK(xBC.size(0) == p.batch && xBC.size(1) == p.k, "xBC: expected (b, k, dc), got ", xBC.sizes());
}

// Fused step, once the binding checked dc = H*P + 2*G*N for some G >= 1: sets p.G, which must divide H.
template <class Params>
void xBC_groups(Params& p) {
  p.G = (p.dc - p.H * p.P) / (2 * p.N);
  TORCH_CHECK(p.H % p.G == 0, "xBC: the number of groups must divide H");
}

// ---- conv step ----

// Reads batch, k, dc, width, S, Kmax into p.
template <class Params>
void conv_sizes(Params& p, const at::Tensor& x, const at::Tensor& window, const at::Tensor& meta,
                const at::Tensor& weight) {
  p.batch = x.size(0);
  p.k = x.size(1);
  p.dc = x.size(2);
  p.width = weight.size(1);
  p.S = window.size(0);
  p.Kmax = meta.size(1) - 1;
}

// Shapes of window, meta, out, slots, accepted (after the binding's Kmax and weight checks).
template <class Params>
void check_conv_shapes(const Params& p, const at::Tensor& x, const at::Tensor& window, const at::Tensor& meta,
                       const at::Tensor& out, const at::Tensor& slots, const at::Tensor& accepted) {
  check_window(p, window, "window");
  TORCH_CHECK(meta.size(0) == p.S, "meta: expected (S, 1 + Kmax), got ", meta.sizes());
  TORCH_CHECK(out.sizes() == x.sizes(), "out: expected ", x.sizes(), ", got ", out.sizes());
  check_slots_accepted(slots, accepted, p.batch);
}

}  // namespace verify_checks
}  // namespace mamba_kernels
