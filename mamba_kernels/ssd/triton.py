"""Triton kernels for the chunked SSD scan (forward and backward) and their launchers.

The kernels live in _triton_fwd.py / _triton_bwd.py (jit helpers in _triton_jit.py), imported here, their block
configs in _triton_configs.py; this module holds the launchers and the notes below. Where the CUDA extension serves
them (cuda_walk.py: bf16, p 64, n 128, chunk 128, >= 8 heads a group), stages F1, F2 and B2 run as persistent CUDA
head-walk kernels instead.

Algorithm (python_ref/ssd.py::ssd_chunked_ref): chunks of Q tokens that never straddle a sequence; a_t is the
chunk-local cumulative sum of dt'*A (dt' = clamp(softplus(dt + dt_bias))); per chunk and head, with u_s = dt'_s x_s:
    y_t   = exp(a_t) C_t h_in^T + sum_{s<=t} (C_t.B_s) exp(a_t - a_s) u_s + D x_t,   out = y * silu(z)
    h_out = exp(a_L) h_in + sum_s exp(a_L - a_s) u_s^T B_s                          (a_L: a at the chunk's last token)

Forward, 3 launches (4 when a group's heads span several scan programs):
  K0 _ssd_cumsum_fwd_kernel   dt -> dt', a  (fp32, head-major (b, h, l) so later loads are contiguous)
  K1 _ssd_cb_kernel           CB = C B^T per (chunk, group), lower block triangle; only when a group's heads span
                              several scan programs (h / g > 1 for the one-head scan, > HB for the head-block one),
                              so the scan programs read it instead of recomputing it
     _ssd_cumsum_cb_fwd_kernel  K0 and K1 as one launch (MK_SSD_PREP_ONE_LAUNCH, on by default: _one_prep_launch)
  F1 _ssd_state_fwd_kernel    chunk states fused with state passing: one program per (sequence, head, p block,
                              n block) walks its chunks in order with the running state (fp32) in registers and
                              stores the state entering each chunk (states_in) and the final state: no fp32
                              chunk-state round trip through HBM. n is split in two for few walks (ssd_fwd says when).
  F2 _ssd_chunk_scan_kernel   the default scan (_FWD["scan"] = "legacy"): one program per (chunk, head, p block),
                              looping over its row blocks and, inside, the earlier source blocks; configs by chunk
                              size (_configs: 1 / 2 pipeline stages and 2 warps measured fastest on the H200).
                              A call without returned chunk states runs at chunk 128
                              (interface.compute_chunk_size). The A/B alternative:
     _ssd_scan_heads_kernel   one program per (chunk, block of HB heads of one group), looping over its row blocks:
                              every dot is shared by the HB heads ((BM, K) x (K, HB * p): C_m h_in^T, CB x); per-head
                              decays are rank-1 factors on the x rows and the accumulator rows, the diagonal block
                              included (exact per-head fallback for steep decay); D, z gate; the pre-gate y (x
                              dtype) is stored only when a backward will run. HB * p <= 128 (shape 1: HB = 2).
                              (measured slower on the H200: 1.08 vs 0.74 ms at shape 1).
  (Tried and removed 2026-11-30: F1 and F2 as one walk a (sequence, head, p block), a whole chunk an iteration, x
  read once: 0.73 / 0.35 ms alone at shapes 1 / 2 against 0.54 / 0.29 for the whole two-pass forward; too few
  programs walking chunks one after another.)
Backward, 8 launches (+ zero fills of the fp32 accumulators: one for the internal ones, one each for dA / d dt_bias /
dD; their casts to the parameters' dtypes; for D of shape (h,) a sum of dD over p):
  K0, K1 recomputed (cheap; K1 always)
  B1 _ssd_state_bwd_kernel    reverse walk per (sequence, head, p block): dy = dout silu(z) and dz (stored),
                              dS_c (gradient w.r.t. the state after chunk c, stored), d a_L through the decay,
                              d initial_states
  B2 _ssd_bwd_dx_kernel       per (chunk, head, p block), looping over source blocks: du_s = sum_{t>=s} M_ts dy_t +
                              exp(a_L-a_s) B_s dS^T -> dx, d dt' (direct), d a of the state-in / state-out paths
                              (the latter in B4 with _FWD["da_out"] = "dc"), dD
  B3 _ssd_bwd_dcb_kernel      per (chunk, t block, s block, group), looping over the group's heads:
                              dCB = sum_h (dy_t u_s^T) o exp(a_t - a_s) (stored), intra-chunk d a (row / column sums)
  B4 _ssd_bwd_dbc_kernel x2   per (chunk, row block, group), looping over the group's heads: dB = dCB^T C +
                              sum_h exp(a_L-a) u dS, then dC = dCB B + sum_h exp(a) dy h_in; written once in B/C's dtype
  B5 _ssd_cumsum_bwd_kernel   d a -> reverse cumsum -> d dt', dA, then back through clamp / softplus

Chunk indices: without cu_seqlens they are computed arithmetically in the kernels (no table, no host sync, CUDA-graph
capturable); with cu_seqlens a (start, len) table per chunk slot is built on the device from cu_seqlens with torch
ops (no host sync here; the public op's input check reads cu_seqlens on the host).

Performance notes (H200: 4.27 TB/s copy, 687 TFLOP/s bf16 GEMM measured; L2->SM taken as ~7 TB/s; Q = 256, bf16).
  * Matmuls take bf16/fp16 operands (tiles cast right before tl.dot, fp32 accumulation); decay / cumsum / exp stay
    fp32. fp32 inputs use 3xTF32 (fp32-level accuracy on tensor cores; an IEEE FMA dot spills at K = 128..256).
    The interpreter runs IEEE fp32 dots (its bf16 dot is wrong) but still exercises the bf16 intermediate buffers.
  * Intermediates that only feed dots (states_in, dS, dy, CB, dCB) are bf16 for bf16 inputs (fp32 for fp32 / fp16);
    final states are fp32, and states_in is fp32 when the caller returns chunk states.
  * Decay: off-diagonal blocks use exp(a_t - a_s) = exp(a_t - a_r) exp(a_r - a_s) with a_r at the block boundary
    (both factors <= 1 for a decaying a), i.e. 2 BM exps per block instead of BM^2; in the one-head kernels only
    diagonal blocks pay BM^2 (16K exps per chunk-head instead of mamba_ssm's 41K). The head-block kernels factorise
    the diagonal block too (column factor up to exp(span)), with an exact per-head path for blocks whose decay span
    exceeds span_max (60 for bf16 / fp32, 5 for fp16's range): ~1.3K exps per chunk-head.
  * Forward roofline, b4 l4096 h80 p64 n128 g1 (64 chunks x 80 heads = 5120 chunk-heads), bf16: HBM minimum x, z,
    out (3 x 168 MB) + dt, B, C (11 MB) = 0.51 GB -> 0.12 ms; useful FLOPs per token-head Q p (causal intra) + 2 p n
    (chunk state) + 2 p n (state -> output) = 49 K at Q = 256 (41 K at 128, 37 K at 64) -> 64 GFLOP -> 0.094 ms
    (0.079 / 0.07 ms at Q = 128 / 64): memory-bound. This two-pass structure adds a second read of x (F1) and the
    bf16 states_in round trip (2 x 84 MB): 0.85 GB -> 0.20 ms at the copy rate, ~0.25-0.3 ms at 70-80 % of it.
    F1 21 GFLOP, 640 programs (n in two blocks, 2 CTAs / SM); F2 (HB = 2 heads, 2560 programs of 8 warps): per
    chunk-head C_m h_in^T 4.2 MFLOP + 10 of 16 64x64 CB x blocks 5.2 MFLOP -> 48 GFLOP; L2->SM ~0.3 MB per
    chunk-head (C and CB shared by 2 heads, h_in re-read per row block, x blocks re-read by later row blocks).
    mamba_ssm (0.786 ms) moves ~1.6 GB incl. fp32 chunk states; the previous one-head scan measured 0.741 ms.
    b2 l4096 h32 p128 n128 g32: HBM minimum 0.34 GB (B, C are per head here) -> 0.079 ms; 34 GFLOP useful. Two
    passes: + x, B re-read and states_in (2 x 34 MB) -> 0.54 GB -> 0.13 ms; CB has to be recomputed per head (g =
    h): ~40 GFLOP executed. F1 256 programs (n split), F2 1024 programs (HB = 1, p = 128 in one block).
    Estimates from these counts, not measured: bench/bench_ssd.py times each kernel alone and sweeps block configs
    (bench_ssd_kernels, bench_ssd_scan_configs, bench_ssd_state_fwd_configs, bench_ssd_bwd_configs).
  * Backward, shape 1: B1 moves dout, z, ypre in and dy, dz out (5 x 168 MB) + bf16 states: ~1 GB, ~0.25 ms.
    B2 ~48 GFLOP (M^T dy 5.2, B dS^T 4.2, C h_in^T 4.2 MFLOP per chunk-head), HBM x, dy, dx: ~0.2 ms. B3 27 GFLOP,
    dy / x tiles from L2 (0.8 GB): ~0.1 ms. B4 2 x 21 GFLOP, dS / h_in read by 2 row blocks of 128: ~0.1 ms. dB / dC
    are reduced over heads inside B3 / B4 (no (b, l, h, n) fp32 per-head buffers: 2 x 671 MB before). Backward
    ~0.6-0.8 ms, fwd+bwd ~0.9-1.1 ms (target 2.0; mamba_ssm 4.49 ms). Shape 2: fwd+bwd ~0.5-0.8 ms (target 1.8).
    Measured at 220d8a0: fwd+bwd 3.37 / 1.73 ms, i.e. backward ~2.6 / 1.3 ms, 2-3x these estimates (so was the
    forward): bench_ssd_kernels[bwd-*] gives the per-kernel split.
  * Resources at the issue shapes (AOT, Triton 3.7; tests/test_ssd_triton_aot.py prints
    them), sm_90 [sm_80]: shared KB / registers, no spills on sm_90:
      shape 1  F1 90/189 (n split, 4 warps)  K1 64/96  F2 65/255 (HB 2, 8 warps)  B1 177/198  B2 80/225  B3 49/238
               B4 128/231,204   (one-head scan: 81/252, 4 warps)
      shape 2  F1 90/189  F2 80/246 (HB 1, p 128, 8 warps)  B2 (p in 2 blocks) 80/225  B3 97/245  B4 128/235,202.
    Since 2026-11-30 (the sm_90 16-bit configs above were re-chosen on the H200): F1 65/139 at shape 1 (n split,
    64-token steps, 4 stages), 146/180 at shape 2 (n whole, 8 warps); one-head scan at shape 2 75/255 (32-row
    blocks, 4 warps).
    Triton lays a dot whose result feeds another dot with all warps along M ([8, 1] for 8 warps): at BM = 64 that
    computes it twice. The scan's state dot is therefore added after its loop (not its initial accumulator); the
    CB dot recomputed per head at g = h (shape 2) is still duplicated (so it was in the one-head scan).
    The head-block kernels are register-bound (8 warps at ~250 registers: 1 CTA / SM); 256 columns (HB * p) spill,
    so HB * p <= 128 (64 at n = 256). The head-block dx kernel (opt-in) spills ~0.8 KB at 128 columns: 64.
    Only the one-head scan takes the chunk size as a constexpr; the other kernels share their compilations across
    chunk sizes. Every constexpr / dtype variant (varlen, D (h, p), no z, initial / final / chunk states, fp32, fp16,
    n 16..256, p 32..128, Q 64..256) stays below 227 KB on sm_90 and 163 KB on sm_80 (fp32 n = 256 uses 16-row
    blocks).
"""
from __future__ import annotations

