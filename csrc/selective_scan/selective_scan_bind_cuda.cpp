// Torch binding of the CUDA selective scan (goes into mamba_kernels._cuda). Thin: checks + params struct.
// The Python interface has already cast: u/delta/z/dout/variable B,C to one dtype (fp32/fp16/bf16, time axis
// contiguous); A, constant B/C, D, delta_bias, initial_state, dlast_state to contiguous fp32; cu_seqlens to
// int64.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/bind_utils.h"
#include "selective_scan/selective_scan.h"

namespace mamba_kernels {
namespace {

void check_on(const at::Tensor& t, const at::Tensor& ref, const char* name) {
  TORCH_CHECK(t.is_cuda() && t.device() == ref.device(), name, " must be a CUDA tensor on ", ref.device());
}

void check_f32(const at::Tensor& t, const at::Tensor& ref, const char* name) {
  check_on(t, ref, name);
  TORCH_CHECK(t.scalar_type() == at::kFloat && t.is_contiguous(), name, " must be contiguous float32");
}

int64_t n_slots(const SelectiveScanParams& p) { return p.cu_seqlens ? p.n_seqs : p.batch; }

void check_act(const at::Tensor& t, const at::Tensor& u, const char* name) {
  check_on(t, u, name);
  TORCH_CHECK(t.scalar_type() == u.scalar_type(), name, " must have u's dtype ", u.scalar_type());
  TORCH_CHECK(t.sizes() == u.sizes(), name, " must have u's shape");
  TORCH_CHECK(t.stride(2) == 1, name, ": the time axis must be contiguous");
}

SelectiveScanParams make_params(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                const at::Tensor& B, const at::Tensor& C, const std::optional<at::Tensor>& D,
                                const std::optional<at::Tensor>& z, const std::optional<at::Tensor>& delta_bias,
                                const std::optional<at::Tensor>& initial_state,
                                const std::optional<at::Tensor>& cu_seqlens, bool delta_softplus) {
  TORCH_CHECK(u.is_cuda() && u.dim() == 3 && u.stride(2) == 1, "u: expected a CUDA (b, d, l) tensor, contiguous l");
  const auto st = u.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kHalf || st == at::kBFloat16, "u: dtype must be fp32/fp16/bf16");
  check_act(delta, u, "delta");
  check_f32(A, u, "A");
  SelectiveScanParams p;
  p.batch = u.size(0); p.dim = u.size(1); p.seqlen = u.size(2); p.dstate = A.size(1);
  TORCH_CHECK(A.dim() == 2 && A.size(0) == p.dim, "A: expected (d, n)");
  TORCH_CHECK(p.dstate >= 1 && p.dstate <= 256, "A: n must be in [1, 256]");
  p.in_dtype = to_dtype_code(u, "u");
  p.delta_softplus = delta_softplus;
  p.u = u.const_data_ptr(); p.u_batch_stride = u.stride(0); p.u_d_stride = u.stride(1);
  p.delta = delta.const_data_ptr(); p.delta_batch_stride = delta.stride(0); p.delta_d_stride = delta.stride(1);
  p.A = A.const_data_ptr(); p.A_d_stride = A.stride(0);
  p.is_variable_B = B.dim() == 4;
  p.is_variable_C = C.dim() == 4;
  const at::Tensor* BC[2] = {&B, &C};
  const char* names[2] = {"B", "C"};
  for (int k = 0; k < 2; ++k) {
    const at::Tensor& X = *BC[k];
    if (X.dim() == 4) {
      check_on(X, u, names[k]);
      TORCH_CHECK(X.scalar_type() == st, names[k], ": variable B/C must have u's dtype");
      TORCH_CHECK(X.size(0) == p.batch && X.size(2) == p.dstate && X.size(3) == p.seqlen && X.stride(3) == 1,
                  names[k], ": expected (b, g, n, l) with contiguous l");
      TORCH_CHECK(X.size(1) >= 1 && p.dim % X.size(1) == 0, names[k], ": groups must divide d");
      p.n_groups = X.size(1);
    } else {
      check_f32(X, u, names[k]);
      TORCH_CHECK(X.dim() == 2 && X.size(0) == p.dim && X.size(1) == p.dstate, names[k], ": expected (d, n)");
    }
  }
  TORCH_CHECK(!(p.is_variable_B && p.is_variable_C) || B.size(1) == C.size(1), "B, C: group counts differ");
  if (p.is_variable_B) { p.B_batch_stride = B.stride(0); p.B_group_stride = B.stride(1); p.B_dstate_stride = B.stride(2); }
  else p.B_d_stride = B.stride(0);
  if (p.is_variable_C) { p.C_batch_stride = C.stride(0); p.C_group_stride = C.stride(1); p.C_dstate_stride = C.stride(2); }
  else p.C_d_stride = C.stride(0);
  p.B = B.const_data_ptr();
  p.C = C.const_data_ptr();
  if (D) { check_f32(*D, u, "D"); TORCH_CHECK(D->numel() == p.dim, "D: expected (d,)"); p.D = D->const_data_ptr(); }
  if (delta_bias) {
    check_f32(*delta_bias, u, "delta_bias");
    TORCH_CHECK(delta_bias->numel() == p.dim, "delta_bias: expected (d,)");
    p.delta_bias = delta_bias->const_data_ptr();
  }
  if (z) { check_act(*z, u, "z"); p.z = z->const_data_ptr(); p.z_batch_stride = z->stride(0); p.z_d_stride = z->stride(1); }
  if (cu_seqlens) {
    check_on(*cu_seqlens, u, "cu_seqlens");
    TORCH_CHECK(cu_seqlens->scalar_type() == at::kLong && cu_seqlens->is_contiguous() && cu_seqlens->dim() == 1,
                "cu_seqlens: expected contiguous int64 (nseq + 1,)");
    TORCH_CHECK(p.batch == 1, "cu_seqlens: needs batch size 1");
    p.cu_seqlens = cu_seqlens->const_data_ptr<int64_t>();
    p.n_seqs = cu_seqlens->numel() - 1;
  }
  if (initial_state) {
    check_f32(*initial_state, u, "initial_state");
    TORCH_CHECK(initial_state->numel() == n_slots(p) * p.dim * p.dstate, "initial_state: expected (slots, d, n)");
    p.initial_state = initial_state->const_data_ptr();
  }
  return p;
}

// Chunk-entry states (b, d, n_chunks, n) fp32 saved by the forward every ckpt_chunk steps (a power of two);
// n_chunks >= ceil(l / ckpt_chunk) (+ the number of sequences with varlen, whose chunks restart per sequence).
void set_states(SelectiveScanParams& p, at::Tensor& states, int64_t ckpt_chunk, const at::Tensor& u) {
  TORCH_CHECK(ckpt_chunk >= 1 && ckpt_chunk <= 256 && (ckpt_chunk & (ckpt_chunk - 1)) == 0,
              "ckpt_chunk: expected a power of two in [1, 256], got ", ckpt_chunk);
  check_f32(states, u, "states");
  const int64_t need = (p.seqlen + ckpt_chunk - 1) / ckpt_chunk + (p.cu_seqlens ? p.n_seqs : 0);
  TORCH_CHECK(states.dim() == 4 && states.size(0) == p.batch && states.size(1) == p.dim &&
                  states.size(2) >= need && states.size(3) == p.dstate,
              "states: expected (b, d, n_chunks >= ", need, ", n) float32");
  p.states = states.data_ptr();
  p.states_n_chunks = states.size(2);
  p.ckpt_log2 = 0;
  while ((int64_t(1) << p.ckpt_log2) < ckpt_chunk) ++p.ckpt_log2;
}

void selective_scan_fwd_cuda_op(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                const at::Tensor& B, const at::Tensor& C, const std::optional<at::Tensor>& D,
                                const std::optional<at::Tensor>& z, const std::optional<at::Tensor>& delta_bias,
                                const std::optional<at::Tensor>& initial_state,
                                const std::optional<at::Tensor>& cu_seqlens, bool delta_softplus, at::Tensor out,
                                at::Tensor last_state, at::Tensor states, int64_t ckpt_chunk) {
  auto p = make_params(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, delta_softplus);
  c10::cuda::CUDAGuard guard(u.device());
  check_act(out, u, "out");
  p.out = out.data_ptr(); p.out_batch_stride = out.stride(0); p.out_d_stride = out.stride(1);
  check_f32(last_state, u, "last_state");
  TORCH_CHECK(last_state.numel() == n_slots(p) * p.dim * p.dstate, "last_state: expected (slots, d, n)");
  p.last_state = last_state.data_ptr();
  if (states.numel() > 0) set_states(p, states, ckpt_chunk, u);  // empty: inference, nothing saved
  const char* err = selective_scan_fwd_cuda(p, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == nullptr, "selective_scan_fwd_cuda: ", err ? err : "");
}

void check_grad(const at::Tensor& t, at::ScalarType st, const at::Tensor& u, int64_t numel, const char* name) {
  check_on(t, u, name);
  TORCH_CHECK(t.scalar_type() == st && t.is_contiguous(), name, " must be contiguous ", st);
  TORCH_CHECK(t.numel() == numel, name, ": expected ", numel, " elements, got ", t.numel());
}

// Gradients: du, ddelta, dz of u's dtype, written; dA, dB, dC, dD, ddelta_bias fp32, zeroed here, then
// accumulated by the kernel; dinitial_state fp32 (empty when there is no initial state), written.
void selective_scan_bwd_cuda_op(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                const at::Tensor& B, const at::Tensor& C, const std::optional<at::Tensor>& D,
                                const std::optional<at::Tensor>& z, const std::optional<at::Tensor>& delta_bias,
                                const std::optional<at::Tensor>& initial_state,
                                const std::optional<at::Tensor>& cu_seqlens, bool delta_softplus,
                                at::Tensor states, int64_t ckpt_chunk, const at::Tensor& dout,
                                const std::optional<at::Tensor>& dlast_state, at::Tensor du, at::Tensor ddelta,
                                at::Tensor dA, at::Tensor dB, at::Tensor dC, at::Tensor dD, at::Tensor dz,
                                at::Tensor ddelta_bias, at::Tensor dinitial_state) {
  auto p = make_params(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, delta_softplus);
  c10::cuda::CUDAGuard guard(u.device());
  set_states(p, states, ckpt_chunk, u);  // the states saved by the forward (no elements when l == 0)
  check_act(dout, u, "dout");
  p.dout = dout.const_data_ptr(); p.dout_batch_stride = dout.stride(0); p.dout_d_stride = dout.stride(1);
  const int64_t slots_dn = n_slots(p) * p.dim * p.dstate;
  if (dlast_state) {
    check_f32(*dlast_state, u, "dlast_state");
    TORCH_CHECK(dlast_state->numel() == slots_dn, "dlast_state: expected (slots, d, n)");
    p.dlast_state = dlast_state->const_data_ptr();
  }
  const auto st = u.scalar_type();
  const int64_t bdl = p.batch * p.dim * p.seqlen;
  check_grad(du, st, u, bdl, "du");
  check_grad(ddelta, st, u, bdl, "ddelta");
  p.du = du.data_ptr(); p.ddelta = ddelta.data_ptr();
  if (z) { check_grad(dz, st, u, bdl, "dz"); p.dz = dz.data_ptr(); }
  check_grad(dA, at::kFloat, u, p.dim * p.dstate, "dA");
  check_grad(dB, at::kFloat, u, p.is_variable_B ? p.batch * p.n_groups * p.dstate * p.seqlen : p.dim * p.dstate, "dB");
  check_grad(dC, at::kFloat, u, p.is_variable_C ? p.batch * p.n_groups * p.dstate * p.seqlen : p.dim * p.dstate, "dC");
  dA.zero_(); dB.zero_(); dC.zero_();
  p.dA = dA.data_ptr(); p.dB = dB.data_ptr(); p.dC = dC.data_ptr();
  if (D) { check_grad(dD, at::kFloat, u, p.dim, "dD"); dD.zero_(); p.dD = dD.data_ptr(); }
  if (delta_bias) {
    check_grad(ddelta_bias, at::kFloat, u, p.dim, "ddelta_bias");
    ddelta_bias.zero_();
    p.ddelta_bias = ddelta_bias.data_ptr();
  }
  if (initial_state) {
    check_grad(dinitial_state, at::kFloat, u, slots_dn, "dinitial_state");
    p.dinitial_state = dinitial_state.data_ptr();
  }
  const char* err = selective_scan_bwd_cuda(p, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == nullptr, "selective_scan_bwd_cuda: ", err ? err : "");
}

bool selective_scan_bwd_fits_op(int64_t dstate, bool var_b, bool var_c, int64_t device) {
  return selective_scan_bwd_fits(dstate, var_b, var_c, static_cast<int>(device));
}

int64_t selective_scan_ckpt_chunk_op(int64_t dstate, bool var_b, bool var_c) {
  return selective_scan_cuda_ckpt_chunk(dstate, var_b, var_c);
}

}  // namespace
}  // namespace mamba_kernels

