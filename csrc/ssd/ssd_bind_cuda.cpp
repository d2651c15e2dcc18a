// Torch binding of the CUDA SSD forward (goes into mamba_kernels._cuda). Thin: checks + params struct.
//   torch.ops.mamba_kernels._ssd_fwd_cuda(...) writes out, ypre (when not empty), states_in (when not empty) and
//   final_states (when not empty) in place: the chunk-parallel pipeline (csrc/ssd/ssd_chunk_kernel.cuh), or the
//   fused kernel when MK_SSD_CUDA_FUSED=1 (read once by the launcher).
//   torch.ops.mamba_kernels._ssd_fwd_cuda_fused(...): same arguments, always the fused kernel (ssd_fwd_kernel.cuh).
// The pipeline needs (allocated here, stream-ordered by the caching allocator): a workspace passed as chunk_decay
// (ssd_chunk_workspace_words: chunk decays, or the hand-over flags and ticket counter),
// and, only when states_in is empty, a scratch (n_slots, h, p, n) fp32 for the chunk states (n_slots:
// states_in.size(0), else b * ceil(l / Q), varlen ceil(l / Q) + nseq - 1).
// Called only from mamba_kernels/ssd/cuda.py, which has cast B, C, z to x's dtype, dt to x's dtype or fp32, A, D,
// dt_bias, initial_states to contiguous fp32, cu_seqlens / chunk_offsets to int64, and zero-filled states_in for
// varlen (unused chunk slots stay zero).
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

void check_on(const at::Tensor& t, const at::Tensor& x, const char* name) {
  TORCH_CHECK(t.is_cuda() && t.device() == x.device(), name, ": expected a CUDA tensor on ", x.device());
}

// (b, l, m, k) tensor of x's dtype with a contiguous last dimension
void check_act(const at::Tensor& t, const at::Tensor& x, const char* name, int64_t m, int64_t k) {
  check_on(t, x, name);
  TORCH_CHECK_TYPE(t.scalar_type() == x.scalar_type(), name, ": expected x's dtype ", x.scalar_type());
  TORCH_CHECK(t.dim() == 4 && t.size(0) == x.size(0) && t.size(1) == x.size(1) && t.size(2) == m && t.size(3) == k,
              name, ": expected shape (", x.size(0), ", ", x.size(1), ", ", m, ", ", k, "), got ", t.sizes());
  TORCH_CHECK(t.stride(3) == 1 || k == 1, name, ": the last dimension must be contiguous");
}

