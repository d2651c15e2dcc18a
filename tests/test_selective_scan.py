"""Mamba-1 selective scan: every backend against the float64 reference (python_ref/selective_scan.py).

CPU runs: the reference's own cross-checks, the C++ cpu backend (fwd + bwd), Triton under the interpreter
(tiny shapes). GPU runs (@pytest.mark.gpu): cuda and triton on CUDA tensors, long and awkward shapes, every dtype;
most of them in tests/test_selective_scan_gpu.py (GPU_CASES and the helpers are here).
"""
import os

import pytest
import torch

import mamba_kernels
from mamba_kernels import _backend
from mamba_kernels.selective_scan import selective_scan
from mamba_kernels.selective_scan.interface import selective_scan_bwd, selective_scan_fwd
from mamba_kernels.testing import assert_close
from python_ref.selective_scan import selective_scan_ref

from mamba_kernels.selective_scan import interface as ss_interface

HAS_CUDA = torch.cuda.is_available()
F64 = torch.float64
LOW = (torch.float16, torch.bfloat16)


@pytest.fixture(autouse=True)
def _poison_outputs(monkeypatch):
    """Kernel outputs start NaN-filled, so an unwritten element fails instead of passing on stale memory."""
    monkeypatch.setattr(ss_interface, "POISON_OUTPUTS", True)


def _skip_unless(backend, device):
    if not _backend.available(backend):
        pytest.skip(f"{backend}: {mamba_kernels.backends()[backend]['reason']}")
    if device == "cuda" and not HAS_CUDA:
        pytest.skip("needs a CUDA device")
    if backend == "cpu" and device != "cpu":
        pytest.skip("cpu backend takes CPU tensors")
    if backend == "cuda" and device != "cuda":
        pytest.skip("cuda backend takes CUDA tensors")
    if backend == "triton" and device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("triton on CPU tensors needs TRITON_INTERPRET=1 (set by conftest.py when there is no GPU)")


def make_inputs(b, d, l, n, g=1, var_B=True, var_C=True, has_z=True, has_D=True, has_bias=True, init=False,
                dtype=torch.float32, device="cpu", cu_seqlens=None, seed=0):
    """Realistic scales: delta = softplus(raw + bias) ~ 0.01..1, A < 0 of a few units."""
    gen = torch.Generator().manual_seed(seed)

    def rn(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=gen, dtype=F64) * scale + shift)

    slots = b if cu_seqlens is None else len(cu_seqlens) - 1
    t = dict(
        u=rn(b, d, l).to(dtype),
        delta=rn(b, d, l, scale=0.5, shift=-1.0).to(dtype),
        A=(-(0.25 + torch.rand(d, n, generator=gen, dtype=F64) * 4)).float(),
        B=(rn(b, g, n, l).to(dtype) if var_B else rn(d, n).float()),
        C=(rn(b, g, n, l).to(dtype) if var_C else rn(d, n).float()),
        D=rn(d).float() if has_D else None,
        z=rn(b, d, l).to(dtype) if has_z else None,
        delta_bias=rn(d, scale=0.5, shift=-1.0).float() if has_bias else None,
        initial_state=rn(slots, d, n).float() if init else None,
    )
    t = {k: (v.to(device) if v is not None else None) for k, v in t.items()}
    if cu_seqlens is not None:
        t["cu_seqlens"] = torch.tensor(cu_seqlens, dtype=torch.int64, device=device)
    return t


def to64(t):
    return {k: (v.to(F64) if (v is not None and v.is_floating_point()) else v) for k, v in t.items()}


def run(t, backend, softplus=True):
    return selective_scan(t["u"], t["delta"], t["A"], t["B"], t["C"], t["D"], t["z"], t["delta_bias"],
                          delta_softplus=softplus, initial_state=t["initial_state"], return_last_state=True,
                          cu_seqlens=t.get("cu_seqlens"), backend=backend)


def ref64(t, softplus=True):
    t = to64(t)
    return selective_scan_ref(t["u"], t["delta"], t["A"], t["B"], t["C"], t["D"], t["z"], t["delta_bias"],
                              delta_softplus=softplus, initial_state=t["initial_state"], return_last_state=True,
                              cu_seqlens=t.get("cu_seqlens"))


