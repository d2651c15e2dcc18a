// Backward kernel instantiations and launch configuration (see conv1d_bwd_kernel.cuh; the channel-first variant
// conv1d_bwd_flat_kernel.cuh is selected by the knob MK_CONV1D_BWD_CF_IMPL, conv1d_common.cuh).
#include <cuda_runtime.h>

#include "conv1d/conv1d_bwd_flat_kernel.cuh"
#include "conv1d/conv1d_bwd_kernel.cuh"
#include "conv1d/conv1d_launch.h"

namespace mamba_kernels {
namespace conv1d {
namespace {

template <typename T, int kW>
int64_t cl_groups(const Conv1dParams& p) {
  return (p.dim + 32 * bwd_cl::channels<T, kW>() - 1) / (32 * bwd_cl::channels<T, kW>());
}
template <typename T, int kW>
int64_t cl_tile(const Conv1dParams& p) {
  return cl_tile_len(p.batch * cl_groups<T, kW>(p), p.seqlen, resident_blocks(conv1d_bwd_cl_kernel<T, kW>, bwd_cl::kThreads));
}

// Flat channel-first backward (MK_CONV1D_BWD_CF_IMPL 1) unless its 1-D grid would be too large (then the
// persistent kernel, which takes any size). Launch and partial count both decide here.
template <typename T>
bool use_flat(const Conv1dParams& p) {
  if (MK_CONV1D_BWD_CF_IMPL != 1) return false;
  const int64_t warps = p.batch * p.dim * bwd_flat::tiles_per_row<T>(p.seqlen);
  return (warps + bwd_flat::kWarps - 1) / bwd_flat::kWarps < (int64_t(1) << 31);
}

template <typename T, int kW>
void bwd_main(const Conv1dParams& p, bool channel_last, cudaStream_t stream) {
  constexpr int64_t es = sizeof(T);
  if (!channel_last) {
    using namespace fwd_cf;
    const bool x_vec = aligned16(p.x) && stride16(p.x_batch_stride, p.batch, es) && stride16(p.x_c_stride, p.dim, es);
    const bool dy_vec =
        aligned16(p.dy) && stride16(p.dy_batch_stride, p.batch, es) && stride16(p.dy_c_stride, p.dim, es);
    const bool dx_vec =
        aligned16(p.dx) && stride16(p.dx_batch_stride, p.batch, es) && stride16(p.dx_c_stride, p.dim, es);
    if constexpr (MK_CONV1D_BWD_CF_IMPL == 1) {  // flat grid, one tile per warp (not instantiated otherwise)
      const int64_t tiles = bwd_flat::tiles_per_row<T>(p.seqlen);
      const int64_t fblocks = (p.batch * p.dim * tiles + bwd_flat::kWarps - 1) / bwd_flat::kWarps;
      if (use_flat<T>(p)) {
        const auto kernel = by_act_and_width<kW>(p, [](auto silu, auto full) {
          return conv1d_bwd_flat_kernel<T, kW, decltype(silu)::value, decltype(full)::value>;
        });
        if (fblocks > 0)
          kernel<<<static_cast<unsigned>(fblocks), bwd_flat::kThreads, 0, stream>>>(p, x_vec, dy_vec, dx_vec, tiles);
        return;
      }
    }
    // Persistent: k = ceil(segments / resident warps) segments per warp, as few warps as that needs (every
    // warp does k, the last ones possibly fewer), so no partly filled last wave.
    const int sc = seg_chunks(p.batch * p.dim, p.seqlen);
    const int64_t total = p.batch * p.dim * num_segs(p.seqlen, sc);
    const int64_t resident = kWarps * resident_blocks(conv1d_bwd_cf_kernel<T, kW>, kThreads);
    // (MK_CONV1D_BWD_CF_PERSISTENT 0: one segment per warp, a grid of all segments.)
    const int64_t per_warp = MK_CONV1D_BWD_CF_PERSISTENT ? (total + resident - 1) / resident : 1;
    const int64_t blocks = per_warp > 0 ? ((total + per_warp - 1) / per_warp + kWarps - 1) / kWarps : 0;
    if (blocks > 0)
      conv1d_bwd_cf_kernel<T, kW>
          <<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p, x_vec, dy_vec, dx_vec, sc, per_warp);
  } else {
    using namespace bwd_cl;
    const bool x_vec =
        aligned16(p.x) && stride16(p.x_batch_stride, p.batch, es) && stride16(p.x_l_stride, p.seqlen, es);
    const bool dy_vec =
        aligned16(p.dy) && stride16(p.dy_batch_stride, p.batch, es) && stride16(p.dy_l_stride, p.seqlen, es);
    const bool dx_vec =
        aligned16(p.dx) && stride16(p.dx_batch_stride, p.batch, es) && stride16(p.dx_l_stride, p.seqlen, es);
    const int64_t tl = cl_tile<T, kW>(p);
    const dim3 grid(static_cast<unsigned>((p.seqlen + kWarps * tl - 1) / (kWarps * tl)),
                    static_cast<unsigned>(cl_groups<T, kW>(p)), static_cast<unsigned>(p.batch));
    if (grid.x > 0 && grid.y > 0 && grid.z > 0)
      conv1d_bwd_cl_kernel<T, kW><<<grid, kThreads, 0, stream>>>(p, x_vec, dy_vec, dx_vec, tl);
  }
}

// Partial rows of the tiled kernel: one per warp segment or flat tile (channel-first) or per block (channel-last).
template <typename T, int kW>
int64_t partials(const Conv1dParams& p, bool channel_last) {
  if (!channel_last && use_flat<T>(p)) return p.batch * bwd_flat::tiles_per_row<T>(p.seqlen);
  if (!channel_last) return p.batch * fwd_cf::num_segs(p.seqlen, fwd_cf::seg_chunks(p.batch * p.dim, p.seqlen));
  const int64_t tl = cl_tile<T, kW>(p);
  return p.batch * ((p.seqlen + bwd_cl::kWarps * tl - 1) / (bwd_cl::kWarps * tl));
}

template <typename T>
int64_t partials_dtype(const Conv1dParams& p, bool channel_last) {
  return width_bucket(p.width) == 4 ? partials<T, 4>(p, channel_last) : partials<T, 8>(p, channel_last);
}

template <typename T>
void bwd_dtype(const Conv1dParams& p, bool channel_last, cudaStream_t stream) {
  if (width_bucket(p.width) == 4) bwd_main<T, 4>(p, channel_last, stream);
  else bwd_main<T, 8>(p, channel_last, stream);
}

}  // namespace

void launch_bwd_main(const Conv1dParams& p, bool channel_last, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
#if MK_CONV1D_LAB_MIN_INST  // speed-lab builds only: bf16, width bucket 4 (anything else launches nothing)
  if (p.x_dtype == DType::kBFloat16 && width_bucket(p.width) == 4) bwd_main<__nv_bfloat16, 4>(p, channel_last, s);
#else
  switch (p.x_dtype) {
    case DType::kFloat16: bwd_dtype<__half>(p, channel_last, s); break;
    case DType::kBFloat16: bwd_dtype<__nv_bfloat16>(p, channel_last, s); break;
    default: bwd_dtype<float>(p, channel_last, s); break;
  }
#endif
}

int64_t bwd_main_partials(const Conv1dParams& p, bool channel_last) {
#if MK_CONV1D_LAB_MIN_INST
  return p.x_dtype == DType::kBFloat16 && width_bucket(p.width) == 4 ? partials<__nv_bfloat16, 4>(p, channel_last) : 0;
#else
  switch (p.x_dtype) {
    case DType::kFloat16: return partials_dtype<__half>(p, channel_last);
    case DType::kBFloat16: return partials_dtype<__nv_bfloat16>(p, channel_last);
    default: return partials_dtype<float>(p, channel_last);
  }
#endif
}

}  // namespace conv1d
}  // namespace mamba_kernels
