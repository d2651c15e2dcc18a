// Parameters of the causal depthwise conv1d kernels, shared by the CPU and CUDA code (no torch, no CUDA here).
//
// Logical layout is always x (batch, dim, seqlen) = (b, d, l); the memory layout is given by strides (elements):
//   channel-first  x_l_stride == 1   (the CUDA "cf" kernels need it)
//   channel-last   x_c_stride == 1   (the CUDA "cl" kernels need it; the CPU kernels take any strides)
// Varlen: cu_seqlens (nseq + 1,) int32, batch == 1, seqlen == total tokens; sequence n covers
//   [cu_seqlens[n], cu_seqlens[n+1]) and the states are per sequence. Without varlen, nseq == batch and
//   "sequence n" is batch row n, covering [0, seqlen).
//   y[c, t] = act(bias[c] + sum_{i<width} weight[c, i] * xe[c, t - width + 1 + i]),
//   xe = x inside the sequence, initial_states[n, c, p - start + width - 1] before its start (zeros if absent).
// States (initial_states, final_states, dinitial_states, dfinal_states): (nseq, dim, width - 1), any strides,
//   dtype of x. weight (dim, width) and bias (dim,): fp32 / fp16 / bf16 (fp64 on CPU), independent of x.
// Gradients of weight and bias are (dim, width) and (dim,), contiguous: CPU writes fp32 (fp64 for fp64 x);
// CUDA writes the dtypes of weight and bias (w_dtype / b_dtype), reduced from fp32 partial sums.
#pragma once
#include <cstdint>

#include "common/dtype.h"

namespace mamba_kernels {
namespace conv1d {

constexpr int kMinWidth = 2;
constexpr int kMaxWidth = 8;

struct Conv1dParams {
  int64_t batch = 0, dim = 0, seqlen = 0, width = 0;
  int64_t nseq = 0;  // sequences: batch, or cu_seqlens.numel() - 1 with varlen
  bool silu = false;

  DType x_dtype = DType::kFloat32;  // x, y, dy, dx and all state tensors
  DType w_dtype = DType::kFloat32;  // weight
  DType b_dtype = DType::kFloat32;  // bias

  const void* x = nullptr;
  const void* weight = nullptr;
  const void* bias = nullptr;            // nullptr: no bias
  const void* initial_states = nullptr;  // nullptr: zeros
  const int32_t* cu_seqlens = nullptr;   // nullptr: not packed
  void* y = nullptr;                     // forward output
  void* final_states = nullptr;          // forward, nullptr: not written

  int64_t x_batch_stride = 0, x_c_stride = 0, x_l_stride = 0;
  int64_t y_batch_stride = 0, y_c_stride = 0, y_l_stride = 0;
  int64_t w_c_stride = 0, w_w_stride = 0;
  int64_t bias_stride = 0;
  int64_t init_n_stride = 0, init_c_stride = 0, init_w_stride = 0;
  int64_t final_n_stride = 0, final_c_stride = 0, final_w_stride = 0;

  // Backward.
  const void* dy = nullptr;              // like x
  const void* dfinal_states = nullptr;   // nullptr: no gradient flows into final_states
  void* dx = nullptr;                    // like x
  void* dweight = nullptr;               // (dim, width): CPU fp32 (fp64 for fp64 x); CUDA the dtype of weight
  void* dbias = nullptr;                 // (dim,): CPU like dweight; CUDA the dtype of bias; nullptr: not wanted
  void* dinitial_states = nullptr;       // nullptr: not computed
  int64_t dy_batch_stride = 0, dy_c_stride = 0, dy_l_stride = 0;
  int64_t dx_batch_stride = 0, dx_c_stride = 0, dx_l_stride = 0;
  int64_t dfinal_n_stride = 0, dfinal_c_stride = 0, dfinal_w_stride = 0;
  int64_t dinit_n_stride = 0, dinit_c_stride = 0, dinit_w_stride = 0;
  // CUDA backward only: per-tile partial sums (fp32) reduced by the caller; sized by conv1d_bwd_num_partials.
  float* dweight_partial = nullptr;      // (npartial, dim, width) contiguous
  float* dbias_partial = nullptr;        // (npartial, dim) contiguous, nullptr when dbias is not wanted
};

// Decode update: k new tokens per row against a state pool.
//   x, out      (batch, dim, k), any strides (a (b, k, d) tensor transposed is fine)
//   conv_state  (nslots, dim, state_len), state_len >= width - 1, any strides, dtype of x; updated in place
//   slots       (batch,) int32 or nullptr (row i -> slot i); a slot outside [0, nslots) marks padding:
//               its state is not touched and its output row is written as zeros.
struct Conv1dUpdateParams {
  int64_t batch = 0, dim = 0, k = 0, width = 0, state_len = 0, nslots = 0;
  bool silu = false;
  DType x_dtype = DType::kFloat32, w_dtype = DType::kFloat32, b_dtype = DType::kFloat32;
  const void* x = nullptr;
  const void* weight = nullptr;
  const void* bias = nullptr;
  const int32_t* slots = nullptr;
  void* conv_state = nullptr;
  void* out = nullptr;
  int64_t x_batch_stride = 0, x_c_stride = 0, x_l_stride = 0;
  int64_t out_batch_stride = 0, out_c_stride = 0, out_l_stride = 0;
  int64_t state_n_stride = 0, state_c_stride = 0, state_l_stride = 0;
  int64_t w_c_stride = 0, w_w_stride = 0;
  int64_t bias_stride = 0;
};

// ---- CPU (conv1d_cpu.cpp, OpenMP). Dtypes fp32/fp16/bf16/fp64; any strides.
void conv1d_fwd_cpu(const Conv1dParams& p);
void conv1d_bwd_cpu(const Conv1dParams& p);
void conv1d_update_cpu(const Conv1dUpdateParams& p);

// ---- CUDA (conv1d_*launch.cu). Dtypes fp32/fp16/bf16. Each returns nullptr on success, else an error message.
// channel_last selects the kernel family: true needs x/y/dy/dx c-strides of 1, false needs l-strides of 1.
// `stream` is a cudaStream_t.
const char* conv1d_fwd_cuda(const Conv1dParams& p, bool channel_last, void* stream);
const char* conv1d_bwd_cuda(const Conv1dParams& p, bool channel_last, void* stream);
const char* conv1d_update_cuda(const Conv1dUpdateParams& p, void* stream);
// Number of partial rows (npartial) the backward writes into dweight_partial / dbias_partial.
int64_t conv1d_bwd_num_partials(const Conv1dParams& p, bool channel_last);

}  // namespace conv1d
}  // namespace mamba_kernels
