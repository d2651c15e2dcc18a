// Launch geometry and host launcher of the verify SSM kernels for one state dtype (instantiated in
// verify_ssm_<dtype>.cu; the CPU emulation of these kernels uses ssm_launch_config and the kernel pointers too):
// which kernel (verify_m2tc_kernel, verify_m2_kernel, verify_ssm_kernel, verify_fused_kernel), block size, shared
// memory. CUDA headers only.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <utility>

#if defined(__CUDACC__)
#include "common/smem_optin.h"  // device_smem_optin, device_sm_count (the GPU launcher)
#endif
#include "verify/verify_m2_kernel.cuh"
#include "verify/verify_m1_kernel.cuh"
#include "verify/verify_m1dec_kernel.cuh"
#include "verify/verify_m2dec_kernel.cuh"
#include "verify/verify_m2deck_kernel.cuh"
#include "verify/verify_m2split_kernel.cuh"
#include "verify/verify_m2tc_kernel.cuh"
#include "verify/verify_ssm_kernel.cuh"

namespace mamba_kernels {
namespace verify_kernels {

// Launch geometry, shared by the launcher and the CPU emulation used to test these kernels.
struct SsmLaunch {
  const char* err = nullptr;  // invalid parameters
  bool fused = false, m1 = false;
  bool lean = false;  // verify_m2_kernel (Mamba-2 layout, tile fits one pass) instead of verify_ssm_kernel
  bool tc = false;    // verify_m2tc_kernel (Mamba-2 layout, N 64 / 128, tile <= 64 KB): tensor-core dots
  bool dec = false;   // verify_m2dec_kernel (k = 1) / verify_m2deck_kernel (2 <= k <= 8): fp32 state, small grids,
                      // folds every call
  bool m1lean = false;  // verify_m1_kernel (Mamba-1 layout, N 8 / 16): a thread a channel
  bool m1dec = false;   // verify_m1dec_kernel (Mamba-1 layout, k = 1, fp32 state): folds every call
  bool fold_every = false;  // m1lean with an fp32 state: launched with fold_all set (fold on every call)
  bool split = false;   // verify_m2prep_kernel + verify_m2str_kernel (tc's shapes): threads / smem are the stream
                        // kernel's, prep_smem the prep kernel's (kSplitPrepThreads threads); p.work is required
  size_t prep_smem = 0;
  int cluster = 1;    // dec: blocks a unit (one thread-block cluster when > 1); grid = units * cluster
  bool dec_last = false;  // dec, k = 1: verify_m2dec_kernel<.., true> (MK_VERIFY_DEC_LAST=0: not), cluster 1
  int dec_lanes = 4;  // dec: lanes a state row
  bool has_o32 = false;  // the chosen kernel has a 32-bit-offset instantiation (eoff: verify_offsets.cuh)
  bool o32 = false;      // has_o32 and offsets_fit32(p): launched with 32-bit offsets
  int64_t grid = 0;
  int64_t grid_y = 1;  // m1dec, dec: a 2-D grid (grid = a batch row's blocks, grid_y = batch rows): no block
                       // divides its index
  int threads = 0;
  size_t smem = 0;
};

// The parameters a kernel of launch c runs with: p, with fold_all set under the fold-every policy (c.fold_every).
inline VerifyStepParams ssm_kernel_params(const SsmLaunch& c, const VerifyStepParams& p) {
  VerifyStepParams q = p;
  q.fold_all = p.fold_all || c.fold_every;
  return q;
}

constexpr int64_t kSplitMinGrid = 1024;  // units (batch * heads) from which the split pair is taken

// MK_VERIFY_KERNEL: 0 unset (automatic), 1 "tc", 2 "lean", 3 "general", 4 "decode", 5 "split".
inline int verify_kernel_override() {
  static const int v = [] {
    const char* e = std::getenv("MK_VERIFY_KERNEL");
    if (e == nullptr) return 0;
    const std::string s(e);
    const char* names[] = {"tc", "lean", "general", "decode", "split"};
    for (int i = 0; i < 5; ++i)
      if (s == names[i]) return i + 1;
    return 0;
  }();
  return v;
}

// clusters: the device runs thread-block clusters (sm_90+). decode_auto: the automatic choice may take
// verify_m2dec_kernel (the GPU launcher; the CPU emulation only when forced, as its cache-tensor checks run the
// reference with the matching fold policy there). smem_optin: the dynamic shared memory a block may opt into on the
// device (H100 / H200 232448 bytes, A100 166912, RTX 30xx / 40xx 101376): a kernel whose layout needs more is passed
// over for the next one (the tensor-core and split kernels reach ~190 KB at p = n = 128 with long drafts, the lean
// kernel 100 KB), and a call that not even the general kernel fits gets an error naming the sizes to reduce.
template <typename T>
inline SsmLaunch ssm_launch_config(const VerifyStepParams& p, bool clusters, bool decode_auto, size_t smem_optin) {
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
  // Kernel choice: the split pair (verify_m2prep_kernel + verify_m2str_kernel) for large grids (kSplitMinGrid units)
  // and k >= 2 where tc's shapes fit: H200, b64 h32 p = n = 128, fp32 state, CUDA-graph call times k2 / k4 / k8
  // 60.7 / 57.9 / 71.9 us against tc's 69.4 / 70.6 / 79.4; at b16 (512 units) tc stays ahead (25.8 vs 27.2 at k4).
  // Else verify_m2tc_kernel where it fits, the grid fills the GPU and k >= 2, else verify_m2_kernel
  // where it fits, else the general kernel. H200, h 32 p 128 n 128, fp32 state (kernel times): b64 k4 tc 72 us,
  // lean 82-87; k8 87 vs 146-172; k1 64 vs 58 (the tensor-core dots do not pay for one token); b16 k4 equal;
  // b1 lean 256 threads 7.0-9.3 us. MK_VERIFY_KERNEL=tc|lean|general (environment, read once) restricts the
  // choice (benchmarks and tests of each kernel).
  // One token at small grids (under kM2SmallGrid units), fp32 state: verify_m2dec_kernel (one memory round trip;
  // it folds every call, which costs a state write a call that small grids have the bandwidth for); drafts of 2 to
  // kDecKMax tokens there: verify_m2deck_kernel (the same structure and policy).
  const int forced = verify_kernel_override();
  const bool dec_last = m2dec_last();  // the one-token decode kernel without a cluster (read once a launch)
  size_t smem = 0;
  const int lean_nt = c.grid < kM2SmallGrid ? kM2ThreadsSmall : kM2ThreadsBig;
  if (c.fused || forced == 3) {
  } else if (c.m1) {
    const int m1_threads = static_cast<int>((p.P + 31) / 32 * 32);  // verify_m1_kernel: a thread a channel
    const size_t m1_smem =
        static_cast<size_t>(m1_layout(m1_threads, p.N, p.k, p.in_dtype == DType::kFloat32 ? 4 : 2).words) * 4;
    if ((forced == 4 || (forced == 0 && decode_auto)) && m1dec_fits(p)) {
      // One token, fp32 state: verify_m1dec_kernel (8 states a lane, every load at once; the same fold-every
      // policy as m1lean's below).
      c.m1dec = true;
      c.threads = m1dec_threads(p.P, p.N);
      c.smem = 0;
    } else if (m1_fits(p) && m1_smem <= smem_optin) {
      c.m1lean = true;
      // Fold on every call (an fp32 state: results identical to fp32 rounding, as the decode kernel's). A Mamba-1
      // channel's state is 16 values, so the deferred fold saves little traffic (H200 b64 d 4096: 16.8 MB a write)
      // and costs the replay of the ring's committed tokens on every call, 16 exps a channel and token: b64 k1
      // 41.9 us a graph call against 32.7 for mamba_ssm's selective_state_update with a state snapshot. Automatic
      // on the GPU (decode_auto), forced by MK_VERIFY_KERNEL=decode (the CPU emulation's reference then folds too).
      // (k = 0 is verify_flush, which folds anyway.)
      c.fold_every = p.state_dtype == DType::kFloat32 && p.k >= 1 && (forced == 4 || (forced == 0 && decode_auto));
      c.threads = m1_threads;
      c.smem = m1_smem;
    }
  } else if ((forced == 4 || (forced == 0 && decode_auto && c.grid < kM2SmallGrid)) &&
             (m2dec_fits(p, clusters || dec_last, m2dec_lanes(p.P, dec_last)) ||
              m2deck_fits(p, clusters, m2dec_lanes(p.P)))) {
    c.dec = true;
    c.threads = kDecThreads;
    c.smem = 0;
    c.dec_last = p.k == 1 && dec_last;
    c.dec_lanes = m2dec_lanes(p.P, c.dec_last);
    c.cluster = static_cast<int>(p.P / (kDecThreads / c.dec_lanes));
    c.grid *= c.cluster;
    if (c.dec_last) c.cluster = 1;  // the unit's P / ROWS blocks stay consecutive (grid as above), no cluster
  } else if ((forced == 5 || (forced == 0 && c.grid >= kSplitMinGrid && p.k >= 2)) &&
             m2split_fits<T>(p, &smem, &c.prep_smem) && smem <= smem_optin && c.prep_smem <= smem_optin) {
    c.split = true;
    c.threads = 32 * m2split_warps(p.P);
    c.smem = smem;
  } else if ((forced == 1 || (forced == 0 && c.grid >= kM2SmallGrid && p.k >= 2)) && m2tc_fits<T>(p, &smem) &&
             smem <= smem_optin) {
    c.tc = true;
    c.threads = 32 * m2tc_warps(p.P);
    c.smem = smem;
  } else if (forced != 1 && forced != 5 && forced != 6 && m2_fits<T>(p, lean_nt, &smem) && smem <= smem_optin) {
    c.lean = true;
    c.threads = lean_nt;
    c.smem = smem;
  }
  if (!c.split) c.prep_smem = 0;  // (m2split_fits may have set it for a split pair not taken)
  // the kernels with 32-bit-offset instantiations: m1dec, m1lean, the split pair's prep kernel, the last-arrival
  // one-token kernel at 4 / 8 lanes, the lean kernel with an fp32 state
  c.has_o32 = c.m1dec || c.m1lean || c.split || (c.dec_last && c.dec_lanes != 16) ||
              (c.lean && std::is_same<T, float>::value);
  c.o32 = c.has_o32 && offsets_fit32(p);
  if (c.smem > smem_optin)  // the general / fused kernel: no smaller kernel left
    c.err = "verify_step_cuda: this call needs more shared memory a block than the GPU allows (the general kernel's "
            "tiles grow with k, max_draft, ring_len, headdim and d_state: reduce max_draft or ring_len)";
  if (c.grid > 0x7fffffff) c.err = "verify_step_cuda: batch * units too large";
  if (c.m1dec || c.dec) {  // blockIdx = (unit's block, batch row): the fits functions bound the batch by y's limit
    c.grid_y = p.batch;
    c.grid = p.batch > 0 ? c.grid / p.batch : 0;
  }
  return c;
}

template <typename T, typename TI>
inline void (*tc_kernel_in(int64_t N, int nw))(VerifyStepParams) {
  if (N == 64) return nw == 8 ? verify_m2tc_kernel<T, TI, 64, 8> : verify_m2tc_kernel<T, TI, 64, 4>;
  return nw == 8 ? verify_m2tc_kernel<T, TI, 128, 8> : verify_m2tc_kernel<T, TI, 128, 4>;
}
template <typename T>
inline void (*tc_kernel(DType in, int64_t N, int threads))(VerifyStepParams) {
  const int nw = threads / 32;
  return in == DType::kBFloat16 ? tc_kernel_in<T, __nv_bfloat16>(N, nw)
         : (in == DType::kFloat16 ? tc_kernel_in<T, __half>(N, nw) : tc_kernel_in<T, float>(N, nw));
}
template <typename T, typename TI>
inline void (*str_kernel_in(int64_t N, int nw))(VerifyStepParams) {
  if (N == 64) return nw == 8 ? verify_m2str_kernel<T, TI, 64, 8> : verify_m2str_kernel<T, TI, 64, 4>;
  return nw == 8 ? verify_m2str_kernel<T, TI, 128, 8> : verify_m2str_kernel<T, TI, 128, 4>;
}
template <typename T>
inline void (*str_kernel(DType in, int64_t N, int threads))(VerifyStepParams) {
  const int nw = threads / 32;
  return in == DType::kBFloat16 ? str_kernel_in<T, __nv_bfloat16>(N, nw)
         : (in == DType::kFloat16 ? str_kernel_in<T, __half>(N, nw) : str_kernel_in<T, float>(N, nw));
}
template <bool kO32>
inline void (*prep_kernel_o(DType in, int64_t N))(VerifyStepParams) {
  if (in == DType::kBFloat16)
    return N == 64 ? verify_m2prep_kernel<__nv_bfloat16, 64, kO32> : verify_m2prep_kernel<__nv_bfloat16, 128, kO32>;
  if (in == DType::kFloat16)
    return N == 64 ? verify_m2prep_kernel<__half, 64, kO32> : verify_m2prep_kernel<__half, 128, kO32>;
  return N == 64 ? verify_m2prep_kernel<float, 64, kO32> : verify_m2prep_kernel<float, 128, kO32>;
}
// The prep kernel with k a compile-time constant (2, 4 or 8) for bf16 inputs, N 128 and 32-bit offsets (the Llama-3
// hybrid layer's calls), so that its copy and token loops have fixed lengths (the generic kernel's loops compile
// unrolled by 4 with remainder prologues although each runs once or twice a thread at k 4; ptxas spills at k 4: 4 / 12
// bytes against 36 / 68). H100, b64 ring 16, two rounds: k 2 / 4 / 8 mean per call 0.8 / 0.9 / 1.6-1.8 us less
// (session 57). MK_VERIFY_PREP_KT=0 (environment, read once) keeps the generic kernel, for A/B runs.
inline bool prep_kt_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("MK_VERIFY_PREP_KT");
    return !(e != nullptr && e[0] == '0');
  }();
  return on;
}
// o32: offsets_fit32(p) (the kernel's offsets in 32-bit arithmetic); k: the call's draft length.
inline void (*prep_kernel(DType in, int64_t N, bool o32, int64_t k))(VerifyStepParams) {
  if (prep_kt_enabled() && in == DType::kBFloat16 && N == 128 && o32) {
    if (k == 2) return verify_m2prep_kernel<__nv_bfloat16, 128, true, 2>;
    if (k == 4) return verify_m2prep_kernel<__nv_bfloat16, 128, true, 4>;
    if (k == 8) return verify_m2prep_kernel<__nv_bfloat16, 128, true, 8>;
  }
  return o32 ? prep_kernel_o<true>(in, N) : prep_kernel_o<false>(in, N);
}
// Scratch words a (batch row, unit) for p (see verify_step_cuda_workspace): the split pair's, else 0.
template <typename T>
inline int64_t split_workspace_words(const VerifyStepParams& p, bool clusters, bool decode_auto, size_t smem_optin) {
  const SsmLaunch c = ssm_launch_config<T>(p, clusters, decode_auto, smem_optin);
  return c.err == nullptr && c.split ? m2split_ws(p.k, p.R).words : 0;
}
template <typename T, bool kO32>
inline void (*m1_kernel_o(DType in, int64_t N))(VerifyStepParams) {
  if (in == DType::kBFloat16)
    return N == 8 ? verify_m1_kernel<T, __nv_bfloat16, 8, kO32> : verify_m1_kernel<T, __nv_bfloat16, 16, kO32>;
  if (in == DType::kFloat16)
    return N == 8 ? verify_m1_kernel<T, __half, 8, kO32> : verify_m1_kernel<T, __half, 16, kO32>;
  return N == 8 ? verify_m1_kernel<T, float, 8, kO32> : verify_m1_kernel<T, float, 16, kO32>;
}
// o32: offsets_fit32(p) (the kernel's offsets in 32-bit arithmetic).
template <typename T>
inline void (*m1_kernel(DType in, int64_t N, bool o32))(VerifyStepParams) {
  return o32 ? m1_kernel_o<T, true>(in, N) : m1_kernel_o<T, false>(in, N);
}
// verify_m1dec_kernel (fp32 state only: instantiated in the fp32 launcher alone).
// o32: offsets_fit32(p) (the kernel's base offsets in 32-bit arithmetic).
template <bool kO32>
inline void (*m1dec_kernel_o(DType in, int64_t N))(M1DecParams) {
  if (in == DType::kBFloat16)
    return N == 8 ? verify_m1dec_kernel<__nv_bfloat16, 8, kO32> : verify_m1dec_kernel<__nv_bfloat16, 16, kO32>;
  if (in == DType::kFloat16) return N == 8 ? verify_m1dec_kernel<__half, 8, kO32> : verify_m1dec_kernel<__half, 16, kO32>;
  return N == 8 ? verify_m1dec_kernel<float, 8, kO32> : verify_m1dec_kernel<float, 16, kO32>;
}
template <typename T>
inline void (*m1dec_kernel(DType in, int64_t N, bool o32))(M1DecParams) {
  if constexpr (std::is_same<T, float>::value) {
    return o32 ? m1dec_kernel_o<true>(in, N) : m1dec_kernel_o<false>(in, N);
  } else {
    return nullptr;
  }
}
// verify_m2dec_kernel (fp32 state only: instantiated in the fp32 launcher alone).
// last: the kLast instantiation (SsmLaunch::dec_last; launched without a cluster); o32: offsets_fit32(p) (32-bit base
// offsets: the last-arrival kernels at 4 / 8 lanes only, the default ones).
template <typename TI, int LPR>
inline void (*dec_kernel_in(int64_t N, bool last, bool o32))(M2DecParams) {
  if (last && o32)
    return N == 64 ? verify_m2dec_kernel<TI, 64, LPR, true, true> : verify_m2dec_kernel<TI, 128, LPR, true, true>;
  if (last) return N == 64 ? verify_m2dec_kernel<TI, 64, LPR, true> : verify_m2dec_kernel<TI, 128, LPR, true>;
  return N == 64 ? verify_m2dec_kernel<TI, 64, LPR> : verify_m2dec_kernel<TI, 128, LPR>;
}
template <typename TI>
inline void (*dec_kernel_l(int64_t N, int lanes, bool last, bool o32))(M2DecParams) {
  if (lanes == 16)  // the last-arrival lab only (m2dec_lanes)
    return !last ? nullptr : N == 64 ? verify_m2dec_kernel<TI, 64, 16, true> : verify_m2dec_kernel<TI, 128, 16, true>;
  return lanes == 8 ? dec_kernel_in<TI, 8>(N, last, o32) : dec_kernel_in<TI, 4>(N, last, o32);
}
template <typename T>
inline void (*dec_kernel(DType in, int64_t N, int lanes, bool last = false, bool o32 = false))(M2DecParams) {
  if constexpr (std::is_same<T, float>::value) {
    if (in == DType::kBFloat16) return dec_kernel_l<__nv_bfloat16>(N, lanes, last, o32);
    if (in == DType::kFloat16) return dec_kernel_l<__half>(N, lanes, last, o32);
    return dec_kernel_l<float>(N, lanes, last, o32);
  } else {
    return nullptr;
  }
}