import functools
import math
import os

import torch
import triton

from .._backend import device_capability
# --------------------------------------------------------------------------------------------- helpers
from ._triton_configs import (_CFG_OVERRIDE, _EMULATE, _KIND, _REC, _configs, _interpreted, _launch_opts,
                              _small_blocks)
# Kernel variants, switchable for A/B timing (bench/bench_ssd.py). "scan": "heads" (_ssd_scan_heads_kernel: heads
# of a group share the CB / C dots) or "legacy" (_ssd_chunk_scan_kernel: one head per program). "bwd_dx": "legacy"
# (_ssd_bwd_dx_kernel) or "heads" (_ssd_bwd_dx_heads_kernel, same idea as the scan; not the default: H200
# 2026-11-30, 1275 / 574 us at shapes 1 / 2 against 705 / 316 for the one-head kernel, and without spills only at
# 64 columns, i.e. one head of p 64 at the issue shapes).
# Default scan "legacy": measured on the H200 (bf16, b4 l4096 h80 p64 n128 g1) the whole forward took 1.08-1.13 ms
# with "heads" (runs at 0e43d62 and 7583a89) against 0.741 ms with the one-head scan (220d8a0); "heads" stays as
# the A/B alternative until a sweep (bench_ssd_scan_configs) finds it a faster config.
# "da_out": where the state-out path's d a_s = exp(a_s) dy_s.(h_in C_s) is formed: "dc" (the default: from the dot
# dy h_in that B4's dC launch forms anyway, plus a row sum against C and an atomic per head and row; B2 loses a
# (rows, n) x (n, p) dot per source block, its h_in tile and its C loads) or "dx" (that dot in B2). H200 2026-11-30,
# chunk 128: dx 550 against 656 us at shape 1, dB / dC unchanged; forward + backward 2.42 / 1.21 against 2.50 / 1.22 ms.
_FWD = {"scan": "legacy", "bwd_dx": "legacy", "da_out": "dc"}


