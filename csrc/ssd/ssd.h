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

// CUDA forward (csrc/ssd/ssd_fwd_kernel.cuh, launched by csrc/ssd/ssd_launch.cu). Strides are in elements; the
// last dimension of every tensor (p for x / z / out / ypre, n for B / C) is contiguous.
//   x, z (b, l, h, p) of in_dtype; out, ypre (b, l, h, p) of in_dtype (ypre: pre-gate y, nullable)
//   dt (b, l, h) of in_dtype or fp32 (dt_f32); A, dt_bias (h) fp32; D (h) or (h, p) fp32 contiguous
//   B, C (b, l, g, n) of in_dtype
//   initial_states, final_states (nseq, h, p, n) fp32 contiguous (nullable); states_in (n_slots, h, p, n) fp32
//   contiguous (nullable): the state entering every chunk, sequence i's chunks from slot chunk_offsets[i] (without
//   cu_seqlens: row * ceil(l / chunk_size))
//   cu_seqlens, chunk_offsets (nseq + 1) int64 (nullable: nseq = batch, one sequence a row)
// Paths (path; 0: the launcher's default, MK_SSD_CUDA_FUSED=1 read once makes it the fused kernel):
//   1 fused kernel (ssd_fwd_kernel.cuh): states_in nullable.
//   2 chunk-parallel pipeline (ssd_chunk_kernel.cuh): needs states_in (it holds the chunk states before it holds the
//     entering states) with n_slots slots (a bound for varlen: grid size) and chunk_decay, a workspace of
//     ssd_chunk_workspace_words() 32-bit words (below).
struct SsdFwdCudaParams {
  int64_t batch = 0, seqlen = 0, nheads = 0, headdim = 0, dstate = 0, ngroups = 1, chunk_size = 256, nseq = 0;
  DType in_dtype = DType::kBFloat16;
  bool dt_f32 = false;
  bool dt_softplus = false, has_dt_limit = false;
  float dt_min = 0.f, dt_max = 0.f;
  bool D_per_channel = false;
  const void* x = nullptr;
  const void* dt = nullptr;
  const float* A = nullptr;
  const void* B = nullptr;
  const void* C = nullptr;
  const float* D = nullptr;
  const void* z = nullptr;
  const float* dt_bias = nullptr;
  const float* initial_states = nullptr;
  const int64_t* cu_seqlens = nullptr;
  const int64_t* chunk_offsets = nullptr;
  void* out = nullptr;
  void* ypre = nullptr;
  float* states_in = nullptr;
  float* final_states = nullptr;
  int path = 0;
  int64_t n_slots = 0;
  float* chunk_decay = nullptr;  // path 2: the pipeline's workspace (ssd_chunk_workspace_words)
  bool vec16 = false;  // set by the launcher: x / z / B / C rows in 16-byte pieces (cp.async)
  int64_t x_batch_stride = 0, x_l_stride = 0, x_head_stride = 0;
  int64_t z_batch_stride = 0, z_l_stride = 0, z_head_stride = 0;
  int64_t out_batch_stride = 0, out_l_stride = 0, out_head_stride = 0;  // ypre: the same strides
  int64_t dt_batch_stride = 0, dt_l_stride = 0, dt_head_stride = 0;
  int64_t B_batch_stride = 0, B_l_stride = 0, B_group_stride = 0;
  int64_t C_batch_stride = 0, C_l_stride = 0, C_group_stride = 0;
};

// 32-bit words of the chunk-parallel pipeline's workspace (SsdFwdCudaParams::chunk_decay), allocated by the caller:
// the chunk decays sum dt' A per (slot, head) as floats (MK_SSD_HANDOVER=0, the default), or a hand-over flag per
// (slot, head, 64-channel p block) and a ticket counter (MK_SSD_HANDOVER=1, zeroed by the launcher): the larger.
inline int64_t ssd_chunk_workspace_words(int64_t n_slots, int64_t nheads, int64_t headdim) {
  return n_slots * nheads * ((headdim + 63) / 64) + 1;
}

// Limits of the CUDA forward: chunk_size a multiple of 64, dstate <= 128 (the caller falls back otherwise).
constexpr int64_t kSsdCudaMaxDstate = 128;
constexpr int64_t kSsdCudaChunkMultiple = 64;

// Returns an error string or nullptr. stream: a cudaStream_t.
const char* ssd_fwd_cuda(const SsdFwdCudaParams& p, void* stream);
// True when ssd_fwd_cuda runs the chunk-parallel pipeline for this path value (0 / 1 / 2, see above).
bool ssd_fwd_cuda_chunked(int path);

}  // namespace mamba_kernels