void ssd_fwd_cuda_op(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                     const at::Tensor& C, const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& z,
                     const std::optional<at::Tensor>& dt_bias, const std::optional<at::Tensor>& initial_states,
                     const std::optional<at::Tensor>& cu_seqlens, const std::optional<at::Tensor>& chunk_offsets,
                     int64_t chunk_size, bool dt_softplus, bool has_dt_limit, double dt_min, double dt_max,
                     at::Tensor& out, at::Tensor& ypre, at::Tensor& states_in, at::Tensor& final_states, int path) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 4, "x: expected a CUDA (b, l, h, p) tensor");
  const auto st = x.scalar_type();
  TORCH_CHECK_TYPE(st == at::kFloat || st == at::kHalf || st == at::kBFloat16, "x: expected fp32 / fp16 / bf16, got ",
                   st);
  TORCH_CHECK(x.stride(3) == 1 || x.size(3) == 1, "x: the last dimension must be contiguous");
  SsdFwdCudaParams p;
  ssd_read_sizes(p, x, B, chunk_size);
  TORCH_CHECK(p.dstate >= 1 && p.dstate <= kSsdCudaMaxDstate, "B: n must be in [1, ", kSsdCudaMaxDstate, "]");
  TORCH_CHECK(chunk_size % kSsdCudaChunkMultiple == 0, "chunk_size must be a multiple of ", kSsdCudaChunkMultiple);
  p.in_dtype = to_dtype_code(x, "x");
  check_act(B, x, "B", p.ngroups, p.dstate);
  check_act(C, x, "C", p.ngroups, p.dstate);
  check_act(out, x, "out", p.nheads, p.headdim);
  check_on(dt, x, "dt");
  TORCH_CHECK(dt.dim() == 3 && dt.size(0) == p.batch && dt.size(1) == p.seqlen && dt.size(2) == p.nheads,
              "dt: expected (b, l, h)");
  TORCH_CHECK_TYPE(dt.scalar_type() == st || dt.scalar_type() == at::kFloat, "dt: expected x's dtype or float32");
  p.dt_f32 = dt.scalar_type() == at::kFloat;
  check_cuda_dense(A, x, "A", at::kFloat, p.nheads);
  p.nseq = p.batch;
  if (cu_seqlens) {
    TORCH_CHECK(chunk_offsets.has_value(), "cu_seqlens needs chunk_offsets");
    TORCH_CHECK(p.batch == 1, "cu_seqlens: needs batch size 1");
    for (const at::Tensor* t : {&*cu_seqlens, &*chunk_offsets}) {
      check_on(*t, x, "cu_seqlens / chunk_offsets");
      TORCH_CHECK(t->scalar_type() == at::kLong && t->is_contiguous() && t->dim() == 1 &&
                      t->numel() == cu_seqlens->numel(),
                  "cu_seqlens / chunk_offsets: expected contiguous int64 (nseq + 1,)");
    }
    p.nseq = cu_seqlens->numel() - 1;
    p.cu_seqlens = cu_seqlens->const_data_ptr<int64_t>();
    p.chunk_offsets = chunk_offsets->const_data_ptr<int64_t>();
  }
  const int64_t hpn = p.nheads * p.headdim * p.dstate;
  if (D) {
    TORCH_CHECK(D->numel() == p.nheads || D->numel() == p.nheads * p.headdim, "D: expected (h) or (h, p)");
    check_cuda_dense(*D, x, "D", at::kFloat, D->numel());
    p.D = D->const_data_ptr<float>();
    p.D_per_channel = D->dim() == 2;
  }
  if (z) {
    check_act(*z, x, "z", p.nheads, p.headdim);
    p.z = z->const_data_ptr();
    p.z_batch_stride = z->stride(0); p.z_l_stride = z->stride(1); p.z_head_stride = z->stride(2);
  }
  if (dt_bias) {
    check_cuda_dense(*dt_bias, x, "dt_bias", at::kFloat, p.nheads);
    p.dt_bias = dt_bias->const_data_ptr<float>();
  }
  if (initial_states) {
    check_cuda_dense(*initial_states, x, "initial_states", at::kFloat, p.nseq * hpn);
    p.initial_states = initial_states->const_data_ptr<float>();
  }
  p.dt_softplus = dt_softplus;
  p.has_dt_limit = has_dt_limit;
  p.dt_min = float(dt_min);
  p.dt_max = float(dt_max);
  p.x = x.const_data_ptr();
  p.x_batch_stride = x.stride(0); p.x_l_stride = x.stride(1); p.x_head_stride = x.stride(2);
  p.dt = dt.const_data_ptr();
  p.dt_batch_stride = dt.stride(0); p.dt_l_stride = dt.stride(1); p.dt_head_stride = dt.stride(2);
  p.A = A.const_data_ptr<float>();
  p.B = B.const_data_ptr();
  p.B_batch_stride = B.stride(0); p.B_l_stride = B.stride(1); p.B_group_stride = B.stride(2);
  p.C = C.const_data_ptr();
  p.C_batch_stride = C.stride(0); p.C_l_stride = C.stride(1); p.C_group_stride = C.stride(2);
  p.out = out.mutable_data_ptr();
  p.out_batch_stride = out.stride(0); p.out_l_stride = out.stride(1); p.out_head_stride = out.stride(2);
  if (ypre.numel() > 0 && z) {
    check_act(ypre, x, "ypre", p.nheads, p.headdim);
    TORCH_CHECK(ypre.strides() == out.strides(), "ypre: expected out's strides");
    p.ypre = ypre.mutable_data_ptr();
  }
  if (states_in.numel() > 0) {
    check_on(states_in, x, "states_in");
    TORCH_CHECK(states_in.scalar_type() == at::kFloat && states_in.is_contiguous() && states_in.dim() == 4 &&
                    states_in.size(1) == p.nheads && states_in.size(2) == p.headdim && states_in.size(3) == p.dstate,
                "states_in: expected contiguous float32 (n_slots, h, p, n)");
    const int64_t need = p.cu_seqlens ? 0 : p.batch * ((p.seqlen + chunk_size - 1) / chunk_size);
    TORCH_CHECK(states_in.size(0) >= need, "states_in: expected at least ", need, " chunk slots");
    p.states_in = states_in.mutable_data_ptr<float>();
  }
  if (final_states.numel() > 0) {
    check_cuda_dense(final_states, x, "final_states", at::kFloat, p.nseq * hpn);
    p.final_states = final_states.mutable_data_ptr<float>();
  }
  c10::cuda::CUDAGuard guard(x.device());
  p.path = path;
  at::Tensor scratch, decay;
  if (ssd_fwd_cuda_chunked(path)) {
    const int64_t nck = (p.seqlen + chunk_size - 1) / chunk_size;
    p.n_slots = states_in.numel() > 0 ? states_in.size(0)
                : (p.cu_seqlens ? std::max<int64_t>(nck + p.nseq - 1, 0) : p.batch * nck);
    const auto f32 = x.options().dtype(at::kFloat);
    // workspace of the pipeline (ssd.h): chunk decays, or hand-over flags zeroed by the launcher on the stream
    decay = x.new_empty({ssd_chunk_workspace_words(p.n_slots, p.nheads, p.headdim)}, f32);
    p.chunk_decay = decay.mutable_data_ptr<float>();
    if (p.states_in == nullptr) {
      scratch = x.new_empty({std::max<int64_t>(p.n_slots, 1), p.nheads, p.headdim, p.dstate}, f32);
      p.states_in = scratch.mutable_data_ptr<float>();
    }
  }
  const char* err = ssd_fwd_cuda(p, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == nullptr, "ssd_fwd_cuda: ", err ? err : "");
}

