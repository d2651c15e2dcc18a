"""Chunked SSD block-config sweeps and variant A/Bs (H200; issue 4's shapes from bench_ssd.py): each row times one
Triton kernel alone under a config override (mamba_kernels.ssd.triton._CFG_OVERRIDE) or kernel variant (_FWD), the
library's defaults first; bench_ssd_triton_chunk / _da_out_dx time the whole op at another chunk / variant.
Selected on the GPU by scripts/gpu_ssd.sh (SSD_PART=sweep / select). Analysis: bench/notes/chunked_ssd.md.
"""
from __future__ import annotations

import pytest
import torch

from bench_ssd import Q, SHAPES, _bytes, _flops, _fwd_bwd, _inputs, _ours


# Config sweeps (A/B on the GPU, the library's defaults are the first entries): each row times one kernel alone.
SCAN_CONFIGS = {
    "default": {},
    "HB1-w4": dict(HB=1, num_warps=4),
    "HB2-w4": dict(HB=2, num_warps=4),
    "HB2-w8-st3": dict(HB=2, num_warps=8, num_stages=3),
    "BM128-HB1-w8": dict(BM=128, HB=1, num_warps=8),
    "HB2-BP32-w4": dict(HB=2, BP=32, num_warps=4),  # p in two blocks: 64 columns, 2 CTAs / SM
    "HB1-BP64-w4": dict(HB=1, BP=64, num_warps=4),  # shape 2: p 128 in two programs, 2 CTAs / SM, no spills
    "HB4-BP32-w8": dict(HB=4, BP=32, num_warps=8),
    "splitM": dict(SPLIT_M=True),
    "splitM-HB1-w4": dict(SPLIT_M=True, HB=1, num_warps=4),
    # without software pipelining / with fewer warps (what made the one-head scan and dx 25-40% faster, 2026-11-30)
    "HB2-w4-st1": dict(HB=2, num_warps=4, num_stages=1),
    "HB2-w8-st1": dict(HB=2, num_warps=8, num_stages=1),
    "HB2-BP32-w4-st1": dict(HB=2, BP=32, num_warps=4, num_stages=1),
    "HB2-BP32-w2-st1": dict(HB=2, BP=32, num_warps=2, num_stages=1),
    "HB4-BP32-w4-st1": dict(HB=4, BP=32, num_warps=4, num_stages=1),
    "HB1-w4-st1": dict(HB=1, num_warps=4, num_stages=1),
}
# The one-head chunk scan (_ssd_chunk_scan_kernel, the default forward scan; key "chunk_scan").
CHUNK_SCAN_CONFIGS = {
    "default": {},
    "BM64-w4-st3": dict(BM=64, num_warps=4, num_stages=3),  # the default before 2026-11-30 (p 64 still)
    "BM64-w4-st4": dict(BM=64, num_warps=4, num_stages=4),
    "BM32-w4": dict(BM=32, num_warps=4),  # p 128 default since 2026-11-30 (270 vs 318 us at shape 2)
    "BM32-w2": dict(BM=32, num_warps=2),
    "BM32-w4-st2": dict(BM=32, num_warps=4, num_stages=2),
    "BM32-w4-st4": dict(BM=32, num_warps=4, num_stages=4),
    "BM16-w4": dict(BM=16, num_warps=4),
    "BM16-w2": dict(BM=16, num_warps=2),
    "BM128-w8-st2": dict(BM=128, num_warps=8, num_stages=2),
    # second sweep (2026-11-30): 64 / 128-row blocks with 1-2 stages (p 128 at chunk 256: BM64-w4-st2 189.7 us
    # against 272.6 for BM32-w4-st3)
    "BM64-w4-st1": dict(BM=64, num_warps=4, num_stages=1),
    "BM64-w8-st2": dict(BM=64, num_warps=8, num_stages=2),
    "BM64-w2-st1": dict(BM=64, num_warps=2, num_stages=1),
    "BM128-w4-st2": dict(BM=128, num_warps=4, num_stages=2),
    "BM128-w8-st1": dict(BM=128, num_warps=8, num_stages=1),
    # p 128 in two programs of 64 columns (shape 2; at shape 1 p is 64 and these equal BM32-w2 / BM32-w4 /
    # BM64-w4-st3): half the h_in tile in registers, so more CTAs an SM, at twice the C B^T dots (g = h)
    "BP64-BM32-w2": dict(BP=64, BM=32, num_warps=2),
    "BP64-BM32-w4": dict(BP=64, BM=32, num_warps=4),
    "BP64-BM64-w4-st3": dict(BP=64, BM=64, num_warps=4, num_stages=3),
    # around the chunk-128 default at p 64 (BM 32, 2 warps, 2 stages since 2026-11-30: 382 us against 484 with 3)
    "BM32-w2-st3": dict(BM=32, num_warps=2, num_stages=3),
    "BM32-w2-st4": dict(BM=32, num_warps=2, num_stages=4),
    "BM32-w2-st1": dict(BM=32, num_warps=2, num_stages=1),
    "BM16-w1": dict(BM=16, num_warps=1),
    "BM16-w1-st2": dict(BM=16, num_warps=1, num_stages=2),
    "BM16-w2-st2": dict(BM=16, num_warps=2, num_stages=2),
    "BM64-w4-st2": dict(BM=64, num_warps=4, num_stages=2),
    "BM32-w2-st2": dict(BM=32, num_warps=2, num_stages=2),
    # register caps on the p 64 chunk-128 default (168 registers, 2 warps: 6 CTAs an SM by registers; 128 / 96: 8 /
    # 10); the 4-warp cap at 168 measured slower in session 8 (above), these not yet
    "BM32-w2-st1-r128": dict(BM=32, num_warps=2, num_stages=1, maxnreg=128),
    "BM32-w2-st1-r96": dict(BM=32, num_warps=2, num_stages=1, maxnreg=96),
}
# Measured 2026-11-30 and dropped from the sweep: w8 at BM 64 (878 / 318 us), BM 128 with 4 warps (983-1175 us at
# shape 1), p in blocks (BP 32 / 64: 523-808 us at shape 1; at shape 2 (p 128, g = h) BP 32 with 4 warps hit an
# illegal memory access on the H200 (Triton 3.6) although the interpreter's result is right: p blocks below p are
# never chosen by the library for p <= 128). Session 8 (2026-11-30): a register cap (maxnreg 168: 3 CTAs an SM) 608 /
# 325 us against 526 / 269; a flat kernel (one pipelined loop over the chunk's (row block, source block) steps, the
# per-row-block loads in flight across row blocks) 564-1028 / 295-648 us over 8 configs; one row block a program
# (SPLIT_M) 588-825 / 356-404 us: all removed (bench/notes/chunked_ssd.md).
STATE_CONFIGS = {
    "default": {},  # n in two blocks of 64 at 129-511 (sequence, head, p block) walks (sm_90 16-bit; triton.py)
    "BN128-w8": dict(BN=128, num_warps=8),  # one n block (the previous default)
    "BN128-BP32-w4": dict(BN=128, BP=32, num_warps=4),
    "BN64-w4-st4": dict(BN=64, num_warps=4, num_stages=4),
    "BN64-BS64-w4-st4": dict(BN=64, BS=64, num_warps=4, num_stages=4),
    "BN32-w4": dict(BN=32, num_warps=4),
    # n whole at chunk 128 (the default there: 146 KB of shared memory at 3 stages, 1 CTA an SM): fewer stages or
    # 64-token steps for 2 CTAs an SM
    "BN128-w8-st2": dict(BN=128, num_warps=8, num_stages=2),
    "BN128-BS64-w8-st4": dict(BN=128, BS=64, num_warps=8, num_stages=4),
    "BN128-BS64-w4-st4": dict(BN=128, BS=64, num_warps=4, num_stages=4),
    # 3+ CTAs an SM: shape 1 has 320 (sequence, head) walks, 2.4 waves of 1 CTA an SM on 132 SMs (its walk takes
    # 182 us at chunk 128 against 65.5 for shape 2's 128 walks of the same length and width: 3 waves against 1)
    "BN128-BS64-w4-st2-r168": dict(BN=128, BS=64, num_warps=4, num_stages=2, maxnreg=168),
    "BN128-BS64-w4-st3-r168": dict(BN=128, BS=64, num_warps=4, num_stages=3, maxnreg=168),
    "BN128-BS64-w4-st2-r128": dict(BN=128, BS=64, num_warps=4, num_stages=2, maxnreg=128),
    # around the best of those (st3-r168: 171.7 / 151.2 us at shape 1, chunk 128 / 256, against ~182 / ~181)
    "BN128-BS64-w4-st4-r168": dict(BN=128, BS=64, num_warps=4, num_stages=4, maxnreg=168),
    "BN128-BS32-w4-st3-r168": dict(BN=128, BS=32, num_warps=4, num_stages=3, maxnreg=168),
    # p in blocks of 32: twice the walks (640 at shape 1), each with half the state, at 5 CTAs of 4 warps an SM (93-96
    # registers; 660 slots on 132 SMs: one wave) instead of 3 (sm_90 AOT). H200 2026-12-01, chunk 128, shape 1 / 2:
    # 210 / 153, 217 / 163, 172.7 / 117, 177.9 / 83.6 us (in this order) against 173.5 / 65.4 for the defaults
    "BN128-BP32-BS32-w4-st1-r96": dict(BN=128, BP=32, BS=32, num_warps=4, num_stages=1, maxnreg=96),
    "BN128-BP32-BS32-w4-st2-r96": dict(BN=128, BP=32, BS=32, num_warps=4, num_stages=2, maxnreg=96),
    "BN128-BP32-BS64-w4-st2-r96": dict(BN=128, BP=32, BS=64, num_warps=4, num_stages=2, maxnreg=96),
    "BN128-BP32-BS64-w4-st3-r128": dict(BN=128, BP=32, BS=64, num_warps=4, num_stages=3, maxnreg=128),
}


