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


def _rand(seed, dev, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return lambda *s: torch.randn(*s, generator=g).to(device=dev, dtype=dtype)


def _ssd_call(dev, backend):  # the GPU case: bf16 activations, chunk 64 (the Triton / CUDA stages' shapes)
    act = torch.bfloat16 if dev == "cuda" else torch.float32
    r, ra = _rand(1, dev), _rand(11, dev, act)
    b, l, h, p, n, Q = (1, 12, 2, 4, 8, 4) if dev == "cpu" else (2, 200, 4, 64, 64, 64)
    args = (ra(b, l, h, p), ra(b, l, h), -r(h).abs(), ra(b, l, 1, n), ra(b, l, 1, n))
    D, z = r(h), ra(b, l, h, p)
    return lambda: mamba_kernels.ssd_chunked_scan(*args, Q, D=D, z=z, dt_softplus=True, return_final_states=True,
                                                  backend=backend), args


def _ss_call(dev, backend):
    r = _rand(2, dev)
    b, d, l, n = 1, 4, 10, 8
    args = (r(b, d, l), r(b, d, l).abs(), -r(d, n).abs(), r(b, 1, n, l), r(b, 1, n, l))
    D = r(d)
    return lambda: mamba_kernels.selective_scan(*args, D=D, delta_softplus=True, return_last_state=True,
                                                backend=backend), args


def _conv_call(dev, backend):
    r = _rand(3, dev)
    args = (r(2, 6, 9), r(6, 4), r(6))
    return lambda: mamba_kernels.causal_conv1d(*args, activation="silu", return_final_states=True,
                                               backend=backend), args


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


# (device, backend): the reference and the C++ backend on the CPU; on a GPU the Triton backend (the default there) and
# cuda
PATHS = [("cpu", "ref"), ("cpu", "cpu"), pytest.param("cuda", "triton", marks=pytest.mark.gpu),
         pytest.param("cuda", "cuda", marks=pytest.mark.gpu)]


def _prepare(family, dev, backend, monkeypatch):
    """(call, its tensor arguments, the direct path's call log, the op's name) for one family on one path."""
    if not _backend.available(backend):
        pytest.skip(f"backend {backend} unavailable: {_backend.backends()[backend]['reason']}")
    make, module, impl_name, op_name = FAMILIES[family]
    call, args = make(dev, backend)
    return call, args, _counting(monkeypatch, module, impl_name), op_name


@pytest.mark.parametrize("dev,backend", PATHS)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_direct_path_equals_op_path(family, dev, backend, monkeypatch):
    call, _, calls, op_name = _prepare(family, dev, backend, monkeypatch)
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


@pytest.mark.parametrize("dev,backend", PATHS)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_grad_goes_through_the_op(family, dev, backend, monkeypatch):
    call, args, calls, _ = _prepare(family, dev, backend, monkeypatch)
    with torch.no_grad():
        expected = call()
    assert len(calls) == 1
    args[0].requires_grad_(True)
    got = call()
    assert len(calls) == 1, "a call that needs autograd took the direct path"
    assert got[0].requires_grad and torch.equal(got[0].detach(), expected[0])
    got[0].sum().backward()
    assert args[0].grad is not None and torch.isfinite(args[0].grad).all() and args[0].grad.abs().sum() > 0
