// Parameters of the chunked SSD (Mamba-2) scan kernels: raw pointers + int64 sizes, no torch.
// Layouts (all contiguous): x, z, out (b, l, h, p); dt (b, l, h); A, dt_bias (h); D (h) or (h, p);
// B, C (b, l, g, n); initial_states, final_states (nseq, h, p, n); states_in (n_slots, h, p, n);
// seq_info (nseq, 4) int64: batch row, start token, length, first chunk slot.
#pragma once
#include <cstdint>

#include "common/dtype.h"

namespace mamba_kernels {

struct SsdFwdParams {
  int64_t batch, seqlen, nheads, headdim, dstate, ngroups, chunk_size, nseq;
  DType dtype;  // element type of every float pointer below: kFloat32 or kFloat64 (the binding converts)
  const void* x;
  const void* dt;
  const void* A;
  const void* B;
  const void* C;
  const void* D;  // nullable
  bool D_per_channel;  // D is (h, p)
  const void* z;  // nullable
  const void* dt_bias;  // nullable
  const void* initial_states;  // nullable
  const int64_t* seq_info;
  bool dt_softplus;
  bool has_dt_limit;
  double dt_min, dt_max;
  void* out;
  void* states_in;
  void* final_states;
};

// C++ OpenMP CPU forward (csrc/ssd/ssd_cpu.cpp). Returns 0, or a nonzero code for an unsupported dtype.
int ssd_fwd_cpu(const SsdFwdParams& params);

}  // namespace mamba_kernels
