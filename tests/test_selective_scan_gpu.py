"""GPU tests of the Mamba-1 selective scan's backward kernels (pytest -m gpu on a CUDA machine): cuda
(csrc/selective_scan/selective_scan_bwd_kernel.cuh) and its Triton twin against autograd of the float64 reference,
every gradient and dtype. Helpers and the CPU tests: tests/test_selective_scan.py."""
import functools
import os

import pytest
import torch

from mamba_kernels.selective_scan import interface as ss_interface
from mamba_kernels.selective_scan import selective_scan
from mamba_kernels.selective_scan.interface import selective_scan_bwd, selective_scan_fwd
from mamba_kernels.testing import assert_close
from python_ref.selective_scan import selective_scan_ref
from test_selective_scan import (  # noqa: F401 - _poison_outputs is an autouse fixture, imported to apply here
    F64, GPU_CASES, _case_id, _check_fwd, _check_grads, _check_varlen, _grad_inputs, _no_ref_autograd,
    _poison_outputs, _skip_unless, make_inputs, ref64, run, to64)


# ------------------------------------------------------------------------------------------------------
# Forward on the GPU, both backends, every dtype

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("case", GPU_CASES, ids=_case_id)
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_forward(backend, case, dtype):
    _skip_unless(backend, "cuda")
    # fp32: ex2.approx and fp32 accumulation over thousands of steps: factor 5 (still ~1e-4 relative RMS).
    _check_fwd(case, backend, "cuda", dtype, factor=5 if dtype == torch.float32 else 1)


# b * d >= 8192: the CUDA state-lane forward with 4 states a lane (GPU_CASES take 2 states a lane), warp-specialised;
# with MK_SS_LANE_SPEC=0 in the environment, unspecialised (scripts/gpu_final.sh runs both).
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("case", [(2, 4096, 131, 16, 1, True, True, True, True),
                                  (1, 8192, 64, 16, 4, True, True, True, False)], ids=_case_id)
