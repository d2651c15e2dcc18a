// CUDA forward of the chunked SSD (Mamba-2) scan, chunk-parallel pipeline (the default path of _ssd_fwd_cuda; the
// fused kernel of ssd_fwd_kernel.cuh is selected by MK_SSD_CUDA_FUSED=1 or the op _ssd_fwd_cuda_fused). No torch.
// The default since 2026-11-30 is MK_SSD_HANDOVER=0 (below: chunk states S_c, then ssd_state_pass_kernel); the
// hand-over pipeline described next is MK_SSD_HANDOVER=1.
//
// Semantics: python_ref/ssd.py::ssd_chunked_ref, as the fused kernel (see its header for the equations and operand
// types). The SSD decomposition in two kernels after a memset of the hand-over flags (the dt processing -- bias,
// softplus, limits, in-tile cumsum of dt' A -- is recomputed by both per 64-token tile, from dt, in c_issue_tile):
//
//   1. ssd_chunk_state_kernel   one CTA (8 warps) per (head, 64-channel p block, chunk), by ticket (heads and p
//      blocks fastest, then batch rows, then the chunk index; varlen: slot order). Walks the chunk's Q / 64 tiles
//      from a zero state (c_update, x / B double-buffered by cp.async): S_c = sum_t exp(a_last - a_t) dt'_t x_t^T
//      B_t in registers; then the state passing of its chain link: waits for the flag of slot c, reads h_in[c]
//      (L2: written moments before by the CTA of chunk c - 1), writes h_in[c + 1] = exp(sum dt' A) h_in[c] + S_c
//      into states_in[slot + 1] (final_states after the last chunk) and sets the flag of slot c + 1. The first chunk
//      of a sequence writes states_in[slot] = initial (or 0). Extra finisher CTAs write final = initial for
//      sequences without chunks (varlen, l = 0). This replaces the old chunk-state -> state-pass kernels (S_c
//      written, read, overwritten: 3 fp32 state passes through HBM, 88 us of state pass at shape 1).
//   2. ssd_chunk_scan_kernel    one CTA (8 warps) per (head, p block, chunk slot), heads fastest, from h_in[c]
//      (states_in[slot]): per 64-token tile S = C B^T (masked, decayed) to shared memory, Y = exp(a_t) C h^T + S x
//      staged fp32, epilogue + D x, ypre, * silu(z) with 16-byte accesses, then the state carried to the next tile
//      of the chunk in registers (c_update; not after the chunk's last tile, so Q = 64 has none).
// Device pieces, warp roles and fragment loaders: ssd_chunk_tile.cuh.
// Run-time variants for A/B timing (chunk_knobs(): MK_SSD_HANDOVER, MK_SSD_SCAN_HEADS, read once a process):
//   MK_SSD_HANDOVER=0      (default) kernel 1 without the hand-over (ssd_chunk_state_nh_kernel: S_c and the chunk
//                          decays to HBM, no CTA waits on another) + ssd_state_pass_kernel. H200 2026-11-30, shape 1:
//                          321 + 87 us against 529 us for the hand-over kernel (its chain is serial); shape 2: 134 +
//                          34 against 212. MK_SSD_HANDOVER=1: the hand-over kernel.
//   MK_SSD_SCAN_HEADS=2/4  kernel 2 walks 2 / 4 heads of one group a CTA (grid / 2, / 4): C B^T once a tile for
//                          them (0.66 of 2.8 MFLOP a tile and head at shape 1), stored rounded to the tile type.
//
// Why 64-token tiles inside a chunk of Q in {64, 128, 256}: the quadratic part per tile is 64 x 64 (C B^T costs
// per head 10 / 16 of 2 * 64 * 64 * n a tile), a chunk of 256 done as one 256 x 256 block would cost 4x the C B^T
// and S x FLOPs of the tile walk; the walk's state update (2 p n FLOPs a token) is cheaper. Q only sets the number
// of chunk states (HBM: states_in written once by kernel 1 and read once by kernel 2: 2 x 4 b (l / Q) h p n bytes).
//
// Geometry, bytes, FLOPs and expected H200 times (bf16, z, D, chunk 256; 4 TB/s, mma.sync at ~300 TFLOP/s
// sustained with 16 warps an SM; a kernel costs about max(bytes, FLOPs) plus a tail):
//   shape 1, b4 l4096 h80 p64 n128 g1: 5120 CTAs a kernel (1 p block), 2 an SM, ~19 waves.
//     kernel 1: x 168 MB + states_in 168 MB written (hand-over reads hit L2; B 4 MB, L2-shared by the 80 heads)
//       = 336 MB, 84 us; 21.5 GFLOP, ~70 us. Expected 100-130 us (was 279 + 88 us of state pass).
//     kernel 2: x, z, states_in, out = 672 MB (+168 with ypre), 168 us; 57 GFLOP (C h^T 1.05, update 0.79, C B^T
//       0.66, S x 0.33 MFLOP a tile and head), ~190 us. Expected 220-280 us (was 1317 us).
//     Whole forward expected ~330-400 us (was 1683 us; Triton 758 us). The 300 us target needs the C B^T shared
//     across the heads of a group (g = 1 here) and overlap of loads and mma inside the CTA (gaps below).
//   shape 2, b2 l4096 h32 p128 n128 g32: 2048 CTAs a kernel (2 p blocks).
//     kernel 1: x 67 + B 67 + states_in 67 MB = 201 MB, 50 us; 8.6 GFLOP. Expected 55-70 us (was 121 + 35).
//     kernel 2: x, z, B, C, states_in, out = 402 MB, 100 us; 23 GFLOP, ~75 us. Expected 110-140 us (was 528).
//     Whole forward expected ~170-210 us (was 683 us; target 280 us).
//
// Resources (sm_90a, bf16, n = 128): kernel 1 128 registers (__launch_bounds__(256, 2)), no spill, 53 KB of shared
// memory (two x / B / dt' buffers); kernel 2 128 registers, no spill, 86.5 KB (2 CTAs an SM: 16 warps). fp32 / fp16
// inputs (3xTF32): kernel 2 spills 8-38 bytes (fp16 / fp32) at sm_90a. Variants (sm_90a bf16, n = 128):
// ssd_chunk_state_nh_kernel 128 registers, no spill, 53 KB; ssd_state_pass_kernel 30 registers; kernel 2 with 2 / 4
// heads 128 registers and 24 bytes of spill (hoisted addresses, a few LDL a tile outside the mma loops), 86.5 KB +
// the C B^T cache (5 KB a tile: 106.5 KB at Q = 256, still 2 CTAs an SM).
//
// Known gaps (NOTES): unmeasured on the GPU; the hand-over relies on tickets for forward progress (a CTA spins
// only on a lower ticket, which has started); kernel 2 has no double buffering of the next tile (the second CTA of
// the SM overlaps instead) and recomputes C B^T per head (at g = 1 it could be computed once per group and chunk
// and shared by the heads: 0.66 of 2.8 MFLOP a tile); kernel 2 reads the fp32 states (a bf16 copy written by
// kernel 1 would save 84 MB at shape 1); fp32 tiles (fp32 / fp16 inputs) use scalar fragment loads.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "ssd/ssd_chunk_tile.cuh"

