"""verify_step benchmarks (H200 targets in issue 3).

Layers: Mamba-2-in-Llama3-8B (h 32, p 128, n 128, g 32, fp32 state, bf16 activations) and Mamba-1 (d 4096, n 16,
g 1). Every call commits `acc` = ceil(k / 2) tokens of the previous draft and scores k new ones, so the ring
advances as in a real session and folds (writes the state back) when it fills, i.e. the timing includes the
amortised write-back. Floor: one read of the addressed states + the per-call inputs/outputs (bytes below).
Anchor (naive rollback): mamba_ssm's selective_state_update called k times with a state snapshot after each token.
Every row's ms is the MEAN over the timed calls (harness stat="mean"): with ceil(k / 2) accepted a call, one call in
about (ring - k) / ceil(k / 2) writes the whole state back (~2x a plain call at b 64), and the median would be a call
without it; the mean is the amortised cost per call (ms_median is kept in the row). The anchors' calls are uniform.
"""
from __future__ import annotations

import math

import pytest
import torch

import mamba_kernels as mk
from mamba_kernels import _backend

import anchors

I32 = torch.int32
BF16 = torch.bfloat16
M2 = dict(h=32, p=128, n=128, g=32)
M1 = dict(d=4096, n=16, g=1)


def _layer(kind, b, k, ring_len=None):
    """Inputs, parameters and a cache holding b live sequences (slots permuted inside a larger pool); ring_len
    None = the cache's default (scripts/sweep_verify.py passes others)."""
    dev = "cuda"
    S = b + 8
    gen = torch.Generator(device=dev).manual_seed(b * 100 + k)
    rnd = lambda *s, dtype=BF16: torch.randn(*s, device=dev, generator=gen).to(dtype)  # noqa: E731
    if kind == "mamba2":
        h, p, n, g = M2["h"], M2["p"], M2["n"], M2["g"]
        cache = mk.VerifyCache.allocate(S, nheads=h, headdim=p, dstate=n, ngroups=g, max_draft=max(k, 1),
                                        ring_len=ring_len, dtype=BF16, state_dtype=torch.float32, device=dev)
        x, z = rnd(b, k, h, p), rnd(b, k, h, p)
        dt = rnd(b, k, h)
        A = -torch.rand(h, device=dev, generator=gen) - 0.5
        D, dt_bias = rnd(h, dtype=torch.float32), rnd(h, dtype=torch.float32) * 0.1
        state_elems = h * p * n
        io_elems = 2 * k * h * p + k * h + 2 * k * g * n + k * h * p  # x, z, dt, B, C read; y written
    else:
        d, n, g = M1["d"], M1["n"], M1["g"]
        cache = mk.VerifyCache.allocate(S, d=d, dstate=n, ngroups=g, max_draft=max(k, 1),
                                        ring_len=ring_len, dtype=BF16, state_dtype=torch.float32, device=dev)
        x, z, dt = rnd(b, k, d), rnd(b, k, d), rnd(b, k, d)
        A = -torch.rand(d, n, device=dev, generator=gen) - 0.5
        D, dt_bias = rnd(d, dtype=torch.float32), rnd(d, dtype=torch.float32) * 0.1
        state_elems = d * n
        io_elems = 4 * k * d + 2 * k * g * n
    cache.state.normal_(generator=gen)
    B, C = rnd(b, k, g, n), rnd(b, k, g, n)
    slots = torch.randperm(S, device=dev, generator=gen)[:b].to(I32)
    acc = torch.full((b,), math.ceil(k / 2), dtype=I32, device=dev)
    nbytes = b * (state_elems * 4 + io_elems * 2)
    return dict(kind=kind, cache=cache, x=x, z=z, dt=dt, A=A, B=B, C=C, D=D, dt_bias=dt_bias, slots=slots, acc=acc,
                bytes=nbytes, state_elems=state_elems)


def _ours(L, backend, out):
    def fn():
        mk.verify_step(L["x"], L["dt"], L["A"], L["B"], L["C"], L["cache"], L["slots"], L["acc"], z=L["z"],
                       D=L["D"], dt_bias=L["dt_bias"], dt_softplus=True, out=out, backend=backend)
    return fn


def _prime(L, backend):
    # First call: nothing pending; afterwards `acc` tokens of each previous draft are accepted.
    first = torch.zeros_like(L["acc"])
    mk.verify_step(L["x"], L["dt"], L["A"], L["B"], L["C"], L["cache"], L["slots"], first, z=L["z"], D=L["D"],
                   dt_bias=L["dt_bias"], dt_softplus=True, backend=backend)


