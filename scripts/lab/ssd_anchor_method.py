"""anchors.md section 0's method applied again on the device: triton.testing.do_bench medians (it zeroes a 256 MB
buffer before each call) of mamba_ssm's mamba_chunk_scan_combined and of our forward (backend triton), at
bench_ssd.py's two shapes and inputs, with and without the gate z, in alternating rounds. Question it answers:
which configuration anchors.md's 0.694 / 0.630 ms figures (issue 4's "anchor measured") are, since its list of
arguments (D, dt_bias, softplus) names no z while bench_ssd.py's rows carry one.

  python3 scripts/lab/ssd_anchor_method.py [--rounds 2]
Prints one line a measurement: "<shape> <impl> z=<0|1> do_bench <ms> ms".
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import triton.testing

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import anchors  # noqa: E402
from bench_ssd import Q, SHAPES, _inputs  # noqa: E402

from mamba_kernels.ssd import ssd_chunked_scan  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    ms = anchors.mamba_ssm_triton()
    calls = {}
    for shape, s in SHAPES.items():
        inp = _inputs(**s)
        for gate in (1, 0):
            z = inp["z"] if gate else None
            args = (inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], Q)
            kw = dict(D=inp["D"], z=z, dt_bias=inp["dt_bias"], dt_softplus=True)
            calls[(shape, "mamba_ssm", gate)] = (lambda args=args, kw=kw: ms.mamba_chunk_scan_combined(*args, **kw))
            calls[(shape, "mamba_kernels", gate)] = (
                lambda args=args, kw=kw: ssd_chunked_scan(*args, **kw, backend="triton"))
    for fn in calls.values():
        fn()
    torch.cuda.synchronize()
    print(torch.cuda.get_device_name(), flush=True)
    for r in range(a.rounds):
        for (shape, impl, gate), fn in calls.items():
            t = triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median")
            print(f"round {r} {shape} {impl} z={gate} do_bench {t:.4f} ms", flush=True)


if __name__ == "__main__":
    main()