namespace mamba_kernels {
namespace ssd_cuda {

// blockIdx.x -> (first head, p block, slot), head blocks of nh heads fastest (nh divides the heads of a group, so
// the nh heads share B / C).
__device__ __forceinline__ void decode_block(const SsdFwdCudaParams& p, int nh, int64_t& head, int& ch0,
                                             int64_t& slot, int64_t bid = blockIdx.x) {
  const int64_t npb = (p.headdim + kBP - 1) / kBP, nhb = p.nheads / nh;
  const int64_t rest = bid / nhb;
  head = (bid % nhb) * nh;
  ch0 = int(rest % npb) * kBP;
  slot = rest / npb;
}

// Run-time choices of the pipeline, read once from the environment at the first launch (A/B timing on the GPU; the
// CPU emulation rewrites them between runs):
//   MK_SSD_HANDOVER    0 (default): ssd_chunk_state_nh_kernel writes S_c and the chunk decays, ssd_state_pass_kernel
//                      chains them (no serial chain inside the big kernel, one more fp32 state pass; faster on the
//                      H200); 1: the chunk-state kernel hands the state over chunk to chunk (ticket / flag chain)
//   MK_SSD_SCAN_HEADS  1 (default), 2 or 4: heads of one group a scan CTA walks (C B^T computed by the first, read
//                      back by the others); lowered to a divisor of the heads a group (and to what shared memory holds)
struct ChunkKnobs {
  int handover = 0, scan_heads = 1;
};
inline ChunkKnobs& chunk_knobs() {
  static ChunkKnobs k = [] {
    ChunkKnobs v;
    if (const char* e = std::getenv("MK_SSD_HANDOVER")) v.handover = std::atoi(e) != 0;
    if (const char* e = std::getenv("MK_SSD_SCAN_HEADS")) {
      const int h = std::atoi(e);
      v.scan_heads = h >= 4 ? 4 : (h >= 2 ? 2 : 1);
    }
    return v;
  }();
  return k;
}

// ------------------------------------------------------------------------------------------ 1. chunk states
// S_c of one chunk from a zero state into hacc (c_update over the chunk's tiles; x / B / dt' of tile i + 1 copied
// by cp.async while tile i is multiplied, two shared buffers). Returns sum dt' A over the chunk.
template <typename in_t>
__device__ __forceinline__ float c_chunk_walk(const SsdFwdCudaParams& p, CCtx<in_t>& c, void* smem, int64_t row,
                                              int64_t t0, int64_t clen, float (&hacc)[8][4]) {
  c_state_load(hacc, nullptr, c.nch, c.n);
  float dsum = 0.f;
  const int ntiles = int((clen + kTile - 1) / kTile);
  auto tlen = [&](int it) { return int(clen - int64_t(it) * kTile < kTile ? clen - int64_t(it) * kTile : kTile); };
  cctx_state_buf(c, smem, 0);
  c_issue_tile(p, c, row, t0, tlen(0), false);
  cp_async_commit();
  for (int it = 0; it < ntiles; ++it) {
    if (it + 1 < ntiles) {  // the other buffer was last read before the previous iteration's closing barrier
      cctx_state_buf(c, smem, (it + 1) & 1);
      c_issue_tile(p, c, row, t0 + int64_t(it + 1) * kTile, tlen(it + 1), false);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    cctx_state_buf(c, smem, it & 1);
    dsum += c_update(hacc, c, tlen(it));
    __syncthreads();
  }
  return dsum;
}

// Order and hand-over between the CTAs of one (head, p block) chain. The CTAs take tickets from an atomic counter
// and work on the chunk of their ticket, so every chunk's predecessor has started before it (forward progress for
// the spin below whatever order the hardware dispatches blocks in). Tickets run heads and p blocks fastest, then
// (dense) batch rows, then the chunk index: the chains of all rows advance together.
__device__ __forceinline__ unsigned take_ticket(unsigned* ctr) {
#if defined(__CUDA_ARCH__)
  return atomicAdd(ctr, 1u);
#else  // CPU emulation: blocks run one after another, thread 0 alone calls this
  return (*ctr)++;
#endif
}
__device__ __forceinline__ void wait_flag(const unsigned* f) {
#if defined(__CUDA_ARCH__)
  unsigned v;
  do {
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(f) : "memory");
  } while (v == 0u);
#else  // CPU emulation: the predecessor (lower ticket) has run to its end
  if (*f == 0u) {
    std::fprintf(stderr, "ssd_chunk_state_kernel: predecessor flag not set (ticket order broken)\n");
    std::abort();
  }
#endif
}
__device__ __forceinline__ void set_flag(unsigned* f) {
#if defined(__CUDA_ARCH__)
  asm volatile("st.release.gpu.global.u32 [%0], %1;\n" ::"l"(f), "r"(1u) : "memory");
#else
  *f = 1u;
#endif
}
__device__ __forceinline__ void fence_gpu() {
#if defined(__CUDA_ARCH__)
  __threadfence();
#endif
}
// fp32 state rows read past L1 (written by another CTA during this kernel)
__device__ __forceinline__ float ld_cg(const float* q) {
#if defined(__CUDA_ARCH__)
  return __ldcg(q);
#else
  return *q;
#endif
}

// S_c from a zero state over the chunk's tiles (c_update; x / B / dt' of tile i + 1 copied by cp.async while tile i
// is multiplied, two shared buffers), then the state passing of chunk c in the same CTA: wait for h_in[c] (flag of
// slot c, set by the CTA of chunk c - 1), write h_in[c + 1] = exp(sum dt' A) h_in[c] + S_c (or final_states after
// the sequence's last chunk) and set the flag of slot c + 1. The first chunk of a sequence writes h_in = initial
// (or 0) itself. Tickets past the chunks (varlen, l = 0): one CTA per (sequence, head, p block) writes final =
// initial (or 0) for a sequence without chunks. S_c never goes through HBM; the chain's latency (one 32 KB fp32
// state read from L2 and written a link) overlaps the tiles of the CTAs behind it.
// flags (p.chunk_decay, as words): n_slots * h * npb flags, then the ticket counter; zeroed before the launch.
template <typename in_t>
__global__ void __launch_bounds__(kCThreads, 2) ssd_chunk_state_kernel(const SsdFwdCudaParams p) {
  extern __shared__ float4 ssd_smem[];
  // the ticket's shared word after the two tile buffers (dynamic shared memory: the emulation has no static one)
  unsigned* s_ticket = reinterpret_cast<unsigned*>(reinterpret_cast<char*>(ssd_smem) +
                                                   chunk_layout<typename TileType<in_t>::E>(p.dstate).st_bytes);
  unsigned* flags = reinterpret_cast<unsigned*>(p.chunk_decay);
  const int64_t npb = (p.headdim + kBP - 1) / kBP, hp = p.nheads * npb, nflags = p.n_slots * hp;
  if (threadIdx.x == 0) *s_ticket = take_ticket(flags + nflags);
  __syncthreads();
  const int64_t ticket = *s_ticket, head = ticket % p.nheads, rest = ticket / hp;
  const int ch0 = int((ticket / p.nheads) % npb) * kBP;
  const int64_t pn = p.headdim * p.dstate, st_off = head * pn + int64_t(ch0) * p.dstate;
  const int64_t nck = p.cu_seqlens ? 0 : (p.seqlen + p.chunk_size - 1) / p.chunk_size;
  const int64_t nchunk = p.cu_seqlens ? p.chunk_offsets[p.nseq] : p.batch * nck;
  if (rest >= nchunk) {  // finisher of a sequence without chunks
    const int64_t seq = rest - nchunk;
    if (seq >= p.nseq || !p.final_states) return;
    if (p.cu_seqlens ? p.chunk_offsets[seq + 1] > p.chunk_offsets[seq] : nck > 0) return;
    float* dst = p.final_states + seq * p.nheads * pn + st_off;
    const float* src = p.initial_states ? p.initial_states + seq * p.nheads * pn + st_off : nullptr;
    const int nch = int(p.headdim - ch0 < kBP ? p.headdim - ch0 : kBP);
    for (int64_t i = threadIdx.x; i < int64_t(nch) * p.dstate; i += kCThreads) dst[i] = src ? src[i] : 0.f;
    return;
  }
  int64_t slot, seq;
  bool first, last;
  if (p.cu_seqlens) {
    slot = rest;
    int64_t lo = 0, hi = p.nseq - 1;  // the last sequence s with chunk_offsets[s] <= slot
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) >> 1;
      if (p.chunk_offsets[mid] <= slot) lo = mid; else hi = mid - 1;
    }
    seq = lo;
    first = slot == p.chunk_offsets[seq];
    last = slot + 1 == p.chunk_offsets[seq + 1];
  } else {
    seq = rest % p.batch;
    const int64_t ci = rest / p.batch;
    slot = seq * nck + ci;
    first = ci == 0;
    last = ci + 1 == nck;
  }
  int64_t row, t0, clen;
  if (!chunk_of_slot(p, slot, row, t0, clen)) return;  // (never: every slot below nchunk has tokens)
  CCtx<in_t> c = make_cctx<in_t>(p, ssd_smem, row, head, ch0);
  float hacc[8][4];
  const float dsum = c_chunk_walk(p, c, ssd_smem, row, t0, clen, hacc);
  // ---- state passing: h_in[c] of this chain link
  const int64_t fidx = slot * hp + head * npb + ch0 / kBP;  // flag of (slot, head, p block)
  const float* hin;
  if (first) {
    hin = p.initial_states ? p.initial_states + seq * p.nheads * pn + st_off : nullptr;
  } else {
    if (threadIdx.x == 0) wait_flag(flags + fidx);  // h_in[c] (slot c) written by chunk c - 1
    __syncthreads();
    hin = p.states_in + slot * p.nheads * pn + st_off;
  }
  const float dl = expf(dsum);
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int r0 = 16 * (w & 3) + g, c0 = 64 * (w >> 2) + 2 * q;
  float* dst = last ? (p.final_states ? p.final_states + seq * p.nheads * pn + st_off : nullptr)
                    : p.states_in + (slot + 1) * p.nheads * pn + st_off;
  float* own = p.states_in + slot * p.nheads * pn + st_off;  // first chunk: h_in[c] = initial (or 0)
#pragma unroll
  for (int j = 0; j < 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = r0 + 8 * (e >> 1), cc = c0 + 8 * j + (e & 1);
      if (r < c.nch && cc < c.n) {
        const int64_t o = int64_t(r) * c.n + cc;
        const float h = hin ? (first ? hin[o] : ld_cg(hin + o)) : 0.f;
        if (first) own[o] = h;
        if (dst) dst[o] = dl * h + hacc[j][e];
      }
    }
  }
  if (!last) {  // publish h_in[c + 1]: every thread's stores, a fence, the barrier, then the flag
    fence_gpu();
    __syncthreads();
    if (threadIdx.x == 0) set_flag(flags + fidx + hp);
  }
}

