// Torch bindings of the SSD head-walk CUDA stages (go into mamba_kernels._cuda). Thin: checks and the params structs
// (SsdWalkParams, SsdDxParams, SsdScanParams in ssd.h). Called only from mamba_kernels/ssd/cuda_walk.py inside the
// Triton forward / backward (triton.py), which owns every tensor's layout:
//   torch.ops.mamba_kernels._ssd_dx_cuda(...) writes dx and adds into the fp32 accumulators ddtp, da, dalast and dD
//   (when D is given); torch.ops.mamba_kernels._ssd_scan_cuda(...) writes out (and ypre when given);
//   torch.ops.mamba_kernels._ssd_state_cuda(...) writes states_in (the slots that hold a chunk) and final;
//   torch.ops.mamba_kernels._ssd_fused_walk_lab(...) (a lab, scripts/lab/ssd_fused_lab.py) writes out and final.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>

#include "common/bind_utils.h"
#include "ssd/ssd.h"

namespace mamba_kernels {
namespace {

// The fields both stages share; x (b, l, h, p) bf16 gives the sizes, rows (B or C) the groups.
SsdWalkParams walk_params(const at::Tensor& x, const at::Tensor& rows, const at::Tensor& cb, const at::Tensor& dtp,
                          const at::Tensor& a, const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& tab,
                          int64_t n_slots, int64_t num_ctas) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 4, "x: expected a CUDA (b, l, h, p) tensor");
  TORCH_CHECK_TYPE(x.scalar_type() == at::kBFloat16, "x: expected bf16");
  TORCH_CHECK(rows.dim() == 4, "B / C: expected (b, l, g, n)");
  const int64_t b = x.size(0), l = x.size(1), h = x.size(2), P = x.size(3), g = rows.size(2), n = rows.size(3);
  const int64_t Q = kSsdWalkChunk;
  TORCH_CHECK(P == kSsdWalkHeaddim && n == kSsdWalkDstate, "expected p = 64 and n = 128, got p = ", P, ", n = ", n);
  TORCH_CHECK(g >= 1 && h % g == 0, "B / C: the group count must divide the head count");
  TORCH_CHECK(n_slots >= 0, "n_slots: expected >= 0");
  const auto bf = at::kBFloat16, f32 = at::kFloat;
  const int64_t hl = b * h * l;
  check_cuda_dense(rows, x, "B / C", bf, b * l * g * n);
  TORCH_CHECK(cb.numel() >= n_slots * g * Q * Q, "cb: expected (n_slots, g, 128, 128)");
  check_cuda_dense(cb, x, "cb", bf, cb.numel());
  check_cuda_dense(dtp, x, "dtp", f32, hl);
  check_cuda_dense(a, x, "a", f32, hl);
  SsdWalkParams w;
  w.batch = b;
  w.seqlen = l;
  w.nheads = h;
  w.ngroups = g;
  w.n_slots = n_slots;
  w.chunks_per_row = (l + Q - 1) / Q;
  w.num_ctas = num_ctas;
  w.cb = cb.const_data_ptr();
  w.rows = rows.const_data_ptr();
  w.dtp = dtp.const_data_ptr<float>();
  w.a = a.const_data_ptr<float>();
  w.D = nullptr;
  w.D_per_channel = false;
  if (D) {
    TORCH_CHECK(D->numel() == h || D->numel() == h * P, "D: expected (h) or (h, p)");
    check_cuda_dense(*D, x, "D", f32, D->numel());
    w.D = D->const_data_ptr<float>();
    w.D_per_channel = D->numel() == h * P;
  }
  w.tab = nullptr;
  if (tab) {
    TORCH_CHECK(b == 1, "tab (cu_seqlens): expected batch size 1");
    check_cuda_dense(*tab, x, "tab", at::kInt, 2 * n_slots);
    w.tab = tab->const_data_ptr<int32_t>();
  } else {
    TORCH_CHECK(n_slots == b * w.chunks_per_row, "n_slots: expected ", b * w.chunks_per_row);
  }
  return w;
}

