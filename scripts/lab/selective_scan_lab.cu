// Framework-free speed lab of the Mamba-1 selective scan CUDA kernels (csrc/selective_scan), no torch.
// Calls the launchers exactly as csrc/selective_scan/selective_scan_bind_cuda.cpp does (forward: out,
// last_state, and the chunk states (every 32 or 256 steps) when training; backward: zeroed fp32 dA/dB/dC/dD/ddelta_bias,
// then the kernel), for bf16 u/delta/z/dout and variable B/C (b, 1, n, l), fp32 A, D, delta_bias, softplus.
// Knob macros (MK_SS_*, see selective_scan_fwd_kernel.cuh) select the variant at compile time.
//   nvcc -O3 -std=c++17 -arch=sm_90a --use_fast_math --expt-relaxed-constexpr -I csrc [-DMK_SS_...] \
//        scripts/lab/selective_scan_lab.cu -o lab && ./lab <variant-name> [reps]
// Per case: times forward (inference: no states), forward with states (training) and backward (memsets +
// kernel), each the median of `reps` (default 30) separately event-timed launches after warm-up; checks the
// forward's out and last state and the backward's gradients against naive fp32 reference kernels below
// (one thread per (b, d, n), sequential in time). Prints one JSON line per case; exit 1 if any check fails
// (tolerances: bf16 outputs 2e-2, fp32 last state 1e-3, gradients 2e-2, all relative to max |reference|).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "selective_scan/selective_scan_bwd_kernel.cuh"

using namespace mamba_kernels;
using bf16 = __nv_bfloat16;

#define CK(x)                                                                                    \
  do {                                                                                           \
    cudaError_t e_ = (x);                                                                        \
    if (e_ != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorString(e_), __FILE__, __LINE__, #x); \
      std::exit(2);                                                                              \
    }                                                                                            \
  } while (0)

#ifndef MK_SS_BWD_NO_DBC_FLUSH
#define MK_SS_BWD_NO_DBC_FLUSH 0
#endif

namespace {

// ---------------------------------------------------------------- naive fp32 references
__device__ float ref_softplus(float x) { return x > 20.f ? x : log1pf(expf(x)); }

// Forward: thread per (b, c, s); h saved for the backward reference (H: (b, d, n, l)); y (b, d, l) fp32
// accumulated over n with atomics; last (b, d, n).
__global__ void ref_fwd(const bf16* u, const bf16* dl, const float* A, const bf16* B, const bf16* C,
                        const float* bias, int64_t bsz, int64_t d, int64_t n, int64_t L, float* H, float* y,
                        float* last) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= bsz * d * n) return;
  const int64_t s = idx % n, c = (idx / n) % d, b = idx / (n * d);
  const bf16* ur = u + (b * d + c) * L;
  const bf16* dr = dl + (b * d + c) * L;
  const bf16* Br = B + (b * n + s) * L;  // g = 1
  const bf16* Cr = C + (b * n + s) * L;
  const float Av = A[c * n + s], bi = bias[c];
  float* Hr = H + idx * L;
  float h = 0.f;
  for (int64_t t = 0; t < L; ++t) {
    const float dt = ref_softplus(__bfloat162float(dr[t]) + bi);
    h = expf(dt * Av) * h + dt * __bfloat162float(ur[t]) * __bfloat162float(Br[t]);
    Hr[t] = h;
    atomicAdd(y + (b * d + c) * L + t, __bfloat162float(Cr[t]) * h);
  }
  last[idx] = h;
}

__device__ float sigm(float x) { return 1.f / (1.f + expf(-x)); }

// out = (y + D u) silu(z); dy = dout silu(z); dz = dout (y + D u) silu'(z); du_acc = D dy (the rest added by
// ref_bwd); dD, per (b, c) summed by atomics.
__global__ void ref_pointwise(const bf16* u, const bf16* z, const bf16* dout, const float* D, int64_t bsz,
                              int64_t d, int64_t L, const float* y, float* out, float* dy, float* dz,
                              float* du, float* dD) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= bsz * d * L) return;
  const int64_t c = (i / L) % d;
  const float uu = __bfloat162float(u[i]), zz = __bfloat162float(z[i]), go = __bfloat162float(dout[i]);
  const float sz = sigm(zz), pre = y[i] + D[c] * uu;
  out[i] = pre * zz * sz;
  dy[i] = go * zz * sz;
  dz[i] = go * pre * sz * (1.f + zz * (1.f - sz));
  du[i] = D[c] * dy[i];
  atomicAdd(dD + c, dy[i] * uu);
}

