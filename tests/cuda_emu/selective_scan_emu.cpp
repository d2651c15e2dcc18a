// Runs the CUDA selective-scan kernels (csrc/selective_scan/*_kernel.cuh, unmodified, through their
// launchers) on the CPU with the emulation headers of this folder, and compares the forward (with saved
// states) and the backward against the C++ CPU implementation (selective_scan_cpu.cpp, in double, itself
// checked against python_ref by tests/test_selective_scan.py). Driven by tests/test_selective_scan.py:
//   g++ -std=c++20 -O1 -pthread -I tests/cuda_emu -I csrc tests/cuda_emu/selective_scan_emu.cpp \
//       csrc/selective_scan/selective_scan_cpu.cpp -o emu && ./emu [case-index ...]
// Prints one line per case; exit status 1 if any comparison fails.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "emu_check.h"
#include "selective_scan/selective_scan_bwd_kernel.cuh"

namespace mamba_kernels {
namespace ss {
alignas(16) float4 smem_f4[sizeof(cuda_emu::smem_buf) / sizeof(float4)];  // the kernels' extern __shared__
}  // namespace ss
}  // namespace mamba_kernels

using namespace mamba_kernels;

namespace {

enum class Dt { f32, bf16, f16 };

struct Case {
  const char* name;
  int64_t b, d, l, n, g;
  bool var_b, var_c, z, D, bias, softplus, init, dlast;
  std::vector<int64_t> cu;  // varlen offsets (b == 1), empty: not packed
  int ckpt;                 // checkpoint chunk, 16 .. 256 (the interface picks 256 for cuda)
  Dt dt = Dt::f32;
  bool padded = false;      // non-contiguous activations (row strides padded)
};


std::vector<Case> cases() {
  std::vector<Case> cs;
  auto add = [&](Case c) { cs.push_back(c); };
  //    name                          b  d   l    n  g  varB   varC   z      D      bias   sp     init   dlast
  add({"b2-d12-l70-n16-g3-varBC-z", 2, 12, 70, 16, 3, true, true, true, true, true, true, true, true, {}, 32});
  add({"b1-d40-l100-n16-g1-2blocks", 1, 40, 100, 16, 1, true, true, true, true, true, true, false, true, {}, 256});
  add({"b1-d33-l45-n1-const", 1, 33, 45, 1, 1, false, false, false, false, false, true, true, false, {}, 16});
  add({"b2-d10-l33-n4-varB-constC", 2, 10, 33, 4, 2, true, false, true, true, true, false, true, true, {}, 16});
  add({"b1-d6-l37-n5-constB-varC", 1, 6, 37, 5, 3, false, true, true, false, true, true, false, true, {}, 32});
  add({"b1-d20-l40-n32-g2", 1, 20, 40, 32, 2, true, true, true, true, true, true, true, true, {}, 32});
  add({"b1-d8-l40-n64-g2", 1, 8, 40, 64, 2, true, true, true, true, true, true, true, true, {}, 16});
  add({"b1-d4-l19-n128-g1", 1, 4, 19, 128, 1, true, true, false, true, true, true, true, true, {}, 16});
  add({"b1-d4-l20-n256-g2", 1, 4, 20, 256, 2, true, true, true, true, true, true, true, true, {}, 256});
  add({"b1-d10-l37-n16-constBC", 1, 10, 37, 16, 1, false, false, true, true, true, true, true, true, {}, 16});
  add({"b1-d3-l9-n140-const", 1, 3, 9, 140, 1, false, false, true, true, false, true, true, true, {}, 64});
  add({"b1-d24-varlen-n16-g4", 1, 24, 100, 16, 4, true, true, true, true, true, true, true, true, {0, 30, 30, 31, 100}, 256});
  add({"b1-d6-varlen-n8-g2", 1, 6, 50, 8, 2, true, true, false, true, true, true, true, true, {0, 17, 50}, 32});
  // several tiles of 256 steps (carries across tiles; l % 8 == 0: the 16-byte vector loads)
  add({"b1-d9-l520-n16-g1-tiles", 1, 9, 520, 16, 1, true, true, true, true, true, true, true, true, {}, 256});
  add({"b1-d6-varlen-long-n4-g2", 1, 6, 700, 4, 2, true, true, true, true, true, true, true, true, {0, 300, 301, 700}, 256});
  // long sequences (fp32 error growth over thousands of steps), l = 127 with d not a power of two
  add({"b1-d8-l4097-n16-g1", 1, 8, 4097, 16, 1, true, true, true, true, true, true, true, true, {}, 256});
  add({"b1-d4-l2049-n64-g1", 1, 4, 2049, 64, 1, true, true, true, true, true, true, true, true, {}, 32});
  add({"b2-d11-l127-n16-g1", 2, 11, 127, 16, 1, true, true, true, true, true, true, true, true, {}, 256});
  add({"b3-d5-l1-n16", 3, 5, 1, 16, 1, true, true, true, true, true, true, true, true, {}, 32});
  add({"b2-d5-l0-n16", 2, 5, 0, 16, 1, true, true, true, true, true, true, true, true, {}, 32});
  Case c = {"b2-d12-l70-n16-g3-bf16", 2, 12, 70, 16, 3, true, true, true, true, true, true, true, true, {}, 32};
  c.dt = Dt::bf16;
  add(c);
  c = {"b1-d20-l50-n16-g2-f16-nosp", 1, 20, 50, 16, 2, true, true, true, true, false, false, true, true, {}, 32};
  c.dt = Dt::f16;
  add(c);
  c = {"b2-d12-l45-n16-g2-padded", 2, 12, 45, 16, 2, true, true, true, true, true, true, true, true, {}, 32};
  c.padded = true;
  add(c);
  c = {"b2-d12-l45-n16-g2-padded-ckpt16", 2, 12, 45, 16, 2, true, true, true, true, true, true, true, true, {}, 16};
  c.padded = true;
  add(c);
  // the state-lane forward (n 16, variable B and C, not packed, checkpoints a multiple of its 64-token tile):
  // several tiles, a last partial tile, partial channel blocks, groups, misaligned rows, l 1 and 0
  add({"lane-b2-d12-l70-n16-g3", 2, 12, 70, 16, 3, true, true, true, true, true, true, true, true, {}, 64});
  add({"lane-b1-d40-l200-n16-g2-plain", 1, 40, 200, 16, 2, true, true, false, false, false, true, false, false, {}, 128});
  add({"lane-b3-d5-l1-n16", 3, 5, 1, 16, 1, true, true, true, true, true, true, true, true, {}, 64});
  add({"lane-b2-d5-l0-n16", 2, 5, 0, 16, 1, true, true, true, true, true, true, true, true, {}, 64});
  c = {"lane-b2-d36-l136-n16-g2-bf16", 2, 36, 136, 16, 2, true, true, true, true, true, true, true, true, {}, 64};
  c.dt = Dt::bf16;
  add(c);
  c = {"lane-b1-d20-l130-n16-g2-f16-nosp", 1, 20, 130, 16, 2, true, true, true, true, false, false, true, true, {}, 256};
  c.dt = Dt::f16;
  add(c);
  c = {"lane-b2-d12-l77-n16-g2-bf16-padded", 2, 12, 77, 16, 2, true, true, true, true, true, true, true, true, {}, 256};
  c.dt = Dt::bf16;
  c.padded = true;
  add(c);
  // state-lane forward with checkpoints every 64 steps (every tile at 2 states a lane, every other at 4): several
  // tiles with a last partial one, partial channel blocks, groups, no z / D / bias / softplus, misaligned rows
  add({"lane-ck64-b1-d40-l200-n16-g2-plain", 1, 40, 200, 16, 2, true, true, false, false, false, true, false, false, {}, 64});
  add({"lane-ck64-b2-d20-l131-n16-g1", 2, 20, 131, 16, 1, true, true, true, true, true, true, true, true, {}, 64});
  c = {"lane-ck64-b1-d36-l64-n16-g2-f16-nosp", 1, 36, 64, 16, 2, true, true, true, true, false, false, true, true, {}, 64};
  c.dt = Dt::f16;
  add(c);
  c = {"lane-ck64-b2-d12-l77-n16-g3-bf16-padded", 2, 12, 77, 16, 3, true, true, true, true, true, true, true, true, {}, 64};
  c.dt = Dt::bf16;
  c.padded = true;
  add(c);
  // the state-lane backward (n 16, variable B and C, not packed, checkpoints every 32 steps): several 32-token tiles
  // with a last partial one, several blocks of 32 channels with a partial last one, groups, no z / D / bias /
  // softplus / initial state / dlast, fp16 / bf16, misaligned rows
  add({"lane-ck32-b1-d40-l200-n16-g1", 1, 40, 200, 16, 1, true, true, true, true, true, true, true, true, {}, 32});
  add({"lane-ck32-b2-d64-l96-n16-g1-plain", 2, 64, 96, 16, 1, true, true, false, false, false, false, false, false, {}, 32});
  c = {"lane-ck32-b2-d36-l131-n16-g2-bf16", 2, 36, 131, 16, 2, true, true, true, true, true, true, true, true, {}, 32};
  c.dt = Dt::bf16;
  add(c);
  c = {"lane-ck32-b1-d20-l33-n16-g2-f16-padded", 1, 20, 33, 16, 2, true, true, true, true, false, true, true, true, {}, 32};
  c.dt = Dt::f16;
  c.padded = true;
  add(c);
  // packed sequences through the state-lane kernels (a block walks one sequence): empty and 1-token sequences, starts
  // off the 16-byte grid, several 32-token tiles and blocks, checkpoints every 32 steps (and every 256: the lane
  // forward with the time-parallel backward)
  add({"lane-ck32-varlen-d40-n16-g2", 1, 40, 100, 16, 2, true, true, true, true, true, true, true, true, {0, 30, 30, 31, 100}, 32});
  c = {"lane-ck32-varlen-d36-n16-g1-bf16-padded", 1, 36, 200, 16, 1, true, true, true, true, true, true, true, true, {0, 70, 133, 200}, 32};
  c.dt = Dt::bf16;
  c.padded = true;
  add(c);
  add({"lane-ck256-varlen-d24-n16-g4", 1, 24, 300, 16, 4, true, true, true, true, true, true, false, true, {0, 1, 258, 300}, 256});
  {  // more packed sequences than a block has threads (the block sums the earlier sequences' chunks together)
    std::vector<int64_t> cu = {0};
    for (int q = 0; q < 260; ++q) cu.push_back(cu.back() + (q % 2 == 0 ? 0 : q % 4 == 1 ? 1 : 33));
    add({"lane-ck32-varlen-260seqs-d4-n16-g1", 1, 4, cu.back(), 16, 1, true, true, true, true, true, true, true, true, cu, 32});
  }
  return cs;
}


// An activation tensor: device-side values of in_t (possibly with padded rows) and the exact double values.
template <typename T>
struct Act {
  std::vector<T> dev;
  std::vector<double> ref;  // contiguous
  int64_t s0 = 0, s1 = 0;   // strides of the first two dims (last dim contiguous)
};


template <typename T>
bool run_case(const Case& cs) {
  const int64_t b = cs.b, d = cs.d, l = cs.l, n = cs.n;
  const int64_t G = (cs.var_b || cs.var_c) ? cs.g : 1;
  const bool varlen = !cs.cu.empty();
  const int64_t nseq = varlen ? int64_t(cs.cu.size()) - 1 : 0;
  const int64_t slots = varlen ? nseq : b;
  std::mt19937_64 rng(1234 + b * 7 + d * 13 + l * 17 + n * 19);
  std::normal_distribution<double> N01(0.0, 1.0);
  std::uniform_real_distribution<double> U01(0.0, 1.0);
  const int64_t pad = cs.padded ? 3 : 0;

  auto act = [&](int64_t d0, int64_t d1, int64_t d2, double scale, double shift, int64_t pad1) {
    Act<T> a;
    a.s1 = d2 + pad1;
    a.s0 = d1 * a.s1 + (pad1 ? 5 : 0);
    a.dev.assign(size_t(std::max<int64_t>(d0 * a.s0, 1)), cvt<T>(std::nan("")));
    a.ref.resize(size_t(d0 * d1 * d2));
    for (int64_t i = 0; i < d0; ++i)
      for (int64_t j = 0; j < d1; ++j)
        for (int64_t k = 0; k < d2; ++k) {
          const T v = cvt<T>(N01(rng) * scale + shift);
          a.dev[size_t(i * a.s0 + j * a.s1 + k)] = v;
          a.ref[size_t((i * d1 + j) * d2 + k)] = back(v);
        }
    return a;
  };
  auto wts = [&](int64_t cnt, double scale, double shift) {
    std::vector<float> w(size_t(std::max<int64_t>(cnt, 1)));
    for (auto& x : w) x = float(N01(rng) * scale + shift);
    return w;
  };
  auto to_d = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };

