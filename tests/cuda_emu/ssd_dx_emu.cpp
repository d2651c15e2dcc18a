// Runs the SSD backward's CUDA dx stage (csrc/ssd/ssd_dx_kernel.cuh through the real dispatch ssd_dx_cuda of
// csrc/ssd/ssd_dx.cu, unmodified) on the CPU with the emulation headers of this folder. Driven by
// tests/test_ssd_dx_cuda_emu.py, which writes a case folder and compares what this program writes back with a
// float64 evaluation of the stage's formulas:
//   g++ -std=c++20 -O1 -I tests/cuda_emu -I csrc tests/cuda_emu/ssd_dx_emu.cpp -o emu && ./emu DIR
// DIR/meta.txt: "key value" lines (b, l, h, g, n_slots, num_ctas, varlen, D: 0 none / 1 (h) / 2 (h, p)); DIR/<name>.bin:
// x, dy, B, cb, dS (bf16 bits), dtp, a, D, ddtp, da, dalast, dD (fp32), tab (int32). dx starts NaN; the fp32
// accumulators start at the values given (the stage adds into them). Writes DIR/out_<name>.bin for dx, ddtp, da,
// dalast, dD.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "ssd/ssd_dx.cu"  // the real dispatch (plain C++ under the emulation headers)

namespace mamba_kernels {
namespace ssd_dx {
alignas(16) float4 ssd_dx_smem[232448 / sizeof(float4)];  // the kernel's extern __shared__ (H100 opt-in maximum)
}  // namespace ssd_dx
}  // namespace mamba_kernels

using namespace mamba_kernels;

namespace {

std::string dir;
std::map<std::string, double> meta;

template <typename T> std::vector<T> read_arr(const std::string& name) {
  std::ifstream f(dir + "/" + name + ".bin", std::ios::binary);
  if (!f) return {};
  const std::vector<char> raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<T> v(raw.size() / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), raw.data(), v.size() * sizeof(T));
  return v;
}
template <typename T> void write_arr(const std::string& name, const std::vector<T>& v) {
  std::ofstream f(dir + "/out_" + name + ".bin", std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * sizeof(T)));
}
int64_t M(const char* k) { return int64_t(meta.at(k)); }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) { std::fprintf(stderr, "usage: %s CASE_DIR\n", argv[0]); return 2; }
  dir = argv[1];
  std::ifstream mf(dir + "/meta.txt");
  std::string k;
  double v;
  while (mf >> k >> v) meta[k] = v;
  using E = __nv_bfloat16;
  const auto x = read_arr<E>("x"), dy = read_arr<E>("dy"), Bm = read_arr<E>("B"), cb = read_arr<E>("cb");
  const auto dS = read_arr<E>("dS");
  const auto dtp = read_arr<float>("dtp"), a = read_arr<float>("a"), D = read_arr<float>("D");
  auto ddtp = read_arr<float>("ddtp"), da = read_arr<float>("da"), dalast = read_arr<float>("dalast");
  auto dD = read_arr<float>("dD");
  const auto tab = read_arr<int32_t>("tab");
  std::vector<E> dx(x.size(), __float2bfloat16_rn(std::nanf("")));
  SsdDxParams P;
  P.batch = M("b"); P.seqlen = M("l"); P.nheads = M("h"); P.ngroups = M("g"); P.n_slots = M("n_slots");
  P.chunks_per_row = (P.seqlen + kSsdDxChunk - 1) / kSsdDxChunk;
  P.num_ctas = M("num_ctas");
  P.x = x.data(); P.dy = dy.data(); P.B = Bm.data(); P.cb = cb.data(); P.dS = dS.data();
  P.dtp = dtp.data(); P.a = a.data();
  P.D = M("D") ? D.data() : nullptr;
  P.D_per_channel = M("D") == 2;
  P.tab = M("varlen") ? tab.data() : nullptr;
  P.dx = dx.data(); P.ddtp = ddtp.data(); P.da = da.data(); P.dalast = dalast.data();
  P.dD = M("D") ? dD.data() : nullptr;
  cuda_emu::poison_smem = ssd_dx::ssd_dx_smem;
  cuda_emu::poison_smem_bytes = sizeof(ssd_dx::ssd_dx_smem);
  if (const char* e = ssd_dx_cuda(P, nullptr)) {
    std::printf("launch error: %s\n", e);
    return 1;
  }
  write_arr("dx", dx); write_arr("ddtp", ddtp); write_arr("da", da); write_arr("dalast", dalast); write_arr("dD", dD);
  std::printf("launches %lld\n", static_cast<long long>(cuda_emu::launches));
  return 0;
}
