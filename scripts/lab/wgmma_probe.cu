// Lab probe (sm_90a, standalone, no torch): which shared-memory layouts and matrix descriptors make
// wgmma.mma_async m64n64k16 (bf16 in, fp32 out, A from registers) compute D = A B for the head-walk stages' tiles, before
// the F2 stage (csrc/ssd/ssd_scan_kernel.cuh) is moved onto wgmma. The CPU emulation has no wgmma, so the descriptor
// encoding (PTX ISA "matrix descriptor": start address >> 4 in bits 0-13, leading-dimension byte offset >> 4 in
// 16-29, stride-dimension byte offset >> 4 in 32-45, swizzle mode in 62-63: 0 none, 1 128 B, 2 64 B, 3 32 B) and the
// register layouts are checked here, once, on the GPU.
//
// B is a (K = 128 tokens) x (N = 64 p) bf16 tile like F2's x tile: a product over the chunk's tokens, 8 k16 steps.
// Layouts written into shared memory (element by element; a kernel would write 16-byte chunks by cp.async):
//   sw128:  MN-major (a token row of 64 p = 128 bytes), 16-byte chunk c of row k at chunk c ^ (k & 7) (128-byte
//           swizzle, the layout TMA's SWIZZLE_128B writes): trans-b 0 / 1, swizzle 1; a k16 step starts 2048 bytes on.
//           H200, 2026-12-01 (session 22): LBO 0, SBO 1024, trans-b 1 is exact (max err 4.8e-7), which also confirms
//           the A-register and accumulator orders above.
//   ksw128: K-major with the 128-byte swizzle (the layout of C h_in^T's B = h_in (p, n) rows: K = n contiguous), two
//           64-wide K blocks of 64 rows x 128 bytes: element (k, n) at (k / 64) 8192 + n 128 + (((k % 64) / 8) ^ (n & 7))
//           16 + (k % 8) 2; a k16 step starts 32 bytes on within a K block; trans-b 0.
//   kmaj:   K-major without swizzle (8 x 8 core matrices of 128 contiguous bytes: core (n / 8, k / 8) at (n / 8) 2048 +
//           (k / 8) 128); a k16 step starts 256 bytes on; trans-b 0, swizzle 0.
// The tile sits at the start of a 64 KB buffer, so that a wrong offset reads garbage instead of faulting.
// A (64 x 128) comes from registers in mma.sync's m16n8k16 A-fragment order, warp w of the warpgroup holding rows
// 16 w .. 16 w + 15; D is read back in mma.sync's accumulator order per n8 tile (d[4 j + e]: row 16 w + g + 8 (e / 2),
// column 8 j + 2 q + e % 2). For each layout the probe tries a grid of (LBO, SBO) byte offsets and prints each one's
// maximum error against a host fp32 product; the usable encodings print "ok".
//
//   nvcc -std=c++17 -O2 -gencode=arch=compute_90a,code=sm_90a -o /tmp/wgmma_probe scripts/lab/wgmma_probe.cu
//   /tmp/wgmma_probe [sw128|ksw128|kmaj]
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

constexpr int kM = 64, kN = 64, kK = 128;

__device__ __forceinline__ uint64_t make_desc(const void* smem, uint32_t lbo, uint32_t sbo, uint32_t swizzle) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  uint64_t d = 0;
  d |= uint64_t((addr >> 4) & 0x3fff);
  d |= uint64_t((lbo >> 4) & 0x3fff) << 16;
  d |= uint64_t((sbo >> 4) & 0x3fff) << 32;
  d |= uint64_t(swizzle & 3) << 62;
  return d;
}

// d (32 fp32) += A (4 bf16x2 registers) B (descriptor); trans-b as a template immediate.
template <int kTransB>
__device__ __forceinline__ void wgmma_m64n64k16(float (&d)[32], const uint32_t (&a)[4], uint64_t bdesc) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "{%32, %33, %34, %35}, %36, p, 1, 1, %37;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),
        "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
        "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(bdesc), "n"(kTransB));
#else
  (void)d, (void)a, (void)bdesc;
  __trap();
#endif
}

__device__ __forceinline__ uint32_t pack2(const __nv_bfloat16* p) {
  return uint32_t(__bfloat16_as_ushort(p[0])) | (uint32_t(__bfloat16_as_ushort(p[1])) << 16);
}

// layout 0: sw128 (MN-major), 1: ksw128, 2: kmaj. Byte offset of element (k, n) of B in shared memory, and where
// k16 step ks starts.
__device__ __forceinline__ int b_offset(int layout, int k, int n) {
  if (layout == 0) return k * 128 + (((n >> 3) ^ (k & 7)) << 4) + (n & 7) * 2;
  if (layout == 1) return (k >> 6) * 8192 + n * 128 + ((((k & 63) >> 3) ^ (n & 7)) << 4) + (k & 7) * 2;
  return (n >> 3) * 2048 + (k >> 3) * 128 + (n & 7) * 16 + (k & 7) * 2;
}
__device__ __forceinline__ int kstep_offset(int layout, int ks) {
  if (layout == 0) return ks * 2048;
  if (layout == 1) return (ks >> 2) * 8192 + (ks & 3) * 32;
  return ks * 256;
}

constexpr int kSmem = 64 * 1024;
extern __shared__ __align__(1024) unsigned char probe_smem[];

