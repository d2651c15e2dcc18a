// CPU emulation of the verify family's CUDA launcher (csrc/verify/verify_launch.cu + verify_ssm_<dtype>.cu):
// the same launch geometry (verify_kernels::ssm_launch_config / conv_launch_config) and the same kernels
// (verify_ssm_kernel, verify_m2_kernel<.., 128 | 256>, verify_fused_kernel, conv_verify_kernel), run on CPU threads
// by verify_emu_shim.h, behind the real CUDA binding (csrc/verify/verify_bind_cuda.cpp with MK_VERIFY_EMULATION),
// so torch.ops.mamba_kernels._verify_step_cuda etc. accept CPU tensors. Built and driven by
// tests/test_verify_cuda_emu.py (see verify_emu_stress.py).
//
// EMU_SMEM_OPTIN=<bytes> sets the shared memory a block that the launch choice may use (an A100's 166912, an RTX
// 4090's 101376; default an H100's). EMU_LEAN_NT=128|256 forces the lean kernel's block size when the lean kernel is taken and fits that size (the
// GPU launcher picks it by grid size; the small test grids would otherwise always get 256). At exit one line on
// stderr counts the launches per kernel: "emu launches: lean128=.. lean256=.. general_m2=.. general_m1=.. fused=..
// conv=..".
#include "verify_emu_shim.h"
// (shim first)
#include <atomic>

#include "verify/verify_conv_kernel.cuh"
#include "verify/verify_ssm_launch.cuh"

namespace {
std::atomic<long> n_m1lean{0}, n_m1dec{0}, n_dec{0}, n_declast{0}, n_deck{0}, n_tc{0}, n_split{0}, n_lean128{0}, n_lean256{0}, n_general_m2{0}, n_general_m1{0}, n_fused{0}, n_conv{0},
    n_wide{0}, n_prepkt{0};
struct EmuReport {
  ~EmuReport() {
    std::fprintf(stderr, "emu launches: m1lean=%ld m1dec=%ld decode=%ld declast=%ld deck=%ld tc=%ld split=%ld lean128=%ld lean256=%ld general_m2=%ld general_m1=%ld fused=%ld conv=%ld wide=%ld prepkt=%ld\n",
                 n_m1lean.load(), n_m1dec.load(), n_dec.load(), n_declast.load(), n_deck.load(), n_tc.load(), n_split.load(), n_lean128.load(), n_lean256.load(), n_general_m2.load(), n_general_m1.load(), n_fused.load(),
                 n_conv.load(), n_wide.load(), n_prepkt.load());
  }
} emu_report;
}  // namespace