class record_launches:
    """Context manager: run ssd_fwd / ssd_bwd (e.g. on meta tensors) without launching; `.launches` lists
    (kernel, positional args, keyword constexprs and num_warps / num_stages, grid) with the configs picked for
    sm_<arch>. `replay(i)` launches recorded launch i (bench/bench_ssd.py times the kernels one by one)."""

    def __init__(self, arch: int = 90):
        self.arch = arch
        self.launches = []

    def __enter__(self):
        _REC["launches"], _REC["arch"] = self.launches, self.arch
        return self

    def __exit__(self, *exc):
        _REC["launches"] = None
        return False

    def replay(self, i):
        kernel, args, kw, grid = self.launches[i]
        kernel[grid](*args, **kw)


def _launch(kernel, grid, *args, **kw):
    if _REC["launches"] is not None:
        _REC["launches"].append((kernel, args, kw, grid))
        return
    kernel[grid](*args, **kw)


def _dot_kind(dtype: torch.dtype) -> int:
    """tl.dot operand type: 1 bf16, 2 fp16, 0 fp32 (IEEE). The interpreter's bf16 dot is wrong: fp32 there."""
    if _interpreted():
        return {1: 3, 2: 4}.get(_KIND.get(dtype, 0), 0) if _EMULATE["half_dots"] else 0
    return _KIND.get(dtype, 0)


def _prec(kind: int) -> str:
    """fp32 operands: 3xTF32 on the GPU (fp32-level accuracy on tensor cores; an IEEE FMA dot spills heavily at
    K = 128..256), IEEE under the interpreter. The argument is ignored for bf16 / fp16 operands."""
    if kind in (1, 2):
        return "tf32"
    return "ieee" if _interpreted() else "tf32x3"