# ------------------------------------------------------------------------------------------------------
# The reference itself


def _ssd_per_head(x, dt, a, Bm, Cm, h0):
    """Tiny SSD (Mamba-2) recurrence, per head: x (b,l,h,p), dt (b,l,h), a (h,), B/C (b,l,n), h0 (b,h,p,n)."""
    bsz, l, nh, p = x.shape
    h = h0.clone()
    ys = []
    for t in range(l):
        decay = torch.exp(dt[:, t] * a)[:, :, None, None]
        h = decay * h + (dt[:, t, :, None] * x[:, t])[..., None] * Bm[:, t, None, None, :]
        ys.append(torch.einsum("bhpn,bn->bhp", h, Cm[:, t]))
    return torch.stack(ys, 1), h


@pytest.mark.parametrize("b,l,nh,p,n", [(2, 9, 3, 4, 5), (1, 17, 2, 8, 16)], ids=["b2-l9-h3-p4-n5", "b1-l17-h2-p8-n16"])
def test_ref_equals_ssd_with_tied_heads(b, l, nh, p, n):
    """With A and delta constant within a head (A[c, :] = a_head for all n) the scan is an SSD: the Mamba-1
    reference equals both the SSD family's reference (python_ref.ssd) and a per-head recurrence written here."""
    from python_ref.ssd import ssd_sequential_ref
    d = nh * p
    x = torch.randn(b, l, nh, p, dtype=F64)
    dt = torch.rand(b, l, nh, dtype=F64) * 0.5 + 0.05
    a = -torch.rand(nh, dtype=F64) * 2 - 0.1
    Bm, Cm = torch.randn(b, l, n, dtype=F64), torch.randn(b, l, n, dtype=F64)
    h0 = torch.randn(b, nh, p, n, dtype=F64)
    y_ssd, h_ssd = _ssd_per_head(x, dt, a, Bm, Cm, h0)
    y_ref, h_ref = ssd_sequential_ref(x, dt, a, Bm[:, :, None], Cm[:, :, None], initial_states=h0,
                                      return_final_states=True)
    assert_close(y_ref, y_ssd, F64, name="ssd references agree (y)")
    assert_close(h_ref, h_ssd, F64, name="ssd references agree (state)")
    u = x.reshape(b, l, d).transpose(1, 2)
    delta = dt.repeat_interleave(p, dim=2).transpose(1, 2)
    A = a.repeat_interleave(p)[:, None].expand(d, n).contiguous()
    B, C = Bm.transpose(1, 2)[:, None], Cm.transpose(1, 2)[:, None]
    y, last = selective_scan_ref(u, delta, A, B, C, initial_state=h0.reshape(b, d, n), return_last_state=True)
    assert_close(y, y_ssd.reshape(b, l, d).transpose(1, 2), F64, name="y")
    assert_close(last, h_ssd.reshape(b, d, n), F64, name="last_state")


def test_ref_varlen_equals_each_sequence_alone():
    cu = [0, 5, 5, 12, 20]
    t = make_inputs(1, 6, 20, 4, g=2, init=True, cu_seqlens=cu, dtype=F64)
    out, last = ref64(t)
    for i in range(len(cu) - 1):
        s0, s1 = cu[i], cu[i + 1]
        part = {k: v for k, v in t.items() if k != "cu_seqlens"}
        for k in ("u", "delta", "z"):
            part[k] = t[k][..., s0:s1]
        for k in ("B", "C"):
            part[k] = t[k][..., s0:s1]
        part["initial_state"] = t["initial_state"][i:i + 1]
        o, lst = ref64(part)
        assert_close(out[..., s0:s1], o, F64, name=f"out seq{i}")
        assert_close(last[i:i + 1], lst, F64, name=f"last seq{i}")