namespace mamba_kernels {

// CUDA backward of the chunked SSD (csrc/ssd/ssd_bwd_kernel.cuh, launched by csrc/ssd/ssd_bwd_launch.cu). Every tensor
// contiguous (the Python launcher mamba_kernels/ssd/cuda_bwd.py makes them so):
//   x, z, dout, ypre (b, l, h, p) of in_dtype (z, ypre nullable: no gate); B, C (b, l, g, n) of in_dtype
//   dt (b, l, h) fp32 (raw, before bias / softplus / limit); A, dt_bias (h) fp32; D (h) or (h, p) fp32 (nullable)
//   states_in (n_slots, h, p, n) fp32: the forward's chunk-entry states (sequence i's chunks from slot
//   chunk_offsets[i]; without cu_seqlens row * ceil(l / Q)); d_final (nseq, h, p, n), d_states_in (n_slots, h, p, n)
//   fp32 (nullable: zero)
// Outputs: dx, dz (dz nullable without z), dB, dC of in_dtype; ddt (b, l, h) fp32 (w.r.t. the raw dt); dA, ddt_bias
// (h) fp32; dD (h, p) fp32 whatever D's shape (the caller sums over p for D (h); nullable without D); dinit
// (nseq, h, p, n) fp32. Every output is written in full (the kernels zero their accumulators first).
// Scratch (fp32 unless said): dtp, a, ddtp, da (b, h, l) head-major; dy (b, l, h, p) of the tile type (bf16 for bf16
// inputs, else fp32); dS (n_slots, h, p, n); dalast (n_slots, h); cb, dcb (n_slots, g, Q, Q) of the tile type.
struct SsdBwdCudaParams {
  int64_t batch = 0, seqlen = 0, nheads = 0, headdim = 0, dstate = 0, ngroups = 1, chunk_size = 256, nseq = 0;
  int64_t n_slots = 0;
  DType in_dtype = DType::kBFloat16;
  bool dt_softplus = false, has_dt_limit = false;
  float dt_min = 0.f, dt_max = 0.f;
  bool D_per_channel = false;
  const void* x = nullptr;
  const void* z = nullptr;
  const void* dout = nullptr;
  const void* ypre = nullptr;
  const void* B = nullptr;
  const void* C = nullptr;
  const float* dt = nullptr;
  const float* A = nullptr;
  const float* dt_bias = nullptr;
  const float* D = nullptr;
  const float* states_in = nullptr;
  const float* d_final = nullptr;
  const float* d_states_in = nullptr;
  const int64_t* cu_seqlens = nullptr;
  const int64_t* chunk_offsets = nullptr;
  void* dx = nullptr;
  void* dz = nullptr;
  void* dB = nullptr;
  void* dC = nullptr;
  float* ddt = nullptr;
  float* dA = nullptr;
  float* ddt_bias = nullptr;
  float* dD = nullptr;
  float* dinit = nullptr;
  float *dtp = nullptr, *a = nullptr, *ddtp = nullptr, *da = nullptr;
  void* dy = nullptr;
  float* dS = nullptr;
  float* dalast = nullptr;
  void *cb = nullptr, *dcb = nullptr;
  // Head-split scratch of the group kernels K3 / K5 (ssd_bwd_group_split > 1, else nullable and unused): dcb32
  // (n_slots, g, Q, Q) and dbc32 (2, b, l, g, n) (dB then dC), fp32, zeroed by the launcher, summed by atomics.
  float* dcb32 = nullptr;
  float* dbc32 = nullptr;
};

// Heads a CTA of the group kernels K3 / K5 walks, and so the number of head blocks a group is split into
// (ceil(h / g / heads)). Why: at g = 1 a group holds all h heads (80 at the issue shape b4 l4096 h80 p64 n128), and
// walking them in one CTA left 640 / 512 CTAs of 80 serial steps; 8 heads a CTA gives 6400 / 5120 CTAs, and each
// extra CTA of K3 recomputes one C B^T block (the cost of 2 heads' dy x^T at p 64). Small groups still split in two
// (2 -> 1 + 1, 4 -> 2 + 2): the emulation cases exercise the atomic path.
constexpr int64_t ssd_bwd_group_heads(int64_t heads_per_group) {  // constexpr: callable from kernels too
  return heads_per_group <= 1 ? 1 : ((heads_per_group + 1) / 2 < 8 ? (heads_per_group + 1) / 2 : 8);
}
constexpr int64_t ssd_bwd_group_split(int64_t nheads, int64_t ngroups) {
  return (nheads / ngroups + ssd_bwd_group_heads(nheads / ngroups) - 1) / ssd_bwd_group_heads(nheads / ngroups);
}

// Limits of the CUDA backward (the Python launcher falls back to the Triton backward outside them).
constexpr int64_t kSsdBwdMaxHeaddim = 128;

// Bytes of one scratch element of dy / cb / dcb for an input dtype (2 for bf16, else 4).
inline int64_t ssd_bwd_tile_bytes(DType t) { return t == DType::kBFloat16 ? 2 : 4; }

// Returns an error string or nullptr. stream: a cudaStream_t.
const char* ssd_bwd_cuda(const SsdBwdCudaParams& p, void* stream);

// Head-walk CUDA stages of the Triton SSD pipeline (csrc/ssd/ssd_walk.cuh; bf16, p 64, n 128, chunk 128): one
// persistent CTA an SM walks (chunk slot, head) items head fastest. Fields both stages read:
//   cb (n_slots, g, Q, Q) as cb[t][s] (C_t . B_s; only s <= t is used); rows: B (dx) or C (scan), (b, l, g, n);
//   dtp, a (b, h, l) fp32: dt' and the chunk-local inclusive cumsum of dt' A; D (h) or (h, p) fp32, nullable;
//   tab (n_slots, 2) int32 (first token, length) with cu_seqlens, else null (chunk k of batch row k / ncr).
struct SsdWalkParams {
  int64_t batch, seqlen, nheads, ngroups, n_slots, chunks_per_row;
  int64_t num_ctas;  // persistent grid: one CTA an SM
  const void* cb;
  const void* rows;
  const float* dtp;
  const float* a;
  const float* D;
  bool D_per_channel;
  const int32_t* tab;
  // Outputs (F2's out / ypre, B2's dx) stored 16 bytes a lane through per-warp staging rows instead of 4-byte pieces
  // from the fragments (partial-sector writes). The dispatch sets it unless MK_SSD_WALK_STAGED=0 (ssd_walk.cu).
  bool staged_stores = true;
  // Two teams (walk_items_pingpong): a team prefetches its next item's stage rows into L2 while this item computes.
  // The dispatch sets it unless MK_SSD_WALK_PREFETCH=0.
  bool prefetch = true;
  // Two teams: an item starts when its (p, n) tile and rows have landed; the tiles it reads later are waited for
  // after its first phase (walk_items_pingpong). The dispatch sets it unless MK_SSD_WALK_SPLITWAIT=0.
  bool split_wait = true;
  // With split_wait, F2's z rows are loaded by the warp that reads them, waited for by that warp alone before its
  // epilogue. The dispatch sets it unless MK_SSD_WALK_OWNROWS=0.
  bool own_rows = true;
  // Two teams: a team's next item (two heads on) by adding to the item's head and offsets where it stays in the chunk,
  // instead of next_item twice (two 64-bit divisions each: eight a team thread an item with the prefetch's). The
  // dispatch sets it unless MK_SSD_WALK_LEAN_NEXT=0 (ssd_walk.cu).
  bool lean_next = true;
};

// dx stage (B2) of the backward (ssd_dx_kernel.cuh): for every item, du = (CB o exp(a_t - a_s), s <= t)^T dy +
// exp(a_L - a_s) B dS^T, dx = dt' du + D dy, and atomically ddtp[s] += x_s.du_s, da[s] -= dt'_s q_s,
// dalast[k, head] += sum_s dt'_s q_s (q_s = exp(a_L - a_s) x_s.(dS B_s)), dD[head, :] += sum_s dy_s x_s.
// x, dy, dx (b, l, h, p); dS (n_slots, h, p, n); ddtp, da (b, h, l), dalast (n_slots, h), dD (h, p) fp32.
struct SsdDxParams {
  SsdWalkParams w;  // w.rows = B
  const void* x;
  const void* dy;
  const void* dS;
  void* dx;
  float* ddtp;
  float* da;
  float* dalast;
  float* dD;  // nullable with D
};

// Forward output stage (F2, ssd_scan_kernel.cuh): y_t = exp(a_t) C_t h_in^T + sum_{s <= t} CB_ts exp(a_t - a_s) dt'_s
// x_s + D x_t; out = y silu(z) (or y); ypre = y when given. x, z, out, ypre (b, l, h, p); hin (n_slots, h, p, n).
struct SsdScanParams {
  SsdWalkParams w;  // w.rows = C
  const void* x;
  const void* z;  // nullable
  const void* hin;
  void* out;
  void* ypre;  // nullable
};
// The sizes the head-walk stages are built for (ssd_walk.cuh derives its tile constants from them).
constexpr int64_t kSsdWalkHeaddim = 64, kSsdWalkDstate = 128, kSsdWalkChunk = 128;
// Return an error string or nullptr (input dtype bf16 only). stream: a cudaStream_t.
const char* ssd_dx_cuda(const SsdDxParams& p, void* stream);
const char* ssd_scan_cuda(const SsdScanParams& p, void* stream);

// Forward state stage (F1, ssd_state_kernel.cuh; twin of _ssd_state_fwd_kernel): per (sequence, head) the chunks in
// order, h_in[slot of chunk c] = S (bf16), S = exp(a_L) S + sum_s exp(a_L - a_s) dt'_s x_s^T B_s (a_L: a at the
// chunk's last token), S starting at init (or 0); final[seq, head] = S after the last chunk (fp32).
// x (b, l, h, p = 64), B (b, l, g, n = 128) bf16; dtp, a (b, h, l) fp32; init, final (nseq, h, p, n) fp32;
// hin (n_slots, h, p, n) bf16 (slots of no chunk untouched). Without cu_seqlens (cu == nullptr) sequence r is batch row
// r and its chunk c is slot r * chunks_per_row + c; with it (batch 1) sequence i covers tokens [cu[i], cu[i + 1]) and
// its chunk c is slot first[i] + c; an empty sequence writes no slot and final = init (or 0). a restarts in every
// chunk (the chunk-local cumsum). num_ctas: the SM count (the launcher sizes its grid from it).
struct SsdStateParams {
  int64_t batch, seqlen, nheads, ngroups, nseq, n_slots, chunks_per_row;
  int64_t num_ctas;
  const void* x;
  const void* B;
  const float* dtp;
  const float* a;
  const float* init;     // nullable: zero initial states
  const int32_t* cu;     // nullable (no cu_seqlens)
  const int32_t* first;  // with cu
  void* hin;
  float* final_states;
};
const char* ssd_state_cuda(const SsdStateParams& p, void* stream);

// A lab, not called by the library (ssd_fused_walk_kernel.cuh, docs/ssd_fused_walk_design.md): F1 and F2 as one walk
// a (sequence, head) at chunk 64 (sm_90a): out = F2's output, final = F1's final state (nullable), h_in not written.
// num_ctas 0: a CTA a walk; else that many CTAs share the walks' chunks evenly, handing states on through scratch
// (walks, p, n) fp32 and flags (walks) int32: all 0 before a call (the kernel leaves them so), a walk's flag set to
// the chunk c (> 0) while its state at chunk c waits in scratch for the next CTA.
// x, z (nullable), out (b, l, h, p = 64), B, C (b, l, g, n = 128) bf16; cb (b ceil(l / 64), g, 64, 64) bf16 (C B^T of
// each chunk, K1 at chunk 64; its upper triangle is never read; nullable: computed in the kernel); dtp, a (b, h, l)
// fp32 (a: the cumsum of dt' A within each chunk of 64); D (h) or (h, p) fp32 (nullable); init, final (b, h, p, n)
// fp32 (nullable).
constexpr int64_t kSsdFusedChunk = 64;
struct SsdFusedWalkParams {
  int64_t batch, seqlen, nheads, ngroups;
  const void* x;
  const void* z;  // nullable
  const void* B;
  const void* C;
  const void* cb;  // nullable
  const float* dtp;
  const float* a;
  const float* D;  // nullable
  bool D_per_channel;
  const float* init;  // nullable: zero initial states
  void* out;
  float* final_states;  // nullable
  int64_t num_ctas;
  float* scratch;   // with num_ctas
  int32_t* flags;   // with num_ctas
};
const char* ssd_fused_walk_cuda(const SsdFusedWalkParams& p, void* stream);
// Whether CUDA device `device` gives a CTA the dynamic shared memory a stage needs (stage 0: dx, 1: scan, 2: state at
// one walk a CTA): the walk stages need ~195 KB (sm_90's 227 KB, not sm_80's 163 or sm_86 / sm_89's 99), the state
// stage 100 KB.
bool ssd_walk_fits(int stage, int device);

}  // namespace mamba_kernels
