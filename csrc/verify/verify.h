// Parameters of the verify family (speculative verify-and-rollback), shared by the CUDA launcher and its
// torch binding (no torch here). Semantics: python_ref.verify.verify_step_cache_ref / conv_verify_step_ref;
// cache layout and algorithm: docs/verify_step_design.md; op contract: docs/verify_lowlevel_ops.md.
//
// All strides are in elements (int64) and may be 0 (broadcast views). The innermost dimension of x, z, y, B, C,
// state, ring_x, ring_B has stride 1 (not stored); every other stride is stored.
//
// Canonical shapes (H units of P channels; Mamba-2: units = heads, Mamba-1: blocks of P channels):
//   x, z, y (batch, k, H, P); dt (batch, k, H, Pd) raw, Pd in {1, P}; A (H, Pa, Na), (Pa, Na) in {(1,1),(P,N)};
//   B, C (batch, k, G, N), unit u uses group u / (H / G); D (H, P); dt_bias (H, Pd);
//   state (S, H, P, N); ring_x (S, R, H, P); ring_B (S, R, H, N); ring_dt (S, R, H, Pd) fp32;
//   meta (S, H, 2 + Kmax) int32 = [c, kp, mask_0 .. mask_{Kmax-1}]; slots, accepted (batch,) int32;
//   parents (batch, k) int32 or nullptr (chain).
// Fused Mamba-2 step (fused = true; x, B, C unused): xBC (batch, k, dc), dc = H*P + 2*G*N, channel order
//   [x | B | C]; conv_weight (dc, width); conv_bias (dc,); conv_window (S, width - 1 + Kmax, dc).
#pragma once
#include <cstdint>
#include <limits>

#include "common/dtype.h"

namespace mamba_kernels {

struct VerifyStepParams {
  int64_t batch = 0, k = 0, H = 0, P = 0, N = 0, G = 1, S = 0, R = 0, Kmax = 0;
  int64_t Pd = 1;          // dt / dt_bias / ring_dt per unit (1, Mamba-2) or per channel (P, Mamba-1)
  int64_t Pa = 1, Na = 1;  // A (H, Pa, Na)
  bool accepted_is_node = false;  // accepted = accepted node (tree API) instead of num_accepted
  bool dt_softplus = false;
  bool fold_all = false;          // fold everything into state (verify_flush); otherwise fold on ring overflow
  double dt_min = -std::numeric_limits<double>::infinity(),
         dt_max = std::numeric_limits<double>::infinity();  // +-inf: no clamp

  DType in_dtype = DType::kFloat32;     // x, z, B, C, y, raw dt, ring_x, ring_B, xBC, conv_window
  DType state_dtype = DType::kFloat32;  // state
  // A, D, dt_bias, ring_dt: fp32.

  const void* x = nullptr;
  const void* dt = nullptr;
  const float* A = nullptr;
  const void* B = nullptr;
  const void* C = nullptr;
  const float* D = nullptr;        // nullptr: no skip term
  const void* z = nullptr;         // nullptr: no gate
  const float* dt_bias = nullptr;  // nullptr: no bias
  void* state = nullptr;
  void* ring_x = nullptr;
  void* ring_B = nullptr;
  float* ring_dt = nullptr;
  int32_t* meta = nullptr;
  const int32_t* slots = nullptr;
  const int32_t* accepted = nullptr;
  const int32_t* parents = nullptr;  // nullptr: chain
  void* y = nullptr;

  int64_t x_b = 0, x_k = 0, x_h = 0;
  int64_t dt_b = 0, dt_k = 0, dt_h = 0, dt_p = 0;
  int64_t A_h = 0, A_p = 0, A_n = 0;
  int64_t B_b = 0, B_k = 0, B_g = 0;
  int64_t C_b = 0, C_k = 0, C_g = 0;
  int64_t D_h = 0, D_p = 0;
  int64_t z_b = 0, z_k = 0, z_h = 0;
  int64_t dtb_h = 0, dtb_p = 0;
  int64_t st_s = 0, st_h = 0, st_p = 0;
  int64_t rx_s = 0, rx_r = 0, rx_h = 0;
  int64_t rB_s = 0, rB_r = 0, rB_h = 0;
  int64_t rdt_s = 0, rdt_r = 0, rdt_h = 0, rdt_p = 0;
  int64_t meta_s = 0, meta_h = 0, meta_i = 0;
  int64_t slots_stride = 1, accepted_stride = 1;
  int64_t par_b = 0, par_k = 0;
  int64_t y_b = 0, y_k = 0, y_h = 0;

