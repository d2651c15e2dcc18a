"""Causal depthwise conv1d benchmarks (H200 targets in issue 6): bf16 x, weight and bias, width 4, SiLU.

Kernels (one result table each):
  conv1d_fwd / conv1d_fwd_cl          forward, channel-first x (b, d, l) / channel-last x (b, l, d)
  conv1d_fwd_bwd / conv1d_fwd_bwd_cl  forward + backward (gradients of x, weight, bias)
  conv1d_update                       decode update of one token, d 6144, at batch 1 and 64, eager and in a
                                      CUDA graph (graph=True)
Memory floors (bytes through HBM, N = b*d*l*2 bytes of x): forward reads x and writes y (2N); forward+backward
adds the backward's reads of x and dy and its write of dx (5N total: the pre-activation is recomputed, not
stored); the update reads x, the state (w-1 entries), weight and bias and writes y and the state.
Anchor: causal-conv1d 1.7.0 (``anchors.causal_conv1d()``): causal_conv1d_fn with x (b, d, l), or its
channel-last form x (b, l, d).transpose(1, 2); causal_conv1d_update(x (b, d), conv_state (b, d, w-1), ...).
Measured there (anchors.md section 0): fwd 0.107 ms (cl 0.136), fwd+bwd 0.506 ms at b4 d6144 l4096;
fwd 0.077, fwd+bwd 0.456 at b8 d4096 l2048; update 37.6 / 36.2 us at b1 / b64.
"""
from __future__ import annotations

import pytest
import torch

import anchors
from mamba_kernels import causal_conv1d, causal_conv1d_update

BF16 = torch.bfloat16
W = 4
SHAPES = {
    "b4-d6144-l4096": dict(b=4, d=6144, l=4096, w=W),
    "b8-d4096-l2048": dict(b=8, d=4096, l=2048, w=W),
}
IMPLS = ["mamba_kernels:cuda", "mamba_kernels:triton", "causal_conv1d"]


def _inputs(b, d, l, w, channel_last, grad=False):
    gen = torch.Generator(device="cuda").manual_seed(0)
    shape = (b, l, d) if channel_last else (b, d, l)
    x = torch.randn(*shape, device="cuda", generator=gen).to(BF16)
    wt = (torch.randn(d, w, device="cuda", generator=gen) / w ** 0.5).to(BF16)
    bias = (torch.randn(d, device="cuda", generator=gen) * 0.5).to(BF16)
    for t in (x, wt, bias):
        t.requires_grad_(grad)
    return x, wt, bias


def _fwd_fn(impl, channel_last):
    if impl == "causal_conv1d":
        cc = anchors.causal_conv1d()
        if channel_last:  # the anchor's channel-last layout: a (b, d, l) view of (b, l, d) memory
            return lambda x, w, b: cc.causal_conv1d_fn(x.transpose(1, 2), w, b, activation="silu").transpose(1, 2)
        return lambda x, w, b: cc.causal_conv1d_fn(x, w, b, activation="silu")
    backend = impl.split(":")[1]
    return lambda x, w, b: causal_conv1d(x, w, b, activation="silu", channel_last=channel_last, backend=backend)


def _nbytes(s, bwd):
    n = s["b"] * s["d"] * s["l"] * 2
    return (5 if bwd else 2) * n + s["d"] * (s["w"] + 1) * 2


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("layout", ["cf", "cl"])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd"])
def bench_conv1d(benchmark, harness, mode, impl, layout, shape):
    s = SHAPES[shape]
    cl = layout == "cl"
    bwd = mode == "fwd_bwd"
    fn = _fwd_fn(impl, cl)
    x, wt, bias = _inputs(**s, channel_last=cl, grad=bwd)
    if bwd:
        dy = torch.randn_like(x)

        def call():
            y = fn(x, wt, bias)
            return torch.autograd.grad(y, [x, wt, bias], dy)
    else:
        def call():
            return fn(x, wt, bias)
    kernel = f"conv1d_{mode}" + ("_cl" if cl else "")
    harness.measure(benchmark, kernel=kernel, impl=impl, shape=s, dtype="bfloat16", fn=call,
                    bytes=_nbytes(s, bwd), flops=0,
                    note=("channel-last (b, l, d)" if cl else "channel-first (b, d, l)")
                    + ("; grads of x, weight, bias" if bwd else ""))


def bench_conv1d_ref_small(benchmark, harness):
    """The python reference (fp32 math) at a small shape, for scale."""
    s = dict(b=1, d=256, l=1024, w=W)
    x, wt, bias = _inputs(**s, channel_last=False)
    harness.measure(benchmark, kernel="conv1d_fwd", impl="ref", shape=s, dtype="bfloat16",
                    fn=lambda: causal_conv1d(x, wt, bias, activation="silu", backend="ref"),
                    bytes=_nbytes(s, False), flops=0, note="python_ref, fp32 math")


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph"])
@pytest.mark.parametrize("b", [1, 64])
@pytest.mark.parametrize("impl", IMPLS)
def bench_conv1d_update(benchmark, harness, impl, b, graph):
    d = 6144
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(b, d, device="cuda", generator=gen).to(BF16)
    state = torch.randn(b, d, W - 1, device="cuda", generator=gen).to(BF16)
    wt = torch.randn(d, W, device="cuda", generator=gen).to(BF16)
    bias = torch.randn(d, device="cuda", generator=gen).to(BF16)
    if impl == "causal_conv1d":
        cc = anchors.causal_conv1d()
        fn = lambda: cc.causal_conv1d_update(x, state, wt, bias, activation="silu")  # noqa: E731
    else:
        out = torch.empty_like(x)
        backend = impl.split(":")[1]
        fn = lambda: causal_conv1d_update(x, state, wt, bias, activation="silu", out=out,  # noqa: E731
                                          backend=backend)
    nbytes = b * d * 2 * 2 + 2 * b * d * (W - 1) * 2 + d * (W + 1) * 2
    harness.measure(benchmark, kernel="conv1d_update", impl=impl, shape=dict(b=b, d=d, k=1, w=W), dtype="bfloat16",
                    fn=fn, bytes=nbytes, flops=0, graph=graph,
                    note="one token; state (b, d, w-1) read and shifted in place" + (" (CUDA graph)" if graph else ""))
