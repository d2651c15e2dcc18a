"""Repeat the chunked SSD forward (backend="triton": the CUDA head-walk stages where they serve) many times on the
GPU and check that every call returns the first call's output bit for bit (the kernels are deterministic): a race or
an intermittent fault in a run-time variant shows as a mismatch or a CUDA error. One process a variant, e.g.
  MK_SSD_WALK_PDL=0 python3 scripts/stress_ssd.py --calls 20000 --shape b4-l4096-h80-p64-n128-g1
With --batch N the calls run back to back (N enqueued behind a GPU spin, then one check): the host's launch
overhead (~0.7 ms a forward at shape 1 against ~0.33 ms on the GPU) otherwise leaves gaps between calls.
Prints "stress <shape> <env> batch <N>: <calls> calls, <m> mismatching checks (...), first at <i>", or, on a CUDA
error (sticky: the process ends), "... failed, seen after <calls> calls: <error>" and the traceback."""
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
    ap.add_argument("--batch", type=int, default=0,
                    help="enqueue the calls in batches of this many behind a GPU spin (back to back, as "
                         "profile_ssd.py --wall times them); each batch's last output is checked")
    ap.add_argument("--spin", type=int, default=40_000_000,
                    help="GPU cycles spun ahead of a batch (long enough for the host to enqueue the batch)")
    ap.add_argument("--gap", action="store_true",
                    help="a tiny kernel (a 100-cycle spin) right before every F2 launch, so that F2 never follows "
                         "F1 directly (a diagnostic of the TMA ring's failure)")
    a = ap.parse_args()
    if a.gap:
        from mamba_kernels.ssd import cuda_walk
        scan = cuda_walk.scan

        def scan_after_gap(*args, **kwargs):
            torch.cuda._sleep(100)
            return scan(*args, **kwargs)
        cuda_walk.scan = scan_after_gap  # triton.ssd_fwd calls it through the module
    inp = _inputs(**SHAPES[a.shape])
    env = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("MK_SSD")) or "defaults"
    env += " gap" if a.gap else ""

    def run():
        return _run(inp, "triton", 256)
    done = 0
    with torch.no_grad():
        ref = run().clone()
        assert torch.isfinite(ref.float()).all(), "the first output holds a non-finite value"
        bad, first = 0, None
        try:
            # groups of calls, the last of each checked: --batch calls enqueued behind a spin, or --every calls
            group = a.batch or a.every
            while done < a.calls:
                if a.batch:
                    torch.cuda.synchronize()
                    torch.cuda._sleep(a.spin)  # the host enqueues the batch meanwhile: no gap between calls
                n = min(group, a.calls - done)
                for _ in range(n):
                    y = run()
                done += n
                if not torch.equal(y, ref):
                    bad += 1
                    first = done if first is None else first
            torch.cuda.synchronize()
        except Exception as e:  # a CUDA error: say after how many calls (it is sticky: the process ends here)
            print(f"stress {a.shape} {env} batch {a.batch}: failed, seen after {done} calls: "
                  f"{str(e).splitlines()[0]}", flush=True)
            raise
    print(f"stress {a.shape} {env} batch {a.batch}: {done} calls, {bad} mismatching checks "
          f"({'every batch' if a.batch else f'every {a.every}'}), first at {first}", flush=True)


if __name__ == "__main__":
    main()
