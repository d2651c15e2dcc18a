"""GPU-only tests of the causal conv1d (pytest -m gpu on a CUDA machine): bench-like and long varlen shapes,
the CUDA kernels' widths / dtypes, a deterministic backward, the decode update in a CUDA graph. The backend tests that
also run on CUDA, and the helpers: tests/test_conv1d.py."""
import pytest
import torch

from mamba_kernels import causal_conv1d, causal_conv1d_update
from mamba_kernels.testing import assert_close
from python_ref.conv1d import causal_conv1d_update_ref
from test_conv1d import (  # noqa: F401 - _poison_outputs is an autouse fixture, imported to apply here
    LAYOUTS, WIDTHS, _lid, _poison_outputs, _skip_unless, check_conv, make_case)


# ------------------------------------------------------------------------------------------------ GPU only
@pytest.mark.gpu
@pytest.mark.parametrize("cl", LAYOUTS, ids=_lid)
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_bench_like_shape(backend, cl):
    """A slice of the benchmark shape (bf16, w 4, silu): full 16-byte vector paths, many segments / tiles."""
    _skip_unless(backend)
    case = make_case(2, 1536, [4096], 4, torch.bfloat16, device="cuda", channel_last=cl, init=True)
    check_conv(case, backend)


@pytest.mark.gpu
@pytest.mark.parametrize("cl", LAYOUTS, ids=_lid)
@pytest.mark.parametrize("w", WIDTHS)
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_varlen_long(backend, w, cl):
    _skip_unless(backend)
    lens = [1, 129, 0, 151, 372, 784, 1134, 4096, 2, 3]
    case = make_case(1, 72, lens, w, torch.bfloat16, device="cuda", channel_last=cl, varlen=True, init=True)
    check_conv(case, backend)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=lambda t: str(t)[6:])
@pytest.mark.parametrize("cl", LAYOUTS, ids=_lid)
def test_gpu_cuda_widths_dtypes_odd_channels(dtype, cl):
    """Channel counts that leave partial vectors / partial lanes, every width, every dtype."""
    _skip_unless("cuda")
    for w in WIDTHS:
        case = make_case(3, 77, [1029], w, dtype, device="cuda", channel_last=cl, init=True)
        check_conv(case, "cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("cl", LAYOUTS, ids=_lid)
def test_gpu_backward_is_deterministic(cl):
    _skip_unless("cuda")
    case = make_case(2, 512, [3000], 4, torch.bfloat16, device="cuda", channel_last=cl, init=True)
    x, w, b = (case[k].clone().requires_grad_() for k in ("x", "weight", "bias"))
    y = causal_conv1d(x, w, b, activation="silu", channel_last=cl, backend="cuda")
    dy = torch.randn_like(y)
    g1 = torch.autograd.grad(y, [x, w, b], dy, retain_graph=True)
    g2 = torch.autograd.grad(y, [x, w, b], dy)
    for a, c in zip(g1, g2):
        assert torch.equal(a, c)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_update_cuda_graph(backend):
    """The decode step captured in a CUDA graph: replays read the new x and advance the pool."""
    _skip_unless(backend)
    b, d, S, w = 4, 6144, 8, 4
    x = torch.randn(b, d, device="cuda", dtype=torch.bfloat16)
    state = torch.randn(S, d, w - 1, device="cuda", dtype=torch.bfloat16)
    wt = torch.randn(d, w, device="cuda", dtype=torch.bfloat16)
    bias = torch.randn(d, device="cuda", dtype=torch.bfloat16)
    slots = torch.tensor([3, 0, -1, 6], dtype=torch.int32, device="cuda")
    out = torch.empty_like(x)
    fn = lambda: causal_conv1d_update(x, state, wt, bias, slots=slots, activation="silu", out=out,  # noqa: E731
                                      backend=backend)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()  # warm-up (compiles Triton), then restore the pool
    torch.cuda.current_stream().wait_stream(s)
    state.copy_(torch.randn_like(state))
    g = torch.cuda.CUDAGraph()
    state0 = state.clone()
    with torch.cuda.graph(g):
        fn()
    state.copy_(state0)
    ref_state = state0.double()
    for _ in range(3):
        x.copy_(torch.randn_like(x))
        y_ref = causal_conv1d_update_ref(x.double(), ref_state, wt.double(), bias.double(), "silu", slots)
        g.replay()
        torch.cuda.synchronize()
        assert_close(out, y_ref, torch.bfloat16)
        assert_close(state, ref_state, torch.bfloat16, name="conv_state")
