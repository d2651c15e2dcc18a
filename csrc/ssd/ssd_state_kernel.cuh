// The forward state stage (F1) of the chunked SSD's Triton pipeline as a CUDA kernel (sm_80+, mma.sync, bf16; no
// torch). Semantics and layouts: SsdStateParams in ssd.h; the Triton twin is _ssd_state_fwd_kernel
// (mamba_kernels/ssd/_triton_fwd.py).
//
// Why: the Triton walk (one program a (sequence, head), 4 warps under a 168-register cap, 3 CTAs an SM) took ~172 us
// at b4 l4096 h80 p64 n128 g1 on the H200 against a memory floor of ~80 us (x read once, the bf16 chunk-entry states
// written once): 320 walks on 132 SMs, each walk re-reading the chunk's B rows that all 80 heads of the group share.
// Here a CTA walks W (head, p half) walks of one (sequence, group) together, chunk by chunk: the chunk's B tile
// (128 x 128) comes once for the W walks, the x half tiles (128 x 32) of the W walks with it, all by cp.async into
// one of two stages while the previous chunk computes. Halves of p = 64 give 2 h / g walks a (sequence, group), so
// the launcher can pick W with grid = nseq * g * ceil(2 h / g / W) close to the SM count (shape above: W = 5, 128 CTAs
// on 132 SMs).
//
// Work split (8 warps): warp w owns rows 16 (w & 1) .. + 16 of every walk's 32 p rows and the n columns
// 32 (w >> 1) .. + 32: W accumulators of 16 x 32 fp32 (16 registers each), the running states S. A chunk: S goes to
// h_in (bf16), S *= exp(a_L), then S += (x o w)^T B over the chunk's tokens (w_s = exp(a_L - a_s) dt'_s, computed
// once a chunk into shared memory; the x fragments are weighted after ldmatrix.trans and rounded to bf16, as the
// Triton kernel rounds its weighted tile before tl.dot). The B fragments of a k step serve all W walks.
#pragma once
#include <cstdlib>

#include "ssd/ssd_walk.cuh"