// verify_m2deck_kernel (fp32 state only: instantiated in the fp32 launcher alone).
template <typename TI>
inline void (*deck_kernel_l(int64_t N, int lanes))(M2DecKParams) {
  if (lanes == 8) return N == 64 ? verify_m2deck_kernel<TI, 64, 8> : verify_m2deck_kernel<TI, 128, 8>;
  return N == 64 ? verify_m2deck_kernel<TI, 64, 4> : verify_m2deck_kernel<TI, 128, 4>;
}
template <typename T>
inline void (*deck_kernel(DType in, int64_t N, int lanes))(M2DecKParams) {
  if constexpr (std::is_same<T, float>::value) {
    if (in == DType::kBFloat16) return deck_kernel_l<__nv_bfloat16>(N, lanes);
    if (in == DType::kFloat16) return deck_kernel_l<__half>(N, lanes);
    return deck_kernel_l<float>(N, lanes);
  } else {
    return nullptr;
  }
}

// The stream kernel's blocks that stage their state tile before griddepcontrol.wait (VerifyStepParams::tile_early):
// its first wave, 2 an SM (its launch bounds and ~76 KB of shared memory), which become resident while the prep grid
// finishes, so their 64 KB tiles load under the prep's tail. Later blocks start after the prep grid and read their
// record header first (a header queued behind a tile delays a folding unit's ring rows). H100, b64 ring 16, mean per
// call, two rounds: k2 / k4 / k8 65.4-65.5 / 72.4-72.5 / 98.2-98.3 us against 65.7-66.0 / 73.0-73.1 / 99.3-99.7 with
// none early, 65.9 / 72.8-72.9 / 98.7-99.0 with all. MK_VERIFY_TILE_EARLY=n|all (environment, read once): blocks
// [0, n) instead (0: none). sms: the device's SM count (0: unknown, as in the CPU emulation).
inline int64_t tile_early_blocks(int sms) {
  static const int64_t forced = [] {  // -1: not set
    const char* e = std::getenv("MK_VERIFY_TILE_EARLY");
    if (e == nullptr) return int64_t{-1};
    return e[0] == 'a' ? INT64_MAX : std::max<int64_t>(0, std::strtoll(e, nullptr, 10));
  }();
  return forced >= 0 ? forced : 2 * static_cast<int64_t>(sms);
}