  Act<T> u = act(b, d, l, 1.0, 0.0, pad), dl = act(b, d, l, 0.5, -1.0, pad);
  Act<T> z = act(b, d, l, 1.0, 0.0, pad), dout = act(b, d, l, 1.0, 0.0, pad);
  if (!cs.softplus)  // positive steps without softplus
    for (size_t i = 0; i < dl.dev.size(); ++i) dl.dev[i] = cvt<T>(std::fabs(back(dl.dev[i])) * 0.3 + 0.01);
  if (!cs.softplus)
    for (int64_t i = 0; i < b; ++i)
      for (int64_t j = 0; j < d; ++j)
        for (int64_t k = 0; k < l; ++k) dl.ref[size_t((i * d + j) * l + k)] = back(dl.dev[size_t(i * dl.s0 + j * dl.s1 + k)]);
  std::vector<float> A(size_t(d * n));
  for (auto& x : A) x = float(-(0.25 + U01(rng) * 4));
  Act<T> Bv = act(b * G, n, l, 1.0, 0.0, cs.padded ? 2 : 0), Cv = act(b * G, n, l, 1.0, 0.0, cs.padded ? 2 : 0);
  std::vector<float> Bc = wts(d * n, 1.0, 0.0), Cc = wts(d * n, 1.0, 0.0);
  std::vector<float> Dw = wts(d, 1.0, 0.0), bias = wts(d, 0.5, -1.0);
  if (!cs.softplus)
    for (auto& x : bias) x = float(std::fabs(x) * 0.1);
  std::vector<float> h0 = wts(slots * d * n, 1.0, 0.0), dlast = wts(slots * d * n, 1.0, 0.0);
  const std::vector<int64_t>& cu = cs.cu;

