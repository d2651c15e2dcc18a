// Framework-free speed lab for the conv1d CUDA kernels (no torch). Calls the public entry points of
// csrc/conv1d/conv1d.h exactly as the torch binding does (conv1d_bind_cuda.cpp: fp32 partial buffers sized by
// conv1d_bwd_num_partials; conv1d_bwd_cuda launches the main kernel and the partial reduction), checks every
// output against naive fp32 reference kernels below, and times each case with CUDA events (warm-up, then
// `reps` launches each timed on its own; median). Build (see run_conv1d_lab.sh):
//   nvcc -O3 -std=c++17 --use_fast_math --expt-relaxed-constexpr -arch=sm_90a -I csrc [-D<knob>...] \
//        scripts/lab/conv1d_lab.cu csrc/conv1d/conv1d_launch.cu csrc/conv1d/conv1d_fwd_launch.cu \
//        csrc/conv1d/conv1d_bwd_launch.cu -o lab
//   ./lab <variant-name> [case-substring]        (env LAB_REPS, default 50)
// Prints one JSON line per case; exit status 1 when an output is off by more than 2e-2 of its tensor's scale.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "conv1d/conv1d.h"

using namespace mamba_kernels;
using namespace mamba_kernels::conv1d;
using bf16 = __nv_bfloat16;

#define CK(call)                                                                                   \
  do {                                                                                             \
    cudaError_t e_ = (call);                                                                       \
    if (e_ != cudaSuccess) {                                                                       \
      fprintf(stderr, "CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__);     \
      exit(2);                                                                                     \
    }                                                                                              \
  } while (0)
#define CKS(msg)                                                                                   \
  do {                                                                                             \
    const char* m_ = (msg);                                                                        \
    if (m_) { fprintf(stderr, "conv1d error: %s (%s:%d)\n", m_, __FILE__, __LINE__); exit(2); }    \
  } while (0)

constexpr int kW = 4;
constexpr float kTol = 2e-2f;

// ------------------------------------------------------------------------------------------------ references
struct Shape { int64_t b, d, l; bool cl; };
__host__ __device__ inline void decode(const Shape& s, int64_t i, int64_t& b, int64_t& c, int64_t& t) {
  if (s.cl) { c = i % s.d; t = (i / s.d) % s.l; b = i / (s.d * s.l); }
  else { t = i % s.l; c = (i / s.l) % s.d; b = i / (s.d * s.l); }
}
__host__ __device__ inline int64_t offs(const Shape& s, int64_t b, int64_t c, int64_t t) {
  return s.cl ? (b * s.l + t) * s.d + c : (b * s.d + c) * s.l + t;
}
__device__ inline float xat(const bf16* x, const Shape& s, int64_t b, int64_t c, int64_t t) {
  return t < 0 ? 0.f : __bfloat162float(x[offs(s, b, c, t)]);
}
__device__ inline float pre_at(const bf16* x, const float* w, const float* bias, const Shape& s, int64_t b, int64_t c,
                               int64_t t) {
  float z = bias[c];
  for (int i = 0; i < kW; ++i) z += w[c * kW + i] * xat(x, s, b, c, t - (kW - 1) + i);
  return z;
}
__device__ inline float sig(float z) { return 1.f / (1.f + expf(-z)); }
__device__ inline float dpre_at(const bf16* x, const bf16* dy, const float* w, const float* bias, const Shape& s,
                                int64_t b, int64_t c, int64_t t) {
  if (t >= s.l) return 0.f;
  const float z = pre_at(x, w, bias, s, b, c, t), sg = sig(z);
  return __bfloat162float(dy[offs(s, b, c, t)]) * sg * (1.f + z * (1.f - sg));
}
__global__ void ref_fwd(const bf16* x, const float* w, const float* bias, float* y, Shape s) {
  const int64_t n = s.b * s.d * s.l;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t b, c, t;
    decode(s, i, b, c, t);
    const float z = pre_at(x, w, bias, s, b, c, t);
    y[i] = z * sig(z);
  }
}
__global__ void ref_dx(const bf16* x, const bf16* dy, const float* w, const float* bias, float* dx, Shape s) {
  const int64_t n = s.b * s.d * s.l;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t b, c, t;
    decode(s, i, b, c, t);
    float acc = 0.f;
    for (int k = 0; k < kW; ++k) acc += w[c * kW + k] * dpre_at(x, dy, w, bias, s, b, c, t + (kW - 1) - k);
    dx[i] = acc;
  }
}
// One block per channel: dweight[c, k] = sum_{b,t} dpre[t] x[t - 3 + k], dbias[c] = sum dpre.
__global__ void ref_dw(const bf16* x, const bf16* dy, const float* w, const float* bias, float* dw, float* db, Shape s) {
  __shared__ float red[256][kW + 1];
  const int64_t c = blockIdx.x;
  float acc[kW + 1] = {};
  for (int64_t i = threadIdx.x; i < s.b * s.l; i += blockDim.x) {
    const int64_t b = i / s.l, t = i % s.l;
    const float dp = dpre_at(x, dy, w, bias, s, b, c, t);
    for (int k = 0; k < kW; ++k) acc[k] += dp * xat(x, s, b, c, t - (kW - 1) + k);
    acc[kW] += dp;
  }
  for (int k = 0; k <= kW; ++k) red[threadIdx.x][k] = acc[k];
  __syncthreads();
  if (threadIdx.x <= kW) {
    float sum = 0.f;
    for (int j = 0; j < 256; ++j) sum += red[j][threadIdx.x];
    if (threadIdx.x < kW) dw[c * kW + threadIdx.x] = sum; else db[c] = sum;
  }
}
// Decode update, one token, state (b, d, 3) contiguous: out and the new state from the old state.
__global__ void ref_update(const bf16* x, const bf16* st_old, const float* w, const float* bias, float* out,
                           float* st_new, int64_t B, int64_t D) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= B * D) return;
  const int64_t c = i % D;
  const float* wc = w + c * kW;
  const float s0 = __bfloat162float(st_old[i * 3]), s1 = __bfloat162float(st_old[i * 3 + 1]),
              s2 = __bfloat162float(st_old[i * 3 + 2]), xv = __bfloat162float(x[i]);
  const float z = bias[c] + wc[0] * s0 + wc[1] * s1 + wc[2] * s2 + wc[3] * xv;
  out[i] = z * sig(z);
  st_new[i * 3] = s1; st_new[i * 3 + 1] = s2; st_new[i * 3 + 2] = xv;
}
// max |a - r| and max |r| (non-negative floats compare like their bit patterns).
template <typename T>
__global__ void cmp_kernel(const T* a, const float* r, int64_t n, unsigned* out) {
  float e = 0.f, m = 0.f;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float av = static_cast<float>(a[i]);
    const float d = fabsf(av - r[i]);
    e = fmaxf(e, d != d ? INFINITY : d);  // NaN counts as infinitely wrong
    m = fmaxf(m, fabsf(r[i]));
  }
  atomicMax(out, __float_as_uint(e));
  atomicMax(out + 1, __float_as_uint(m));
}