def _time_fwd_kernel(benchmark, harness, shape, key, over, names, bwd=False, variant=None, chunk=Q):
    from mamba_kernels.ssd import triton as tri
    s = SHAPES[shape]
    inp = _inputs(**s)
    x, dt, A, B, C, D, z, bias = (inp[k] for k in ("x", "dt", "A", "B", "C", "D", "z", "dt_bias"))
    args = (x, dt, A, B, C, chunk, D, z, bias, True, None, None, None)
    major, minor = torch.cuda.get_device_capability()
    _, ypre, s_in, _ = tri.ssd_fwd(*args, need_ypre=True)
    tri._CFG_OVERRIDE[key] = dict(over)
    old = dict(tri._FWD)
    tri._FWD.update(variant or {})
    try:
        with tri.record_launches(10 * major + minor) as rec:
            if bwd:
                tri.ssd_bwd(torch.randn_like(x), None, None, x, dt, A, B, C, chunk, D, z, bias, True, None, None,
                            None, ypre, s_in)
            else:
                tri.ssd_fwd(*args, need_ypre=False)
    finally:
        tri._CFG_OVERRIDE.pop(key, None)
        tri._FWD.update(old)
    for i in range(len(rec.launches)):
        rec.replay(i)
    torch.cuda.synchronize()
    picked = [i for i, r in enumerate(rec.launches) if r[0].__name__ in names]
    for j, i in enumerate(picked):
        kernel, _, kw, grid = rec.launches[i]
        cfg = {k: v for k, v in kw.items() if k in ("BM", "HB", "BP", "BS", "BN", "maxnreg") or k.startswith("num_")}
        harness.measure(benchmark if j == 0 else None, kernel="ssd_bwd_part" if bwd else "ssd_fwd_part",
                        impl=f"mamba_kernels:triton:{kernel.__name__}{'#%d' % j if len(picked) > 1 else ''}:"
                             f"{key}={over}", shape=dict(s, chunk=chunk),
                        dtype="bfloat16", fn=lambda i=i: rec.replay(i), bytes=0, flops=0,
                        note=f"config sweep; resolved {cfg}, grid {grid}")