  // ---- emulated CUDA forward (saving states) + backward
  SelectiveScanParams p;
  p.batch = b; p.dim = d; p.seqlen = l; p.dstate = n; p.n_groups = G;
  p.is_variable_B = cs.var_b; p.is_variable_C = cs.var_c; p.delta_softplus = cs.softplus;
  p.in_dtype = std::is_same_v<T, float> ? DType::kFloat32 : (std::is_same_v<T, __half> ? DType::kFloat16 : DType::kBFloat16);
  p.u = u.dev.data(); p.u_batch_stride = u.s0; p.u_d_stride = u.s1;
  p.delta = dl.dev.data(); p.delta_batch_stride = dl.s0; p.delta_d_stride = dl.s1;
  if (cs.z) { p.z = z.dev.data(); p.z_batch_stride = z.s0; p.z_d_stride = z.s1; }
  p.A = A.data(); p.A_d_stride = n;
  if (cs.var_b) { p.B = Bv.dev.data(); p.B_batch_stride = G * Bv.s0; p.B_group_stride = Bv.s0; p.B_dstate_stride = Bv.s1; }
  else { p.B = Bc.data(); p.B_d_stride = n; }
  if (cs.var_c) { p.C = Cv.dev.data(); p.C_batch_stride = G * Cv.s0; p.C_group_stride = Cv.s0; p.C_dstate_stride = Cv.s1; }
  else { p.C = Cc.data(); p.C_d_stride = n; }
  if (cs.D) p.D = Dw.data();
  if (cs.bias) p.delta_bias = bias.data();
  if (cs.init) p.initial_state = h0.data();
  if (varlen) { p.cu_seqlens = cu.data(); p.n_seqs = nseq; }
  Act<T> out = act(b, d, l, 0.0, std::nan(""), pad);  // NaN-filled, same strides as u
  p.out = out.dev.data(); p.out_batch_stride = out.s0; p.out_d_stride = out.s1;
  std::vector<float> last(size_t(slots * d * n), std::nanf(""));
  p.last_state = last.data();
  int ck_log2 = 0;
  while ((1 << ck_log2) < cs.ckpt) ++ck_log2;
  const int64_t n_ck = (l + cs.ckpt - 1) / cs.ckpt + nseq;
  std::vector<float> states(size_t(std::max<int64_t>(b * d * n_ck * n, 1)), std::nanf(""));
  p.states = states.data(); p.states_n_chunks = n_ck; p.ckpt_log2 = ck_log2;
  if (ss::launch_selective_scan_fwd<T>(p, nullptr) != cudaSuccess) { std::printf("FAIL %s: fwd launch\n", cs.name); return false; }
  // which forward ran (reported: the test counts them)
  const int lane = ss::lane_fwd_applies(p) ? ss::lane_states_per_lane(p) : 0;