def test_gpu_forward_lane_s4_cuda(case, dtype):
    _skip_unless("cuda", "cuda")
    _check_fwd(case, "cuda", "cuda", dtype, factor=5 if dtype == torch.float32 else 1)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_forward_no_softplus_no_bias(backend, dtype):
    _skip_unless(backend, "cuda")
    _check_fwd((2, 70, 515, 16, 7, True, True, True, True), backend, "cuda", dtype,
               factor=5 if dtype == torch.float32 else 1, softplus=False)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_strided_inputs(backend):
    """Mamba's layout: u and z are halves of one xz (b, 2d, l) tensor, B/C slices of x_dbl (b, l, r + 2n)."""
    _skip_unless(backend, "cuda")
    b, d, l, n = 2, 80, 333, 16
    xz = torch.randn(b, 2 * d, l, device="cuda", dtype=torch.bfloat16)
    x_dbl = torch.randn(b, l, 8 + 2 * n, device="cuda", dtype=torch.bfloat16)
    delta = torch.randn(b, d, l + 7, device="cuda", dtype=torch.bfloat16)[..., :l]
    t = dict(u=xz[:, :d], z=xz[:, d:], delta=delta, A=-(torch.rand(d, n, device="cuda") * 4 + 0.25),
             B=x_dbl[..., 8:8 + n].transpose(1, 2)[:, None], C=x_dbl[..., 8 + n:].transpose(1, 2)[:, None],
             D=torch.randn(d, device="cuda"), delta_bias=torch.randn(d, device="cuda") * 0.5 - 1,
             initial_state=torch.randn(b, d, n, device="cuda"))
    out, last = run(t, backend)
    ro, rl = ref64(t)
    assert_close(out, ro, torch.bfloat16, name="out")
    assert_close(last, rl, torch.float32, factor=4, name="last_state")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_varlen(backend, dtype):
    _skip_unless(backend, "cuda")
    f = 5 if dtype == torch.float32 else 1
    _check_varlen(backend, "cuda", dtype, [0, 1000, 1000, 1001, 3001, 4097], d=40, n=16, g=4, factor=f)
    _check_varlen(backend, "cuda", dtype, [0, 3, 130, 131], d=33, n=64, g=3, factor=f)
    _check_varlen(backend, "cuda", dtype, [0, 50, 300], d=20, n=256, g=1, factor=f)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_backward(backend):
    """Gradients of every input on the GPU backends (their backward kernels; more in test_gpu_backward_kernel*)."""
    _skip_unless(backend, "cuda")
    t = make_inputs(2, 24, 300, 16, g=2, init=True, dtype=torch.bfloat16, device="cuda")
    _check_grads(t, backend, torch.bfloat16, factor=2)
    tv = make_inputs(1, 12, 200, 8, g=3, init=True, dtype=torch.float32, device="cuda",
                     cu_seqlens=[0, 60, 60, 200])
    _check_grads(tv, backend, torch.float32, factor=4)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_opcheck(backend):
    _skip_unless(backend, "cuda")
    t = make_inputs(2, 40, 70, 16, g=2, init=True, device="cuda", dtype=torch.bfloat16)
    args = [t["u"], t["delta"], t["A"], t["B"], t["C"], t["D"], t["z"], t["delta_bias"], t["initial_state"], None,
            True, backend]
    torch.library.opcheck(selective_scan_fwd, args)
    leaves = [a.detach().clone().requires_grad_(True) if isinstance(a, torch.Tensor) else a for a in args]
    torch.library.opcheck(selective_scan_fwd, leaves, test_utils=("test_schema", "test_autograd_registration",
                                                                  "test_faketensor"))
    torch.library.opcheck(selective_scan_fwd, (*args, True))  # saving states for the backward
    _, _, states = selective_scan_fwd(*args, True)
    # cuda: one state per 32 steps here (the state-lane backward; 256 elsewhere); triton: per 32
    n_ck = -(-70 // ss_interface._saved_chunk(backend, t["A"], t["B"], t["C"]))
    # (MK_SS_BWD_KERNEL=scan in the environment forces the time-parallel backward: 256 for cuda)
    want = 256 if backend == "cuda" and os.environ.get("MK_SS_BWD_KERNEL") == "scan" else 32
    assert ss_interface._saved_chunk(backend, t["A"], t["B"], t["C"]) == want
    assert states.shape == (2, 40, n_ck, 16) and states.dtype == torch.float32
    dout, dlast = torch.randn_like(t["u"]), torch.randn(2, 40, 16, device="cuda")
    torch.library.opcheck(selective_scan_bwd, (*args[:11], dout, dlast, backend, states))
    # Without saved states the backward op reruns the forward: same gradients.
    with_states = selective_scan_bwd(*args[:11], dout, dlast, backend, states)
    without = selective_scan_bwd(*args[:11], dout, dlast, backend, None)
    for a, b_, name in zip(with_states, without, ["du", "ddelta", "dA", "dB", "dC", "dD", "dz", "dbias", "dh0"]):
        assert_close(a, b_, a.dtype, name=name)


# ------------------------------------------------------------------------------------------------------
# Backward kernels on the GPU, cuda (csrc/selective_scan/selective_scan_bwd_kernel.cuh) and its Triton twin
# (triton.py): every gradient, including through last_state, against autograd of the float64 reference.
# (b, d, l, n, g, var_B, var_C, z, init)
CUDA_BWD_CASES = [
    (2, 48, 1, 16, 3, True, True, True, True),          # l = 1: one step, one partial run / tile
    (2, 33, 127, 1, 1, True, True, False, True),        # n = 1, d = 33 (idle warps in the last block)
    (2, 40, 127, 4, 2, False, True, True, False),       # n = 4, constant B (per-tile dB sums), variable C
    (1, 80, 2049, 16, 5, True, True, True, True),       # g = d/16, l = 2049 (cuda: 8 tiles of 256 + 1 step)
    (2, 48, 4097, 16, 1, True, True, True, False),      # l = 4097, g = 1
    (1, 200, 700, 16, 1, True, True, True, True),       # many blocks per group, the last one partial (atomics)
    (1, 48, 300, 8, 3, True, True, True, True),         # n = 8
    (1, 40, 257, 32, 2, True, True, True, False),       # n = 32 (several state slices per tile)
    (1, 40, 2049, 64, 2, True, True, True, True),       # n = 64
    (1, 32, 4097, 64, 2, True, False, True, True),      # n = 64, l = 4097, variable B only
    (1, 24, 257, 128, 1, False, True, False, True),     # n = 128
    (1, 20, 300, 256, 2, True, True, True, True),       # n = 256 (cuda backward: 156 KB of shared memory)
    (2, 36, 515, 16, 1, False, False, True, True),      # constant B and C
    (1, 288, 127, 4, 18, True, True, True, True),       # n = 4 with g = d/16 = 18 groups
    (2, 4100, 200, 16, 2, True, True, True, True),      # b d >= 8192: the 4-states-a-lane forward saves every 32
]
# fp32: ex2.approx in the exps and fp32 sums over thousands of steps (dA, dD, ...): factor 8 (as the fp32
# forward's 5, plus the sums over l). bf16 / fp16: the kernel sees dout rounded, the reference does not: 2.
CUDA_GRAD_FACTOR = {torch.float32: 8, torch.float16: 2, torch.bfloat16: 2}


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("case", CUDA_BWD_CASES, ids=_case_id)
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_backward_kernel(backend, case, dtype, monkeypatch):
    _skip_unless(backend, "cuda")
    b, d, l, n, g, vb, vc, hz, init = case
    if dtype == torch.float16 and l > 2049:
        pytest.skip("fp16 runs the shorter cases (fp32 and bf16 run every length)")
    _no_ref_autograd(monkeypatch)
    t = make_inputs(b, d, l, n, g, vb, vc, hz, init=init, dtype=dtype, device="cuda")
    _check_grads(t, backend, dtype, factor=CUDA_GRAD_FACTOR[dtype])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("case", [(2, 70, 515, 16, 7, True, True, True, True),
                                  (1, 24, 300, 64, 1, False, True, False, False)], ids=_case_id)
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_backward_kernel_no_softplus_no_bias(backend, case, dtype, monkeypatch):
    _skip_unless(backend, "cuda")
    _no_ref_autograd(monkeypatch)
    b, d, l, n, g, vb, vc, hz, init = case
    t = make_inputs(b, d, l, n, g, vb, vc, hz, init=init, dtype=dtype, device="cuda", has_bias=False)
    t["delta"] = torch.nn.functional.softplus(t["delta"].float()).to(dtype)  # positive steps
    _check_grads(t, backend, dtype, factor=CUDA_GRAD_FACTOR[dtype], softplus=False)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("cu,d,n,g", [
    ([0, 1000, 1000, 1001, 3001, 4097], 40, 16, 4),   # empty and 1-token sequences, chunk-crossing starts
    ([0, 32, 64, 65, 129, 130], 17, 4, 1),              # starts on and just after run / chunk boundaries
    ([0, 3, 130, 131], 33, 64, 3),
    ([0, 50, 300], 20, 256, 1),
    ([0, 0, 0], 24, 16, 2),                             # every sequence empty
    ([0, 100, 101, 333], 8200, 16, 2),                  # d >= 8192: the 4-states-a-lane forward, packed
    ([sum(q % 5 for q in range(i)) for i in range(301)], 40, 16, 2),  # 300 sequences: more than a block's threads
], ids=["5seq-n16", "chunk-edges-n4", "3seq-n64", "2seq-n256", "all-empty", "3seq-n16-d8200", "300seq-n16"])
def test_gpu_backward_kernel_varlen(cu, d, n, g, backend, dtype, monkeypatch):
    _skip_unless(backend, "cuda")
    _no_ref_autograd(monkeypatch)
    t = make_inputs(1, d, cu[-1], n, g, init=True, dtype=dtype, device="cuda", cu_seqlens=cu)
    _check_grads(t, backend, dtype, factor=CUDA_GRAD_FACTOR[dtype])


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_backward_kernel_one_output_only(backend, monkeypatch):
    """Gradient through out only (no last-state gradient), and through last_state only (no output gradient)."""
    _skip_unless(backend, "cuda")
    _no_ref_autograd(monkeypatch)
    t = make_inputs(2, 40, 333, 16, 2, init=True, dtype=torch.float32, device="cuda")
    names = _grad_inputs(t)
    t64 = to64(t)
    for use_out, use_last in ((True, False), (False, True)):
        leaves = {k: (v.detach().clone().requires_grad_(True) if k in names else v) for k, v in t.items()}
        l64 = {k: (v.detach().clone().requires_grad_(True) if k in names else v) for k, v in t64.items()}
        losses = []
        for lv in (leaves, l64):
            scan = selective_scan if lv is leaves else selective_scan_ref  # the reference by plain autograd
            kw = dict(backend=backend) if lv is leaves else {}
            out, last = scan(lv["u"], lv["delta"], lv["A"], lv["B"], lv["C"], lv["D"], lv["z"], lv["delta_bias"],
                             delta_softplus=True, initial_state=lv["initial_state"], return_last_state=True, **kw)
            gen = torch.Generator(device="cuda").manual_seed(3)
            w_out = torch.randn(out.shape, generator=gen, device="cuda", dtype=F64)
            w_last = torch.randn(last.shape, generator=gen, device="cuda", dtype=F64)
            loss = (out.double() * w_out).sum() if use_out else (last.double() * w_last).sum()
            # last_state alone does not depend on C, D, z: their gradients are zero (kernel) / unused (reference)
            losses.append(torch.autograd.grad(loss, [lv[k] for k in names], allow_unused=True,
                                              materialize_grads=True))
        for k, gr, rg in zip(names, *losses):
            assert_close(gr, rg, torch.float32, factor=8, name=f"d{k} (out: {use_out}, last: {use_last})")


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_backward_kernel_zero_length(backend, monkeypatch):
    """l = 0: dinitial_state = dlast_state, every other gradient zero (empty for u, delta, z, B, C)."""
    _skip_unless(backend, "cuda")
    _no_ref_autograd(monkeypatch)
    t = make_inputs(2, 24, 0, 16, 2, init=True, device="cuda")
    _check_grads(t, backend, torch.float32)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_backward_kernel_strided_inputs(backend, dtype, monkeypatch):
    """Mamba's layout, gradients reaching the strided leaves: u and z halves of one xz (b, 2d, l) tensor, B/C
    slices of x_dbl (b, l, r + 2n), delta a slice of a longer buffer."""
    _skip_unless(backend, "cuda")
    _no_ref_autograd(monkeypatch)
    b, d, l, n = 2, 80, 333, 16
    gen = torch.Generator(device="cuda").manual_seed(5)
    base = dict(xz=torch.randn(b, 2 * d, l, device="cuda", generator=gen),
                x_dbl=torch.randn(b, l, 8 + 2 * n, device="cuda", generator=gen),
                delta=torch.randn(b, d, l + 7, device="cuda", generator=gen) * 0.5 - 1,
                A=-(torch.rand(d, n, device="cuda", generator=gen) * 4 + 0.25),
                D=torch.randn(d, device="cuda", generator=gen),
                delta_bias=torch.randn(d, device="cuda", generator=gen) * 0.5 - 1,
                initial_state=torch.randn(b, d, n, device="cuda", generator=gen))
    base.update({k: base[k].to(dtype) for k in ("xz", "x_dbl", "delta")})
    gout = torch.randn(b, d, l, device="cuda", generator=gen, dtype=F64)
    glast = torch.randn(b, d, n, device="cuda", generator=gen, dtype=F64)
    grads = []
    for scan, cast in ((functools.partial(selective_scan, backend=backend), lambda v: v),
                       (selective_scan_ref, lambda v: v.double())):  # the reference by plain autograd
        lv = {k: cast(v).detach().requires_grad_(True) for k, v in base.items()}
        xz, x_dbl = lv["xz"], lv["x_dbl"]
        out, last = scan(xz[:, :d], lv["delta"][..., :l], lv["A"], x_dbl[..., 8:8 + n].transpose(1, 2)[:, None],
                         x_dbl[..., 8 + n:].transpose(1, 2)[:, None], lv["D"], xz[:, d:], lv["delta_bias"],
                         delta_softplus=True, initial_state=lv["initial_state"], return_last_state=True)
        grads.append(torch.autograd.grad([out, last], list(lv.values()),
                                         [gout.to(out.dtype), glast.to(last.dtype)]))
    for k, gk, gr in zip(base, *grads):
        assert gk.shape == base[k].shape and gk.dtype == base[k].dtype, k
        assert_close(gk, gr, dtype, factor=CUDA_GRAD_FACTOR[dtype], name=f"d{k}")


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_forward_unchanged_by_saving_states(backend):
    """Saving states for the backward must not change the forward's results."""
    _skip_unless(backend, "cuda")
    for n, l in ((16, 1000), (64, 300), (256, 100)):
        t = make_inputs(2, 40, l, n, 4, init=True, dtype=torch.bfloat16, device="cuda")
        out0, last0 = run(t, backend)
        t["u"] = t["u"].detach().requires_grad_(True)
        out1, last1 = run(t, backend)
        assert torch.equal(out0, out1) and torch.equal(last0, last1), f"n={n}"
