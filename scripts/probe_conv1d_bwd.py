"""Does the conv1d channel-first backward kernel's speed depend on the input data or on where x, dy and dx lie
in memory? GPU-only diagnostic: the CUDA backward op (bf16, b4 d6144 l4096 w4 silu) timed over 20 back-to-back
calls (CUDA events, median of 7 rounds) with normal vs uniform data and with separate allocations vs slices of
one buffer at several relative offsets.
Usage: python scripts/probe_conv1d_bwd.py
"""
import torch

import mamba_kernels._cuda  # noqa: F401
from _gpu_timing import batch_time_us

BF16 = torch.bfloat16
OP = torch.ops.mamba_kernels._conv1d_bwd_cuda


def main():
    b, d, l, w = 4, 6144, 4096, 4
    n = b * d * l
    wt = (torch.randn(d, w, device="cuda") / 2).to(BF16)
    bias = torch.randn(d, device="cuda").to(BF16)
    dw, db = torch.empty_like(wt), torch.empty_like(bias)

    def run(x, dy, dx, tag):
        t = batch_time_us(lambda: OP(x, wt, bias, None, None, dy, None, dx, dw, db, None, True, False))
        print(f"{tag:60s} {t:7.1f} us", flush=True)

    def fill(t, kind):
        return t.normal_() if kind == "normal" else t.uniform_(-1, 1)

    for kind in ("normal", "uniform"):
        x = fill(torch.empty(b, d, l, device="cuda", dtype=BF16), kind)
        dy = fill(torch.empty(b, d, l, device="cuda", dtype=BF16), kind)
        dx = torch.empty_like(x)
        run(x, dy, dx, f"separate allocations, {kind}")
        del x, dy, dx
    gap_mib = (0, 2, 1, 64)
    for g in gap_mib:
        pad = g * (1 << 20) // 2
        buf = torch.empty(3 * n + 2 * pad, device="cuda", dtype=BF16)
        x = buf[:n].view(b, d, l).normal_()
        dy = buf[n + pad:2 * n + pad].view(b, d, l).normal_()
        dx = buf[2 * n + 2 * pad:].view(b, d, l)
        run(x, dy, dx, f"one buffer, x | {g} MiB | dy | {g} MiB | dx")
        del buf, x, dy, dx
    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
