// Forward kernels of the causal depthwise conv1d (CUDA headers only).
//
// Width buckets: a kernel compiled for kW in {4, 8} runs every width <= kW. The real weights sit in the last
// `width` taps; the first pad = kW - width taps are absent and skipped by a per-tap predicate (a predicated
// FMA costs what an FMA costs), so an inf/NaN in x never leaks into outputs it does not feed.
//
// Channel-first (x_l_stride == 1): a warp works on segments of chunks of 256 positions of one (b, c) row;
// each lane holds 8 consecutive positions of a chunk (one 16-byte load for 16-bit types, two for fp32). Forward:
// persistent grid (one wave of resident blocks), every warp an equal share of all (row, chunk) pairs, split
// at row ends. Backward: segments of 4, 8 or 16 chunks (fwd_cf::seg_chunks), persistent grid with equal
// segment counts per warp. Loads come in groups of 64 bytes per lane (forward: 4 chunks of x for 16-bit types,
// 2 for fp32; backward: half that of x and of dy): the next group is loaded into registers while the current
// one is computed, and the group after it is prefetched into L2 (no registers), so a warp keeps ~4 KB of
// HBM reads in flight (>= 64 KB per SM at 16-20 resident warps). The w-1 inputs before a lane's 8 come from
// the lane below by shuffle, from lane 31 of the previous chunk, or (segment start) a few scalar loads by
// lane 0; positions before 0 read the initial state. x is read once and y written once from HBM.
//
// Channel-last (x_c_stride == 1): one lane owns 4 channels (one 8/16-byte vector) of a tile of time steps
// (cl_tile_len: sized to fill whole waves) and slides a window of the last w-1 inputs in registers; loads come
// in groups of 8 (16-bit) or 4 (fp32) steps, the next group in registers and the one kPD groups ahead
// prefetched into L2. The w-1 steps before the tile are re-read (L2).
//
// Varlen (cu_seqlens): these kernels treat the packed row as one sequence with zeros before position 0.
// The outputs whose window reaches back past their own sequence start (the first w-1 of each sequence) are
// recomputed and overwritten afterwards by conv1d_fwd_fix_kernel (conv1d_states_kernel.cuh), which also
// writes the final states. The tiled kernels stay free of per-sequence branches.
#pragma once
#include "conv1d/conv1d_common.cuh"