// The registered ops: kPath 0 = the launcher's default (chunk-parallel unless MK_SSD_CUDA_FUSED=1), 1 = fused.
template <int kPath>
void ssd_fwd_cuda_path(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                       const at::Tensor& C, const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& z,
                       const std::optional<at::Tensor>& dt_bias, const std::optional<at::Tensor>& initial_states,
                       const std::optional<at::Tensor>& cu_seqlens, const std::optional<at::Tensor>& chunk_offsets,
                       int64_t chunk_size, bool dt_softplus, bool has_dt_limit, double dt_min, double dt_max,
                       at::Tensor& out, at::Tensor& ypre, at::Tensor& states_in, at::Tensor& final_states) {
  ssd_fwd_cuda_op(x, dt, A, B, C, D, z, dt_bias, initial_states, cu_seqlens, chunk_offsets, chunk_size, dt_softplus,
                  has_dt_limit, dt_min, dt_max, out, ypre, states_in, final_states, kPath);
}

}  // namespace
}  // namespace mamba_kernels

TORCH_LIBRARY_FRAGMENT(mamba_kernels, m) {
  m.def(
      "_ssd_fwd_cuda(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, Tensor? dt_bias, "
      "Tensor? initial_states, Tensor? cu_seqlens, Tensor? chunk_offsets, int chunk_size, bool dt_softplus, "
      "bool has_dt_limit, float dt_min, float dt_max, Tensor(a!) out, Tensor(b!) ypre, Tensor(c!) states_in, "
      "Tensor(d!) final_states) -> ()",
      &mamba_kernels::ssd_fwd_cuda_path<0>);
  m.def(
      "_ssd_fwd_cuda_fused(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, Tensor? dt_bias, "
      "Tensor? initial_states, Tensor? cu_seqlens, Tensor? chunk_offsets, int chunk_size, bool dt_softplus, "
      "bool has_dt_limit, float dt_min, float dt_max, Tensor(a!) out, Tensor(b!) ypre, Tensor(c!) states_in, "
      "Tensor(d!) final_states) -> ()",
      &mamba_kernels::ssd_fwd_cuda_path<1>);
}
