"""Lab driver for ncu (GPU, sm_90a build): `--calls` fused walk calls (scripts/lab/ssd_fused_lab.py's `fused`, two CTAs
an SM sharing the walks) at one bench shape, nothing else on the GPU between them; MK_SSD_FUSED_CB=1 computes C B^T
in the walk, --noz leaves the gate out. Profile one launch with e.g.
  ncu -k regex:ssd_fused_walk_kernel --launch-skip 2 --launch-count 1 python3 scripts/lab/ssd_fused_one.py"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
from bench_ssd import SHAPES, _inputs  # noqa: E402
from ssd_fused_lab import fused  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="b4-l4096-h80-p64-n128-g1")
    ap.add_argument("--calls", type=int, default=4)
    ap.add_argument("--noz", action="store_true")
    args = ap.parse_args()
    inp = _inputs(**SHAPES[args.shape])
    if args.noz:
        inp["z"] = None
    with torch.no_grad():
        for _ in range(args.calls):
            fused(inp)
    torch.cuda.synchronize()
    print(f"{args.calls} fused calls at {args.shape}", flush=True)


if __name__ == "__main__":
    main()
