"""Causal depthwise conv1d: every backend against the float64 reference (python_ref/conv1d.py).

CPU runs: the reference's own cross-checks (update over a sequence == full conv, varlen == each sequence alone,
explicit backward == autograd), gradcheck in float64, the C++ cpu backend and Triton under the interpreter at
small shapes, opcheck, bad inputs. GPU runs (@pytest.mark.gpu, and triton on CUDA tensors): the same suites on
CUDA tensors plus long ragged lengths, every dtype, both layouts, misaligned / strided inputs, determinism and
CUDA-graph capture of the decode update. Without a GPU, `python csrc/conv1d/emu/run.py [--asan]` runs this file
with the cuda backend served by a CPU emulation of the unmodified CUDA kernels.
"""
import itertools
import math
import os

import pytest
import torch

import mamba_kernels
from mamba_kernels import _backend, causal_conv1d, causal_conv1d_update
from mamba_kernels.conv1d import interface as conv_if
from mamba_kernels.testing import assert_close
from python_ref.conv1d import causal_conv1d_bwd_ref, causal_conv1d_ref, causal_conv1d_update_ref

HAS_CUDA = torch.cuda.is_available()
F64 = torch.float64
WIDTHS = list(range(2, 9))
LENGTHS = [1, 129, 151, 372, 784, 1134, 4096]
BACKENDS = ["ref", "cpu", "triton", pytest.param("cuda", marks=pytest.mark.gpu)]
LAYOUTS = [False, True]  # channel_last


def _lid(cl):
    return "cl" if cl else "cf"


@pytest.fixture(autouse=True)
def _poison_outputs(monkeypatch):
    """Kernel outputs start NaN-filled, so an element a kernel forgot to write fails the comparison."""
    monkeypatch.setattr(conv_if, "POISON_OUTPUTS", True)


def _device(backend):
    if backend == "cuda" or (backend == "triton" and HAS_CUDA):
        return "cuda"
    return "cpu"


def _skip_unless(backend):
    if not _backend.available(backend):
        pytest.skip(f"{backend}: {mamba_kernels.backends()[backend]['reason']}")
    if backend == "triton" and not HAS_CUDA and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("triton on CPU tensors needs TRITON_INTERPRET=1 (set by conftest.py when there is no GPU)")
    return _device(backend)


def _interpreted(backend):
    return backend == "triton" and not HAS_CUDA


# ------------------------------------------------------------------------------------------------ helpers
def make_case(b, d, lens, w, dtype=torch.float32, device="cpu", channel_last=False, varlen=False, init=False,
              bias=True, seed=0, wdtype=None):
    """Inputs with realistic scales. lens: [l] (b rows of length l) or, varlen, the sequence lengths.
    weight / bias are float32 (float64 with float64 x) unless wdtype says otherwise."""
    wdtype = wdtype or (F64 if dtype == F64 else torch.float32)
    gen = torch.Generator().manual_seed(seed)

    def rn(*shape, scale=1.0):
        return torch.randn(*shape, generator=gen, dtype=F64) * scale

    if varlen:
        cu = torch.tensor([0] + list(itertools.accumulate(lens)), dtype=torch.int32, device=device)
        b, total, nseq = 1, sum(lens), len(lens)
    else:
        cu, total, nseq = None, lens[0], b
    shape = (b, total, d) if channel_last else (b, d, total)
    return dict(
        x=rn(*shape).to(dtype).to(device),
        weight=(rn(d, w) / w ** 0.5).to(wdtype).to(device),
        bias=rn(d, scale=0.5).to(wdtype).to(device) if bias else None,
        initial_states=rn(nseq, d, w - 1).to(dtype).to(device) if init else None,
        cu_seqlens=cu, channel_last=channel_last, nseq=nseq)


