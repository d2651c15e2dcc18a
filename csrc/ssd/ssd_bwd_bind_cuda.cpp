// Torch binding of the CUDA SSD backward (goes into mamba_kernels._cuda). Thin: checks, scratch, params struct.
//   torch.ops.mamba_kernels._ssd_bwd_cuda(...) writes dx, ddt, dA, dB, dC, dD, dz, ddt_bias, dinit in place (dD and
//   dz may be empty when D / z are absent; dD is (h, p) whatever D's shape).
// Scratch, allocated here (stream-ordered by the caching allocator): dtp, a, ddtp, da (b, h, l) fp32; dy (b, l, h, p)
// bf16 for bf16 inputs, else fp32; dS (n_slots, h, p, n) fp32; dalast (n_slots, h) fp32; cb, dcb (n_slots, g, Q, Q)
// bf16 / fp32; with the group kernels' heads split (ssd_bwd_group_split > 1) also dcb32 (n_slots, g, Q, Q) and dbc32
// (2, b, l, g, n) fp32.
// Called only from mamba_kernels/ssd/cuda_bwd.py, which has made every tensor contiguous, cast dt / A / D / dt_bias /
// states / state gradients to fp32, B / C / z / dout / ypre to x's dtype, cu_seqlens / chunk_offsets to int64.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>

#include "common/bind_utils.h"
#include "ssd/ssd.h"
#include "ssd/ssd_bind_sizes.h"

