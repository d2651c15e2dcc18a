// Public CUDA entry points of conv1d.h: argument checks the kernels rely on, the tiled main kernels
// (conv1d_fwd_launch.cu / conv1d_bwd_launch.cu), the small state kernels and the decode update kernel.
// Every launch is followed by cudaGetLastError; errors go back to the binding as a message.
#include <cuda_runtime.h>

#include "conv1d/conv1d_bwd_kernel.cuh"
#include "conv1d/conv1d_launch.h"
#include "conv1d/conv1d_states_kernel.cuh"
#include "conv1d/conv1d_update_kernel.cuh"

namespace mamba_kernels {
namespace conv1d {
namespace {

constexpr int64_t kMaxGridYZ = 65535;

const char* last_error() {
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

const char* check_common(const Conv1dParams& p, bool channel_last) {
  if (p.width < kMinWidth || p.width > kMaxWidth) return "conv1d (CUDA): width must be in [2, 8]";
  if (p.x_dtype == DType::kFloat64) return "conv1d (CUDA): float64 is not supported (use the cpu or ref backend)";
  if (p.w_dtype == DType::kFloat64 || (p.bias && p.b_dtype == DType::kFloat64))
    return "conv1d (CUDA): float64 weight / bias are not supported";
  if (p.seqlen >= (int64_t(1) << 31) - 65536) return "conv1d (CUDA): seqlen must be below 2^31 - 2^16";
  if (channel_last ? p.x_c_stride != 1 : p.x_l_stride != 1)
    return "conv1d (CUDA): x needs a unit stride along channels (channel-last) or time (channel-first)";
  if (channel_last && (p.batch > kMaxGridYZ || (p.dim + 63) / 64 > kMaxGridYZ))
    return "conv1d (CUDA): batch or dim too large for the channel-last grid";
  const int64_t cf_blocks =
      p.batch * p.dim * fwd_cf::num_segs(p.seqlen, fwd_cf::seg_chunks(p.batch * p.dim, p.seqlen)) / fwd_cf::kWarps;
  if (!channel_last && cf_blocks >= (int64_t(1) << 31)) return "conv1d (CUDA): tensor too large for the grid";
  return nullptr;
}

// Partial rows of dweight / dbias written by the tiled backward kernel (then one correction row per sequence
// with varlen, written by conv1d_bwd_fix_kernel).
int64_t main_partials(const Conv1dParams& p, bool channel_last) { return bwd_main_partials(p, channel_last); }

// The vectorised one-token path (conv1d_update_vec_kernel) serves these parameters: one token, width 4, a state
// of 3 or 4 entries, x / out / state / weight contiguous along what the kernel reads as words and 16-byte aligned.
template <typename T>
bool update_vec_ok(const Conv1dUpdateParams& p) {
  constexpr int64_t es = sizeof(T), kV = upd_vec_channels<T>();
  if (MK_CONV1D_UPD_VEC == 0 || p.k != 1 || p.width != 4 || (p.state_len != 3 && p.state_len != 4)) return false;
  if (p.dim % kV != 0) return false;  // (fp64 weights were refused by conv1d_update_cuda)
  const bool x_ok = p.x_c_stride == 1 && aligned16(p.x) && stride16(p.x_batch_stride, p.batch, es);
  const bool o_ok = p.out_c_stride == 1 && aligned16(p.out) && stride16(p.out_batch_stride, p.batch, es);
  const bool s_ok = p.state_l_stride == 1 && p.state_c_stride == p.state_len && aligned16(p.conv_state) &&
                    stride16(p.state_n_stride, p.nslots, es);
  const bool w_ok = p.w_w_stride == 1 && p.w_c_stride == 4 && aligned16(p.weight);  // kV x 4 weights: 32 or 64 B
  return x_ok && o_ok && s_ok && w_ok;
}

template <typename T>
void update_dtype(const Conv1dUpdateParams& p, cudaStream_t stream) {
  if (update_vec_ok<T>(p)) {
    const int64_t per_block = int64_t(kUpdateVecThreads) * upd_vec_channels<T>();
    const dim3 vgrid(static_cast<unsigned>((p.dim + per_block - 1) / per_block), static_cast<unsigned>(p.batch));
    if (p.state_len == 3) conv1d_update_vec_kernel<T, 3><<<vgrid, kUpdateVecThreads, 0, stream>>>(p);
    else conv1d_update_vec_kernel<T, 4><<<vgrid, kUpdateVecThreads, 0, stream>>>(p);
    return;
  }
  const dim3 grid(static_cast<unsigned>((p.dim + kUpdateChannels - 1) / kUpdateChannels), static_cast<unsigned>(p.batch));
  if (width_bucket(p.width) == 4) conv1d_update_kernel<T, 4><<<grid, kUpdateThreads, 0, stream>>>(p);
  else conv1d_update_kernel<T, 8><<<grid, kUpdateThreads, 0, stream>>>(p);
}

}  // namespace

const char* conv1d_fwd_cuda(const Conv1dParams& p, bool channel_last, void* stream) {
  if (const char* err = check_common(p, channel_last)) return err;
  if (channel_last ? p.y_c_stride != 1 : p.y_l_stride != 1) return "conv1d (CUDA): y must have the layout of x";
  if (const char* err = last_error()) return err;  // do not blame our launch for an earlier error
  launch_fwd_main(p, channel_last, stream);
  if (const char* err = last_error()) return err;
  const int64_t n_fix = p.nseq * p.dim;
  if ((p.cu_seqlens || p.final_states) && n_fix > 0) {
    conv1d_fwd_fix_kernel<<<static_cast<unsigned>((n_fix + kFixThreads - 1) / kFixThreads), kFixThreads, 0,
                            static_cast<cudaStream_t>(stream)>>>(p);
    if (const char* err = last_error()) return err;
  }
  return nullptr;
}

const char* conv1d_bwd_cuda(const Conv1dParams& p, bool channel_last, void* stream) {
  if (const char* err = check_common(p, channel_last)) return err;
  if (channel_last ? (p.dy_c_stride != 1 || p.dx_c_stride != 1) : (p.dy_l_stride != 1 || p.dx_l_stride != 1))
    return "conv1d (CUDA): dy and dx must have the layout of x";
  if (conv1d_bwd_num_partials(p, channel_last) > 0 && p.dweight_partial == nullptr)
    return "conv1d (CUDA): dweight_partial is missing";
  if (p.dweight == nullptr) return "conv1d (CUDA): dweight is missing";
  if (const char* err = last_error()) return err;
  launch_bwd_main(p, channel_last, stream);
  if (const char* err = last_error()) return err;
  const int64_t n_fix = p.nseq * p.dim;
  if ((p.cu_seqlens || p.dfinal_states || p.dinitial_states) && n_fix > 0) {
    conv1d_bwd_fix_kernel<<<static_cast<unsigned>((n_fix + kFixThreads - 1) / kFixThreads), kFixThreads, 0,
                            static_cast<cudaStream_t>(stream)>>>(p, main_partials(p, channel_last));
    if (const char* err = last_error()) return err;
  }
  const int64_t n_red = p.dim * p.width + (p.dbias ? p.dim : 0);
  if (n_red > 0) {
    conv1d_reduce_partials_kernel<<<static_cast<unsigned>((n_red + 255) / 256), 256, 0,
                                    static_cast<cudaStream_t>(stream)>>>(p, conv1d_bwd_num_partials(p, channel_last));
    if (const char* err = last_error()) return err;
  }
  return nullptr;
}

int64_t conv1d_bwd_num_partials(const Conv1dParams& p, bool channel_last) {
  return main_partials(p, channel_last) + (p.cu_seqlens ? p.nseq : 0);
}

const char* conv1d_update_cuda(const Conv1dUpdateParams& p, void* stream) {
  if (p.width < kMinWidth || p.width > kMaxWidth) return "conv1d_update (CUDA): width must be in [2, 8]";
  if (p.state_len < p.width - 1) return "conv1d_update (CUDA): state_len must be >= width - 1";
  if (p.x_dtype == DType::kFloat64 || p.w_dtype == DType::kFloat64 || (p.bias && p.b_dtype == DType::kFloat64))
    return "conv1d_update (CUDA): float64 is not supported (use the cpu or ref backend)";
  if (p.batch > kMaxGridYZ) return "conv1d_update (CUDA): batch must be <= 65535";
  if (p.batch == 0 || p.dim == 0) return nullptr;
  if (const char* err = last_error()) return err;
  const auto s = static_cast<cudaStream_t>(stream);
  switch (p.x_dtype) {
    case DType::kFloat16: update_dtype<__half>(p, s); break;
    case DType::kBFloat16: update_dtype<__nv_bfloat16>(p, s); break;
    default: update_dtype<float>(p, s); break;
  }
  return last_error();
}

}  // namespace conv1d
}  // namespace mamba_kernels
