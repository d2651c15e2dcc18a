// Internal: the tiled conv1d kernels are instantiated in two translation units (conv1d_fwd_launch.cu,
// conv1d_bwd_launch.cu) so that they compile in parallel; conv1d_launch.cu holds the public entry points of
// conv1d.h, the small state kernels and the update kernel. No torch, no CUDA types (stream is a cudaStream_t).
#pragma once
#include <type_traits>

#include "conv1d/conv1d.h"

namespace mamba_kernels {
namespace conv1d {

// Width buckets: kernels exist for kW = 4 (widths 2..4) and kW = 8 (widths 5..8), for fp32 / fp16 / bf16
// and both layouts: 2 x 3 x 2 = 12 forward and 12 backward kernels, 6 update kernels, 2 state kernels.
constexpr int width_bucket(int64_t width) { return width <= 4 ? 4 : 8; }

// Kernels instantiated per activation and for full width (width == kW, no absent taps): the instantiation p
// needs. make(silu, full) gets std::true_type / std::false_type arguments and returns a kernel pointer.
template <int kW, typename Make>
auto by_act_and_width(const Conv1dParams& p, Make make) {
  constexpr std::true_type y{};
  constexpr std::false_type n{};
  return p.width == kW ? (p.silu ? make(y, y) : make(n, y)) : (p.silu ? make(y, n) : make(n, n));
}

void launch_fwd_main(const Conv1dParams& p, bool channel_last, void* stream);
void launch_bwd_main(const Conv1dParams& p, bool channel_last, void* stream);
// Partial rows of dweight / dbias that launch_bwd_main's kernel writes (same tiling choice as the launch).
int64_t bwd_main_partials(const Conv1dParams& p, bool channel_last);

}  // namespace conv1d
}  // namespace mamba_kernels
