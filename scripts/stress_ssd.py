"""Repeat the chunked SSD forward (backend="triton": the CUDA head-walk stages where they serve) many times on the
GPU and check that every call returns the first call's output bit for bit (the kernels are deterministic): a race or
an intermittent fault in a run-time variant shows as a mismatch or a CUDA error. One process a variant, e.g.
  MK_SSD_WALK_PDL=0 python3 scripts/stress_ssd.py --calls 20000 --shape b4-l4096-h80-p64-n128-g1
Prints "stress <shape> <env>: <calls> calls, <m> mismatching checks (every --every calls), first at <i>"."""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
from bench_ssd import SHAPES, _inputs  # noqa: E402
from profile_ssd import _run  # noqa: E402  (the forward as profile_ssd.py times it)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--shape", default="b4-l4096-h80-p64-n128-g1")
    a = ap.parse_args()
    inp = _inputs(**SHAPES[a.shape])
    env = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("MK_SSD")) or "defaults"

    def run():
        return _run(inp, "triton", 256)
    with torch.no_grad():
        ref = run().clone()
        assert torch.isfinite(ref.float()).all(), "the first output holds a non-finite value"
        bad, first = 0, None
        for i in range(1, a.calls + 1):
            y = run()
            if i % a.every == 0:
                if not torch.equal(y, ref):
                    bad += 1
                    first = i if first is None else first
        torch.cuda.synchronize()
    print(f"stress {a.shape} {env}: {a.calls} calls, {bad} mismatching checks (every {a.every}), first at {first}",
          flush=True)


if __name__ == "__main__":
    main()