  SelectiveScanParams pb = p;
  pb.out = nullptr; pb.last_state = nullptr;
  pb.dout = dout.dev.data(); pb.dout_batch_stride = dout.s0; pb.dout_d_stride = dout.s1;
  if (cs.dlast) pb.dlast_state = dlast.data();
  const T tnan = cvt<T>(std::nan(""));
  std::vector<T> du(size_t(b * d * l), tnan), ddelta(size_t(b * d * l), tnan), dz(size_t(b * d * l), tnan);
  std::vector<float> dA(size_t(d * n), 0.f), dD(static_cast<size_t>(d), 0.f), dbias(static_cast<size_t>(d), 0.f);
  std::vector<float> dB(size_t(cs.var_b ? b * G * n * l : d * n), 0.f), dC(size_t(cs.var_c ? b * G * n * l : d * n), 0.f);
  std::vector<float> dinit(size_t(slots * d * n), std::nanf(""));
  pb.du = du.data(); pb.ddelta = ddelta.data(); pb.dA = dA.data(); pb.dB = dB.data(); pb.dC = dC.data();
  if (cs.z) pb.dz = dz.data();
  if (cs.D) pb.dD = dD.data();
  if (cs.bias) pb.ddelta_bias = dbias.data();
  if (cs.init) pb.dinitial_state = dinit.data();
  const bool lane_bwd = ss::bwd_lane_applies(pb);
  if (const char* e = ss::launch_selective_scan_bwd<T>(pb, nullptr)) { std::printf("FAIL %s: bwd launch: %s\n", cs.name, e); return false; }

