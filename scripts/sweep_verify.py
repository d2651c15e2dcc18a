"""Lab sweep (GPU, not a benchmark): verify_step's mean graph-call time over whole fold cycles, by ring length.

bench/bench_verify.py's protocol (ceil(k / 2) accepted a call, fp32 state), with the cache's ring length R as a
parameter: a longer ring folds (writes the state back) less often but replays more committed rows a call.
Prints, per case and ring, the mean per call over `--calls` back-to-back replays of a one-call CUDA graph (840 by
default: whole fold cycles for periods dividing it, e.g. 7 at k 4 ring 16, 3 at k 8 ring 16, 15 at k 4 ring 32;
otherwise a partial cycle moves the mean by less than (folding call - plain call) / calls), the median of single
calls (a call without a fold) and the kernels' mean times over calls // 4 calls (torch.profiler). The kernel choice is the environment's
(MK_VERIFY_KERNEL etc.): run one process per variant.
Usage: python scripts/sweep_verify.py --cases mamba2-64-4,mamba2-64-8 --rings 16,32,64
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness  # noqa: E402
from _gpu_timing import batch_time_us, call_time_us, kernel_table  # noqa: E402
import bench_verify as bv  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="mamba2-64-4")
    ap.add_argument("--rings", default="16,32")
    ap.add_argument("--calls", type=int, default=840)
    ap.add_argument("--tag", default=os.environ.get("MK_VERIFY_KERNEL", "auto"))
    a = ap.parse_args()
    for case in a.cases.split(","):
        kind, b, k = case.split("-")
        b, k = int(b), int(k)
        for R in (int(r) for r in a.rings.split(",")):
            if R < k:
                continue
            L = bv._layer(kind, b, k, ring_len=R)
            bv._prime(L, "cuda")
            out = torch.empty_like(L["x"])
            fn = bv._ours(L, "cuda", out)
            g = _harness.Harness._graph(fn)
            mean = batch_time_us(g.replay, n=a.calls, rounds=3)
            med = call_time_us(g.replay, reps=200)
            ks = kernel_table(fn, n=a.calls // 4)
            kern = "; ".join(f"{name.split('(')[0].split('<')[0][-24:]} {us:.1f}" for name, _, us in ks)
            print(f"{a.tag} {case} ring {R}: mean {mean:.2f} us, median {med:.2f} us | {kern}", flush=True)


if __name__ == "__main__":
    main()