# The Triton op runs at chunk 128 for a requested 256 when no chunk states are returned (interface.compute_chunk_size;
# with autograd too since 2026-11-30); the sweeps run at both (256: calls that return chunk states).
SWEEP_CHUNKS = {"Q256": 256, "Q128": 128}


@pytest.mark.parametrize("chunk", list(SWEEP_CHUNKS))
@pytest.mark.parametrize("cfg", list(SCAN_CONFIGS))
@pytest.mark.parametrize("shape", list(SHAPES))
def bench_ssd_scan_configs(benchmark, harness, shape, cfg, chunk):
    """The head-block forward chunk-scan kernel (the A/B alternative, _FWD["scan"] = "heads"; and the CB kernel it
    reads, when heads of a group span programs) alone, per block config, at chunk 256 and 128."""
    _time_fwd_kernel(benchmark, harness, shape, "scan", SCAN_CONFIGS[cfg],
                     ("_ssd_scan_heads_kernel", "_ssd_cb_kernel"), variant={"scan": "heads"},
                     chunk=SWEEP_CHUNKS[chunk])


@pytest.mark.parametrize("chunk", list(SWEEP_CHUNKS))
@pytest.mark.parametrize("cfg", list(CHUNK_SCAN_CONFIGS))
@pytest.mark.parametrize("shape", list(SHAPES))
def bench_ssd_chunk_scan_configs(benchmark, harness, shape, cfg, chunk):
    """The one-head forward chunk scan (and the CB kernel it reads at g < h) alone, per block config."""
    _time_fwd_kernel(benchmark, harness, shape, "chunk_scan", CHUNK_SCAN_CONFIGS[cfg],
                     ("_ssd_chunk_scan_kernel", "_ssd_cb_kernel"), chunk=SWEEP_CHUNKS[chunk])


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("chunk", [64])
@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd"])
def bench_ssd_triton_chunk(benchmark, harness, mode, chunk, shape):
    """The Triton forward / forward+backward at a smaller chunk size than bench_ssd's (which runs a requested 256 at
    128; the same scan up to rounding: chunk size trades the quadratic intra-chunk work against the number of chunk
    states)."""
    _time_triton_op(benchmark, harness, mode, chunk, shape, "mamba_kernels:triton", "")


