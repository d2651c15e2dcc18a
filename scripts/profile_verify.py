"""Where does verify_step's time go? GPU-only diagnostic (not a benchmark: bench/bench_verify.py is).

For a few layer/batch/k cases and both GPU backends it prints:
  - every CUDA kernel launched by one verify_step call with its mean device time (torch.profiler),
  - the per-call device time (CUDA events, median) with the default acceptance (ceil(k/2): the ring advances and
    folds periodically) and with acceptance 0 (the ring stays empty: no replay, no fold), so the difference is the
    ring's cost,
  - a plain read of the same state bytes (the floor).
Usage: python scripts/profile_verify.py [--cases mamba2-64-4,mamba2-1-4,...] [--impls cuda,triton]
       python scripts/profile_verify.py --one mamba2-64-4 --impls cuda   (a few calls only: for ncu)
Impl mamba_ssm_decode (k = 1 cases only): mamba_ssm's selective_state_update, as bench_verify.py's
bench_decode_mamba_ssm calls it (needs the anchors), for the kernel time of a dedicated decode kernel.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness  # noqa: E402
from _gpu_timing import call_time_us, kernel_table  # noqa: E402
import bench_verify as bv  # noqa: E402

import mamba_kernels as mk  # noqa: E402


def _call(L, impl, acc, out):
    if impl == "mamba_ssm_decode":
        return bv.decode_call(L)()
    mk.verify_step(L["x"], L["dt"], L["A"], L["B"], L["C"], L["cache"], L["slots"], acc, z=L["z"], D=L["D"],
                   dt_bias=L["dt_bias"], dt_softplus=True, out=out, backend=impl)


def _time(fn, reps=200):
    return call_time_us(fn, reps)


def _graph_time(fn, reps=200):
    return _time(_harness.Harness._graph(fn).replay, reps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="mamba2-1-1,mamba2-1-4,mamba2-64-1,mamba2-64-4,mamba1-1-4,mamba1-64-4")
    ap.add_argument("--impls", default="cuda,triton")
    ap.add_argument("--one", default=None)
    a = ap.parse_args()
    impls = a.impls.split(",")
    if a.one:
        kind, b, k = a.one.split("-")
        L = bv._layer(kind, int(b), int(k))
        for impl in impls:
            if impl != "mamba_ssm_decode":
                bv._prime(L, impl)
            out = torch.empty_like(L["x"])
            for _ in range(8):
                _call(L, impl, L["acc"], out)
        torch.cuda.synchronize()
        return
    for case in a.cases.split(","):
        kind, b, k = case.split("-")
        b, k = int(b), int(k)
        for impl in impls:
            L = bv._layer(kind, b, k)
            if impl == "mamba_ssm_decode" and k != 1:
                continue
            if impl != "mamba_ssm_decode":
                bv._prime(L, impl)
            out = torch.empty_like(L["x"])
            zero = torch.zeros_like(L["acc"])
            t_acc = _time(lambda: _call(L, impl, L["acc"], out))
            tg_acc = _graph_time(lambda: _call(L, impl, L["acc"], out))
            t_0 = _time(lambda: _call(L, impl, zero, out))
            ks = kernel_table(lambda: _call(L, impl, L["acc"], out))
            print(f"{case} {impl}: eager {t_acc:.1f} us, graph {tg_acc:.1f} us, accept-0 eager {t_0:.1f} us")
            for name, per_call, us in ks:
                print(f"    {per_call:4.1f}x  {us:8.2f} us  {name}")
            sys.stdout.flush()
        st = L["cache"].state
        rd = torch.empty(1, device="cuda")
        idx = L["slots"].long()
        t_rd = _time(lambda: torch.sum(st[idx], dim=None, out=None))
        print(f"{case}: gather+sum of the addressed states (>= 2 passes) {t_rd:.1f} us; floor (one read at 4.2 TB/s) "
              f"{L['state_elems'] * b * 4 / 4.2e6:.1f} us")
        del rd


if __name__ == "__main__":
    main()
