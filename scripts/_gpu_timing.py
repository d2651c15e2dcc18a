"""Timing helpers shared by the GPU diagnostic scripts (profile_verify.py, profile_conv1d.py,
probe_conv1d_bwd.py). Benchmarks use bench/_harness.py instead."""
import statistics

import torch


def batch_time_us(fn, n=20, rounds=7, spin_cycles=0):
    """Median over `rounds` of the per-call time (µs) of n back-to-back calls between two CUDA events. With
    spin_cycles the GPU first spins that long (torch.cuda._sleep), so that the host enqueues the calls meanwhile
    and its launch path cannot leave the GPU idle between them."""
    fn()
    ts = []
    for _ in range(rounds):
        torch.cuda.synchronize()
        if spin_cycles:
            torch.cuda._sleep(spin_cycles)
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(n):
            fn()
        e.record()
        e.synchronize()
        ts.append(s.elapsed_time(e) * 1e3 / n)
    return statistics.median(ts)


def call_time_us(fn, reps=200, warmup=20, sync=False):
    """Median (µs) of `reps` calls, each between its own pair of CUDA events, after `warmup` calls. With sync the
    device is idle before each call (as a binary that synchronises per call times it)."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        if sync:
            torch.cuda.synchronize()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        ts.append(s.elapsed_time(e) * 1e3)
    return statistics.median(ts)


def kernel_table(fn, n=20, warmup=5):
    """[(kernel name, launches per call, mean device µs per launch)] of n calls under torch.profiler."""
    from torch.profiler import ProfilerActivity, profile
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
    rows = []
    for ev in prof.key_averages():
        t = getattr(ev, "device_time_total", None) or getattr(ev, "cuda_time_total", 0)
        if ev.count and t:
            rows.append((ev.key[:100], ev.count / n, t / ev.count))
    return rows