def _store_dtype(dtype: torch.dtype) -> torch.dtype:
    """Intermediate buffers that only feed tl.dot (states_in, dS, dy, CB, dCB): bf16 for bf16 inputs (same range as
    fp32), fp32 otherwise (fp16's range is too small for states)."""
    return torch.bfloat16 if dtype == torch.bfloat16 else torch.float32


def _arch(device) -> int:
    if _REC["launches"] is not None:
        return _REC["arch"]
    if device.type == "cuda":
        major, minor = device_capability(device)
        return 10 * major + minor
    return 90


# --------------------------------------------------------------------------------------------- kernels
from . import cuda_walk  # noqa: E402
from .layout import DeviceLayout as _Layout  # noqa: E402
from ._triton_bwd import (_ssd_bwd_dbc_kernel, _ssd_bwd_dcb_kernel, _ssd_bwd_dx_heads_kernel,  # noqa: E402
                          _ssd_bwd_dx_kernel, _ssd_cumsum_bwd_kernel, _ssd_state_bwd_kernel)
from ._triton_fwd import (_ssd_cb_kernel, _ssd_chunk_scan_kernel, _ssd_cumsum_cb_fwd_kernel,  # noqa: E402
                          _ssd_cumsum_fwd_kernel, _ssd_scan_heads_kernel, _ssd_state_fwd_kernel)


# --------------------------------------------------------------------------------------------- launchers
def _contig(*ts):
    return [t.contiguous() if t is not None else None for t in ts]


def _setup(x, B, chunk_size, cu_seqlens):
    """Shapes, dot kind / precision / store dtype, block configs and chunk layout shared by ssd_fwd and ssd_bwd."""
    b, l, h, p = x.shape
    g, n = B.shape[-2:]
    hpg = h // g
    Q = int(chunk_size)
    dev = x.device
    kind = _dot_kind(x.dtype)
    return (b, l, h, p, g, n, hpg, Q, dev, kind, _prec(kind), _store_dtype(x.dtype),
            _configs(p, n, Q, x.dtype, _arch(dev), hpg), _Layout(b, l, Q, cu_seqlens, dev))


def _sm90_16(dev, kind: int, n: int) -> bool:
    return _arch(dev) >= 90 and kind in (1, 2) and n <= 128


def _num_sms(dev) -> int:
    if _REC["launches"] is not None or dev.type != "cuda":
        return 132  # H100 / H200 SXM (AOT compiles and the interpreter)
    return _sm_count(dev.index if dev.index is not None else torch.cuda.current_device())


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _many_walks(c: dict, o: dict, walks: int, dev, kind: int, n: int, key: str, stages: int) -> None:
    """State walks (F1 / B1: one program a (sequence, head, p block) walking its chunks): more walks than SMs at
    sm_90 16-bit, n <= 128 run in 64-token steps with 4 warps under a 168-register cap, 3 CTAs an SM, instead of
    8 warps at 1 CTA an SM. Shape 1 (320 walks), H200 2026-11-30: F1 171.7 / 151.2 us at chunk 128 / 256 against
    ~182 / ~181 (3 stages); B1 469.9 / 407.6 against 605 / 544 (1 stage). At shape 2's 128 walks (one wave) the cap
    is slower (131.6 against 65.4 us for F1, 359 against 221 for B1): not taken there. Updates c / o in place;
    nothing changes under a sweep override of `key`, elsewhere, or for few walks."""
    if _CFG_OVERRIDE.get(key) or _small_blocks() or not _sm90_16(dev, kind, n) or walks <= _num_sms(dev):
        return
    c["BS"] = min(c["BS"], 64)
    o.update(num_warps=4, num_stages=stages, maxnreg=168)


def _cumsum_outputs(dt, b, h, l):
    """K0's outputs dt' and a: (b, h, l) fp32."""
    dtp = torch.empty(b, h, l, device=dt.device, dtype=torch.float32)
    return dtp, torch.empty_like(dtp)


def _cb_output(C, lay, g, Q, sdt):
    """K1's output (chunk slots, g, Q, Q). Under the interpreter (CPU tests) NaN: the blocks above the diagonal are
    never written, and a kernel reading them must fail."""
    cb = torch.empty(max(lay.nk, 1), g, Q, Q, device=C.device, dtype=sdt)
    if _interpreted():
        cb.fill_(float("nan"))
    return cb


def _cumsum_fwd(dt, A, dt_bias, dt_softplus, dt_limit, lay, b, l, h, Q, cfg):
    dtp, a = _cumsum_outputs(dt, b, h, l)
    c, o = _launch_opts(cfg["cumsum"])
    lo, hi = dt_limit if dt_limit is not None else (0.0, 0.0)
    if lay.nk:
        _launch(_ssd_cumsum_fwd_kernel, (lay.nk, triton.cdiv(h, c["BLOCK_H"])),
            dt, A, dt_bias if dt_bias is not None else A, dtp, a, lay.tab, l, h, lay.ncr, float(lo), float(hi),
            Q=Q, VARLEN=lay.varlen, HAS_BIAS=dt_bias is not None, SOFTPLUS=bool(dt_softplus),
            HAS_LIMIT=dt_limit is not None, **c, **o)
    return dtp, a