// ------------------------------------------------------------------------------------------------ harness
static unsigned* g_cmp = nullptr;
template <typename T>
static void compare(const T* a, const float* r, int64_t n, double& err, double& scale) {
  CK(cudaMemset(g_cmp, 0, 2 * sizeof(unsigned)));
  cmp_kernel<T><<<1024, 256>>>(a, r, n, g_cmp);
  CK(cudaGetLastError());
  unsigned h[2];
  CK(cudaMemcpy(h, g_cmp, sizeof h, cudaMemcpyDeviceToHost));
  float e, m;
  memcpy(&e, &h[0], 4);
  memcpy(&m, &h[1], 4);
  err = std::max(err, double(e));
  scale = std::max(scale, double(m));
}
struct Check {  // worst error relative to each tensor's scale
  double max_err = 0.0, rel = 0.0;
  template <typename T> void add(const T* a, const float* r, int64_t n) {
    double e = 0.0, m = 0.0;
    compare(a, r, n, e, m);
    max_err = std::max(max_err, e);
    rel = std::max(rel, std::isfinite(e) ? e / std::max(m, 1e-6) : INFINITY);
  }
  bool ok() const { return rel <= kTol; }
};

static uint64_t g_lcg = 0x9E3779B97F4A7C15ull;
static float lcg_uniform() {  // in (-1, 1), never 0
  g_lcg = g_lcg * 6364136223846793005ull + 1442695040888963407ull;
  const float u = ((g_lcg >> 40) + 0.5f) / float(1ull << 24);
  return 2.f * u - 1.f;
}
static void fill_bf16(bf16* d, int64_t n, float scale) {
  std::vector<bf16> h(n);
  for (int64_t i = 0; i < n; ++i) {
    float v = scale * lcg_uniform();
    if (std::fabs(v) < 1e-3f) v = v < 0 ? -1e-3f : 1e-3f;
    h[i] = __float2bfloat16(v);
  }
  CK(cudaMemcpy(d, h.data(), n * sizeof(bf16), cudaMemcpyHostToDevice));
}
// bf16 values and an fp32 copy of the same (rounded) values.
static void fill_bf16_f32(bf16* d16, float* d32, int64_t n, float scale) {
  std::vector<bf16> h(n);
  std::vector<float> f(n);
  for (int64_t i = 0; i < n; ++i) {
    h[i] = __float2bfloat16(scale * lcg_uniform());
    f[i] = __bfloat162float(h[i]);
  }
  CK(cudaMemcpy(d16, h.data(), n * sizeof(bf16), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(d32, f.data(), n * sizeof(float), cudaMemcpyHostToDevice));
}

static int g_reps = 50;
static cudaEvent_t g_e0, g_e1;
struct Timing { double med, mn, batch; };
template <class F> static Timing time_it(F f, bool batch) {
  for (int i = 0; i < 5; ++i) f();
  CK(cudaDeviceSynchronize());
  std::vector<float> t(g_reps);
  for (int r = 0; r < g_reps; ++r) {
    CK(cudaEventRecord(g_e0));
    f();
    CK(cudaEventRecord(g_e1));
    CK(cudaEventSynchronize(g_e1));
    CK(cudaEventElapsedTime(&t[r], g_e0, g_e1));
  }
  std::sort(t.begin(), t.end());
  Timing res{t[t.size() / 2], t[0], 0.0};
  if (batch) {  // back-to-back launches: throughput, launch gaps hidden
    constexpr int kN = 100;
    CK(cudaEventRecord(g_e0));
    for (int r = 0; r < kN; ++r) f();
    CK(cudaEventRecord(g_e1));
    CK(cudaEventSynchronize(g_e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, g_e0, g_e1));
    res.batch = ms / kN;
  }
  return res;
}

static std::string g_variant;
static bool g_all_ok = true;
static void emit(const std::string& name, const Timing& tm, double bytes, double copy_gbps, const Check* ck,
                 double target_ms) {
  const double gbps = bytes / (tm.med * 1e6);
  printf("{\"variant\": \"%s\", \"case\": \"%s\", \"ms\": %.5f, \"ms_min\": %.5f", g_variant.c_str(), name.c_str(),
         tm.med, tm.mn);
  if (tm.batch > 0) printf(", \"ms_batch\": %.5f", tm.batch);
  printf(", \"gbps\": %.1f, \"frac_copy\": %.4f", gbps, copy_gbps > 0 ? gbps / copy_gbps : 0.0);
  if (ck) printf(", \"max_err\": %.4g, \"rel_err\": %.4g, \"ok\": %s", ck->max_err, ck->rel, ck->ok() ? "true" : "false");
  if (target_ms > 0) printf(", \"target_ms\": %.4f, \"meets\": %s", target_ms, tm.med <= target_ms ? "true" : "false");
  printf("}\n");
  fflush(stdout);
  if (ck && !ck->ok()) g_all_ok = false;
}

// Kernels get bf16 weight / bias (w16, b16; their gradients dw, db bf16 too), as the benchmarks and bf16 models
// pass them (the kernels' speed depends on it: see bench/NOTES.md); the references read fp32 copies (w, bias) of the
// same bf16-rounded values.
struct Bufs {
  bf16 *x, *dy, *y, *dx, *w16, *b16, *dw, *db;
  float *w, *bias, *dwp, *dbp, *ref_a, *ref_w, *ref_b;
  int64_t nmax, npart_max;
};

static Conv1dParams make_params(const Bufs& B, const Shape& s) {
  Conv1dParams p;
  p.batch = s.b; p.dim = s.d; p.seqlen = s.l; p.width = kW; p.nseq = s.b; p.silu = true;
  p.x_dtype = DType::kBFloat16; p.w_dtype = DType::kBFloat16; p.b_dtype = DType::kBFloat16;
  const int64_t sb = s.d * s.l, sc = s.cl ? 1 : s.l, sl = s.cl ? s.d : 1;
  p.x = B.x; p.y = B.y; p.dy = B.dy; p.dx = B.dx;
  p.x_batch_stride = p.y_batch_stride = p.dy_batch_stride = p.dx_batch_stride = sb;
  p.x_c_stride = p.y_c_stride = p.dy_c_stride = p.dx_c_stride = sc;
  p.x_l_stride = p.y_l_stride = p.dy_l_stride = p.dx_l_stride = sl;
  p.weight = B.w16; p.w_c_stride = kW; p.w_w_stride = 1;
  p.bias = B.b16; p.bias_stride = 1;
  p.dweight = B.dw; p.dbias = B.db;
  p.dweight_partial = B.dwp; p.dbias_partial = B.dbp;
  return p;
}

static bool want(const char* filter, const std::string& name) { return !filter || name.find(filter) != std::string::npos; }

static void run_shape(Bufs& B, int64_t b, int64_t d, int64_t l, double t_fwd, double t_fwdbwd, const char* filter) {
  const int64_t n = b * d * l;
  const double xbytes = double(n) * sizeof(bf16);
  const std::string tag = "_b" + std::to_string(b) + "_d" + std::to_string(d) + "_l" + std::to_string(l);
  // Copy ceiling: device-to-device copy of x's bytes (read + write = 2 x bytes).
  const Timing cp = time_it([&] { CK(cudaMemcpyAsync(B.y, B.x, size_t(xbytes), cudaMemcpyDeviceToDevice)); }, false);
  const double copy_gbps = 2 * xbytes / (cp.med * 1e6);
  if (want(filter, "copy" + tag)) emit("copy" + tag, cp, 2 * xbytes, copy_gbps, nullptr, 0);
  for (int cl = 0; cl < 2; ++cl) {
    const Shape s{b, d, l, cl != 0};
    const std::string lay = cl ? "cl" : "cf";
    Conv1dParams p = make_params(B, s);
    const int64_t np = conv1d_bwd_num_partials(p, s.cl);
    if (np > B.npart_max) { fprintf(stderr, "partials %lld > buffer\n", (long long)np); exit(2); }
    auto fwd = [&] { CKS(conv1d_fwd_cuda(p, s.cl, nullptr)); };
    auto bwd = [&] { CKS(conv1d_bwd_cuda(p, s.cl, nullptr)); };
    const int grid = 132 * 16;
    if (want(filter, "fwd_" + lay + tag)) {
      CK(cudaMemset(B.y, 0xff, n * sizeof(bf16)));  // poison (NaN)
      fwd();
      ref_fwd<<<grid, 256>>>(B.x, B.w, B.bias, B.ref_a, s);
      CK(cudaDeviceSynchronize());
      Check ck;
      ck.add(B.y, B.ref_a, n);
      emit("fwd_" + lay + tag, time_it(fwd, false), 2 * xbytes, copy_gbps, &ck, t_fwd);
    }
    if (want(filter, "bwd_" + lay + tag)) {
      CK(cudaMemset(B.dx, 0xff, n * sizeof(bf16)));
      CK(cudaMemset(B.dw, 0xff, d * kW * sizeof(bf16)));
      CK(cudaMemset(B.db, 0xff, d * sizeof(bf16)));
      bwd();
      ref_dx<<<grid, 256>>>(B.x, B.dy, B.w, B.bias, B.ref_a, s);
      ref_dw<<<static_cast<unsigned>(d), 256>>>(B.x, B.dy, B.w, B.bias, B.ref_w, B.ref_b, s);
      CK(cudaDeviceSynchronize());
      Check ck;
      ck.add(B.dx, B.ref_a, n);
      ck.add(B.dw, B.ref_w, d * kW);
      ck.add(B.db, B.ref_b, d);
      emit("bwd_" + lay + tag, time_it(bwd, false), 3 * xbytes, copy_gbps, &ck, 0);
    }
    if (want(filter, "fwdbwd_" + lay + tag))
      emit("fwdbwd_" + lay + tag, time_it([&] { fwd(); bwd(); }, false), 5 * xbytes, copy_gbps, nullptr, t_fwdbwd);
  }
}

static void run_update(Bufs& B, int64_t batch, int64_t d, double target, const char* filter) {
  const std::string name = "update_b" + std::to_string(batch) + "_d" + std::to_string(d);
  if (!want(filter, name)) return;
  const int64_t n = batch * d;
  bf16 *x, *st, *st0, *out;
  CK(cudaMalloc(&x, n * sizeof(bf16)));
  CK(cudaMalloc(&out, n * sizeof(bf16)));
  CK(cudaMalloc(&st, 3 * n * sizeof(bf16)));
  CK(cudaMalloc(&st0, 3 * n * sizeof(bf16)));
  fill_bf16(x, n, 1.f);
  fill_bf16(st0, 3 * n, 1.f);
  CK(cudaMemcpy(st, st0, 3 * n * sizeof(bf16), cudaMemcpyDeviceToDevice));
  Conv1dUpdateParams p;
  p.batch = batch; p.dim = d; p.k = 1; p.width = kW; p.state_len = 3; p.nslots = batch; p.silu = true;
  p.x_dtype = DType::kBFloat16; p.w_dtype = DType::kBFloat16; p.b_dtype = DType::kBFloat16;
  p.x = x; p.weight = B.w16; p.bias = B.b16; p.conv_state = st; p.out = out;
  p.x_batch_stride = d; p.x_c_stride = 1; p.x_l_stride = 1;
  p.out_batch_stride = d; p.out_c_stride = 1; p.out_l_stride = 1;
  p.state_n_stride = 3 * d; p.state_c_stride = 3; p.state_l_stride = 1;
  p.w_c_stride = kW; p.w_w_stride = 1; p.bias_stride = 1;
  CK(cudaMemset(out, 0xff, n * sizeof(bf16)));
  CKS(conv1d_update_cuda(p, nullptr));
  float* ref_st = B.ref_w + d * kW + 16;  // scratch after the dweight reference (sized in main)
  ref_update<<<static_cast<unsigned>((n + 255) / 256), 256>>>(x, st0, B.w, B.bias, B.ref_a, ref_st, batch, d);
  CK(cudaDeviceSynchronize());
  Check ck;
  ck.add(out, B.ref_a, n);
  ck.add(st, ref_st, 3 * n);
  const double bytes = double(n) * sizeof(bf16) * (1 + 1 + 3 + 3);
  emit(name, time_it([&] { CKS(conv1d_update_cuda(p, nullptr)); }, true), bytes, 0.0, &ck, target);
  CK(cudaFree(x)); CK(cudaFree(out)); CK(cudaFree(st)); CK(cudaFree(st0));
}

int main(int argc, char** argv) {
  g_variant = argc > 1 ? argv[1] : "default";
  const char* filter = argc > 2 ? argv[2] : nullptr;
  if (const char* r = getenv("LAB_REPS")) g_reps = std::max(3, atoi(r));
  CK(cudaSetDevice(0));
  CK(cudaEventCreate(&g_e0));
  CK(cudaEventCreate(&g_e1));
  CK(cudaMalloc(&g_cmp, 2 * sizeof(unsigned)));
  Bufs B{};
  B.nmax = int64_t(4) * 6144 * 4096;
  const int64_t dmax = 6144;
  B.npart_max = 1024;  // rows of (dim, width) fp32 partials: far above what any case here needs
  CK(cudaMalloc(&B.x, B.nmax * sizeof(bf16)));
  CK(cudaMalloc(&B.dy, B.nmax * sizeof(bf16)));
  CK(cudaMalloc(&B.y, B.nmax * sizeof(bf16)));
  CK(cudaMalloc(&B.dx, B.nmax * sizeof(bf16)));
  CK(cudaMalloc(&B.ref_a, B.nmax * sizeof(float)));
  CK(cudaMalloc(&B.w, dmax * kW * sizeof(float)));
  CK(cudaMalloc(&B.bias, dmax * sizeof(float)));
  CK(cudaMalloc(&B.w16, dmax * kW * sizeof(bf16)));
  CK(cudaMalloc(&B.b16, dmax * sizeof(bf16)));
  CK(cudaMalloc(&B.dw, dmax * kW * sizeof(bf16)));
  CK(cudaMalloc(&B.db, dmax * sizeof(bf16)));
  CK(cudaMalloc(&B.ref_w, (dmax * kW + 16 + 3 * 64 * dmax) * sizeof(float)));  // + update state reference
  CK(cudaMalloc(&B.ref_b, dmax * sizeof(float)));
  CK(cudaMalloc(&B.dwp, B.npart_max * dmax * kW * sizeof(float)));
  CK(cudaMalloc(&B.dbp, B.npart_max * dmax * sizeof(float)));
  fill_bf16(B.x, B.nmax, 1.f);
  fill_bf16(B.dy, B.nmax, 1.f);
  fill_bf16_f32(B.w16, B.w, dmax * kW, 0.5f);
  fill_bf16_f32(B.b16, B.bias, dmax, 0.5f);

  run_shape(B, 4, 6144, 4096, 0.107, 0.30, filter);
  run_shape(B, 8, 4096, 2048, 0.077, 0.27, filter);
  run_update(B, 1, 6144, 0.0, filter);
  run_update(B, 64, 6144, 0.010, filter);
  CK(cudaDeviceSynchronize());
  return g_all_ok ? 0 : 1;
}