def test_ref_l1_is_one_step():
    t = to64(make_inputs(2, 3, 1, 4, init=True, var_B=False, var_C=False, has_z=False, has_D=False, has_bias=False))
    out, last = selective_scan_ref(t["u"], t["delta"], t["A"], t["B"], t["C"], initial_state=t["initial_state"],
                                   return_last_state=True)
    h = torch.exp(t["delta"][..., 0, None] * t["A"]) * t["initial_state"] + \
        (t["delta"][..., 0] * t["u"][..., 0])[..., None] * t["B"]
    assert_close(last, h, F64, name="state")
    assert_close(out[..., 0], (h * t["C"]).sum(-1), F64, name="y")


# ------------------------------------------------------------------------------------------------------
# Backends vs the reference: forward

# (b, d, l, n, g, var_B, var_C, z, init)
CPU_CASES = [
    (2, 6, 1, 4, 2, True, True, True, True),
    (2, 12, 127, 16, 3, True, True, True, False),
    (1, 33, 127, 1, 1, False, False, False, True),
    (2, 32, 64, 16, 2, True, False, True, True),
    (1, 10, 37, 4, 1, False, True, False, False),
]
GPU_CASES = [
    (2, 64, 1, 16, 1, True, True, True, True),
    (2, 96, 127, 16, 6, True, True, True, True),
    (1, 40, 2049, 4, 2, True, True, False, True),
    (2, 48, 4097, 16, 1, True, True, True, False),
    (1, 24, 300, 64, 1, False, False, True, True),
    (2, 20, 257, 256, 2, True, True, True, True),
    (3, 33, 131, 1, 1, True, False, False, True),
    (2, 130, 600, 16, 130 // 10, True, True, True, False),
    (1, 64, 2049, 16, 4, False, True, True, True),
    (2, 16, 1000, 128, 1, True, True, True, True),
]


def _case_id(c):
    b, d, l, n, g, vb, vc, z, init = c
    return (f"b{b}-d{d}-l{l}-n{n}-g{g}-B{'var' if vb else 'const'}-C{'var' if vc else 'const'}"
            f"{'-z' if z else ''}{'-h0' if init else ''}")


def _check_fwd(case, backend, device, dtype, factor=1.0, softplus=True):
    b, d, l, n, g, vb, vc, hz, init = case
    t = make_inputs(b, d, l, n, g, vb, vc, hz, init=init, dtype=dtype, device=device, has_bias=softplus)
    if not softplus:
        t["delta"] = torch.nn.functional.softplus(t["delta"].float()).to(dtype)
    out, last = run(t, backend, softplus)
    ro, rl = ref64(t, softplus)
    assert out.dtype == dtype and last.dtype == (F64 if dtype == F64 else torch.float32)
    assert_close(out, ro, dtype, factor=factor, name="out")
    assert_close(last, rl, torch.float32 if dtype != F64 else F64, factor=factor * 4, name="last_state")


@pytest.mark.parametrize("case", CPU_CASES, ids=_case_id)
@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["fp32", "fp64"])
def test_cpu_forward(case, dtype):
    _skip_unless("cpu", "cpu")
    _check_fwd(case, "cpu", "cpu", dtype)


@pytest.mark.parametrize("case", CPU_CASES[:3], ids=_case_id)
def test_cpu_forward_low_precision_inputs(case):
    _skip_unless("cpu", "cpu")
    _check_fwd(case, "cpu", "cpu", torch.bfloat16)


# Triton under the interpreter on CPU tensors (small shapes: the interpreter is slow).
@pytest.mark.parametrize("case", CPU_CASES, ids=_case_id)
def test_triton_forward_interpreted(case):
    _skip_unless("triton", "cpu")
    if HAS_CUDA:
        pytest.skip("the GPU run covers Triton on CUDA tensors (test_gpu_forward)")
    _check_fwd(case, "triton", "cpu", torch.float32)


def test_triton_varlen_interpreted():
    _skip_unless("triton", "cpu")
    if HAS_CUDA:
        pytest.skip("the GPU run covers Triton on CUDA tensors (test_gpu_varlen)")
    _check_varlen("triton", "cpu", torch.float32, [0, 7, 7, 20, 33])