void ssd_dx_cuda_op(const at::Tensor& x, const at::Tensor& dy, const at::Tensor& B, const at::Tensor& cb,
                    const at::Tensor& dtp, const at::Tensor& a, const at::Tensor& dS, const std::optional<at::Tensor>& D,
                    const std::optional<at::Tensor>& tab, int64_t n_slots, int64_t num_ctas, at::Tensor& dx,
                    at::Tensor& ddtp, at::Tensor& da, at::Tensor& dalast, at::Tensor& dD) {
  SsdDxParams p;
  p.w = walk_params(x, B, cb, dtp, a, D, tab, n_slots, num_ctas);
  const int64_t xs = x.numel(), hl = dtp.numel(), h = p.w.nheads, slots = std::max<int64_t>(n_slots, 1);
  const auto bf = at::kBFloat16, f32 = at::kFloat;
  check_cuda_dense(dy, x, "dy", bf, xs);
  check_cuda_dense(dS, x, "dS", bf, slots * h * kSsdWalkHeaddim * kSsdWalkDstate);
  check_cuda_dense(dx, x, "dx", bf, xs);
  check_cuda_dense(ddtp, x, "ddtp", f32, hl);
  check_cuda_dense(da, x, "da", f32, hl);
  check_cuda_dense(dalast, x, "dalast", f32, slots * h);
  p.dD = nullptr;
  if (D) {
    check_cuda_dense(dD, x, "dD", f32, h * kSsdWalkHeaddim);
    p.dD = dD.mutable_data_ptr<float>();
  }
  p.x = x.const_data_ptr();
  p.dy = dy.const_data_ptr();
  p.dS = dS.const_data_ptr();
  p.dx = dx.mutable_data_ptr();
  p.ddtp = ddtp.mutable_data_ptr<float>();
  p.da = da.mutable_data_ptr<float>();
  p.dalast = dalast.mutable_data_ptr<float>();
  c10::cuda::CUDAGuard guard(x.device());
  const char* err = ssd_dx_cuda(p, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == nullptr, "ssd_dx_cuda: ", err ? err : "");
}

void ssd_scan_cuda_op(const at::Tensor& x, const std::optional<at::Tensor>& z, const at::Tensor& C, const at::Tensor& cb,
                      const at::Tensor& dtp, const at::Tensor& a, const at::Tensor& hin,
                      const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& tab, int64_t n_slots,
                      int64_t num_ctas, at::Tensor& out, const std::optional<at::Tensor>& ypre) {
  SsdScanParams p;
  p.w = walk_params(x, C, cb, dtp, a, D, tab, n_slots, num_ctas);
  const int64_t xs = x.numel(), slots = std::max<int64_t>(n_slots, 1);
  const auto bf = at::kBFloat16;
  check_cuda_dense(hin, x, "states_in", bf, slots * p.w.nheads * kSsdWalkHeaddim * kSsdWalkDstate);
  check_cuda_dense(out, x, "out", bf, xs);
  p.x = x.const_data_ptr();
  p.z = nullptr;
  if (z) {
    check_cuda_dense(*z, x, "z", bf, xs);
    p.z = z->const_data_ptr();
  }
  p.ypre = nullptr;
  if (ypre) {
    check_cuda_dense(*ypre, x, "ypre", bf, xs);
    p.ypre = ypre->mutable_data_ptr();
  }
  p.hin = hin.const_data_ptr();
  p.out = out.mutable_data_ptr();
  c10::cuda::CUDAGuard guard(x.device());
  const char* err = ssd_scan_cuda(p, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == nullptr, "ssd_scan_cuda: ", err ? err : "");
}