def _time_triton_op(benchmark, harness, mode, chunk, shape, impl, note):
    """The Triton op (forward, or forward+backward through autograd) at chunk size `chunk`."""
    s = SHAPES[shape]
    inp = _inputs(**s, grad=mode == "fwd_bwd")
    fn = _ours("triton", chunk)
    run = _fwd_bwd(fn, inp) if mode == "fwd_bwd" else (lambda: fn(inp))
    harness.measure(benchmark, kernel="ssd_" + mode, impl=impl, shape=dict(s, chunk=chunk),
                    dtype="bfloat16", fn=run, bytes=_bytes(**s, bwd=mode == "fwd_bwd"),
                    flops=(3 if mode == "fwd_bwd" else 1) * _flops(**s, chunk=chunk),
                    note="D, z, dt_bias, softplus" + ("; grads of all inputs" if mode == "fwd_bwd" else "") + note)


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("chunk", [128])  # where the op runs (a requested 256 runs at 128 too)
def bench_ssd_triton_da_out_dx(benchmark, harness, chunk, shape, monkeypatch):
    """The Triton forward+backward with the state-out path's d a in the dx kernel (_FWD["da_out"] = "dx", the
    default before 2026-11-30) instead of B4's dC launch (against bench_ssd / bench_ssd_triton_chunk)."""
    from mamba_kernels.ssd import triton as tri
    monkeypatch.setitem(tri._FWD, "da_out", "dx")
    _time_triton_op(benchmark, harness, "fwd_bwd", chunk, shape, "mamba_kernels:triton_da_out_dx",
                    "; _FWD['da_out'] = 'dx'")


@pytest.mark.parametrize("chunk", list(SWEEP_CHUNKS))
@pytest.mark.parametrize("cfg", list(STATE_CONFIGS))
@pytest.mark.parametrize("shape", list(SHAPES))
def bench_ssd_state_fwd_configs(benchmark, harness, shape, cfg, chunk):
    """The forward chunk-state + state-passing kernel alone, per block config."""
    _time_fwd_kernel(benchmark, harness, shape, "state_fwd", STATE_CONFIGS[cfg], ("_ssd_state_fwd_kernel",),
                     chunk=SWEEP_CHUNKS[chunk])