// Backward: thread per (b, c, s), reverse time. g = dL/dh_t; dB, dC (b, 1, n, l) summed over channels with
// atomics; du, ddt (pre-softplus-derivative) accumulated over n.
__global__ void ref_bwd(const bf16* u, const bf16* dl, const float* A, const bf16* B, const bf16* C,
                        const float* bias, int64_t bsz, int64_t d, int64_t n, int64_t L, const float* H,
                        const float* dy, float* du, float* ddt, float* dA, float* dB, float* dC) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= bsz * d * n) return;
  const int64_t s = idx % n, c = (idx / n) % d, b = idx / (n * d);
  const int64_t row = (b * d + c) * L, brow = (b * n + s) * L;
  const float Av = A[c * n + s], bi = bias[c];
  const float* Hr = H + idx * L;
  float g = 0.f, dAacc = 0.f;
  for (int64_t t = L - 1; t >= 0; --t) {
    const float dt = ref_softplus(__bfloat162float(dl[row + t]) + bi);
    const float uu = __bfloat162float(u[row + t]), Bt = __bfloat162float(B[brow + t]);
    const float Ct = __bfloat162float(C[brow + t]);
    const float a = expf(dt * Av), hprev = t > 0 ? Hr[t - 1] : 0.f;
    g += Ct * dy[row + t];
    atomicAdd(dC + brow + t, dy[row + t] * Hr[t]);
    atomicAdd(dB + brow + t, g * dt * uu);
    atomicAdd(du + row + t, g * dt * Bt);
    atomicAdd(ddt + row + t, g * (uu * Bt + hprev * a * Av));
    dAacc += g * hprev * a * dt;
    g *= a;
  }
  atomicAdd(dA + c * n + s, dAacc);  // summed over the batch (a plain store raced: dA failed its check at b > 1)
}

// ddelta = ddt softplus'(delta + bias); dbias per channel.
__global__ void ref_ddelta(const bf16* dl, const float* bias, int64_t bsz, int64_t d, int64_t L, float* ddt,
                           float* dbias) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= bsz * d * L) return;
  const int64_t c = (i / L) % d;
  ddt[i] *= sigm(__bfloat162float(dl[i]) + bias[c]);
  atomicAdd(dbias + c, ddt[i]);
}

// ---------------------------------------------------------------- host helpers
struct Lcg {
  uint64_t s;
  explicit Lcg(uint64_t seed) : s(seed * 6364136223846793005ull + 1442695040888963407ull) {}
  float uni() {  // [0, 1)
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return float((s >> 40) & 0xffffff) / 16777216.f;
  }
  float uni(float lo, float hi) { return lo + (hi - lo) * uni(); }
  float normal() { return (uni() + uni() - 1.f) * 2.4494897f; }  // triangular, unit variance, non-zero a.s.
};

template <typename T>
T* dalloc(size_t n) {
  T* p = nullptr;
  CK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)));
  return p;
}
template <typename T>
void upload(T* dst, const std::vector<T>& src) {
  CK(cudaMemcpy(dst, src.data(), src.size() * sizeof(T), cudaMemcpyHostToDevice));
}
template <typename T>
std::vector<float> download(const T* src, size_t n) {
  std::vector<T> h(n);
  CK(cudaMemcpy(h.data(), src, n * sizeof(T), cudaMemcpyDeviceToHost));
  std::vector<float> o(n);
  for (size_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<T, bf16>) o[i] = __bfloat162float(h[i]);
    else o[i] = h[i];
  }
  return o;
}
std::vector<bf16> rand_bf16(Lcg& r, size_t n, float lo, float hi, bool normal) {
  std::vector<bf16> v(n);
  for (auto& x : v) x = __float2bfloat16_rn(normal ? r.normal() : r.uni(lo, hi));
  return v;
}

// max |a - e| / max |e| (NaN anywhere: inf)
double rel_err(const std::vector<float>& a, const std::vector<float>& e) {
  double mx = 0, sc = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    mx = std::max(mx, double(std::fabs(a[i] - e[i])));
    sc = std::max(sc, double(std::fabs(e[i])));
  }
  return mx / std::max(sc, 1e-30);
}