def _cumsum_cb_fwd(dt, A, dt_bias, dt_softplus, dt_limit, C, B, lay, b, l, h, g, n, Q, kind, sdt, cfg):
    """K0 and K1 (as _cumsum_fwd and _cb with cfg's blocks) in one launch (_ssd_cumsum_cb_fwd_kernel): dtp, a, cb."""
    (dtp, a), cb = _cumsum_outputs(dt, b, h, l), _cb_output(C, lay, g, Q, sdt)
    c0, _ = _launch_opts(cfg["cumsum"])
    c1, o = _launch_opts(cfg["cb"])  # (both 4 warps; the CB dot's pipeline stages)
    nhb, nmb = triton.cdiv(h, c0["BLOCK_H"]), triton.cdiv(Q, c1["BM"])
    lo, hi = dt_limit if dt_limit is not None else (0.0, 0.0)
    if lay.nk:
        _launch(_ssd_cumsum_cb_fwd_kernel, (lay.nk * nhb + lay.nk * nmb * nmb * g,),
            dt, A, dt_bias if dt_bias is not None else A, dtp, a, C, B, cb, lay.tab, l, h, g, n, lay.ncr, nmb, nhb,
            lay.nk * nhb, float(lo), float(hi), Q=Q, VARLEN=lay.varlen, HAS_BIAS=dt_bias is not None,
            SOFTPLUS=bool(dt_softplus), HAS_LIMIT=dt_limit is not None, KIND=kind, PREC=_prec(kind), **c0, **c1, **o)
    return dtp, a, cb


def _one_prep_launch() -> bool:
    """MK_SSD_PREP_ONE_LAUNCH (read at every call; on by default, =0: two launches): K0 and K1 as one launch
    (_cumsum_cb_fwd) in the forward where the CUDA output stage runs (it reads CB; ahead of F1, so that F1 and F2 are
    adjacent launches: F2 is F1's programmatic dependent, MK_SSD_WALK_PDL) and in every backward with chunks (B2 reads
    CB). H200, shape 1 (session 37): 335.0 / 337.3 us of forward kernels against 339.2 / 337.7, and ~1.3 us of wall
    time from the dependent launch. Off in sessions 38-42 while F2's TMA-filled ring failed now and then (a barrier
    phase race, fixed in session 42: bench/notes/chunked_ssd_2.md); on again with it since."""
    return os.environ.get("MK_SSD_PREP_ONE_LAUNCH", "1") != "0"


def _cb(C, B, lay, l, g, n, Q, kind, sdt, cfg, BM=None):
    c, o = _launch_opts(cfg["cb"])
    if BM is not None:
        c["BM"] = BM
    nmb = triton.cdiv(Q, c["BM"])
    cb = _cb_output(C, lay, g, Q, sdt)
    if lay.nk:
        _launch(_ssd_cb_kernel, (lay.nk * nmb * nmb * g,),
            C, B, cb, lay.tab, l, g, n, lay.ncr, nmb, Q=Q, VARLEN=lay.varlen, KIND=kind, PREC=_prec(kind), **c, **o)
    return cb