namespace mamba_kernels {
namespace {
using namespace verify_kernels;

// The device's opt-in shared memory a block that the launch choice sees: EMU_SMEM_OPTIN (bytes) when set, else an
// H100's 232448 (the emulation itself runs any size).
size_t emu_smem_optin() {
  const char* e = std::getenv("EMU_SMEM_OPTIN");
  return e != nullptr ? static_cast<size_t>(std::atoll(e)) : size_t(232448);
}

template <typename T, int NT>
void (*lean_for(DType in, bool o32))(VerifyStepParams) {  // o32 for fp32 states only, as the launcher
  if constexpr (std::is_same<T, float>::value) {
    if (o32)
      return in == DType::kBFloat16 ? verify_m2_kernel<T, __nv_bfloat16, NT, true>
             : (in == DType::kFloat16 ? verify_m2_kernel<T, __half, NT, true> : verify_m2_kernel<T, float, NT, true>);
  }
  return in == DType::kBFloat16 ? verify_m2_kernel<T, __nv_bfloat16, NT>
         : (in == DType::kFloat16 ? verify_m2_kernel<T, __half, NT> : verify_m2_kernel<T, float, NT>);
}

// A copy of what the split prep kernel may write for each (batch row, unit) of a call: the unit's ring x / B / dt rows
// and meta row at its slot, and its scratch record. restore(): every unit's copy back; restore_unit(b * H + u): one.
struct PrepWrites {
  struct Piece {
    char* at;
    std::vector<char> bytes;
  };
  std::vector<std::vector<Piece>> units;  // [b * H + u]
  explicit PrepWrites(const VerifyStepParams& p) : units(static_cast<size_t>(p.batch * p.H)) {
    const int64_t ein = p.in_dtype == DType::kFloat32 ? 4 : 2;
    for (int64_t b = 0; b < p.batch; ++b) {
      const int64_t s = p.slots[b * p.slots_stride];
      for (int64_t u = 0; u < p.H; ++u) {
        std::vector<Piece>& v = units[static_cast<size_t>(b * p.H + u)];
        auto add = [&v](void* at, int64_t n) {
          char* c = static_cast<char*>(at);
          v.push_back(Piece{c, std::vector<char>(c, c + n)});
        };
        add(p.work + (b * p.H + u) * p.work_unit, p.work_unit * 4);
        if (s < 0 || s >= p.S) continue;  // padding row: the prep writes only its record
        for (int64_t r = 0; r < p.R; ++r) {
          add(static_cast<char*>(p.ring_x) + (s * p.rx_s + u * p.rx_h + r * p.rx_r) * ein, p.P * ein);
          add(static_cast<char*>(p.ring_B) + (s * p.rB_s + u * p.rB_h + r * p.rB_r) * ein, p.N * ein);
          for (int64_t i = 0; i < p.Pd; ++i) add(p.ring_dt + s * p.rdt_s + u * p.rdt_h + r * p.rdt_r + i * p.rdt_p, 4);
        }
        for (int64_t i = 0; i < 2 + p.Kmax; ++i) add(p.meta + s * p.meta_s + u * p.meta_h + i * p.meta_i, 4);
      }
    }
  }
  void restore_unit(int64_t bu) const {
    for (const Piece& c : units[static_cast<size_t>(bu)]) std::memcpy(c.at, c.bytes.data(), c.bytes.size());
  }
  void restore() const {
    for (size_t i = 0; i < units.size(); ++i) restore_unit(static_cast<int64_t>(i));
  }
};

// kern(arg) emulated on c's grid (nothing for an empty grid), counted in *counter.
template <typename Arg>
const char* emu_launch(const SsmLaunch& c, std::atomic<long>* counter, void (*kern)(Arg), const Arg& arg) {
  if (kern == nullptr) return "emu: no kernel";
  if (c.grid == 0) return nullptr;
  ++*counter;
  emu::launch(c.grid, c.threads, c.smem, [&] { kern(arg); }, c.cluster, c.grid_y);
  return nullptr;
}

template <typename T>
const char* emu_ssm(const VerifyStepParams& p) {
  SsmLaunch c = ssm_launch_config<T>(p, /*clusters=*/true, /*decode_auto=*/false, emu_smem_optin());
  if (c.err != nullptr) return c.err;
  if (c.lean) {
    if (const char* env = std::getenv("EMU_LEAN_NT")) {
      const int nt = std::atoi(env);
      size_t smem = 0;
      if ((nt == kM2ThreadsBig || nt == kM2ThreadsSmall) && m2_fits<T>(p, nt, &smem)) {
        c.threads = nt;
        c.smem = smem;
      }
    }
  }
  void (*kern)(VerifyStepParams) =
      c.fused ? verify_fused_kernel<T> : (c.m1 ? verify_ssm_kernel<T, true> : verify_ssm_kernel<T, false>);
  std::atomic<long>* counter = c.fused ? &n_fused : (c.m1 ? &n_general_m1 : &n_general_m2);
  if (c.lean && c.threads == 128) {
    kern = lean_for<T, 128>(p.in_dtype, c.o32);
    counter = &n_lean128;
  } else if (c.lean) {
    if (c.threads != 256) return "emu: unexpected lean block size";
    kern = lean_for<T, 256>(p.in_dtype, c.o32);
    counter = &n_lean256;
  }
  if (c.tc) {
    kern = tc_kernel<T>(p.in_dtype, p.N, c.threads);
    counter = &n_tc;
  }
  if (c.has_o32 && !c.o32) ++n_wide;  // a kernel with both instantiations, run with int64 offsets
  if (c.split) {  // the prep kernel, then the stream kernel (in order: griddepcontrol is a no-op here)
    if (p.work == nullptr || p.work_unit < m2split_ws(p.k, p.R).words) return "emu: split without p.work";
    SsmLaunch cp = c;
    cp.threads = kSplitPrepThreads;
    cp.smem = c.prep_smem;
    std::atomic<long> unused{0};
    void (*pk)(VerifyStepParams) = prep_kernel(p.in_dtype, p.N, c.o32, p.k);
    if (pk != (c.o32 ? prep_kernel_o<true>(p.in_dtype, p.N) : prep_kernel_o<false>(p.in_dtype, p.N))) ++n_prepkt;
    // On a GPU the stream kernel starts while the prep grid runs: what its blocks read before griddepcontrol.wait may
    // predate the prep's writes. So the stream runs on the cache as the prep found it, and each block sees the prep's
    // writes to its unit's rows (PrepWrites) only from its first wait on. The first thread to wait shows them to the
    // whole block: a read that another thread makes before its own wait is covered only where a block barrier stands
    // between it and the first wait (true of the stream kernel's pre-wait rows; its other pre-wait reads are inputs).
    PrepWrites before(p);
    if (const char* err = emu_launch(cp, &unused, pk, p)) return err;
    PrepWrites after(p);
    before.restore();
    std::vector<char> shown(static_cast<size_t>(p.batch * p.H), 0);
    emu::griddep_hook = [&] {
      const size_t blk = emu::cur_block.x;
      if (!shown[blk]) after.restore_unit(static_cast<int64_t>(blk));
      shown[blk] = 1;
    };
    // no SM count here: blocks stage their tile early only by MK_VERIFY_TILE_EARLY
    const char* err = emu_launch(c, &n_split, str_kernel<T>(p.in_dtype, p.N, c.threads), str_params(p, 0));
    emu::griddep_hook = nullptr;
    if (err != nullptr) return err;
    for (int64_t blk = 0; blk < p.batch * p.H; ++blk)  // a block that returned before its wait (a padding row)
      if (!shown[static_cast<size_t>(blk)]) after.restore_unit(blk);
    return nullptr;
  }
  if (c.m1dec)  // compact parameters (M1DecParams)
    return emu_launch(c, &n_m1dec, m1dec_kernel<T>(p.in_dtype, p.N, c.o32), m1dec_params(p));
  if (c.dec && p.k >= 2)  // the short-draft decode kernel (M2DecKParams)
    return emu_launch(c, &n_deck, deck_kernel<T>(p.in_dtype, p.N, c.dec_lanes), m2deck_params(p, c.dec_lanes));
  if (c.dec)  // the decode kernel takes its compact parameters (M2DecParams)
    return emu_launch(c, c.dec_last ? &n_declast : &n_dec,
                      dec_kernel<T>(p.in_dtype, p.N, c.dec_lanes, c.dec_last, c.o32), m2dec_params(p, c.dec_lanes));
  if (c.m1lean) {
    kern = m1_kernel<T>(p.in_dtype, p.N, c.o32);
    counter = &n_m1lean;
  }
  return emu_launch(c, counter, kern, ssm_kernel_params(c, p));
}
}  // namespace

const char* verify_step_cuda(const VerifyStepParams& p, void*) {
  switch (p.state_dtype) {
    case DType::kFloat32: return emu_ssm<float>(p);
    case DType::kFloat16: return emu_ssm<__half>(p);
    case DType::kBFloat16: return emu_ssm<__nv_bfloat16>(p);
    default: return "verify_step_cuda: state dtype must be float32, float16 or bfloat16";
  }
}

int64_t verify_step_cuda_workspace(const VerifyStepParams& p) {
  switch (p.state_dtype) {  // the geometry emu_ssm takes
    case DType::kFloat32: return verify_kernels::split_workspace_words<float>(p, true, false, emu_smem_optin());
    case DType::kFloat16: return verify_kernels::split_workspace_words<__half>(p, true, false, emu_smem_optin());
    case DType::kBFloat16: return verify_kernels::split_workspace_words<__nv_bfloat16>(p, true, false, emu_smem_optin());
    default: return 0;
  }
}

const char* conv_verify_step_cuda(const ConvVerifyParams& p, void*) {
  int threads = 0;
  if (const char* err = verify_kernels::conv_launch_config(p, &threads)) return err;
  if (p.batch == 0) return nullptr;
  ++n_conv;
  emu::launch(p.batch, threads, 0, [&] { verify_kernels::conv_verify_kernel(p); });
  return nullptr;
}
}  // namespace mamba_kernels