// The stream kernel's parameters: p with tile_early set (sms as above).
inline VerifyStepParams str_params(const VerifyStepParams& p, int sms) {
  VerifyStepParams q = p;
  q.tile_early = tile_early_blocks(sms);
  return q;
}

#if defined(__CUDACC__)
template <typename T, int NT, bool kO32>
inline void (*lean_kernel_nt(DType in))(VerifyStepParams) {
  return in == DType::kBFloat16 ? verify_m2_kernel<T, __nv_bfloat16, NT, kO32>
         : (in == DType::kFloat16 ? verify_m2_kernel<T, __half, NT, kO32> : verify_m2_kernel<T, float, NT, kO32>);
}
// o32: offsets_fit32(p); taken for fp32 states only (the 32-bit instantiations of the other states are not built).
template <typename T>
inline void (*lean_kernel(DType in, int threads, bool o32))(VerifyStepParams) {
  if constexpr (std::is_same<T, float>::value) {
    if (o32) {
      return threads == kM2ThreadsSmall ? lean_kernel_nt<T, kM2ThreadsSmall, true>(in)
                                        : lean_kernel_nt<T, kM2ThreadsBig, true>(in);
    }
  }
  return threads == kM2ThreadsSmall ? lean_kernel_nt<T, kM2ThreadsSmall, false>(in)
                                    : lean_kernel_nt<T, kM2ThreadsBig, false>(in);
}

