// CUDA forward of the chunked SSD (Mamba-2) scan: the fused kernel, tensor cores (mma.sync), no torch.
// Selected with MK_SSD_CUDA_FUSED=1 (read once by the launcher, csrc/ssd/ssd_launch.cu) or through the op
// torch.ops.mamba_kernels._ssd_fwd_cuda_fused; the default path is the chunk-parallel pipeline of
// ssd_chunk_kernel.cuh. Its tile steps (load_tile, tile_output, tile_update) live in ssd_common.cuh and are shared
// with the pipeline.
//
// Semantics: python_ref/ssd.py::ssd_chunked_ref (params: csrc/ssd/ssd.h, SsdFwdCudaParams). Per sequence and head,
// with dt' = clamp(softplus(dt + dt_bias)) and a_t the cumulative sum of dt' A from the start of the tile:
//   y_t   = exp(a_t) C_t h_in^T + sum_{s<=t} (C_t . B_s) exp(a_t - a_s) dt'_s x_s + D x_t,   out = y * silu(z)
//   h_out = exp(a_last) h_in + sum_s exp(a_last - a_s) dt'_s x_s^T B_s
//
// Structure. One CTA (4 warps) per (p block of 64 channels, head, sequence) walks its sequence in tiles of 64
// tokens, carrying the state h (64 channels x n, fp32) in the accumulator registers of the state-update mma (warp
// w owns channels 16w..16w+15: 64 floats a lane at n = 128). Per tile:
//   load   dt -> dt' and the tile's inclusive cumsum a (warps 0-1, shuffle scan); x (64 x 64), B, C (64 x n) to
//          shared memory (zero past the sequence end: dt' = 0 there, i.e. decay 1 and no input); h (rounded to
//          the operand type) to shared memory; h to states_in at every chunk start.
//   S      = C B^T (warp w: rows 16w.., causal column tiles only), masked and scaled in registers by
//          exp(a_t - a_s) dt'_s (a is non-increasing: every factor <= 1, no overflow).
//   Y      = exp(a_t) (C h^T) + S x   (S stays in registers: the accumulator layout of m16n8 is the A-operand
//          layout of m16n8k16, as in flash-attention 2); + D x, ypre, * silu(z), store.
//   h      = exp(a_last) h + (x o w)^T B,  w_s = exp(a_last - a_s) dt'_s.
// Two __syncthreads a tile (after the loads; before the next tile's loads overwrite them).
//
// Why a 64-token tile whatever chunk_size is: the output does not depend on the chunk length (only the
// prefix-caching states do, written every chunk_size / 64 tiles), and at 64 the quadratic part costs the least
// (C B^T is recomputed per head and p block: with g = 1 every head pays it) while the state part (2 p n FLOPs a
// token for C h^T and as much for the update) does not depend on the tile. The one CTA per (sequence, head, p
// block) has no chunk-state round trip through HBM (x, B, C, dt, z read once, out written once); its cost is a
// serial walk over the sequence, and few CTAs: b4 h80 p64 gives 320 CTAs (2 an SM by registers: 1.2 waves on 132
// SMs), b2 h32 p128 only 128 (one an SM, 4 warps). If the H200 shows it latency-bound, split each sequence into
// segments walked by separate CTAs (segment states combined by a short second pass, the exp(a_t) C h^T correction
// applied before the gate) or overlap tiles inside the CTA (warp-specialised C B^T / S x of tile i+1 while tile i
// updates the state). Timings: bench/bench_ssd.py (bench_ssd, bench_ssd_cuda_fwd_kernel).
//
// Operand types. bf16 inputs: bf16 tiles, mma m16n8k16 bf16 with fp32 accumulation (S, x o w and the state are
// rounded to bf16 as operands, as in the Triton kernels). fp32 and fp16 inputs: fp32 tiles and 3xTF32 (each
// operand split into a tf32 big and small part, three m16n8k8 products: fp32-level accuracy; fp16 is not used as
// an operand type because S and the state can exceed its range). A k16 step of a fragment holds k = 2q, 2q+1,
// 2q+8, 2q+9 (q = lane % 4); the tf32 path runs it as two k8 mmas over the even and the odd k of the step, so
// every path shares the fragment loaders.
//
// Measured on the H200 (f3c7f7c, scalar synchronous global loads): 6.29 ms at b4 l4096 h80 p64 n128 g1, 3.36 ms at
// b2 l4096 h32 p128 n128 g32: latency-bound (320 / 128 CTAs walking 64 tiles each, 249 registers). Since then the
// tiles load by 16-byte cp.async where rows allow (load_tile, shared with the pipeline), z included, and the bf16
// k-strided B fragments come from ldmatrix.x4.trans.
// Known gaps: the other fragments are read from shared memory with 32-bit (bf16 pairs) or scalar loads; no
// double buffering of the next tile's loads; one CTA serialises its tiles.
#pragma once
#include "ssd/ssd_common.cuh"