def ssd_fwd(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, dt_softplus=False, dt_limit=None,
            initial_states=None, cu_seqlens=None, need_ypre=True, states_fp32=False):
    """Returns out (b, l, h, p) x.dtype, ypre (pre-gate y in x.dtype when z is given and need_ypre, else empty),
    states_in (n_slots, h, p, n): the state entering each chunk (unused slots zero), bf16 for bf16 x unless
    states_fp32, else fp32; final (nseq, h, p, n) fp32."""
    x, dt, A, B, C, D, z, dt_bias, initial_states = _contig(x, dt, A, B, C, D, z, dt_bias, initial_states)
    b, l, h, p, g, n, hpg, Q, dev, kind, prec, sdt, cfg, lay = _setup(x, B, chunk_size, cu_seqlens)
    hin_dt = torch.float32 if states_fp32 else sdt
    if not need_ypre and not states_fp32 and cuda_walk.fused_serves(x, z, B, C, cu_seqlens):
        # the fused walk (a lab, opt-in: MK_SSD_FUSED_WALK=1): no backward and no returned chunk states, so
        # states_in is never read (left unwritten)
        out, final = cuda_walk.fused_walk_lab(x, dt, A, B, C, D, z, dt_bias, dt_softplus, dt_limit, initial_states,
                                              return_final_states=True)
        states_in = torch.empty(lay.nk, h, p, n, device=dev, dtype=hin_dt)
        return out, torch.empty((0,), device=dev, dtype=x.dtype), states_in, final
    store_ypre = z is not None and need_ypre
    heads_scan = bool(lay.nk) and _FWD["scan"] == "heads" and (kind in (1, 2) or _interpreted())
    walk_scan = (bool(lay.nk) and not heads_scan and hin_dt == sdt and (not store_ypre or cuda_walk.scan_serves_ypre())
                 and cuda_walk.serves(x, p, n, Q, hpg, "_ssd_scan_cuda", (x, z, C)))
    cb_walk = None
    if walk_scan and _one_prep_launch():
        dtp, a, cb_walk = _cumsum_cb_fwd(dt, A, dt_bias, dt_softplus, dt_limit, C, B, lay, b, l, h, g, n, Q, kind, sdt,
                                         cfg)
    else:
        dtp, a = _cumsum_fwd(dt, A, dt_bias, dt_softplus, dt_limit, lay, b, l, h, Q, cfg)
    states_in = (torch.zeros if lay.varlen else torch.empty)(lay.nk, h, p, n, device=dev, dtype=hin_dt)
    final = torch.empty(lay.nseq, h, p, n, device=dev, dtype=torch.float32)
    out = torch.empty_like(x)
    ypre = torch.empty(x.shape if store_ypre else (0,), device=dev, dtype=x.dtype)
    if walk_scan:  # D's conversion (a kernel unless D is fp32) ahead of F1: F1 and F2 adjacent, F2 its dependent
        D = cuda_walk.d_fp32(D)
    # F1: chunk states + state passing
    if hin_dt == sdt and cuda_walk.serves(x, p, n, Q, hpg, "_ssd_state_cuda", (x, B)):
        cuda_walk.state(x, B, dtp, a, initial_states, lay, _num_sms(dev), states_in, final)
    else:
        _state_fwd_triton(x, B, dtp, a, initial_states, states_in, final, lay, l, h, p, n, hpg, g, Q, dev, kind, prec,
                          cfg)
    # head-block scan for bf16 / fp16 (fp32 operands' 3xTF32 splits spill there: the one-head kernel on the GPU)
    if heads_scan:
        c, o = _launch_opts(cfg["scan"])
        cb_mem = hpg > c["HB"]
        cb = _cb(C, B, lay, l, g, n, Q, kind, sdt, cfg, c["BM"]) if cb_mem else dtp
        npb = triton.cdiv(p, c["BP"])
        nhb = h // c["HB"]
        nmb = triton.cdiv(Q, c["BM"]) if c["SPLIT_M"] else 1
        _launch(_ssd_scan_heads_kernel, (lay.nk * nhb * npb * nmb,),
            x, z if z is not None else x, B, C, cb, dtp, a, states_in, D if D is not None else A, out,
            ypre if store_ypre else out, lay.tab, l, h, p, n, hpg, g, lay.ncr, nhb, npb, nmb, Q,
            5.0 if x.dtype == torch.float16 else 60.0,
            VARLEN=lay.varlen, CB_MEM=cb_mem, HAS_D=D is not None, D_HP=D is not None and D.dim() == 2,
            HAS_Z=z is not None, STORE_YPRE=store_ypre, KIND=kind, PREC=prec, **c, **o)
    elif walk_scan:
        cb = cb_walk if cb_walk is not None else _cb(C, B, lay, l, g, n, Q, kind, sdt, cfg)  # CUDA stage
        cuda_walk.scan(x, z, C, cb, dtp, a, states_in, D, lay.tab if lay.varlen else None, lay.nk, _num_sms(dev), out,
                       ypre if store_ypre else None)
    elif lay.nk:
        cb_mem = hpg > 1
        c, o = _launch_opts(cfg["chunk_scan"])
        # the scan reads whole diagonal blocks of CB (no causal mask on that load): CB blocks a multiple of its rows.
        # (Masking that load instead measured 25 us slower at shape 1 on the H200, 2026-12-01: 0.548 against 0.523 ms.)
        cb = _cb(C, B, lay, l, g, n, Q, kind, sdt, cfg, max(cfg["cb"]["BM"], c["BM"])) if cb_mem else dtp
        npb = triton.cdiv(p, c["BP"])
        _launch(_ssd_chunk_scan_kernel, (lay.nk * npb * h,),
            x, z if z is not None else x, B, C, cb, dtp, a, states_in, D if D is not None else A, out,
            ypre if store_ypre else out, lay.tab, l, h, p, n, hpg, g, lay.ncr, npb,
            Q=Q, VARLEN=lay.varlen, CB_MEM=cb_mem, HAS_D=D is not None, D_HP=D is not None and D.dim() == 2,
            HAS_Z=z is not None, STORE_YPRE=store_ypre, KIND=kind, PREC=prec, **c, **o)
    return out, ypre, states_in, final


