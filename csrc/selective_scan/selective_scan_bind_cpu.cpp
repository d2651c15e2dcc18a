// Torch binding of the CPU selective scan (goes into mamba_kernels._C). Thin: fills the params struct.
// The Python interface converts every tensor to one compute dtype (float32 or float64) first.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "common/bind_utils.h"
#include "selective_scan/selective_scan.h"

namespace mamba_kernels {
namespace {

void check_cpu(const at::Tensor& t, const char* name, at::ScalarType st) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == st, name, " must have dtype ", st, ", got ", t.scalar_type());
}

void check_contig(const at::Tensor& t, const char* name, at::ScalarType st) {
  check_cpu(t, name, st);
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

SelectiveScanParams make_params(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                const at::Tensor& B, const at::Tensor& C, const std::optional<at::Tensor>& D,
                                const std::optional<at::Tensor>& z, const std::optional<at::Tensor>& delta_bias,
                                const std::optional<at::Tensor>& initial_state,
                                const std::optional<at::Tensor>& cu_seqlens, bool delta_softplus) {
  const auto st = u.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kDouble, "u: CPU scan computes in float32/float64");
  TORCH_CHECK(u.dim() == 3 && u.stride(2) == 1, "u: expected (b, d, l) with contiguous l");
  check_cpu(u, "u", st);
  check_cpu(delta, "delta", st);
  TORCH_CHECK(delta.sizes() == u.sizes() && delta.stride(2) == 1, "delta: expected u's shape, contiguous l");
  check_contig(A, "A", st);
  SelectiveScanParams p;
  p.batch = u.size(0); p.dim = u.size(1); p.seqlen = u.size(2); p.dstate = A.size(1);
  p.in_dtype = to_dtype_code(u, "u");
  p.delta_softplus = delta_softplus;
  p.u = u.const_data_ptr(); p.u_batch_stride = u.stride(0); p.u_d_stride = u.stride(1);
  p.delta = delta.const_data_ptr(); p.delta_batch_stride = delta.stride(0); p.delta_d_stride = delta.stride(1);
  p.A = A.const_data_ptr(); p.A_d_stride = A.stride(0);
  check_contig(B, "B", st);
  check_contig(C, "C", st);
  p.is_variable_B = B.dim() == 4;
  p.is_variable_C = C.dim() == 4;
  p.n_groups = p.is_variable_B ? B.size(1) : (p.is_variable_C ? C.size(1) : 1);
  TORCH_CHECK(!(p.is_variable_B && p.is_variable_C) || B.size(1) == C.size(1), "B, C: group counts differ");
  p.B = B.const_data_ptr();
  if (p.is_variable_B) { p.B_batch_stride = B.stride(0); p.B_group_stride = B.stride(1); p.B_dstate_stride = B.stride(2); }
  else p.B_d_stride = B.stride(0);
  p.C = C.const_data_ptr();
  if (p.is_variable_C) { p.C_batch_stride = C.stride(0); p.C_group_stride = C.stride(1); p.C_dstate_stride = C.stride(2); }
  else p.C_d_stride = C.stride(0);
  if (D) { check_contig(*D, "D", st); p.D = D->const_data_ptr(); }
  if (delta_bias) { check_contig(*delta_bias, "delta_bias", st); p.delta_bias = delta_bias->const_data_ptr(); }
  if (z) {
    check_cpu(*z, "z", st);
    TORCH_CHECK(z->sizes() == u.sizes() && z->stride(2) == 1, "z: expected u's shape, contiguous l");
    p.z = z->const_data_ptr(); p.z_batch_stride = z->stride(0); p.z_d_stride = z->stride(1);
  }
  if (cu_seqlens) {
    check_contig(*cu_seqlens, "cu_seqlens", at::kLong);
    p.cu_seqlens = cu_seqlens->const_data_ptr<int64_t>();
    p.n_seqs = cu_seqlens->numel() - 1;
  }
  if (initial_state) { check_contig(*initial_state, "initial_state", st); p.initial_state = initial_state->const_data_ptr(); }
  return p;
}

void selective_scan_fwd_cpu_op(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                               const at::Tensor& B, const at::Tensor& C, const std::optional<at::Tensor>& D,
                               const std::optional<at::Tensor>& z, const std::optional<at::Tensor>& delta_bias,
                               const std::optional<at::Tensor>& initial_state,
                               const std::optional<at::Tensor>& cu_seqlens, bool delta_softplus, at::Tensor out,
                               at::Tensor last_state) {
  auto p = make_params(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, delta_softplus);
  check_cpu(out, "out", u.scalar_type());
  TORCH_CHECK(out.sizes() == u.sizes() && out.stride(2) == 1, "out: expected u's shape");
  check_contig(last_state, "last_state", u.scalar_type());
  p.out = out.data_ptr(); p.out_batch_stride = out.stride(0); p.out_d_stride = out.stride(1);
  p.last_state = last_state.data_ptr();
  selective_scan_fwd_cpu(p);
}

