// Runs the CUDA SSD backward (csrc/ssd/ssd_bwd_kernel.cuh, ssd_bwd_chunk_kernel.cuh, ssd_bwd_launch.cuh, unmodified,
// through the real dispatch ssd_bwd_cuda of csrc/ssd/ssd_bwd_launch.cu) on the CPU with the emulation headers of this
// folder (fibers for lanes, warp barriers for mma.sync / ldmatrix / shuffles, NaN-poisoned shared memory). Driven by
// tests/test_ssd_bwd_cuda_emu.py, which writes a case folder and compares what this program writes back with the
// float64 gradients of python_ref (torch autograd):
//   g++ -std=c++20 -O1 -I tests/cuda_emu -I csrc tests/cuda_emu/ssd_bwd_emu.cpp -o emu && ./emu DIR
// DIR/meta.txt: "key value" lines (dtype 0 fp32 / 1 fp16 / 2 bf16, shapes, flags); DIR/<name>.bin: raw arrays (x, z,
// dout, ypre, B, C in the input dtype; dt, A, dt_bias, D, states_in, d_final, d_states_in fp32; cu_seqlens,
// chunk_offsets int64). Writes DIR/out_<grad>.bin (dx, dz, dB, dC in the input dtype; ddt, dA, ddt_bias, dD (h, p),
// dinit fp32). Every output and scratch buffer starts NaN: an element the kernels forget to write shows up.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <cstring>
#include <type_traits>
#include <vector>

#include "emu_case_io.h"
#include "emu_check.h"
#include "ssd/ssd_bwd_launch.cuh"
#include "ssd/ssd_bwd_launch.cu"  // the real dispatch (plain C++ under the emulation headers)

namespace mamba_kernels {
namespace ssd_bwd {
template cudaError_t launch_ssd_bwd<float>(const SsdBwdCudaParams&, cudaStream_t);  // as ssd_bwd_<dtype>.cu
template cudaError_t launch_ssd_bwd<__half>(const SsdBwdCudaParams&, cudaStream_t);
template cudaError_t launch_ssd_bwd<__nv_bfloat16>(const SsdBwdCudaParams&, cudaStream_t);
alignas(16) float4 ssd_bwd_smem[232448 / sizeof(float4)];  // the kernels' extern __shared__ (H100 opt-in maximum)
}  // namespace ssd_bwd
}  // namespace mamba_kernels

using namespace mamba_kernels;

using emu_case::M;
using emu_case::read_arr;
using emu_case::write_arr;