// Words of the pipeline's workspace (p.chunk_decay; kBP = 64 channels a flag).
inline int64_t chunk_flag_words(const SsdFwdCudaParams& p) {
  static_assert(kBP == 64, "ssd_chunk_workspace_words counts flags of 64-channel p blocks");
  return ssd_chunk_workspace_words(p.n_slots, p.nheads, p.headdim);
}

// ------------------------------------------------------------------------------------------ 1b/2. separate pass
// MK_SSD_HANDOVER=0 (the 3c9faac pipeline). ssd_chunk_state_nh_kernel: one CTA per (head, p block, slot) in grid
// order, S_c into states_in[slot] and sum dt' A into p.chunk_decay[slot * h + head] (the workspace read as floats:
// n_slots * h <= its n_slots * h * npb + 1 words). No CTA waits on another: the kernel runs at the speed of its
// tiles, and the chain costs one more kernel (S_c written, read and overwritten by the pass).
template <typename in_t>
__global__ void __launch_bounds__(kCThreads, 2) ssd_chunk_state_nh_kernel(const SsdFwdCudaParams p) {
  extern __shared__ float4 ssd_smem[];
  int64_t head, slot, row, t0, clen;
  int ch0;
  decode_block(p, 1, head, ch0, slot);
  if (!chunk_of_slot(p, slot, row, t0, clen)) return;
  CCtx<in_t> c = make_cctx<in_t>(p, ssd_smem, row, head, ch0);
  float hacc[8][4];
  const float dsum = c_chunk_walk(p, c, ssd_smem, row, t0, clen, hacc);
  const int64_t pn = p.headdim * p.dstate;
  c_state_store(hacc, p.states_in + (slot * p.nheads + head) * pn + int64_t(ch0) * p.dstate, c.nch, c.n);
  if (ch0 == 0 && threadIdx.x == 0) p.chunk_decay[slot * p.nheads + head] = dsum;
}

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