void ssd_state_cuda_op(const at::Tensor& x, const at::Tensor& B, const at::Tensor& dtp, const at::Tensor& a,
                       const std::optional<at::Tensor>& init, const std::optional<at::Tensor>& cu,
                       const std::optional<at::Tensor>& first, int64_t nseq, int64_t n_slots, int64_t num_ctas,
                       at::Tensor& states_in, at::Tensor& final_states) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 4, "x: expected a CUDA (b, l, h, p) tensor");
  TORCH_CHECK_TYPE(x.scalar_type() == at::kBFloat16, "x: expected bf16");
  TORCH_CHECK(B.dim() == 4, "B: expected (b, l, g, n)");
  const int64_t b = x.size(0), l = x.size(1), h = x.size(2), P = x.size(3), g = B.size(2), n = B.size(3);
  TORCH_CHECK(P == kSsdWalkHeaddim && n == kSsdWalkDstate, "expected p = 64 and n = 128, got p = ", P, ", n = ", n);
  TORCH_CHECK(g >= 1 && h % g == 0, "B: the group count must divide the head count");
  TORCH_CHECK(nseq >= 0 && n_slots >= 0, "nseq, n_slots: expected >= 0");
  const auto bf = at::kBFloat16, f32 = at::kFloat;
  const int64_t hl = b * h * l, pn = h * P * n;
  check_cuda_dense(B, x, "B", bf, b * l * g * n);
  check_cuda_dense(dtp, x, "dtp", f32, hl);
  check_cuda_dense(a, x, "a", f32, hl);
  check_cuda_dense(states_in, x, "states_in", bf, n_slots * pn);
  check_cuda_dense(final_states, x, "final", f32, nseq * pn);
  SsdStateParams p;
  p.batch = b;
  p.seqlen = l;
  p.nheads = h;
  p.ngroups = g;
  p.nseq = nseq;
  p.n_slots = n_slots;
  p.chunks_per_row = (l + kSsdWalkChunk - 1) / kSsdWalkChunk;
  p.num_ctas = num_ctas;
  p.x = x.const_data_ptr();
  p.B = B.const_data_ptr();
  p.dtp = dtp.const_data_ptr<float>();
  p.a = a.const_data_ptr<float>();
  p.init = nullptr;
  if (init) {
    check_cuda_dense(*init, x, "initial_states", f32, nseq * pn);
    p.init = init->const_data_ptr<float>();
  }
  p.cu = nullptr;
  p.first = nullptr;
  TORCH_CHECK(cu.has_value() == first.has_value(), "cu and first: expected both or neither");
  if (cu) {
    TORCH_CHECK(b == 1, "cu (cu_seqlens): expected batch size 1");
    check_cuda_dense(*cu, x, "cu", at::kInt, nseq + 1);
    check_cuda_dense(*first, x, "first", at::kInt, nseq);
    p.cu = cu->const_data_ptr<int32_t>();
    p.first = first->const_data_ptr<int32_t>();
  }
  p.hin = states_in.mutable_data_ptr();
  p.final_states = final_states.mutable_data_ptr<float>();
  c10::cuda::CUDAGuard guard(x.device());
  const char* err = ssd_state_cuda(p, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == nullptr, "ssd_state_cuda: ", err ? err : "");
}

// The fused walk (a lab: ssd_fused_walk_kernel.cuh; mamba_kernels/ssd/cuda_walk.py's fused_walk_lab).
void ssd_fused_walk_lab_op(const at::Tensor& x, const std::optional<at::Tensor>& z, const at::Tensor& B,
                           const at::Tensor& C, const std::optional<at::Tensor>& cb, const at::Tensor& dtp,
                           const at::Tensor& a,
                           const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& init, at::Tensor& out,
                           const std::optional<at::Tensor>& final_states, int64_t num_ctas,
                           const std::optional<at::Tensor>& scratch, const std::optional<at::Tensor>& flags) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 4, "x: expected a CUDA (b, l, h, p) tensor");
  TORCH_CHECK_TYPE(x.scalar_type() == at::kBFloat16, "x: expected bf16");
  TORCH_CHECK(B.dim() == 4 && C.dim() == 4, "B / C: expected (b, l, g, n)");
  const int64_t b = x.size(0), l = x.size(1), h = x.size(2), P = x.size(3), g = B.size(2), n = B.size(3);
  TORCH_CHECK(P == kSsdWalkHeaddim && n == kSsdWalkDstate, "expected p = 64 and n = 128, got p = ", P, ", n = ", n);
  TORCH_CHECK(g >= 1 && h % g == 0, "B / C: the group count must divide the head count");
  const auto bf = at::kBFloat16, f32 = at::kFloat;
  const int64_t xs = x.numel(), hl = b * h * l, nch = (l + kSsdFusedChunk - 1) / kSsdFusedChunk, pn = h * P * n;
  TORCH_CHECK(nch < (int64_t(1) << 31), "x: the sequence length must have fewer than 2^31 chunks of 64");
  check_cuda_dense(B, x, "B", bf, b * l * g * n);
  check_cuda_dense(C, x, "C", bf, b * l * g * n);
  if (cb) check_cuda_dense(*cb, x, "cb", bf, b * nch * g * kSsdFusedChunk * kSsdFusedChunk);
  check_cuda_dense(dtp, x, "dtp", f32, hl);
  check_cuda_dense(a, x, "a", f32, hl);
  check_cuda_dense(out, x, "out", bf, xs);
  SsdFusedWalkParams p;
  p.batch = b;
  p.seqlen = l;
  p.nheads = h;
  p.ngroups = g;
  p.x = x.const_data_ptr();
  p.z = nullptr;
  if (z) {
    check_cuda_dense(*z, x, "z", bf, xs);
    p.z = z->const_data_ptr();
  }
  p.B = B.const_data_ptr();
  p.C = C.const_data_ptr();
  p.cb = cb ? cb->const_data_ptr() : nullptr;
  p.dtp = dtp.const_data_ptr<float>();
  p.a = a.const_data_ptr<float>();
  p.D = nullptr;
  p.D_per_channel = false;
  if (D) {
    TORCH_CHECK(D->numel() == h || D->numel() == h * P, "D: expected (h) or (h, p)");
    check_cuda_dense(*D, x, "D", f32, D->numel());
    p.D = D->const_data_ptr<float>();
    p.D_per_channel = D->numel() == h * P;
  }
  p.init = nullptr;
  if (init) {
    check_cuda_dense(*init, x, "initial_states", f32, b * pn);
    p.init = init->const_data_ptr<float>();
  }
  p.out = out.mutable_data_ptr();
  p.final_states = nullptr;
  if (final_states) {
    check_cuda_dense(*final_states, x, "final", f32, b * pn);
    p.final_states = final_states->mutable_data_ptr<float>();
  }
  TORCH_CHECK(num_ctas >= 0, "num_ctas >= 0 expected");
  p.num_ctas = num_ctas;
  p.scratch = nullptr;
  p.flags = nullptr;
  TORCH_CHECK(scratch.has_value() == flags.has_value(), "scratch and flags: expected both or neither");
  if (scratch) {
    check_cuda_dense(*scratch, x, "scratch", f32, b * pn);
    check_cuda_dense(*flags, x, "flags", at::kInt, b * h);
    p.scratch = scratch->mutable_data_ptr<float>();
    p.flags = flags->mutable_data_ptr<int32_t>();
  }
  c10::cuda::CUDAGuard guard(x.device());
  const char* err = ssd_fused_walk_cuda(p, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == nullptr, "ssd_fused_walk_cuda: ", err ? err : "");
}

