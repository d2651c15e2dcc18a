"""Mamba-1 selective scan benchmarks (H200 targets in issue 5): bf16 u / delta / z, variable B and C (g = 1),
fp32 A / D / delta_bias, softplus on delta, n = 16.

Floors:
  exp floor: the scan needs d*l*n exponentials per batch row (one per state and step); the H200 sustains
    4.08e12 exp/s (anchors.md section 0, a Triton exp2 chain), so forward >= b*d*l*n / 4.08e12 s. This is the
    floor passed to the harness; fwd+bwd counts 2x, bwd 1x (the backward needs the same decays again; ours
    computes each once more: the CUDA backward recomputes the forward states from saved ones and runs the
    reverse scan on the same registers, one exp per (t, n)).
  memory floor (recorded by the harness as mem_floor_ms): forward reads u, delta, z and writes out
    (2 B each: 8 B per channel-step) plus B and C (2 * b*g*n*l * 2 B); fwd+bwd adds the backward's reads (dout,
    u, delta, z, B, C) and writes (du, ddelta, dz, dB, dC).
Modes: fwd; fwd_bwd (forward with grad + autograd.grad of every input: issue 5 asks for >= 2x the anchor);
bwd (autograd.grad on a retained graph: the backward alone). Ours with grad also saves fp32 chunk-entry states
in the forward (CUDA: one per 256 steps, b*d*n*l/256 floats; Triton: per its own chunk), read back by the
backward.
Anchor: mamba_ssm's selective_scan_cuda (fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus) -> out, x,
out_z; bwd(u, delta, A, B, C, D, z, delta_bias, dout, x, out, None, delta_softplus, False) -> du, ddelta, dA,
dB, dC, dD, ddelta_bias, dz). Its forward also writes the gated and ungated outputs and the chunk states.
"""
from __future__ import annotations

import pytest
import torch

import anchors
from mamba_kernels.selective_scan import selective_scan
from mamba_kernels.selective_scan import interface as ss_interface

BF16 = torch.bfloat16
EXP_RATE = 4.08e12  # exp/s on the H200 (anchors.md section 0)
SHAPES = {
    "b2-d4096-l4096-n16": dict(b=2, d=4096, l=4096, n=16, g=1),
    "b8-d2048-l2048-n16": dict(b=8, d=2048, l=2048, n=16, g=1),
    "b1-d8192-l8192-n16": dict(b=1, d=8192, l=8192, n=16, g=1),
}


def _inputs(b, d, l, n, g, grad=False, device="cuda"):
    gen = torch.Generator(device=device).manual_seed(0)
    r = lambda *s, dtype=BF16, scale=1.0, shift=0.0: (torch.randn(*s, device=device, generator=gen) * scale  # noqa
                                                      + shift).to(dtype)
    inp = dict(u=r(b, d, l), delta=r(b, d, l, scale=0.5, shift=-1.0),
               A=-(torch.rand(d, n, device=device, generator=gen) * 4 + 0.25),
               B=r(b, g, n, l), C=r(b, g, n, l), D=r(d, dtype=torch.float32), z=r(b, d, l),
               delta_bias=r(d, dtype=torch.float32, scale=0.5, shift=-1.0))
    if grad:
        for v in inp.values():
            v.requires_grad_(True)
    return inp


def _exp_floor_ms(b, d, l, n, g, mode="fwd"):
    return b * d * l * n / EXP_RATE * 1e3 * (2 if mode == "fwd_bwd" else 1)


def _bytes(b, d, l, n, g, mode="fwd"):
    fwd = 2 * 4 * b * d * l + 2 * 2 * b * g * n * l
    bwd = 2 * 7 * b * d * l + 2 * 4 * b * g * n * l
    return {"fwd": fwd, "fwd_bwd": fwd + bwd, "bwd": bwd}[mode]


def _ours(backend):
    def fn(inp):
        return selective_scan(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"], inp["z"],
                              inp["delta_bias"], delta_softplus=True, backend=backend)
    return fn


class _MambaScan(torch.autograd.Function):
    """selective_scan_cuda wired like mamba_ssm's SelectiveScanFn (z, variable B/C, no last state)."""

    @staticmethod
    def forward(ctx, ext, u, delta, A, B, C, D, z, delta_bias):
        out, x, *rest = ext.fwd(u, delta, A, B, C, D, z, delta_bias, True)
        ctx.ext = ext
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, x, out)
        return rest[0]

    @staticmethod
    def backward(ctx, dout):
        u, delta, A, B, C, D, z, delta_bias, x, out = ctx.saved_tensors
        du, ddelta, dA, dB, dC, dD, ddelta_bias, dz = ctx.ext.bwd(
            u, delta, A, B, C, D, z, delta_bias, dout.contiguous(), x, out, None, True, False)[:8]
        return None, du, ddelta, dA, dB, dC, dD, dz, ddelta_bias


def _anchor(ext):
    def fn(inp):
        return _MambaScan.apply(ext, inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"], inp["z"],
                                inp["delta_bias"])
    return fn


def _fwd_bwd(fn, inp):
    leaves = [v for v in inp.values() if v.requires_grad]
    gout = torch.randn_like(inp["u"])

    def run():
        y = fn(inp)
        return torch.autograd.grad(y, leaves, gout)
    return run


def _bwd(fn, inp):
    leaves = [v for v in inp.values() if v.requires_grad]
    gout = torch.randn_like(inp["u"])
    y = fn(inp)

    def run():
        return torch.autograd.grad(y, leaves, gout, retain_graph=True)
    return run


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("impl", ["mamba_kernels:cuda", "mamba_kernels:triton", "mamba_ssm"])
@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd", "bwd"])
def bench_selective_scan(benchmark, harness, mode, impl, shape):
    s = SHAPES[shape]
    bwd = mode != "fwd"
    if impl == "mamba_ssm":
        fn = _anchor(anchors.selective_scan_cuda())
    else:
        backend = impl.split(":")[1]
        if bwd and backend not in ss_interface._BWD_KERNEL:
            pytest.skip(f"selective_scan has no {backend} backward kernel yet (gradients go through the "
                        "python reference, far too slow to time at this shape)")
        fn = _ours(backend)
    inp = _inputs(**s, grad=bwd)
    if mode == "fwd":
        call = lambda: fn(inp)  # noqa: E731
    else:
        call = (_fwd_bwd if mode == "fwd_bwd" else _bwd)(fn, inp)
    harness.measure(benchmark, kernel=f"selective_scan_{mode}", impl=impl, shape=s, dtype="bfloat16", fn=call,
                    bytes=_bytes(**s, mode=mode), flops=0, floor_ms=_exp_floor_ms(**s, mode=mode),
                    note="floor = d*l*n exps at 4.08e12/s; z, D, delta_bias, softplus, variable B/C"
                         + ("; grads of all inputs" if bwd else ""))


def bench_selective_scan_ref_small(benchmark, harness):
    """The float32 python reference at a small shape, for scale."""
    s = dict(b=1, d=256, l=512, n=16, g=1)
    inp = _inputs(**s)
    fn = _ours("ref")
    harness.measure(benchmark, kernel="selective_scan_fwd", impl="ref", shape=s, dtype="bfloat16",
                    fn=lambda: fn(inp), bytes=_bytes(**s), flops=0, floor_ms=_exp_floor_ms(**s),
                    note="python_ref, fp32 math")
