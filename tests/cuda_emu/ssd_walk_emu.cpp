// Runs the SSD head-walk CUDA stages (csrc/ssd/ssd_dx_kernel.cuh, ssd_scan_kernel.cuh and ssd_state_kernel.cuh through
// the real dispatch of csrc/ssd/ssd_walk.cu, unmodified) on the CPU with the emulation headers of this folder. Driven
// by tests/test_ssd_walk_cuda_emu.py, which writes a case folder and compares what this program writes back with a
// float64 evaluation of the stage's formulas:
//   g++ -std=c++20 -O1 -I tests/cuda_emu -I csrc tests/cuda_emu/ssd_walk_emu.cpp -o emu && ./emu DIR
// DIR/meta.txt: "key value" lines (stage 0 dx / 1 scan / 2 state, b, l, h, g, n_slots, num_ctas, varlen; dx and scan:
// D: 0 none / 1 (h) / 2 (h, p), z, ypre; state: nseq, init 0 / 1); DIR/<name>.bin: bf16 bits for x, dy, z, rows (B or
// C), cb, pn (dS or h_in); fp32 for dtp, a, D, init and the dx stage's accumulators ddtp, da, dalast, dD (it adds into
// them); int32 tab (dx, scan) or cu, first (state) with varlen. Outputs start NaN (dx, out, ypre, hin, final). Writes
// DIR/out_<name>.bin: dx, ddtp, da, dalast, dD (dx stage), out, ypre (scan stage) or hin (bf16), final (state stage).
// Optional "optin": the shared memory a block may opt into (emulates A100 / RTX devices); stage 3 prints which stages
// fit it ("fits dx scan state", ssd_walk_fits) and runs nothing. Stage 4: the fused walk (a lab; run_fused_stage).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "emu_case_io.h"
#include "ssd/ssd_walk.cu"  // the real dispatch (plain C++ under the emulation headers)

namespace mamba_kernels {
namespace ssd_walk {
// the kernels' extern __shared__ (H100 opt-in maximum), 1024-byte aligned as on the GPU (the swizzled tiles)
alignas(1024) float4 ssd_walk_smem[232448 / sizeof(float4)];
}  // namespace ssd_walk
}  // namespace mamba_kernels

using namespace mamba_kernels;

using emu_case::M;
using emu_case::read_arr;
using emu_case::write_arr;

// Prints the launch error, or the number of launches and the last one's threads and dynamic shared memory a block
// (the exit status says which).
int report(const char* err) {
  if (err) {
    std::printf("launch error: %s\n", err);
    return 1;
  }
  std::printf("launches %lld threads %u smem %zu wgmma %lld tma %lld / %lld\n",
              static_cast<long long>(cuda_emu::launches), blockDim.x, cuda_emu::last_smem, wgmma_emu::calls,
              tma_emu_stores, tma_emu_loads);
  return 0;
}

