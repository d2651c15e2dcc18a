// Forward kernel instantiations and launch configuration (see conv1d_fwd_kernel.cuh for the tiling; the flat
// channel-first variant conv1d_fwd_flat_kernel.cuh is selected by a knob, conv1d_common.cuh). An eight-channels-per-
// lane channel-last kernel with all loads up front measured 0.22-0.27 ms against 0.12 (H200, 2026-11-29): removed.
#include <cuda_runtime.h>

#include "conv1d/conv1d_fwd_flat_kernel.cuh"
#include "conv1d/conv1d_fwd_kernel.cuh"
#include "conv1d/conv1d_launch.h"

namespace mamba_kernels {
namespace conv1d {
namespace {

template <typename T, int kW>
void fwd_main(const Conv1dParams& p, bool channel_last, cudaStream_t stream) {
  constexpr int64_t es = sizeof(T);
  if (!channel_last) {
    using namespace fwd_cf;
    const bool x_vec = aligned16(p.x) && stride16(p.x_batch_stride, p.batch, es) && stride16(p.x_c_stride, p.dim, es);
    const bool y_vec = aligned16(p.y) && stride16(p.y_batch_stride, p.batch, es) && stride16(p.y_c_stride, p.dim, es);
    if (MK_CONV1D_FWD_CF_IMPL == 1) {  // flat grid: one tile per warp
      const int64_t tiles = fwd_flat::tiles_per_row<T>(p.seqlen);
      const int64_t fblocks = (p.batch * p.dim * tiles + fwd_flat::kWarps - 1) / fwd_flat::kWarps;
      if (fblocks < (int64_t(1) << 31)) {
        const auto kernel = by_act_and_width<kW>(p, [](auto silu, auto full) {
          return conv1d_fwd_flat_kernel<T, kW, decltype(silu)::value, decltype(full)::value>;
        });
        if (fblocks > 0)
          kernel<<<static_cast<unsigned>(fblocks), fwd_flat::kThreads, 0, stream>>>(p, x_vec, y_vec, tiles);
        return;
      }  // else: too many tiles for a 1-D grid; the persistent kernel below takes any size
    }
    // Persistent: one wave of resident blocks, or fewer when shares would drop below kMinShare chunks.
    constexpr int64_t kMinShare = 4;
    const int64_t total = p.batch * p.dim * ((p.seqlen + kChunkLen - 1) / kChunkLen);
    int64_t blocks = resident_blocks(conv1d_fwd_cf_kernel<T, kW>, kThreads);
    const int64_t small = (total + kWarps * kMinShare - 1) / (kWarps * kMinShare);
    if (small < blocks) blocks = small;
    const int64_t share = blocks > 0 ? (total + blocks * kWarps - 1) / (blocks * kWarps) : 0;
    if (blocks > 0)
      conv1d_fwd_cf_kernel<T, kW><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p, x_vec, y_vec, share);
  } else {
    using namespace fwd_cl;
    const bool x_vec = aligned16(p.x) && stride16(p.x_batch_stride, p.batch, es) && stride16(p.x_l_stride, p.seqlen, es);
    const bool y_vec = aligned16(p.y) && stride16(p.y_batch_stride, p.batch, es) && stride16(p.y_l_stride, p.seqlen, es);
    const int64_t cgroups = (p.dim + 32 * kC - 1) / (32 * kC);
    const int64_t tl = cl_tile_len(p.batch * cgroups, p.seqlen, resident_blocks(conv1d_fwd_cl_kernel<T, kW, true>, kThreads));
    const dim3 grid(static_cast<unsigned>((p.seqlen + kWarps * tl - 1) / (kWarps * tl)), static_cast<unsigned>(cgroups),
                    static_cast<unsigned>(p.batch));
    const auto kernel = x_vec && y_vec && p.dim % kC == 0 && p.width == kW ? conv1d_fwd_cl_kernel<T, kW, true>
                                                                          : conv1d_fwd_cl_kernel<T, kW, false>;
    // Vector loads of the lane's kC weight rows (kC * kW * es bytes at c0 * kW * es) and kC biases.
    const DType xt = p.x_dtype;
    const bool w_vec = p.w_dtype == xt && p.w_c_stride == kW && p.w_w_stride == 1 && aligned16(p.weight) &&
                       (p.bias == nullptr ||
                        (p.b_dtype == xt && p.bias_stride == 1 && reinterpret_cast<uintptr_t>(p.bias) % (kC * es) == 0));
    if (grid.x > 0 && grid.y > 0 && grid.z > 0) kernel<<<grid, kThreads, 0, stream>>>(p, x_vec, y_vec, w_vec, tl);
  }
}

template <typename T>
void fwd_dtype(const Conv1dParams& p, bool channel_last, cudaStream_t stream) {
  if (width_bucket(p.width) == 4) fwd_main<T, 4>(p, channel_last, stream);
  else fwd_main<T, 8>(p, channel_last, stream);
}

}  // namespace

void launch_fwd_main(const Conv1dParams& p, bool channel_last, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
#if MK_CONV1D_LAB_MIN_INST  // speed-lab builds only: bf16, width bucket 4 (anything else launches nothing)
  if (p.x_dtype == DType::kBFloat16 && width_bucket(p.width) == 4) fwd_main<__nv_bfloat16, 4>(p, channel_last, s);
#else
  switch (p.x_dtype) {
    case DType::kFloat16: fwd_dtype<__half>(p, channel_last, s); break;
    case DType::kBFloat16: fwd_dtype<__nv_bfloat16>(p, channel_last, s); break;
    default: fwd_dtype<float>(p, channel_last, s); break;
  }
#endif
}

}  // namespace conv1d
}  // namespace mamba_kernels