#define MK_VERIFY_EMULATION
#include "verify/verify_bind_cuda.cpp"

// offsets_fit32 on a small layer (batch 2, H 4, P 8, N 16, ring 8, Kmax 4, contiguous) whose state pool has S slots at
// slot stride st_s and whose parents have token stride par_k: the host check behind the kernels' 32-bit offsets
// (tests/test_verify_cuda_emu.py).
extern "C" int emu_offsets_fit32(long long S, long long st_s, long long par_k) {
  mamba_kernels::VerifyStepParams p;
  p.batch = 2; p.k = 1; p.Kmax = 4; p.H = 4; p.P = 8; p.N = 16; p.S = S; p.R = 8; p.G = 1;
  p.st_s = st_s; p.st_h = 8 * 16; p.st_p = 16;
  p.par_b = 4; p.par_k = par_k;
  p.meta_s = 4 * 8; p.meta_h = 8; p.meta_i = 1;
  p.x_b = 4 * 8; p.x_h = 8; p.y_b = 4 * 8; p.y_h = 8; p.B_b = 16; p.C_b = 16;
  return mamba_kernels::verify_kernels::offsets_fit32(p) ? 1 : 0;
}

// The launch the GPU would make for a one-token call (decode_auto, clusters) of a small contiguous layer with fp32
// state: Mamba-1 (m1 = 1: H 4, P 64, N 16) or Mamba-2 (H 4, P 128, N 128), `batch` rows, S slots. out[0]: 1 for
// verify_m1dec_kernel, 2 for verify_m2dec_kernel, 0 for another kernel; out[1], out[2]: the grid's x and y
// (tests/test_verify_cuda_emu.py: the decode kernels' (blocks, batch) grids and their batch / pool bounds).
extern "C" void emu_decode_launch(int m1, long long batch, long long S, long long* out) {
  using namespace mamba_kernels;
  VerifyStepParams p;
  const int64_t H = 4, P = m1 ? 64 : 128, N = m1 ? 16 : 128, R = 8;
  p.batch = batch; p.k = 1; p.Kmax = 2; p.H = H; p.P = P; p.N = N; p.S = S; p.R = R; p.G = 1;
  p.Pd = m1 ? P : 1; p.Pa = m1 ? P : 1; p.Na = m1 ? N : 1;
  p.in_dtype = DType::kBFloat16; p.state_dtype = DType::kFloat32;
  p.x_b = p.y_b = p.z_b = H * P; p.x_k = p.y_k = p.z_k = H * P; p.x_h = p.y_h = p.z_h = P;
  p.dt_b = p.dt_k = H * p.Pd; p.dt_h = p.Pd; p.dt_p = 1;
  p.A_h = p.Pa * p.Na; p.A_p = m1 ? N : 0; p.A_n = m1 ? 1 : 0;
  p.B_b = p.B_k = p.C_b = p.C_k = N; p.B_g = p.C_g = N;
  p.D_h = m1 ? P : 1; p.D_p = m1 ? 1 : 0; p.dtb_h = p.Pd; p.dtb_p = m1 ? 1 : 0;
  p.st_s = H * P * N; p.st_h = P * N; p.st_p = N;
  p.rx_s = R * H * P; p.rx_r = H * P; p.rx_h = P;
  p.rB_s = R * H * N; p.rB_r = H * N; p.rB_h = N;
  p.rdt_s = R * H * p.Pd; p.rdt_r = H * p.Pd; p.rdt_h = p.Pd; p.rdt_p = 1;
  p.meta_s = H * (2 + p.Kmax); p.meta_h = 2 + p.Kmax; p.meta_i = 1;
  const verify_kernels::SsmLaunch c = verify_kernels::ssm_launch_config<float>(p, true, true, 227 * 1024);
  out[0] = c.m1dec ? 1 : (c.dec ? 2 : 0);
  out[1] = c.grid;
  out[2] = c.grid_y;
}
