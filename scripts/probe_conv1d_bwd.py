"""Does the conv1d channel-first backward kernel's speed depend on the input data or on where x, dy and dx lie
in memory? GPU-only diagnostic: the CUDA backward op (bf16, b4 d6144 l4096 w4 silu) timed over 20 back-to-back
calls (CUDA events, median of 7 rounds) with normal vs uniform data and with separate allocations vs slices of
one buffer at several relative offsets; then, as the lab binary times it, one call per event pair with the GPU idle
in between; then with x, dy, dx from raw cudaMalloc (CuPy's runtime, outside torch's caching allocator, as the lab
allocates). Run it again under PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to see the allocator's mapping.
Usage: python scripts/probe_conv1d_bwd.py
"""
import os

import torch

import mamba_kernels._cuda  # noqa: F401
from _gpu_timing import batch_time_us, call_time_us

BF16 = torch.bfloat16
OP = torch.ops.mamba_kernels._conv1d_bwd_cuda


def main():
    b, d, l, w = 4, 6144, 4096, 4
    n = b * d * l
    wt = (torch.randn(d, w, device="cuda") / 2).to(BF16)
    bias = torch.randn(d, device="cuda").to(BF16)
    dw, db = torch.empty_like(wt), torch.empty_like(bias)

    def call(x, dy, dx):
        return lambda: OP(x, wt, bias, None, None, dy, None, dx, dw, db, None, True, False)

    def run(x, dy, dx, tag):
        t = batch_time_us(call(x, dy, dx))
        print(f"{tag:60s} {t:7.1f} us", flush=True)

    def run_synced(x, dy, dx, tag, reps=50):
        t = call_time_us(call(x, dy, dx), reps, warmup=1, sync=True)
        print(f"{tag:60s} {t:7.1f} us (one call per event pair, synced)", flush=True)

    print("PYTORCH_CUDA_ALLOC_CONF =", os.environ.get("PYTORCH_CUDA_ALLOC_CONF"), flush=True)

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
    x = torch.empty(b, d, l, device="cuda", dtype=BF16).uniform_(-1, 1)
    dy = torch.empty_like(x).uniform_(-1, 1)
    dx = torch.empty_like(x)
    run_synced(x, dy, dx, "separate allocations, uniform")
    del x, dy, dx
    try:
        import cupy
    except ImportError:
        print("cupy missing: raw cudaMalloc case skipped", flush=True)
        return
    ptrs = [cupy.cuda.runtime.malloc(n * 2) for _ in range(3)]
    try:
        mems = [cupy.cuda.UnownedMemory(ptr, n * 2, None) for ptr in ptrs]
        arrs = [cupy.ndarray((b, d, l), dtype=cupy.uint16, memptr=cupy.cuda.MemoryPointer(m, 0)) for m in mems]
        x, dy, dx = (torch.from_dlpack(a).view(BF16) for a in arrs)
        x.uniform_(-1, 1)
        dy.uniform_(-1, 1)
        torch.cuda.synchronize()
        run(x, dy, dx, "raw cudaMalloc (cupy runtime), uniform")
        run_synced(x, dy, dx, "raw cudaMalloc (cupy runtime), uniform")
        del x, dy, dx, arrs, mems
        torch.cuda.synchronize()
    finally:
        for ptr in ptrs:
            cupy.cuda.runtime.free(ptr)


if __name__ == "__main__":
    main()