// Forward state stage (F1): hin (n_slots, h, 64, 128) bf16 and final (nseq, h, 64, 128) fp32 start NaN everywhere, so
// a chunk's slot the kernel skips and a slot of no chunk it writes both show; the test checks which slots stay NaN.
int run_state_stage() {
  using E = __nv_bfloat16;
  const auto x = read_arr<E>("x"), B = read_arr<E>("rows");
  const auto dtp = read_arr<float>("dtp"), a = read_arr<float>("a"), init = read_arr<float>("init");
  const auto cu = read_arr<int32_t>("cu"), first = read_arr<int32_t>("first");
  SsdStateParams P;
  P.batch = M("b"); P.seqlen = M("l"); P.nheads = M("h"); P.ngroups = M("g"); P.nseq = M("nseq");
  P.n_slots = M("n_slots");
  P.chunks_per_row = (P.seqlen + kSsdWalkChunk - 1) / kSsdWalkChunk;
  P.num_ctas = M("num_ctas");
  const size_t state = size_t(P.nheads) * kSsdWalkHeaddim * kSsdWalkDstate;  // one slot's (h, p, n) elements
  // one more NaN slot past each output's end: a store past n_slots / nseq lands there instead of in the heap
  std::vector<E> hin(size_t(P.n_slots + 1) * state, __float2bfloat16_rn(std::nanf("")));
  std::vector<float> fin(size_t(P.nseq + 1) * state, std::nanf(""));
  P.x = x.data(); P.B = B.data(); P.dtp = dtp.data(); P.a = a.data();
  P.init = M("init") ? init.data() : nullptr;
  P.cu = M("varlen") ? cu.data() : nullptr;
  P.first = M("varlen") ? first.data() : nullptr;
  P.hin = hin.data(); P.final_states = fin.data();
  const char* err = ssd_state_cuda(P, nullptr);
  if (err) return report(err);
  {  // which kernel ran: its shared memory is the one of the walks a CTA, skew and wgmma the dispatch asked for
    const int64_t optin = cuda_emu::max_smem_optin;
    const bool wg = state_wgmma(optin);
    const int W = ssd_walk::state_walks_per_cta(P, optin, wg);
    const bool skew = !wg && env_switch("MK_SSD_STATE_SKEW", true) && ssd_walk::state_skew_fits(W, optin);
    const bool pairs = wg && env_switch("MK_SSD_STATE_PAIRS", kStatePairsDefault);
    const bool tma = pairs && env_switch("MK_SSD_STATE_TMA", kStateTmaDefault) &&
                     ssd_walk::state_wg_smem_bytes(W, true, true, true) <= optin;
    const bool tma_load = tma && env_switch("MK_SSD_STATE_TMA_LOAD", kStateTmaLoadDefault);
    const bool late = tma_load && env_switch("MK_SSD_STATE_LATE_WAIT", kStateLateWaitDefault);
    const bool wide = late && env_switch("MK_SSD_STATE_WIDE", kStateWideDefault);
    const int lean = wide ? state_lean() : 0;
    const size_t smem =
        wg ? ssd_walk::state_wg_smem_bytes(W, pairs, tma, tma_load) : ssd_walk::state_smem_bytes(W, skew);
    std::printf(
        "state walks %d skew %d wgmma %d pairs %d tma %d tma_load %d late_wait %d wide %d lean %d smem_match %d\n", W,
        int(skew), int(wg), int(pairs), int(tma), int(tma_load), int(late), int(wide), lean,
                int(P.n_slots == 0 || cuda_emu::last_smem == smem));
  }
  const size_t hin_end = size_t(P.n_slots) * state, fin_end = size_t(P.nseq) * state;
  for (size_t i = 0; i < state; ++i) {
    if (!std::isnan(__bfloat162float(hin[hin_end + i])) || !std::isnan(fin[fin_end + i])) {
      std::printf("stored past the end of hin (n_slots %lld) or final (nseq %lld)\n",
                  static_cast<long long>(P.n_slots), static_cast<long long>(P.nseq));
      return 1;
    }
  }
  hin.resize(hin_end);
  fin.resize(fin_end);
  write_arr("hin", hin); write_arr("final", fin);
  return report(err);
}

// The fused walk (stage 4, a lab: ssd_fused_walk_kernel.cuh, chunk 64): out (b, l, h, 64) bf16 and final (b, h, 64,
// 128) fp32 start NaN; inputs x, z (with "z"), B, C, cb (b ceil(l / 64), g, 64, 64) bf16, dtp, a, D (with "D": 1 (h),
// 2 (h, p)), init (with "init"); "ctas": CTAs sharing the walks' chunks (0: a CTA a walk). Writes out, final.
int run_fused_stage() {
  using E = __nv_bfloat16;
  const auto x = read_arr<E>("x"), z = read_arr<E>("z"), B = read_arr<E>("B"), C = read_arr<E>("C");
  const auto cb = read_arr<E>("cb");
  const auto dtp = read_arr<float>("dtp"), a = read_arr<float>("a"), D = read_arr<float>("D");
  const auto init = read_arr<float>("init");
  SsdFusedWalkParams P;
  P.batch = M("b"); P.seqlen = M("l"); P.nheads = M("h"); P.ngroups = M("g");
  std::vector<E> out(x.size(), __float2bfloat16_rn(std::nanf("")));
  std::vector<float> fin(size_t(P.batch * P.nheads) * kSsdWalkHeaddim * kSsdWalkDstate, std::nanf(""));
  P.x = x.data(); P.z = M("z") ? z.data() : nullptr; P.B = B.data(); P.C = C.data();
  P.cb = M("cbin") ? nullptr : cb.data();  // "cbin": C B^T computed in the kernel
  P.dtp = dtp.data(); P.a = a.data();
  P.D = M("D") ? D.data() : nullptr;
  P.D_per_channel = M("D") == 2;
  P.init = M("init") ? init.data() : nullptr;
  P.out = out.data(); P.final_states = fin.data();
  // "ctas": the CTAs sharing the walks (0: a CTA a walk); the hand-off scratch starts NaN, the flags at 0
  P.num_ctas = M("ctas");
  std::vector<float> scratch(fin.size(), std::nanf(""));
  std::vector<int32_t> flags(size_t(P.batch * P.nheads), 0);
  P.scratch = scratch.data(); P.flags = flags.data();
  const char* err = ssd_fused_walk_cuda(P, nullptr);
  for (const int32_t f : flags)
    if (f != 0) {
      std::printf("a hand-off flag left set\n");
      return 1;
    }
  write_arr("out", out); write_arr("final", fin);
  return report(err);
}

