"""Block configs of the chunked SSD's Triton kernels (triton.py's launchers read them) and the switches they depend
on: the interpreter / AOT-recording state, the CPU tests' small blocks, the benches' config overrides.
"""
from __future__ import annotations

import os

import torch
import triton

_KIND = {torch.bfloat16: 1, torch.float16: 2}
# Launch recording (AOT compile tests): when _REC["launches"] is a list, the launchers append
# (kernel, args, constexprs + options) instead of launching, and configs are those of GPU arch _REC["arch"].
_REC = {"launches": None, "arch": 90}
# Development aid: under the interpreter, use the GPU block configs and round dot operands to bf16 / fp16 (then fp32
# dots), to check the GPU tests' tolerances on CPU. Off by default; nothing in the library sets it.
_EMULATE = {"half_dots": False}
# Config overrides {kernel key of _configs: {name: value}} for A/B timing on the GPU (bench/bench_ssd.py); the
# library never sets it. The forward's CB kernel follows the head-block scan's BM and is at least the one-head
# scan's BM (their diagonal CB loads read whole blocks); the backward kernels mask theirs to the causal triangle.
_CFG_OVERRIDE: dict = {}


def _interpreted() -> bool:
    return _REC["launches"] is None and os.environ.get("TRITON_INTERPRET", "0") == "1"


def _small_blocks() -> bool:
    return _interpreted() and not _EMULATE["half_dots"]


def _np2(v: int, lo: int = 16) -> int:
    return max(lo, triton.next_power_of_2(max(int(v), 1)))


# _configs' results by arguments and switches (read-only: the launchers copy a kernel's entry through _launch_opts
# before changing it). Computing them took ~25 us a call on the CI machine's CPU, every forward and backward.
_CFG_CACHE: dict = {}


def _configs(p: int, n: int, Q: int, dtype: torch.dtype, arch: int = 90, hpg: int = 1) -> dict:
    """_configs_for, cached unless a config override is set (the benches' sweeps change _CFG_OVERRIDE between
    calls). The result is shared: do not modify it."""
    if _CFG_OVERRIDE:
        return _configs_for(p, n, Q, dtype, arch, hpg)
    key = (p, n, Q, dtype, arch, hpg, _small_blocks())
    cfg = _CFG_CACHE.get(key)
    if cfg is None:
        cfg = _CFG_CACHE[key] = _configs_for(p, n, Q, dtype, arch, hpg)
    return cfg