BWD_CONFIGS = {  # name: (_configs key, override, _FWD variants, kernels timed)
    "dx-legacy": ("bwd_dx", {}, {"bwd_dx": "legacy"}, ("_ssd_bwd_dx_kernel",)),
    "dx-legacy-BP32-w4": ("bwd_dx", dict(BP=32, num_warps=4), {"bwd_dx": "legacy"}, ("_ssd_bwd_dx_kernel",)),
    "dx-legacy-st2": ("bwd_dx", dict(num_stages=2), {"bwd_dx": "legacy"}, ("_ssd_bwd_dx_kernel",)),
    # fewer pipeline stages / warps: the forward one-head scan (the same nested row-block / source-block loops) ran
    # 30% faster at 2 warps and 1-2 stages than at its 3-stage defaults (H200, 2026-11-30)
    "dx-legacy-st1": ("bwd_dx", dict(num_stages=1), {"bwd_dx": "legacy"}, ("_ssd_bwd_dx_kernel",)),
    "dx-legacy-w4-st1": ("bwd_dx", dict(num_warps=4, num_stages=1), {"bwd_dx": "legacy"}, ("_ssd_bwd_dx_kernel",)),
    "dx-legacy-w4-st2": ("bwd_dx", dict(num_warps=4, num_stages=2), {"bwd_dx": "legacy"}, ("_ssd_bwd_dx_kernel",)),
    "dx-legacy-BP32-w2-st1": ("bwd_dx", dict(BP=32, num_warps=2, num_stages=1), {"bwd_dx": "legacy"},
                              ("_ssd_bwd_dx_kernel",)),
    "dx-legacy-BP32-w4-st1": ("bwd_dx", dict(BP=32, num_warps=4, num_stages=1), {"bwd_dx": "legacy"},
                              ("_ssd_bwd_dx_kernel",)),
    "dx-legacy-w2-st1": ("bwd_dx", dict(num_warps=2, num_stages=1), {"bwd_dx": "legacy"}, ("_ssd_bwd_dx_kernel",)),
    "dx-legacy-w8-st3": ("bwd_dx", dict(num_warps=8, num_stages=3), {"bwd_dx": "legacy"}, ("_ssd_bwd_dx_kernel",)),
    # register caps (3 / 4 CTAs of 4 warps an SM; without its state-out d a dot since 2026-11-30 the kernel needs
    # fewer registers)
    "dx-legacy-r168": ("bwd_dx", dict(maxnreg=168), {"bwd_dx": "legacy"}, ("_ssd_bwd_dx_kernel",)),
    "dx-legacy-r128": ("bwd_dx", dict(maxnreg=128), {"bwd_dx": "legacy"}, ("_ssd_bwd_dx_kernel",)),
    # a whole chunk of 128 rows a program (one diagonal block, no source-block loop: every load of the program in
    # one round) and the forward scan's smaller blocks; the CB kernel's blocks stay 64. H200 2026-12-01, chunk 128,
    # shape 1 / 2: 799 / 326 (BM128 w8), 2175 / 1039 (w4), 2387 / 1075 (w8 r128), 558 / 243 (BM32 w2), 711 / 305
    # (BM32 w4) us against 560 / 238 for the default (64 rows, 4 warps)
    "dx-legacy-BM128-w8-st1": ("bwd_dx", dict(BM=128, num_warps=8, num_stages=1), {"bwd_dx": "legacy"},
                               ("_ssd_bwd_dx_kernel",)),
    "dx-legacy-BM128-w4-st1": ("bwd_dx", dict(BM=128, num_warps=4, num_stages=1), {"bwd_dx": "legacy"},
                               ("_ssd_bwd_dx_kernel",)),
    "dx-legacy-BM128-w8-st1-r128": ("bwd_dx", dict(BM=128, num_warps=8, num_stages=1, maxnreg=128),
                                    {"bwd_dx": "legacy"}, ("_ssd_bwd_dx_kernel",)),
    "dx-legacy-BM32-w2-st1": ("bwd_dx", dict(BM=32, num_warps=2, num_stages=1), {"bwd_dx": "legacy"},
                              ("_ssd_bwd_dx_kernel",)),
    "dx-legacy-BM32-w4-st1": ("bwd_dx", dict(BM=32, num_warps=4, num_stages=1), {"bwd_dx": "legacy"},
                              ("_ssd_bwd_dx_kernel",)),
    # 8 warps without pipelining: half the registers a thread of the 4-warp default (253 at shape 1, 2 CTAs an SM).
    # H200 2026-12-01, chunk 128, shape 1 / 2: 893 / 368 us (r128: 615 / 265) against 560 / 238
    "dx-legacy-w8-st1": ("bwd_dx", dict(num_warps=8, num_stages=1), {"bwd_dx": "legacy"}, ("_ssd_bwd_dx_kernel",)),
    "dx-legacy-w8-st1-r128": ("bwd_dx", dict(num_warps=8, num_stages=1, maxnreg=128), {"bwd_dx": "legacy"},
                              ("_ssd_bwd_dx_kernel",)),
    # the state-out path's d a in the dx kernel (_FWD["da_out"] = "dx"; the default is "dc", B4's dC launch): dx
    # with it (656 against 550 us at shape 1, chunk 128), dC without it
    "dx-legacy-dxda": ("bwd_dx", {}, {"bwd_dx": "legacy", "da_out": "dx"}, ("_ssd_bwd_dx_kernel",)),
    "dbc-dxda": ("bwd_dbc", {}, {"da_out": "dx"}, ("_ssd_bwd_dbc_kernel",)),
    "dx-heads": ("bwd_dx_h", {}, {"bwd_dx": "heads"}, ("_ssd_bwd_dx_heads_kernel",)),
    "dx-heads-HB2-BP32": ("bwd_dx_h", dict(HB=2, BP=32), {"bwd_dx": "heads"}, ("_ssd_bwd_dx_heads_kernel",)),
    "dx-heads-w4-st1": ("bwd_dx_h", dict(num_warps=4, num_stages=1), {"bwd_dx": "heads"},
                        ("_ssd_bwd_dx_heads_kernel",)),
    "dx-heads-HB2-BP32-w4-st1": ("bwd_dx_h", dict(HB=2, BP=32, num_warps=4, num_stages=1), {"bwd_dx": "heads"},
                                 ("_ssd_bwd_dx_heads_kernel",)),
    "state-default": ("state_bwd", {}, {}, ("_ssd_state_bwd_kernel",)),
    "state-BP32-w4-st2": ("state_bwd", dict(BP=32, num_warps=4, num_stages=2), {}, ("_ssd_state_bwd_kernel",)),
    "state-BS64-w4": ("state_bwd", dict(BS=64, num_warps=4), {}, ("_ssd_state_bwd_kernel",)),
    "state-BN64-BS64-w4": ("state_bwd", dict(BN=64, BS=64, num_warps=4), {}, ("_ssd_state_bwd_kernel",)),
    "state-BN64-w4-st2": ("state_bwd", dict(BN=64, num_warps=4, num_stages=2), {}, ("_ssd_state_bwd_kernel",)),
    "state-st1": ("state_bwd", dict(num_stages=1), {}, ("_ssd_state_bwd_kernel",)),
    "state-BN64-w4-st1": ("state_bwd", dict(BN=64, num_warps=4, num_stages=1), {}, ("_ssd_state_bwd_kernel",)),
    "state-BS64-w4-st2": ("state_bwd", dict(BS=64, num_warps=4, num_stages=2), {}, ("_ssd_state_bwd_kernel",)),
    # 3+ CTAs an SM (register caps): the walk is wave-quantised at shape 1 (320 walks of the per-walk time of shape
    # 2's 128: 544 us against 190, i.e. 3 waves of 1 CTA an SM against 1)
    "state-BS64-w4-r168": ("state_bwd", dict(BS=64, num_warps=4, maxnreg=168), {}, ("_ssd_state_bwd_kernel",)),
    "state-BS64-w4-st2-r168": ("state_bwd", dict(BS=64, num_warps=4, num_stages=2, maxnreg=168), {},
                               ("_ssd_state_bwd_kernel",)),
    "state-BS64-w4-st2-r128": ("state_bwd", dict(BS=64, num_warps=4, num_stages=2, maxnreg=128), {},
                               ("_ssd_state_bwd_kernel",)),
    # around the best of those (st2-r168: 484.5 / 426.5 us at shape 1, chunk 128 / 256, against 605 / 544)
    "state-BS64-w4-st1-r168": ("state_bwd", dict(BS=64, num_warps=4, num_stages=1, maxnreg=168), {},
                               ("_ssd_state_bwd_kernel",)),
    "state-BS32-w4-st2-r168": ("state_bwd", dict(BS=32, num_warps=4, num_stages=2, maxnreg=168), {},
                               ("_ssd_state_bwd_kernel",)),
    # 32-token steps without pipelining: half the gating tiles a step (ncu 2026-12-01: the 64-token walk spills under
    # its 168 cap), and a 128 cap for 4 CTAs an SM. H200 2026-12-01, shape 1, chunk 128: 589 / 642 / 958 (2 warps) us
    # against 472
    "state-BS32-w4-st1-r168": ("state_bwd", dict(BS=32, num_warps=4, num_stages=1, maxnreg=168), {},
                               ("_ssd_state_bwd_kernel",)),
    "state-BS32-w4-st1-r128": ("state_bwd", dict(BS=32, num_warps=4, num_stages=1, maxnreg=128), {},
                               ("_ssd_state_bwd_kernel",)),
    "state-BS32-w2-st1-r168": ("state_bwd", dict(BS=32, num_warps=2, num_stages=1, maxnreg=168), {},
                               ("_ssd_state_bwd_kernel",)),
    # n in two blocks (640 walks at shape 1) under caps: 4-5 CTAs an SM
    "state-BN64-BS64-w4-st1-r128": ("state_bwd", dict(BN=64, BS=64, num_warps=4, num_stages=1, maxnreg=128), {},
                                    ("_ssd_state_bwd_kernel",)),
    "state-BN64-BS64-w4-st2-r96": ("state_bwd", dict(BN=64, BS=64, num_warps=4, num_stages=2, maxnreg=96), {},
                                   ("_ssd_state_bwd_kernel",)),
    "state-BS64-w8": ("state_bwd", dict(BS=64, num_warps=8), {}, ("_ssd_state_bwd_kernel",)),
    # p in blocks of 32: 640 walks at shape 1 at 5 CTAs of 4 warps an SM (96 registers, 8 bytes of spills at 32-token
    # steps; sm_90 AOT) instead of 320 at 3; 8 warps in 32-token steps under a 128 cap (no spills). H200 2026-12-01,
    # chunk 128, shape 1 / 2: 461.8 / 375, 703 / 323, 579 / 505, 754 / 400 us (in this order) against 465.5 / 217.3
    "state-BP32-BS32-w4-st1-r96": ("state_bwd", dict(BP=32, BS=32, num_warps=4, num_stages=1, maxnreg=96), {},
                                   ("_ssd_state_bwd_kernel",)),
    "state-BP32-BS64-w4-st1-r104": ("state_bwd", dict(BP=32, BS=64, num_warps=4, num_stages=1, maxnreg=104), {},
                                    ("_ssd_state_bwd_kernel",)),
    "state-BP32-BS32-w2-st1-r168": ("state_bwd", dict(BP=32, BS=32, num_warps=2, num_stages=1, maxnreg=168), {},
                                    ("_ssd_state_bwd_kernel",)),
    "state-BS32-w8-st1-r128": ("state_bwd", dict(BS=32, num_warps=8, num_stages=1, maxnreg=128), {},
                               ("_ssd_state_bwd_kernel",)),
    "dcb-default": ("bwd_dcb", {}, {}, ("_ssd_bwd_dcb_kernel",)),
    "dcb-w8": ("bwd_dcb", dict(num_warps=8), {}, ("_ssd_bwd_dcb_kernel",)),
    "dcb-w2-st2": ("bwd_dcb", dict(num_warps=2, num_stages=2), {}, ("_ssd_bwd_dcb_kernel",)),
    # register caps: shape 1's 640 live programs are 2.4 waves at 2 CTAs an SM (238 registers, 4 warps)
    "dcb-r168": ("bwd_dcb", dict(maxnreg=168), {}, ("_ssd_bwd_dcb_kernel",)),
    "dcb-r128-st2": ("bwd_dcb", dict(maxnreg=128, num_stages=2), {}, ("_ssd_bwd_dcb_kernel",)),
    # (r168 at 3 stages: 260.9 / 466.0 us at shape 1, chunk 128 / 256, against 379.8 / 515)
    "dcb-r168-st2": ("bwd_dcb", dict(maxnreg=168, num_stages=2), {}, ("_ssd_bwd_dcb_kernel",)),
    "dcb-r168-st4": ("bwd_dcb", dict(maxnreg=168, num_stages=4), {}, ("_ssd_bwd_dcb_kernel",)),
    "dcb-hs2-r168-st2": ("bwd_dcb", dict(HSPLIT=2, maxnreg=168, num_stages=2), {}, ("_ssd_bwd_dcb_kernel",)),
    # a group's heads over 2 / 4 / 8 programs (fp32 atomics into a zeroed dCB; shape 1 has 640 programs of 80 heads;
    # H200 2026-11-30: 466 / 472 / 503 us against 520 at shape 1, equal at shape 2; one source block a dx program
    # (SPLIT_S) measured 1343-1393 against 1113 us and was removed)
    "dcb-hs2": ("bwd_dcb", dict(HSPLIT=2), {}, ("_ssd_bwd_dcb_kernel",)),
    "dcb-hs4": ("bwd_dcb", dict(HSPLIT=4), {}, ("_ssd_bwd_dcb_kernel",)),
    "dcb-hs8": ("bwd_dcb", dict(HSPLIT=8), {}, ("_ssd_bwd_dcb_kernel",)),
    "dcb-st2": ("bwd_dcb", dict(num_stages=2), {}, ("_ssd_bwd_dcb_kernel",)),
    # block pairs of 128 (one a chunk: 128 programs at shape 1) / 32 (10 a chunk) instead of 64 (3 a chunk). H200
    # 2026-12-01, chunk 128, shape 1 / 2: 897 / 159, 458 / 141, 282 / 113 us against 247 / 91 for the default
    "dcb-BM128-w8-st2": ("bwd_dcb", dict(BM=128, num_warps=8, num_stages=2), {}, ("_ssd_bwd_dcb_kernel",)),
    "dcb-BM32-r168-st2": ("bwd_dcb", dict(BM=32, maxnreg=168, num_stages=2), {}, ("_ssd_bwd_dcb_kernel",)),
    "dcb-BM32-w2-st2": ("bwd_dcb", dict(BM=32, num_warps=2, num_stages=2), {}, ("_ssd_bwd_dcb_kernel",)),
    # 8 warps under a 128 cap (2 CTAs an SM; the default spills at its 168 cap): 339 / 117 us against 247 / 91
    "dcb-w8-st2-r128": ("bwd_dcb", dict(num_warps=8, num_stages=2, maxnreg=128), {}, ("_ssd_bwd_dcb_kernel",)),
    "dcb-st1": ("bwd_dcb", dict(num_stages=1), {}, ("_ssd_bwd_dcb_kernel",)),
    "dbc-default": ("bwd_dbc", {}, {}, ("_ssd_bwd_dbc_kernel",)),
    "dbc-BPK32": ("bwd_dbc", dict(BPK=32), {}, ("_ssd_bwd_dbc_kernel",)),
    "dbc-st1": ("bwd_dbc", dict(num_stages=1), {}, ("_ssd_bwd_dbc_kernel",)),
    "dbc-w4-st2": ("bwd_dbc", dict(num_warps=4, num_stages=2), {}, ("_ssd_bwd_dbc_kernel",)),
    # smaller row blocks: shape 1 (g = 1) launches only 128 programs of 128 rows at chunk 128 (one per chunk, each
    # summing over all 80 heads: ~100 us a launch on fewer programs than SMs)
    "dbc-BM128-w8": ("bwd_dbc", dict(BM=128, num_warps=8), {}, ("_ssd_bwd_dbc_kernel",)),  # default until 11-30
    "dbc-BM64": ("bwd_dbc", dict(BM=64), {}, ("_ssd_bwd_dbc_kernel",)),
    "dbc-BM64-w4": ("bwd_dbc", dict(BM=64, num_warps=4), {}, ("_ssd_bwd_dbc_kernel",)),
    "dbc-BM32-w4": ("bwd_dbc", dict(BM=32, num_warps=4), {}, ("_ssd_bwd_dbc_kernel",)),
    "dbc-BM32-w2": ("bwd_dbc", dict(BM=32, num_warps=2), {}, ("_ssd_bwd_dbc_kernel",)),
    "dbc-BM16-w2": ("bwd_dbc", dict(BM=16, num_warps=2), {}, ("_ssd_bwd_dbc_kernel",)),
}


@pytest.mark.parametrize("chunk", list(SWEEP_CHUNKS))
@pytest.mark.parametrize("cfg", list(BWD_CONFIGS))
@pytest.mark.parametrize("shape", list(SHAPES))
def bench_ssd_bwd_configs(benchmark, harness, shape, cfg, chunk):
    """One backward kernel alone per config / variant (dx: one head per program vs head blocks; state walk, dCB,
    dB / dC block configs), at chunk 128 (where the op runs a requested 256) and 256."""
    key, over, variant, names = BWD_CONFIGS[cfg]
    _time_fwd_kernel(benchmark, harness, shape, key, over, names, bwd=True, variant=variant,
                     chunk=SWEEP_CHUNKS[chunk])


