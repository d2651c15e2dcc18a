"""Where does the conv1d forward + backward benchmark's time go? GPU-only diagnostic (bench/bench_conv1d.py is
the benchmark). For bf16 b4 d6144 l4096 w4 silu, both layouts: every CUDA kernel of one call with its mean
device time (torch.profiler), and the per-call time of 20 calls enqueued behind a GPU spin (CUDA events; the
host's launch path then cannot leave the GPU idle), for the forward alone and forward + backward.
Usage: python scripts/profile_conv1d.py
"""
import torch

from _gpu_timing import batch_time_us, kernel_table
from mamba_kernels import causal_conv1d

BF16 = torch.bfloat16


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
            t = batch_time_us(fn, spin_cycles=20_000_000)  # ~10 ms of spin
            print(f"{'cl' if cl else 'cf'} {name}: {t:.1f} us per call (behind a spin)", flush=True)
            for kname, per_call, us in kernel_table(fn, n=10, warmup=3):
                print(f"    {per_call:4.1f}x {us:8.2f} us  {kname}")


if __name__ == "__main__":
    main()