namespace mamba_kernels {
namespace {

void ssd_bwd_cuda_op(const at::Tensor& dout, const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A,
                     const at::Tensor& B, const at::Tensor& C, const std::optional<at::Tensor>& D,
                     const std::optional<at::Tensor>& z, const std::optional<at::Tensor>& dt_bias,
                     const std::optional<at::Tensor>& ypre, const at::Tensor& states_in,
                     const std::optional<at::Tensor>& d_final, const std::optional<at::Tensor>& d_states_in,
                     const std::optional<at::Tensor>& cu_seqlens, const std::optional<at::Tensor>& chunk_offsets,
                     int64_t chunk_size, bool dt_softplus, bool has_dt_limit, double dt_min, double dt_max,
                     at::Tensor& dx, at::Tensor& ddt, at::Tensor& dA, at::Tensor& dB, at::Tensor& dC, at::Tensor& dD,
                     at::Tensor& dz, at::Tensor& ddt_bias, at::Tensor& dinit) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 4, "x: expected a CUDA (b, l, h, p) tensor");
  const auto st = x.scalar_type();
  TORCH_CHECK_TYPE(st == at::kFloat || st == at::kHalf || st == at::kBFloat16, "x: expected fp32 / fp16 / bf16");
  SsdBwdCudaParams p;
  ssd_read_sizes(p, x, B, chunk_size);
  p.in_dtype = to_dtype_code(x, "x");
  const int64_t b = p.batch, l = p.seqlen, h = p.nheads, P = p.headdim, n = p.dstate, g = p.ngroups;
  const auto f32 = at::kFloat;
  check_cuda_dense(x, x, "x", st, b * l * h * P);
  check_cuda_dense(dout, x, "dout", st, b * l * h * P);
  check_cuda_dense(B, x, "B", st, b * l * g * n);
  check_cuda_dense(C, x, "C", st, b * l * g * n);
  check_cuda_dense(dt, x, "dt", f32, b * l * h);
  check_cuda_dense(A, x, "A", f32, h);
  p.nseq = b;
  if (cu_seqlens) {
    TORCH_CHECK(chunk_offsets.has_value() && b == 1, "cu_seqlens needs chunk_offsets and batch size 1");
    const int64_t m = cu_seqlens->numel();
    check_cuda_dense(*cu_seqlens, x, "cu_seqlens", at::kLong, m);
    check_cuda_dense(*chunk_offsets, x, "chunk_offsets", at::kLong, m);
    p.nseq = m - 1;
    p.cu_seqlens = cu_seqlens->const_data_ptr<int64_t>();
    p.chunk_offsets = chunk_offsets->const_data_ptr<int64_t>();
  }
  const int64_t nck = (l + chunk_size - 1) / chunk_size;
  p.n_slots = cu_seqlens ? std::max<int64_t>(nck + p.nseq - 1, 0) : b * nck;
  const int64_t hpn = h * P * n;
  check_cuda_dense(states_in, x, "states_in", f32, p.n_slots * hpn);
  p.states_in = states_in.const_data_ptr<float>();
  if (d_final) {
    check_cuda_dense(*d_final, x, "d_final", f32, p.nseq * hpn);
    p.d_final = d_final->const_data_ptr<float>();
  }
  if (d_states_in) {
    check_cuda_dense(*d_states_in, x, "d_states_in", f32, p.n_slots * hpn);
    p.d_states_in = d_states_in->const_data_ptr<float>();
  }
  if (D) {
    TORCH_CHECK(D->numel() == h || D->numel() == h * P, "D: expected (h) or (h, p)");
    check_cuda_dense(*D, x, "D", f32, D->numel());
    p.D = D->const_data_ptr<float>();
    p.D_per_channel = D->dim() == 2;
    check_cuda_dense(dD, x, "dD", f32, h * P);
    p.dD = dD.mutable_data_ptr<float>();
  }
  if (z) {
    TORCH_CHECK(ypre.has_value(), "z needs ypre");
    check_cuda_dense(*z, x, "z", st, b * l * h * P);
    check_cuda_dense(*ypre, x, "ypre", st, b * l * h * P);
    check_cuda_dense(dz, x, "dz", st, b * l * h * P);
    p.z = z->const_data_ptr();
    p.ypre = ypre->const_data_ptr();
    p.dz = dz.mutable_data_ptr();
  }
  if (dt_bias) { check_cuda_dense(*dt_bias, x, "dt_bias", f32, h); p.dt_bias = dt_bias->const_data_ptr<float>(); }
  check_cuda_dense(dx, x, "dx", st, b * l * h * P);
  check_cuda_dense(ddt, x, "ddt", f32, b * l * h);
  check_cuda_dense(dA, x, "dA", f32, h);
  check_cuda_dense(dB, x, "dB", st, b * l * g * n);
  check_cuda_dense(dC, x, "dC", st, b * l * g * n);
  check_cuda_dense(ddt_bias, x, "ddt_bias", f32, h);
  check_cuda_dense(dinit, x, "dinit", f32, p.nseq * hpn);
  p.dt_softplus = dt_softplus;
  p.has_dt_limit = has_dt_limit;
  p.dt_min = float(dt_min);
  p.dt_max = float(dt_max);
  p.x = x.const_data_ptr();
  p.dout = dout.const_data_ptr();
  p.B = B.const_data_ptr();
  p.C = C.const_data_ptr();
  p.dt = dt.const_data_ptr<float>();
  p.A = A.const_data_ptr<float>();
  p.dx = dx.mutable_data_ptr();
  p.ddt = ddt.mutable_data_ptr<float>();
  p.dA = dA.mutable_data_ptr<float>();
  p.dB = dB.mutable_data_ptr();
  p.dC = dC.mutable_data_ptr();
  p.ddt_bias = ddt_bias.mutable_data_ptr<float>();
  p.dinit = dinit.mutable_data_ptr<float>();
  c10::cuda::CUDAGuard guard(x.device());
  const auto o32 = x.options().dtype(f32);
  const auto ot = x.options().dtype(st == at::kBFloat16 ? at::kBFloat16 : f32);
  const int64_t hl = std::max<int64_t>(b * h * l, 1), slots = std::max<int64_t>(p.n_slots, 1);
  at::Tensor dtp = x.new_empty({hl}, o32), a = x.new_empty({hl}, o32), ddtp = x.new_empty({hl}, o32);
  at::Tensor da = x.new_empty({hl}, o32);
  at::Tensor dy = x.new_empty({std::max<int64_t>(b * l * h * P, 1)}, ot);
  at::Tensor dS = x.new_empty({slots * hpn}, o32), dalast = x.new_empty({slots * h}, o32);
  const bool split = ssd_bwd_group_split(h, g) > 1;  // then dcb32 replaces dcb
  at::Tensor cb = x.new_empty({slots * g * chunk_size * chunk_size}, ot);
  at::Tensor dcb = x.new_empty({split ? 1 : slots * g * chunk_size * chunk_size}, ot);
  p.dtp = dtp.mutable_data_ptr<float>();
  p.a = a.mutable_data_ptr<float>();
  p.ddtp = ddtp.mutable_data_ptr<float>();
  p.da = da.mutable_data_ptr<float>();
  p.dy = dy.mutable_data_ptr();
  p.dS = dS.mutable_data_ptr<float>();
  p.dalast = dalast.mutable_data_ptr<float>();
  p.cb = cb.mutable_data_ptr();
  p.dcb = dcb.mutable_data_ptr();
  at::Tensor dcb32, dbc32;  // head-split sums of the group kernels (zeroed by the launcher)
  if (split) {
    dcb32 = x.new_empty({slots * g * chunk_size * chunk_size}, o32);
    dbc32 = x.new_empty({std::max<int64_t>(2 * b * l * g * n, 1)}, o32);
    p.dcb32 = dcb32.mutable_data_ptr<float>();
    p.dbc32 = dbc32.mutable_data_ptr<float>();
  }
  const char* err = ssd_bwd_cuda(p, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == nullptr, "ssd_bwd_cuda: ", err ? err : "");
}

}  // namespace
}  // namespace mamba_kernels

TORCH_LIBRARY_FRAGMENT(mamba_kernels, m) {
  m.def(
      "_ssd_bwd_cuda(Tensor dout, Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
      "Tensor? dt_bias, Tensor? ypre, Tensor states_in, Tensor? d_final, Tensor? d_states_in, Tensor? cu_seqlens, "
      "Tensor? chunk_offsets, int chunk_size, bool dt_softplus, bool has_dt_limit, float dt_min, float dt_max, "
      "Tensor(a!) dx, Tensor(b!) ddt, Tensor(c!) dA, Tensor(d!) dB, Tensor(e!) dC, Tensor(f!) dD, Tensor(g!) dz, "
      "Tensor(h!) ddt_bias, Tensor(i!) dinit) -> ()",
      &mamba_kernels::ssd_bwd_cuda_op);
}