int main(int argc, char** argv) {
  if (argc != 2) { std::fprintf(stderr, "usage: %s CASE_DIR\n", argv[0]); return 2; }
  emu_case::read_meta(argv[1]);
  using E = __nv_bfloat16;
  cuda_emu::poison_smem = ssd_walk::ssd_walk_smem;
  cuda_emu::poison_smem_bytes = sizeof(ssd_walk::ssd_walk_smem);
  // optional "optin": the device's shared memory a block may opt into (A100 166912, RTX 4090 101376; default H100's)
  if (emu_case::meta.count("optin")) cuda_emu::max_smem_optin = int(M("optin"));
  if (M("stage") == 3) {  // which stages fit that device (ssd_walk_fits: 0 dx, 1 scan, 2 state)
    std::printf("fits %d %d %d\n", int(ssd_walk_fits(0, 0)), int(ssd_walk_fits(1, 0)), int(ssd_walk_fits(2, 0)));
    return 0;
  }
  if (M("stage") == 2) return run_state_stage();
  if (M("stage") == 4) return run_fused_stage();
  const auto x = read_arr<E>("x"), dy = read_arr<E>("dy"), z = read_arr<E>("z"), rows = read_arr<E>("rows");
  const auto cb = read_arr<E>("cb"), pn = read_arr<E>("pn");
  const auto dtp = read_arr<float>("dtp"), a = read_arr<float>("a"), D = read_arr<float>("D");
  auto ddtp = read_arr<float>("ddtp"), da = read_arr<float>("da"), dalast = read_arr<float>("dalast");
  auto dD = read_arr<float>("dD");
  const auto tab = read_arr<int32_t>("tab");
  const E nan = __float2bfloat16_rn(std::nanf(""));
  SsdWalkParams w;
  w.batch = M("b"); w.seqlen = M("l"); w.nheads = M("h"); w.ngroups = M("g"); w.n_slots = M("n_slots");
  w.chunks_per_row = (w.seqlen + kSsdWalkChunk - 1) / kSsdWalkChunk;
  w.num_ctas = M("num_ctas");
  w.cb = cb.data(); w.rows = rows.data(); w.dtp = dtp.data(); w.a = a.data();
  w.D = M("D") ? D.data() : nullptr;
  w.D_per_channel = M("D") == 2;
  w.tab = M("varlen") ? tab.data() : nullptr;
  const char* err = nullptr;
  if (M("stage") == 0) {
    std::vector<E> dx(x.size(), nan);
    SsdDxParams P;
    P.w = w;
    P.x = x.data(); P.dy = dy.data(); P.dS = pn.data();
    P.dx = dx.data(); P.ddtp = ddtp.data(); P.da = da.data(); P.dalast = dalast.data();
    P.dD = M("D") ? dD.data() : nullptr;
    err = ssd_dx_cuda(P, nullptr);
    write_arr("dx", dx); write_arr("ddtp", ddtp); write_arr("da", da); write_arr("dalast", dalast);
    write_arr("dD", dD);
  } else {
    std::vector<E> out(x.size(), nan), ypre(M("ypre") ? x.size() : 0, nan);
    SsdScanParams P;
    P.w = w;
    P.x = x.data(); P.z = M("z") ? z.data() : nullptr; P.hin = pn.data();
    P.out = out.data(); P.ypre = M("ypre") ? ypre.data() : nullptr;
    err = ssd_scan_cuda(P, nullptr);
    write_arr("out", out); write_arr("ypre", ypre);
  }
  return report(err);
}