  // ---- reference: the CPU implementation in double
  std::vector<double> Ad = to_d(A), Bcd = to_d(Bc), Ccd = to_d(Cc), Dd = to_d(Dw), biasd = to_d(bias);
  std::vector<double> h0d = to_d(h0), dlastd = to_d(dlast);
  SelectiveScanParams r;
  r.batch = b; r.dim = d; r.seqlen = l; r.dstate = n; r.n_groups = G;
  r.is_variable_B = cs.var_b; r.is_variable_C = cs.var_c; r.delta_softplus = cs.softplus;
  r.in_dtype = DType::kFloat64;
  r.u = u.ref.data(); r.u_batch_stride = d * l; r.u_d_stride = l;
  r.delta = dl.ref.data(); r.delta_batch_stride = d * l; r.delta_d_stride = l;
  if (cs.z) { r.z = z.ref.data(); r.z_batch_stride = d * l; r.z_d_stride = l; }
  r.A = Ad.data(); r.A_d_stride = n;
  if (cs.var_b) { r.B = Bv.ref.data(); r.B_batch_stride = G * n * l; r.B_group_stride = n * l; r.B_dstate_stride = l; }
  else { r.B = Bcd.data(); r.B_d_stride = n; }
  if (cs.var_c) { r.C = Cv.ref.data(); r.C_batch_stride = G * n * l; r.C_group_stride = n * l; r.C_dstate_stride = l; }
  else { r.C = Ccd.data(); r.C_d_stride = n; }
  if (cs.D) r.D = Dd.data();
  if (cs.bias) r.delta_bias = biasd.data();
  if (cs.init) r.initial_state = h0d.data();
  if (varlen) { r.cu_seqlens = cu.data(); r.n_seqs = nseq; }
  std::vector<double> rout(size_t(b * d * l)), rlast(size_t(slots * d * n));
  r.out = rout.data(); r.out_batch_stride = d * l; r.out_d_stride = l;
  r.last_state = rlast.data();
  selective_scan_fwd_cpu(r);
  r.out = nullptr; r.last_state = nullptr;
  r.dout = dout.ref.data(); r.dout_batch_stride = d * l; r.dout_d_stride = l;
  if (cs.dlast) r.dlast_state = dlastd.data();
  std::vector<double> rdu(size_t(b * d * l)), rddelta(size_t(b * d * l)), rdz(size_t(b * d * l));
  std::vector<double> rdA(size_t(d * n)), rdD(static_cast<size_t>(d)), rdbias(static_cast<size_t>(d)), rdinit(size_t(slots * d * n));
  std::vector<double> rdB(size_t(cs.var_b ? b * d * n * l : d * n)), rdC(size_t(cs.var_c ? b * d * n * l : d * n));
  r.du = rdu.data(); r.ddelta = rddelta.data(); r.dA = rdA.data(); r.dB = rdB.data(); r.dC = rdC.data();
  if (cs.z) r.dz = rdz.data();
  if (cs.D) r.dD = rdD.data();
  if (cs.bias) r.ddelta_bias = rdbias.data();
  if (cs.init) r.dinitial_state = rdinit.data();
  selective_scan_bwd_cpu(r);
  auto group_sum = [&](const std::vector<double>& per_ch) {  // (b, d, n, l) -> (b, G, n, l)
    std::vector<double> o(size_t(b * G * n * l), 0.0);
    const int64_t dpg = d / G;
    for (int64_t i = 0; i < b; ++i)
      for (int64_t c = 0; c < d; ++c)
        for (int64_t s = 0; s < n * l; ++s) o[size_t(((i * G + c / dpg) * n) * l + s)] += per_ch[size_t((i * d + c) * n * l + s)];
    return o;
  };
  if (cs.var_b) rdB = group_sum(rdB);
  if (cs.var_c) rdC = group_sum(rdC);