namespace mamba_kernels {
namespace ssd_cuda {

// ------------------------------------------------------------------------------------------ the kernel
template <typename in_t>
__global__ void __launch_bounds__(kThreads) ssd_fwd_kernel(const SsdFwdCudaParams p) {
  extern __shared__ float4 ssd_smem[];
  const int64_t head = blockIdx.y, seq = blockIdx.z;
  const int ch0 = int(blockIdx.x) * kBP;
  const int64_t Q = p.chunk_size, tiles_per_chunk = Q / kTile;
  int64_t row, start, len, slot0;
  if (p.cu_seqlens) {
    row = 0;
    start = p.cu_seqlens[seq];
    len = p.cu_seqlens[seq + 1] - start;
    slot0 = p.chunk_offsets[seq];
  } else {
    row = seq;
    start = 0;
    len = p.seqlen;
    slot0 = seq * ((p.seqlen + Q - 1) / Q);
  }
  const TileCtx<in_t> c = make_ctx<in_t>(p, ssd_smem, row, head, ch0);
  const int64_t pn = p.headdim * p.dstate;
  const int64_t state_off = head * pn + int64_t(ch0) * p.dstate;  // of (slot, head, ch0, 0) minus slot * h p n

  float hacc[kNT][4];
  state_load(hacc, p.initial_states ? p.initial_states + seq * p.nheads * pn + state_off : nullptr, c.nch, c.n);

  const int64_t ntiles = (len + kTile - 1) / kTile;
  for (int64_t it = 0; it < ntiles; ++it) {
    const int64_t t0 = start + it * kTile;  // first token (row of the packed / batch length axis)
    const int tl = int(len - it * kTile < kTile ? len - it * kTile : kTile);
    // the state entering the tile: operand copy in shared memory, fp32 copy to states_in at chunk starts
    const bool chunk_start = p.states_in && (it % tiles_per_chunk) == 0;
    state_to_smem(hacc, c, chunk_start ? p.states_in + (slot0 + it / tiles_per_chunk) * p.nheads * pn + state_off
                                       : nullptr);
    load_tile(p, c, row, t0, tl, true, p.z != nullptr);
    tile_output(p, c, row, t0, tl);
    tile_update(hacc, c, tl);
    __syncthreads();
  }
  if (p.final_states) state_store(hacc, p.final_states + seq * p.nheads * pn + state_off, c.nch, c.n);
}

// Launch for one input dtype (instantiated in ssd_fwd_{bf16,fp16,fp32}.cu). p.vec16: set by the launcher.
template <typename in_t>
cudaError_t launch_ssd_fwd(const SsdFwdCudaParams& p, cudaStream_t stream) {
  if (p.nseq == 0 || p.nheads == 0 || p.headdim == 0) return cudaSuccess;
  if (p.dstate < 1 || p.dstate > kNT * 8 || p.chunk_size % kTile != 0 || p.chunk_size <= 0 ||
      p.ngroups < 1 || p.nheads % p.ngroups != 0 || p.nheads > 65535 || p.nseq > 65535)
    return cudaErrorInvalidValue;
  using E = typename TileType<in_t>::E;
  const int64_t smem = smem_layout<E>(p.dstate).bytes;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned((p.headdim + kBP - 1) / kBP), unsigned(p.nheads), unsigned(p.nseq));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = size_t(smem);
  cfg.stream = stream;
  auto kernel = ssd_fwd_kernel<in_t>;
  cudaError_t e = opt_in_smem(kernel, smem, "ssd_fwd_cuda (fused)");
  if (e == cudaSuccess) e = cudaLaunchKernelEx(&cfg, kernel, p);
  return e != cudaSuccess ? e : cudaGetLastError();
}

}  // namespace ssd_cuda
}  // namespace mamba_kernels