namespace {

template <typename T> const T* ptr(const std::vector<T>& v) { return v.empty() ? nullptr : v.data(); }

template <typename T>
int run() {
  using E = typename ssd_cuda::TileType<T>::E;
  const int64_t b = M("b"), l = M("l"), h = M("h"), p = M("p"), n = M("n"), g = M("g"), Q = M("Q");
  const int64_t nseq = M("nseq"), slots = M("n_slots");
  const auto x = read_arr<T>("x"), z = read_arr<T>("z"), dout = read_arr<T>("dout"), ypre = read_arr<T>("ypre");
  const auto Bm = read_arr<T>("B"), Cm = read_arr<T>("C");
  const auto dt = read_arr<float>("dt"), A = read_arr<float>("A"), bias = read_arr<float>("dt_bias");
  const auto D = read_arr<float>("D"), sin = read_arr<float>("states_in"), dfin = read_arr<float>("d_final");
  const auto dsin = read_arr<float>("d_states_in");
  const auto cu = read_arr<int64_t>("cu_seqlens"), offs = read_arr<int64_t>("chunk_offsets");
  const T tnan = cvt<T>(std::nan(""));
  const float fnan = std::nanf("");
  const size_t xs = size_t(b * l * h * p), bs = size_t(b * l * g * n), hl = size_t(b * h * l);
  std::vector<T> dx(xs, tnan), dz(z.empty() ? 0 : xs, tnan), dB(bs, tnan), dC(bs, tnan);
  std::vector<float> ddt(size_t(b * l * h), fnan), dA(size_t(h), fnan), dbias(size_t(h), fnan);
  std::vector<float> dD(D.empty() ? 0 : size_t(h * p), fnan), dinit(size_t(nseq * h * p * n), fnan);
  std::vector<float> dtp(hl, fnan), a(hl, fnan), ddtp(hl, fnan), da(hl, fnan);
  std::vector<E> dy(xs, cvt<E>(std::nan("")));
  std::vector<float> dS(size_t(std::max<int64_t>(slots * h * p * n, 1)), fnan);
  std::vector<float> dalast(size_t(std::max<int64_t>(slots * h, 1)), fnan);
  std::vector<E> cb(size_t(std::max<int64_t>(slots * g * Q * Q, 1)), cvt<E>(std::nan(""))), dcb(cb);

  SsdBwdCudaParams P;
  P.batch = b; P.seqlen = l; P.nheads = h; P.headdim = p; P.dstate = n; P.ngroups = g; P.chunk_size = Q;
  P.nseq = nseq; P.n_slots = slots;
  P.in_dtype = std::is_same_v<T, float> ? DType::kFloat32
               : (std::is_same_v<T, __half> ? DType::kFloat16 : DType::kBFloat16);
  P.dt_softplus = M("softplus") != 0;
  P.has_dt_limit = M("limit") != 0;
  P.dt_min = float(emu_case::meta.at("lo")); P.dt_max = float(emu_case::meta.at("hi"));
  P.D_per_channel = M("D") == 2;
  P.x = x.data(); P.z = ptr(z); P.dout = dout.data(); P.ypre = ptr(ypre); P.B = Bm.data(); P.C = Cm.data();
  P.dt = dt.data(); P.A = A.data(); P.dt_bias = ptr(bias); P.D = ptr(D);
  P.states_in = ptr(sin); P.d_final = ptr(dfin); P.d_states_in = ptr(dsin);
  P.cu_seqlens = ptr(cu); P.chunk_offsets = ptr(offs);
  P.dx = dx.data(); P.dz = z.empty() ? nullptr : dz.data(); P.dB = dB.data(); P.dC = dC.data();
  P.ddt = ddt.data(); P.dA = dA.data(); P.ddt_bias = dbias.data(); P.dD = D.empty() ? nullptr : dD.data();
  P.dinit = dinit.data();
  P.dtp = dtp.data(); P.a = a.data(); P.ddtp = ddtp.data(); P.da = da.data(); P.dy = dy.data(); P.dS = dS.data();
  P.dalast = dalast.data(); P.cb = cb.data(); P.dcb = dcb.data();
  // head-split scratch, NaN like the rest: the launcher must zero it
  const bool split = ssd_bwd_group_split(h, g) > 1;
  std::vector<float> dcb32(split ? size_t(std::max<int64_t>(slots * g * Q * Q, 1)) : 0, fnan);
  std::vector<float> dbc32(split ? size_t(std::max<int64_t>(2 * b * l * g * n, 1)) : 0, fnan);
  P.dcb32 = split ? dcb32.data() : nullptr; P.dbc32 = split ? dbc32.data() : nullptr;
  std::printf("group split %lld\n", static_cast<long long>(ssd_bwd_group_split(h, g)));
  cuda_emu::poison_smem = ssd_bwd::ssd_bwd_smem;
  cuda_emu::poison_smem_bytes = sizeof(ssd_bwd::ssd_bwd_smem);
  if (const char* e = ssd_bwd_cuda(P, nullptr)) {
    std::printf("launch error: %s\n", e);
    return 1;
  }
  write_arr("dx", dx); write_arr("dz", dz); write_arr("dB", dB); write_arr("dC", dC); write_arr("ddt", ddt);
  write_arr("dA", dA); write_arr("ddt_bias", dbias); write_arr("dD", dD); write_arr("dinit", dinit);
  std::printf("launches %lld\n", static_cast<long long>(cuda_emu::launches));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) { std::fprintf(stderr, "usage: %s CASE_DIR\n", argv[0]); return 2; }
  emu_case::read_meta(argv[1]);
  switch (M("dtype")) {
    case 0: return run<float>();
    case 1: return run<__half>();
    case 2: return run<__nv_bfloat16>();
  }
  return 2;
}