def _state_fwd_triton(x, B, dtp, a, initial_states, states_in, final, lay, l, h, p, n, hpg, g, Q, dev, kind, prec,
                      cfg):
    """F1 by the Triton walk (_ssd_state_fwd_kernel): states_in and final, as cuda_walk.state."""
    c, o = _launch_opts(cfg["state_fwd"])
    npb = triton.cdiv(p, c["BP"])
    walks = lay.nseq * h * npb
    _many_walks(c, o, walks, dev, kind, n, "state_fwd", 3)
    if not _sm90_16(dev, kind, n) and "BN" not in _CFG_OVERRIDE.get("state_fwd", {}) and walks < 512 \
            and c["BN"] >= 128:
        c["BN"], o["num_warps"] = c["BN"] // 2, 4  # few (sequence, head) walks: n in two blocks, 2 CTAs / SM
    # (sm_90, 16-bit, up to one walk an SM: n whole, 8 warps; H200 b2 h32 p128 n128, 128 walks: 68.6 us against 75.7
    # split)
    nnb = triton.cdiv(n, c["BN"])
    SB = triton.cdiv(Q, c["BS"])
    if lay.nseq and h:
        _launch(_ssd_state_fwd_kernel, (lay.nseq * h * npb * nnb,),
            x, B, dtp, a, initial_states if initial_states is not None else final, states_in, final, lay.cu,
            lay.first, l, h, p, n, hpg, g, lay.ncr, npb, nnb, Q=Q, VARLEN=lay.varlen,
            HAS_INIT=initial_states is not None, SB=SB, KIND=kind, PREC=prec, **c, **o)


