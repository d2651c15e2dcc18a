// CUDA forward of the chunked SSD (Mamba-2) scan, chunk-parallel pipeline (the default path of _ssd_fwd_cuda; the
// fused kernel of ssd_fwd_kernel.cuh is selected by MK_SSD_CUDA_FUSED=1 or the op _ssd_fwd_cuda_fused). No torch.
//
// Semantics: python_ref/ssd.py::ssd_chunked_ref, as the fused kernel (see its header for the equations, operand
// types and fragment conventions). The standard SSD decomposition, in three kernels (the dt processing -- bias,
// softplus, limits, cumsum of dt' A -- is recomputed by kernels 1 and 3 per 64-token tile, from dt, in load_tile):
//
//   1. ssd_chunk_state_kernel   one CTA (4 warps) per (head, 64-channel p block, chunk slot), heads fastest (B / C
//      tiles of a group are read by neighbouring CTAs: L2 reuse at g = 1). Walks the chunk's Q / 64 tiles with a
//      zero state in the mma accumulators (tile_update): S_c = sum_t exp(a_last - a_t) dt'_t x_t^T B_t, written
//      fp32 into states_in[slot] (the slot that later receives the state entering chunk c), and the chunk's total
//      dt' A into chunk_decay[slot, head] (p block 0).
//   2. ssd_state_pass_kernel    one CTA per (4 x 128 elements of the (p, n) state, head, sequence): serial over the
//      sequence's chunks, element-parallel: h_in[0] = initial (or 0); h_in[c + 1] = exp(decay_c) h_in[c] + S_c,
//      overwriting S_c in place by h_in[c] (the next S is loaded before the store: one load in flight ahead);
//      final_states = the state after the last chunk.
//   3. ssd_chunk_scan_kernel    one CTA per (head, p block, chunk slot): the fused kernel's tile walk restricted to
//      one chunk, starting from h_in[c] (states_in[slot]): per 64-token tile, y = exp(a_t) C h^T + (C B^T o L) x
//      + D x, ypre, * silu(z) (tile_output), then the state carried to the next tile of the chunk in registers
//      (tile_update; skipped after the chunk's last tile). Q = 64: no update at all.
//
// Why 64-token tiles inside a chunk of Q in {64, 128, 256}: the quadratic part per tile is 64 x 64 (C B^T costs
// per head 5/8 of 2 * 64 * 64 * n a tile), a chunk of 256 done as one 256 x 256 block would cost 4x the C B^T and
// S x FLOPs of the tile walk (or 2x with block-triangular 64-tiles); the walk's state update (2 p n FLOPs a token)
// is cheaper than either. Q only sets the number of chunk states (HBM traffic: S written, read + h_in written,
// read: 4 x 4 b (l / Q) h p n bytes).
//
// Geometry at the issue shapes (Q = 256, bf16): b4 l4096 h80 p64 n128 g1: kernels 1 and 3 have 64 slots x 80 heads
// = 5120 CTAs (1 p block), kernel 2 16 x 80 x 4 = 5120 CTAs of 16 chunk steps; b2 l4096 h32 p128 n128 g32: kernels
// 1 and 3 have 32 slots x 2 p blocks x 32 heads = 2048 CTAs, kernel 2 32 x 32 x 2 = 2048 CTAs of 16 steps.
//
// Resources (sm_90a, bf16, n <= 128): kernel 1 at most 128 registers (__launch_bounds__(128, 4)) and 27 KB of shared
// memory (x, B, dt' only: 4 CTAs an SM); kernel 3 the fused kernel's budget (state + S + Y accumulators: 255
// registers, 72 KB: 2 CTAs an SM); kernel 2 30 registers, no shared memory.
//
// Known gaps: only the bf16 k-strided B fragments (S x, state update) use ldmatrix; C / B / h fragments are 32-bit
// loads, fp32 tiles scalar loads; no double buffering across the
// tiles of a chunk (other CTAs of the SM overlap instead).
#pragma once
#include "ssd/ssd_chunk_tile.cuh"