@pytest.mark.parametrize("case", CPU_CASES, ids=_case_id)
def test_triton_backward_interpreted(case, monkeypatch):
    _skip_unless("triton", "cpu")
    if HAS_CUDA:
        pytest.skip("the GPU run covers the Triton backward on CUDA tensors (test_gpu_backward_kernel)")
    _no_ref_autograd(monkeypatch)
    b, d, l, n, g, vb, vc, hz, init = case
    t = make_inputs(b, d, l, n, g, vb, vc, hz, init=init, dtype=torch.float32)
    _check_grads(t, "triton", torch.float32, factor=4)


@pytest.mark.parametrize("softplus", [True, False], ids=["softplus", "nosoftplus"])
def test_triton_backward_varlen_interpreted(softplus, monkeypatch):
    _skip_unless("triton", "cpu")
    if HAS_CUDA:
        pytest.skip("the GPU run covers the Triton backward on CUDA tensors (test_gpu_backward_kernel_varlen)")
    _no_ref_autograd(monkeypatch)
    # n = 4: chunks of 16 steps; sequences start on, just after and between chunk boundaries; one is empty
    t = make_inputs(1, 10, 50, 4, 2, init=True, dtype=torch.float32, cu_seqlens=[0, 16, 17, 17, 50],
                    has_bias=softplus)
    if not softplus:
        t["delta"] = torch.nn.functional.softplus(t["delta"])
    _check_grads(t, "triton", torch.float32, factor=4, softplus=softplus)


def test_triton_opcheck_interpreted():
    _skip_unless("triton", "cpu")
    if HAS_CUDA:
        pytest.skip("the GPU run covers Triton on CUDA tensors (test_gpu_opcheck)")
    t = make_inputs(2, 4, 40, 3, g=2, init=True)
    args = (t["u"], t["delta"], t["A"], t["B"], t["C"], t["D"], t["z"], t["delta_bias"], t["initial_state"], None,
            True, "triton")
    torch.library.opcheck(selective_scan_fwd, (*args, True), test_utils=("test_schema", "test_faketensor"))
    _, _, states = selective_scan_fwd(*args, True)
    assert states.shape == (2, 4, 3, 3)  # n = 3: a saved state every 16 steps
    dout, dlast = torch.randn_like(t["u"]), torch.randn(2, 4, 3)
    torch.library.opcheck(selective_scan_bwd, (*args[:11], dout, dlast, "triton", states),
                          test_utils=("test_schema", "test_faketensor"))


# Compiled in a subprocess: under TRITON_INTERPRET=1 (set by conftest.py on CPU machines) Triton cannot lower.
_AOT_SCRIPT = r"""
import inspect, json, sys
from mamba_kernels.selective_scan import triton as tri
from mamba_kernels.selective_scan.interface import _ckpt_chunk
from mamba_kernels.testing import aot_compile_triton

ACT = {"u_ptr", "delta_ptr", "B_ptr", "C_ptr", "z_ptr", "out_ptr", "dout_ptr", "du_ptr", "ddelta_ptr", "dz_ptr"}
for n, varlen in json.loads(sys.argv[1]):
    block_n = max(1, 1 << (n - 1).bit_length())  # the launchers' configs (triton.next_power_of_2)
    block_d = max(1, min(32, 1024 // block_n))
    flags = dict(VAR_B=True, VAR_C=True, HAS_D=True, HAS_Z=True, HAS_BIAS=True, VARLEN=varlen, SOFTPLUS=True,
                 CK=_ckpt_chunk(n), BLOCK_D=block_d, BLOCK_N=block_n)
    jobs = ((tri._selective_scan_fwd_kernel, dict(flags, HAS_H0=True, SAVE=True)),
            (tri._selective_scan_bwd_kernel, dict(flags, HAS_DLAST=True, HAS_DINIT=True)))
    for kernel, cx in jobs:
        sig = {}
        for name in inspect.signature(kernel.fn).parameters:  # activations bf16, cu_seqlens i64, scalars i32
            if name in cx:
                sig[name] = "constexpr"
            elif name.endswith("_ptr"):
                sig[name] = "*bf16" if name in ACT else ("*i64" if name == "cu_ptr" else "*fp32")
            else:
                sig[name] = "i32"
        k = aot_compile_triton(kernel, sig, cx)
        assert "cubin" in k.asm, kernel.fn.__name__
        print("AOT-OK", n, varlen, kernel.fn.__name__, k.metadata.shared)
"""


