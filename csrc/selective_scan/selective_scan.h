// Parameters of the Mamba-1 selective scan, shared by the CPU and CUDA kernels (no torch here).
//
// Layouts (the time axis l is always the contiguous one, stride 1):
//   u, delta, z, out           (batch, dim, seqlen)           strides *_batch_stride, *_d_stride
//   A                          (dim, dstate) fp32            stride A_d_stride (dstate contiguous)
//   B, C constant              (dim, dstate)                 stride *_d_stride (dstate contiguous)
//   B, C variable              (batch, n_groups, dstate, seqlen)  *_batch_stride, *_group_stride, *_dstate_stride
//   D, delta_bias              (dim,) fp32, contiguous
//   initial_state, last_state  (n_slots, dim, dstate) fp32, contiguous;  n_slots = batch, or n_seqs with varlen
//   cu_seqlens                 (n_seqs + 1,) int64: varlen packing along seqlen, batch == 1
//   states (CUDA)              (batch, dim, states_n_chunks, dstate) fp32 contiguous: the forward, when given
//                              it, saves the state entering every chunk of 2^ckpt_log2 steps of every sequence
//                              (chunk index running over the packed sequences with varlen); the backward
//                              restarts each of its tiles from them (the time-parallel kernel's 256-step
//                              tiles, the state-lane kernel's 32-step ones). 16 <= 2^ckpt_log2 <= 256 (the
//                              interface uses selective_scan_cuda_ckpt_chunk: 32 or 256).
// Backward outputs (gradients) follow the same layouts, except:
//   CPU:  dB/dC for variable B/C are written per channel, (batch, dim, dstate, seqlen) contiguous, and summed
//         over the channels of a group by the caller; every gradient is of the compute type.
//   CUDA: du, ddelta, dz of in_dtype, (batch, dim, seqlen) contiguous; dA, dD, ddelta_bias, constant dB/dC
//         and variable dB/dC ((batch, n_groups, dstate, seqlen) contiguous) are fp32 and ACCUMULATED with
//         atomicAdd (the caller zeroes them); dinitial_state fp32, written.
#pragma once
#include <cstdint>

#include "common/dtype.h"

namespace mamba_kernels {

struct SelectiveScanParams {
  int64_t batch = 0, dim = 0, seqlen = 0, dstate = 0, n_groups = 1;
  int64_t n_seqs = 0;  // number of packed sequences (varlen) else 0
  bool is_variable_B = false, is_variable_C = false;
  bool delta_softplus = false;

  DType in_dtype = DType::kFloat32;  // u, delta, z, out, variable B/C, dout, du, ddelta, dz

  const void* u = nullptr;
  const void* delta = nullptr;
  const void* z = nullptr;            // nullptr: no gate
  const void* A = nullptr;            // fp32 (CPU: the compute type)
  const void* B = nullptr;
  const void* C = nullptr;
  const void* D = nullptr;            // nullptr: no skip term
  const void* delta_bias = nullptr;   // nullptr: no bias
  const void* initial_state = nullptr;  // nullptr: zeros
  const int64_t* cu_seqlens = nullptr;  // nullptr: not packed
  void* out = nullptr;
  void* last_state = nullptr;         // nullptr: not written

  int64_t u_batch_stride = 0, u_d_stride = 0;
  int64_t delta_batch_stride = 0, delta_d_stride = 0;
  int64_t z_batch_stride = 0, z_d_stride = 0;
  int64_t out_batch_stride = 0, out_d_stride = 0;
  int64_t A_d_stride = 0;
  int64_t B_batch_stride = 0, B_group_stride = 0, B_dstate_stride = 0, B_d_stride = 0;
  int64_t C_batch_stride = 0, C_group_stride = 0, C_dstate_stride = 0, C_d_stride = 0;

  // Backward only.
  const void* dout = nullptr;         // (batch, dim, seqlen), strides dout_*
  int64_t dout_batch_stride = 0, dout_d_stride = 0;
  const void* dlast_state = nullptr;  // (n_slots, dim, dstate) contiguous or nullptr
  void* du = nullptr;                 // (batch, dim, seqlen) contiguous, like ddelta, dz
  void* ddelta = nullptr;
  void* dz = nullptr;
  void* dA = nullptr;                 // (dim, dstate) contiguous
  void* dB = nullptr;                 // constant: (dim, dstate); variable: per channel (batch, dim, dstate, seqlen)
  void* dC = nullptr;
  void* dD = nullptr;                 // (dim,)
  void* ddelta_bias = nullptr;        // (dim,)
  void* dinitial_state = nullptr;     // (n_slots, dim, dstate)

  // CUDA forward (written when non-null) / CUDA backward (read): chunk-entry states, see the layout above.
  void* states = nullptr;
  int64_t states_n_chunks = 0;        // allocated chunks per (batch row, channel)
  int ckpt_log2 = 0;                  // log2 of the chunk length (steps between saved states)
};

// CPU (OpenMP). All pointers of the compute type (float, or double when in_dtype == kFloat64).
void selective_scan_fwd_cpu(const SelectiveScanParams& p);
void selective_scan_bwd_cpu(const SelectiveScanParams& p);

// CUDA. u/delta/z/out/variable B,C of in_dtype (fp32/fp16/bf16); A, constant B/C, D, delta_bias,
// states fp32. Return an error string or nullptr.
const char* selective_scan_fwd_cuda(const SelectiveScanParams& p, void* stream);
// Needs p.states from a forward run with the same p.ckpt_log2, dout, and the gradient buffers above.
const char* selective_scan_bwd_cuda(const SelectiveScanParams& p, void* stream);
// Whether CUDA device `device` gives a block the shared memory the backward needs for this call: the time-parallel
// kernel with both B and C variable ~137-155 KB (H100 / H200 and A100, not RTX 30xx / 40xx's 99 KB); the state-lane
// kernel (n 16, variable B and C, packed or not) 88 KB.
bool selective_scan_bwd_fits(int64_t dstate, bool var_b, bool var_c, int device);
// Steps between the states a CUDA forward saves for the CUDA backward: 32 where the state-lane backward serves the
// call (n 16, variable B and C, packed or not: it restarts every 32-step tile from a saved state), else 256 (the
// time-parallel backward's tile).
int selective_scan_cuda_ckpt_chunk(int64_t dstate, bool var_b, bool var_c);

}  // namespace mamba_kernels