namespace mamba_kernels {
namespace ssd_cuda {

// Chunk slot -> its sequence, batch row, first token and length. False for slots past the last chunk (varlen: the
// grid covers a bound on the number of chunks).
__device__ __forceinline__ bool chunk_of_slot(const SsdFwdCudaParams& p, int64_t slot, int64_t& row, int64_t& t0,
                                              int64_t& clen) {
  const int64_t Q = p.chunk_size;
  if (p.cu_seqlens) {
    if (slot >= p.chunk_offsets[p.nseq]) return false;
    int64_t lo = 0, hi = p.nseq - 1;  // the last sequence s with chunk_offsets[s] <= slot (skips empty ones)
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) >> 1;
      if (p.chunk_offsets[mid] <= slot) lo = mid; else hi = mid - 1;
    }
    row = 0;
    t0 = p.cu_seqlens[lo] + (slot - p.chunk_offsets[lo]) * Q;
    clen = p.cu_seqlens[lo + 1] - t0;
  } else {
    const int64_t nck = (p.seqlen + Q - 1) / Q;
    if (nck == 0 || slot >= p.batch * nck) return false;
    row = slot / nck;
    t0 = (slot % nck) * Q;
    clen = p.seqlen - t0;
  }
  if (clen > Q) clen = Q;
  return clen > 0;
}

// blockIdx.x -> (head, p block, slot), heads fastest.
__device__ __forceinline__ void decode_block(const SsdFwdCudaParams& p, int64_t& head, int& ch0, int64_t& slot) {
  const int64_t npb = (p.headdim + kBP - 1) / kBP;
  const int64_t bid = blockIdx.x, rest = bid / p.nheads;
  head = bid % p.nheads;
  ch0 = int(rest % npb) * kBP;
  slot = rest / npb;
}

