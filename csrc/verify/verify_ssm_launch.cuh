// Launch geometry and host launcher of the verify SSM kernels for one state dtype (instantiated in
// verify_ssm_<dtype>.cu; the CPU emulation of these kernels uses ssm_launch_config and the kernel pointers too):
// which kernel (verify_m2tc_kernel, verify_m2_kernel, verify_ssm_kernel, verify_fused_kernel), block size, shared
// memory. CUDA headers only.
#pragma once
#include <cstdlib>
#include <string>

#include "verify/verify_m2_kernel.cuh"
#include "verify/verify_m2tc_kernel.cuh"
#include "verify/verify_m2tcp_kernel.cuh"
#include "verify/verify_ssm_kernel.cuh"

namespace mamba_kernels {
namespace verify_kernels {

// Launch geometry, shared by the launcher and the CPU emulation used to test these kernels.
struct SsmLaunch {
  const char* err = nullptr;  // invalid parameters
  bool fused = false, m1 = false;
  bool lean = false;  // verify_m2_kernel (Mamba-2 layout, tile fits one pass) instead of verify_ssm_kernel
  bool tc = false;    // verify_m2tc_kernel (Mamba-2 layout, N 64 / 128, tile <= 64 KB): tensor-core dots
  bool tcp = false;   // verify_m2tcp_kernel (experimental, MK_VERIFY_KERNEL=tcp): grid = units, capped by the launcher
  int buf_words = 0;  // tcp: one unit buffer's 32-bit words
  int64_t grid = 0;
  int threads = 0;
  size_t smem = 0;
};

// MK_VERIFY_KERNEL: 0 unset (automatic), 1 "tc", 2 "lean", 3 "general", 4 "tcp" (experimental: not chosen
// automatically until measured).
inline int verify_kernel_override() {
  static const int v = [] {
    const char* e = std::getenv("MK_VERIFY_KERNEL");
    if (e == nullptr) return 0;
    const std::string s(e);
    return s == "tc" ? 1 : (s == "lean" ? 2 : (s == "general" ? 3 : (s == "tcp" ? 4 : 0)));
  }();
  return v;
}

template <typename T>
inline SsmLaunch ssm_launch_config(const VerifyStepParams& p) {
  SsmLaunch c;
  c.fused = p.fused;
  c.m1 = !(p.Pa == 1 && p.Na == 1 && p.Pd == 1);
  if (p.k < 0 || p.k > kMaxK || p.k > p.Kmax) c.err = "verify_step_cuda: need 0 <= k <= Kmax";
  else if (p.Kmax < 0 || p.Kmax > kMaxK || p.R < 1 || p.Kmax > p.R) c.err = "verify_step_cuda: need Kmax <= min(32, R)";
  else if (p.H <= 0 || p.P <= 0 || p.N <= 0 || p.G <= 0 || p.H % p.G != 0)
    c.err = "verify_step_cuda: need H, P, N > 0 and H divisible by G";
  else if (p.Pd != 1 && p.Pd != p.P) c.err = "verify_step_cuda: Pd must be 1 or P";
  else if (p.in_dtype == DType::kFloat64 || p.state_dtype == DType::kFloat64)
    c.err = "verify_step_cuda: float64 is not supported on CUDA";
  else if (c.fused && c.m1) c.err = "verify_step_fused_cuda: Mamba-2 layout only (A (H, 1, 1), dt (b, k, H, 1))";
  else if (c.fused && (p.width < 2 || p.width > kMaxWidth)) c.err = "verify_step_fused_cuda: conv width must be in [2, 8]";
  else if (c.fused && p.dc != p.H * p.P + 2 * p.G * p.N) c.err = "verify_step_fused_cuda: dc must be H*P + 2*G*N";
  if (c.err != nullptr) return c;
  constexpr int V = SV<T>::V;
  const int SPL = c.m1 ? SsmCfg<T, true>::SPL : SsmCfg<T, false>::SPL;
  const int RPT = c.m1 ? SsmCfg<T, true>::RPT : SsmCfg<T, false>::RPT;
  const int L = lanes_per_row(p.N, V, SPL);
  int64_t threads = (p.P + RPT - 1) / RPT * L;
  threads = (threads + 31) / 32 * 32;
  const int64_t min_threads = c.fused ? 128 : 32;
  threads = threads < min_threads ? min_threads : (threads > kMaxThreads ? kMaxThreads : threads);
  c.threads = static_cast<int>(threads);
  c.smem = static_cast<size_t>(ssm_layout(p.k, p.P, p.N, p.Pd, p.R, V).words) * 4;
  c.grid = c.fused ? p.batch * p.G : p.batch * p.H;
  // Kernel choice: verify_m2tc_kernel where it fits, the grid fills the GPU and k >= 2, else verify_m2_kernel
  // where it fits, else the general kernel. H200, h 32 p 128 n 128, fp32 state (kernel times): b64 k4 tc 72 us,
  // lean 82-87; k8 87 vs 146-172; k1 64 vs 58 (the tensor-core dots do not pay for one token); b16 k4 equal;
  // b1 lean 256 threads 7.0-9.3 us. MK_VERIFY_KERNEL=tc|lean|general (environment, read once) restricts the
  // choice (benchmarks and tests of each kernel).
  const int forced = verify_kernel_override();
  size_t smem = 0;
  const int lean_nt = c.grid < kM2SmallGrid ? kM2ThreadsSmall : kM2ThreadsBig;
  if (c.fused || c.m1 || forced == 3) {
  } else if (forced == 4 && m2tcp_fits<T>(p, &smem, &c.buf_words)) {
    c.tcp = true;
    c.threads = 256;
    c.smem = smem;
  } else if ((forced == 1 || (forced == 0 && c.grid >= kM2SmallGrid && p.k >= 2)) && m2tc_fits<T>(p, &smem)) {
    c.tc = true;
    c.threads = 32 * m2tc_warps(p.P);
    c.smem = smem;
  } else if (forced != 1 && m2_fits<T>(p, lean_nt, &smem)) {
    c.lean = true;
    c.threads = lean_nt;
    c.smem = smem;
  }
  if (c.grid > 0x7fffffff) c.err = "verify_step_cuda: batch * units too large";
  return c;
}

template <typename T, typename TI>
inline void (*tc_kernel_in(int64_t N, int nw))(VerifyStepParams) {
  if (N == 64) return nw == 8 ? verify_m2tc_kernel<T, TI, 64, 8> : verify_m2tc_kernel<T, TI, 64, 4>;
  return nw == 8 ? verify_m2tc_kernel<T, TI, 128, 8> : verify_m2tc_kernel<T, TI, 128, 4>;
}
template <typename T>
inline void (*tcp_kernel(DType in))(VerifyStepParams, int) {
  return in == DType::kBFloat16 ? verify_m2tcp_kernel<T, __nv_bfloat16, 128, 8>
         : (in == DType::kFloat16 ? verify_m2tcp_kernel<T, __half, 128, 8> : verify_m2tcp_kernel<T, float, 128, 8>);
}
template <typename T>
inline void (*tc_kernel(DType in, int64_t N, int threads))(VerifyStepParams) {
  const int nw = threads / 32;
  return in == DType::kBFloat16 ? tc_kernel_in<T, __nv_bfloat16>(N, nw)
         : (in == DType::kFloat16 ? tc_kernel_in<T, __half>(N, nw) : tc_kernel_in<T, float>(N, nw));
}

#if defined(__CUDACC__)
template <typename T, int NT>
inline void (*lean_kernel_nt(DType in))(VerifyStepParams) {
  return in == DType::kBFloat16 ? verify_m2_kernel<T, __nv_bfloat16, NT>
         : (in == DType::kFloat16 ? verify_m2_kernel<T, __half, NT> : verify_m2_kernel<T, float, NT>);
}
template <typename T>
inline void (*lean_kernel(DType in, int threads))(VerifyStepParams) {
  return threads == kM2ThreadsSmall ? lean_kernel_nt<T, kM2ThreadsSmall>(in) : lean_kernel_nt<T, kM2ThreadsBig>(in);
}

template <typename T>
const char* launch_verify_ssm(const VerifyStepParams& p, cudaStream_t stream) {
  const SsmLaunch c = ssm_launch_config<T>(p);
  if (c.err != nullptr) return c.err;
  if (c.grid == 0) return nullptr;
  void (*kern)(VerifyStepParams) =
      c.fused ? verify_fused_kernel<T> : (c.m1 ? verify_ssm_kernel<T, true> : verify_ssm_kernel<T, false>);
  if (c.lean) kern = lean_kernel<T>(p.in_dtype, c.threads);
  if (c.tc) kern = tc_kernel<T>(p.in_dtype, p.N, c.threads);
  cudaError_t err;
  if (c.tcp) {  // one block an SM (at most one unit a block)
    void (*pk)(VerifyStepParams, int) = tcp_kernel<T>(p.in_dtype);
    err = cudaFuncSetAttribute(pk, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(c.smem));
    if (err != cudaSuccess) return cudaGetErrorString(err);
    int dev = 0, sms = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    const int64_t grid = c.grid < sms ? c.grid : (sms > 0 ? sms : 1);
    pk<<<static_cast<unsigned>(grid), static_cast<unsigned>(c.threads), c.smem, stream>>>(p, c.buf_words);
    err = cudaGetLastError();
    return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
  }
  if (c.smem > 48 * 1024) {
    err = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(c.smem));
    if (err != cudaSuccess) return cudaGetErrorString(err);
  }
  kern<<<static_cast<unsigned>(c.grid), static_cast<unsigned>(c.threads), c.smem, stream>>>(p);
  err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}
#endif

}  // namespace verify_kernels
}  // namespace mamba_kernels