namespace mamba_kernels {
namespace conv1d {

namespace fwd_cf {
constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kN = 8;                  // positions per lane per chunk
constexpr int kChunkLen = 32 * kN;     // 256 positions per warp chunk
constexpr int kMaxSegChunks = 16;      // backward segments of 4, 8 or 16 chunks (1024 .. 4096 positions)
constexpr int64_t kTargetWarps = 16384;  // backward: at least ~16K segments when rows are short
// Chunks per load group: a lane issues 64 bytes of independent 16-byte loads per group (forward: x; backward:
// x and dy; the H200 needs ~32-40 KB of reads in flight per SM to saturate HBM).
// (Knobs MK_CONV1D_FWD_CF_GROUP / MK_CONV1D_BWD_CF_GROUP, conv1d_common.cuh; fp32 takes half as many chunks.)
template <typename T> constexpr int fwd_group() {
  return sizeof(T) == 2 ? MK_CONV1D_FWD_CF_GROUP : (MK_CONV1D_FWD_CF_GROUP + 1) / 2;
}
template <typename T> constexpr int bwd_group() {
  return sizeof(T) == 2 ? MK_CONV1D_BWD_CF_GROUP : (MK_CONV1D_BWD_CF_GROUP + 1) / 2;
}
// Occupancy caps (blocks of 128 per SM), chosen from ptxas -v on sm_90a so that nothing spills: forward
// width-4 <= 80 registers (6 blocks, 24 warps per SM), backward width-4 <= 128 (4 blocks; a cap of 5 spills).
// (Knobs MK_CONV1D_FWD_CF_MIN_BLOCKS / MK_CONV1D_BWD_CF_MIN_BLOCKS set the width-4 values.)
template <typename T, int kW> constexpr int fwd_min_blocks() { return kW == 4 ? MK_CONV1D_FWD_CF_MIN_BLOCKS : 4; }
template <typename T, int kW> constexpr int bwd_min_blocks() { return kW == 4 ? MK_CONV1D_BWD_CF_MIN_BLOCKS : 3; }
// Backward segment length (in chunks) for rows of length L: as long as possible (the per-segment halo,
// pipeline fill and from-scratch tail cost less; fewer partial rows) while there are still ~kTargetWarps
// segments. Multiple of both group sizes.
inline int seg_chunks(int64_t rows, int64_t L) {
  const int64_t nchunks = (L + kChunkLen - 1) / kChunkLen;
  int sc = kMaxSegChunks;
  while (sc > 4 && rows * ((nchunks + sc - 1) / sc) < kTargetWarps) sc /= 2;
  return sc;
}
__host__ __device__ inline int64_t num_segs(int64_t L, int sc) { return (L + int64_t(sc) * kChunkLen - 1) / (int64_t(sc) * kChunkLen); }
}  // namespace fwd_cf

// Tiling of the flat channel-first kernels (conv1d_fwd_flat_kernel.cuh, conv1d_bwd_flat_kernel.cuh): 128-thread
// blocks, one tile of chunks<T>() chunks of fwd_cf::kChunkLen positions per warp. kG is the knob value: chunks of
// 8 positions per lane, one 16-byte load each for 16-bit types; fp32 chunks are 32 bytes, so half as many.
template <int kG>
struct FlatTiling {
  static constexpr int kThreads = 128;
  static constexpr int kWarps = kThreads / 32;
  template <typename T> static constexpr int chunks() { return sizeof(T) == 2 ? kG : (kG + 1) / 2; }
  template <typename T> static constexpr int64_t tile_len() { return int64_t(chunks<T>()) * fwd_cf::kChunkLen; }
  template <typename T> static int64_t tiles_per_row(int64_t L) { return (L + tile_len<T>() - 1) / tile_len<T>(); }
};

namespace fwd_cl {
constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kC = 4;  // channels per lane: one 8-byte (16-bit) or 16-byte (fp32) vector per time step
// Time steps per load group (32 or 64 bytes per lane): the next group is loaded into registers while the
// current one is computed, and the group kPD ahead is prefetched into L2 (no registers), so a warp keeps ~kPD
// groups of HBM reads in flight while its registers only cover L2 latency.
template <typename T> constexpr int group() { return sizeof(T) == 2 ? 8 : 4; }
constexpr int kPD = MK_CONV1D_FWD_CL_PD;  // 0: no L2 prefetch
// Width-4 bucket: at least MK_CONV1D_FWD_CL_MIN_BLOCKS blocks/SM (4: <= 128 registers; the fast variant would
// take 157 uncapped, 3 blocks: lab on the H200, b4 d6144 l4096: 4 blocks 0.114 ms, 5 0.117, uncapped 0.121); the
// width-8 bucket is not capped (it would spill).
template <int kW> constexpr int min_blocks() { return kW <= 4 ? MK_CONV1D_FWD_CL_MIN_BLOCKS : 1; }
}  // namespace fwd_cl

// Channel-last tile length (time steps per warp; the block's 4 warps take consecutive tiles of one
// 128-channel group), chosen so that the grid fills whole waves of `cap` resident blocks: the work per warp is
// equal, so a partly filled last wave would leave SMs idle. Among block counts per row giving tiles of
// kMinTL..kMaxTL steps (shorter only when the row is short), the one with the highest useful fraction of the
// waves' warp-steps, each tile costing kTileCost steps extra. Host only.
inline int64_t cl_tile_len(int64_t rows, int64_t L, int64_t cap) {
  constexpr int64_t kMinTL = 32, kMaxTL = MK_CONV1D_CL_MAX_TL;
  constexpr int64_t kTileCost = 16;  // steps' worth of per-tile cost: halo re-read, first group's latency
  if (L <= 0 || rows <= 0) return kMinTL;
  if (cap < 1) cap = 1;
  const int64_t nb_lo = (L + 4 * kMaxTL - 1) / (4 * kMaxTL);
  int64_t nb_hi = (L + 4 * kMinTL - 1) / (4 * kMinTL);
  if (nb_hi > nb_lo + 4096) nb_hi = nb_lo + 4096;
  int64_t best_tl = (L + 3) / 4;
  double best = -1.0;
  for (int64_t nb = nb_lo; nb <= nb_hi; ++nb) {
    const int64_t tl = (L + 4 * nb - 1) / (4 * nb);
    const int64_t blocks = rows * ((L + 4 * tl - 1) / (4 * tl));
    const int64_t waves = (blocks + cap - 1) / cap;
    const double eff = static_cast<double>(rows * L) / (static_cast<double>(waves * cap) * 4.0 * (tl + kTileCost));
    if (eff > best * 1.0001) { best = eff; best_tl = tl; }
  }
  return best_tl;
}

// ---------------------------------------------------------------------------------- shared scalar helpers
// Initial state entry ji of sequence n, channel c (zero when there is no initial state).
template <typename T>
__device__ __forceinline__ float init_at(const Conv1dParams& p, int64_t n, int64_t c, int64_t ji) {
  if (p.initial_states == nullptr) return 0.f;
  return to_f(static_cast<const T*>(p.initial_states)[n * p.init_n_stride + c * p.init_c_stride +
                                                     ji * p.init_w_stride]);
}

// Weights of channel c in bucket layout: tap i < pad is absent (0), tap i >= pad is weight[c, i - pad].
template <int kW>
__device__ __forceinline__ void load_weights(const Conv1dParams& p, int64_t c, int pad, float (&w)[kW]) {
#pragma unroll
  for (int i = 0; i < kW; ++i)
    w[i] = i < pad ? 0.f : load_any(p.weight, p.w_dtype, c * p.w_c_stride + (i - pad) * p.w_w_stride);
}

__device__ __forceinline__ float load_bias(const Conv1dParams& p, int64_t c) {
  return p.bias ? load_any(p.bias, p.b_dtype, c * p.bias_stride) : 0.f;
}

// Left halo of the channel-first kernels: when `on` (lane 0), the H inputs of row x (batch b, channel c) at
// positions t0 - H .. t0 - 1; before position 0 the initial state of row b without varlen, zeros with varlen (the
// fix kernel redoes each sequence's first outputs). Zeros when not `on`.
template <typename T, int H>
__device__ __forceinline__ void cf_left_halo(const Conv1dParams& p, const T* __restrict__ x, int64_t b, int64_t c,
                                             int64_t t0, int width, bool on, float (&h)[H]) {
#pragma unroll
  for (int j = 0; j < H; ++j) {
    const int64_t pos = t0 - H + j;
    float hv = 0.f;
    if (on) {
      if (pos >= 0) hv = to_f(x[pos]);
      else if (p.cu_seqlens == nullptr && pos + width - 1 >= 0) hv = init_at<T>(p, b, c, pos + width - 1);
    }
    h[j] = hv;
  }
}

__device__ __forceinline__ void store_any(void* ptr, DType dt, int64_t i, float v) {
  switch (dt) {
    case DType::kFloat16: static_cast<__half*>(ptr)[i] = __float2half_rn(v); break;
    case DType::kBFloat16: static_cast<__nv_bfloat16*>(ptr)[i] = __float2bfloat16_rn(v); break;
    default: static_cast<float*>(ptr)[i] = v; break;
  }
}

// Sequence n: batch row b and [s, e) along it. Varlen bounds are clamped into [0, seqlen] so that a bad
// cu_seqlens cannot make the state kernels read out of bounds.
__device__ __forceinline__ void seq_bounds(const Conv1dParams& p, int64_t n, int64_t& b, int64_t& s, int64_t& e) {
  if (p.cu_seqlens) {
    b = 0;
    e = min(max(static_cast<int64_t>(p.cu_seqlens[n + 1]), int64_t(0)), p.seqlen);
    s = min(max(static_cast<int64_t>(p.cu_seqlens[n]), int64_t(0)), e);
  } else {
    b = n; s = 0; e = p.seqlen;
  }
}

// x of sequence n (row b, start s) extended by its initial state, at position pos (< the sequence end).
// Any layout and dtype (strides, runtime dtype): used by the slow paths and the state kernels.
__device__ __forceinline__ float xe_any(const Conv1dParams& p, int64_t b, int64_t n, int64_t c, int64_t s,
                                        int64_t pos) {
  if (pos >= s)
    return load_any(p.x, p.x_dtype, b * p.x_batch_stride + c * p.x_c_stride + pos * p.x_l_stride);
  const int64_t ji = pos - s + p.width - 1;
  if (p.initial_states == nullptr || ji < 0) return 0.f;
  return load_any(p.initial_states, p.x_dtype, n * p.init_n_stride + c * p.init_c_stride + ji * p.init_w_stride);
}

// Pre-activation at position t of sequence n (row b, start s), from scratch (runtime width, scalar loads).
__device__ __forceinline__ float pre_any(const Conv1dParams& p, int64_t b, int64_t n, int64_t c, int64_t s,
                                         int64_t t) {
  const int W = static_cast<int>(p.width);
  float z = p.bias ? load_any(p.bias, p.b_dtype, c * p.bias_stride) : 0.f;
  for (int i = 0; i < W; ++i)
    z = fmaf(load_any(p.weight, p.w_dtype, c * p.w_c_stride + i * p.w_w_stride), xe_any(p, b, n, c, s, t - (W - 1) + i), z);
  return z;
}

// ------------------------------------------------------------------------------------------ channel-first
template <typename T, int kW>
__device__ __forceinline__ void fwd_cf_segment(const Conv1dParams& p, bool x_vec, bool y_vec, int64_t row,
                                               int64_t seg0, int64_t seg_end, int lane) {
  using namespace fwd_cf;
  constexpr int G = fwd_group<T>();
  constexpr int H = kW - 1;  // halo length (bucket)
  const int64_t b = row / p.dim, c = row - b * p.dim;
  const int width = static_cast<int>(p.width);
  const int pad = kW - width;
  const T* __restrict__ x = static_cast<const T*>(p.x) + b * p.x_batch_stride + c * p.x_c_stride;
  T* __restrict__ y = static_cast<T*>(p.y) + b * p.y_batch_stride + c * p.y_c_stride;

  float w[kW];
  load_weights<kW>(p, c, pad, w);
  const float bias = load_bias(p, c);

  // Offsets inside the segment are 32-bit (seqlen < 2^31, checked on the host): fewer live 64-bit values.
  const int len = static_cast<int>(seg_end - seg0);
  const int ngroups = (len + G * kChunkLen - 1) / (G * kChunkLen);
  const T* __restrict__ xs = x + seg0;
  T* __restrict__ ys = y + seg0;
  // Group g = chunks g*G .. g*G+G-1 of the segment; lane holds positions lane*8 .. lane*8+7 of each chunk.
  auto load_group = [&](int g, Raw<T, kN> (&dst)[G]) {
#pragma unroll
    for (int s = 0; s < G; ++s) {
      const int o = (g * G + s) * kChunkLen + lane * kN;
      load_raw<T, kN>(xs + o, g < ngroups ? len - o : 0, x_vec, dst[s]);
    }
  };
  Raw<T, kN> cur[G], nxt[G];
  load_group(0, cur);
  // Inputs before the segment (lane 0 of chunk 0). Before position 0: the initial state of row b (without
  // varlen; with varlen zeros, and the fix kernel redoes each sequence's first outputs).
  float carry[H];
  cf_left_halo<T, H>(p, x, b, c, seg0, width, lane == 0, carry);

#pragma unroll 1
  for (int g = 0; g < ngroups; ++g) {
    load_group(g + 1, nxt);  // in flight while group g is computed
    if constexpr ((MK_CONV1D_FWD_CF_PF & 1) != 0) {  // group g + 2 into L2: G * 256 elements, one line per lane
      constexpr int kLines = G * kChunkLen * int(sizeof(T)) / 128;
      static_assert(kLines <= 32, "one prefetched line per lane");
      const int pf = (g + 2) * G * kChunkLen + lane * (128 / int(sizeof(T)));
      if (lane < kLines && pf < len) prefetch_l2(xs + pf);
    }
#pragma unroll
    for (int s = 0; s < G; ++s) {
      const int c0 = (g * G + s) * kChunkLen;
      if (c0 >= len) break;  // warp-uniform
      const int t0 = c0 + lane * kN;
      float xc[kN];
#pragma unroll
      for (int e = 0; e < kN; ++e) xc[e] = to_f(cur[s].e[e]);
      float prev[H];  // window = [prev (H inputs before t0) | xc (kN inputs from t0)]
      // One rotation per value: lane l gets lane l-1's tail, lane 0 gets lane 31's, which is what lane 0 needs
      // before the next chunk (carry; only lane 0's carry is ever used).
#if MK_CONV1D_FWD_CF_ROT
#pragma unroll
      for (int j = 0; j < H; ++j) {
        const float rot = __shfl_sync(kFullMask, xc[kN - H + j], (lane + 31) & 31);
        prev[j] = lane == 0 ? carry[j] : rot;
        carry[j] = rot;
      }
#else
#pragma unroll
      for (int j = 0; j < H; ++j) {
        const float up = __shfl_up_sync(kFullMask, xc[kN - H + j], 1);
        prev[j] = lane == 0 ? carry[j] : up;
      }
#pragma unroll
      for (int j = 0; j < H; ++j) carry[j] = __shfl_sync(kFullMask, xc[kN - H + j], 31);
#endif
      float out[kN];
#pragma unroll
      for (int e = 0; e < kN; ++e) {
        const float acc = cf_pre<kW, kN>(w, pad, bias, prev, xc, e);
        out[e] = p.silu ? silu_out<T>(acc) : acc;
      }
      if (t0 < len) store_n<T, kN>(ys + t0, 1, len - t0, y_vec, out);
    }
#pragma unroll
    for (int s = 0; s < G; ++s) cur[s] = nxt[s];
  }
}

// Persistent grid (about one wave of resident blocks): the rows' chunks, in (row, chunk) order, are split into
// equal contiguous shares, one per warp; a share crossing rows is done as one segment per row piece. Every
// warp does the same work, so no partly filled last wave leaves SMs idle.
template <typename T, int kW>
__global__ void __launch_bounds__(fwd_cf::kThreads, fwd_cf::fwd_min_blocks<T, kW>()) conv1d_fwd_cf_kernel(
    Conv1dParams p, bool x_vec, bool y_vec, int64_t share) {
  using namespace fwd_cf;
  const int lane = threadIdx.x & 31;
  const int64_t nchunks = (p.seqlen + kChunkLen - 1) / kChunkLen;
  const int64_t total = p.batch * p.dim * nchunks;
  const int64_t gw = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  int64_t k = gw * share;
  const int64_t end = k + share < total ? k + share : total;
  while (k < end) {  // warp-uniform
    const int64_t row = k / nchunks, k0 = k - row * nchunks;
    const int64_t k1 = k0 + (end - k) < nchunks ? k0 + (end - k) : nchunks;
    const int64_t seg_end = k1 * kChunkLen < p.seqlen ? k1 * kChunkLen : p.seqlen;
    if ((MK_CONV1D_FWD_CF_PF & 2) != 0 && k + (k1 - k0) < end) {  // the next piece (a row start) into L2: 32 lines = its first 4 KB
      const int64_t nrow = row + 1, nb = nrow / p.dim, nc = nrow - nb * p.dim;
      const int64_t pos = lane * (128 / int(sizeof(T)));
      const int64_t nend = (end - k - (k1 - k0)) * kChunkLen;
      if (pos < p.seqlen && pos < nend)
        prefetch_l2(static_cast<const T*>(p.x) + nb * p.x_batch_stride + nc * p.x_c_stride + pos);
    }
    fwd_cf_segment<T, kW>(p, x_vec, y_vec, row, k0 * kChunkLen, seg_end, lane);
    k += k1 - k0;
  }
}

// ------------------------------------------------------------------------------------------ channel-last
// kFast: x and y vectorisable, dim a multiple of kC, width == kW (the launcher checks): the per-load vector /
// partial-lane branches and the absent-tap predicates are compiled out.
template <typename T, int kW, bool kFast>
__device__ __forceinline__ void fwd_cl_tile(const Conv1dParams& p, bool x_vec_arg, bool y_vec_arg, bool w_vec,
                                            int64_t b, int64_t c0, int64_t tb, int64_t te) {
  using namespace fwd_cl;
  constexpr int C = kC;
  constexpr int U = group<T>();
  constexpr int H = kW - 1;
  const int width = static_cast<int>(p.width);
  const int pad = kFast ? 0 : kW - width;
  const int nc = kFast ? C : static_cast<int>(p.dim - c0 < C ? p.dim - c0 : C);
  const bool x_vec = kFast || x_vec_arg, y_vec = kFast || y_vec_arg;
  const bool varlen = p.cu_seqlens != nullptr;
  const T* __restrict__ x = static_cast<const T*>(p.x) + b * p.x_batch_stride + c0;
  T* __restrict__ y = static_cast<T*>(p.y) + b * p.y_batch_stride + c0;
  const int64_t xls = p.x_l_stride, yls = p.y_l_stride;

  // Group of U steps from xg, of which the first r exist (r <= 0: nothing is read). Pointers advance with the
  // groups; step counts are 32-bit (a tile has at most 1024 steps).
  const T* xg = x + tb * xls;
  const int lane = threadIdx.x & 31;
  const int n = static_cast<int>(te - tb);
  auto load_group = [&](int r, Raw<T, C> (&dst)[U]) {
#pragma unroll
    for (int u = 0; u < U; ++u) load_raw<T, C>(xg + u * xls, u < r ? nc : 0, x_vec, dst[u]);
    xg += U * xls;
  };
  // Weights and bias before the first x loads (~1% faster than after, lab 2026-11-29). w_vec (fast variant only;
  // weight (dim, kW) contiguous, weight and bias of dtype T, aligned: checked on the host): the lane's C rows of
  // weights and C biases are consecutive, so two or three vector loads instead of 2 C (kW + 1) 16-bit ones.
  float w[C][kW], bias[C];
  if (kFast && w_vec) {
    Raw<T, C * kW> wr;
    load_raw<T, C * kW>(static_cast<const T*>(p.weight) + c0 * kW, C * kW, true, wr);
    Raw<T, C> br;
    if (p.bias) load_raw<T, C>(static_cast<const T*>(p.bias) + c0, C, true, br);
#pragma unroll
    for (int ch = 0; ch < C; ++ch) {
#pragma unroll
      for (int i = 0; i < kW; ++i) w[ch][i] = to_f(wr.e[ch * kW + i]);
      bias[ch] = p.bias ? to_f(br.e[ch]) : 0.f;
    }
  } else {
#pragma unroll
    for (int ch = 0; ch < C; ++ch) {
      const int64_t cc = ch < nc ? c0 + ch : c0;  // lanes past the end reuse a valid channel (never stored)
      load_weights<kW>(p, cc, pad, w[ch]);
      bias[ch] = load_bias(p, cc);
    }
  }
  Raw<T, C> cur[U], nxt[U];
  load_group(n, cur);
  float win[H][C];  // inputs at t - H .. t - 1 (the w-1 steps before the tile are re-read: L2)
#pragma unroll
  for (int j = 0; j < H; ++j) {
    const int64_t pos = tb - H + j;
    if (pos >= 0) {
      Raw<T, C> r;
      load_raw<T, C>(x + pos * xls, nc, x_vec, r);
#pragma unroll
      for (int ch = 0; ch < C; ++ch) win[j][ch] = to_f(r.e[ch]);
    } else {
#pragma unroll
      for (int ch = 0; ch < C; ++ch)
        win[j][ch] = (!varlen && ch < nc && pos + width - 1 >= 0) ? init_at<T>(p, b, c0 + ch, pos + width - 1) : 0.f;
    }
  }

  T* yt = y + tb * yls;
  // One group of U steps from registers g (r: steps left from its start); called right after the next group's
  // loads were issued (xg is then at this group + 2U).
  auto compute_group = [&](const Raw<T, C>(&g)[U], int r) {
    if constexpr (kPD > 0) {  // steps kPD U .. (kPD + 1) U - 1 ahead into L2: the warp's rows are kLPS lines each
      constexpr int kLPS = 32 * C * int(sizeof(T)) / 128;
      const int up = kPD * U + lane / kLPS;
      const int cp = (lane % kLPS) * (128 / int(sizeof(T))) - lane * C;  // from this lane's channel c0
      if (lane < U * kLPS && up < r && c0 + cp < p.dim) prefetch_l2(xg + (up - 2 * U) * xls + cp);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {  // steps past the end (u >= r, the tile's last group) are computed, not stored
      float xt[C], out[C];
#pragma unroll
      for (int ch = 0; ch < C; ++ch) xt[ch] = raw_f(g[u], ch);
#pragma unroll
      for (int ch = 0; ch < C; ++ch) {
        float acc = bias[ch];
#pragma unroll
        for (int i = 0; i < kW; ++i)
          if (i >= pad) acc = fmaf(w[ch][i], i < H ? win[i][ch] : xt[ch], acc);
        out[ch] = p.silu ? silu_out<T>(acc) : acc;
      }
      if (u < r) store_n<T, C>(yt + u * yls, 1, nc, y_vec, out);
#pragma unroll
      for (int j = 0; j + 1 < H; ++j) {
#pragma unroll
        for (int ch = 0; ch < C; ++ch) win[j][ch] = win[j + 1][ch];
      }
#pragma unroll
      for (int ch = 0; ch < C; ++ch) win[H - 1][ch] = xt[ch];
    }
    yt += U * yls;
  };
  // Two groups an iteration, the buffers swapping roles (no register copies between groups).
#pragma unroll 1
  for (int r = n; r > 0;) {  // r: steps left from the current group's start
    load_group(r - U, nxt);  // in flight while this group is computed
    compute_group(cur, r);
    r -= U;
    if (r <= 0) break;
    load_group(r - U, cur);
    compute_group(nxt, r);
    r -= U;
  }
}

template <typename T, int kW, bool kFast>
__global__ void __launch_bounds__(fwd_cl::kThreads, fwd_cl::min_blocks<kW>())
    conv1d_fwd_cl_kernel(Conv1dParams p, bool x_vec, bool y_vec, bool w_vec, int64_t tl) {
  using namespace fwd_cl;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t tb = (static_cast<int64_t>(blockIdx.x) * kWarps + warp) * tl;
  const int64_t c0 = (static_cast<int64_t>(blockIdx.y) * 32 + lane) * kC;
  const int64_t b = blockIdx.z;
  if (tb >= p.seqlen || c0 >= p.dim) return;  // no shuffles or barriers in this kernel
  const int64_t te = tb + tl < p.seqlen ? tb + tl : p.seqlen;
  fwd_cl_tile<T, kW, kFast>(p, x_vec, y_vec, w_vec, b, c0, tb, te);
}

}  // namespace conv1d
}  // namespace mamba_kernels