// h_in[c] = exp(sum dt' A of chunk c - 1) h_in[c - 1] + S_{c - 1} along each sequence, in place over states_in
// (S_c is read before its slot is overwritten), final_states after the last chunk (initial, or 0, for a sequence
// without chunks). V floats a thread (V = 4 when p n % 4 == 0: 16-byte rows). grid (ceil(p n / (128 V)), h, nseq).
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
// A zero the compiler cannot see through: the scan kernel's per-head coordinates are recomputed from blockIdx in
// each head pass instead of being hoisted out of the head loop and kept live across its tile loop (they would
// push the Y phase, already at the 128-register budget of 2 CTAs an SM, into spills).
__device__ __forceinline__ int64_t opaque_zero() {
#if defined(__CUDA_ARCH__)
  unsigned z;
  asm volatile("mov.u32 %0, 0;\n" : "=r"(z));
  return z;
#else
  return 0;
#endif
}

// One head pass of the scan kernel: head hi of the CTA's kHeads heads (hi = 0 fills the C B^T cache). Returns
// hi + 1, and everything inside derives from c.head (live anyway), not hi: the loop counter is dead during the
// tile walk (the kernel is at its 128-register budget).
template <typename in_t, int kHeads>
__device__ __forceinline__ int c_scan_head(const SsdFwdCudaParams& p, int hi) {
  using E = typename TileType<in_t>::E;
  using W = typename CbWord<E>::T;
  extern __shared__ float4 ssd_smem[];
  int64_t head, slot, row, t0, clen;
  int ch0;
  decode_block(p, kHeads, head, ch0, slot, int64_t(blockIdx.x) + (kHeads > 1 ? opaque_zero() : 0));
  // a slot past the last chunk (uniform over the CTA): kHeads > 1 checks it before the head loop (this structure
  // spills the least for each kHeads; the register allocation is sensitive to it)
  const bool has_chunk = chunk_of_slot(p, slot, row, t0, clen);
  if constexpr (kHeads == 1) {
    if (!has_chunk) return kHeads;
  }
  head += hi;
  const CCtx<in_t> c = make_cctx<in_t>(p, ssd_smem, row, head, ch0);
  const int64_t pn = p.headdim * p.dstate;
  float hacc[8][4];
  c_state_load(hacc, p.states_in + (slot * p.nheads + head) * pn + int64_t(ch0) * p.dstate, c.nch, c.n);
  c_state_to_smem(hacc, c);  // a previous head's last barrier follows every read of c.hs
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
    // the C B^T cache: after the layout, kCbBlocks x 4 x 32 words a tile
    c_s_phase<in_t, (kHeads > 1)>(
        c, reinterpret_cast<W*>(reinterpret_cast<char*>(ssd_smem) + chunk_layout<E>(c.n).bytes) +
               int64_t(it) * (kCbBlocks * 4 * 32), c.head % kHeads == 0);
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
  return int(c.head % kHeads) + 1;
}