def _ssu_args(L):
    """Layer L's inputs as mamba_ssm's selective_state_update takes them, per token t via [:, t]: A, D, dt_bias,
    dt (b, k, ...), B and C (b, k, ...). Mamba-2: tied dt / A over a head's channels, B / C (b, k, g, n); Mamba-1:
    the channel layout (state (S, d, n)) takes one group, B / C (b, k, n)."""
    if L["kind"] == "mamba2":
        h, p, n = M2["h"], M2["p"], M2["n"]
        return dict(A=L["A"][:, None, None].expand(h, p, n), D=L["D"][:, None].expand(h, p),
                    dt_bias=L["dt_bias"][:, None].expand(h, p), dt=L["dt"][..., None].expand(*L["dt"].shape, p),
                    B=L["B"], C=L["C"])
    return dict(A=L["A"], D=L["D"], dt_bias=L["dt_bias"], dt=L["dt"], B=L["B"][:, :, 0], C=L["C"][:, :, 0])


def decode_call(L):
    """One mamba_ssm selective_state_update of L's first token (fp32 state), no rollback: the dedicated decode
    kernel that k = 1 is compared with (also scripts/profile_verify.py)."""
    ssu = anchors.mamba_ssm_triton().selective_state_update
    a = _ssu_args(L)
    return lambda: ssu(L["cache"].state, L["x"][:, 0], a["dt"][:, 0], a["A"], a["B"][:, 0], a["C"][:, 0],  # noqa: E731
                       D=a["D"], z=L["z"][:, 0], dt_bias=a["dt_bias"], dt_softplus=True,
                       state_batch_indices=L["slots"])


def _shape(kind, b, k):
    base = M2 if kind == "mamba2" else M1
    return dict(b=b, k=k, **base)


CASES = [(kind, b, k) for kind in ("mamba2", "mamba1") for b in (1, 16, 64) for k in (1, 2, 4, 8)]


def _id(c):
    return f"{c[0]}-b{c[1]}-k{c[2]}"


@pytest.mark.parametrize("case", CASES, ids=_id)
@pytest.mark.parametrize("impl", ["cuda", "triton"])
@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph"])
def bench_verify_ours(benchmark, harness, case, impl, graph):
    kind, b, k = case
    if not _backend.available(impl):
        pytest.skip(_backend.backends()[impl]["reason"])
    L = _layer(kind, b, k)
    _prime(L, impl)
    out = torch.empty_like(L["x"])
    harness.measure(benchmark, kernel="verify", impl=f"mamba_kernels:{impl}", shape=_shape(kind, b, k),
                    dtype="bfloat16", fn=_ours(L, impl, out), bytes=L["bytes"], graph=graph,
                    note=f"accept ceil(k/2) per call, ring {L['cache'].ring_len}, fp32 state",
                    extra={"layer": kind}, stat="mean")


@pytest.mark.parametrize("kind", ["mamba2", "mamba1"])
def bench_verify_ref(benchmark, harness, kind):
    L = _layer(kind, 1, 1)
    _prime(L, "ref")
    harness.measure(benchmark, kernel="verify", impl="ref", shape=_shape(kind, 1, 1), dtype="bfloat16",
                    fn=_ours(L, "ref", torch.empty_like(L["x"])), bytes=L["bytes"], extra={"layer": kind},
                    stat="mean")


@pytest.mark.parametrize("case", CASES, ids=_id)
@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph"])
def bench_verify_naive_mamba_ssm(benchmark, harness, case, graph):
    """The naive rollback: k x selective_state_update, snapshotting the state after every token."""
    kind, b, k = case
    ssu = anchors.mamba_ssm_triton().selective_state_update
    L = _layer(kind, b, k)
    state = L["cache"].state
    idx = L["slots"]
    snaps = torch.empty(k, b, *state.shape[1:], device="cuda", dtype=state.dtype)
    a = _ssu_args(L)

    def fn():
        for t in range(k):
            ssu(state, L["x"][:, t], a["dt"][:, t], a["A"], a["B"][:, t], a["C"][:, t], D=a["D"], z=L["z"][:, t],
                dt_bias=a["dt_bias"], dt_softplus=True, state_batch_indices=idx)
            snaps[t].copy_(state[idx])

    harness.measure(benchmark, kernel="verify", impl="mamba_ssm:naive", shape=_shape(kind, b, k), dtype="bfloat16",
                    fn=fn, bytes=L["bytes"], graph=graph,
                    note="k x selective_state_update + per-token snapshot", extra={"layer": kind}, stat="mean")


@pytest.mark.parametrize("kind", ["mamba2", "mamba1"])
@pytest.mark.parametrize("b", [1, 16, 64])
def bench_decode_mamba_ssm(benchmark, harness, b, kind):
    """k = 1 reference point: one mamba_ssm selective_state_update (fp32 state), no rollback (decode_call)."""
    L = _layer(kind, b, 1)
    harness.measure(benchmark, kernel="verify", impl="mamba_ssm:decode", shape=_shape(kind, b, 1),
                    dtype="bfloat16", fn=decode_call(L), bytes=L["bytes"], graph=True, extra={"layer": kind},
                    stat="mean")