def _configs_for(p: int, n: int, Q: int, dtype: torch.dtype, arch: int = 90, hpg: int = 1) -> dict:
    """Block sizes, warps and pipeline stages per kernel, chosen from sm_90 / sm_80 AOT compiles (shared memory,
    registers, spills; see tests/test_ssd_triton_aot.py). Returns {kernel: dict(constexprs..., num_warps=, num_stages=)}."""
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
    # h200: the configs below were swept on the H200 (sm_90 16-bit, n <= 128; not the CPU tests' small blocks)
    h200 = st3 == 3 and not _small_blocks()
    # one-head scan: (row block, warps, stages). On sm_90 16-bit, n <= 128 (H200 bench_ssd_chunk_scan_configs,
    # 2026-11-30): p 128 (shape 2) in 32-row blocks with 4 warps, 270 us against 318 for 64 rows and 8 warps at
    # chunk 256, and 2 stages at chunk 128, 218.5 against 227.0; p 64 (shape 1) in 32-row blocks with 2 warps, 1 stage
    # at chunk 128 342 us against 376 with 2 stages, 476 with 3 and 495 for 64-row
    # blocks with 4 warps, 2 stages at chunk 256 483 against 524 for 64-row blocks.
    # Second and third sweeps (2026-11-30), 64-row blocks with 4 warps: p 128 at chunk 128 with 1 stage 163.7 us
    # against 217.5 (32 rows, 2 stages), at chunk 256 with 2 stages 187-190 against 272.6 (1 stage: 215.5); p 64 at
    # chunk 256 with 1 stage 390.8 against 438.2 (32 rows, 2 warps, 1 stage) and 491.0 (2 stages); p 64 at chunk
    # 128 keeps 32-row blocks with 2 warps and 1 stage (342 against 461 for 64 rows, 4 warps, 1 stage).
    # Fourth sweep (session 12): p 64 at chunk 128 under a 128-register cap (more CTAs of 2 warps an SM) 336.6 us
    # against 347.6 (96: 388.5).
    BMs, scan_w, scan_st, scan_opt = BM, 4 if BM * BP <= 64 * 64 else 8, st3, {}
    if h200:
        if BP >= 128:
            BMs, scan_w, scan_st = 64, 4, 1 if Q <= 128 else 2
        elif BP == 64 and Q <= 256:
            BMs, scan_w, scan_st = (32, 2, 1) if Q <= 128 else (64, 4, 1)
            if Q <= 128:
                scan_opt = dict(maxnreg=128)
    # B2 (dx, the same nested row-block / source-block loops as the scan) on sm_90 16-bit, n <= 128: 4 warps and no
    # software pipelining, 713.7 / 319.6 us against 1110.8 / 490.0 for 8 warps and 3 stages at shapes 1 / 2
    # (H200, bench_ssd_bwd_configs, 2026-11-30).
    dx_w, dx_st = (4, 1) if h200 else (8, st3)
    # B3 (dCB) on sm_90 16-bit, n <= 128: a 168-register cap (3 CTAs of 4 warps an SM) and 2 stages, 245.7 us against
    # 379.8 at shape 1 (chunk 128; 443 against 515 at 256), 90.6 against 91.9 at shape 2 (H200, 2026-11-30)
    dcb_opt = dict(num_stages=2, maxnreg=168) if h200 else dict(num_stages=st3)
    # B4 (dB, dC) on sm_90 16-bit, n <= 128: 64-row blocks with 4 warps, 117 + 129 us against ~308 for the two
    # launches at shape 2 (128 rows, 8 warps), equal at shape 1 (99 + 136 against 109 + 126; H200 2026-11-30)
    BM4, dbc_w = (min(BM4, 64), 4) if h200 else (BM4, 8)
    cfg = {
        "scan": dict(BM=BM, HB=HB, BP=BPh, BN=BN, SPLIT_M=False,
                     num_warps=8 if BM * HB * BPh >= 64 * 128 else 4, num_stages=2),
        # head-block dx: at most 64 columns (128 spill ~0.8 KB on sm_90), 8 warps
        "bwd_dx_h": dict(BM=BM, HB=max(1, min(HB, 64 // min(BPh, 64))), BP=min(BPh, 64), BN=BN,
                         num_warps=8 if BM >= 64 else 4, num_stages=2),
        "cumsum": dict(BLOCK_Q=_np2(Q, 2), BLOCK_H=16, num_warps=4, num_stages=1),
        "cb": dict(BM=BM, BK=min(BN, 32 if f32 else 128), num_warps=4, num_stages=2),
        "state_fwd": dict(BS=BS, BP=BPs, BN=16 if _small_blocks() else BN, num_warps=8, num_stages=st3),
        "chunk_scan": dict(BM=BMs, BP=BP, BN=BN, num_warps=scan_w, num_stages=scan_st, **scan_opt),
        "state_bwd": dict(BS=BS, BP=BPs, BN=16 if _small_blocks() else BN, num_warps=8, num_stages=st3),
        "bwd_dx": dict(BM=BM, BP=min(BP, 32 if f32 else 64), BN=BN, num_warps=dx_w, num_stages=dx_st),
        "bwd_dcb": dict(BM=BM, BPK=BPK, num_warps=4, HSPLIT=1, **dcb_opt),
        "bwd_dbc": dict(BM=BM4, BPK=BPK4, BN=BN, num_warps=dbc_w, num_stages=st3),
        "cumsum_bwd": dict(BLOCK_Q=_np2(Q, 2), BLOCK_H=16, num_warps=4, num_stages=1),
    }
    for name, over in _CFG_OVERRIDE.items():
        cfg[name].update(over)
    for s in (cfg["scan"], cfg["bwd_dx_h"]):
        while s["HB"] > 1 and hpg % s["HB"]:  # an override's HB must divide h / g
            s["HB"] //= 2
    return cfg


def _launch_opts(c: dict):
    """Split a config into (constexprs, launch options)."""
    c = dict(c)
    opts = dict(num_warps=c.get("num_warps", 4), num_stages=c.get("num_stages", 2))
    if c.get("maxnreg"):  # register cap (ptxas .maxnreg): more CTAs an SM (dCB, the state walks; sweeps)
        opts["maxnreg"] = c["maxnreg"]
    return {k: v for k, v in c.items() if k not in ("num_warps", "num_stages", "maxnreg")}, opts