// Whether the current device runs thread-block clusters (compute capability 9+), asked once per device.
inline bool device_has_clusters() {
  static int cached[64] = {0};  // 0 unknown, 1 no, 2 yes
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0) return false;
  if (dev >= 64) return false;
  if (cached[dev] == 0) {
    int major = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cached[dev] = major >= 9 ? 2 : 1;
  }
  return cached[dev] == 2;
}

// c.grid x c.grid_y blocks of c.threads in clusters of c.cluster consecutive blocks (x).
template <typename... Params, typename... Args>
cudaError_t launch_in_clusters(const SsmLaunch& c, size_t smem, cudaStream_t stream, void (*kern)(Params...),
                               Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(c.grid), static_cast<unsigned>(c.grid_y), 1);
  cfg.blockDim = dim3(static_cast<unsigned>(c.threads), 1, 1);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = static_cast<unsigned>(c.cluster);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kern, std::forward<Args>(args)...);
}

// Lets kern take smem bytes of dynamic shared memory (above the default 48 KB: an opt-in attribute).
template <typename... Args>
const char* allow_smem(void (*kern)(Args...), size_t smem) {
  if (smem <= 48 * 1024) return nullptr;
  const cudaError_t err =
      cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

// kern(arg) on c's grid: in clusters of c.cluster blocks when > 1, with c.smem bytes of dynamic shared memory.
template <typename Arg>
const char* launch_one(const SsmLaunch& c, cudaStream_t stream, void (*kern)(Arg), const Arg& arg) {
  cudaError_t err;
  if (const char* e = allow_smem(kern, c.smem)) return e;
  if (c.cluster > 1) {  // a cluster of `cluster` consecutive blocks per unit
    err = launch_in_clusters(c, c.smem, stream, kern, arg);
    if (err != cudaSuccess) return cudaGetErrorString(err);
  } else {
    const dim3 grid(static_cast<unsigned>(c.grid), static_cast<unsigned>(c.grid_y), 1);
    kern<<<grid, static_cast<unsigned>(c.threads), c.smem, stream>>>(arg);
  }
  err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

// MK_VERIFY_PDL=0 (environment, read once): launch the split pair's stream kernel without programmatic
// serialization (A/B timing of the overlap).
inline bool verify_pdl_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("MK_VERIFY_PDL");
    return !(e != nullptr && e[0] == '0');
  }();
  return on;
}

