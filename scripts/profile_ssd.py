"""Per-kernel GPU times of one chunked-SSD forward (torch.profiler), for the CUDA and Triton backends.

  python3 scripts/profile_ssd.py [--impls cuda,triton,cuda_fused] [--chunks 256] [--reps 20] [--one SHAPE] [--bwd]
Shapes are bench/bench_ssd.py's (bf16, z, D, softplus). A forward-only Triton profile runs at the chunk size
mamba_kernels.ssd.interface.compute_chunk_size picks (128 for a requested 256 when no chunk states are returned). --one runs SHAPE's forward (with --bwd: forward + backward) of the first impl 8 times (for ncu).
--bwd: one forward + backward through autograd (gradients of every input, as bench_ssd's fwd_bwd), every kernel of
it listed, torch's own (zero fills, sums, casts) included: where the time outside the SSD kernels goes.
Variants of the CUDA chunk pipeline (csrc/ssd/ssd_chunk_kernel.cuh, chunk_knobs(); read once a process, so set
them on the command line, one process per variant):
  MK_SSD_HANDOVER=1 python3 scripts/profile_ssd.py --impls cuda      # state hand-over (default 0: S_c + state pass)
  MK_SSD_SCAN_HEADS=2 python3 scripts/profile_ssd.py --impls cuda    # heads of a group a scan CTA: 1 (default), 2, 4
Variants of the head-walk stages (read at every launch): MK_SSD_WALK_STAGED=0 (outputs stored from the fragments),
MK_SSD_WALK_PINGPONG=0 (F2 / B2 as one team of 8 warps a CTA), MK_SSD_WALK_YPRE=0 (Triton's scan for forwards that
keep ypre), MK_SSD_STATE_SKEW=1 (F1's warps 4-7 store h_in after the mma), MK_SSD_WALK_WGMMA=0 (F2's C h_in^T
by mma.sync instead of wgmma), MK_SSD_STATE_WGMMA=0 (F1 on mma.sync), MK_SSD_STATE_PAIRS=0 (F1 a walk a product),
MK_SSD_STATE_TMA=0 (F1's h_in stored from registers), MK_SSD_STATE_TMA_LOAD=0 (F1's tiles by cp.async),
MK_SSD_STATE_LATE_WAIT=0 (F1 waits for its h_in boxes' reads before the chunk's last barrier),
MK_SSD_STATE_WIDE=0 (F1's products a walk pair a wgmma, not one over every walk), MK_SSD_STATE_LEAN=0|1 (with
the wide products: F1's loads from per-chunk addresses and its scaling two rows a thread | the loads' addresses fixed
only), MK_SSD_WALK_LEAN_NEXT=0 (F2 / B2's next item by next_item twice), MK_SSD_WALK_LDSM=0 (F2's epilogue by
4-byte shared loads), MK_SSD_WALK_RING=0 (F2's wgmma kernel on the ping-pong, not the three-stage ring),
MK_SSD_WALK_RING_TMA=0 (the ring's fills by cp.async, not the copy engine),
MK_SSD_WALK_RING_TEAMS=1 (the ring with one team of 8 warps: a lab), MK_SSD_WALK_PDL=0 (F2 a plain launch),
MK_SSD_PREP_ONE_LAUNCH=0 (K0 and K1 as two launches), MK_SSD_STATE_PDL=1 (F1 a programmatic dependent of the kernel before it: a lab); use --impls triton (the pipeline that runs them).
The variant in force is printed first.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
from bench_ssd import SHAPES, _inputs  # noqa: E402

from mamba_kernels.ssd import ssd_chunked_scan  # noqa: E402


def _run(inp, impl, chunk, gout=None):
    from mamba_kernels.ssd import cuda as ssd_cuda
    ssd_cuda.FORCE_FUSED = impl == "cuda_fused"
    backend = "triton" if impl == "triton" else "cuda"
    y = ssd_chunked_scan(inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], chunk, D=inp["D"], z=inp["z"],
                         dt_bias=inp["dt_bias"], dt_softplus=True, backend=backend)
    if gout is None:
        return y
    return torch.autograd.grad(y, [v for v in inp.values() if v.requires_grad], gout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--impls", default="cuda,triton")
    ap.add_argument("--chunks", default="256")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--one", default=None)
    ap.add_argument("--wall", action="store_true",
                    help="also the time a call of 20 enqueued back to back (launch gaps and overlaps in)")
    ap.add_argument("--bwd", action="store_true")
    a = ap.parse_args()
    knobs = (("MK_SSD_HANDOVER", "0"), ("MK_SSD_SCAN_HEADS", "1"), ("MK_SSD_WALK_STAGED", "1"),
             ("MK_SSD_WALK_PINGPONG", "1"), ("MK_SSD_WALK_YPRE", "1"), ("MK_SSD_STATE_SKEW", "1"),
             ("MK_SSD_WALK_WGMMA", "1"), ("MK_SSD_STATE_WGMMA", "1"), ("MK_SSD_STATE_PAIRS", "1"),
             ("MK_SSD_STATE_TMA", "1"), ("MK_SSD_STATE_TMA_LOAD", "1"), ("MK_SSD_STATE_LATE_WAIT", "1"),
             ("MK_SSD_STATE_WIDE", "1"), ("MK_SSD_STATE_LEAN", "2"), ("MK_SSD_WALK_LEAN_NEXT", "1"),
             ("MK_SSD_WALK_LDSM", "1"), ("MK_SSD_WALK_RING", "1"),
             ("MK_SSD_WALK_RING_TMA", "1"), ("MK_SSD_WALK_RING_TEAMS", "2"), ("MK_SSD_WALK_PDL", "1"),
             ("MK_SSD_PREP_ONE_LAUNCH", "1"), ("MK_SSD_STATE_PDL", "0"))
    print(" ".join(f"{k}={os.environ.get(k, d + ' (default)')}" for k, d in knobs))
    if a.one:
        inp = _inputs(**SHAPES[a.one], grad=a.bwd)
        gout = torch.randn_like(inp["x"]) if a.bwd else None
        for _ in range(8):
            _run(inp, a.impls.split(",")[0], int(a.chunks.split(",")[0]), gout)
        torch.cuda.synchronize()
        return
    for shape, s in SHAPES.items():
        inp = _inputs(**s, grad=a.bwd)
        gout = torch.randn_like(inp["x"]) if a.bwd else None
        for chunk in map(int, a.chunks.split(",")):
            for impl in a.impls.split(","):
                for _ in range(3):
                    _run(inp, impl, chunk, gout)
                torch.cuda.synchronize()
                with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                    for _ in range(a.reps):
                        _run(inp, impl, chunk, gout)
                    torch.cuda.synchronize()
                tot = {}
                for e in prof.events():
                    if e.device_type == torch.autograd.DeviceType.CUDA:
                        tot.setdefault(e.name, []).append(e.device_time)
                total = sum(sum(v) for v in tot.values()) / a.reps
                what = "forward + backward" if a.bwd else "forward"
                print(f"{shape} chunk {chunk} {impl}: {total:8.1f} us of kernels a {what}")
                for name, v in sorted(tot.items(), key=lambda kv: -sum(kv[1])):
                    print(f"   {len(v) / a.reps:4.1f}x {sum(v) / a.reps:9.1f} us  {name[:110]}")
                if a.wall:
                    from _gpu_timing import batch_time_us
                    t = batch_time_us(lambda: _run(inp, impl, chunk, gout), n=20, rounds=9, spin_cycles=40_000_000)
                    print(f"{shape} chunk {chunk} {impl}: {t:8.1f} us a {what} call (20 back to back behind a GPU "
                          "spin, CUDA events, median of 9)")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