def _zeroed(dev, *shapes):
    """fp32 zero tensors of the given shapes, views of one buffer zeroed by a single fill (each view starts on a
    16-byte boundary, as a tensor of its own would for the kernels' alignment hints)."""
    sizes = [math.prod(s) for s in shapes]
    padded = [-(-k // 4) * 4 for k in sizes]
    buf = torch.zeros(max(sum(padded), 1), device=dev, dtype=torch.float32)
    out, off = [], 0
    for s, k, kp in zip(shapes, sizes, padded):
        out.append(buf[off:off + k].view(s))
        off += kp
    return out


def ssd_bwd(dout, d_states_in, d_final, x, dt, A, B, C, chunk_size, D, z, dt_bias, dt_softplus, dt_limit,
            initial_states, cu_seqlens, ypre, states_in):
    """Gradients (dx, ddt, dA, dB, dC, dD, dz, ddt_bias, dinitial_states); None for absent inputs.

    d_states_in / d_final: gradients w.r.t. the forward's states_in / final outputs (None when unused)."""
    x, dt, A, B, C, D, z, dt_bias, initial_states, dout, states_in, ypre = _contig(
        x, dt, A, B, C, D, z, dt_bias, initial_states, dout, states_in, ypre)
    b, l, h, p, g, n, hpg, Q, dev, kind, prec, sdt, cfg, lay = _setup(x, B, chunk_size, cu_seqlens)
    f32 = torch.float32
    cb = None
    if lay.nk and _one_prep_launch():
        dtp, a, cb = _cumsum_cb_fwd(dt, A, dt_bias, dt_softplus, dt_limit, C, B, lay, b, l, h, g, n, Q, kind, sdt, cfg)
    else:
        dtp, a = _cumsum_fwd(dt, A, dt_bias, dt_softplus, dt_limit, lay, b, l, h, Q, cfg)
    nk = lay.nk
    # B1: reverse state passing, dy, dz
    dz = torch.empty_like(z) if z is not None else None
    dy = torch.empty(x.shape, device=dev, dtype=sdt) if z is not None else dout
    dS = torch.empty(max(nk, 1), h, p, n, device=dev, dtype=sdt)
    dinit = torch.empty(lay.nseq, h, p, n, device=dev, dtype=f32)
    # fp32 accumulators that kernels add into atomically: the internal d a_L per chunk (B1, B2) and d dt' / d a per
    # token (B2, B3, B4) share one zero fill; the returned dA, d dt_bias, dD (B2, B5) must not alias each other (a
    # custom op's outputs), so they are tensors of their own
    dalast, ddtp, da = _zeroed(dev, (max(nk, 1), h), (b, h, l), (b, h, l))
    dA32 = torch.zeros(h, device=dev, dtype=f32)
    dbias32 = torch.zeros(h, device=dev, dtype=f32) if dt_bias is not None else dA32
    dD32 = torch.zeros(h, p, device=dev, dtype=f32) if D is not None else dA32  # (h, p) also for D (h,)
    dfin = d_final.contiguous() if d_final is not None else None
    dsin = d_states_in.contiguous() if d_states_in is not None else None
    c, o = _launch_opts(cfg["state_bwd"])
    npb = triton.cdiv(p, c["BP"])
    _many_walks(c, o, lay.nseq * h * npb, dev, kind, n, "state_bwd", 1)
    nnb = triton.cdiv(n, c["BN"])
    if lay.nseq and h:
        _launch(_ssd_state_bwd_kernel, (lay.nseq * h * npb * nnb,),
            dout, z if z is not None else dout, ypre if z is not None else dout, C, a, states_in,
            dfin if dfin is not None else dinit, dsin if dsin is not None else dS, dy,
            dz if dz is not None else dinit, dS, dinit, dalast, lay.cu, lay.first, l, h, p, n, hpg, g, lay.ncr, npb,
            nnb,
            Q=Q, VARLEN=lay.varlen, HAS_Z=z is not None, HAS_DFINAL=dfin is not None, HAS_DSIN=dsin is not None,
            SB=triton.cdiv(Q, c["BS"]), KIND=kind, PREC=prec, **c, **o)
    dx = torch.empty_like(x)
    ddt = torch.empty_like(dt)
    dB = torch.empty_like(B)
    dC = torch.empty_like(C)
    if nk:
        if cb is None:
            cb = _cb(C, B, lay, l, g, n, Q, kind, sdt, cfg)
        da_in_dx = _FWD["da_out"] == "dx"
        # B2: dx, d dt' (direct), state-path d a terms (CUDA where it serves; else Triton)
        if not da_in_dx and cuda_walk.serves(x, p, n, Q, hpg, "_ssd_dx_cuda", (x, dy, B)):
            cuda_walk.dx(x, dy, B, cb, dtp, a, dS, D, lay.tab if lay.varlen else None, nk, _num_sms(dev), dx, ddtp,
                         da, dalast, dD32)
        elif _FWD["bwd_dx"] == "heads" and (kind in (1, 2) or _interpreted()):
            c, o = _launch_opts(cfg["bwd_dx_h"])
            npb = triton.cdiv(p, c["BP"])
            nhb = h // c["HB"]
            _launch(_ssd_bwd_dx_heads_kernel, (nk * nhb * npb,),
                x, dy, B, C, cb, dtp, a, states_in, dS, D if D is not None else A, dx, ddtp, da, dalast,
                dD32, lay.tab, l, h, p, n, hpg, g, lay.ncr, nhb, npb, Q,
                5.0 if x.dtype == torch.float16 else 60.0, VARLEN=lay.varlen, HAS_D=D is not None,
                D_HP=D is not None and D.dim() == 2, KIND=kind, PREC=prec, DA_OUT=da_in_dx, **c, **o)
        else:
            c, o = _launch_opts(cfg["bwd_dx"])
            npb = triton.cdiv(p, c["BP"])
            _launch(_ssd_bwd_dx_kernel, (nk * npb * h,),
                x, dy, B, C, cb, dtp, a, states_in, dS, D if D is not None else A, dx, ddtp, da, dalast,
                dD32, lay.tab, l, h, p, n, hpg, g, lay.ncr, npb,
                Q=Q, VARLEN=lay.varlen, HAS_D=D is not None, D_HP=D is not None and D.dim() == 2,
                KIND=kind, PREC=prec, DA_OUT=da_in_dx, **c, **o)
        # B3: dCB per group + intra-chunk d a
        c, o = _launch_opts(cfg["bwd_dcb"])
        nmb = triton.cdiv(Q, c["BM"])
        c["HSPLIT"] = max(1, min(c["HSPLIT"], hpg))
        # split heads: fp32 partial sums added atomically (masked to the causal triangle, which is all B4 reads)
        dcb = (torch.zeros(nk, g, Q, Q, device=dev, dtype=f32) if c["HSPLIT"] > 1 else
               torch.empty(nk, g, Q, Q, device=dev, dtype=sdt))
        _launch(_ssd_bwd_dcb_kernel, (nk * nmb * nmb * g * c["HSPLIT"],),
            x, dy, cb, dtp, a, dcb, da, lay.tab, l, h, p, hpg, g, lay.ncr, nmb,
            Q=Q, VARLEN=lay.varlen, NPK=triton.cdiv(p, c["BPK"]), KIND=kind, PREC=prec, **c, **o)
        # B4: dB, dC
        c, o = _launch_opts(cfg["bwd_dbc"])
        nmb4 = triton.cdiv(Q, c["BM"])
        for is_dc, u, bc, st, out_ in ((False, x, C, dS, dB), (True, dy, B, states_in, dC)):
            _launch(_ssd_bwd_dbc_kernel, (nk * nmb4 * g,),
                u, bc, dcb, dtp, a, st, out_, C, da, lay.tab, l, h, p, n, hpg, g, lay.ncr, nmb4,
                Q=Q, VARLEN=lay.varlen, IS_DC=is_dc, NPK=triton.cdiv(p, c["BPK"]), KIND=kind, PREC=prec,
                DC_DA=is_dc and not da_in_dx, **c, **o)
        # B5: dt chain
        c, o = _launch_opts(cfg["cumsum_bwd"])
        lo, hi = dt_limit if dt_limit is not None else (0.0, 0.0)
        _launch(_ssd_cumsum_bwd_kernel, (nk, triton.cdiv(h, c["BLOCK_H"])),
            dt, A, dt_bias if dt_bias is not None else A, dtp, da, dalast, ddtp, ddt, dA32, dbias32, lay.tab,
            l, h, lay.ncr, float(lo), float(hi), Q=Q, VARLEN=lay.varlen, HAS_BIAS=dt_bias is not None,
            SOFTPLUS=bool(dt_softplus), HAS_LIMIT=dt_limit is not None, **c, **o)
    else:
        dx.zero_()
        ddt.zero_()
        dB.zero_()
        dC.zero_()
        if dz is not None:
            dz.zero_()
    dA = dA32.to(A.dtype)
    ddt_bias = dbias32.to(dt_bias.dtype) if dt_bias is not None else None
    dD = (dD32 if D.dim() == 2 else dD32.sum(-1)).to(D.dtype) if D is not None else None
    dinit = dinit.to(initial_states.dtype) if initial_states is not None else None
    return dx, ddt, dA, dB, dC, dD, dz, ddt_bias, dinit
