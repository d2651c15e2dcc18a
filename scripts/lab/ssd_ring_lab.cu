// F2 speed lab (GPU machine, no torch): times the SSD forward output stage (ssd_scan_cuda, csrc/ssd/ssd_walk.cu as
// the library builds it) at shape 1 (b4 l4096 h80 p64 n128 g1, chunk 128) on synthetic inputs, CUDA-event median of
// 20 launches after 5 warm-ups. Built once a variant by scripts/lab/run_ssd_ring_lab.sh:
//   -DMK_SSD_RING_LAB=0  the library's kernel; also checks that the ring (MK_SSD_WALK_RING=1) and the one-stage
//                        ping-pong (=0) agree (the same per-item code on both walks: bit for bit but where the
//                        compiler contracted an fma differently), with no NaN left in the outputs
//   -DMK_SSD_RING_LAB=1  the ring's fills copy nothing (the items compute on whatever the stages hold)
//   -DMK_SSD_RING_LAB=2  the ring's outputs are staged, not stored
//   -DMK_SSD_RING_LAB=3  both: the ring's compute and synchronisation alone
//   -DMK_SSD_RING_LAB=4 | N  (N above) with the causal product balanced across a team's warps (3 or 4 earlier
//                        blocks each instead of 0..7)
//   -DMK_SSD_RING_LAB=16, 32  instruction diets of the item (ssd_walk.cuh: 16 silu by tanh.approx, 32 the A
//                        fragments scaled by bf16x2 multiplies); their outputs are checked ring against ping-pong as
//                        variant 0's, and against variant 0's output when LAB_REF names a file (variant 0 writes it,
//                        the others read it; run_ssd_ring_lab.sh sets it)
// Variants 1-3 give wrong outputs by design: they place F2's time between its loads, its stores and its compute where
// the machine has no hardware counters (H200.md: time variants that leave one stage out and take differences).
// Usage: ./ssd_ring_lab [ring: 1 (default) or 0] [tma: 0 (default) or 1: the ring's fills by the copy engine,
// MK_SSD_WALK_RING_TMA]; prints "lab <N> ring <R> tma <T>: F2 <us> us".
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "ssd/ssd_walk.cu"

using namespace mamba_kernels;

#define CHECK(x)                                                                        \
  do {                                                                                  \
    cudaError_t e_ = (x);                                                               \
    if (e_ != cudaSuccess) {                                                            \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                     \
    }                                                                                   \
  } while (0)

// n values of a fixed pseudo-random sequence in [-scale, scale) as bf16 (xorshift; no two buffers alike: seed)
static std::vector<__nv_bfloat16> random_bf16(size_t n, float scale, unsigned seed) {
  std::vector<__nv_bfloat16> v(n);
  unsigned s = seed * 2654435761u + 1u;
  for (size_t i = 0; i < n; ++i) {
    s ^= s << 13; s ^= s >> 17; s ^= s << 5;
    v[i] = __float2bfloat16((float(s & 0xffffff) / float(0x1000000) * 2.f - 1.f) * scale);
  }
  return v;
}

template <typename T>
static T* upload(const std::vector<T>& h) {
  T* d = nullptr;
  CHECK(cudaMalloc(&d, h.size() * sizeof(T)));
  CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

// A device bf16 buffer of n values, on the host (as raw bits).
static std::vector<uint16_t> download(const void* d, size_t n) {
  std::vector<uint16_t> h(n);
  CHECK(cudaMemcpy(h.data(), d, n * 2, cudaMemcpyDeviceToHost));
  return h;
}

// got against ref (bf16 bits): how many differ, how many are NaN in either, and |got - ref| / (1 + |ref|) at its
// largest and as a root mean square.
struct OutputDiff {
  size_t differ = 0, nan = 0;
  double worst = 0.0, rms = 0.0;
};
static OutputDiff compare_bf16(const std::vector<uint16_t>& got, const std::vector<uint16_t>& ref) {
  const auto as_float = [](uint16_t u) {
    const uint32_t w = uint32_t(u) << 16;
    float f;
    std::memcpy(&f, &w, 4);
    return double(f);
  };
  OutputDiff d;
  double sum2 = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = as_float(got[i]), r = as_float(ref[i]);
    d.differ += got[i] != ref[i];
    d.nan += std::isnan(g) || std::isnan(r);
    const double e = std::fabs(g - r) / (1.0 + std::fabs(r));
    d.worst = std::max(d.worst, e);
    sum2 += e * e;
  }
  d.rms = std::sqrt(sum2 / double(got.size()));
  return d;
}