// The split pair: the prep kernel, then the stream kernel as its programmatic dependent (sm_90: its blocks start
// streaming the state while the prep grid finishes; griddepcontrol.wait orders its reads of the scratch).
template <typename T>
const char* launch_split(const SsmLaunch& c, const VerifyStepParams& p, cudaStream_t stream, bool pdl) {
  if (p.work == nullptr || p.work_unit < m2split_ws(p.k, p.R).words)
    return "verify_step_cuda: the split kernels need p.work (verify_step_cuda_workspace words a unit)";
  SsmLaunch cp = c;
  cp.threads = kSplitPrepThreads;
  cp.smem = c.prep_smem;
  cp.cluster = 1;
  if (const char* err = launch_one(cp, stream, prep_kernel(p.in_dtype, p.N, c.o32, p.k), p)) return err;
  void (*skern)(VerifyStepParams) = str_kernel<T>(p.in_dtype, p.N, c.threads);
  if (const char* e = allow_smem(skern, c.smem)) return e;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(c.grid), 1, 1);
  cfg.blockDim = dim3(static_cast<unsigned>(c.threads), 1, 1);
  cfg.dynamicSmemBytes = c.smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  cudaError_t err = cudaLaunchKernelEx(&cfg, skern, str_params(p, device_sm_count()));
  if (err == cudaSuccess) err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

