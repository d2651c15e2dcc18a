// What the selective scan's state-lane kernels share (the forward, selective_scan_fwd_lane_kernel.cuh, and the backward,
// selective_scan_bwd_lane_kernel.cuh): the lane layout (LaneCfg), raw 8-element input runs (Raw8), the sequence a block
// walks (LaneSeq) and a thread's share of the B / C tiles (LaneBCPieces). CUDA headers only; included by
// selective_scan_fwd_lane_kernel.cuh after its knobs (MK_SS_LANE_*) and selective_scan_fwd_kernel.cuh's helpers.
#pragma once

namespace mamba_kernels {
namespace ss {

constexpr int kLaneN = 16;  // states (the kernel's only n)

// Shape of the kernel with kS states a lane. Shared memory (floats): B and C tiles [16][kTP] each (state n at
// row (n % kS) kL + n / kS: the kS rows a lane reads are kL apart, so a quarter-warp's lanes read consecutive
// rows, 4 banks apart: conflict-free float4 reads), steps dt and dt u [kCh][kTP], partial y [kThreads][kTP]
// (row = thread; layout and buffers: LaneBuf). kTT = 8 kL: the epilogue's 8-token items of a channel are its own
// lanes' (same warp).
template <int kS_>
struct LaneCfg {
  static constexpr int kS = kS_;
  static constexpr int kL = kLaneN / kS;            // lanes per channel
  static constexpr int kTT = 8 * kL;                // tokens per tile
  static constexpr int kTP = kTT + 4;               // row pitch (floats): rows r and r+1 start 4 banks apart
  static constexpr int kWarps = kS == 4 ? MK_SS_LANE_WARPS4 : MK_SS_LANE_WARPS2;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kMinBlocks = 16 / kWarps > 0 ? 16 / kWarps : 1;  // 16 warps an SM: <= 128 registers
  static constexpr int kCh = kThreads / kL;         // channels per block
  static constexpr int kVecs = kCh * kTT / 8;       // (channel, 8-token) items a tile
  static constexpr int kBCVecs = 2 * kLaneN * kTT / 8;  // B and C 8-token items a tile
  static constexpr int kBCItems = (kBCVecs + kThreads - 1) / kThreads;
  static constexpr int bc_row(int n) { return (n % kS) * kL + n / kS; }
  static constexpr int kLog2L = kL == 8 ? 3 : 2;
  // Lane bits of (channel-in-warp c, j) with MK_SS_LANE_PAIRMAP: bit 0 = j's bit 0, bit 1 = c's bit 0, then j's
  // other bits, then c's. A 16-byte shared-memory read whose addresses agree for every lane pair (n, n^1), or
  // for every pair (n, n^2), costs 2 wavefronts a warp instead of 4: the step tiles (dt, dt u: one row a channel)
  // pair by n^1, the B / C tiles (one row a j) by n^2.
  static __device__ __forceinline__ void role(int tid, int& ch, int& j) {
    if constexpr (MK_SS_LANE_PAIRMAP != 0) {
      const int lane = tid & 31;
      j = (lane & 1) | (((lane >> 2) & (kL / 2 - 1)) << 1);
      ch = (tid >> 5) * (32 / kL) + (((lane >> 1) & 1) | ((lane >> (1 + kLog2L)) << 1));
    } else {
      ch = tid / kL;
      j = tid % kL;
    }
  }
  // The thread holding (channel ch, j) (inverse of role).
  static __device__ __forceinline__ int thread_of(int ch, int j) {
    if constexpr (MK_SS_LANE_PAIRMAP != 0) {
      const int c = ch % (32 / kL);
      return (ch / (32 / kL)) * 32 + (j & 1) + ((c & 1) << 1) + ((j >> 1) << 2) + ((c >> 1) << (1 + kLog2L));
    } else {
      return ch * kL + j;
    }
  }
  static_assert(kS == 2 || kS == 4, "2 or 4 states a lane");
  static_assert(kWarps >= 1 && kWarps <= 16, "MK_SS_LANE_WARPS*: 1..16");
  // one (channel, 8-token) item a thread: thread ch kL + v's item is tokens 8 v .. 8 v + 7 of channel ch
  static_assert(kVecs == kThreads, "one item a thread");
};

// Eight consecutive inputs, raw (converted when used): 16-byte loads when whole and aligned, else scalar with
// zeros past nv.
template <typename in_t>
struct Raw8 {
  alignas(16) in_t e[8];
  __device__ __forceinline__ void load(const in_t* __restrict__ p, int nv) {
    constexpr int kVec = 16 / int(sizeof(in_t));
    if (nv == 8 && (reinterpret_cast<uintptr_t>(p) & 15) == 0) {
#pragma unroll
      for (int k = 0; k < 8 / kVec; ++k) reinterpret_cast<uint4*>(e)[k] = reinterpret_cast<const uint4*>(p)[k];
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) e[i] = i < nv ? p[i] : from_f<in_t>(0.f);
    }
  }
  // 16-byte loads, no checks (the caller knows p is aligned and 8 elements are in range)
  __device__ __forceinline__ void load_vec(const in_t* __restrict__ p) {
#pragma unroll
    for (int k = 0; k < 8 / (16 / int(sizeof(in_t))); ++k)
      reinterpret_cast<uint4*>(e)[k] = reinterpret_cast<const uint4*>(p)[k];
  }
  __device__ __forceinline__ float operator[](int i) const { return to_f(e[i]); }
};

__device__ __forceinline__ int clamp_nv(int64_t rem) { return int(rem <= 0 ? 0 : (rem < 8 ? rem : 8)); }

// The sequence a block of a state-lane kernel walks: without varlen batch row b = blockIdx.z (tokens 0 .. seqlen);
// with cu_seqlens (batch 1) packed sequence q = blockIdx.z: tokens s0 .. s0 + len of row 0, initial / last states of
// slot q, and (when checkpoints are saved) its chunks from ck_base on (the chunks restart at each sequence: the
// sequences before it take ceil(len / 2^ckpt_log2) each, as in the time-parallel kernels). Constructed by every thread
// of the block before the kernel's first use of shared memory, whose first blockDim.x ints it uses as scratch: the block
// sums ck_base over the earlier sequences together (thread i takes sequences i, i + blockDim.x, ...), so that a pack of
// thousands of short sequences does not cost each block a walk over all of them.
struct LaneSeq {
  int64_t b, slot, s0, len, ck_base;
  __device__ __forceinline__ LaneSeq(const SelectiveScanParams& p, int* scratch) {
    const int64_t z = blockIdx.z;
    if (p.cu_seqlens == nullptr) {
      b = slot = z;
      s0 = ck_base = 0;
      len = p.seqlen;
      return;
    }
    b = 0;
    slot = z;
    s0 = p.cu_seqlens[z];
    len = p.cu_seqlens[z + 1] - s0;
    ck_base = 0;
    if (p.states != nullptr) {
      const int64_t ck_mask = (int64_t(1) << p.ckpt_log2) - 1;
      const int nt = int(blockDim.x), t = int(threadIdx.x);
      int part = 0;  // an int: the chunks of a pack number at most states_n_chunks, far below 2^31
      for (int64_t q = t; q < z; q += nt) part += int((p.cu_seqlens[q + 1] - p.cu_seqlens[q] + ck_mask) >> p.ckpt_log2);
      scratch[t] = part;
      __syncthreads();
      const int used = z < nt ? int(z) : nt;  // threads past z added nothing
      for (int i = 0; i < used; ++i) ck_base += scratch[i];
      __syncthreads();  // the scratch is the kernel's shared memory
    }
  }
};

// A thread's share of a tile's B and C rows (kBCItems 8-token pieces of the (b, g, n, l) inputs), loaded raw and
// stored into a buffer's fp32 B / C tiles; pointers and destinations are fixed for the walk (only t0 moves). Used by
// the forward's and the state-lane backward's (selective_scan_bwd_lane_kernel.cuh) load roles.
template <typename in_t, typename Cfg>
struct LaneBCPieces {
  const in_t* src[Cfg::kBCItems];  // row start + 8 v of each piece (nullptr: none)
  int dst[Cfg::kBCItems];          // its float offset in the B / C tiles
  int t8[Cfg::kBCItems];           // its first token within the tile
  Raw8<in_t> raw[Cfg::kBCItems];
  bool aligned;                    // every piece's row 16-byte aligned
  // (s0: the sequence's first token in its row)
  __device__ __forceinline__ void init(const SelectiveScanParams& p, int64_t b, int64_t s0, int64_t grp, int tid) {
    const in_t* Bg = static_cast<const in_t*>(p.B) + b * p.B_batch_stride + grp * p.B_group_stride + s0;
    const in_t* Cg = static_cast<const in_t*>(p.C) + b * p.C_batch_stride + grp * p.C_group_stride + s0;
    aligned = true;
#pragma unroll
    for (int it = 0; it < Cfg::kBCItems; ++it) {
      const int idx = tid + it * Cfg::kThreads;
      // item idx -> (row, v): row < 16 is B's state row, else C's; a quarter-warp's 8 items are 4 v of each of two
      // rows n and n + kS, whose tile rows (bc_row) are adjacent: conflict-free 16-byte stores
      const int pair = idx / (2 * Cfg::kL), r = idx % (2 * Cfg::kL), pp = pair % 8;
      const int v = (r / 8) * 4 + r % 4;
      const int row = (pair / 8) * kLaneN + (pp / Cfg::kS) * 2 * Cfg::kS + pp % Cfg::kS + ((r / 4) % 2) * Cfg::kS;
      const bool ok = idx < Cfg::kBCVecs;
      src[it] = !ok ? nullptr : row < kLaneN ? Bg + row * p.B_dstate_stride + 8 * v
                                             : Cg + (row - kLaneN) * p.C_dstate_stride + 8 * v;
      dst[it] = (row < kLaneN ? Cfg::bc_row(row) : kLaneN + Cfg::bc_row(row - kLaneN)) * Cfg::kTP + 8 * v;
      t8[it] = 8 * v;
      aligned &= (reinterpret_cast<uintptr_t>(src[it]) & 15) == 0;
    }
  }
  // the pieces at tile start t0 into registers; `fast`: the caller knows the tile whole and every row aligned
  __device__ __forceinline__ void issue(int64_t t0, int64_t L, bool fast) {
#pragma unroll
    for (int it = 0; it < Cfg::kBCItems; ++it) {
      if (!src[it]) continue;
      if (fast) raw[it].load_vec(src[it] + t0);
      else raw[it].load(src[it] + t0, clamp_nv(L - t0 - t8[it]));
    }
  }
  __device__ __forceinline__ void store(float* bc) const {
#pragma unroll
    for (int it = 0; it < Cfg::kBCItems; ++it) {
      if (!src[it]) continue;
      float4* pr = reinterpret_cast<float4*>(bc + dst[it]);
      pr[0] = make_float4(raw[it][0], raw[it][1], raw[it][2], raw[it][3]);
      pr[1] = make_float4(raw[it][4], raw[it][5], raw[it][6], raw[it][7]);
    }
  }
};

// Launches a state-lane kernel over (blocks of ch_per_block channels, groups, batch rows or packed sequences).
template <typename Kernel>
cudaError_t launch_lane_grid(Kernel kernel, const SelectiveScanParams& p, int ch_per_block, int threads, int smem,
                             cudaStream_t stream) {
  const int64_t dpg = p.dim / p.n_groups;
  const int64_t walks = p.cu_seqlens ? p.n_seqs : p.batch;  // grid z: batch rows, or packed sequences
  if (walks > 65535 || p.n_groups > 65535) return cudaErrorInvalidConfiguration;
  if (walks == 0) return cudaSuccess;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned((dpg + ch_per_block - 1) / ch_per_block), unsigned(p.n_groups), unsigned(walks));
  cfg.blockDim = dim3(unsigned(threads));
  cfg.dynamicSmemBytes = size_t(smem);
  cfg.stream = stream;
  cudaError_t e = cudaSuccess;
  if (smem > 48 * 1024) e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (e == cudaSuccess) e = cudaLaunchKernelEx(&cfg, kernel, p);
  return e != cudaSuccess ? e : cudaGetLastError();
}

}  // namespace ss
}  // namespace mamba_kernels