int main(int argc, char** argv) {
  const bool ring = argc < 2 || std::atoi(argv[1]) != 0, tma = argc >= 3 && std::atoi(argv[2]) != 0;
  const int64_t b = 4, l = 4096, h = 80, g = 1, P = 64, N = 128, Q = 128, nk = (l + Q - 1) / Q, slots = b * nk;
  const size_t tok = size_t(b * l);
  auto x = upload(random_bf16(tok * h * P, 1.f, 1)), z = upload(random_bf16(tok * h * P, 2.f, 2));
  auto hin = upload(random_bf16(size_t(slots * h) * P * N, 1.f, 3));
  auto cb = upload(random_bf16(size_t(slots * g) * Q * Q, 0.1f, 4));
  auto rows = upload(random_bf16(tok * g * N, 0.5f, 5));
  std::vector<float> a(static_cast<size_t>(b * h * l)), dtp(a.size()), D(static_cast<size_t>(h));
  for (size_t i = 0; i < a.size(); ++i) {  // chunk-local cumulative decays, per-token dt' in (0, 0.1]
    const int64_t t = int64_t(i % size_t(l)), head = int64_t(i / size_t(l)) % h;
    a[i] = -0.01f * float(1 + head % 7) * float(t % Q + 1);
    dtp[i] = 0.1f * float(1 + (i * 7919) % 10) / 10.f;
  }
  for (int64_t i = 0; i < h; ++i) D[size_t(i)] = 0.5f + 0.01f * float(i);
  const float* a_d = upload(a);
  const float* dtp_d = upload(dtp);
  const float* D_d = upload(D);
  __nv_bfloat16 *out = nullptr, *out_ref = nullptr;
  CHECK(cudaMalloc(&out, tok * h * P * 2));
  CHECK(cudaMalloc(&out_ref, tok * h * P * 2));
  int dev = 0, sms = 0;
  CHECK(cudaGetDevice(&dev));
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));

  SsdScanParams p{};
  p.w.batch = b; p.w.seqlen = l; p.w.nheads = h; p.w.ngroups = g; p.w.n_slots = slots; p.w.chunks_per_row = nk;
  p.w.num_ctas = sms;
  p.w.cb = cb; p.w.rows = rows; p.w.dtp = dtp_d; p.w.a = a_d; p.w.D = D_d; p.w.D_per_channel = false;
  p.w.tab = nullptr;
  p.x = x; p.z = z; p.hin = hin; p.out = out; p.ypre = nullptr;
  const auto run = [&](bool use_ring, void* dst) {
    setenv("MK_SSD_WALK_RING", use_ring ? "1" : "0", 1);
    setenv("MK_SSD_WALK_RING_TMA", tma ? "1" : "0", 1);
    SsdScanParams q = p;
    q.out = dst;
    if (const char* err = ssd_scan_cuda(q, nullptr)) {
      std::fprintf(stderr, "ssd_scan_cuda: %s\n", err);
      std::exit(1);
    }
  };
  if ((MK_SSD_RING_LAB & 7) == 0 && ring) {  // the ring agrees with the ping-pong (same per-item code: the diets too)
    CHECK(cudaMemset(out, 0xff, tok * h * P * 2));  // NaN poison
    CHECK(cudaMemset(out_ref, 0xff, tok * h * P * 2));
    run(true, out);
    run(false, out_ref);
    CHECK(cudaDeviceSynchronize());
    const OutputDiff d = compare_bf16(download(out, tok * h * P), download(out_ref, tok * h * P));
    std::printf("ring vs ping-pong: %zu of %zu outputs differ (worst %.3g relative), %zu NaN\n", d.differ,
                size_t(tok * h * P), d.worst, d.nan);
    if (d.nan != 0 || d.worst > 1e-2) return 1;  // (an fma contracted differently may move a last bit)
  }
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  for (int i = 0; i < 5; ++i) run(ring, out);
  std::vector<float> ms;
  for (int i = 0; i < 20; ++i) {
    CHECK(cudaEventRecord(e0));
    run(ring, out);
    CHECK(cudaEventRecord(e1));
    CHECK(cudaEventSynchronize(e1));
    float t = 0.f;
    CHECK(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(t);
  }
  if (const char* ref_path = std::getenv("LAB_REF"); ref_path != nullptr && ring && tma) {
    // the last timed run's output against variant 0's (written by variant 0, read by the others)
    const std::vector<uint16_t> o = download(out, tok * h * P);
    if (MK_SSD_RING_LAB == 0) {
      if (FILE* f = std::fopen(ref_path, "wb")) {
        std::fwrite(o.data(), 2, o.size(), f);
        std::fclose(f);
      }
    } else if (FILE* f = std::fopen(ref_path, "rb")) {
      std::vector<uint16_t> r(o.size());
      const size_t got = std::fread(r.data(), 2, r.size(), f);
      std::fclose(f);
      if (got == r.size()) {
        const OutputDiff d = compare_bf16(o, r);
        std::printf("lab %d vs lab 0: %zu of %zu outputs differ (worst %.3g, rms %.3g relative), %zu NaN\n",
                    MK_SSD_RING_LAB, d.differ, o.size(), d.worst, d.rms, d.nan);
      }
    }
  }
  std::sort(ms.begin(), ms.end());
  std::printf("lab %d ring %d tma %d: F2 %.1f us\n", MK_SSD_RING_LAB, int(ring), int(tma), 1000.f * ms[ms.size() / 2]);
  return 0;
}
