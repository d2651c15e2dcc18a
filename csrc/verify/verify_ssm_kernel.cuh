// SSM verify step and fused Mamba-2 step: the CUDA kernels (CUDA headers only, no torch). The plain step runs one
// block per (batch row, unit), the fused step one per (batch row, group) looping over the group's heads; each
// calls ssm_unit (verify_ssm_unit.cuh: the algorithm, the state streaming and the ring / meta updates).
#pragma once
#include "verify/verify_ssm_unit.cuh"

namespace mamba_kernels {
namespace verify_kernels {

// Plain SSM step: grid = batch * H, block (b, u).
template <typename T, bool M1>
__global__ void __launch_bounds__(kMaxThreads, M1 ? 1 : 2) verify_ssm_kernel(const VerifyStepParams p) {
  MK_VERIFY_DYN_SMEM(smem_f4);
  float* smf = reinterpret_cast<float*>(smem_f4);
  int* smi = reinterpret_cast<int*>(smem_f4);
  const int64_t b = blockIdx.x / p.H, u = blockIdx.x % p.H;
  const int64_t s = p.slots[b * p.slots_stride];
  if (s < 0 || s >= p.S) {
    zero_y(p, b, u, 1);
    return;
  }
  const SsmLayout lay = ssm_layout(p.k, p.P, p.N, p.Pd, p.R, SV<T>::V);
  const int64_t g = u / (p.H / p.G);
  const int k = static_cast<int>(p.k);
  const int tid = threadIdx.x, nthr = blockDim.x;
  const int64_t Npad = (p.N + SV<T>::V - 1) / SV<T>::V * SV<T>::V;
  const int32_t* meta_row = p.meta + s * p.meta_s + u * p.meta_h;
  auto setup_load = [&]() {
    return ctx_preload(meta_row, p.meta_i, p.Kmax, p.accepted + b * p.accepted_stride,
                       p.parents != nullptr ? p.parents + b * p.par_b : nullptr, p.par_k, k);
  };
  auto setup = [&](const CtxPre& pre) {
    setup_ctx_ssm(pre, meta_row, p.meta_i, p.Kmax, p.R, p.accepted_is_node, k, p.fold_all, smi + lay.ctx,
                  smi + lay.par, smi + lay.mask, smi + lay.Qpos, smi + lay.mrow);
  };
  auto prep = [&]() {
    float* xs = smf + lay.xs;
    float* Bs = smf + lay.Bs;
    float* Cs = smf + lay.Cs;
    const int P = static_cast<int>(p.P), N = static_cast<int>(p.N), Np = static_cast<int>(Npad);
    const int64_t x0 = b * p.x_b + u * p.x_h, xk = p.x_k, b0 = b * p.B_b + g * p.B_g, bk = p.B_k;
    const int64_t c0 = b * p.C_b + g * p.C_g, ck = p.C_k;
    auto xoff = [x0, xk](int t) -> int64_t { return x0 + t * xk; };
    auto boff = [b0, bk](int t) -> int64_t { return b0 + t * bk; };
    auto coff = [c0, ck](int t) -> int64_t { return c0 + t * ck; };
    auto sx = row_stage<1>(p.x, p.in_dtype, k, P, xoff, al8(p.x_b, p.x_k, p.x_h));
    auto sb = row_stage<1>(p.B, p.in_dtype, k, N, boff, al8(p.B_b, p.B_k, p.B_g));
    auto sc = row_stage<1>(p.C, p.in_dtype, k, N, coff, al8(p.C_b, p.C_k, p.C_g));
    sx.load();
    sb.load();
    sc.load();
    sx.store([&](int t, int pp, float v) { xs[t * P + pp] = v; });
    sb.store([&](int t, int n, float v) { Bs[t * Np + n] = v; });
    sc.store([&](int t, int n, float v) { Cs[t * Np + n] = v; });
    if (Np > N) {
      const int w = Np - N;
      for (int i = tid; i < k * w; i += nthr) {
        const int t = i / w, n = N + (i - t * w);
        Bs[t * Np + n] = 0.f;
        Cs[t * Np + n] = 0.f;
      }
    }
  };
  ssm_unit<T, M1>(p, smf, lay, b, s, u, setup_load, setup, prep);
}

// Fused Mamba-2 step: grid = batch * G, block (b, g): conv with rollback of the group's B, C channels, then for
// each head of the group its x channels and the SSM verify of that head.
template <typename T>
__global__ void __launch_bounds__(kMaxThreads) verify_fused_kernel(const VerifyStepParams p) {
  MK_VERIFY_DYN_SMEM(smem_f4);
  float* smf = reinterpret_cast<float*>(smem_f4);
  int* smi = reinterpret_cast<int*>(smem_f4);
  const int64_t hpg = p.H / p.G;
  const int64_t b = blockIdx.x / p.G, g = blockIdx.x % p.G, u0 = g * hpg;
  const int64_t s = p.slots[b * p.slots_stride];
  if (s < 0 || s >= p.S) {
    zero_y(p, b, u0, hpg);
    return;
  }
  const SsmLayout lay = ssm_layout(p.k, p.P, p.N, p.Pd, p.R, SV<T>::V);
  const int k = static_cast<int>(p.k);
  const int tid = threadIdx.x, nthr = blockDim.x;
  const int64_t N = p.N, P = p.P;
  const int64_t Npad = (N + SV<T>::V - 1) / SV<T>::V * SV<T>::V;
  const int width = static_cast<int>(p.width);
  int* ctx = smi + lay.ctx;
  const int* staps = smi + lay.taps;

  // Every unit of the group holds the same meta; the group's conv channels follow unit u0's.
  setup_ctx(p.meta + s * p.meta_s + u0 * p.meta_h, p.meta_i, p.Kmax, p.R, p.accepted + b * p.accepted_stride,
            p.accepted_is_node, p.parents != nullptr ? p.parents + b * p.par_b : nullptr, p.par_k, k, p.fold_all,
            width, ctx, smi + lay.par, smi + lay.mask, smi + lay.Qpos, smi + lay.taps);
  const unsigned path = static_cast<unsigned>(ctx[kCtxPath]);
  auto conv = [&](int64_t ch, float* dst, int64_t dst_stride) {
    conv_channel(p.conv_window, s * p.win_s, p.win_i, p.win_c, p.xBC, b * p.xBC_b, p.xBC_k, p.xBC_c, p.in_dtype, p.conv_weight, p.cw_c, p.cw_w,
                 p.conv_weight_dtype, p.conv_bias, p.cb_c, p.conv_bias_dtype, ch, width, k, p.Kmax, path, staps,
                 p.conv_silu, [&](int t, float o) { dst[t * dst_stride] = o; });
  };
  {
    float* Bs = smf + lay.Bs;
    float* Cs = smf + lay.Cs;
    const int64_t HP = p.H * P, GN = p.G * N;
    for (int64_t i = tid; i < 2 * N; i += nthr) {
      if (i < N) {
        conv(HP + g * N + i, Bs + i, Npad);
      } else {
        conv(HP + GN + g * N + (i - N), Cs + (i - N), Npad);
      }
    }
    for (int64_t i = tid; i < static_cast<int64_t>(k) * (Npad - N); i += nthr) {
      const int64_t t = i / (Npad - N), n = N + (i - t * (Npad - N));
      Bs[t * Npad + n] = 0.f;
      Cs[t * Npad + n] = 0.f;
    }
  }
  __syncthreads();
  for (int64_t hh = 0; hh < hpg; ++hh) {
    const int64_t u = u0 + hh;
    auto prep = [&]() {
      float* xs = smf + lay.xs;
      for (int64_t i = tid; i < P; i += nthr) conv(u * P + i, xs + i, P);
    };
    ssm_unit<T, false>(p, smf, lay, b, s, u, [] { return 0; }, [](int) {}, prep);
  }
}

}  // namespace verify_kernels
}  // namespace mamba_kernels
