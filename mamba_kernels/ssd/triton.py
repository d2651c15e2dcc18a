"""Triton kernels for the chunked SSD scan (forward and backward) and their launchers.

Algorithm (python_ref/ssd.py::ssd_chunked_ref): chunks of Q tokens that never straddle a sequence; a_t is the
chunk-local cumulative sum of dt'*A (dt' = clamp(softplus(dt + dt_bias))); per chunk and head, with u_s = dt'_s x_s:
    y_t   = exp(a_t) C_t h_in^T + sum_{s<=t} (C_t.B_s) exp(a_t - a_s) u_s + D x_t,   out = y * silu(z)
    h_out = exp(a_L) h_in + sum_s exp(a_L - a_s) u_s^T B_s                          (a_L: a at the chunk's last token)

Forward, 3 launches (4 when a group's heads span several scan programs):
  K0 _ssd_cumsum_fwd_kernel   dt -> dt', a  (fp32, head-major (b, h, l) so later loads are contiguous)
  K1 _ssd_cb_kernel           CB = C B^T per (chunk, group), lower block triangle; only when h / g > HB (below), so
                              the scan programs read it instead of recomputing it
  F1 _ssd_state_fwd_kernel    chunk states fused with state passing: one program per (sequence, head, p block,
                              n block) walks its chunks in order with the running state (fp32) in registers and
                              stores the state entering each chunk (states_in) and the final state: no fp32
                              chunk-state round trip through HBM. n is split in two when there are < 512 walks.
  F2 _ssd_scan_heads_kernel   one program per (chunk, block of HB heads of one group), looping over its row blocks:
                              every dot is shared by the HB heads ((BM, K) x (K, HB * p): C_m h_in^T, CB x); per-head
                              decays are rank-1 factors on the x rows and the accumulator rows, the diagonal block
                              included (exact per-head fallback for steep decay); D, z gate; the pre-gate y (x
                              dtype) is stored only when a backward will run. HB * p <= 128 (shape 1: HB = 2).
     _ssd_chunk_scan_kernel   the previous one-head-per-program scan: used for fp32 inputs on the GPU (3xTF32
                              operand splits spill in the head-block kernel) and as the A/B alternative (_FWD).
Backward, 8 launches (+ tiny torch sums of per-chunk dA / dt_bias / D partials):
  K0, K1 recomputed (cheap; K1 always)
  B1 _ssd_state_bwd_kernel    reverse walk per (sequence, head, p block): dy = dout silu(z) and dz (stored),
                              dS_c (gradient w.r.t. the state after chunk c, stored), d a_L through the decay,
                              d initial_states
  B2 _ssd_bwd_dx_kernel       per (chunk, head, p block), looping over source blocks: du_s = sum_{t>=s} M_ts dy_t +
                              exp(a_L-a_s) B_s dS^T -> dx, d dt' (direct), d a of the state-in / state-out paths, dD
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
  * Resources at the issue shapes (AOT, Triton 3.7; tests/test_ssd.py::test_triton_kernels_compile_for_sm90 prints
    them), sm_90 [sm_80]: shared KB / registers, no spills on sm_90:
      shape 1  F1 90/189 (n split, 4 warps)  K1 64/96  F2 65/255 (HB 2, 8 warps)  B1 177/198  B2 80/225  B3 49/238
               B4 128/231,204   (one-head scan: 81/252, 4 warps)
      shape 2  F1 90/189  F2 80/246 (HB 1, p 128, 8 warps)  B2 (p in 2 blocks) 80/225  B3 97/245  B4 128/235,202.
    Triton lays a dot whose result feeds another dot with all warps along M ([8, 1] for 8 warps): at BM = 64 that
    computes it twice. The scan's state dot is therefore added after its loop (not its initial accumulator); the
    CB dot recomputed per head at g = h (shape 2) is still duplicated (so it was in the one-head scan).
    The head-block kernels are register-bound (8 warps at ~250 registers: 1 CTA / SM); 256 columns (HB * p) spill,
    so HB * p <= 128 (64 at n = 256). The head-block dx kernel (opt-in) spills ~1 KB at 128 columns.
    Only the one-head scan takes the chunk size as a constexpr; the other kernels share their compilations across
    chunk sizes. Every constexpr / dtype variant (varlen, D (h, p), no z, initial / final / chunk states, fp32, fp16,
    n 16..256, p 32..128, Q 64..256) stays below 227 KB on sm_90 and 163 KB on sm_80 (fp32 n = 256 uses 16-row
    blocks).
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

# --------------------------------------------------------------------------------------------- helpers
_KIND = {torch.bfloat16: 1, torch.float16: 2}
# Launch recording (AOT compile tests): when _REC["launches"] is a list, the launchers append
# (kernel, args, constexprs + options) instead of launching, and configs are those of GPU arch _REC["arch"].
_REC = {"launches": None, "arch": 90}
# Development aid: under the interpreter, use the GPU block configs and round dot operands to bf16 / fp16 (then fp32
# dots), to check the GPU tests' tolerances on CPU. Off by default; nothing in the library sets it.
_EMULATE = {"half_dots": False}
# Config overrides {kernel key of _configs: {name: value}} for A/B timing on the GPU (bench/bench_ssd.py); the
# library never sets it. The forward's CB kernel follows the scan's BM.
_CFG_OVERRIDE: dict = {}
# Kernel variants, switchable for A/B timing (bench/bench_ssd.py). "scan": "heads" (_ssd_scan_heads_kernel: heads
# of a group share the CB / C dots) or "legacy" (_ssd_chunk_scan_kernel: one head per program). "bwd_dx": "legacy"
# (_ssd_bwd_dx_kernel) or "heads" (_ssd_bwd_dx_heads_kernel, same idea as the scan; not the default: at 128
# columns it spills ~1 KB per thread on sm_90, unmeasured on the GPU).
_FWD = {"scan": "heads", "bwd_dx": "legacy"}


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


def _interpreted() -> bool:
    return _REC["launches"] is None and os.environ.get("TRITON_INTERPRET", "0") == "1"


def _small_blocks() -> bool:
    return _interpreted() and not _EMULATE["half_dots"]


def _np2(v: int, lo: int = 16) -> int:
    return max(lo, triton.next_power_of_2(max(int(v), 1)))


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
        major, minor = torch.cuda.get_device_capability(device)
        return 10 * major + minor
    return 90


def _configs(p: int, n: int, Q: int, dtype: torch.dtype, arch: int = 90, hpg: int = 1) -> dict:
    """Block sizes, warps and pipeline stages per kernel, chosen from sm_90 / sm_80 AOT compiles (shared memory,
    registers, spills; see tests/test_ssd.py). Returns {kernel: dict(constexprs..., num_warps=, num_stages=)}."""
    big_smem = arch >= 90
    BN = _np2(n)
    BP_all = _np2(p)
    BM = min(64, _np2(Q))
    BP = min(BP_all, 128)
    f32 = dtype not in _KIND  # fp32 / fp64 inputs: 4-byte operand tiles
    if f32 or BN > 128:
        BM = min(BM, 32)
    # F1 / B1 walk the sequence in token blocks of BS
    BS = min(128 if (not f32 and BN <= 128) else 64, _np2(Q))
    BPs = min(BP_all, 64)
    BPK = min(BP_all, 128)
    BPK4 = min(BP_all, 64)
    if f32:  # 3xTF32 operand splits double the register / shared footprint of every fp32 tile
        BP, BPs, BPK, BPK4 = min(BP, 64), min(BPs, 32), min(BPK, 32), min(BPK4, 32)
    if f32 and BN >= 256:
        # fp32 operands with n = 256: 3xTF32 splits every operand in two; without smaller tiles the state
        # kernels need 240-290 KB of shared memory (sm_90 AOT)
        BM, BS = 16, 32
        BP, BPs, BPK, BPK4 = min(BP, 32), min(BPs, 32), min(BPK, 32), min(BPK4, 32)
    if _small_blocks():
        # CPU tests: small tiles so that small problems still have several row / token / p blocks per chunk
        BM = BS = 16
        BP = BPs = BPK = BPK4 = 16
    st3 = 3 if big_smem and not f32 and BN <= 128 else 2   # pipeline depth where the tiles are small enough
    BM4 = min(128 if (not f32 and BN <= 128) else 64, _np2(Q))  # B4: one (BM4, n) fp32 accumulator
    if _small_blocks():
        BM4 = 32  # coarser than B3's 16-blocks: exercises B4's causal masking of dCB
    # head-block kernels: HB heads of a group per program, p in blocks of BPh (whole p by default; overrides may
    # split it, also with HB > 1), HB * BPh <= nmax columns
    BPh = min(_np2(p), 32 if f32 and BN >= 256 else (64 if f32 or BN >= 256 else 128))
    # 256 columns spill (sm_90 AOT: 64 x 256 fp32 accumulator + x tiles); so do 128 at n = 256 (h_in tile)
    nmax = 64 if f32 or BN >= 256 else 128
    if _small_blocks():
        BPh, nmax = _np2(p), 2 * _np2(p)  # CPU tests: two heads per program where the group has them
    HB = 1
    if BPh >= p:
        hpg = max(int(hpg), 1)
        while HB * 2 * BPh <= nmax and hpg % (HB * 2) == 0:
            HB *= 2
    cfg = {
        "scan": dict(BM=BM, HB=HB, BP=BPh, BN=BN, SPLIT_M=False,
                     num_warps=8 if BM * HB * BPh >= 64 * 128 else 4, num_stages=2),
        "bwd_dx_h": dict(BM=BM, HB=HB, BP=BPh, BN=BN, num_warps=8 if BM * HB * BPh >= 64 * 128 else 4,
                         num_stages=2),
        "cumsum": dict(BLOCK_Q=_np2(Q, 2), BLOCK_H=16, num_warps=4, num_stages=1),
        "cb": dict(BM=BM, BK=min(BN, 32 if f32 else 128), num_warps=4, num_stages=2),
        "state_fwd": dict(BS=BS, BP=BPs, BN=16 if _small_blocks() else BN, num_warps=8, num_stages=st3),
        "chunk_scan": dict(BM=BM, BP=BP, BN=BN, num_warps=4 if BM * BP <= 64 * 64 else 8, num_stages=st3),
        "state_bwd": dict(BS=BS, BP=BPs, BN=16 if _small_blocks() else BN, num_warps=8, num_stages=st3),
        "bwd_dx": dict(BM=BM, BP=min(BP, 32 if f32 else 64), BN=BN, num_warps=8, num_stages=st3),
        "bwd_dcb": dict(BM=BM, BPK=BPK, num_warps=4, num_stages=st3),
        "bwd_dbc": dict(BM=BM4, BPK=BPK4, BN=BN, num_warps=8, num_stages=st3),
        "cumsum_bwd": dict(BLOCK_Q=_np2(Q, 2), BLOCK_H=16, num_warps=4, num_stages=1),
    }
    for name, over in _CFG_OVERRIDE.items():
        cfg[name].update(over)
    for s in (cfg["scan"], cfg["bwd_dx_h"]):
        while s["HB"] > 1 and hpg % s["HB"]:  # an override's HB must divide h / g
            s["HB"] //= 2
    assert cfg["bwd_dx_h"]["BM"] == cfg["bwd_dx"]["BM"] == cfg["cb"]["BM"]  # backward CB blocks
    return cfg


def _launch_opts(c: dict):
    """Split a config into (constexprs, launch options)."""
    c = dict(c)
    return {k: v for k, v in c.items() if k not in ("num_warps", "num_stages")}, dict(
        num_warps=c.get("num_warps", 4), num_stages=c.get("num_stages", 2))


# --------------------------------------------------------------------------------------------- jit helpers
@triton.jit
def _cast(v, KIND: tl.constexpr):
    """Cast a fp32 tile to the tl.dot operand type (1 bf16, 2 fp16, 0 fp32; 3 / 4: bf16 / fp16 rounding kept in fp32,
    the interpreter's emulation of 1 / 2)."""
    if KIND == 1:
        r = v.to(tl.bfloat16)
    elif KIND == 2:
        r = v.to(tl.float16)
    elif KIND == 3:
        r = v.to(tl.bfloat16).to(tl.float32)
    elif KIND == 4:
        r = v.to(tl.float16).to(tl.float32)
    else:
        r = v.to(tl.float32)
    return r


@triton.jit
def _softplus(v):
    return tl.where(v <= 20.0, tl.log(1.0 + tl.exp(v)), v)


@triton.jit
def _chunk(k, tab_ptr, l, ncr, Q, VARLEN: tl.constexpr):
    """Chunk slot k -> (batch row (int64), first token within the row (int64), length). Without cu_seqlens the
    chunks of row r are slots r*ncr .. r*ncr+ncr-1; with cu_seqlens the table holds (start, len) per slot."""
    if VARLEN:
        row = tl.zeros((), dtype=tl.int64)
        start = tl.load(tab_ptr + 2 * k).to(tl.int64)
        ln = tl.load(tab_ptr + 2 * k + 1)
    else:
        row = (k // ncr).to(tl.int64)
        c = k % ncr
        start = (c * Q).to(tl.int64)
        ln = tl.minimum(l - c * Q, Q)
    return row, start, ln


@triton.jit
def _seq(seq, cu_ptr, first_ptr, l, ncr, VARLEN: tl.constexpr):
    """Sequence index -> (batch row, first token within the row, length, first chunk slot), all int64 but len."""
    if VARLEN:
        row = tl.zeros((), dtype=tl.int64)
        s0 = tl.load(cu_ptr + seq).to(tl.int64)
        ln = (tl.load(cu_ptr + seq + 1) - tl.load(cu_ptr + seq)).to(tl.int32)
        first = tl.load(first_ptr + seq).to(tl.int64)
    else:
        row = seq.to(tl.int64)
        s0 = tl.zeros((), dtype=tl.int64)
        ln = l + tl.zeros((), dtype=tl.int32)
        first = seq.to(tl.int64) * ncr
    return row, s0, ln, first


# --------------------------------------------------------------------------------------------- K0: dt, cumsum
@triton.jit
def _ssd_cumsum_fwd_kernel(dt_ptr, A_ptr, bias_ptr, dtp_ptr, a_ptr, tab_ptr, l, h, ncr, dt_lo, dt_hi,
                           Q, VARLEN: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                           HAS_LIMIT: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_H: tl.constexpr):
    """dt' = clamp(softplus(dt + bias)) and a = chunk-local cumsum(dt' A); reads dt (b, l, h), writes (b, h, l)."""
    k = tl.program_id(0)
    hb = tl.program_id(1)
    row, start, ln = _chunk(k, tab_ptr, l, ncr, Q, VARLEN)
    offs_q = tl.arange(0, BLOCK_Q)
    offs_h = hb * BLOCK_H + tl.arange(0, BLOCK_H)
    mh = offs_h < h
    mask = (offs_q < ln)[:, None] & mh[None, :]
    dt = tl.load(dt_ptr + (row * l + start) * h + offs_q[:, None] * h + offs_h[None, :], mask=mask,
                 other=0.0).to(tl.float32)
    if HAS_BIAS:
        dt += tl.load(bias_ptr + offs_h, mask=mh, other=0.0).to(tl.float32)[None, :]
    if SOFTPLUS:
        dt = _softplus(dt)
    if HAS_LIMIT:
        dt = tl.minimum(tl.maximum(dt, dt_lo), dt_hi)
    dt = tl.where(mask, dt, 0.0)
    A = tl.load(A_ptr + offs_h, mask=mh, other=0.0).to(tl.float32)
    a = tl.cumsum(dt * A[None, :], axis=0)
    out = row * h * l + start + offs_h[None, :] * l + offs_q[:, None]
    tl.store(dtp_ptr + out, dt, mask=mask)
    tl.store(a_ptr + out, a, mask=mask)


# --------------------------------------------------------------------------------------------- K1: CB per group
@triton.jit
def _ssd_cb_kernel(C_ptr, B_ptr, cb_ptr, tab_ptr, l, ng, n, ncr, nmb,
                   Q, VARLEN: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr,
                   KIND: tl.constexpr, PREC: tl.constexpr):
    """cb[k, g] (Q, Q) = C B^T of chunk k, group g; only blocks (t block >= s block) of valid rows are written."""
    pid = tl.program_id(0)
    gg = pid % ng
    rest = pid // ng
    pair = rest % (nmb * nmb)
    k = rest // (nmb * nmb)
    tb = pair // nmb
    sb = pair % nmb
    if sb > tb:
        return
    row, start, ln = _chunk(k, tab_ptr, l, ncr, Q, VARLEN)
    if tb * BM >= ln:
        return
    offs_t = tb * BM + tl.arange(0, BM)
    offs_s = sb * BM + tl.arange(0, BM)
    bc = ((row * l + start) * ng + gg) * n
    cb = tl.zeros((BM, BM), dtype=tl.float32)
    for k0 in range(0, n, BK):  # K = n in steps of BK (fp32 operands: short steps keep 3xTF32 in registers)
        offs_n = k0 + tl.arange(0, BK)
        mn = offs_n < n
        Ct = tl.load(C_ptr + bc + offs_t[:, None] * (ng * n) + offs_n[None, :],
                     mask=(offs_t < ln)[:, None] & mn[None, :], other=0.0).to(tl.float32)
        Bs = tl.load(B_ptr + bc + offs_s[:, None] * (ng * n) + offs_n[None, :],
                     mask=(offs_s < ln)[:, None] & mn[None, :], other=0.0).to(tl.float32)
        cb += tl.dot(_cast(Ct, KIND), tl.trans(_cast(Bs, KIND)), input_precision=PREC)
    out = (k.to(tl.int64) * ng + gg) * Q * Q
    tl.store(cb_ptr + out + offs_t[:, None] * Q + offs_s[None, :], cb.to(cb_ptr.dtype.element_ty),
             mask=(offs_t < Q)[:, None] & (offs_s < Q)[None, :])


# --------------------------------------------------------------------------------------------- F1: states fwd
@triton.jit
def _ssd_state_fwd_kernel(x_ptr, B_ptr, dtp_ptr, a_ptr, init_ptr, hin_ptr, final_ptr, cu_ptr, first_ptr,
                          l, h, p, n, hpg, ng, ncr, npb, nnb,
                          Q, VARLEN: tl.constexpr, HAS_INIT: tl.constexpr, SB: tl.constexpr,
                          BS: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr, KIND: tl.constexpr,
                          PREC: tl.constexpr):
    """One program per (sequence, head, p block, n block): walks the sequence's chunks in order in token blocks of
    BS, state (BP x BN, fp32) in registers; stores the state entering each chunk (hin) and the final state.
    Chunk c: h_in[c] = state; state = exp(a_L) state + sum_s exp(a_L - a_s) dt'_s x_s^T B_s. The n blocks of a
    (sequence, head, p block) are adjacent programs (their x tiles are the same: L2 hits)."""
    pid = tl.program_id(0)
    nb = pid % nnb
    pid = pid // nnb
    pb = pid % npb
    sh = pid // npb
    hh = sh % h
    seq = sh // h
    grp = hh // hpg
    row, s0, L, first = _seq(seq, cu_ptr, first_ptr, l, ncr, VARLEN)
    nck = tl.cdiv(L, Q)
    offs_p = pb * BP + tl.arange(0, BP)
    offs_n = nb * BN + tl.arange(0, BN)
    mp = offs_p < p
    mn = offs_n < n
    mpn = mp[:, None] & mn[None, :]
    st = offs_p[:, None] * n + offs_n[None, :]
    PN = p * n
    if HAS_INIT:
        acc = tl.load(init_ptr + (seq.to(tl.int64) * h + hh) * PN + st, mask=mpn, other=0.0).to(tl.float32)
    else:
        acc = tl.zeros((BP, BN), dtype=tl.float32)
    xb = x_ptr + ((row * l + s0) * h + hh) * p
    bb = B_ptr + ((row * l + s0) * ng + grp) * n
    ab = (row * h + hh) * l + s0
    for i in range(0, nck * SB):
        c = i // SB
        sb = i % SB
        cst = c * Q
        clen = tl.minimum(L - cst, Q)
        a_last = tl.load(a_ptr + ab + cst + clen - 1)
        if sb == 0:
            tl.store(hin_ptr + ((first + c) * h + hh) * PN + st, acc.to(hin_ptr.dtype.element_ty), mask=mpn)
        acc = acc * tl.where(sb == 0, tl.exp(a_last), 1.0)
        offs_s = sb * BS + tl.arange(0, BS)
        ms = offs_s < clen
        tk = cst + offs_s
        c64 = cst.to(tl.int64)  # int64 chunk base, int32 offsets inside the chunk
        a_s = tl.load(a_ptr + ab + tk, mask=ms, other=0.0)
        dt_s = tl.load(dtp_ptr + ab + tk, mask=ms, other=0.0)
        w = tl.where(ms, tl.exp(a_last - a_s) * dt_s, 0.0)
        xT = tl.load(xb + c64 * (h * p) + offs_s[None, :] * (h * p) + offs_p[:, None],
                     mask=ms[None, :] & mp[:, None], other=0.0).to(tl.float32)
        Bs = tl.load(bb + c64 * (ng * n) + offs_s[:, None] * (ng * n) + offs_n[None, :],
                     mask=ms[:, None] & mn[None, :], other=0.0).to(tl.float32)
        acc += tl.dot(_cast(xT * w[None, :], KIND), _cast(Bs, KIND), input_precision=PREC)
    tl.store(final_ptr + (seq.to(tl.int64) * h + hh) * PN + st, acc, mask=mpn)


# --------------------------------------------------------------------------------------------- F2: chunk scan
@triton.jit
def _ssd_chunk_scan_kernel(x_ptr, z_ptr, B_ptr, C_ptr, cb_ptr, dtp_ptr, a_ptr, hin_ptr, D_ptr, out_ptr, ypre_ptr,
                           tab_ptr, l, h, p, n, hpg, ng, ncr, npb,
                           Q: tl.constexpr, VARLEN: tl.constexpr, CB_MEM: tl.constexpr, HAS_D: tl.constexpr,
                           D_HP: tl.constexpr, HAS_Z: tl.constexpr, STORE_YPRE: tl.constexpr,
                           BM: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr, KIND: tl.constexpr,
                           PREC: tl.constexpr):
    """Chunk k, head hh, p block pb, all row blocks mb (h_in read once):
      y_t = exp(a_t) C_t h_in^T + sum_{s<=t} CB_ts exp(a_t - a_s) dt'_s x_s + D x_t;  out = y silu(z).
    Off-diagonal blocks (s block < t block) use exp(a_t - a_s) = exp(a_t - a_r) exp(a_r - a_s) with a_r = a at the
    row block's first token (2 BM exps per block instead of BM^2); the diagonal block is exact. CB comes from cb_ptr
    (CB_MEM: shared by a group's heads) or is recomputed from C and B."""
    pid = tl.program_id(0)
    hh = pid % h
    rest = pid // h
    pb = rest % npb
    k = rest // npb
    row, start, ln = _chunk(k, tab_ptr, l, ncr, Q, VARLEN)
    if ln <= 0:
        return
    grp = hh // hpg
    offs_p = pb * BP + tl.arange(0, BP)
    mp = offs_p < p
    offs_n = tl.arange(0, BN)
    mn = offs_n < n
    tok0 = row * l + start
    xyb = (tok0 * h + hh) * p
    bc = (tok0 * ng + grp) * n
    ab = (row * h + hh) * l + start
    cbb = (k.to(tl.int64) * ng + grp) * Q * Q
    hin = tl.load(hin_ptr + (k.to(tl.int64) * h + hh) * p * n + offs_p[:, None] * n + offs_n[None, :],
                  mask=mp[:, None] & mn[None, :], other=0.0).to(tl.float32)
    hinT = tl.trans(_cast(hin, KIND))                                                       # (n, p)
    if HAS_D:
        if D_HP:
            Dv = tl.load(D_ptr + hh * p + offs_p, mask=mp, other=0.0).to(tl.float32)[None, :]
        else:
            Dv = tl.load(D_ptr + hh).to(tl.float32)
    for mb in range(0, tl.cdiv(ln, BM)):
        m0 = mb * BM
        offs_m = m0 + tl.arange(0, BM)
        mm = offs_m < ln
        a_m = tl.load(a_ptr + ab + offs_m, mask=mm, other=0.0)
        a_r = tl.load(a_ptr + ab + m0)
        Cm = _cast(tl.load(C_ptr + bc + offs_m[:, None] * (ng * n) + offs_n[None, :],
                           mask=mm[:, None] & mn[None, :], other=0.0).to(tl.float32), KIND)
        # state -> output, scaled by exp(a_r) here and by exp(a_t - a_r) below
        acc = tl.dot(Cm, hinT, input_precision=PREC) * tl.exp(a_r)
        for sb in range(0, mb):  # off-diagonal blocks: every s < m0 <= t
            offs_s = sb * BM + tl.arange(0, BM)
            a_s = tl.load(a_ptr + ab + offs_s)
            dt_s = tl.load(dtp_ptr + ab + offs_s)
            if CB_MEM:
                cb = tl.load(cb_ptr + cbb + offs_m[:, None] * Q + offs_s[None, :], mask=mm[:, None],
                             other=0.0).to(tl.float32)
            else:
                Bs = tl.load(B_ptr + bc + offs_s[:, None] * (ng * n) + offs_n[None, :], mask=mn[None, :],
                             other=0.0).to(tl.float32)
                cb = tl.dot(Cm, tl.trans(_cast(Bs, KIND)), input_precision=PREC)
            xs = tl.load(x_ptr + xyb + offs_s[:, None] * (h * p) + offs_p[None, :], mask=mp[None, :],
                         other=0.0).to(tl.float32)
            colf = tl.exp(a_r - a_s) * dt_s
            acc += tl.dot(_cast(cb * colf[None, :], KIND), _cast(xs, KIND), input_precision=PREC)
        acc = acc * tl.where(mm, tl.exp(a_m - a_r), 0.0)[:, None]
        # diagonal block (s block = t block): exact decay; its x tile is also the D term's
        dt_m = tl.load(dtp_ptr + ab + offs_m, mask=mm, other=0.0)
        if CB_MEM:
            cb = tl.load(cb_ptr + cbb + offs_m[:, None] * Q + offs_m[None, :], mask=mm[:, None] & mm[None, :],
                         other=0.0).to(tl.float32)
        else:
            Bm = tl.load(B_ptr + bc + offs_m[:, None] * (ng * n) + offs_n[None, :], mask=mm[:, None] & mn[None, :],
                         other=0.0).to(tl.float32)
            cb = tl.dot(Cm, tl.trans(_cast(Bm, KIND)), input_precision=PREC)
        xy = xyb + offs_m[:, None] * (h * p) + offs_p[None, :]
        mxy = mm[:, None] & mp[None, :]
        xm = tl.load(x_ptr + xy, mask=mxy, other=0.0).to(tl.float32)
        causal = (offs_m[:, None] >= offs_m[None, :]) & mm[None, :] & mm[:, None]
        dec = tl.exp(tl.where(causal, a_m[:, None] - a_m[None, :], float("-inf")))
        acc += tl.dot(_cast(cb * dec * dt_m[None, :], KIND), _cast(xm, KIND), input_precision=PREC)
        if HAS_D:
            acc += xm * Dv
        if HAS_Z:
            if STORE_YPRE:
                tl.store(ypre_ptr + xy, acc.to(ypre_ptr.dtype.element_ty), mask=mxy)
            zm = tl.load(z_ptr + xy, mask=mxy, other=0.0).to(tl.float32)
            acc = acc * zm * tl.sigmoid(zm)
        tl.store(out_ptr + xy, acc.to(out_ptr.dtype.element_ty), mask=mxy)


# --------------------------------------------------------------------------------------------- F2h: chunk scan, head blocks
@triton.jit
def _ssd_scan_heads_kernel(x_ptr, z_ptr, B_ptr, C_ptr, cb_ptr, dtp_ptr, a_ptr, hin_ptr, D_ptr, out_ptr, ypre_ptr,
                           tab_ptr, l, h, p, n, hpg, ng, ncr, nhb, npb, nmb, Q, span_max,
                           VARLEN: tl.constexpr, CB_MEM: tl.constexpr, HAS_D: tl.constexpr, D_HP: tl.constexpr,
                           HAS_Z: tl.constexpr, STORE_YPRE: tl.constexpr, SPLIT_M: tl.constexpr, BM: tl.constexpr,
                           HB: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr, KIND: tl.constexpr,
                           PREC: tl.constexpr):
    """Chunk k, HB heads of one group, p block pb (BP of each head's p), all row blocks mb (SPLIT_M: one row
    block per program, the nmb row blocks of a chunk in separate programs, last row blocks first). Tiles are
    (rows, HB, BP) in the elementwise parts and (rows, HP = HB * BP) in the dots, so the group's C_m, CB and B are
    shared by the HB heads: every dot is (BM, K) x (K, HP).
      y_t = exp(a_t) C_t h_in^T + sum_{s<=t} CB_ts exp(a_t - a_s) dt'_s x_s + D x_t;  out = y silu(z).
    Decay per head: exp(a_t - a_s) = exp(a_t - a_r) exp(a_r - a_s) with a_r = a at the row block's first token; the
    column factor exp(a_r - a_s) dt'_s scales the x rows (dot B operand, per head), the row factor exp(a_t - a_r) the
    accumulator (per head): 2 BM exps per block and head. For s before a_r's token both factors are <= 1. On the
    diagonal block the column factor is >= 1 (up to exp(span)); when the block's decay span max |a_t - a_r| exceeds
    span_max (bf16 / fp32 overflow headroom, fp16's range) that block is done exactly per head (BM^2 exps each)."""
    pid = tl.program_id(0)
    if SPLIT_M:
        mb_lo = nmb - 1 - pid // (tl.num_programs(0) // nmb)  # the heavy (last) row blocks are scheduled first
        pid = pid % (tl.num_programs(0) // nmb)
    pb = pid % npb
    rest = pid // npb
    hb = rest % nhb
    k = rest // nhb
    row, start, ln = _chunk(k, tab_ptr, l, ncr, Q, VARLEN)
    if SPLIT_M:
        mb_hi = tl.minimum(mb_lo + 1, tl.cdiv(ln, BM))
    else:
        mb_lo = 0
        mb_hi = tl.cdiv(ln, BM)
    if mb_lo >= mb_hi:
        return
    HP: tl.constexpr = HB * BP
    hh0 = hb * HB
    grp = hh0 // hpg
    offs_h = tl.arange(0, HB)
    offs_n = tl.arange(0, BN)
    mn = offs_n < n
    offs_p = pb * BP + tl.arange(0, BP)
    mp = offs_p < p
    # (row, head, p) pieces: column offsets of a token's x row, and their mask
    col3 = offs_h[None, :, None] * p + offs_p[None, None, :]
    mp3 = mp[None, None, :]
    # scalar base pointers (int64), int32 offsets inside the chunk
    tok0 = row * l + start
    xyb = (tok0 * h + hh0) * p
    xb = x_ptr + xyb
    bcb = (tok0 * ng + grp) * n
    Cb = C_ptr + bcb
    Bb = B_ptr + bcb
    ab0 = (row * h + hh0) * l + start                            # a / dt' of head hh0; head j at + j * l
    ap = a_ptr + ab0
    dp = dtp_ptr + ab0
    cbp = cb_ptr + (k.to(tl.int64) * ng + grp) * Q * Q
    hin_p = (hin_ptr + (k.to(tl.int64) * h + hh0) * p * n
             + tl.reshape(col3, (HP,))[:, None] * n + offs_n[None, :])                     # (HP, BN)
    mhin = tl.reshape(tl.broadcast_to(mp3, (1, HB, BP)), (HP,))[:, None] & mn[None, :]
    if HAS_D:
        if D_HP:
            Dv = tl.load(D_ptr + hh0 * p + col3, mask=mp3, other=0.0).to(tl.float32)         # (1, HB, BP)
        else:
            Dv = tl.load(D_ptr + hh0 + offs_h).to(tl.float32)[None, :, None]               # (1, HB, 1)
    for mb in range(mb_lo, mb_hi):
        m0 = mb * BM
        offs_m = m0 + tl.arange(0, BM)
        mm = offs_m < ln
        a_r = tl.load(ap + offs_h * l + m0)                                                # (HB,)
        a_m = tl.load(ap + offs_h[None, :] * l + offs_m[:, None], mask=mm[:, None], other=0.0)  # (BM, HB)
        dlt = tl.where(mm[:, None], a_m - a_r[None, :], 0.0)
        span = tl.max(tl.max(tl.abs(dlt), axis=1), axis=0)
        fast = (span <= span_max).to(tl.int32)
        Cm = _cast(tl.load(Cb + offs_m[:, None] * (ng * n) + offs_n[None, :], mask=mm[:, None] & mn[None, :],
                           other=0.0).to(tl.float32), KIND)
        acc = tl.zeros((BM, HP), dtype=tl.float32)
        for sb in range(0, mb + fast):  # source blocks before the row block, and the diagonal one when fast
            offs_s = sb * BM + tl.arange(0, BM)
            ms = offs_s < ln
            if CB_MEM:
                cb = tl.load(cbp + offs_m[:, None] * Q + offs_s[None, :], mask=mm[:, None] & ms[None, :],
                             other=0.0).to(tl.float32)
            else:
                Bs = tl.load(Bb + offs_s[:, None] * (ng * n) + offs_n[None, :], mask=ms[:, None] & mn[None, :],
                             other=0.0).to(tl.float32)
                cb = tl.dot(Cm, tl.trans(_cast(Bs, KIND)), input_precision=PREC)
            cb = tl.where(offs_m[:, None] >= offs_s[None, :], cb, 0.0)
            a_s = tl.load(ap + offs_h[None, :] * l + offs_s[:, None], mask=ms[:, None], other=0.0)   # (BM, HB)
            dt_s = tl.load(dp + offs_h[None, :] * l + offs_s[:, None], mask=ms[:, None], other=0.0)
            colf = tl.where(ms[:, None], tl.exp(a_r[None, :] - a_s) * dt_s, 0.0)
            xs = tl.load(xb + offs_s[:, None, None] * (h * p) + col3, mask=ms[:, None, None] & mp3,
                         other=0.0).to(tl.float32)                                         # (BM, HB, BP)
            xs = tl.reshape(xs * colf[:, :, None], (BM, HP))
            acc += tl.dot(_cast(cb, KIND), _cast(xs, KIND), input_precision=PREC)
        # state -> output, scaled by exp(a_r) here (per head) and by the row factor below. After the loop and added
        # (not the loop's initial accumulator): Triton gives a dot feeding another dot all warps along M, which
        # at BM = 64 and 8 warps would compute it twice.
        e_r = tl.exp(tl.load(ap + (tl.arange(0, HP) // BP) * l + m0))                     # (HP,) per head
        hinT = tl.trans(_cast(tl.load(hin_p, mask=mhin, other=0.0).to(tl.float32) * e_r[:, None], KIND))
        acc = acc + tl.dot(Cm, hinT, input_precision=PREC)                                  # (BM, HP)
        acc3 = tl.reshape(acc, (BM, HB, BP)) * tl.where(mm[:, None], tl.exp(dlt), 0.0)[:, :, None]
        xy = offs_m[:, None, None] * (h * p) + col3
        mxy = mm[:, None, None] & mp3
        if fast == 0:  # steep decay inside the diagonal block: exact exp(a_t - a_s), one head at a time
            if CB_MEM:
                cbd = tl.load(cbp + offs_m[:, None] * Q + offs_m[None, :], mask=mm[:, None] & mm[None, :],
                              other=0.0).to(tl.float32)
            else:
                Bm = tl.load(Bb + offs_m[:, None] * (ng * n) + offs_n[None, :], mask=mm[:, None] & mn[None, :],
                             other=0.0).to(tl.float32)
                cbd = tl.dot(Cm, tl.trans(_cast(Bm, KIND)), input_precision=PREC)
            causal = (offs_m[:, None] >= offs_m[None, :]) & mm[None, :] & mm[:, None]
            for j in tl.static_range(HB):
                a_j = tl.load(ap + j * l + offs_m, mask=mm, other=0.0)
                dt_j = tl.load(dp + j * l + offs_m, mask=mm, other=0.0)
                dec = tl.exp(tl.where(causal, a_j[:, None] - a_j[None, :], float("-inf")))
                xj = tl.load(xb + j * p + offs_m[:, None] * (h * p) + offs_p[None, :],
                             mask=mm[:, None] & mp[None, :], other=0.0).to(tl.float32)
                r = tl.dot(_cast(cbd * dec * dt_j[None, :], KIND), _cast(xj, KIND), input_precision=PREC)
                acc3 += tl.where(offs_h[None, :, None] == j, r[:, None, :], 0.0)
        if HAS_D:
            acc3 += tl.load(xb + xy, mask=mxy, other=0.0).to(tl.float32) * Dv
        if HAS_Z:
            if STORE_YPRE:
                tl.store(ypre_ptr + xyb + xy, acc3.to(ypre_ptr.dtype.element_ty), mask=mxy)
            zm = tl.load(z_ptr + xyb + xy, mask=mxy, other=0.0).to(tl.float32)
            acc3 = acc3 * zm * tl.sigmoid(zm)
        tl.store(out_ptr + xyb + xy, acc3.to(out_ptr.dtype.element_ty), mask=mxy)


# --------------------------------------------------------------------------------------------- B1: states bwd
@triton.jit
def _ssd_state_bwd_kernel(dout_ptr, z_ptr, ypre_ptr, C_ptr, a_ptr, hin_ptr, dfinal_ptr, dsin_ptr,
                          dy_ptr, dz_ptr, dS_ptr, dinit_ptr, dalast_ptr, cu_ptr, first_ptr,
                          l, h, p, n, hpg, ng, ncr, npb, nnb,
                          Q, VARLEN: tl.constexpr, HAS_Z: tl.constexpr, HAS_DFINAL: tl.constexpr,
                          HAS_DSIN: tl.constexpr, SB: tl.constexpr, BS: tl.constexpr, BP: tl.constexpr,
                          BN: tl.constexpr, KIND: tl.constexpr, PREC: tl.constexpr):
    """Reverse walk over a sequence's chunks (per head, p block). g = gradient w.r.t. the state after chunk c:
    dS[c] = g;  d a_L[c] += exp(a_L) <g, h_in[c]>;  g <- exp(a_L) g + d states_in[c] + sum_t exp(a_t) dy_t^T C_t.
    Also dy = dout silu(z) and dz = dout ypre silu'(z) for the program's columns (stored; dy only with z). With n in
    nnb blocks (adjacent programs), every n block computes dy for its dot and the first one stores dy and dz."""
    pid = tl.program_id(0)
    nb = pid % nnb
    pid = pid // nnb
    pb = pid % npb
    sh = pid // npb
    hh = sh % h
    seq = sh // h
    grp = hh // hpg
    row, s0, L, first = _seq(seq, cu_ptr, first_ptr, l, ncr, VARLEN)
    nck = tl.cdiv(L, Q)
    offs_p = pb * BP + tl.arange(0, BP)
    offs_n = nb * BN + tl.arange(0, BN)
    mp = offs_p < p
    mn = offs_n < n
    mpn = mp[:, None] & mn[None, :]
    st = offs_p[:, None] * n + offs_n[None, :]
    PN = p * n
    if HAS_DFINAL:
        g = tl.load(dfinal_ptr + (seq.to(tl.int64) * h + hh) * PN + st, mask=mpn, other=0.0).to(tl.float32)
    else:
        g = tl.zeros((BP, BN), dtype=tl.float32)
    xyb = ((row * l + s0) * h + hh) * p
    cb_ = C_ptr + ((row * l + s0) * ng + grp) * n
    ab = (row * h + hh) * l + s0
    total = nck * SB
    for i in range(0, total):
        j = total - 1 - i
        c = j // SB
        sb = j % SB
        cst = c * Q
        clen = tl.minimum(L - cst, Q)
        a_last = tl.load(a_ptr + ab + cst + clen - 1)
        e_last = tl.exp(a_last)
        if sb == SB - 1:
            slot = ((first + c) * h + hh) * PN
            tl.store(dS_ptr + slot + st, g.to(dS_ptr.dtype.element_ty), mask=mpn)
            hin = tl.load(hin_ptr + slot + st, mask=mpn, other=0.0).to(tl.float32)
            tl.atomic_add(dalast_ptr + (first + c) * h + hh, e_last * tl.sum(tl.sum(g * hin, axis=1), axis=0),
                          sem="relaxed")
            if HAS_DSIN:
                g = g * e_last + tl.load(dsin_ptr + slot + st, mask=mpn, other=0.0).to(tl.float32)
            else:
                g = g * e_last
        offs_s = sb * BS + tl.arange(0, BS)
        ms = offs_s < clen
        tk = cst + offs_s
        c64 = cst.to(tl.int64)  # int64 chunk base, int32 offsets inside the chunk
        a_s = tl.load(a_ptr + ab + tk, mask=ms, other=0.0)
        e_s = tl.where(ms, tl.exp(a_s), 0.0)
        xy = xyb + c64 * (h * p) + offs_s[:, None] * (h * p) + offs_p[None, :]
        mxy = ms[:, None] & mp[None, :]
        dy = tl.load(dout_ptr + xy, mask=mxy, other=0.0).to(tl.float32)
        if HAS_Z:
            mst = mxy & (nb == 0)
            zz = tl.load(z_ptr + xy, mask=mxy, other=0.0).to(tl.float32)
            yp = tl.load(ypre_ptr + xy, mask=mst, other=0.0).to(tl.float32)
            sig = tl.sigmoid(zz)
            tl.store(dz_ptr + xy, (dy * yp * sig * (1.0 + zz * (1.0 - sig))).to(dz_ptr.dtype.element_ty), mask=mst)
            dy = dy * zz * sig
            tl.store(dy_ptr + xy, dy.to(dy_ptr.dtype.element_ty), mask=mst)
        Cs = tl.load(cb_ + c64 * (ng * n) + offs_s[:, None] * (ng * n) + offs_n[None, :],
                     mask=ms[:, None] & mn[None, :], other=0.0).to(tl.float32)
        g += tl.dot(_cast(tl.trans(dy * e_s[:, None]), KIND), _cast(Cs, KIND), input_precision=PREC)
    tl.store(dinit_ptr + (seq.to(tl.int64) * h + hh) * PN + st, g, mask=mpn)


# --------------------------------------------------------------------------------------------- B2: dx, ddt
@triton.jit
def _ssd_bwd_dx_kernel(x_ptr, dy_ptr, B_ptr, C_ptr, cb_ptr, dtp_ptr, a_ptr, hin_ptr, dS_ptr, D_ptr,
                       dx_ptr, ddtp_ptr, da_ptr, dalast_ptr, dD_ptr, tab_ptr,
                       l, h, p, n, hpg, ng, ncr, npb,
                       Q, VARLEN: tl.constexpr, HAS_D: tl.constexpr, D_HP: tl.constexpr,
                       BM: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr, KIND: tl.constexpr,
                       PREC: tl.constexpr):
    """Chunk k, head hh, p block pb, all source blocks sb (dS and h_in read once); u_s = dt'_s x_s,
    e_s = exp(a_L - a_s):
      du_s = sum_{t>=s} CB_ts exp(a_t - a_s) dy_t + e_s B_s dS^T;  dx_s = dt'_s du_s + D dy_s;  d dt'_s += x_s.du_s
      state-in path:  d a_s -= dt'_s q_s,  d a_L += sum_s dt'_s q_s,  q_s = e_s x_s.(dS B_s)
      state-out path: d a_s += exp(a_s) dy_s.(h_in C_s)
    Off-diagonal blocks (t block > s block) factor exp(a_t - a_s) = exp(a_t - a_r) exp(a_r - a_s), a_r = a at the
    source block's last token. The intra-chunk d a terms come from _ssd_bwd_dcb_kernel; dD partials per chunk."""
    pid = tl.program_id(0)
    hh = pid % h
    rest = pid // h
    pb = rest % npb
    k = rest // npb
    row, start, ln = _chunk(k, tab_ptr, l, ncr, Q, VARLEN)
    if ln <= 0:
        return
    grp = hh // hpg
    offs_p = pb * BP + tl.arange(0, BP)
    mp = offs_p < p
    offs_n = tl.arange(0, BN)
    mn = offs_n < n
    tok0 = row * l + start
    xyb = (tok0 * h + hh) * p
    bc = (tok0 * ng + grp) * n
    ab = (row * h + hh) * l + start
    cbb = (k.to(tl.int64) * ng + grp) * Q * Q
    a_last = tl.load(a_ptr + ab + ln - 1)
    mpn = mp[:, None] & mn[None, :]
    slot = (k.to(tl.int64) * h + hh) * p * n + offs_p[:, None] * n + offs_n[None, :]
    dST = tl.trans(_cast(tl.load(dS_ptr + slot, mask=mpn, other=0.0).to(tl.float32), KIND))     # (n, p)
    hinT = tl.trans(_cast(tl.load(hin_ptr + slot, mask=mpn, other=0.0).to(tl.float32), KIND))   # (n, p)
    if HAS_D:
        if D_HP:
            Dv = tl.load(D_ptr + hh * p + offs_p, mask=mp, other=0.0).to(tl.float32)[None, :]
        else:
            Dv = tl.load(D_ptr + hh).to(tl.float32)
    dD = tl.zeros((BP,), dtype=tl.float32)
    dal = tl.zeros((BM,), dtype=tl.float32)
    ntb = tl.cdiv(ln, BM)
    for sb in range(0, ntb):
        s0 = sb * BM
        offs_s = s0 + tl.arange(0, BM)
        ms = offs_s < ln
        a_s = tl.load(a_ptr + ab + offs_s, mask=ms, other=0.0)
        dt_s = tl.load(dtp_ptr + ab + offs_s, mask=ms, other=0.0)
        a_r = tl.load(a_ptr + ab + tl.minimum(s0 + BM, ln) - 1)
        du = tl.zeros((BM, BP), dtype=tl.float32)
        for tb in range(sb + 1, ntb):  # off-diagonal target blocks: every t > a_r's token >= s
            offs_t = tb * BM + tl.arange(0, BM)
            mt = offs_t < ln
            a_t = tl.load(a_ptr + ab + offs_t, mask=mt, other=0.0)
            cbT = tl.load(cb_ptr + cbb + offs_t[None, :] * Q + offs_s[:, None], mask=ms[:, None] & mt[None, :],
                          other=0.0).to(tl.float32)                                        # (s, t)
            rowf = tl.where(mt, tl.exp(a_t - a_r), 0.0)
            dyt = tl.load(dy_ptr + xyb + offs_t[:, None] * (h * p) + offs_p[None, :],
                          mask=mt[:, None] & mp[None, :], other=0.0).to(tl.float32)
            du += tl.dot(_cast(cbT * rowf[None, :], KIND), _cast(dyt, KIND), input_precision=PREC)
        du = du * tl.where(ms, tl.exp(a_r - a_s), 0.0)[:, None]
        # diagonal block
        xy = xyb + offs_s[:, None] * (h * p) + offs_p[None, :]
        mxy = ms[:, None] & mp[None, :]
        dys = tl.load(dy_ptr + xy, mask=mxy, other=0.0).to(tl.float32)
        cbT = tl.load(cb_ptr + cbb + offs_s[None, :] * Q + offs_s[:, None], mask=ms[:, None] & ms[None, :],
                      other=0.0).to(tl.float32)                                            # (s, t)
        causal = (offs_s[None, :] >= offs_s[:, None]) & ms[None, :] & ms[:, None]
        dec = tl.exp(tl.where(causal, a_s[None, :] - a_s[:, None], float("-inf")))
        du += tl.dot(_cast(cbT * dec, KIND), _cast(dys, KIND), input_precision=PREC)
        # state-out path (d a only): exp(a_s) dy_s.(h_in C_s)
        msn = ms[:, None] & mn[None, :]
        Cs = _cast(tl.load(C_ptr + bc + offs_s[:, None] * (ng * n) + offs_n[None, :], mask=msn,
                           other=0.0).to(tl.float32), KIND)
        yo = tl.dot(Cs, hinT, input_precision=PREC)                                         # (s, p)
        dat = tl.where(ms, tl.exp(a_s), 0.0) * tl.sum(dys * yo, axis=1)
        # state-in path: e_s B_s dS^T
        Bs = _cast(tl.load(B_ptr + bc + offs_s[:, None] * (ng * n) + offs_n[None, :], mask=msn,
                           other=0.0).to(tl.float32), KIND)
        dus = tl.dot(Bs, dST, input_precision=PREC) * tl.where(ms, tl.exp(a_last - a_s), 0.0)[:, None]
        du += dus
        xs = tl.load(x_ptr + xy, mask=mxy, other=0.0).to(tl.float32)
        q = tl.sum(xs * dus, axis=1)
        dx = du * dt_s[:, None]
        if HAS_D:
            dx += dys * Dv
            dD += tl.sum(dys * xs, axis=0)
        tl.store(dx_ptr + xy, dx.to(dx_ptr.dtype.element_ty), mask=mxy)
        tl.atomic_add(ddtp_ptr + ab + offs_s, tl.sum(xs * du, axis=1), mask=ms, sem="relaxed")
        tl.atomic_add(da_ptr + ab + offs_s, dat - dt_s * q, mask=ms, sem="relaxed")
        dal += dt_s * q
    tl.atomic_add(dalast_ptr + k * h + hh, tl.sum(dal, axis=0), sem="relaxed")
    if HAS_D:
        tl.store(dD_ptr + (k.to(tl.int64) * h + hh) * p + offs_p, dD, mask=mp)


# --------------------------------------------------------------------------------------------- B2h: dx, head blocks
@triton.jit
def _head_sums(t, head_hp, HB: tl.constexpr):
    """(rows, HP) -> (rows, HB): sums over each head's columns (column j belongs to head head_hp[j])."""
    offs_h = tl.arange(0, HB)
    out = tl.zeros((t.shape[0], HB), dtype=tl.float32)
    for j in tl.static_range(HB):
        sj = tl.sum(tl.where(head_hp[None, :] == j, t, 0.0), axis=1)
        out = tl.where(offs_h[None, :] == j, sj[:, None], out)
    return out


@triton.jit
def _head_expand(v, head_hp, HB: tl.constexpr):
    """(rows, HB) -> (rows, HP): column j gets v[:, head_hp[j]]."""
    offs_h = tl.arange(0, HB)
    out = tl.zeros((v.shape[0], head_hp.shape[0]), dtype=tl.float32)
    for j in tl.static_range(HB):
        vj = tl.sum(tl.where(offs_h[None, :] == j, v, 0.0), axis=1)
        out = tl.where(head_hp[None, :] == j, vj[:, None], out)
    return out


@triton.jit
def _ssd_bwd_dx_heads_kernel(x_ptr, dy_ptr, B_ptr, C_ptr, cb_ptr, dtp_ptr, a_ptr, hin_ptr, dS_ptr, D_ptr,
                             dx_ptr, ddtp_ptr, da_ptr, dalast_ptr, dD_ptr, tab_ptr,
                             l, h, p, n, hpg, ng, ncr, nhb, npb, Q, span_max,
                             VARLEN: tl.constexpr, HAS_D: tl.constexpr, D_HP: tl.constexpr, BM: tl.constexpr,
                             HB: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr, KIND: tl.constexpr,
                             PREC: tl.constexpr):
    """_ssd_bwd_dx_kernel for HB heads of one group at once (columns j = (head j // BP, p) of (rows, HP = HB * BP)
    tiles, as in _ssd_scan_heads_kernel): the group's CB^T, B and C are shared by the heads' dots. Per source
    block s (a_r = a at the block's last token):
      du_s = exp(a_r - a_s) [ B_s (exp(a_L - a_r) dS)^T + sum_{t>=s} CB_ts (exp(a_t - a_r) dy_t) ]
    with the diagonal block inside the sum when its decay span max |a - a_r| <= span_max, else exactly per head.
    dx_s = dt'_s du_s + D dy_s;  d dt'_s += x_s.du_s;  d a_s += exp(a_s) dy_s.(h_in C_s) - dt'_s q_s;
    d a_L += sum_s dt'_s q_s with q_s = x_s.(state-in part of du_s); dD partials per chunk."""
    pid = tl.program_id(0)
    pb = pid % npb
    rest = pid // npb
    hb = rest % nhb
    k = rest // nhb
    row, start, ln = _chunk(k, tab_ptr, l, ncr, Q, VARLEN)
    if ln <= 0:
        return
    HP: tl.constexpr = HB * BP
    hh0 = hb * HB
    grp = hh0 // hpg
    offs_h = tl.arange(0, HB)
    offs_n = tl.arange(0, BN)
    mn = offs_n < n
    offs_p = pb * BP + tl.arange(0, BP)
    mp = offs_p < p
    col3 = offs_h[None, :, None] * p + offs_p[None, None, :]
    mp3 = mp[None, None, :]
    offs_j = tl.arange(0, HP)
    head_hp = offs_j // BP
    pj = pb * BP + offs_j % BP
    mj = pj < p
    colj = head_hp * p + pj                                            # (HP,) offset of (head, p) in a token row
    tok0 = row * l + start
    xyb = (tok0 * h + hh0) * p
    xb = x_ptr + xyb
    dyb = dy_ptr + xyb
    bcb = (tok0 * ng + grp) * n
    Cb = C_ptr + bcb
    Bb = B_ptr + bcb
    ab0 = (row * h + hh0) * l + start
    ap = a_ptr + ab0
    dp = dtp_ptr + ab0
    cbp = cb_ptr + (k.to(tl.int64) * ng + grp) * Q * Q
    slot = (k.to(tl.int64) * h + hh0) * p * n + colj[:, None] * n + offs_n[None, :]
    mslot = mj[:, None] & mn[None, :]
    a_last_hp = tl.load(ap + head_hp * l + ln - 1)                     # (HP,)
    if HAS_D:
        if D_HP:
            Dv = tl.load(D_ptr + hh0 * p + colj, mask=mj, other=0.0).to(tl.float32)[None, :]
        else:
            Dv = tl.load(D_ptr + hh0 + head_hp).to(tl.float32)[None, :]
    dD = tl.zeros((HP,), dtype=tl.float32)
    dal = tl.zeros((HB,), dtype=tl.float32)
    ntb = tl.cdiv(ln, BM)
    for sb in range(0, ntb):
        s0 = sb * BM
        offs_s = s0 + tl.arange(0, BM)
        ms = offs_s < ln
        last = tl.minimum(s0 + BM, ln) - 1
        a_r = tl.load(ap + offs_h * l + last)                                             # (HB,)
        a_s = tl.load(ap + offs_h[None, :] * l + offs_s[:, None], mask=ms[:, None], other=0.0)   # (BM, HB)
        dt_s = tl.load(dp + offs_h[None, :] * l + offs_s[:, None], mask=ms[:, None], other=0.0)
        dlt = tl.where(ms[:, None], a_s - a_r[None, :], 0.0)
        span = tl.max(tl.max(tl.abs(dlt), axis=1), axis=0)
        fast = (span <= span_max).to(tl.int32)
        xy = offs_s[:, None] * (h * p) + colj[None, :]
        mxy = ms[:, None] & mj[None, :]
        msn = ms[:, None] & mn[None, :]
        # state-out path (d a only): exp(a_s) dy_s.(h_in C_s)
        Cs = _cast(tl.load(Cb + offs_s[:, None] * (ng * n) + offs_n[None, :], mask=msn, other=0.0).to(tl.float32),
                   KIND)
        hinT = tl.trans(_cast(tl.load(hin_ptr + slot, mask=mslot, other=0.0).to(tl.float32), KIND))
        yo = tl.dot(Cs, hinT, input_precision=PREC)                                         # (BM, HP)
        dys = tl.load(dyb + xy, mask=mxy, other=0.0).to(tl.float32)
        dat = tl.where(ms[:, None], tl.exp(a_s), 0.0) * _head_sums(dys * yo, head_hp, HB)   # (BM, HB)
        # state-in path, before the row factor exp(a_r - a_s): B_s (exp(a_L - a_r) dS)^T
        rowf = tl.where(ms[:, None], tl.exp(-dlt), 0.0)
        a_r_hp = tl.load(ap + head_hp * l + last)
        Bs = _cast(tl.load(Bb + offs_s[:, None] * (ng * n) + offs_n[None, :], mask=msn, other=0.0).to(tl.float32),
                   KIND)
        dST = tl.trans(_cast(tl.load(dS_ptr + slot, mask=mslot, other=0.0).to(tl.float32)
                             * tl.exp(a_last_hp - a_r_hp)[:, None], KIND))                  # (BN, HP)
        acc = tl.dot(Bs, dST, input_precision=PREC)                                        # (BM, HP)
        xs = tl.load(xb + xy, mask=mxy, other=0.0).to(tl.float32)
        q = _head_sums(xs * acc, head_hp, HB) * rowf                                        # (BM, HB)
        for tb in range(sb + 1 - fast, ntb):  # target blocks after the source block (and the diagonal when fast)
            offs_t = tb * BM + tl.arange(0, BM)
            mt = offs_t < ln
            cbT = tl.load(cbp + offs_t[None, :] * Q + offs_s[:, None], mask=ms[:, None] & mt[None, :],
                          other=0.0).to(tl.float32)                                        # (s, t)
            cbT = tl.where(offs_t[None, :] >= offs_s[:, None], cbT, 0.0)
            a_t = tl.load(ap + offs_h[None, :] * l + offs_t[:, None], mask=mt[:, None], other=0.0)   # (BM, HB)
            colf = tl.where(mt[:, None], tl.exp(a_t - a_r[None, :]), 0.0)
            dyt = tl.load(dyb + offs_t[:, None] * (h * p) + colj[None, :], mask=mt[:, None] & mj[None, :],
                          other=0.0).to(tl.float32)
            dyt = dyt * _head_expand(colf, head_hp, HB)
            acc += tl.dot(_cast(cbT, KIND), _cast(dyt, KIND), input_precision=PREC)
        du = acc * _head_expand(rowf, head_hp, HB)
        if fast == 0:  # steep decay inside the diagonal block: exact exp(a_t - a_s), one head at a time (dy masked
            # to the head's columns, so the dot adds to those only)
            cbd = tl.load(cbp + offs_s[None, :] * Q + offs_s[:, None], mask=ms[:, None] & ms[None, :],
                          other=0.0).to(tl.float32)                                        # (s, t)
            causal = (offs_s[None, :] >= offs_s[:, None]) & ms[None, :] & ms[:, None]
            dys = tl.load(dyb + xy, mask=mxy, other=0.0).to(tl.float32)
            for j in tl.static_range(HB):
                a_j = tl.load(ap + j * l + offs_s, mask=ms, other=0.0)
                dec = tl.exp(tl.where(causal, a_j[None, :] - a_j[:, None], float("-inf")))
                du += tl.dot(_cast(cbd * dec, KIND), _cast(tl.where(head_hp[None, :] == j, dys, 0.0), KIND),
                             input_precision=PREC)
        dx = du * _head_expand(dt_s, head_hp, HB)
        if HAS_D:
            dys = tl.load(dyb + xy, mask=mxy, other=0.0).to(tl.float32)
            dx += dys * Dv
            dD += tl.sum(dys * xs, axis=0)
        tl.store(dx_ptr + xyb + xy, dx.to(dx_ptr.dtype.element_ty), mask=mxy)
        hs = ab0 + offs_h[None, :] * l + offs_s[:, None]                                   # (BM, HB)
        tl.atomic_add(ddtp_ptr + hs, _head_sums(xs * du, head_hp, HB), mask=ms[:, None], sem="relaxed")
        tl.atomic_add(da_ptr + hs, dat - dt_s * q, mask=ms[:, None], sem="relaxed")
        dal += tl.sum(dt_s * q, axis=0)
    tl.atomic_add(dalast_ptr + k * h + hh0 + offs_h, dal, sem="relaxed")
    if HAS_D:
        tl.store(dD_ptr + (k.to(tl.int64) * h + hh0) * p + colj, dD, mask=mj)


# --------------------------------------------------------------------------------------------- B3: dCB
@triton.jit
def _ssd_bwd_dcb_kernel(x_ptr, dy_ptr, cb_ptr, dtp_ptr, a_ptr, dcb_ptr, da_ptr, tab_ptr,
                        l, h, p, hpg, ng, ncr, nmb,
                        Q, VARLEN: tl.constexpr, NPK: tl.constexpr, BM: tl.constexpr,
                        BPK: tl.constexpr, KIND: tl.constexpr, PREC: tl.constexpr):
    """Block (tb, sb), tb >= sb, of chunk k, group gg: G_h = (dy_t u_s^T) o exp(a_t - a_s) [s <= t] per head of the
    group; dCB = sum_h G_h (stored, feeds dB / dC); d a_t += rowsum(G_h o CB), d a_s -= colsum(G_h o CB)."""
    pid = tl.program_id(0)
    gg = pid % ng
    rest = pid // ng
    pair = rest % (nmb * nmb)
    k = rest // (nmb * nmb)
    tb = pair // nmb
    sb = pair % nmb
    if sb > tb:
        return
    row, start, ln = _chunk(k, tab_ptr, l, ncr, Q, VARLEN)
    if tb * BM >= ln:
        return
    offs_t = tb * BM + tl.arange(0, BM)
    offs_s = sb * BM + tl.arange(0, BM)
    mt = offs_t < ln
    ms = offs_s < ln
    causal = (offs_t[:, None] >= offs_s[None, :]) & mt[:, None] & ms[None, :]
    cbb = (k.to(tl.int64) * ng + gg) * Q * Q
    cb = tl.load(cb_ptr + cbb + offs_t[:, None] * Q + offs_s[None, :], mask=causal, other=0.0).to(tl.float32)
    tok0 = row * l + start
    acc = tl.zeros((BM, BM), dtype=tl.float32)
    for j in range(0, hpg):
        hh = gg * hpg + j
        ab = (row * h + hh) * l + start
        a_t = tl.load(a_ptr + ab + offs_t, mask=mt, other=0.0)
        a_s = tl.load(a_ptr + ab + offs_s, mask=ms, other=0.0)
        dt_s = tl.load(dtp_ptr + ab + offs_s, mask=ms, other=0.0)
        xyb = (tok0 * h + hh) * p
        if NPK == 1:  # one dot per head: the head loop is the pipelined loop
            offs_p = tl.arange(0, BPK)
            mp = offs_p < p
            dyt = tl.load(dy_ptr + xyb + offs_t[:, None] * (h * p) + offs_p[None, :],
                          mask=mt[:, None] & mp[None, :], other=0.0).to(tl.float32)
            xs = tl.load(x_ptr + xyb + offs_s[:, None] * (h * p) + offs_p[None, :],
                         mask=ms[:, None] & mp[None, :], other=0.0).to(tl.float32)
            dM = tl.dot(_cast(dyt, KIND), tl.trans(_cast(xs, KIND)), input_precision=PREC)
        else:
            dM = tl.zeros((BM, BM), dtype=tl.float32)
            for p0 in range(0, p, BPK):
                offs_p = p0 + tl.arange(0, BPK)
                mp = offs_p < p
                dyt = tl.load(dy_ptr + xyb + offs_t[:, None] * (h * p) + offs_p[None, :],
                              mask=mt[:, None] & mp[None, :], other=0.0).to(tl.float32)
                xs = tl.load(x_ptr + xyb + offs_s[:, None] * (h * p) + offs_p[None, :],
                             mask=ms[:, None] & mp[None, :], other=0.0).to(tl.float32)
                dM += tl.dot(_cast(dyt, KIND), tl.trans(_cast(xs, KIND)), input_precision=PREC)
        if tb > sb:  # off-diagonal: exp(a_t - a_s) = exp(a_t - a_r) exp(a_r - a_s), a_r = a at the t block's start
            a_r = tl.load(a_ptr + ab + tb * BM)
            dec = (tl.where(mt, tl.exp(a_t - a_r), 0.0)[:, None] *
                   tl.where(ms, tl.exp(a_r - a_s) * dt_s, 0.0)[None, :])
        else:
            dec = tl.exp(tl.where(causal, a_t[:, None] - a_s[None, :], float("-inf"))) * dt_s[None, :]
        Gd = dM * dec
        acc += Gd
        G = Gd * cb
        tl.atomic_add(da_ptr + ab + offs_t, tl.sum(G, axis=1), mask=mt, sem="relaxed")
        tl.atomic_add(da_ptr + ab + offs_s, -tl.sum(G, axis=0), mask=ms, sem="relaxed")
    tl.store(dcb_ptr + cbb + offs_t[:, None] * Q + offs_s[None, :], acc.to(dcb_ptr.dtype.element_ty),
             mask=(offs_t < Q)[:, None] & (offs_s < Q)[None, :])


# --------------------------------------------------------------------------------------------- B4: dB, dC
@triton.jit
def _ssd_bwd_dbc_kernel(u_ptr, bc_ptr, dcb_ptr, dtp_ptr, a_ptr, st_ptr, out_ptr, tab_ptr,
                        l, h, p, n, hpg, ng, ncr, nmb,
                        Q, VARLEN: tl.constexpr, IS_DC: tl.constexpr, NPK: tl.constexpr,
                        BM: tl.constexpr, BPK: tl.constexpr, BN: tl.constexpr, KIND: tl.constexpr,
                        PREC: tl.constexpr):
    """Rows jb of chunk k, group gg; launched twice:
      dB (IS_DC False; u = x, bc = C, st = dS):     dB_j = sum_{t>=j} dCB_tj C_t + sum_heads exp(a_L - a_j) dt'_j x_j dS
      dC (IS_DC True;  u = dy, bc = B, st = h_in):  dC_j = sum_{s<=j} dCB_js B_s + sum_heads exp(a_j) dy_j h_in
    One (BM, n) fp32 accumulator per program, so BM can be large and dS / h_in are read by few row blocks. dCB
    loads are masked to the causal triangle (any block grid of _ssd_bwd_dcb_kernel works)."""
    pid = tl.program_id(0)
    gg = pid % ng
    rest = pid // ng
    jb = rest % nmb
    k = rest // nmb
    row, start, ln = _chunk(k, tab_ptr, l, ncr, Q, VARLEN)
    if jb * BM >= ln:
        return
    offs_j = jb * BM + tl.arange(0, BM)
    mj = offs_j < ln
    offs_n = tl.arange(0, BN)
    mn = offs_n < n
    tok0 = row * l + start
    bcb = (tok0 * ng + gg) * n
    cbb = (k.to(tl.int64) * ng + gg) * Q * Q
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    if IS_DC:
        for sb in range(0, jb + 1):
            offs_s = sb * BM + tl.arange(0, BM)
            ms = offs_s < ln
            dcb = tl.load(dcb_ptr + cbb + offs_j[:, None] * Q + offs_s[None, :],
                          mask=mj[:, None] & ms[None, :] & (offs_j[:, None] >= offs_s[None, :]),
                          other=0.0).to(tl.float32)                                        # (j, s)
            Bs = tl.load(bc_ptr + bcb + offs_s[:, None] * (ng * n) + offs_n[None, :], mask=ms[:, None] & mn[None, :],
                         other=0.0).to(tl.float32)
            acc += tl.dot(_cast(dcb, KIND), _cast(Bs, KIND), input_precision=PREC)
    else:
        for tb in range(jb, tl.cdiv(ln, BM)):
            offs_t = tb * BM + tl.arange(0, BM)
            mt = offs_t < ln
            dcbT = tl.load(dcb_ptr + cbb + offs_t[None, :] * Q + offs_j[:, None],
                           mask=mj[:, None] & mt[None, :] & (offs_t[None, :] >= offs_j[:, None]),
                           other=0.0).to(tl.float32)                                       # (j, t)
            Ct = tl.load(bc_ptr + bcb + offs_t[:, None] * (ng * n) + offs_n[None, :], mask=mt[:, None] & mn[None, :],
                         other=0.0).to(tl.float32)
            acc += tl.dot(_cast(dcbT, KIND), _cast(Ct, KIND), input_precision=PREC)
    for i in range(0, hpg * NPK):  # (head of the group, p block) pairs: one pipelined loop
        hh = gg * hpg + i // NPK
        p0 = (i % NPK) * BPK
        ab = (row * h + hh) * l + start
        a_j = tl.load(a_ptr + ab + offs_j, mask=mj, other=0.0)
        if IS_DC:
            wj = tl.where(mj, tl.exp(a_j), 0.0)
        else:
            dt_j = tl.load(dtp_ptr + ab + offs_j, mask=mj, other=0.0)
            a_last = tl.load(a_ptr + ab + ln - 1)
            wj = tl.where(mj, tl.exp(a_last - a_j) * dt_j, 0.0)
        offs_p = p0 + tl.arange(0, BPK)
        mp = offs_p < p
        uj = tl.load(u_ptr + (tok0 * h + hh) * p + offs_j[:, None] * (h * p) + offs_p[None, :],
                     mask=mj[:, None] & mp[None, :], other=0.0).to(tl.float32)
        st = tl.load(st_ptr + (k.to(tl.int64) * h + hh) * p * n + offs_p[:, None] * n + offs_n[None, :],
                     mask=mp[:, None] & mn[None, :], other=0.0).to(tl.float32)
        acc += tl.dot(_cast(uj * wj[:, None], KIND), _cast(st, KIND), input_precision=PREC)
    tl.store(out_ptr + bcb + offs_j[:, None] * (ng * n) + offs_n[None, :], acc.to(out_ptr.dtype.element_ty),
             mask=mj[:, None] & mn[None, :])


# --------------------------------------------------------------------------------------------- B5: dt chain
@triton.jit
def _ssd_cumsum_bwd_kernel(dt_ptr, A_ptr, bias_ptr, dtp_ptr, da_ptr, dalast_ptr, ddtp_ptr, ddt_ptr, dA_part_ptr,
                           dbias_part_ptr, tab_ptr, l, h, ncr, dt_lo, dt_hi,
                           Q, VARLEN: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                           HAS_LIMIT: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_H: tl.constexpr):
    """d a (per token, plus the chunk's d a_L on its last token) -> d(dt' A)_j = sum_{t>=j} d a_t; d dt' += A d(dt' A),
    dA += sum dt' d(dt' A); then back through clamp and softplus to the raw dt. Per-chunk dA / d dt_bias partials."""
    k = tl.program_id(0)
    hb = tl.program_id(1)
    row, start, ln = _chunk(k, tab_ptr, l, ncr, Q, VARLEN)
    offs_q = tl.arange(0, BLOCK_Q)
    offs_h = hb * BLOCK_H + tl.arange(0, BLOCK_H)
    mh = offs_h < h
    mask = (offs_q < ln)[:, None] & mh[None, :]
    hl = row * h * l + start + offs_h[None, :] * l + offs_q[:, None]
    da = tl.load(da_ptr + hl, mask=mask, other=0.0)
    dalast = tl.load(dalast_ptr + k * h + offs_h, mask=mh, other=0.0)
    da += tl.where((offs_q == ln - 1)[:, None], dalast[None, :], 0.0)
    rc = tl.sum(da, axis=0)[None, :] - tl.cumsum(da, axis=0) + da
    rc = tl.where(mask, rc, 0.0)
    A = tl.load(A_ptr + offs_h, mask=mh, other=0.0).to(tl.float32)
    dtp = tl.load(dtp_ptr + hl, mask=mask, other=0.0)
    ddt = tl.load(ddtp_ptr + hl, mask=mask, other=0.0) + A[None, :] * rc
    tl.store(dA_part_ptr + k * h + offs_h, tl.sum(dtp * rc, axis=0), mask=mh)
    lh = (row * l + start + offs_q[:, None]) * h + offs_h[None, :]
    v = tl.load(dt_ptr + lh, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        v += tl.load(bias_ptr + offs_h, mask=mh, other=0.0).to(tl.float32)[None, :]
    if HAS_LIMIT:
        sp = v
        if SOFTPLUS:
            sp = _softplus(v)
        ddt = tl.where((sp >= dt_lo) & (sp <= dt_hi), ddt, 0.0)
    if SOFTPLUS:
        ddt = ddt * tl.where(v <= 20.0, tl.sigmoid(v), 1.0)
    ddt = tl.where(mask, ddt, 0.0)
    tl.store(ddt_ptr + lh, ddt.to(ddt_ptr.dtype.element_ty), mask=mask)
    tl.store(dbias_part_ptr + k * h + offs_h, tl.sum(ddt, axis=0), mask=mh)


# --------------------------------------------------------------------------------------------- launchers
def _contig(*ts):
    return [t.contiguous() if t is not None else None for t in ts]


class _Layout:
    """Chunk slots of a call: nk slots (grid size), nseq sequences, device tables for cu_seqlens (else dummies)."""

    def __init__(self, b, l, Q, cu_seqlens, device):
        self.varlen = cu_seqlens is not None
        self.ncr = -(-l // Q) if l > 0 else 0
        if not self.varlen:
            self.nseq = b
            self.nk = b * self.ncr
            dummy = torch.zeros(2, dtype=torch.int32, device=device)
            self.tab = self.cu = self.first = dummy
            return
        nseq = cu_seqlens.shape[0] - 1
        self.nseq = nseq
        self.nk = max(self.ncr + nseq - 1, 0)  # same bound as layout.n_chunk_slots
        cu = cu_seqlens.to(device=device, dtype=torch.int64)
        lens = cu[1:] - cu[:-1]
        nck = (lens + Q - 1) // Q
        cum = torch.cumsum(nck, 0)
        first = cum - nck
        slots = torch.arange(self.nk, device=device, dtype=torch.int64)
        seq = torch.searchsorted(cum, slots, right=True).clamp_(max=nseq - 1)
        start = cu[seq] + (slots - first[seq]) * Q
        ln = torch.minimum(cu[seq + 1] - start, torch.full_like(start, Q)).clamp_(min=0)
        ln = torch.where(slots < cum[-1], ln, torch.zeros_like(ln))
        self.tab = torch.stack([start, ln], 1).to(torch.int32).contiguous() if self.nk else \
            torch.zeros(2, dtype=torch.int32, device=device)
        self.cu = cu.to(torch.int32).contiguous()
        self.first = first.to(torch.int32).contiguous()


def _cumsum_fwd(dt, A, dt_bias, dt_softplus, dt_limit, lay, b, l, h, Q, cfg):
    dtp = torch.empty(b, h, l, device=dt.device, dtype=torch.float32)
    a = torch.empty_like(dtp)
    c, o = _launch_opts(cfg["cumsum"])
    lo, hi = dt_limit if dt_limit is not None else (0.0, 0.0)
    if lay.nk:
        _launch(_ssd_cumsum_fwd_kernel, (lay.nk, triton.cdiv(h, c["BLOCK_H"])),
            dt, A, dt_bias if dt_bias is not None else A, dtp, a, lay.tab, l, h, lay.ncr, float(lo), float(hi),
            Q=Q, VARLEN=lay.varlen, HAS_BIAS=dt_bias is not None, SOFTPLUS=bool(dt_softplus),
            HAS_LIMIT=dt_limit is not None, **c, **o)
    return dtp, a


def _cb(C, B, lay, l, g, n, Q, kind, sdt, cfg, BM=None):
    c, o = _launch_opts(cfg["cb"])
    if BM is not None:
        c["BM"] = BM
    nmb = triton.cdiv(Q, c["BM"])
    cb = torch.empty(max(lay.nk, 1), g, Q, Q, device=C.device, dtype=sdt)
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
    b, l, h, p = x.shape
    g, n = B.shape[-2:]
    hpg = h // g
    Q = int(chunk_size)
    dev = x.device
    kind = _dot_kind(x.dtype)
    prec = _prec(kind)
    sdt = _store_dtype(x.dtype)
    cfg = _configs(p, n, Q, x.dtype, _arch(dev), hpg)
    lay = _Layout(b, l, Q, cu_seqlens, dev)
    dtp, a = _cumsum_fwd(dt, A, dt_bias, dt_softplus, dt_limit, lay, b, l, h, Q, cfg)
    hin_dt = torch.float32 if states_fp32 else sdt
    states_in = (torch.zeros if lay.varlen else torch.empty)(lay.nk, h, p, n, device=dev, dtype=hin_dt)
    final = torch.empty(lay.nseq, h, p, n, device=dev, dtype=torch.float32)
    out = torch.empty_like(x)
    store_ypre = z is not None and need_ypre
    ypre = torch.empty(x.shape if store_ypre else (0,), device=dev, dtype=x.dtype)
    # F1: chunk states + state passing
    c, o = _launch_opts(cfg["state_fwd"])
    npb = triton.cdiv(p, c["BP"])
    if "BN" not in _CFG_OVERRIDE.get("state_fwd", {}) and lay.nseq * h * npb < 512 and c["BN"] >= 128:
        c["BN"], o["num_warps"] = c["BN"] // 2, 4  # few (sequence, head) walks: n in two blocks, 2 CTAs / SM
    nnb = triton.cdiv(n, c["BN"])
    SB = triton.cdiv(Q, c["BS"])
    if lay.nseq and h:
        _launch(_ssd_state_fwd_kernel, (lay.nseq * h * npb * nnb,),
            x, B, dtp, a, initial_states if initial_states is not None else final, states_in, final, lay.cu,
            lay.first, l, h, p, n, hpg, g, lay.ncr, npb, nnb, Q=Q, VARLEN=lay.varlen,
            HAS_INIT=initial_states is not None, SB=SB, KIND=kind, PREC=prec, **c, **o)
    # head-block scan for bf16 / fp16 (fp32 operands' 3xTF32 splits spill there: the one-head kernel on the GPU)
    if lay.nk and _FWD["scan"] == "heads" and (kind in (1, 2) or _interpreted()):
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
    elif lay.nk:
        cb_mem = hpg > 1
        cb = _cb(C, B, lay, l, g, n, Q, kind, sdt, cfg) if cb_mem else dtp
        c, o = _launch_opts(cfg["chunk_scan"])
        npb = triton.cdiv(p, c["BP"])
        _launch(_ssd_chunk_scan_kernel, (lay.nk * npb * h,),
            x, z if z is not None else x, B, C, cb, dtp, a, states_in, D if D is not None else A, out,
            ypre if store_ypre else out, lay.tab, l, h, p, n, hpg, g, lay.ncr, npb,
            Q=Q, VARLEN=lay.varlen, CB_MEM=cb_mem, HAS_D=D is not None, D_HP=D is not None and D.dim() == 2,
            HAS_Z=z is not None, STORE_YPRE=store_ypre, KIND=kind, PREC=prec, **c, **o)
    return out, ypre, states_in, final


def ssd_bwd(dout, d_states_in, d_final, x, dt, A, B, C, chunk_size, D, z, dt_bias, dt_softplus, dt_limit,
            initial_states, cu_seqlens, ypre, states_in):
    """Gradients (dx, ddt, dA, dB, dC, dD, dz, ddt_bias, dinitial_states); None for absent inputs.

    d_states_in / d_final: gradients w.r.t. the forward's states_in / final outputs (None when unused)."""
    x, dt, A, B, C, D, z, dt_bias, initial_states, dout, states_in, ypre = _contig(
        x, dt, A, B, C, D, z, dt_bias, initial_states, dout, states_in, ypre)
    b, l, h, p = x.shape
    g, n = B.shape[-2:]
    hpg = h // g
    Q = int(chunk_size)
    dev = x.device
    kind = _dot_kind(x.dtype)
    prec = _prec(kind)
    sdt = _store_dtype(x.dtype)
    cfg = _configs(p, n, Q, x.dtype, _arch(dev), hpg)
    lay = _Layout(b, l, Q, cu_seqlens, dev)
    f32 = torch.float32
    dtp, a = _cumsum_fwd(dt, A, dt_bias, dt_softplus, dt_limit, lay, b, l, h, Q, cfg)
    nk = lay.nk
    # B1: reverse state passing, dy, dz
    dz = torch.empty_like(z) if z is not None else None
    dy = torch.empty(x.shape, device=dev, dtype=sdt) if z is not None else dout
    dS = torch.empty(max(nk, 1), h, p, n, device=dev, dtype=sdt)
    dinit = torch.empty(lay.nseq, h, p, n, device=dev, dtype=f32)
    dalast = torch.zeros(max(nk, 1), h, device=dev, dtype=f32)
    dfin = d_final.contiguous() if d_final is not None else None
    dsin = d_states_in.contiguous() if d_states_in is not None else None
    c, o = _launch_opts(cfg["state_bwd"])
    npb = triton.cdiv(p, c["BP"])
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
    ddtp = torch.zeros(b, h, l, device=dev, dtype=f32)
    da = torch.zeros(b, h, l, device=dev, dtype=f32)
    dA_part = torch.zeros(max(nk, 1), h, device=dev, dtype=f32)
    dbias_part = torch.zeros(max(nk, 1), h, device=dev, dtype=f32)
    nmb = triton.cdiv(Q, cfg["bwd_dx"]["BM"])
    dD_part = torch.zeros(max(nk, 1), h, p, device=dev, dtype=f32) if D is not None else None
    if nk:
        cb = _cb(C, B, lay, l, g, n, Q, kind, sdt, cfg)
        # B2: dx, d dt' (direct), state-path d a terms (head blocks for bf16 / fp16, as the forward scan)
        if _FWD["bwd_dx"] == "heads" and (kind in (1, 2) or _interpreted()):
            c, o = _launch_opts(cfg["bwd_dx_h"])
            npb = triton.cdiv(p, c["BP"])
            nhb = h // c["HB"]
            _launch(_ssd_bwd_dx_heads_kernel, (nk * nhb * npb,),
                x, dy, B, C, cb, dtp, a, states_in, dS, D if D is not None else A, dx, ddtp, da, dalast,
                dD_part if dD_part is not None else da, lay.tab, l, h, p, n, hpg, g, lay.ncr, nhb, npb, Q,
                5.0 if x.dtype == torch.float16 else 60.0, VARLEN=lay.varlen, HAS_D=D is not None,
                D_HP=D is not None and D.dim() == 2, KIND=kind, PREC=prec, **c, **o)
        else:
            c, o = _launch_opts(cfg["bwd_dx"])
            npb = triton.cdiv(p, c["BP"])
            _launch(_ssd_bwd_dx_kernel, (nk * npb * h,),
                x, dy, B, C, cb, dtp, a, states_in, dS, D if D is not None else A, dx, ddtp, da, dalast,
                dD_part if dD_part is not None else da, lay.tab, l, h, p, n, hpg, g, lay.ncr, npb,
                Q=Q, VARLEN=lay.varlen, HAS_D=D is not None, D_HP=D is not None and D.dim() == 2,
                KIND=kind, PREC=prec, **c, **o)
        # B3: dCB per group + intra-chunk d a
        c, o = _launch_opts(cfg["bwd_dcb"])
        assert c["BM"] == cfg["bwd_dx"]["BM"]
        dcb = torch.empty(nk, g, Q, Q, device=dev, dtype=sdt)
        _launch(_ssd_bwd_dcb_kernel, (nk * nmb * nmb * g,),
            x, dy, cb, dtp, a, dcb, da, lay.tab, l, h, p, hpg, g, lay.ncr, nmb,
            Q=Q, VARLEN=lay.varlen, NPK=triton.cdiv(p, c["BPK"]), KIND=kind, PREC=prec, **c, **o)
        # B4: dB, dC
        c, o = _launch_opts(cfg["bwd_dbc"])
        nmb4 = triton.cdiv(Q, c["BM"])
        for is_dc, u, bc, st, out_ in ((False, x, C, dS, dB), (True, dy, B, states_in, dC)):
            _launch(_ssd_bwd_dbc_kernel, (nk * nmb4 * g,),
                u, bc, dcb, dtp, a, st, out_, lay.tab, l, h, p, n, hpg, g, lay.ncr, nmb4,
                Q=Q, VARLEN=lay.varlen, IS_DC=is_dc, NPK=triton.cdiv(p, c["BPK"]), KIND=kind, PREC=prec, **c, **o)
        # B5: dt chain
        c, o = _launch_opts(cfg["cumsum_bwd"])
        lo, hi = dt_limit if dt_limit is not None else (0.0, 0.0)
        _launch(_ssd_cumsum_bwd_kernel, (nk, triton.cdiv(h, c["BLOCK_H"])),
            dt, A, dt_bias if dt_bias is not None else A, dtp, da, dalast, ddtp, ddt, dA_part, dbias_part, lay.tab,
            l, h, lay.ncr, float(lo), float(hi), Q=Q, VARLEN=lay.varlen, HAS_BIAS=dt_bias is not None,
            SOFTPLUS=bool(dt_softplus), HAS_LIMIT=dt_limit is not None, **c, **o)
    else:
        dx.zero_()
        ddt.zero_()
        dB.zero_()
        dC.zero_()
        if dz is not None:
            dz.zero_()
    dA = dA_part.sum(0).to(A.dtype)
    ddt_bias = dbias_part.sum(0).to(dt_bias.dtype) if dt_bias is not None else None
    dD = None
    if D is not None:
        dDhp = dD_part.sum(0)
        dD = (dDhp if D.dim() == 2 else dDhp.sum(-1)).to(D.dtype)
    dinit = dinit.to(initial_states.dtype) if initial_states is not None else None
    return dx, ddt, dA, dB, dC, dD, dz, ddt_bias, dinit
