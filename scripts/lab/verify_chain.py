"""Lab (GPU, not a benchmark; session 63, not yet run): one-token verify calls chained as an engine's decode graph
holds them, to judge launch-latency work (bench/results/lab/verify-decfence-2026-12-08/pdl.patch) that a graph of one
call cannot show: there the verify kernel has no kernel before it.

Per case (bench/bench_verify.py's layers and protocol: fp32 state, one token, ceil(k / 2) = 1 accepted a call),
`--layers` layers each with its own cache, captured in one CUDA graph as

    for each layer: x_layer.copy_(src)   (an elementwise kernel: the projection that writes the layer's input)
                    verify_step(...)     (or mamba_ssm's selective_state_update, the anchor)

and the same graph with the copies alone. Prints the per-layer step time (graph time / layers) of ours, of the
anchor and of the copies, so `ours - copies` is what a layer's verify call adds to a decode step.
Usage: python scripts/lab/verify_chain.py --cases mamba2-1-1,mamba1-1-1 --layers 8 [--tag pdl]
(MK_VERIFY_DEC_PDL=0|1 with pdl.patch applied: the decode kernels' programmatic launch off / on.)
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench"))
sys.path.insert(0, os.path.join(HERE, ".."))
import _harness  # noqa: E402
from _gpu_timing import batch_time_us  # noqa: E402
import bench_verify as bv  # noqa: E402


def chain(layers, srcs, step):
    """A zero-argument function running, for each layer, the input copy and then step(layer) (None: copies only)."""
    def fn():
        for L, src in zip(layers, srcs):
            L["x"].copy_(src)
            if step is not None:
                step(L)
    return fn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="mamba2-1-1,mamba1-1-1")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--tag", default="chain")
    a = ap.parse_args()
    for case in a.cases.split(","):
        kind, b, k = case.split("-")
        b, k = int(b), int(k)
        if k != 1:
            raise SystemExit(f"{case}: the chain is for one-token calls (k = 1)")
        layers = [bv._layer(kind, b, k) for _ in range(a.layers)]
        srcs = [L["x"].clone() for L in layers]
        for L in layers:
            bv._prime(L, "cuda")
        outs = [torch.empty_like(L["x"]) for L in layers]
        ours = {id(L): bv._ours(L, "cuda", o) for L, o in zip(layers, outs)}
        anchor = {id(L): bv.decode_call(L) for L in layers}
        res = {}
        for name, step in (("ours", lambda L: ours[id(L)]()), ("mamba_ssm", lambda L: anchor[id(L)]()),
                           ("copies", None)):
            g = _harness.Harness._graph(chain(layers, srcs, step))
            res[name] = batch_time_us(g.replay, n=a.calls, rounds=5) / a.layers
            del g
        print(f"{a.tag} {case} x{a.layers}: per layer ours {res['ours']:.2f} us, mamba_ssm {res['mamba_ssm']:.2f} us, "
              f"copies {res['copies']:.2f} us | added by the call: ours {res['ours'] - res['copies']:.2f}, "
              f"mamba_ssm {res['mamba_ssm'] - res['copies']:.2f}", flush=True)


if __name__ == "__main__":
    main()