def test_triton_kernels_compile_for_sm90():
    """Both Triton kernels at the launchers' configs (n = 16 with and without varlen, n = 256) lower to sm_90
    cubins (CI has no GPU)."""
    import json
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    jobs = [[16, False], [16, True], [256, False]]
    r = subprocess.run([sys.executable, "-c", _AOT_SCRIPT, json.dumps(jobs)], capture_output=True, text=True,
                       env=env, cwd=root, timeout=600)
    print(r.stdout)
    assert r.returncode == 0 and r.stdout.count("AOT-OK") == 2 * len(jobs), \
        f"AOT compile failed:\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"


# ------------------------------------------------------------------------------------------------------
# Gradients


def _grad_inputs(t):
    return [k for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state") if t[k] is not None]


def _check_grads(t, backend, dtype, factor=1.0, softplus=True):
    names = _grad_inputs(t)
    leaves = {k: (v.detach().clone().requires_grad_(True) if k in names else v) for k, v in t.items()}
    out, last = run(leaves, backend, softplus)
    gen = torch.Generator().manual_seed(1)
    gout = torch.randn(out.shape, generator=gen, dtype=F64).to(out.device)
    glast = torch.randn(last.shape, generator=gen, dtype=F64).to(out.device)
    grads = torch.autograd.grad([out, last], [leaves[k] for k in names], [gout.to(out.dtype), glast.to(last.dtype)])
    leaves64 = {k: (v.detach().to(F64).requires_grad_(True) if k in names else v) for k, v in to64(t).items()}
    ro, rl = selective_scan_ref(leaves64["u"], leaves64["delta"], leaves64["A"], leaves64["B"], leaves64["C"],
                                leaves64["D"], leaves64["z"], leaves64["delta_bias"], delta_softplus=softplus,
                                initial_state=leaves64["initial_state"], return_last_state=True,
                                cu_seqlens=t.get("cu_seqlens"))
    # (allow_unused: with no steps at all, l = 0 or only empty sequences, the reference uses no input but h0)
    rgrads = torch.autograd.grad([ro, rl], [leaves64[k] for k in names], [gout, glast], allow_unused=True,
                                 materialize_grads=True)
    for k, gr, rg in zip(names, grads, rgrads):
        assert gr.shape == t[k].shape and gr.dtype == t[k].dtype, k
        assert_close(gr, rg, t[k].dtype if t[k].dtype != torch.float32 else dtype, factor=factor, name=f"d{k}")


@pytest.mark.parametrize("case", CPU_CASES, ids=_case_id)
def test_cpu_backward(case):
    _skip_unless("cpu", "cpu")
    b, d, l, n, g, vb, vc, hz, init = case
    t = make_inputs(b, d, l, n, g, vb, vc, hz, init=init, dtype=torch.float32)
    # Sums over l of products (dA, dB const, dD) accumulate fp32 rounding: factor 4.
    _check_grads(t, "cpu", torch.float32, factor=4)


@pytest.mark.parametrize("softplus", [True, False], ids=["softplus", "nosoftplus"])
@pytest.mark.parametrize("backend", ["ref", "cpu"])
def test_gradcheck_float64(backend, softplus):
    _skip_unless(backend, "cpu")
    t = make_inputs(1, 4, 5, 3, g=2, init=True, dtype=F64)
    if not softplus:
        t["delta"] = t["delta"].abs()
        t["delta_bias"] = t["delta_bias"].abs()
    names = _grad_inputs(t)
    t = {k: (v.double() if (v is not None and v.is_floating_point()) else v) for k, v in t.items()}

    def f(*xs):
        kw = dict(t)
        kw.update(zip(names, xs))
        out, last = run(kw, backend, softplus)
        return out, last

    assert torch.autograd.gradcheck(f, [t[k].requires_grad_(True) for k in names])


def _no_ref_autograd(monkeypatch):
    """Make sure the gradients come from the backend's backward kernel, not from the reference fallback."""
    def boom(*a, **k):
        raise AssertionError("the backward fell back to autograd through the reference")
    monkeypatch.setattr(ss_interface, "_bwd_ref", boom)


# ------------------------------------------------------------------------------------------------------
# The CUDA kernels' own source run on the CPU (tests/cuda_emu: threads for lanes, barriers for
# __syncthreads and shuffles), against the C++ CPU implementation in double: catches logic and indexing
# bugs of the CUDA forward-with-states and backward here, before a GPU run.

def test_cuda_kernels_emulated_on_cpu(tmp_path):
    from emu_build import build_emu, run_processes
    exe = build_emu(tmp_path, "selective_scan_emu", sources=["csrc/selective_scan/selective_scan_cpu.cpp"],
                    flags=["-pthread"], skip_if=("<barrier>", "c++20"), timeout=600)
    # four runs, two processes at a time (one thread each): the launcher's own choice (the state-lane forward where
    # it applies, 2 states a lane at these sizes: marked [lane S2]), the state-lane forward with 4 states a lane
    # (MK_SS_LANE_S=4) warp-specialised (MK_SS_LANE_SPEC=1, the default there) or not (0), and the time-parallel
    # forward everywhere (MK_SS_FWD_KERNEL=scan)
    # (the state-lane backward runs in the first three wherever the checkpoints are 32 steps apart: [lane bwd]; the
    # fourth also forces the time-parallel backward, MK_SS_BWD_KERNEL=scan)
    knobs = ("MK_SS_FWD_KERNEL", "MK_SS_LANE_S", "MK_SS_LANE_SPEC", "MK_SS_BWD_KERNEL")
    passes = ((None, " [lane S2]", 14),
              ({"MK_SS_LANE_S": "4", "MK_SS_LANE_SPEC": "0"}, " [lane S4]", 14),
              ({"MK_SS_LANE_S": "4", "MK_SS_LANE_SPEC": "1"}, " [lane S4 spec]", 14),
              ({"MK_SS_FWD_KERNEL": "scan", "MK_SS_BWD_KERNEL": "scan"}, " [lane", 0))
    base_env = {k: v for k, v in os.environ.items() if k not in knobs}
    runs = run_processes([[exe]] * len(passes), [{**base_env, **(forced or {})} for forced, _, _ in passes], timeout=900)
    n_cases = None
    for (forced, marker, want), run_ in zip(passes, runs):
        print(run_.stdout)
        assert run_.returncode == 0, f"emulated CUDA kernels disagree with the CPU implementation " \
                                     f"({forced}):\n{run_.stdout}{run_.stderr[-2000:]}"
        n_ok, n_lane = run_.stdout.count("ok  "), run_.stdout.count(marker)
        assert n_ok >= 30 and (n_cases is None or n_ok == n_cases)
        n_cases = n_ok
        assert (n_lane >= want) if want else (n_lane == 0), f"{forced}: {n_lane} cases ran{marker}]"
        n_lane_bwd = run_.stdout.count(" [lane bwd]")
        assert (n_lane_bwd >= 12) if want else (n_lane_bwd == 0), f"{forced}: {n_lane_bwd} cases ran [lane bwd]"


# ------------------------------------------------------------------------------------------------------
# Varlen: packed sequences equal each sequence alone


def _check_varlen(backend, device, dtype, cu, d=12, n=8, g=3, grads=False, factor=1.0):
    l = cu[-1]
    t = make_inputs(1, d, l, n, g, init=True, dtype=dtype, device=device, cu_seqlens=cu)
    out, last = run(t, backend)
    for i in range(len(cu) - 1):
        s0, s1 = cu[i], cu[i + 1]
        part = {k: v for k, v in t.items() if k != "cu_seqlens"}
        for k in ("u", "delta", "z", "B", "C"):
            part[k] = t[k][..., s0:s1].contiguous()
        part["initial_state"] = t["initial_state"][i:i + 1]
        o, lst = run(part, backend)
        ro, rl = ref64(part)
        assert_close(out[..., s0:s1], ro, dtype, factor=factor, name=f"out seq{i}")
        assert_close(last[i:i + 1], rl, torch.float32 if dtype != F64 else F64, factor=4 * factor, name=f"last seq{i}")
        if backend == "triton" and out.is_cuda and s1 > s0:
            # The packed call runs the VARLEN=True build of the Triton kernel, the lone one VARLEN=False: two
            # compilations may contract multiply-adds differently (seen on the H200: an fp32 ulp), so equality
            # is checked to one rounding step of the output dtype there.
            tol = 2e-6 if out.dtype == torch.float32 else 2.0 ** -7
            torch.testing.assert_close(out[..., s0:s1], o, rtol=tol, atol=tol,
                                       msg=lambda m: f"packed != alone for seq {i}: {m}")
        elif backend == "cuda" and s1 > s0:
            # With n = 16 and variable B / C the lone call takes the state-lane forward, the packed one the
            # time-parallel kernel: two summation orders, so the dtype's tolerance (both are checked against
            # the reference above). On the CPU the two calls must be identical.
            assert_close(out[..., s0:s1], o, dtype, factor=factor, name=f"packed vs alone seq{i}")
        else:
            assert torch.equal(out[..., s0:s1], o) or s1 == s0, f"packed != alone for seq {i}"
    if grads:
        _check_grads(t, backend, dtype, factor=4 * factor)


@pytest.mark.parametrize("cu", [[0, 7, 7, 20, 33], [0, 1], [0, 40, 41]], ids=["4seq-empty", "1tok", "2seq"])
def test_cpu_varlen(cu):
    _skip_unless("cpu", "cpu")
    _check_varlen("cpu", "cpu", torch.float32, cu, grads=True)


@pytest.mark.parametrize("backend", ["ref", "cpu", "triton", "cuda"])
def test_zero_length_returns_initial_state(backend):
    device = "cuda" if (backend == "cuda" or (backend == "triton" and HAS_CUDA)) else "cpu"
    _skip_unless(backend, device)
    for cu in (None, [0, 0, 0]):
        t = make_inputs(2 if cu is None else 1, 5, 0, 4, 1, init=True, device=device, cu_seqlens=cu)
        out, last = run(t, backend)
        assert out.shape == t["u"].shape
        assert torch.equal(last, t["initial_state"])


# ------------------------------------------------------------------------------------------------------
# torch.library registration


@pytest.mark.parametrize("backend", ["ref", "cpu"])
def test_opcheck(backend):
    _skip_unless(backend, "cpu")
    t = make_inputs(2, 4, 6, 3, g=2, init=True)
    args = (t["u"], t["delta"], t["A"], t["B"], t["C"], t["D"], t["z"], t["delta_bias"], t["initial_state"], None,
            True, backend)
    leaves = [a.detach().clone().requires_grad_(True) if isinstance(a, torch.Tensor) else a for a in args]
    torch.library.opcheck(selective_scan_fwd, leaves)
    tv = make_inputs(1, 4, 9, 3, g=1, init=True, cu_seqlens=[0, 4, 9])
    torch.library.opcheck(selective_scan_fwd, (tv["u"], tv["delta"], tv["A"], tv["B"], tv["C"], None, None, None,
                                               tv["initial_state"], tv["cu_seqlens"], False, backend))
    if backend == "cpu":
        dout = torch.randn_like(t["u"])
        torch.library.opcheck(selective_scan_bwd, (*args[:11], dout, torch.randn(2, 4, 3), "cpu"))


# ------------------------------------------------------------------------------------------------------
# Bad input


def _good():
    return make_inputs(2, 8, 5, 4, g=2, init=True)


@pytest.mark.parametrize("mutate,exc,match", [
    (lambda t: t.update(u=t["u"][0]), ValueError, "u"),
    (lambda t: t.update(u=t["u"].int()), TypeError, "u"),
    (lambda t: t.update(delta=t["delta"][:, :, :3]), ValueError, "delta"),
    (lambda t: t.update(delta=t["delta"].double()), TypeError, "delta"),
    (lambda t: t.update(A=t["A"][:5]), ValueError, "A"),
    (lambda t: t.update(A=torch.zeros(8, 300)), ValueError, "A"),
    (lambda t: t.update(B=t["B"][..., :3]), ValueError, "B"),
    (lambda t: t.update(B=torch.randn(2, 3, 4, 5)), ValueError, "B"),
    (lambda t: t.update(C=torch.randn(8, 5)), ValueError, "C"),
    (lambda t: t.update(C=torch.randn(2, 4, 4, 5)), ValueError, "C"),
    (lambda t: t.update(D=torch.randn(7)), ValueError, "D"),
    (lambda t: t.update(z=torch.randn(2, 8, 4)), ValueError, "z"),
    (lambda t: t.update(delta_bias=torch.randn(8, 1)), ValueError, "delta_bias"),
    (lambda t: t.update(initial_state=torch.randn(2, 8, 3)), ValueError, "initial_state"),
    (lambda t: t.update(cu_seqlens=torch.tensor([0, 5])), ValueError, "cu_seqlens"),
    (lambda t: t.update(cu_seqlens=torch.tensor([0.0, 5.0])), TypeError, "cu_seqlens"),
], ids=["u-ndim", "u-dtype", "delta-shape", "delta-dtype", "A-shape", "A-n-too-big", "B-shape", "B-groups",
        "C-shape", "C-groups-differ", "D-shape", "z-shape", "bias-shape", "h0-shape", "cu-batch", "cu-dtype"])
def test_bad_input(mutate, exc, match):
    t = _good()
    mutate(t)
    with pytest.raises(exc, match=match):
        run(t, "ref")


def test_bad_input_varlen_bounds():
    t = make_inputs(1, 8, 5, 4, init=True, cu_seqlens=[0, 2, 4])
    with pytest.raises(ValueError, match="cu_seqlens"):
        run(t, "ref")
    t = make_inputs(1, 8, 5, 4, init=True, cu_seqlens=[0, 3, 5])
    t["initial_state"] = t["initial_state"][:1]
    with pytest.raises(ValueError, match="initial_state"):
        run(t, "ref")


def test_bad_backend():
    t = _good()
    with pytest.raises(ValueError, match="backend"):
        run(t, "nope")


def test_auto_backend_with_a_gradient_avoids_a_cuda_backward_that_does_not_fit(monkeypatch):
    """backend=None on a GPU whose shared memory the CUDA backward does not fit (variable B and C need ~137-155 KB a
    block; an RTX 30xx / 40xx gives 99 KB): a call that needs a gradient runs the fallback backend for its forward and
    backward (Triton where available) instead of the CUDA forward whose backward would fail; a call without a gradient
    keeps the CUDA choice. Simulated on CPU: the choice functions are replaced, the fallback is ref."""
    seen = []
    real_fwd = ss_interface.selective_scan_fwd

    def recording_fwd(*args):
        seen.append(args[11])  # the backend argument
        if args[11] == "cuda":
            return args[0].clone(), None, None
        return real_fwd(*args)
    monkeypatch.setattr(ss_interface._backend, "resolve", lambda *a, **k: "cuda")
    monkeypatch.setattr(ss_interface, "_cuda_bwd_fits", lambda *a: False)
    monkeypatch.setattr(ss_interface, "_training_fallback", lambda: "ref")
    monkeypatch.setattr(ss_interface, "selective_scan_fwd", recording_fwd)
    monkeypatch.setattr(ss_interface, "_selective_scan_fwd_impl", recording_fwd)  # calls without autograd
    inp = make_inputs(1, 8, 20, 4, var_B=True, var_C=True, dtype=torch.float32)
    u = inp["u"].clone().requires_grad_(True)
    kw = {k: inp[k] for k in ("D", "z", "delta_bias")}
    out = selective_scan(u, inp["delta"], inp["A"], inp["B"], inp["C"], **kw, delta_softplus=True)
    out.sum().backward()
    assert seen == ["ref"] and u.grad is not None and torch.isfinite(u.grad).all()
    with torch.no_grad():
        selective_scan(u, inp["delta"], inp["A"], inp["B"], inp["C"], **kw, delta_softplus=True)
    assert seen == ["ref", "cuda"]
    monkeypatch.setattr(ss_interface, "_cuda_bwd_fits", lambda *a: True)
    selective_scan(u, inp["delta"], inp["A"], inp["B"], inp["C"], **kw, delta_softplus=True)
    assert seen == ["ref", "cuda", "cuda"]