template <typename T>
const char* launch_verify_ssm(const VerifyStepParams& p, cudaStream_t stream) {
  const bool clusters = device_has_clusters();
  const SsmLaunch c = ssm_launch_config<T>(p, clusters, true, static_cast<size_t>(device_smem_optin()));
  if (c.err != nullptr) return c.err;
  if (c.grid == 0) return nullptr;
  if (c.split) return launch_split<T>(c, p, stream, clusters && verify_pdl_enabled());
  void (*kern)(VerifyStepParams) =
      c.fused ? verify_fused_kernel<T> : (c.m1 ? verify_ssm_kernel<T, true> : verify_ssm_kernel<T, false>);
  if (c.lean) kern = lean_kernel<T>(p.in_dtype, c.threads, c.o32);
  if (c.tc) kern = tc_kernel<T>(p.in_dtype, p.N, c.threads);
  if (c.m1lean) kern = m1_kernel<T>(p.in_dtype, p.N, c.o32);
  if (kern == nullptr) return "verify_step_cuda: no kernel for these parameters";
  if (c.m1dec) {  // compact parameters (M1DecParams)
    void (*mkern)(M1DecParams) = m1dec_kernel<T>(p.in_dtype, p.N, c.o32);
    if (mkern == nullptr) return "verify_step_cuda: no Mamba-1 decode kernel for these parameters";
    return launch_one(c, stream, mkern, m1dec_params(p));
  }
  if (c.dec && p.k >= 2) {  // the short-draft decode kernel (M2DecKParams)
    void (*kkern)(M2DecKParams) = deck_kernel<T>(p.in_dtype, p.N, c.dec_lanes);
    if (kkern == nullptr) return "verify_step_cuda: no decode kernel for these parameters";
    return launch_one(c, stream, kkern, m2deck_params(p, c.dec_lanes));
  }
  if (c.dec) {  // the decode kernel takes its compact parameters (M2DecParams)
    void (*dkern)(M2DecParams) = dec_kernel<T>(p.in_dtype, p.N, c.dec_lanes, c.dec_last, c.o32);
    if (dkern == nullptr) return "verify_step_cuda: no decode kernel for these parameters";
    return launch_one(c, stream, dkern, m2dec_params(p, c.dec_lanes));
  }
  return launch_one(c, stream, kern, ssm_kernel_params(c, p));
}
#endif

}  // namespace verify_kernels
}  // namespace mamba_kernels