namespace mamba_kernels {
namespace ssd_walk {

constexpr int kHalfP = kP / 2;                 // p rows of a walk
constexpr int kLdH = kHalfP + 8;               // x half-tile row (80 bytes: conflict-free ldmatrix)
constexpr int kStep = kQ / 2;                  // tokens a pipeline step (two steps a chunk)
constexpr int kStepBRows = kStep * kLdN * 2;   // a step's B rows (17 KB)
constexpr int kStepXBytes = kStep * kLdH * 2;  // a walk's x rows of a step (5 KB)
constexpr int kStateWalkBytes = kStepXBytes + 2 * kStep * 4 + 16;  // x rows, a, dt', a_L of the chunk (+ pad)
constexpr int kStateStages = 4;                // steps s + 1 (landed), s + 2, s + 3 in flight while s computes
constexpr int kStateMaxWalks = 6;              // W a CTA: at most 6 (16 W accumulator registers)
constexpr int state_stage_bytes(int W) { return kStepBRows + W * kStateWalkBytes; }
constexpr int kStateStoreBytes = kWarps * 16 * kLdH * 2;  // a warp's 16 staging rows for the h_in stores
constexpr int state_smem_bytes(int W) { return kStateStages * state_stage_bytes(W) + kStateStoreBytes; }

// The CTA's (sequence, group, walks): walks i in [0, nw) are (head grp * hpg + (i0 + i) / 2, p half (i0 + i) % 2).
struct StateCta {
  int64_t row, s0, first, seq;
  int len, grp, i0, nw;
};

__device__ __forceinline__ StateCta state_cta(const SsdStateParams& p, int W) {
  const int64_t hpg = p.nheads / p.ngroups, halves = 2 * hpg, nsl = (halves + W - 1) / W;
  const int64_t id = blockIdx.x;
  StateCta c;
  c.seq = id / (p.ngroups * nsl);
  c.grp = int((id / nsl) % p.ngroups);
  c.i0 = int((id % nsl) * W);
  c.nw = int(halves - c.i0 < W ? halves - c.i0 : W);
  if (p.cu != nullptr) {
    c.row = 0;
    c.s0 = p.cu[c.seq];
    c.len = p.cu[c.seq + 1] - p.cu[c.seq];
    c.first = p.first[c.seq];
  } else {
    c.row = c.seq;
    c.s0 = 0;
    c.len = int(p.seqlen);
    c.first = c.seq * p.chunks_per_row;
  }
  return c;
}

// Valid tokens of chunk k and of step s (half s & 1 of chunk s >> 1; 0 past the chunk's end).
__device__ __forceinline__ int chunk_len(const StateCta& c, int k) { return c.len - k * kQ < kQ ? c.len - k * kQ : kQ; }
__device__ __forceinline__ int step_len(const StateCta& c, int s) {
  const int v = chunk_len(c, s >> 1) - (s & 1) * kStep;
  return v < 0 ? 0 : (v > kStep ? kStep : v);
}

// Stage loads of step s: its B rows (past ln zero) and, per walk, its x rows (past ln zero), a and dt' (past ln zero)
// and a at the chunk's last token. Thread tid copies B rows tid / 16 + 16 u (u < 4) and x row tid / 4 (16 bytes each),
// a (tid < 64), dt' (64 <= tid < 128) or a_L (tid == 128) entries.
template <typename E, int W>
__device__ __forceinline__ void state_load(const SsdStateParams& p, const StateCta& c, int s, char* st, int tid) {
  const int k = s >> 1, ln = step_len(c, s), cl = chunk_len(c, k);
  const int64_t t0 = c.s0 + int64_t(k) * kQ + (s & 1) * kStep;
  const int64_t h = p.nheads, hpg = h / p.ngroups;
  {
    E* bs = reinterpret_cast<E*>(st);
    const E* bg = static_cast<const E*>(p.B) + ((c.row * p.seqlen + t0) * p.ngroups + c.grp) * kN;
    const int64_t gn = p.ngroups * kN;
    const int r0 = tid >> 4, c0 = (tid & 15) * 8;
#pragma unroll
    for (int u = 0; u < kStep / 16; ++u) {
      const int r = r0 + 16 * u;
      const bool ok = r < ln;
      cp_async16_zfill(bs + r * kLdN + c0, bg + (ok ? r * gn + c0 : 0), ok);
    }
  }
#pragma unroll
  for (int i = 0; i < W; ++i) {
    if (i >= c.nw) break;
    char* wb = st + kStepBRows + i * kStateWalkBytes;
    const int64_t hh = c.grp * hpg + (c.i0 + i) / 2;
    E* xs = reinterpret_cast<E*>(wb);
    const E* xg = static_cast<const E*>(p.x) + ((c.row * p.seqlen + t0) * h + hh) * kP + ((c.i0 + i) & 1) * kHalfP;
    const int r = tid >> 2, c0 = (tid & 3) * 8;
    const bool ok = r < ln;
    cp_async16_zfill(xs + r * kLdH + c0, xg + (ok ? r * (h * kP) + c0 : 0), ok);
    float* rowsf = reinterpret_cast<float*>(wb + kStepXBytes);  // a [0, 64), dt' [64, 128), a_L at 128
    const float* arow = p.a + (c.row * h + hh) * p.seqlen + t0;
    if (tid < 2 * kStep) {
      const int e = tid & (kStep - 1);
      if (e < ln) cp_async4(rowsf + tid, (tid < kStep ? arow : p.dtp + (c.row * h + hh) * p.seqlen + t0) + e);
      else rowsf[tid] = 0.f;
    } else if (tid == 2 * kStep) {
      cp_async4(rowsf + tid, arow - (s & 1) * kStep + cl - 1);
    }
  }
}

template <typename E, int W>
__global__ void __launch_bounds__(kThreads, 1) ssd_state_kernel(const SsdStateParams p, int lab) {
  char* smem = reinterpret_cast<char*>(ssd_walk_smem);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, q = lane & 3, m = lane >> 3, r8 = lane & 7;
  const int mb = warp & 1, nq = warp >> 1;
  const StateCta c = state_cta(p, W);
  if (c.nw <= 0) return;
  const int64_t h = p.nheads, hpg = h / p.ngroups;
  const int nsteps = 2 * ((c.len + kQ - 1) / kQ);
  auto stage = [&](int s) { return smem + (s & (kStateStages - 1)) * state_stage_bytes(W); };

  // this lane's (row, column) pairs of walk i's (p, n) state: rows 32 ph + 16 mb + g (+ 8), columns 32 nq + 8 j + 2q
  auto block_off = [&](int i) -> int64_t {  // the warp's 16 x 32 block of walk i's (p, n) state
    const int64_t hh = c.grp * hpg + (c.i0 + i) / 2;
    return (hh * kP + 32 * ((c.i0 + i) & 1) + 16 * mb) * kN + 32 * nq;
  };
  auto state_off = [&](int i, int j, int half) -> int64_t { return block_off(i) + (g + 8 * half) * kN + 8 * j + 2 * q; };
  float acc[W][4][4];
#pragma unroll
  for (int i = 0; i < W; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        float v0 = 0.f, v1 = 0.f;
        if (p.init != nullptr && i < c.nw) {
          const float2 v = *reinterpret_cast<const float2*>(p.init + c.seq * h * kP * kN + state_off(i, j, half));
          v0 = v.x;
          v1 = v.y;
        }
        acc[i][j][2 * half] = v0;
        acc[i][j][2 * half + 1] = v1;
      }

  // x_t *= w_t = exp(a_L - a_t) dt'_t for step s, in place: each thread on the 16-byte chunk (row tid / 4) of each
  // walk that it copied (rows past the step's end are zero and have a = dt' = 0: w = exp(a_L) 0)
  auto scale_step = [&](int s) {
    if (lab & 4) return;
    const char* st = stage(s);
    const int r = tid >> 2;
#pragma unroll
    for (int i = 0; i < W; ++i) {
      if (i >= c.nw) break;
      char* wb = const_cast<char*>(st) + kStepBRows + i * kStateWalkBytes;
      const float* rowsf = reinterpret_cast<const float*>(wb + kStepXBytes);
      const float w = __expf(rowsf[2 * kStep] - rowsf[r]) * rowsf[kStep + r];
      uint4* v = reinterpret_cast<uint4*>(reinterpret_cast<E*>(wb) + r * kLdH + (tid & 3) * 8);
      uint4 t = *v;
      t.x = scale_pair(t.x, w, w);
      t.y = scale_pair(t.y, w, w);
      t.z = scale_pair(t.z, w, w);
      t.w = scale_pair(t.w, w, w);
      *v = t;
    }
  };

#pragma unroll
  for (int s = 0; s < kStateStages - 1; ++s) {
    if (s < nsteps) state_load<E, W>(p, c, s, stage(s), tid);
    cp_async_commit();
  }
  cp_async_wait<kStateStages - 2>();  // step 0 landed
  __syncthreads();
  if (nsteps > 0) scale_step(0);
  E* sw = reinterpret_cast<E*>(smem + kStateStages * state_stage_bytes(W)) + warp * (16 * kLdH);
  for (int s = 0; s < nsteps; ++s) {
    cp_async_wait<kStateStages - 3>();  // steps <= s + 1 landed (this thread's copies)
    __syncthreads();  // everyone's: step s scaled, step s + 1 landed; every warp is done with step s - 1's stage
    if (s + kStateStages - 1 < nsteps) state_load<E, W>(p, c, s + kStateStages - 1, stage(s + kStateStages - 1), tid);
    cp_async_commit();
    const char* st = stage(s);
    if ((s & 1) == 0) {
      // chunk start: h_in of the chunk = S (bf16), then S *= exp(a_L). The warp's 16 x 32 bf16 block goes through its
      // shared staging rows so that a lane stores 16 bytes (4-byte stores of the fragments directly: ncu showed the
      // stores' source registers holding up the next instructions, and 16-byte pieces of 32-byte sectors at L2).
      E* hin = static_cast<E*>(p.hin) + (c.first + (s >> 1)) * h * kP * kN;
#pragma unroll
      for (int i = 0; i < W; ++i) {
        if (i >= c.nw) break;
        const float decay =
            __expf(reinterpret_cast<const float*>(st + kStepBRows + i * kStateWalkBytes + kStepXBytes)[2 * kStep]);
        if (!(lab & 2)) {
#pragma unroll
          for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int half = 0; half < 2; ++half)
              *reinterpret_cast<uint32_t*>(sw + (g + 8 * half) * kLdH + 8 * j + 2 * q) =
                  ssd_cuda::pack_bf16(acc[i][j][2 * half], acc[i][j][2 * half + 1]);
          __syncwarp();
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const int r = (lane >> 2) + 8 * half, cc = (lane & 3) * 8;
            *reinterpret_cast<uint4*>(hin + block_off(i) + r * kN + cc) =
                *reinterpret_cast<const uint4*>(sw + r * kLdH + cc);
          }
          __syncwarp();
        }
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[i][j][e] *= decay;
      }
    }
    // S += x'^T B over the step's tokens. Every walk slot runs (no exit: the W walks' loads interleave); slots past
    // nw compute on stale shared memory and are never stored.
    const E* bs = reinterpret_cast<const E*>(st);
    const int ksteps = (lab & 1) ? 0 : (step_len(c, s) + 15) / 16;
    for (int kk = 0; kk < ksteps; ++kk) {
      typename Frag<E>::B b[4];
      ssd_cuda::b_rows2<E>(b[0], b[1], bs + 16 * kk * kLdN + 32 * nq, kLdN, g, q);
      ssd_cuda::b_rows2<E>(b[2], b[3], bs + 16 * kk * kLdN + 32 * nq + 16, kLdN, g, q);
#pragma unroll
      for (int i = 0; i < W; ++i) {
        const E* xs = reinterpret_cast<const E*>(st + kStepBRows + i * kStateWalkBytes);
        // A (p x token) = x'^T: matrices (p 0-7, k 0-7) (p 8-15, k 0-7) (p 0-7, k 8-15) (p 8-15, k 8-15) from the
        // (token, p) rows by ldmatrix.trans
        typename Frag<E>::A af;
        ssd_cuda::ldsm_x4_trans(af.r, xs + (16 * kk + r8 + 8 * (m >> 1)) * kLdH + 16 * mb + 8 * (m & 1));
#pragma unroll
        for (int j = 0; j < 4; ++j) Frag<E>::mma(acc[i][j], af, b[j]);
      }
    }
    // the next step's x, while this step's mma drain (its stage landed: waited for above)
    if (s + 1 < nsteps) scale_step(s + 1);
  }
  cp_async_wait<0>();
  // the final state (fp32)
#pragma unroll
  for (int i = 0; i < W; ++i) {
    if (i >= c.nw) break;
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int half = 0; half < 2; ++half)
        *reinterpret_cast<float2*>(p.final_states + c.seq * h * kP * kN + state_off(i, j, half)) =
            make_float2(acc[i][j][2 * half], acc[i][j][2 * half + 1]);
  }
}