// ------------------------------------------------------------------------------------------ 1. chunk states
// S_c from a zero state over the chunk's tiles (c_update), x / B / dt' of tile i + 1 copied (cp.async) while tile i
// is multiplied (two shared buffers). 8 warps, 3 CTAs an SM.
template <typename in_t>
__global__ void __launch_bounds__(kCThreads, 2) ssd_chunk_state_kernel(const SsdFwdCudaParams p) {
  extern __shared__ float4 ssd_smem[];
  int64_t head, slot, row, t0, clen;
  int ch0;
  decode_block(p, head, ch0, slot);
  if (!chunk_of_slot(p, slot, row, t0, clen)) return;
  CCtx<in_t> c = make_cctx<in_t>(p, ssd_smem, row, head, ch0);
  float hacc[8][4];
  c_state_load(hacc, nullptr, c.nch, c.n);
  float dsum = 0.f;
  const int ntiles = int((clen + kTile - 1) / kTile);
  auto tlen = [&](int it) { return int(clen - int64_t(it) * kTile < kTile ? clen - int64_t(it) * kTile : kTile); };
  cctx_state_buf(c, ssd_smem, 0);
  c_issue_tile(p, c, row, t0, tlen(0), false);
  cp_async_commit();
  for (int it = 0; it < ntiles; ++it) {
    if (it + 1 < ntiles) {  // the other buffer was last read before the previous iteration's closing barrier
      cctx_state_buf(c, ssd_smem, (it + 1) & 1);
      c_issue_tile(p, c, row, t0 + int64_t(it + 1) * kTile, tlen(it + 1), false);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    cctx_state_buf(c, ssd_smem, it & 1);
    dsum += c_update(hacc, c, tlen(it));
    __syncthreads();
  }
  const int64_t pn = p.headdim * p.dstate;
  c_state_store(hacc, p.states_in + (slot * p.nheads + head) * pn + int64_t(ch0) * p.dstate, c.nch, c.n);
  if (ch0 == 0 && threadIdx.x == 0) p.chunk_decay[slot * p.nheads + head] = dsum;
}

// ------------------------------------------------------------------------------------------ 2. state passing
template <int V> struct VecF;
template <> struct VecF<1> {
  float v[1];
  __device__ __forceinline__ void load(const float* s) { v[0] = *s; }
  __device__ __forceinline__ void store(float* d) const { *d = v[0]; }
};
template <> struct VecF<4> {
  float v[4];
  __device__ __forceinline__ void load(const float* s) {
    const float4 t = *reinterpret_cast<const float4*>(s);
    v[0] = t.x; v[1] = t.y; v[2] = t.z; v[3] = t.w;
  }
  __device__ __forceinline__ void store(float* d) const {
    *reinterpret_cast<float4*>(d) = make_float4(v[0], v[1], v[2], v[3]);
  }
};

// V floats a thread (V = 4 when p n % 4 == 0: 16-byte rows). grid (ceil(p n / (128 V)), h, nseq).
template <int V>
__global__ void __launch_bounds__(kThreads) ssd_state_pass_kernel(const SsdFwdCudaParams p) {
  const int64_t pn = p.headdim * p.dstate, head = blockIdx.y, seq = blockIdx.z;
  const int64_t e0 = (int64_t(blockIdx.x) * kThreads + threadIdx.x) * V;
  if (e0 >= pn) return;
  int64_t slot0, nck;
  if (p.cu_seqlens) {
    slot0 = p.chunk_offsets[seq];
    nck = p.chunk_offsets[seq + 1] - slot0;
  } else {
    nck = (p.seqlen + p.chunk_size - 1) / p.chunk_size;
    slot0 = seq * nck;
  }
  VecF<V> h;
  if (p.initial_states) h.load(p.initial_states + (seq * p.nheads + head) * pn + e0);
  else {
#pragma unroll
    for (int i = 0; i < V; ++i) h.v[i] = 0.f;
  }
  const int64_t sstride = p.nheads * pn;
  float* base = p.states_in + slot0 * sstride + head * pn + e0;
  const float* dec = p.chunk_decay + slot0 * p.nheads + head;
  VecF<V> nxt;
  if (nck > 0) nxt.load(base);
  for (int64_t ci = 0; ci < nck; ++ci) {
    const VecF<V> s = nxt;  // S_c (read before this slot is overwritten)
    if (ci + 1 < nck) nxt.load(base + (ci + 1) * sstride);
    const float d = expf(dec[ci * p.nheads]);
    h.store(base + ci * sstride);  // the state entering chunk c
#pragma unroll
    for (int i = 0; i < V; ++i) h.v[i] = d * h.v[i] + s.v[i];
  }
  if (p.final_states) h.store(p.final_states + (seq * p.nheads + head) * pn + e0);
}

// ------------------------------------------------------------------------------------------ 3. chunk scan
// Per 64-token tile of the chunk: S phase, Y phase, epilogue, state update (not after the chunk's last tile). Four
// barriers a tile: tiles loaded / S in shared memory / Y staged / all reads of x, B, C, Y done before the next
// tile's copies (the operand copy of the state is rewritten after the third: every Y phase has read it).
template <typename in_t>
__global__ void __launch_bounds__(kCThreads, 2) ssd_chunk_scan_kernel(const SsdFwdCudaParams p) {
  extern __shared__ float4 ssd_smem[];
  int64_t head, slot, row, t0, clen;
  int ch0;
  decode_block(p, head, ch0, slot);
  if (!chunk_of_slot(p, slot, row, t0, clen)) return;
  const CCtx<in_t> c = make_cctx<in_t>(p, ssd_smem, row, head, ch0);
  const int64_t pn = p.headdim * p.dstate;
  float hacc[8][4];
  c_state_load(hacc, p.states_in + (slot * p.nheads + head) * pn + int64_t(ch0) * p.dstate, c.nch, c.n);
  c_state_to_smem(hacc, c);
  // 16-byte epilogue accesses: rows of out / ypre / z in whole 8-element pieces at 16-byte aligned addresses
  auto al = [](const void* q) { return (reinterpret_cast<uintptr_t>(q) & 15u) == 0; };
  const bool vec = p.vec16 && p.headdim % 8 == 0 && al(p.out) && (!p.ypre || al(p.ypre)) &&
                   p.out_batch_stride % 8 == 0 && p.out_l_stride % 8 == 0 && p.out_head_stride % 8 == 0 &&
                   (!p.z || (p.z_batch_stride % 8 == 0 && p.z_l_stride % 8 == 0 && p.z_head_stride % 8 == 0));
  const int ntiles = int((clen + kTile - 1) / kTile);
  for (int it = 0; it < ntiles; ++it) {
    const int64_t tt = t0 + int64_t(it) * kTile;
    const int tl = int(clen - int64_t(it) * kTile < kTile ? clen - int64_t(it) * kTile : kTile);
    c_issue_tile(p, c, row, tt, tl, true);
    cp_async_commit();
    V8<in_t> zr[2];
    c_prefetch_z(p, c, tt, tl, vec, zr);  // in flight through the S and Y phases
    cp_async_wait<0>();
    __syncthreads();
    c_s_phase(c);
    __syncthreads();
    c_y_phase(c);
    __syncthreads();
    c_out_pass(p, c, row, tt, tl, vec, zr);
    if (it + 1 < ntiles) {
      c_update(hacc, c, tl);
      c_state_to_smem(hacc, c);
    }
    __syncthreads();
  }
}

// ------------------------------------------------------------------------------------------ launch
// The three kernels on one stream (instantiated in ssd_fwd_{bf16,fp16,fp32}.cu). Needs p.states_in, p.chunk_decay
// and p.n_slots (checked by the launcher).
template <typename in_t>
cudaError_t launch_ssd_fwd_chunked(const SsdFwdCudaParams& p, cudaStream_t stream) {
  if (p.nseq == 0 || p.nheads == 0 || p.headdim == 0) return cudaSuccess;
  if (p.dstate < 1 || p.dstate > kNT * 8 || p.chunk_size % kTile != 0 || p.chunk_size <= 0 ||
      p.ngroups < 1 || p.nheads % p.ngroups != 0 || p.nheads > 65535 || p.nseq > 65535 || p.n_slots < 0)
    return cudaErrorInvalidValue;
  using E = typename TileType<in_t>::E;
  const CLayout L = chunk_layout<E>(p.dstate);
  const int64_t smem = L.bytes;
  const int64_t npb = (p.headdim + kBP - 1) / kBP;
  const int64_t nblk = p.n_slots * npb * p.nheads;
  if (nblk > 0x7fffffffLL) return cudaErrorInvalidValue;
  cudaError_t e = cudaSuccess;
  cudaLaunchConfig_t cfg = {};
  cfg.blockDim = dim3(kCThreads);
  cfg.stream = stream;
  if (nblk > 0) {
    const int64_t smem1 = L.st_bytes;  // two buffers of x, B, dt' only
    cfg.gridDim = dim3(unsigned(nblk));
    cfg.dynamicSmemBytes = size_t(smem1);
    auto k1 = ssd_chunk_state_kernel<in_t>;
    if (smem1 > 48 * 1024) e = cudaFuncSetAttribute(k1, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem1));
    if (e == cudaSuccess) e = cudaLaunchKernelEx(&cfg, k1, p);
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  const int64_t pn = p.headdim * p.dstate;
  cfg.dynamicSmemBytes = 0;
  cfg.blockDim = dim3(kThreads);
  if (pn % 4 == 0) {
    cfg.gridDim = dim3(unsigned((pn + 4 * kThreads - 1) / (4 * kThreads)), unsigned(p.nheads), unsigned(p.nseq));
    e = cudaLaunchKernelEx(&cfg, ssd_state_pass_kernel<4>, p);
  } else {
    cfg.gridDim = dim3(unsigned((pn + kThreads - 1) / kThreads), unsigned(p.nheads), unsigned(p.nseq));
    e = cudaLaunchKernelEx(&cfg, ssd_state_pass_kernel<1>, p);
  }
  if (e == cudaSuccess) e = cudaGetLastError();
  if (e != cudaSuccess || nblk == 0) return e;
  cfg.gridDim = dim3(unsigned(nblk));
  cfg.blockDim = dim3(kCThreads);
  cfg.dynamicSmemBytes = size_t(smem);
  auto k3 = ssd_chunk_scan_kernel<in_t>;
  if (smem > 48 * 1024) e = cudaFuncSetAttribute(k3, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (e == cudaSuccess) e = cudaLaunchKernelEx(&cfg, k3, p);
  return e != cudaSuccess ? e : cudaGetLastError();
}

}  // namespace ssd_cuda
}  // namespace mamba_kernels