// Per 64-token tile of the chunk: S phase, Y phase, epilogue, state update (not after the chunk's last tile). Four
// barriers a tile: tiles loaded / S in shared memory / Y staged / all reads of x, B, C, Y done before the next
// tile's copies (the operand copy of the state is rewritten after the third: every Y phase has read it).
// kHeads > 1 (MK_SSD_SCAN_HEADS): the CTA walks kHeads heads of one group over the same chunk, one after another
// (each head's state lives in the 32 accumulator registers of a lane, so heads cannot be interleaved per tile);
// the first head's S phase stores its raw C B^T per tile in the cache after the layout, later heads read it back
// instead of n / 16 mma k-steps per causal block (c_s_phase<in_t, true>). C and B tiles are still copied per head
// (L2 hits: the group's heads run in one CTA at once). The head loop costs 24 bytes of spill at sm_90a bf16 (six
// hoisted tile-loop addresses, reloaded by ~7 LDL a tile outside the mma loops); kHeads = 1 has none.
template <typename in_t, int kHeads>
__global__ void __launch_bounds__(kCThreads, 2) ssd_chunk_scan_kernel(const SsdFwdCudaParams p) {
  if constexpr (kHeads > 1) {
    int64_t head, slot, row, t0, clen;
    int ch0;
    decode_block(p, kHeads, head, ch0, slot);
    if (!chunk_of_slot(p, slot, row, t0, clen)) return;
  }
  int hi = 0;
#pragma unroll 1
  do hi = c_scan_head<in_t, kHeads>(p, hi);
  while (hi < kHeads);
}