void selective_scan_bwd_cpu_op(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                               const at::Tensor& B, const at::Tensor& C, const std::optional<at::Tensor>& D,
                               const std::optional<at::Tensor>& z, const std::optional<at::Tensor>& delta_bias,
                               const std::optional<at::Tensor>& initial_state,
                               const std::optional<at::Tensor>& cu_seqlens, bool delta_softplus,
                               const at::Tensor& dout, const std::optional<at::Tensor>& dlast_state,
                               at::Tensor du, at::Tensor ddelta, at::Tensor dA, at::Tensor dB, at::Tensor dC,
                               at::Tensor dD, at::Tensor dz, at::Tensor ddelta_bias, at::Tensor dinitial_state) {
  auto p = make_params(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, delta_softplus);
  const auto st = u.scalar_type();
  check_cpu(dout, "dout", st);
  TORCH_CHECK(dout.sizes() == u.sizes() && dout.stride(2) == 1, "dout: expected u's shape");
  p.dout = dout.const_data_ptr(); p.dout_batch_stride = dout.stride(0); p.dout_d_stride = dout.stride(1);
  if (dlast_state) { check_contig(*dlast_state, "dlast_state", st); p.dlast_state = dlast_state->const_data_ptr(); }
  const int64_t nslots = p.cu_seqlens ? p.n_seqs : p.batch;
  check_contig(du, "du", st); TORCH_CHECK(du.sizes() == u.sizes(), "du: expected u's shape");
  check_contig(ddelta, "ddelta", st); TORCH_CHECK(ddelta.sizes() == u.sizes(), "ddelta: expected u's shape");
  check_contig(dA, "dA", st); TORCH_CHECK(dA.numel() == p.dim * p.dstate, "dA: expected (d, n)");
  check_contig(dB, "dB", st);
  check_contig(dC, "dC", st);
  const int64_t per_channel = p.batch * p.dim * p.dstate * p.seqlen;
  TORCH_CHECK(dB.numel() == (p.is_variable_B ? per_channel : p.dim * p.dstate), "dB: wrong size");
  TORCH_CHECK(dC.numel() == (p.is_variable_C ? per_channel : p.dim * p.dstate), "dC: wrong size");
  p.du = du.data_ptr(); p.ddelta = ddelta.data_ptr(); p.dA = dA.data_ptr(); p.dB = dB.data_ptr(); p.dC = dC.data_ptr();
  if (D) { check_contig(dD, "dD", st); TORCH_CHECK(dD.numel() == p.dim, "dD: expected (d,)"); p.dD = dD.data_ptr(); }
  if (z) { check_contig(dz, "dz", st); TORCH_CHECK(dz.sizes() == u.sizes(), "dz: expected u's shape"); p.dz = dz.data_ptr(); }
  if (delta_bias) {
    check_contig(ddelta_bias, "ddelta_bias", st);
    TORCH_CHECK(ddelta_bias.numel() == p.dim, "ddelta_bias: expected (d,)");
    p.ddelta_bias = ddelta_bias.data_ptr();
  }
  if (dinitial_state.numel() > 0) {
    check_contig(dinitial_state, "dinitial_state", st);
    TORCH_CHECK(dinitial_state.numel() == nslots * p.dim * p.dstate, "dinitial_state: expected (slots, d, n)");
    p.dinitial_state = dinitial_state.data_ptr();
  }
  selective_scan_bwd_cpu(p);
}

}  // namespace
}  // namespace mamba_kernels

TORCH_LIBRARY_FRAGMENT(mamba_kernels, m) {
  m.def("_selective_scan_fwd_cpu(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
        "Tensor? delta_bias, Tensor? initial_state, Tensor? cu_seqlens, bool delta_softplus, Tensor(a!) out, "
        "Tensor(b!) last_state) -> ()",
        &mamba_kernels::selective_scan_fwd_cpu_op);
  m.def("_selective_scan_bwd_cpu(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
        "Tensor? delta_bias, Tensor? initial_state, Tensor? cu_seqlens, bool delta_softplus, Tensor dout, "
        "Tensor? dlast_state, Tensor(a!) du, Tensor(b!) ddelta, Tensor(c!) dA, Tensor(d!) dB, Tensor(e!) dC, "
        "Tensor(f!) dD, Tensor(g!) dz, Tensor(h!) ddelta_bias, Tensor(i!) dinitial_state) -> ()",
        &mamba_kernels::selective_scan_bwd_cpu_op);
}