bool ssd_walk_fits_op(int64_t stage, int64_t device) {
  TORCH_CHECK(stage >= 0 && stage <= 2, "stage: expected 0 (dx), 1 (scan) or 2 (state)");
  return ssd_walk_fits(static_cast<int>(stage), static_cast<int>(device));
}

}  // namespace
}  // namespace mamba_kernels

TORCH_LIBRARY_FRAGMENT(mamba_kernels, m) {
  m.def(
      "_ssd_dx_cuda(Tensor x, Tensor dy, Tensor B, Tensor cb, Tensor dtp, Tensor a, Tensor dS, Tensor? D, "
      "Tensor? tab, int n_slots, int num_ctas, Tensor(a!) dx, Tensor(b!) ddtp, Tensor(c!) da, Tensor(d!) dalast, "
      "Tensor(e!) dD) -> ()",
      &mamba_kernels::ssd_dx_cuda_op);
  m.def(
      "_ssd_scan_cuda(Tensor x, Tensor? z, Tensor C, Tensor cb, Tensor dtp, Tensor a, Tensor states_in, Tensor? D, "
      "Tensor? tab, int n_slots, int num_ctas, Tensor(a!) out, Tensor(b!)? ypre) -> ()",
      &mamba_kernels::ssd_scan_cuda_op);
  m.def(
      "_ssd_state_cuda(Tensor x, Tensor B, Tensor dtp, Tensor a, Tensor? init, Tensor? cu, Tensor? first, int nseq, "
      "int n_slots, int num_ctas, Tensor(a!) states_in, Tensor(b!) final) -> ()",
      &mamba_kernels::ssd_state_cuda_op);
  m.def("_ssd_walk_fits(int stage, int device) -> bool", &mamba_kernels::ssd_walk_fits_op);
  m.def(
      "_ssd_fused_walk_lab(Tensor x, Tensor? z, Tensor B, Tensor C, Tensor? cb, Tensor dtp, Tensor a, Tensor? D, "
      "Tensor? init, Tensor(a!) out, Tensor(b!)? final, int num_ctas, Tensor(c!)? scratch, Tensor(d!)? flags) -> ()",
      &mamba_kernels::ssd_fused_walk_lab_op);
}