// Shared memory of the scan kernel walking nh heads a CTA: the layout plus, for nh > 1, the C B^T cache of the
// chunk's tiles.
template <typename E>
inline int64_t scan_smem_bytes(int64_t n, int64_t chunk_size, int nh) {
  const int64_t cache = nh > 1 ? (chunk_size / kTile) * kCbBlocks * 4 * 32 * int64_t(sizeof(typename CbWord<E>::T)) : 0;
  return chunk_layout<E>(n).bytes + cache;
}

// Heads a scan CTA walks: the knob, halved until it divides the heads of a group and the cache fits the device.
template <typename E>
inline int scan_heads_for(const SsdFwdCudaParams& p, int want) {
  const int64_t hpg = p.nheads / p.ngroups;
  int nh = want;
  while (nh > 1 && (hpg % nh != 0 || scan_smem_bytes<E>(p.dstate, p.chunk_size, nh) > device_smem_optin())) nh >>= 1;
  return nh;
}

// ------------------------------------------------------------------------------------------ launch
// The kernels on one stream (instantiated in ssd_fwd_{bf16,fp16,fp32}.cu), chosen by chunk_knobs(). Default
// (MK_SSD_HANDOVER=0): chunk states (S_c), state pass, chunk scan. MK_SSD_HANDOVER=1: the workspace memset, chunk
// states with hand-over, chunk scan. Needs p.states_in, p.n_slots and p.chunk_decay as a workspace of
// chunk_flag_words(p) 32-bit words (checked by the launcher; allocated by the binding).
template <typename in_t>
cudaError_t launch_ssd_fwd_chunked(const SsdFwdCudaParams& p, cudaStream_t stream) {
  if (p.nseq == 0 || p.nheads == 0 || p.headdim == 0) return cudaSuccess;
  if (p.dstate < 1 || p.dstate > kNT * 8 || p.chunk_size % kTile != 0 || p.chunk_size <= 0 ||
      p.ngroups < 1 || p.nheads % p.ngroups != 0 || p.nheads > 65535 || p.nseq > 65535 || p.n_slots < 0)
    return cudaErrorInvalidValue;
  using E = typename TileType<in_t>::E;
  const ChunkKnobs kn = chunk_knobs();
  const CLayout L = chunk_layout<E>(p.dstate);
  const int64_t npb = (p.headdim + kBP - 1) / kBP;
  const int64_t nblk = p.n_slots * npb * p.nheads;
  // kernel 1 with hand-over also covers one finisher CTA per (sequence, head, p block) where a sequence may have no
  // chunk (the state pass writes those finals itself)
  const bool finishers = kn.handover && (p.cu_seqlens != nullptr || p.seqlen == 0);
  const int64_t nblk1 = (p.n_slots + (finishers ? p.nseq : 0)) * npb * p.nheads;
  if (nblk1 > 0x7fffffffLL) return cudaErrorInvalidValue;
  cudaError_t e = cudaSuccess;
  if (kn.handover) {
    const size_t wbytes = size_t(chunk_flag_words(p)) * sizeof(unsigned);  // flags + ticket counter, zeroed
#if defined(MK_CUDA_EMU)
    std::memset(p.chunk_decay, 0, wbytes);
#else
    e = cudaMemsetAsync(p.chunk_decay, 0, wbytes, stream);
    if (e != cudaSuccess) return e;
#endif
  }
  cudaLaunchConfig_t cfg = {};
  cfg.blockDim = dim3(kCThreads);
  cfg.stream = stream;
  if (nblk1 > 0) {
    const int64_t smem1 = L.st_bytes + (kn.handover ? 16 : 0);  // two buffers of x, B, dt' only; the ticket
    cfg.gridDim = dim3(unsigned(nblk1));
    cfg.dynamicSmemBytes = size_t(smem1);
    auto k1 = kn.handover ? ssd_chunk_state_kernel<in_t> : ssd_chunk_state_nh_kernel<in_t>;
    e = opt_in_smem(k1, smem1, "ssd_fwd_cuda (chunk states)");
    if (e == cudaSuccess) e = cudaLaunchKernelEx(&cfg, k1, p);
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  if (!kn.handover) {
    const int64_t pn = p.headdim * p.dstate;
    cfg.dynamicSmemBytes = 0;
    cfg.blockDim = dim3(kThreads);
    const int v = pn % 4 == 0 ? 4 : 1;
    cfg.gridDim = dim3(unsigned((pn + v * kThreads - 1) / (v * kThreads)), unsigned(p.nheads), unsigned(p.nseq));
    e = v == 4 ? cudaLaunchKernelEx(&cfg, ssd_state_pass_kernel<4>, p)
               : cudaLaunchKernelEx(&cfg, ssd_state_pass_kernel<1>, p);
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    cfg.blockDim = dim3(kCThreads);
  }
  if (nblk == 0) return cudaSuccess;
  const int nh = scan_heads_for<E>(p, kn.scan_heads);
  const int64_t smem = scan_smem_bytes<E>(p.dstate, p.chunk_size, nh);
  cfg.gridDim = dim3(unsigned(nblk / nh));
  cfg.dynamicSmemBytes = size_t(smem);
  auto k3 = nh == 4 ? ssd_chunk_scan_kernel<in_t, 4>
                    : (nh == 2 ? ssd_chunk_scan_kernel<in_t, 2> : ssd_chunk_scan_kernel<in_t, 1>);
  e = opt_in_smem(k3, smem, "ssd_fwd_cuda (chunk scan)");
  if (e == cudaSuccess) e = cudaLaunchKernelEx(&cfg, k3, p);
  return e != cudaSuccess ? e : cudaGetLastError();
}

}  // namespace ssd_cuda
}  // namespace mamba_kernels