def ref_grads(case, activation, dy, dfinal):
    """Reference forward (y, final) and gradients (dx, dweight, dbias, dinit) in float64."""
    c64 = {k: (v.to(F64) if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in case.items()}
    y, final = causal_conv1d_ref(c64["x"], c64["weight"], c64["bias"], c64["initial_states"], True, activation,
                                 c64["cu_seqlens"], c64["channel_last"])
    grads = causal_conv1d_bwd_ref(dy.to(F64), c64["x"], c64["weight"], c64["bias"], c64["initial_states"],
                                  None if dfinal is None else dfinal.to(F64), activation, c64["cu_seqlens"],
                                  c64["channel_last"])
    return y, final, grads


def check_conv(case, backend, activation="silu", want_final=True, grad=True, dfinal=True, factor=1.0, seed=1):
    """Forward (y, final_states) and, through autograd of the public op, all gradients vs the reference."""
    dtype = case["x"].dtype
    leaves = {k: case[k].detach().clone().requires_grad_(grad) for k in ("x", "weight", "bias", "initial_states")
              if case[k] is not None}
    out = causal_conv1d(leaves["x"], leaves["weight"], leaves.get("bias"),
                        initial_states=leaves.get("initial_states"), return_final_states=want_final,
                        activation=activation, cu_seqlens=case["cu_seqlens"], channel_last=case["channel_last"],
                        backend=backend)
    y, final = out if want_final else (out, None)
    assert y.shape == case["x"].shape and y.dtype == dtype
    gen = torch.Generator().manual_seed(seed)
    dy = torch.randn(y.shape, generator=gen, dtype=F64).to(dtype).to(y.device)
    dfin = (torch.randn(final.shape, generator=gen, dtype=F64).to(dtype).to(y.device)
            if want_final and dfinal else None)
    y_ref, final_ref, (dx_r, dw_r, db_r, di_r) = ref_grads(case, activation, dy, dfin)
    assert_close(y, y_ref, dtype, factor=factor, name="y")
    if want_final:
        assert final.shape == final_ref.shape and final.dtype == dtype
        assert_close(final, final_ref, dtype, name="final_states")
    if not grad:
        return
    outs, gos = [y], [dy]
    if dfin is not None:
        outs.append(final)
        gos.append(dfin)
    names = list(leaves)
    grads = dict(zip(names, torch.autograd.grad(outs, [leaves[k] for k in names], gos)))
    refs = dict(x=dx_r, weight=dw_r, bias=db_r, initial_states=di_r)
    for k in names:
        assert grads[k].dtype == leaves[k].dtype and grads[k].shape == leaves[k].shape, k
        # dx / dinitial_states are rounded to x's dtype; dweight / dbias are fp32 sums rounded to their own dtype
        tol_dtype = dtype if k in ("x", "initial_states") else leaves[k].dtype
        assert_close(grads[k], refs[k], tol_dtype, factor=factor, name=f"d{k}")


# ------------------------------------------------------------------------------------------------ reference
class TestReference:
    """The reference's own consistency: these make it trustworthy as the oracle."""

    @pytest.mark.parametrize("w", WIDTHS)
    def test_matches_torch_conv1d(self, w):
        x = torch.randn(2, 5, 33, dtype=F64)
        wt = torch.randn(5, w, dtype=F64)
        b = torch.randn(5, dtype=F64)
        y = causal_conv1d_ref(x, wt, b, activation="silu")
        y_t = torch.nn.functional.silu(torch.nn.functional.conv1d(torch.nn.functional.pad(x, (w - 1, 0)),
                                                                  wt[:, None, :], b, groups=5))
        assert_close(y, y_t, F64)

    @pytest.mark.parametrize("cl", LAYOUTS, ids=_lid)
    @pytest.mark.parametrize("w", [2, 4, 7])
    def test_varlen_equals_each_sequence_alone(self, w, cl):
        lens = [5, 0, 1, 2, 40, 3]
        case = make_case(1, 6, lens, w, F64, channel_last=cl, varlen=True, init=True)
        y, fin = causal_conv1d_ref(case["x"], case["weight"], case["bias"], case["initial_states"], True, "silu",
                                   case["cu_seqlens"], cl)
        s = 0
        for n, ln in enumerate(lens):
            xs = case["x"][:, s:s + ln] if cl else case["x"][:, :, s:s + ln]
            ys, fs = causal_conv1d_ref(xs, case["weight"], case["bias"], case["initial_states"][n:n + 1], True,
                                       "silu", None, cl)
            assert_close(y[:, s:s + ln] if cl else y[:, :, s:s + ln], ys, F64, name=f"y of sequence {n}")
            assert_close(fin[n:n + 1], fs, F64, name=f"final state of sequence {n}")
            s += ln

    @pytest.mark.parametrize("k", [1, 3])
    @pytest.mark.parametrize("w", [2, 4, 8])
    def test_update_over_a_sequence_equals_full_conv(self, w, k):
        b, d, L = 3, 5, 12
        x = torch.randn(b, d, L, dtype=F64)
        wt, bias, init = torch.randn(d, w, dtype=F64), torch.randn(d, dtype=F64), torch.randn(b, d, w - 1, dtype=F64)
        y, fin = causal_conv1d_ref(x, wt, bias, init, True, "silu")
        state = init.clone()
        ys = [causal_conv1d_update_ref(x[:, :, t:t + k], state, wt, bias, "silu") for t in range(0, L, k)]
        assert_close(torch.cat(ys, dim=2), y, F64)
        assert_close(state, fin, F64, name="state")

    @pytest.mark.parametrize("varlen", [False, True])
    @pytest.mark.parametrize("cl", LAYOUTS, ids=_lid)
    def test_explicit_backward_equals_autograd(self, cl, varlen):
        case = make_case(2, 4, [3, 0, 9, 1] if varlen else [11], 4, F64, channel_last=cl, varlen=varlen, init=True)
        leaves = [case[k].clone().requires_grad_() for k in ("x", "weight", "bias", "initial_states")]
        y, fin = causal_conv1d_ref(*leaves[:3], leaves[3], True, "silu", case["cu_seqlens"], cl)
        dy, dfin = torch.randn_like(y), torch.randn_like(fin)
        auto = torch.autograd.grad([y, fin], leaves, [dy, dfin])
        expl = causal_conv1d_bwd_ref(dy, case["x"], case["weight"], case["bias"], case["initial_states"], dfin,
                                     "silu", case["cu_seqlens"], cl)
        for a, e, n in zip(auto, expl, ("dx", "dweight", "dbias", "dinit")):
            assert_close(e, a, F64, name=n)


# ------------------------------------------------------------------------------------------------ backends
@pytest.mark.parametrize("init", [False, True], ids=["nostate", "state"])
@pytest.mark.parametrize("cl", LAYOUTS, ids=_lid)
@pytest.mark.parametrize("w", WIDTHS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_widths(backend, w, cl, init):
    """Every width 2..8 (both kernel buckets, masked and exact), both layouts, with / without states."""
    dev = _skip_unless(backend)
    case = make_case(2, 6, [37], w, device=dev, channel_last=cl, init=init)
    check_conv(case, backend, want_final=init)


@pytest.mark.parametrize("cl", LAYOUTS, ids=_lid)
@pytest.mark.parametrize("l", LENGTHS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_ragged_lengths(backend, l, cl):
    """The lengths of causal-conv1d's test suite; on CPU with 3 channels (Triton interpreted: up to 784)."""
    dev = _skip_unless(backend)
    if _interpreted(backend) and l > 784:
        pytest.skip("long sequences under the Triton interpreter: covered on the GPU")
    d = 3 if dev == "cpu" else 160
    dtype = torch.float32 if dev == "cpu" else torch.bfloat16
    case = make_case(2, d, [l], 4, dtype, device=dev, channel_last=cl, init=True)
    check_conv(case, backend)


VARLEN_LENS = {
    "mixed": [5, 0, 1, 2, 40, 3, 0],
    "long": [300, 1, 1030, 7],          # sequences across CUDA segment / chunk boundaries
    "tiny": [1] * 9 + [2, 0, 0],        # many sequences shorter than the window
}


@pytest.mark.parametrize("init", [False, True], ids=["nostate", "state"])
@pytest.mark.parametrize("lens", list(VARLEN_LENS), ids=list(VARLEN_LENS))
@pytest.mark.parametrize("cl", LAYOUTS, ids=_lid)
@pytest.mark.parametrize("w", [2, 4, 6])
@pytest.mark.parametrize("backend", BACKENDS)
def test_varlen(backend, w, cl, lens, init):
    dev = _skip_unless(backend)
    if _interpreted(backend) and lens == "long":
        pytest.skip("long sequences under the Triton interpreter: covered on the GPU")
    case = make_case(1, 5, VARLEN_LENS[lens], w, device=dev, channel_last=cl, varlen=True, init=init)
    check_conv(case, backend)


DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


@pytest.mark.parametrize("cl", LAYOUTS, ids=_lid)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: str(t)[6:])
@pytest.mark.parametrize("backend", BACKENDS)
def test_dtypes(backend, dtype, cl):
    dev = _skip_unless(backend)
    if dtype == F64 and backend in ("cuda", "triton"):
        pytest.skip("float64 runs on the cpu and ref backends")
    case = make_case(2, 12, [70], 4, dtype, device=dev, channel_last=cl, init=True)
    check_conv(case, backend)


@pytest.mark.parametrize("cl", LAYOUTS, ids=_lid)
@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_sequence(backend, cl):
    """l = 0: y is empty, the final state is the initial state, its gradient flows back unchanged."""
    dev = _skip_unless(backend)
    case = make_case(2, 5, [0], 4, device=dev, channel_last=cl, init=True)
    check_conv(case, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_bias_no_activation_no_final(backend):
    dev = _skip_unless(backend)
    case = make_case(2, 7, [50], 3, device=dev, bias=False)
    check_conv(case, backend, activation=None, want_final=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_final_states_without_their_gradient(backend):
    """return_final_states with only y used: the final-state gradient is zero."""
    dev = _skip_unless(backend)
    case = make_case(2, 7, [20], 4, device=dev, init=True)
    check_conv(case, backend, dfinal=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mixed_parameter_dtypes(backend):
    """bf16 weight / bias with fp32 x, and fp32 weight with bf16 x: gradients come back in each input's dtype."""
    dev = _skip_unless(backend)
    check_conv(make_case(2, 8, [40], 4, torch.float32, device=dev, init=True, wdtype=torch.bfloat16), backend)
    check_conv(make_case(2, 8, [40], 4, torch.bfloat16, device=dev, init=True, wdtype=torch.float32), backend)


@pytest.mark.parametrize("cl", LAYOUTS, ids=_lid)
@pytest.mark.parametrize("wdtype", [torch.float16, torch.bfloat16, torch.float32], ids=["w16", "wbf16", "w32"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_parameter_dtypes_full_width(backend, dtype, wdtype, cl):
    """Every weight / bias dtype with 16-bit x at full width (the CUDA kernels' fast instantiations decode the
    weight dtype at run time): forward and all gradients, aligned rows of several tiles."""
    dev = _skip_unless(backend)
    check_conv(make_case(2, 16, [1040], 4, dtype, device=dev, init=True, wdtype=wdtype, channel_last=cl), backend)


@pytest.mark.parametrize("cl", LAYOUTS, ids=_lid)
@pytest.mark.parametrize("backend", BACKENDS)
def test_strided_and_misaligned_inputs(backend, cl):
    """Non-contiguous x (a slice; base pointer off by one element) and a strided dy take the scalar paths."""
    dev = _skip_unless(backend)
    d, L = 9, 300
    big = torch.randn(2, L, d + 1, device=dev) if cl else torch.randn(2, d, L + 1, device=dev)
    x = (big[:, :, 1:] if cl else big[:, :, 1:]).requires_grad_()
    wt, bias = torch.randn(d, 4, device=dev), torch.randn(d, device=dev)
    y = causal_conv1d(x, wt, bias, activation="silu", channel_last=cl, backend=backend)
    y_ref = causal_conv1d_ref(x.detach().double(), wt.double(), bias.double(), activation="silu", channel_last=cl)
    assert_close(y, y_ref, torch.float32)
    dy = torch.randn(y.shape[0], y.shape[2], y.shape[1], device=dev).transpose(1, 2)  # non-contiguous
    (dx,) = torch.autograd.grad(y, [x], dy)
    dx_ref = causal_conv1d_bwd_ref(dy.double(), x.detach().double(), wt.double(), bias.double(),
                                   activation="silu", channel_last=cl)[0]
    assert_close(dx, dx_ref, torch.float32, name="dx")


@pytest.mark.parametrize("cl", LAYOUTS, ids=_lid)
@pytest.mark.parametrize("w", [4, 7])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=lambda t: str(t)[6:])
@pytest.mark.parametrize("backend", ["ref", "cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_long_rows_16bit(backend, dtype, w, cl):
    """16-bit rows long enough for several CUDA load groups and segments (16-byte vector paths), with a tail."""
    dev = _skip_unless(backend)
    case = make_case(2, 3, [2600], w, dtype, device=dev, channel_last=cl, init=True)
    check_conv(case, backend)


@pytest.mark.parametrize("length", [9, 300, 1100])
@pytest.mark.parametrize("activation", ["silu", None], ids=["silu", "noact"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("w", [4, 8])
@pytest.mark.parametrize("cl", LAYOUTS, ids=_lid)
@pytest.mark.parametrize("backend", BACKENDS)
def test_full_width_aligned(backend, cl, w, dtype, activation, length):
    """The common production case: width == its bucket (4 or 8), 16-byte aligned rows, channels a multiple of 8
    (the CUDA backend's compile-time full-width / fast variants of the forward and backward), with and without
    the activation, lengths with partial load groups and tiles, initial states; forward and every gradient."""
    dev = _skip_unless(backend)
    if _interpreted(backend) and length > 9:
        pytest.skip("long rows are slow under the Triton interpreter (the GPU runs them)")
    case = make_case(2, 64, [length], w, dtype, device=dev, channel_last=cl, init=True)
    check_conv(case, backend, activation=activation)


def _gradcheck_case(cl, varlen):
    case = make_case(2, 3, [2, 0, 5, 1] if varlen else [6], 3, F64, channel_last=cl, varlen=varlen, init=True)
    return case


@pytest.mark.parametrize("varlen", [False, True], ids=["dense", "varlen"])
@pytest.mark.parametrize("cl", LAYOUTS, ids=_lid)
@pytest.mark.parametrize("backend", ["ref", "cpu"])
def test_gradcheck_float64(backend, cl, varlen):
    _skip_unless(backend)
    case = _gradcheck_case(cl, varlen)
    leaves = [case[k].clone().requires_grad_() for k in ("x", "weight", "bias", "initial_states")]

    def fn(x, w, b, s):
        y, fin = causal_conv1d(x, w, b, initial_states=s, return_final_states=True, activation="silu",
                               cu_seqlens=case["cu_seqlens"], channel_last=cl, backend=backend)
        return y, fin

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-8, rtol=1e-6)


# ------------------------------------------------------------------------------------------------ update
@pytest.mark.parametrize("cl", LAYOUTS, ids=_lid)
@pytest.mark.parametrize("slen", ["w-1", "w+2"])
@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("w", [2, 4, 5, 8])
@pytest.mark.parametrize("backend", BACKENDS)
def test_update(backend, w, k, slen, cl):
    """A pool of states addressed by slots with padding rows; x one token (k = 1: (b, d)) or k tokens, given
    channel-first or as a transposed channel-last view."""
    dev = _skip_unless(backend)
    b, d, S = 4, 37, 7
    s = w - 1 if slen == "w-1" else w + 2
    gen = torch.Generator().manual_seed(0)
    xk = torch.randn(b, k, d, generator=gen).to(dev).transpose(1, 2) if cl else torch.randn(b, d, k, generator=gen).to(dev)
    x = xk[:, :, 0] if k == 1 and not cl else xk
    state = torch.randn(S, d, s, generator=gen).to(dev)
    wt, bias = torch.randn(d, w, generator=gen).to(dev), torch.randn(d, generator=gen).to(dev)
    slots = torch.tensor([5, -1, 0, 7], dtype=torch.int32, device=dev)  # 7 == S: out of range = padding
    state_ref = state.double()
    y_ref = causal_conv1d_update_ref(x.double(), state_ref, wt.double(), bias.double(), "silu", slots)
    y = causal_conv1d_update(x, state, wt, bias, slots=slots, activation="silu", backend=backend)
    assert y.shape == x.shape
    assert_close(y, y_ref, torch.float32)
    assert (y[1] == 0).all() and (y[3] == 0).all(), "padding rows are zero"
    assert_close(state, state_ref, torch.float32, name="conv_state")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=lambda t: str(t)[6:])
@pytest.mark.parametrize("backend", BACKENDS)
def test_update_over_a_sequence_equals_full_conv(backend, dtype):
    """Decoding token by token (then 3 at a time) reproduces the full convolution and its final state."""
    dev = _skip_unless(backend)
    case = make_case(2, 24, [13], 4, dtype, device=dev, init=True)
    y_full, fin = causal_conv1d(case["x"], case["weight"], case["bias"], initial_states=case["initial_states"],
                                return_final_states=True, activation="silu", backend=backend)
    for step in (1, 3):
        state = case["initial_states"].clone()
        out = torch.empty_like(case["x"])
        for t in range(0, 13, step):
            xs = case["x"][:, :, t:t + step]
            causal_conv1d_update(xs, state, case["weight"], case["bias"], activation="silu",
                                 out=out[:, :, t:t + step], backend=backend)
        assert_close(out, y_full, dtype, name=f"y (step {step})")
        assert_close(state, fin, dtype, name=f"state (step {step})")


@pytest.mark.parametrize("offset", [0, 1], ids=["aligned", "misaligned"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("slen", [3, 4])
@pytest.mark.parametrize("wdtype", ["same", "fp32"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=lambda t: str(t)[6:])
@pytest.mark.parametrize("backend", BACKENDS)
def test_update_decode_shapes(backend, dtype, wdtype, slen, bias, offset):
    """The decode hot path: one token (b, d), width 4, contiguous 16-byte aligned tensors (the CUDA backend's
    vectorised kernel; offset 1 makes every tensor misaligned, which must take the general kernel), a pool of
    states with padding slots, several rounds."""
    dev = _skip_unless(backend)
    b, d, S = 5, 48, 9
    gen = torch.Generator().manual_seed(1)
    wd = dtype if wdtype == "same" else torch.float32

    def buf(*shape, dt):  # a (possibly misaligned) contiguous view
        return torch.randn(math.prod(shape) + offset, generator=gen).to(dt).to(dev)[offset:].view(*shape)

    state = buf(S, d, slen, dt=dtype)
    wt = (buf(d, 4, dt=wd) * 0.5)
    bt = buf(d, dt=wd) if bias else None
    slots = torch.tensor([4, -1, 0, 8, 9], dtype=torch.int32, device=dev)  # 9 == S: padding
    state_ref = state.double()
    for rnd in range(3):
        x = buf(b, d, dt=dtype)
        out = buf(b, d, dt=dtype).fill_(float("nan"))
        y_ref = causal_conv1d_update_ref(x.double(), state_ref, wt.double(), None if bt is None else bt.double(),
                                         "silu", slots)
        y = causal_conv1d_update(x, state, wt, bt, slots=slots, activation="silu", out=out, backend=backend)
        assert_close(y, y_ref, dtype, name=f"y (round {rnd})")
        assert (y[1] == 0).all() and (y[4] == 0).all(), "padding rows are zero"
        assert_close(state, state_ref, dtype, name=f"conv_state (round {rnd})")


@pytest.mark.parametrize("backend", BACKENDS)
def test_update_out_aliases_x(backend):
    dev = _skip_unless(backend)
    x = torch.randn(3, 10, 4, device=dev)
    state = torch.randn(3, 10, 3, device=dev)
    wt = torch.randn(10, 4, device=dev)
    state_ref = state.double()
    y_ref = causal_conv1d_update_ref(x.double(), state_ref, wt.double())
    y = causal_conv1d_update(x, state, wt, out=x, backend=backend)
    assert y.data_ptr() == x.data_ptr()
    assert_close(x, y_ref, torch.float32)
    assert_close(state, state_ref, torch.float32, name="conv_state")


# ------------------------------------------------------------------------------------------------ custom ops
def _opcheck_cases(dev):
    case = make_case(2, 6, [9], 4, device=dev, init=True)
    x, w, b, s = case["x"], case["weight"], case["bias"], case["initial_states"]
    vcase = make_case(1, 6, [3, 0, 5], 3, device=dev, channel_last=True, varlen=True, init=True)
    return case, (x, w, b, s), vcase


@pytest.mark.parametrize("backend", ["ref", "cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_opcheck(backend):
    dev = _skip_unless(backend)
    case, (x, w, b, s), vc = _opcheck_cases(dev)
    fwd = conv_if.conv1d_fwd
    torch.library.opcheck(fwd, (x.requires_grad_(), w.requires_grad_(), b, s.requires_grad_(), None, "silu",
                                False, True, backend))
    torch.library.opcheck(fwd, (vc["x"], vc["weight"], vc["bias"], vc["initial_states"], vc["cu_seqlens"], None,
                                True, True, backend))
    dy, dfin = torch.randn_like(x), torch.randn_like(s)
    torch.library.opcheck(conv_if.conv1d_bwd, (dy, dfin, x.detach(), w.detach(), b, s.detach(), None, "silu",
                                               False, True, backend))
    xu = torch.randn(3, 6, 2, device=dev)
    state = torch.randn(4, 6, 3, device=dev)
    out = torch.empty_like(xu)
    slots = torch.tensor([3, -1, 0], dtype=torch.int32, device=dev)
    torch.library.opcheck(conv_if.conv1d_update, (xu, state, w.detach(), b, slots, "silu", out, backend))
    if backend in ("cpu", "cuda"):  # the public update calls the C++ op directly (with a registered fake)
        torch.library.opcheck(conv_if._direct_update_op(backend), (xu, state, w.detach(), b, slots, out, True))


@pytest.mark.parametrize("backend", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_torch_compile_fullgraph(backend):
    """Both public ops trace without graph breaks (custom ops with fake kernels; backend resolved at trace time)."""
    dev = _skip_unless(backend)
    case = make_case(2, 8, [20], 4, device=dev, init=True)
    leaves = [case[k].clone().requires_grad_() for k in ("x", "weight", "bias", "initial_states")]

    def f(x, w, b, s):
        y, fin = causal_conv1d(x, w, b, initial_states=s, activation="silu", return_final_states=True,
                               backend=backend)
        return (y * y).sum() + fin.sum()

    cf = torch.compile(f, fullgraph=True, backend="aot_eager")
    g_c = torch.autograd.grad(cf(*leaves), leaves)
    g_e = torch.autograd.grad(f(*leaves), leaves)
    for a, e, n in zip(g_c, g_e, ("dx", "dweight", "dbias", "dinit")):
        assert_close(a, e, torch.float32, name=n)

    def u(x, state, w):
        return causal_conv1d_update(x, state, w, activation="silu", backend=backend) * 2

    x = torch.randn(2, 8, device=dev)
    state = torch.randn(2, 8, 3, device=dev)
    state_e = state.clone()
    y_c = torch.compile(u, fullgraph=True, backend="aot_eager")(x, state, case["weight"])
    y_e = u(x, state_e, case["weight"])
    assert_close(y_c, y_e, torch.float32)
    assert_close(state, state_e, torch.float32, name="conv_state")


# ------------------------------------------------------------------------------------------------ bad input
class TestBadInput:
    def test_width_out_of_range(self):
        for w in (1, 9):
            with pytest.raises(ValueError, match="weight"):
                causal_conv1d(torch.randn(1, 4, 8), torch.randn(4, w))
            with pytest.raises(ValueError, match="weight"):
                causal_conv1d_update(torch.randn(1, 4), torch.randn(1, 4, 8), torch.randn(4, w))

    def test_layout_mismatch(self):
        with pytest.raises(ValueError, match="x"):
            causal_conv1d(torch.randn(1, 8, 4), torch.randn(4, 3), channel_last=False)
        with pytest.raises(ValueError, match="x"):
            causal_conv1d(torch.randn(1, 4, 8), torch.randn(4, 3), channel_last=True)
        with pytest.raises(ValueError, match="x"):
            causal_conv1d(torch.randn(1, 5, 8), torch.randn(4, 3))

    def test_ambiguous_layout(self):
        with pytest.raises(ValueError, match="channel_last"):
            causal_conv1d(torch.randn(1, 4, 4), torch.randn(4, 3))
        causal_conv1d(torch.randn(1, 4, 4), torch.randn(4, 3), channel_last=True)  # explicit: fine

    def test_dtypes(self):
        with pytest.raises(TypeError, match="x"):
            causal_conv1d(torch.randint(0, 3, (1, 4, 8)), torch.randn(4, 3))
        with pytest.raises(TypeError, match="initial_states"):
            causal_conv1d(torch.randn(1, 4, 8), torch.randn(4, 3), initial_states=torch.randn(1, 4, 2, dtype=F64))
        with pytest.raises(TypeError, match="conv_state"):
            causal_conv1d_update(torch.randn(1, 4), torch.randn(1, 4, 2, dtype=F64), torch.randn(4, 3))
        with pytest.raises(TypeError, match="slots"):
            causal_conv1d_update(torch.randn(1, 4), torch.randn(1, 4, 2), torch.randn(4, 3), slots=torch.zeros(1))

    @pytest.mark.skipif(not _backend.available("triton") or HAS_CUDA, reason="needs triton interpreted on CPU")
    def test_float64_on_triton(self):
        with pytest.raises(TypeError, match="x"):
            causal_conv1d(torch.randn(1, 4, 8, dtype=F64), torch.randn(4, 3, dtype=F64), backend="triton")

    def test_shapes(self):
        x, w = torch.randn(2, 4, 8), torch.randn(4, 3)
        with pytest.raises(ValueError, match="bias"):
            causal_conv1d(x, w, torch.randn(5))
        with pytest.raises(ValueError, match="initial_states"):
            causal_conv1d(x, w, initial_states=torch.randn(2, 4, 3))
        with pytest.raises(ValueError, match="x"):
            causal_conv1d(torch.randn(4, 8), w)
        with pytest.raises(ValueError, match="conv_state"):
            causal_conv1d_update(torch.randn(2, 4), torch.randn(2, 4, 1), w)
        with pytest.raises(ValueError, match="conv_state"):
            causal_conv1d_update(torch.randn(2, 4), torch.randn(3, 4, 2), w)  # no slots: one state per row
        with pytest.raises(ValueError, match="slots"):
            causal_conv1d_update(torch.randn(2, 4), torch.randn(3, 4, 2), w, slots=torch.zeros(3, dtype=torch.int32))
        with pytest.raises(ValueError, match="out"):
            causal_conv1d_update(torch.randn(2, 4), torch.randn(2, 4, 2), w, out=torch.empty(2, 5))

    def test_varlen_arguments(self):
        w = torch.randn(4, 3)
        with pytest.raises(ValueError, match="x"):
            causal_conv1d(torch.randn(2, 4, 8), w, cu_seqlens=torch.tensor([0, 8], dtype=torch.int32))
        with pytest.raises(ValueError, match="cu_seqlens"):
            causal_conv1d(torch.randn(1, 4, 8), w, cu_seqlens=torch.tensor([0, 3, 7], dtype=torch.int32))
        with pytest.raises(ValueError, match="cu_seqlens"):
            causal_conv1d(torch.randn(1, 4, 8), w, cu_seqlens=torch.tensor([0, 5, 3, 8], dtype=torch.int32))
        with pytest.raises(TypeError, match="cu_seqlens"):
            causal_conv1d(torch.randn(1, 4, 8), w, cu_seqlens=torch.tensor([0.0, 8.0]))
        with pytest.raises(ValueError, match="initial_states"):  # per sequence, not per batch row
            causal_conv1d(torch.randn(1, 4, 8), w, cu_seqlens=torch.tensor([0, 3, 8], dtype=torch.int32),
                          initial_states=torch.randn(1, 4, 2))

    def test_activation_and_backend(self):
        x, w = torch.randn(1, 4, 8), torch.randn(4, 3)
        with pytest.raises(ValueError, match="activation"):
            causal_conv1d(x, w, activation="relu")
        with pytest.raises(ValueError, match="activation"):
            causal_conv1d_update(torch.randn(1, 4), torch.randn(1, 4, 2), w, activation="gelu")
        with pytest.raises(ValueError, match="backend"):
            causal_conv1d(x, w, backend="nope")
