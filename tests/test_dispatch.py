"""The eager path past torch.library's dispatcher (_backend.direct_call_ok): which calls take it, that they give the
custom op's results bit for bit, and that every call with something for the dispatcher to do still goes through
the op (dispatch / function modes see it, autograd records it)."""
from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import mamba_kernels
from mamba_kernels import _backend
from mamba_kernels.conv1d import interface as conv_if
from mamba_kernels.selective_scan import interface as ss_if
from mamba_kernels.ssd import interface as ssd_if


class _OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


class _PassFunctions(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def test_direct_call_ok_conditions():
    t, leaf = torch.randn(3), torch.randn(3, requires_grad=True)
    assert _backend.direct_call_ok(t, None)
    assert not _backend.direct_call_ok(t, leaf)
    with torch.no_grad():
        assert _backend.direct_call_ok(t, leaf)
    with torch.inference_mode():
        assert _backend.direct_call_ok(t)
    assert not _backend.direct_call_ok(torch.nn.Parameter(torch.randn(3), requires_grad=False))
    with _OpLog():
        assert not _backend.direct_call_ok(t)
    with _PassFunctions():
        assert not _backend.direct_call_ok(t)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]):
        assert not _backend.direct_call_ok(t)
    seen = []
    torch.func.vmap(lambda v: seen.append(_backend.direct_call_ok(v)) or v)(torch.randn(2, 3))
    assert seen == [False]
    assert _backend.direct_call_ok(t)  # nothing left behind


def _ssd_call():
    g = torch.Generator().manual_seed(1)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    b, l, h, p, n = 1, 12, 2, 4, 8
    args = (r(b, l, h, p), r(b, l, h), -torch.rand(h, generator=g), r(b, l, 1, n), r(b, l, 1, n))
    D, z = r(h), r(b, l, h, p)
    return lambda: mamba_kernels.ssd_chunked_scan(*args, 4, D=D, z=z, dt_softplus=True, return_final_states=True,
                                                  backend="ref"), args


def _ss_call():
    g = torch.Generator().manual_seed(2)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    b, d, l, n = 1, 4, 10, 8
    args = (r(b, d, l), r(b, d, l).abs(), -torch.rand(d, n, generator=g), r(b, 1, n, l), r(b, 1, n, l))
    D = r(d)
    return lambda: mamba_kernels.selective_scan(*args, D=D, delta_softplus=True, return_last_state=True,
                                                backend="ref"), args


def _conv_call():
    g = torch.Generator().manual_seed(3)
    args = (torch.randn(2, 6, 9, generator=g), torch.randn(6, 4, generator=g), torch.randn(6, generator=g))
    return lambda: mamba_kernels.causal_conv1d(*args, activation="silu", return_final_states=True,
                                               backend="ref"), args


FAMILIES = {
    "ssd": (_ssd_call, ssd_if, "_ssd_chunked_fwd_impl", "mamba_kernels.ssd_chunked_fwd"),
    "selective_scan": (_ss_call, ss_if, "_selective_scan_fwd_impl", "mamba_kernels.selective_scan_fwd"),
    "conv1d": (_conv_call, conv_if, "_conv1d_fwd_impl", "mamba_kernels.conv1d_fwd"),
}


def _counting(monkeypatch, module, name):
    impl, calls = getattr(module, name), []

    def counted(*a, **k):
        calls.append(1)
        return impl(*a, **k)
    monkeypatch.setattr(module, name, counted)  # the op keeps the original: only the direct path counts
    return calls


@pytest.mark.parametrize("family", list(FAMILIES))
def test_direct_path_equals_op_path(family, monkeypatch):
    make, module, impl_name, op_name = FAMILIES[family]
    call, _ = make()
    calls = _counting(monkeypatch, module, impl_name)
    direct = call()
    assert len(calls) == 1, "a plain eager call without grad did not take the direct path"
    log = _OpLog()
    with log:
        via_op = call()
    assert len(calls) == 1 and any(op_name in n for n in log.names), "the dispatch mode did not see the op"
    with _PassFunctions():
        via_fn_mode = call()
    assert len(calls) == 1
    for a, b, c in zip(direct, via_op, via_fn_mode):
        assert torch.isfinite(a).all() and torch.equal(a, b) and torch.equal(a, c)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_grad_goes_through_the_op(family, monkeypatch):
    make, module, impl_name, _ = FAMILIES[family]
    call, args = make()
    calls = _counting(monkeypatch, module, impl_name)
    with torch.no_grad():
        expected = call()
    assert len(calls) == 1
    args[0].requires_grad_(True)
    got = call()
    assert len(calls) == 1, "a call that needs autograd took the direct path"
    assert got[0].requires_grad and torch.equal(got[0].detach(), expected[0])
    got[0].sum().backward()
    assert args[0].grad is not None and torch.isfinite(args[0].grad).all() and args[0].grad.abs().sum() > 0