template <typename F>
float median_ms(F&& f, int reps) {
  for (int i = 0; i < 3; ++i) f();  // warm-up
  CK(cudaDeviceSynchronize());
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  std::vector<float> t(static_cast<size_t>(reps));
  for (int i = 0; i < reps; ++i) {
    CK(cudaEventRecord(e0));
    f();
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    CK(cudaEventElapsedTime(&t[size_t(i)], e0, e1));
  }
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Case {
  const char* name;
  int64_t b, d, n, l;
};

bool run_case(const char* variant, const Case& cs, int reps) {
  const int64_t b = cs.b, d = cs.d, n = cs.n, L = cs.l, bdl = b * d * L, bnl = b * n * L;
  // the chunk the binding's caller asks for (selective_scan_cuda_ckpt_chunk): 32 where the state-lane backward serves
  const int ckpt = ss::bwd_lane_shape(n, true, true) ? ss::BwdLane::kTT : 256;
  int ck_log2 = 0;
  while ((1 << ck_log2) < ckpt) ++ck_log2;
  const int64_t nck = (L + ckpt - 1) / ckpt;
  Lcg r(uint64_t(b * 1000003 + d * 101 + L));
  auto hu = rand_bf16(r, size_t(bdl), 0, 0, true), hz = rand_bf16(r, size_t(bdl), 0, 0, true);
  auto hdl = rand_bf16(r, size_t(bdl), -3.5f, -1.5f, false), hdo = rand_bf16(r, size_t(bdl), 0, 0, true);
  auto hB = rand_bf16(r, size_t(bnl), 0, 0, true), hC = rand_bf16(r, size_t(bnl), 0, 0, true);
  std::vector<float> hA(size_t(d * n)), hD(static_cast<size_t>(d)), hbias(static_cast<size_t>(d));
  for (auto& x : hA) x = -std::exp(r.uni(0.f, 2.f));
  for (auto& x : hD) x = r.uni(0.5f, 1.5f);
  for (auto& x : hbias) x = r.uni(-0.5f, 0.5f);

  bf16 *u = dalloc<bf16>(size_t(bdl)), *z = dalloc<bf16>(size_t(bdl)), *dl = dalloc<bf16>(size_t(bdl));
  bf16 *dout = dalloc<bf16>(size_t(bdl)), *B = dalloc<bf16>(size_t(bnl)), *C = dalloc<bf16>(size_t(bnl));
  float *A = dalloc<float>(size_t(d * n)), *D = dalloc<float>(size_t(d)), *bias = dalloc<float>(size_t(d));
  upload(u, hu); upload(z, hz); upload(dl, hdl); upload(dout, hdo); upload(B, hB); upload(C, hC);
  upload(A, hA); upload(D, hD); upload(bias, hbias);
  bf16* out = dalloc<bf16>(size_t(bdl));
  float *last = dalloc<float>(size_t(b * d * n)), *states = dalloc<float>(size_t(b * d * nck * n));
  bf16 *du = dalloc<bf16>(size_t(bdl)), *ddelta = dalloc<bf16>(size_t(bdl)), *dz = dalloc<bf16>(size_t(bdl));
  float *dA = dalloc<float>(size_t(d * n)), *dB = dalloc<float>(size_t(bnl)), *dC = dalloc<float>(size_t(bnl));
  float *dD = dalloc<float>(size_t(d)), *dbias = dalloc<float>(size_t(d));

  // as make_params / the fwd and bwd ops of selective_scan_bind_cuda.cpp
  SelectiveScanParams p;
  p.batch = b; p.dim = d; p.seqlen = L; p.dstate = n; p.n_groups = 1;
  p.is_variable_B = p.is_variable_C = true; p.delta_softplus = true; p.in_dtype = DType::kBFloat16;
  p.u = u; p.u_batch_stride = d * L; p.u_d_stride = L;
  p.delta = dl; p.delta_batch_stride = d * L; p.delta_d_stride = L;
  p.z = z; p.z_batch_stride = d * L; p.z_d_stride = L;
  p.A = A; p.A_d_stride = n;
  p.B = B; p.B_batch_stride = n * L; p.B_group_stride = n * L; p.B_dstate_stride = L;
  p.C = C; p.C_batch_stride = n * L; p.C_group_stride = n * L; p.C_dstate_stride = L;
  p.D = D; p.delta_bias = bias;
  p.out = out; p.out_batch_stride = d * L; p.out_d_stride = L;
  p.last_state = last;
  SelectiveScanParams pt = p;  // training forward: saves the chunk states
  pt.states = states; pt.states_n_chunks = nck; pt.ckpt_log2 = ck_log2;
  SelectiveScanParams pb = pt;
  pb.out = nullptr; pb.last_state = nullptr;
  pb.dout = dout; pb.dout_batch_stride = d * L; pb.dout_d_stride = L;
  pb.du = du; pb.ddelta = ddelta; pb.dz = dz; pb.dA = dA; pb.dB = dB; pb.dC = dC; pb.dD = dD;
  pb.ddelta_bias = dbias;

  bool launch_ok = true;
  auto fwd = [&](const SelectiveScanParams& q) {
    const cudaError_t e = ss::launch_selective_scan_fwd<bf16>(q, nullptr);
    if (e != cudaSuccess) { std::fprintf(stderr, "fwd launch: %s\n", cudaGetErrorString(e)); launch_ok = false; }
  };
  auto bwd = [&] {
    CK(cudaMemsetAsync(dA, 0, size_t(d * n) * 4));
    CK(cudaMemsetAsync(dB, 0, size_t(bnl) * 4));
    CK(cudaMemsetAsync(dC, 0, size_t(bnl) * 4));
    CK(cudaMemsetAsync(dD, 0, size_t(d) * 4));
    CK(cudaMemsetAsync(dbias, 0, size_t(d) * 4));
    if (const char* e = ss::launch_selective_scan_bwd<bf16>(pb, nullptr)) {
      std::fprintf(stderr, "bwd launch: %s\n", e);
      launch_ok = false;
    }
  };
  const float fwd_ms = median_ms([&] { fwd(p); }, reps);
  const float fwd_st_ms = median_ms([&] { fwd(pt); }, reps);
  const float bwd_ms = median_ms(bwd, reps);
  CK(cudaDeviceSynchronize());
  // results of the last runs: fwd(pt) then bwd
  fwd(pt);
  bwd();
  CK(cudaDeviceSynchronize());
  const auto o_out = download(out, size_t(bdl)), o_last = download(last, size_t(b * d * n));
  const auto o_du = download(du, size_t(bdl)), o_ddelta = download(ddelta, size_t(bdl));
  const auto o_dz = download(dz, size_t(bdl)), o_dA = download(dA, size_t(d * n));
  const auto o_dB = download(dB, size_t(bnl)), o_dC = download(dC, size_t(bnl));
  const auto o_dD = download(dD, size_t(d)), o_dbias = download(dbias, size_t(d));

  // naive references (fp32)
  float* H = dalloc<float>(size_t(b * d * n * L));
  float *y = dalloc<float>(size_t(bdl)), *rout = dalloc<float>(size_t(bdl)), *rlast = dalloc<float>(size_t(b * d * n));
  float *rdy = dalloc<float>(size_t(bdl)), *rdz = dalloc<float>(size_t(bdl)), *rdu = dalloc<float>(size_t(bdl));
  float *rddt = dalloc<float>(size_t(bdl)), *rdA = dalloc<float>(size_t(d * n)), *rdD = dalloc<float>(size_t(d));
  float *rdB = dalloc<float>(size_t(bnl)), *rdC = dalloc<float>(size_t(bnl)), *rdbias = dalloc<float>(size_t(d));
  CK(cudaMemset(y, 0, size_t(bdl) * 4)); CK(cudaMemset(rddt, 0, size_t(bdl) * 4));
  CK(cudaMemset(rdD, 0, size_t(d) * 4)); CK(cudaMemset(rdbias, 0, size_t(d) * 4)); CK(cudaMemset(rdA, 0, size_t(d * n) * 4));
  CK(cudaMemset(rdB, 0, size_t(bnl) * 4)); CK(cudaMemset(rdC, 0, size_t(bnl) * 4));
  const int64_t nt = b * d * n;
  ref_fwd<<<unsigned((nt + 127) / 128), 128>>>(u, dl, A, B, C, bias, b, d, n, L, H, y, rlast);
  ref_pointwise<<<unsigned((bdl + 255) / 256), 256>>>(u, z, dout, D, b, d, L, y, rout, rdy, rdz, rdu, rdD);
  ref_bwd<<<unsigned((nt + 127) / 128), 128>>>(u, dl, A, B, C, bias, b, d, n, L, H, rdy, rdu, rddt, rdA, rdB, rdC);
  ref_ddelta<<<unsigned((bdl + 255) / 256), 256>>>(dl, bias, b, d, L, rddt, rdbias);
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
  const double e_out = rel_err(o_out, download(rout, size_t(bdl)));
  const double e_last = rel_err(o_last, download(rlast, size_t(b * d * n)));
  const double e_du = rel_err(o_du, download(rdu, size_t(bdl)));
  const double e_ddelta = rel_err(o_ddelta, download(rddt, size_t(bdl)));
  const double e_dz = rel_err(o_dz, download(rdz, size_t(bdl)));
  const double e_dA = rel_err(o_dA, download(rdA, size_t(d * n)));
  const double e_dB = MK_SS_BWD_NO_DBC_FLUSH ? 0.0 : rel_err(o_dB, download(rdB, size_t(bnl)));
  const double e_dC = MK_SS_BWD_NO_DBC_FLUSH ? 0.0 : rel_err(o_dC, download(rdC, size_t(bnl)));
  const double e_dD = rel_err(o_dD, download(rdD, size_t(d)));
  const double e_dbias = rel_err(o_dbias, download(rdbias, size_t(d)));
  const double e_bwd = std::max({e_du, e_ddelta, e_dz, e_dA, e_dB, e_dC, e_dD, e_dbias});
  const bool ok = launch_ok && e_out <= 2e-2 && e_last <= 1e-3 && e_bwd <= 2e-2;
  std::printf("{\"variant\": \"%s\", \"case\": \"%s\", \"fwd_ms\": %.4f, \"fwd_states_ms\": %.4f, \"bwd_ms\": %.4f, "
              "\"fwdbwd_ms\": %.4f, \"max_err\": %.3e, \"last_err\": %.3e, \"bwd_err\": %.3e, "
              "\"errs\": {\"du\": %.2e, \"ddelta\": %.2e, \"dz\": %.2e, \"dA\": %.2e, \"dB\": %.2e, \"dC\": %.2e, "
              "\"dD\": %.2e, \"dbias\": %.2e}, \"diag_no_dbc\": %s, \"reps\": %d, \"ok\": %s}\n",
              variant, cs.name, fwd_ms, fwd_st_ms, bwd_ms, fwd_st_ms + bwd_ms, e_out, e_last, e_bwd, e_du,
              e_ddelta, e_dz, e_dA, e_dB, e_dC, e_dD, e_dbias, MK_SS_BWD_NO_DBC_FLUSH ? "true" : "false", reps,
              ok ? "true" : "false");
  std::fflush(stdout);
  for (void* q : {(void*)u, (void*)z, (void*)dl, (void*)dout, (void*)B, (void*)C, (void*)A, (void*)D,
                  (void*)bias, (void*)out, (void*)last, (void*)states, (void*)du, (void*)ddelta, (void*)dz,
                  (void*)dA, (void*)dB, (void*)dC, (void*)dD, (void*)dbias, (void*)H, (void*)y, (void*)rout,
                  (void*)rlast, (void*)rdy, (void*)rdz, (void*)rdu, (void*)rddt, (void*)rdA, (void*)rdD,
                  (void*)rdB, (void*)rdC, (void*)rdbias})
    CK(cudaFree(q));
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  const char* variant = argc > 1 ? argv[1] : "default";
  const int reps = argc > 2 ? std::max(20, std::atoi(argv[2])) : 30;
  const Case cases[] = {{"b2-d4096-n16-l4096", 2, 4096, 16, 4096},
                        {"b8-d2048-n16-l2048", 8, 2048, 16, 2048},
                        {"b1-d8192-n16-l8192", 1, 8192, 16, 8192}};
  const char* only = std::getenv("SS_LAB_CASE");  // optional: run only the case with this name
  bool all = true;
  for (const Case& cs : cases) {
    if (only && *only && std::strcmp(only, cs.name) != 0) continue;
    all = run_case(variant, cs, reps) && all;
  }
  return all ? 0 : 1;
}
