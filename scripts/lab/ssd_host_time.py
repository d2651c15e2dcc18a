"""Host time of one eager SSD forward (no autograd), and where it goes: session 45 saw our forward's host time a call
(0.38-0.47 ms) exceed its GPU time (0.28 ms at shape 1 on the H200), so eager callers wait on the host.

Method: the GPU is kept busy by torch.cuda._sleep ahead of the calls, so that no launch waits for the GPU; the host
time a call is the wall time of N calls (perf_counter) / N, median of R rounds. Pieces timed the same way: the public
call, the custom op, the Triton-path forward called directly, the input checks, the setup (configs cached and not, torch's capability query, layout), the
stage predicates, each launch alone. Then a cProfile of the public call (top entries by own time).

  python3 scripts/lab/ssd_host_time.py [--calls 50] [--rounds 5] [--profile 1]
Prints "<piece> <shape> host <us> us a call" lines and the profile.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
from bench_ssd import Q, SHAPES, _inputs  # noqa: E402

from mamba_kernels.ssd import cuda_walk, ssd_chunked_scan  # noqa: E402
from mamba_kernels.ssd import interface as itf  # noqa: E402
from mamba_kernels.ssd import triton as tri  # noqa: E402
from mamba_kernels.ssd._triton_configs import _configs_for  # noqa: E402


def host_us(fn, calls, rounds):
    """Median over rounds of (wall time of `calls` calls) / calls, in us, with the GPU busy throughout."""
    fn()
    torch.cuda.synchronize()
    res = []
    for _ in range(rounds):
        torch.cuda._sleep(int(2e6) * calls)  # ~1 ms a call at ~2 GHz: longer than any call's host time
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        res.append((time.perf_counter() - t) / calls * 1e6)
        torch.cuda.synchronize()
    return statistics.median(res)


def pieces(inp, gate):
    x, dt, A, B, C = inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"]
    D, z, db = inp["D"], (inp["z"] if gate else None), inp["dt_bias"]
    Qk = itf.compute_chunk_size("triton", Q, False, x.device)
    b, l, h, p, g, n, hpg, Qs, dev, kind, prec, sdt, cfg, lay = tri._setup(x, B, Qk, None)
    dtp, a, cb = tri._cumsum_cb_fwd(dt, A, db, True, None, C, B, lay, b, l, h, g, n, Qs, kind, sdt, cfg)
    states_in = torch.empty(lay.nk, h, p, n, device=dev, dtype=sdt)
    final = torch.empty(lay.nseq, h, p, n, device=dev, dtype=torch.float32)
    out = torch.empty_like(x)
    serves = (cuda_walk.serves(x, p, n, Qs, hpg, "_ssd_state_cuda", (x, B))
              and cuda_walk.serves(x, p, n, Qs, hpg, "_ssd_scan_cuda", (x, z, C)))
    res = {
        "public": lambda: ssd_chunked_scan(x, dt, A, B, C, Q, D=D, z=z, dt_bias=db, dt_softplus=True),
        "custom_op": lambda: itf.ssd_chunked_fwd(x, dt, A, B, C, D, z, db, None, None, Qk, True, False, 0.0,
                                                 float("inf"), "triton", False, False),
        "tri.ssd_fwd": lambda: tri.ssd_fwd(x, dt, A, B, C, Qk, D, z, db, True, None, None, None, need_ypre=False),
        "checks": lambda: itf._check(x, dt, A, B, C, Q, D, z, db, None, None, None),
        "setup": lambda: tri._setup(x, B, Qk, None),
        "configs": lambda: tri._configs(p, n, Qs, x.dtype, tri._arch(dev), hpg),
        "configs_for": lambda: _configs_for(p, n, Qs, x.dtype, tri._arch(dev), hpg),
        "capability": lambda: torch.cuda.get_device_capability(dev),
        "layout": lambda: tri._Layout(b, l, Qs, None, dev),
        "serves x2": lambda: (cuda_walk.serves(x, p, n, Qs, hpg, "_ssd_scan_cuda", (x, z, C)),
                              cuda_walk.serves(x, p, n, Qs, hpg, "_ssd_state_cuda", (x, B))),
        "K0+K1 launch": lambda: tri._cumsum_cb_fwd(dt, A, db, True, None, C, B, lay, b, l, h, g, n, Qs, kind, sdt,
                                                   cfg),
        "4 empties": lambda: (torch.empty(lay.nk, h, p, n, device=dev, dtype=sdt), torch.empty_like(x),
                              torch.empty(lay.nseq, h, p, n, device=dev, dtype=torch.float32),
                              torch.empty((0,), device=dev, dtype=x.dtype)),
    }
    if not serves:  # the CUDA stages' private ops do not check shapes (their callers do): shape 2 (g 32) is Triton's
        return res
    res.update({
        "F1 op": lambda: cuda_walk.state(x, B, dtp, a, None, lay, tri._num_sms(dev), states_in, final),
        "F2 op": lambda: cuda_walk.scan(x, z, C, cb, dtp, a, states_in, D, None, lay.nk, tri._num_sms(dev), out,
                                        None),
    })
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", type=int, default=1)
    a = ap.parse_args()
    print(torch.cuda.get_device_name(), flush=True)
    for shape, s in SHAPES.items():
        inp = _inputs(**s)
        for gate in (0, 1):
            for name, fn in pieces(inp, gate).items():
                print(f"{name:14s} {shape} z={gate} host {host_us(fn, a.calls, a.rounds):8.1f} us a call", flush=True)
    if a.profile:
        inp = _inputs(**SHAPES["b4-l4096-h80-p64-n128-g1"])
        fn = pieces(inp, 0)["public"]
        fn()
        torch.cuda.synchronize()
        torch.cuda._sleep(int(2e6) * 200)
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(200):
            fn()
        pr.disable()
        torch.cuda.synchronize()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(30)
        print(s.getvalue(), flush=True)


if __name__ == "__main__":
    main()