  // Per-call scratch of the split kernel pair (verify_m2split_kernel.cuh): work_unit fp32 words per (batch row,
  // unit), batch * H * work_unit in all; sized by verify_step_cuda_workspace, allocated by the caller.
  float* work = nullptr;
  int64_t work_unit = 0;
  // The split pair's stream blocks below this index stage their state tile before griddepcontrol.wait (the first
  // wave's loads under the prep grid's tail), the others after the record's header (set by the launcher).
  int64_t tile_early = 0;

  // Fused Mamba-2 step only.
  bool fused = false;         // the fused step (xBC / conv fields); x, B, C are not used then
  const void* xBC = nullptr;
  const void* conv_weight = nullptr;
  const void* conv_bias = nullptr;  // nullptr: no bias
  void* conv_window = nullptr;
  DType conv_weight_dtype = DType::kFloat32, conv_bias_dtype = DType::kFloat32;
  bool conv_silu = false;
  int64_t width = 0, dc = 0;
  int64_t xBC_b = 0, xBC_k = 0, xBC_c = 1;
  int64_t cw_c = 0, cw_w = 0, cb_c = 0;
  int64_t win_s = 0, win_i = 0, win_c = 1;
};

// Standalone conv step with rollback: x, out (batch, k, dc); window (S, width - 1 + Kmax, dc);
// meta (S, 1 + Kmax) int32 = [kp, mask_0 ..]; weight (dc, width); bias (dc,).
struct ConvVerifyParams {
  int64_t batch = 0, k = 0, dc = 0, width = 0, S = 0, Kmax = 0;
  bool accepted_is_node = false;
  bool silu = false;
  DType in_dtype = DType::kFloat32;  // x, out, window
  DType weight_dtype = DType::kFloat32, bias_dtype = DType::kFloat32;

  const void* x = nullptr;
  void* window = nullptr;
  int32_t* meta = nullptr;
  const void* weight = nullptr;
  const void* bias = nullptr;  // nullptr: no bias
  const int32_t* slots = nullptr;
  const int32_t* accepted = nullptr;
  const int32_t* parents = nullptr;  // nullptr: chain
  void* out = nullptr;

  int64_t x_b = 0, x_k = 0, x_c = 1;
  int64_t win_s = 0, win_i = 0, win_c = 1;
  int64_t meta_s = 0, meta_i = 0;
  int64_t w_c = 0, w_w = 0, b_c = 0;
  int64_t slots_stride = 1, accepted_stride = 1;
  int64_t par_b = 0, par_k = 0;
  int64_t out_b = 0, out_k = 0, out_c = 1;
};

// CUDA launchers (verify_launch.cu): enqueue on `stream` (a cudaStream_t), no sync, no allocation.
// Return nullptr on success, else a static error message.
// verify_step_cuda runs the fused Mamba-2 step when p.fused. (Pointers of empty tensors may be null: k = 0.)
const char* verify_step_cuda(const VerifyStepParams& p, void* stream);
const char* conv_verify_step_cuda(const ConvVerifyParams& p, void* stream);
// fp32 words of scratch a (batch row, unit) that verify_step_cuda needs in p.work for these parameters (0: none).
int64_t verify_step_cuda_workspace(const VerifyStepParams& p);

// Internal: the SSM / fused launcher for one state dtype (verify_ssm_{f32,f16,bf16}.cu, compiled in parallel).
const char* verify_ssm_cuda_f32(const VerifyStepParams& p, void* stream);
const char* verify_ssm_cuda_f16(const VerifyStepParams& p, void* stream);
const char* verify_ssm_cuda_bf16(const VerifyStepParams& p, void* stream);

}  // namespace mamba_kernels