TORCH_LIBRARY_FRAGMENT(mamba_kernels, m) {
  m.def("_selective_scan_bwd_fits(int dstate, bool var_B, bool var_C, int device) -> bool",
        &mamba_kernels::selective_scan_bwd_fits_op);
  m.def("_selective_scan_ckpt_chunk(int dstate, bool var_B, bool var_C) -> int",
        &mamba_kernels::selective_scan_ckpt_chunk_op);
  m.def("_selective_scan_fwd_cuda(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
        "Tensor? delta_bias, Tensor? initial_state, Tensor? cu_seqlens, bool delta_softplus, Tensor(a!) out, "
        "Tensor(b!) last_state, Tensor(c!) states, int ckpt_chunk) -> ()",
        &mamba_kernels::selective_scan_fwd_cuda_op);
  m.def("_selective_scan_bwd_cuda(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
        "Tensor? delta_bias, Tensor? initial_state, Tensor? cu_seqlens, bool delta_softplus, Tensor states, "
        "int ckpt_chunk, Tensor dout, Tensor? dlast_state, Tensor(a!) du, Tensor(b!) ddelta, Tensor(c!) dA, "
        "Tensor(d!) dB, Tensor(e!) dC, Tensor(f!) dD, Tensor(g!) dz, Tensor(h!) ddelta_bias, "
        "Tensor(i!) dinitial_state) -> ()",
        &mamba_kernels::selective_scan_bwd_cuda_op);
}