// One warpgroup: D (64 x 64) = A (64 x 128) B (128 x 64).
template <int kTransB>
__global__ void __launch_bounds__(128) probe_kernel(const __nv_bfloat16* A, const __nv_bfloat16* B, float* D,
                                                   int layout, uint32_t lbo, uint32_t sbo, uint32_t swizzle) {
  __nv_bfloat16* bs = reinterpret_cast<__nv_bfloat16*>(probe_smem);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, q = lane & 3;
  for (int i = tid; i < kSmem / 2; i += 128) bs[i] = __float2bfloat16(0.f);
  __syncthreads();
  for (int i = tid; i < kK * kN; i += 128) {
    const int k = i / kN, n = i % kN;
    *reinterpret_cast<__nv_bfloat16*>(reinterpret_cast<char*>(bs) + b_offset(layout, k, n)) = B[k * kN + n];
  }
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");  // generic-proxy writes -> wgmma's async proxy
  __syncthreads();
  float d[32];
  for (int i = 0; i < 32; ++i) d[i] = 0.f;
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
  for (int ks = 0; ks < kK / 16; ++ks) {
    const __nv_bfloat16* ar = A + (16 * warp + g) * kK + 16 * ks + 2 * q;
    const uint32_t a[4] = {pack2(ar), pack2(ar + 8 * kK), pack2(ar + 8), pack2(ar + 8 * kK + 8)};
    const uint64_t desc = make_desc(reinterpret_cast<const char*>(bs) + kstep_offset(layout, ks), lbo, sbo, swizzle);
    wgmma_m64n64k16<kTransB>(d, a, desc);
  }
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
  for (int j = 0; j < 8; ++j)
    for (int e = 0; e < 4; ++e) D[(16 * warp + g + 8 * (e >> 1)) * kN + 8 * j + 2 * q + (e & 1)] = d[4 * j + e];
}

int main(int argc, char** argv) {
  // optional argument: only the layouts of that name (a trap ends the process, so each layout can get its own)
  const char* only = argc > 1 ? argv[1] : nullptr;
  std::vector<__nv_bfloat16> hA(kM * kK), hB(kK * kN);
  std::vector<float> fA(kM * kK), fB(kK * kN), ref(kM * kN, 0.f);
  srand(1);
  for (int i = 0; i < kM * kK; ++i) {
    hA[i] = __float2bfloat16(float(rand()) / RAND_MAX - 0.5f);
    fA[i] = __bfloat162float(hA[i]);
  }
  for (int i = 0; i < kK * kN; ++i) {
    hB[i] = __float2bfloat16(float(rand()) / RAND_MAX - 0.5f);
    fB[i] = __bfloat162float(hB[i]);
  }
  for (int m = 0; m < kM; ++m)
    for (int n = 0; n < kN; ++n) {
      double s = 0;
      for (int k = 0; k < kK; ++k) s += double(fA[m * kK + k]) * fB[k * kN + n];
      ref[m * kN + n] = float(s);
    }
  __nv_bfloat16 *dA, *dB;
  float* dD;
  cudaMalloc(&dA, hA.size() * 2);
  cudaMalloc(&dB, hB.size() * 2);
  cudaMalloc(&dD, ref.size() * 4);
  cudaMemcpy(dA, hA.data(), hA.size() * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(dB, hB.data(), hB.size() * 2, cudaMemcpyHostToDevice);
  const uint32_t offs[] = {0, 16, 128, 256, 1024, 2048, 4096, 8192};
  struct L { const char* name; int layout, trans; uint32_t swizzle; };
  const L layouts[] = {{"sw128", 0, 1, 1}, {"sw128", 0, 0, 1}, {"ksw128", 1, 0, 1}, {"kmaj", 2, 0, 0}};
  cudaFuncSetAttribute(probe_kernel<0>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  cudaFuncSetAttribute(probe_kernel<1>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  std::vector<float> hD(ref.size());
  int found = 0;
  for (const L& l : layouts) {
    if (only != nullptr && std::strcmp(only, l.name) != 0) continue;
    for (uint32_t lbo : offs)
      for (uint32_t sbo : offs) {
        cudaMemset(dD, 0xff, ref.size() * 4);  // NaN poison
        if (l.trans) probe_kernel<1><<<1, 128, kSmem>>>(dA, dB, dD, l.layout, lbo, sbo, l.swizzle);
        else probe_kernel<0><<<1, 128, kSmem>>>(dA, dB, dD, l.layout, lbo, sbo, l.swizzle);
        const cudaError_t e = cudaDeviceSynchronize();
        if (e != cudaSuccess) {
          std::printf("%s lbo %u sbo %u: %s\n", l.name, lbo, sbo, cudaGetErrorString(e));
          return 1;  // a trap poisons the context: the remaining combinations need a new process
        }
        cudaMemcpy(hD.data(), dD, hD.size() * 4, cudaMemcpyDeviceToHost);
        double err = 0;
        for (size_t i = 0; i < hD.size(); ++i) err = std::fmax(err, std::isnan(hD[i]) ? 1e30 : std::fabs(hD[i] - ref[i]));
        const bool ok = err < 1e-2;
        found += ok;
        std::printf("%s lbo %u sbo %u trans-b %d swizzle %u: max err %.3g%s\n", l.name, lbo, sbo, l.trans, l.swizzle,
                    err, ok ? "  ok" : "");
      }
  }
  std::printf("%d usable encodings\n", found);
  return found > 0 ? 0 : 2;
}
