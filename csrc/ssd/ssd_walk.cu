// CUDA dispatch of the SSD head-walk stages (ssd_dx_kernel.cuh, ssd_scan_kernel.cuh) and the forward state stage
// (ssd_state_kernel.cuh, ssd_state_wg_kernel.cuh; no torch): checks the sizes the kernels are built for (p 64, n 128,
// chunk 128) and launches them for bf16 inputs.
#include <cstddef>
#include <cstdlib>
#include <type_traits>

#include "common/smem_optin.h"
#include "ssd/ssd_dx_kernel.cuh"
#include "ssd/ssd_fused_walk_kernel.cuh"
#include "ssd/ssd_scan_kernel.cuh"
#include "ssd/ssd_state_wg_kernel.cuh"

namespace mamba_kernels {
namespace {

const char* check_walk(const SsdWalkParams& p) {
  if (p.nheads < 1 || p.ngroups < 1 || p.nheads % p.ngroups != 0) return "ngroups must divide nheads";
  if (p.nheads * kSsdWalkHeaddim * kSsdWalkChunk >= (int64_t(1) << 31))  // the tile loads' 32-bit row offsets
    return "nheads * 64 * 128 must be below 2^31";
  if (p.ngroups * kSsdWalkDstate * kSsdWalkChunk >= (int64_t(1) << 31)) return "ngroups * 128 * 128 must be below 2^31";
  if (p.num_ctas < 1) return "num_ctas must be positive";
  if (p.n_slots < 0 || p.seqlen < 0 || p.batch < 0) return "negative size";
  if (p.tab == nullptr && p.n_slots > p.batch * p.chunks_per_row) return "n_slots exceeds the batch's chunks";
  if (p.cb == nullptr || p.rows == nullptr || p.a == nullptr || p.dtp == nullptr) return "missing input";
  return nullptr;
}

// The stages' A/B switches, read at every launch (a test flips them within one process; one getenv is nothing next
// to a ~300 us kernel): unset or empty -> the default, "0" -> off, anything else -> on.
//   MK_SSD_WALK_STAGED (on): the outputs go through the warps' staging rows (SsdWalkParams::staged_stores). H200,
//     shape 1 (03b0e07): F2 328 us staged against 339 direct, B2 313.5 against 315.
//   MK_SSD_WALK_PINGPONG (on): F2 and B2 (ssd_scan_kernel, ssd_dx_kernel) run as two teams of 8 warps a CTA
//     (walk_items_pingpong) where the device gives a block walk_smem_bytes(2); off: one team (walk_items). H200,
//     shape 1 (768cb6a): F2 271.8 us against 325.1, B2 289.5 against 310.3.
//   MK_SSD_STATE_SKEW (on): F1's warps 4-7 store their h_in blocks after the chunk's mma (ssd_state_kernel's kSkew)
//     where the device holds the skew's staging at the walks a CTA that the plain kernel takes (never fewer walks for
//     it). H200, shape 1 (9bd9062, 4 timings each): 159.0-160.0 us against 161.4-162.1.
//   MK_SSD_WALK_PREFETCH (on): with two teams, a team prefetches its next item's stage rows into L2
//     (SsdWalkParams::prefetch). H200, shape 1 (9b5c72a, twice each): F2 271.6-272.5 us against 274.0-274.7, F2 with
//     ypre 306.5 against 311.4, B2 286.6 against 288.0.
//   MK_SSD_WALK_SPLITWAIT (on): with two teams, an item starts when its (p, n) tile has landed; x / z (F2) or dy
//     (B2) are waited for after the item's first phase (SsdWalkParams::split_wait). H200, shape 1 (86fa7a3, twice
//     each): F2 264.7-264.9 us against 271.6-272.0, F2 with ypre 291.4 against 309.9, B2 283.1 against 290.9.
//   MK_SSD_WALK_OWNROWS (on): with the split wait, F2's z rows come by the warp that reads them, in a third cp.async
//     group that only that warp waits for (SsdWalkParams::own_rows). H200, shape 1 (428e5ba, twice each): F2 267.4 /
//     267.8 us against 270.8 / 269.0; with ypre 295.3 against 295.7.
//   MK_SSD_STATE_WGMMA (on): F1 on wgmma (ssd_state_wg_kernel) on a compute capability 9.0 device with an sm_90a
//     build; off: ssd_state_kernel (mma.sync). H200, shape 1: 216.5-221.4 us against 158.9-164.8 when its h_in stores
//     wrote half sectors (9b7f175); 154.8 against 160.2-162.9 with whole sectors (6a9f91d), 150.5-150.9 against
//     164.8-165.0 with the flush's loads ahead of the products (c9810a9); h_in by bulk copies was slower (see the
//     kernel).
//   MK_SSD_WALK_WGMMA (on): F2's C h_in^T on wgmma (ssd_scan_wg_kernel) where it can run: two teams, a build with
//     sm_90a code (setup.py defines MK_BUILT_SM90A when TORCH_CUDA_ARCH_LIST has 9.0a), a compute capability 9.0
//     device. H200, shape 1 (111d36c, twice each): F2 235.5 / 235.2 us against 269.2 / 271.4, with ypre 287.6
//     against 294.0.
//   MK_SSD_STATE_PAIRS (on, kStatePairsDefault): F1's wgmma kernel keeps walks 2 u and 2 u + 1 in one
//     128-byte-swizzled x tile and adds their products as one m64n64 (the chunk's B tile read once for both;
//     ssd_state_wg_kernel.cuh, kPairs). H200, shape 1 (f7f90e8, twice each): 148.9 / 148.7 us against 151.2 / 150.6.
//   MK_SSD_WALK_LDSM (on, kWalkLdsmDefault): F2's wgmma kernel loads its epilogue's x / z pairs by ldmatrix
//     (ssd_scan_kernel.cuh, scan_epilogue's kLdsm). H200, shape 1 (f7f90e8, twice each): 231.4 / 234.7 us against
//     236.3 / 237.5.
//   MK_SSD_STATE_TMA (on, kStateTmaDefault): with the paired products, F1's h_in staged as 128-byte-swizzled boxes
//     and stored by the tensor memory accelerator (ssd_state_wg_kernel.cuh, kTma) instead of from registers. H200,
//     shape 1 (5431b9a, three alternating profiles each): 133.0 / 135.8 / 133.5 us against 149.2 / 145.6 / 148.7.
//     F2's output blocks by the same kind of stores (a warp's 16 rows of 64 p as a 2 KB box, lane 0 issuing its
//     copy) did not pay: 233.5-237.6 us against 231.8-234.5 (43a8ab5, three alternating profiles each; removed).
//   MK_SSD_STATE_TMA_LOAD (on, kStateTmaLoadDefault): with the TMA stores, F1's B and x tiles by tensor-map loads
//     completing on an mbarrier a stage (ssd_state_wg_kernel.cuh, kTmaLoad) instead of ~19 cp.async a thread.
//     H200, shape 1 (f06d819, two alternating profiles each): 126.3 / 128.2 us against 137.5 / 136.2. F2's stages
//     by the same kind of loads (the (p, n) tile, x and z on three barriers a team, issued by the team's thread 0;
//     x / z 128-byte-swizzled) did not pay: 243.5-245.3 us against 231.7-236.5 (1566722, three alternating profiles
//     each; removed).
//   MK_SSD_STATE_LATE_WAIT (on, kStateLateWaitDefault): with the TMA loads, the issuer waits for the copy engine's
//     reads of a chunk's h_in boxes only before the next chunk's staging barrier, not before the chunk's last barrier
//     (ncu: the loop-end barrier held 16% of F1's stall samples, behind the issuer's wait). H200, shape 1 (37075c1 /
//     31aeccf, two alternating profiles each): 116.7 against 126.3 us, 119.5 / 119.3 against 125.3 / 127.8.
//   MK_SSD_STATE_WIDE (on, kStateWideDefault): with the late wait, F1's products of a k16 step as one m64n(32 W)k16
//     wgmma over every walk's x instead of one a pair (ssd_state_wg_kernel.cuh, kWide): the B tile (the A operand) is
//     read from shared memory once a k16 step. H200, shape 1 (17e34f6, three alternating profiles each): 107.1-107.6
//     us against 116.6-117.1.
//   MK_SSD_STATE_LEAN (2, kStateLeanDefault): with the wide products, 1: the stage's a / dt' copies and box coordinates
//     from addresses fixed once a CTA (kLeanRows; no division and no 64-bit index products a chunk), 2: that and the
//     x scaling a token row a thread (kRowScale; one exp a walk instead of two). H200, shape 1 (9d8297d, three
//     alternating profiles each): 0 / 1 / 2: 107.6-110.3 / 104.7-107.8 / 99.4-100.8 us.
//   MK_SSD_WALK_LEAN_NEXT (on, kWalkLeanNextDefault): F2 / B2's ping-pong teams find their next item (and the
//     prefetch's) by adding two heads within the chunk instead of next_item twice (SsdWalkParams). H200, shape 1
//     (e68a3d6, three alternating profiles each): F2 231.4-232.2 us against 234.0-234.9; B2 278.7 against 280.2.
//   MK_SSD_WALK_RING (on, kWalkRingDefault): F2's wgmma kernel on a ring of three stages for its two teams, the team
//     that frees a stage filling it for the other team's item three on (ssd_walk_ring.cuh, ssd_scan_ring_kernel),
//     where the device gives a block kRingSmemBytes. H200, shape 1 (session 36, two alternating profiles each): F2
//     221.5 / 225.3 us against 235.1 / 233.8.
//   MK_SSD_WALK_RING_TMA (on, kWalkRingTmaDefault): the ring's fills by the copy engine, one thread issuing the
//     item's boxes, x / z 128-byte-swizzled (ssd_walk_ring.cuh, load_stage_ring_tma). H200, shape 1 (session 37): the
//     F2 lab 212.6-213.9 us against 229.0-229.4 with the cp.async fills; in the forward 205.5-207.4 against ~224.
//     Off in sessions 38-42: forwards with it failed now and then with "unspecified launch failure" in F2 (every few
//     hundred to ~10,000 calls back to back). Cause (session 42): a team's parity wait for item j + 3 on barrier
//     j % 3 could pass on item j's phase when item j's own fill had not landed (copy-engine fills complete in any
//     order); fixed by two barriers a stage (item j on barrier j % 6). After the fix (session 43, H100): 36,000
//     forwards back to back in the modes that failed, no failure, no mismatch. bench/notes/chunked_ssd_2.md.
//   MK_SSD_WALK_RING_TEAMS=1 (a lab, without MK_SSD_WALK_RING_TMA): the cp.async ring with one team of 8 warps doing
//     every item (ssd_scan_ring_kernel<E, 1>, at most 168 registers a thread): how fast F2's items run with one output
//     team, as the fused F1 + F2 design's would beside its state warpgroup (docs/ssd_fused_walk_design.md, decision
//     1). Written in session 39 without a GPU (CPU emulation only); F2's time with it against the default is the lab.
//   MK_SSD_WALK_PDL (on, kWalkPdlDefault): the ring kernels launched as programmatic dependents of the kernel before
//     them on the stream: F1 where the forward runs K0 + K1 as one launch (MK_SSD_PREP_ONE_LAUNCH, on by default;
//     ~1.3 us of a forward's wall time at shape 1); F1 lets them launch at its start, they wait for its end before
//     their first fill. With the two-launch prep the kernel before F2 is K1, which never triggers: a plain launch.
//     On by default in session 37 beside the TMA ring, off with it in sessions 38-42, on again with it since the
//     ring's barrier fix (session 43).
//   MK_SSD_STATE_PDL (off, kStatePdlDefault; a lab written in session 45 without a GPU): F1's wgmma kernels launched
//     as programmatic dependents of the kernel before them (K0 + K1, or the bf16 initial states' conversion): their
//     launch and CTA placement overlap that kernel's tail; they wait (griddep_wait, always in the kernel: a no-op
//     without the attribute) before their first read.
//   F2 variants measured on the H200 at shape 1 and removed: the earlier-block weights u_s dt'_s as exp(a_m - a_e)
//     ut[s] from a per-item table the team writes (one exp a block and lane instead of four; MK_SSD_WALK_UTABLE,
//     24f8e82, three alternating profiles each): 233.0-237.2 us against 232.5-235.8.
//   F1 variants measured on the H200 at shape 1 and removed (alternating profiles; lab records in bench/results/lab/):
//     the x scaling with every walk's loads issued before any store (ffe9dc4): 131.1-132.4 us against 125.3-127.9;
//     S (p, n) += x'^T B with the scaled x fragments in registers (ldmatrix.trans, wgmma with A from registers, no
//     scaling phase; a4d0e3a): 154.7-157.3 against 116.5-116.9; chunk k + 1's x scaled while chunk k's products run
//     (d81ba62): 117.8-118.1 against 117.4-118.0; four stages of half a chunk loaded three halves ahead (17dfd5d):
//     149.3-149.4 against 116.9-120.2; the next chunk's a / dt' rows waited for at the loop's end, without the
//     barrier at its top (98140af): 125.4-127.3 against 119.3-119.9; with the wide products and lean loads, the
//     chunk's entry state staged right after the loop's top barrier, before the tiles' wait (MK_SSD_STATE_LEAN=3,
//     2964d58): 109.2-109.6 against 99.5-99.8.
constexpr bool kStatePairsDefault = true, kWalkLdsmDefault = true, kStateTmaDefault = true,
               kStateTmaLoadDefault = true, kStateLateWaitDefault = true,
               kStateWideDefault = true;  // (the CPU emulation's checks read them too)
constexpr int kStateLeanDefault = 2;
constexpr bool kWalkLeanNextDefault = true, kWalkRingDefault = true, kWalkRingTmaDefault = true,
               kWalkPdlDefault = true, kStatePdlDefault = false;
bool env_switch(const char* name, bool dflt) {
  const char* v = std::getenv(name);
  return v == nullptr || v[0] == '\0' ? dflt : v[0] != '0';
}

// MK_SSD_STATE_LEAN (0, 1 or 2; kStateLeanDefault): with the wide products, the leaner loads (1) and the row scaling
// too (2); see ssd_state_wg_kernel.cuh.
int state_lean() {
  const char* v = std::getenv("MK_SSD_STATE_LEAN");
  return v == nullptr || v[0] == '\0' ? kStateLeanDefault : v[0] == '2' ? 2 : v[0] == '1' ? 1 : 0;
}

// Whether F1 runs ssd_state_wg_kernel (MK_SSD_STATE_WGMMA) on this device, whose blocks may opt into `optin` bytes.
bool state_wgmma(int64_t optin) {
  return env_switch("MK_SSD_STATE_WGMMA", true) && device_runs_sm90a() && ssd_walk::state_wg_smem_bytes(1) <= optin;
}

// F2 / B2 (the walk kernel K, one or two teams, or two teams on wgmma: KW, where MK_SSD_WALK_WGMMA and the device
// allow it, on the three-stage ring: KR, where MK_SSD_WALK_RING and the device's shared memory allow that too, a
// callable launching it: (params, stream) -> cudaError_t; nullptr: none) with the switches applied.
template <typename P, typename K1, typename K2, typename KW = std::nullptr_t, typename KR = std::nullptr_t>
const char* launch_walk_stage(const P& p, K1 one_team, K2 two_teams, void* stream, KW two_teams_wgmma = nullptr,
                              KR two_teams_ring = nullptr) {
  if (const char* e = check_walk(p.w)) return e;
  P q = p;
  q.w.staged_stores = env_switch("MK_SSD_WALK_STAGED", true);
  q.w.prefetch = env_switch("MK_SSD_WALK_PREFETCH", true);
  q.w.split_wait = env_switch("MK_SSD_WALK_SPLITWAIT", true);
  q.w.own_rows = env_switch("MK_SSD_WALK_OWNROWS", true);
  q.w.lean_next = env_switch("MK_SSD_WALK_LEAN_NEXT", kWalkLeanNextDefault);
  const auto s = static_cast<cudaStream_t>(stream);
  const bool pingpong = env_switch("MK_SSD_WALK_PINGPONG", true) && device_smem_optin() >= ssd_walk::walk_smem_bytes(2);
  cudaError_t e;
  if constexpr (!std::is_same_v<KW, std::nullptr_t>) {
    if (pingpong && env_switch("MK_SSD_WALK_WGMMA", true) && device_runs_sm90a()) {
      if constexpr (!std::is_same_v<KR, std::nullptr_t>) {
        if (env_switch("MK_SSD_WALK_RING", kWalkRingDefault) && device_smem_optin() >= ssd_walk::kRingSmemBytes) {
          e = two_teams_ring(q, s);
          return e == cudaSuccess ? nullptr : launch_error_string(e);
        }
      }
      e = ssd_walk::launch_walk<2>(two_teams_wgmma, q, q.w, s);
      return e == cudaSuccess ? nullptr : launch_error_string(e);
    }
  }
  e = pingpong ? ssd_walk::launch_walk<2>(two_teams, q, q.w, s) : ssd_walk::launch_walk<1>(one_team, q, q.w, s);
  return e == cudaSuccess ? nullptr : launch_error_string(e);
}

cudaError_t launch_state_w(const SsdStateParams& p, int walks, ssd_walk::StateKernel which, cudaStream_t s) {
  const bool pdl = env_switch("MK_SSD_STATE_PDL", kStatePdlDefault);
  switch (walks) {
    case 1: return ssd_walk::launch_state<1>(p, which, s, pdl);
    case 2: return ssd_walk::launch_state<2>(p, which, s, pdl);
    case 3: return ssd_walk::launch_state<3>(p, which, s, pdl);
    case 4: return ssd_walk::launch_state<4>(p, which, s, pdl);
    case 5: return ssd_walk::launch_state<5>(p, which, s, pdl);
    default: return ssd_walk::launch_state<6>(p, which, s, pdl);
  }
}

// A tensor map (common/tma.h: 64-column boxes, 128-byte swizzle) of a (tokens, h 64) bf16 tensor (x or z: (b, l, h,
// p) with p 64) whose boxes are a chunk's 128 token rows of one head: F1's x loads, the TMA ring's x / z fills.
const char* encode_token_rows(TmaDesc* map, const void* t, uint64_t tokens, uint64_t nheads) {
  constexpr uint64_t kP = ssd_walk::kP;
  return tma_encode_bf16(map, const_cast<void*>(t), tokens, 1, nheads * kP, nheads * kP * 2, nheads * kP * 2,
                         ssd_walk::kQ);
}

// A tensor map of the chunk-entry states h_in (n_slots, h, p 64, n 128) bf16 as (n_slots h 64) rows of n, boxes of
// box_rows p rows x 64 n: F1's stores (32 rows), the TMA ring's (p, n) tile fills (64).
const char* encode_state_rows(TmaDesc* map, void* hin, int64_t n_slots, uint64_t nheads, uint32_t box_rows) {
  constexpr uint64_t kP = ssd_walk::kP, kN = ssd_walk::kN;
  return tma_encode_bf16(map, hin, uint64_t(n_slots) * nheads * kP, 1, kN, kN * 2, kN * 2, box_rows);
}

const char* check_state(const SsdStateParams& p) {
  if (p.nheads < 1 || p.ngroups < 1 || p.nheads % p.ngroups != 0) return "ngroups must divide nheads";
  if (p.num_ctas < 1) return "num_ctas must be positive";
  if (p.nseq < 0 || p.n_slots < 0 || p.seqlen < 0 || p.batch < 0) return "negative size";
  if (p.seqlen > INT32_MAX) return "seqlen must fit int32";
  if (p.cu == nullptr && (p.nseq != p.batch || p.n_slots != p.batch * p.chunks_per_row))
    return "without cu_seqlens: nseq must be the batch and n_slots batch * ceil(l / 128)";
  if (p.cu != nullptr && (p.batch != 1 || p.first == nullptr)) return "cu_seqlens: expected batch 1 and first";
  if (p.x == nullptr || p.B == nullptr || p.a == nullptr || p.dtp == nullptr || p.hin == nullptr ||
      p.final_states == nullptr)
    return "missing input";
  return nullptr;
}

}  // namespace

bool ssd_walk_fits(int stage, int device) {
  const int64_t optin = smem_optin_of(device);
  const int need = stage == 2 ? ssd_walk::state_smem_bytes(1) : ssd_walk::walk_smem_bytes(1);
  return optin >= need;
}

const char* ssd_state_cuda(const SsdStateParams& p, void* stream) {
  if (const char* e = check_state(p)) return e;
  const int64_t optin = device_smem_optin();
  if (optin < ssd_walk::state_smem_bytes(1))
    return "ssd_state_cuda: this GPU gives a block less shared memory than the stage needs";
  const auto s = static_cast<cudaStream_t>(stream);
  using ssd_walk::StateKernel;
  const bool wgmma = state_wgmma(optin);
  const int walks = ssd_walk::state_walks_per_cta(p, optin, wgmma);
  StateKernel which = StateKernel::kPlain;
  if (wgmma)
    which = env_switch("MK_SSD_STATE_PAIRS", kStatePairsDefault) ? StateKernel::kWgmmaPairs : StateKernel::kWgmma;
  else if (env_switch("MK_SSD_STATE_SKEW", true) && ssd_walk::state_skew_fits(walks, optin)) which = StateKernel::kSkew;
  if (which == StateKernel::kWgmmaPairs && env_switch("MK_SSD_STATE_TMA", kStateTmaDefault) &&
      ssd_walk::state_wg_smem_bytes(walks, true, true, true) <= optin) {
    // h_in as a (n_slots h kP) x kN bf16 matrix for the TMA stores; with MK_SSD_STATE_TMA_LOAD, B as (tokens, g, kN)
    // and x as (tokens, 1, h kP) for the tiles' loads; a tensor the maps cannot describe keeps the register stores /
    // cp.async copies
    ssd_walk::SsdStateRowScaleParams q;  // (every other SsdState*Params of the TMA variants as well)
    static_cast<SsdStateParams&>(q) = p;
    const uint64_t T = uint64_t(p.batch) * uint64_t(p.seqlen), H = uint64_t(p.nheads), G = uint64_t(p.ngroups);
    constexpr uint64_t kN = ssd_walk::kN;
    if (encode_state_rows(&q.hin_map, p.hin, p.n_slots, H, ssd_walk::kHalfP) == nullptr) {
      const bool loads =
          env_switch("MK_SSD_STATE_TMA_LOAD", kStateTmaLoadDefault) && T > 0 &&
          tma_encode_bf16(&q.b_map, const_cast<void*>(p.B), T, G, kN, kN * 2, G * kN * 2, ssd_walk::kQ) == nullptr &&
          encode_token_rows(&q.x_map, p.x, T, H) == nullptr;
      const bool late = env_switch("MK_SSD_STATE_LATE_WAIT", kStateLateWaitDefault);
      const int lean = state_lean();
      const StateKernel tk = !loads ? StateKernel::kWgmmaPairsTma
                             : !late ? StateKernel::kWgmmaPairsTmaLoad
                             : !env_switch("MK_SSD_STATE_WIDE", kStateWideDefault) ? StateKernel::kWgmmaPairsTmaLoadLate
                             : lean == 0 ? StateKernel::kWgmmaWide
                             : lean == 1 ? StateKernel::kWgmmaLean
                                         : StateKernel::kWgmmaRowScale;
      const cudaError_t e = launch_state_w(q, walks, tk, s);
      return e == cudaSuccess ? nullptr : launch_error_string(e);
    }
  }
  const cudaError_t e = launch_state_w(p, walks, which, s);
  return e == cudaSuccess ? nullptr : launch_error_string(e);
}

const char* ssd_dx_cuda(const SsdDxParams& p, void* stream) {
  return launch_walk_stage(p, ssd_walk::ssd_dx_kernel<__nv_bfloat16, 1>, ssd_walk::ssd_dx_kernel<__nv_bfloat16, 2>,
                           stream);
}

// F2 on the ring (launch_walk_stage's KR): with MK_SSD_WALK_RING_TMA (on, kWalkRingTmaDefault) and tensor maps of x, z
// and h_in that the driver encodes, the TMA-filled kernel (ssd_scan_ring_tma_kernel); else the cp.async one. Either
// as a programmatic dependent of the kernel before it (MK_SSD_WALK_PDL).
cudaError_t launch_scan_ring(const SsdScanParams& p, cudaStream_t s) {
  namespace sw = ssd_walk;
  const bool pdl = env_switch("MK_SSD_WALK_PDL", kWalkPdlDefault);
  if (env_switch("MK_SSD_WALK_RING_TMA", kWalkRingTmaDefault)) {
    sw::SsdScanTmaParams q;
    static_cast<SsdScanParams&>(q) = p;
    const uint64_t T = uint64_t(p.w.batch) * uint64_t(p.w.seqlen), H = uint64_t(p.w.nheads);
    const bool maps =
        T > 0 && encode_token_rows(&q.x_map, p.x, T, H) == nullptr &&
        (p.z == nullptr || encode_token_rows(&q.z_map, p.z, T, H) == nullptr) &&
        encode_state_rows(&q.hin_map, const_cast<void*>(p.hin), p.w.n_slots, H, sw::kP) == nullptr;
    if (maps)
      return sw::launch_walk<2>(sw::ssd_scan_ring_tma_kernel<__nv_bfloat16>, q, q.w, s, sw::kRingSmemBytes, pdl);
  }
  const char* teams = std::getenv("MK_SSD_WALK_RING_TEAMS");
  if (teams != nullptr && teams[0] == '1')
    return sw::launch_walk<1>(sw::ssd_scan_ring_kernel<__nv_bfloat16, 1>, p, p.w, s, sw::kRingSmemBytes, pdl);
  return sw::launch_walk<2>(sw::ssd_scan_ring_kernel<__nv_bfloat16>, p, p.w, s, sw::kRingSmemBytes, pdl);
}

const char* ssd_scan_cuda(const SsdScanParams& p, void* stream) {
  return launch_walk_stage(p, ssd_walk::ssd_scan_kernel<__nv_bfloat16, 1>, ssd_walk::ssd_scan_kernel<__nv_bfloat16, 2>,
                           stream,
                           env_switch("MK_SSD_WALK_LDSM", kWalkLdsmDefault)
                               ? ssd_walk::ssd_scan_wg_kernel<__nv_bfloat16, true>
                               : ssd_walk::ssd_scan_wg_kernel<__nv_bfloat16, false>,
                           launch_scan_ring);
}

// The fused walk (a lab; ssd_fused_walk_kernel.cuh): CTAs of 256 threads, two an SM; a CTA a (sequence, head) walk,
// or num_ctas CTAs sharing the walks' chunks evenly (hand-offs through scratch / flags).
const char* ssd_fused_walk_cuda(const SsdFusedWalkParams& p, void* stream) {
  if (p.batch < 0 || p.seqlen < 0 || p.nheads < 1 || p.ngroups < 1 || p.nheads % p.ngroups != 0)
    return "ssd_fused_walk_cuda: bad sizes (ngroups must divide nheads)";
  if (p.x == nullptr || p.B == nullptr || p.C == nullptr || p.a == nullptr || p.dtp == nullptr || p.out == nullptr)
    return "ssd_fused_walk_cuda: missing input";
  if (!device_runs_sm90a()) return "ssd_fused_walk_cuda: needs an sm_90a build on a compute capability 9.0 device";
  const int64_t walks = p.batch * p.nheads, steps = walks * ((p.seqlen + kSsdFusedChunk - 1) / kSsdFusedChunk);
  if (walks == 0 || p.seqlen == 0) return nullptr;
  if (walks >= (int64_t(1) << 31) || steps >= (int64_t(1) << 40)) return "ssd_fused_walk_cuda: too many walks";
  const int64_t ctas = p.num_ctas > 0 ? (p.num_ctas < steps ? p.num_ctas : steps) : walks;
  if (ctas != walks && (p.scratch == nullptr || p.flags == nullptr))
    return "ssd_fused_walk_cuda: shared walks need scratch and flags";
  const char* lab = std::getenv("MK_SSD_FUSED_LAB");  // (timing only: ssd_fused_walk_kernel's kLab)
  const int lab_bits = lab == nullptr ? 0 : std::atoi(lab);
  using E = __nv_bfloat16;
  namespace sw = ssd_walk;
  const bool cb_in = p.cb == nullptr;  // C B^T computed in the kernel (kCbIn)
  using K = void (*)(SsdFusedWalkParams);
  const K in[3] = {sw::ssd_fused_walk_kernel<E, 0, true>, sw::ssd_fused_walk_kernel<E, 1, true>,
                   sw::ssd_fused_walk_kernel<E, 2, true>};
  const K k1[3] = {sw::ssd_fused_walk_kernel<E, 0>, sw::ssd_fused_walk_kernel<E, 1>, sw::ssd_fused_walk_kernel<E, 2>};
  const int li = lab_bits == 1 || lab_bits == 2 ? lab_bits : 0;
  const char* cwg = std::getenv("MK_SSD_FUSED_CAUSAL_WG");  // the in-walk C B^T's causal part on wgmma (a lab)
  const bool causal_wg = cb_in && li == 0 && cwg != nullptr && cwg[0] == '1';
  const K kernel = causal_wg ? sw::ssd_fused_walk_kernel<E, 0, true, true> : cb_in ? in[li] : k1[li];
  cudaError_t e = opt_in_smem(kernel, ssd_walk::kFSmemBytes, "the fused SSD walk (lab)");
  if (e == cudaSuccess) {
    cudaLaunchConfig_t cfg = {};
    cfg.blockDim = dim3(256);
    cfg.gridDim = dim3(unsigned(ctas));
    cfg.dynamicSmemBytes = size_t(ssd_walk::kFSmemBytes);
    cfg.stream = static_cast<cudaStream_t>(stream);
    e = cudaLaunchKernelEx(&cfg, kernel, p);
    if (e == cudaSuccess) e = cudaGetLastError();
  }
  return e == cudaSuccess ? nullptr : launch_error_string(e);
}

}  // namespace mamba_kernels