// Walks a CTA for this call: the fewest (so the most CTAs) whose grid fits on num_ctas SMs, at most what the
// shared memory of one CTA holds (smem_optin bytes) and kStateMaxWalks; the largest allowed when even that needs
// more CTAs than SMs (several waves).
inline int state_walks_per_cta(const SsdStateParams& p, int smem_optin) {
  int wmax = kStateMaxWalks;
  while (wmax > 1 && state_smem_bytes(wmax) > smem_optin) --wmax;
  const int64_t halves = 2 * (p.nheads / p.ngroups);
  for (int w = 1; w <= wmax; ++w)
    if (p.nseq * p.ngroups * ((halves + w - 1) / w) <= p.num_ctas) return w;
  return wmax;
}

template <int W>
cudaError_t launch_state(const SsdStateParams& p, cudaStream_t stream) {
  const int64_t halves = 2 * (p.nheads / p.ngroups);
  const int64_t grid = p.nseq * p.ngroups * ((halves + W - 1) / W);
  if (grid == 0) return cudaSuccess;
  auto kernel = ssd_state_kernel<__nv_bfloat16, W>;
  cudaLaunchConfig_t cfg = {};
  cfg.blockDim = dim3(kThreads);
  cfg.gridDim = dim3(unsigned(grid));
  cfg.dynamicSmemBytes = size_t(state_smem_bytes(W));
  cfg.stream = stream;
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, state_smem_bytes(W));
  const char* labv = std::getenv("MK_SSD_STATE_LAB");  // lab only: 1 no mma, 2 no h_in stores, 4 no x scaling
  if (e == cudaSuccess) e = cudaLaunchKernelEx(&cfg, kernel, p, labv ? std::atoi(labv) : 0);
  return e == cudaSuccess ? cudaGetLastError() : e;
}

}  // namespace ssd_walk
}  // namespace mamba_kernels