  // ---- compare
  const bool lowp = !std::is_same_v<T, float>;
  const double rt = lowp ? (std::is_same_v<T, __half> ? 3e-3 : 2e-2) : 2e-5, mt = lowp ? 4 * rt : 10 * rt;
  auto vec = [](const auto& v) { std::vector<double> o; for (auto x : v) o.push_back(back(x)); return o; };
  std::vector<double> outc(size_t(b * d * l));
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < d; ++j)
      for (int64_t k = 0; k < l; ++k) outc[size_t((i * d + j) * l + k)] = back(out.dev[size_t(i * out.s0 + j * out.s1 + k)]);
  Report rep;
  // fp32 sums over l of products (dA, constant dB/dC, dD, dbias): factor 4, as in the python tests
  rep.check("out", outc, rout, rt, mt);
  rep.check("last", vec(last), rlast, 4 * (lowp ? 2e-5 : rt), 4 * (lowp ? 2e-4 : mt));
  rep.check("du", vec(du), rdu, rt, mt);
  rep.check("ddelta", vec(ddelta), rddelta, rt, mt);
  if (cs.z) rep.check("dz", vec(dz), rdz, rt, mt);
  rep.check("dA", vec(dA), rdA, 4 * rt, 4 * mt);
  rep.check("dB", vec(dB), rdB, 4 * rt, 4 * mt);
  rep.check("dC", vec(dC), rdC, 4 * rt, 4 * mt);
  if (cs.D) rep.check("dD", vec(dD), rdD, 4 * rt, 4 * mt);
  if (cs.bias) rep.check("dbias", vec(dbias), rdbias, 4 * rt, 4 * mt);
  if (cs.init) rep.check("dinit", vec(dinit), rdinit, 4 * rt, 4 * mt);
  std::printf("%s %s%s%s:%s\n", rep.ok ? "ok  " : "FAIL", cs.name,
              lane == 4 ? (ss::lane_spec_taken() ? " [lane S4 spec]" : " [lane S4]") : lane == 2 ? " [lane S2]" : "",
              lane_bwd ? " [lane bwd]" : "", rep.msg.c_str());
  return rep.ok;
}

}  // namespace

int main(int argc, char** argv) {
  const auto cs = cases();
  std::vector<size_t> which;
  for (int i = 1; i < argc; ++i) which.push_back(size_t(std::atoi(argv[i])));
  if (which.empty())
    for (size_t i = 0; i < cs.size(); ++i) which.push_back(i);
  bool all = true;
  for (size_t i : which) {
    if (i >= cs.size()) { std::printf("no case %zu\n", i); return 2; }
    const auto t0 = std::chrono::steady_clock::now();
    bool ok = cs[i].dt == Dt::f32 ? run_case<float>(cs[i])
              : cs[i].dt == Dt::bf16 ? run_case<__nv_bfloat16>(cs[i]) : run_case<__half>(cs[i]);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("     (%.1f s)\n", sec);
    std::fflush(stdout);
    all = all && ok;
  }
  return all ? 0 : 1;
}
