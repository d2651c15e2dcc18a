"""Where does the conv1d forward + backward benchmark's time go? GPU-only diagnostic (bench/bench_conv1d.py is
the benchmark). For bf16 b4 d6144 l4096 w4 silu, both layouts: every CUDA kernel of one call with its mean
device time (torch.profiler), and the per-call time of 20 calls enqueued behind a GPU spin (CUDA events; the
host's launch path then cannot leave the GPU idle), for the forward alone and forward + backward.
Usage: python scripts/profile_conv1d.py
"""
import statistics

import torch
from torch.profiler import ProfilerActivity, profile

from mamba_kernels import causal_conv1d

BF16 = torch.bfloat16


def _per_call(fn, n=20, rounds=7):
    ts = []
    for _ in range(rounds):
        torch.cuda.synchronize()
        torch.cuda._sleep(20_000_000)  # ~10 ms: the host enqueues the n calls meanwhile
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(n):
            fn()
        e.record()
        e.synchronize()
        ts.append(s.elapsed_time(e) * 1e3 / n)
    return statistics.median(ts)


def _kernels(fn, n=10):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
    for ev in prof.key_averages():
        t = getattr(ev, "device_time_total", None) or getattr(ev, "cuda_time_total", 0)
        if ev.count and t:
            print(f"    {ev.count / n:4.1f}x {t / ev.count:8.2f} us  {ev.key[:100]}")


def main():
    b, d, l, w = 4, 6144, 4096, 4
    for cl in (False, True):
        gen = torch.Generator(device="cuda").manual_seed(0)
        shape = (b, l, d) if cl else (b, d, l)
        x = torch.randn(*shape, device="cuda", generator=gen).to(BF16).requires_grad_()
        wt = (torch.randn(d, w, device="cuda", generator=gen) / 2).to(BF16).requires_grad_()
        bias = torch.randn(d, device="cuda", generator=gen).to(BF16).requires_grad_()
        dy = torch.randn_like(x)
        fwd = lambda: causal_conv1d(x, wt, bias, activation="silu", channel_last=cl, backend="cuda")  # noqa: E731
        fb = lambda: torch.autograd.grad(fwd(), [x, wt, bias], dy)  # noqa: E731
        for name, fn in (("fwd", fwd), ("fwd+bwd", fb)):
            print(f"{'cl' if cl else 'cf'} {name}: {_per_call(fn):.1f} us per call (behind a spin)", flush=True)
            _kernels(fn)


if __name__ == "__main__":
    main()
