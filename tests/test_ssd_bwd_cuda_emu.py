"""The CUDA SSD backward (csrc/ssd/ssd_bwd_kernel.cuh, ssd_bwd_chunk_kernel.cuh through ssd_bwd_launch.cu's dispatch)
checked on CPU through the fiber emulation of the CUDA execution model in tests/cuda_emu/ (mma.sync, ldmatrix,
shuffles, NaN-poisoned shared memory; outputs and scratch start NaN). tests/cuda_emu/ssd_bwd_emu.cpp runs the kernels
unmodified on inputs written here; every gradient (dx, ddt, dA, dB, dC, dD, dz, ddt_bias, dinitial_states) is
compared with torch autograd through python_ref/ssd.py::ssd_chunked_ref in float64, with the gradients of the final
states and of the chunk-entry states (the forward's states_in output) included in the loss. The saved forward
tensors the kernels read (ypre in x's dtype, states_in in fp32) come from the reference too. Tolerances: the repo's
(mamba_kernels.testing) for the input dtype, widened 5x for gradients as in tests/test_ssd_gpu.py. No GPU.
"""
import math
import os
import subprocess

import pytest
import torch

from mamba_kernels.ssd.interface import states_in_from_chunk_states
from mamba_kernels.ssd.layout import chunk_layout
from mamba_kernels.testing import assert_close
from python_ref.ssd import ssd_chunked_ref

from emu_build import build_emu

F64 = torch.float64
DTYPES = {"fp32": (0, torch.float32), "fp16": (1, torch.float16), "bf16": (2, torch.bfloat16)}
GRAD_FACTOR = 5.0

# name: (b, l, h, p, n, g, Q, dtype, options)
CASES = {
    "b2-l1-h2-p32-n16-g1-Q64-bf16": (2, 1, 2, 32, 16, 1, 64, "bf16", {}),
    "b1-l100-h4-p64-n64-g2-Q64-bf16": (1, 100, 4, 64, 64, 2, 64, "bf16", {}),
    "b2-l150-h2-p48-n40-g2-Q128-fp32-Dhp": (2, 150, 2, 48, 40, 2, 128, "fp32", dict(D="hp")),
    "b1-l130-h2-p128-n32-g1-Q64-bf16-noz-noinit": (1, 130, 2, 128, 32, 1, 64, "bf16", dict(z=False, init=False)),
    "b1-l300-varlen-h2-p32-n64-g2-Q64-fp32": (1, 300, 2, 32, 64, 2, 64, "fp32", dict(cu=[0, 1, 2, 70, 70, 300])),
    "b1-l260-varlen-h3-p64-n128-g3-Q128-bf16": (1, 260, 3, 64, 128, 3, 128, "bf16", dict(cu=[0, 3, 200, 260])),
    "b1-l77-h2-p33-n17-g1-Q64-fp16": (1, 77, 2, 33, 17, 1, 64, "fp16", dict(D="hp")),
    "b1-l300-h2-p64-n128-g1-Q256-bf16": (1, 300, 2, 64, 128, 1, 256, "bf16", {}),
    "b1-l200-h2-p64-n32-g2-Q64-fp32-steep": (1, 200, 2, 64, 32, 2, 64, "fp32", dict(A_scale=8.0)),
    "b2-l400-h2-p32-n32-g1-Q128-fp32-gentle": (2, 400, 2, 32, 32, 1, 128, "fp32", dict(A_scale=0.005)),
    "b1-l90-h2-p64-n16-g1-Q64-fp32-bare": (1, 90, 2, 64, 16, 1, 64, "fp32",
                                          dict(D=None, z=False, bias=False, init=False, softplus=False, limit=False,
                                               dfinal=False, dsin=False)),
    "b1-l200-h4-p128-n128-g4-Q128-bf16": (1, 200, 4, 128, 128, 4, 128, "bf16", dict(D="hp")),
    "b1-l700-varlen-h2-p64-n64-g1-Q256-fp32": (1, 700, 2, 64, 64, 1, 256, "fp32",
                                              dict(cu=[0, 1, 600, 601, 700], A_scale=0.02)),
    "b1-l70-h4-p16-n8-g2-Q64-fp32-nosp": (1, 70, 4, 16, 8, 2, 64, "fp32", dict(softplus=False)),
    # l a multiple of the chunk (no short chunk); 4 heads a group (the group kernels' head loops)
    "b2-l128-h8-p64-n64-g2-Q64-bf16": (2, 128, 8, 64, 64, 2, 64, "bf16", {}),
    "b1-l192-h8-p32-n32-g2-Q192-fp32": (1, 192, 8, 32, 32, 2, 192, "fp32", dict(A_scale=0.05)),
    # fp16 with p, n multiples of 8: the 16-byte load paths that convert (half -> fp32 tiles), split heads of g = 1
    "b1-l150-h4-p64-n32-g1-Q64-fp16": (1, 150, 4, 64, 32, 1, 64, "fp16", {}),
}


@pytest.fixture(scope="module")
def emu_exe(tmp_path_factory):
    return build_emu(tmp_path_factory, "ssd_bwd_emu")


def _inputs(b, l, h, p, n, g, dtype, o, gen):
    def r(*s, scale=1.0, shift=0.0):
        return torch.randn(*s, dtype=F64, generator=gen) * scale + shift
    nseq = b if o.get("cu") is None else len(o["cu"]) - 1
    inp = dict(x=r(b, l, h, p), dt=r(b, l, h, scale=0.5, shift=-1.0 if o.get("softplus", True) else 0.0),
               A=-(torch.rand(h, dtype=F64, generator=gen) + 0.5) * o.get("A_scale", 1.0),
               B=r(b, l, g, n, scale=0.5), C=r(b, l, g, n, scale=0.5))
    if not o.get("softplus", True):
        inp["dt"] = inp["dt"].abs() * 0.3 + 0.01
    D = o.get("D", "h")
    if D is not None:
        inp["D"] = r(h) if D == "h" else r(h, p)
    if o.get("z", True):
        inp["z"] = r(b, l, h, p)
    if o.get("bias", True):
        inp["dt_bias"] = r(h, scale=0.5)
    if o.get("init", True):
        inp["initial_states"] = r(nseq, h, p, n, scale=0.5)
    # what the kernels see: activations in the input dtype, dt / A / D / bias / states in fp32
    act = {"x", "z", "B", "C"}
    return {k: v.to(dtype if k in act else torch.float32).to(F64) for k, v in inp.items()}


def _write(d, name, t):
    t.detach().contiguous().cpu().numpy().tofile(os.path.join(d, name + ".bin")) if t.dtype != torch.bfloat16 else \
        t.detach().contiguous().view(torch.int16).cpu().numpy().tofile(os.path.join(d, name + ".bin"))


def _read(d, name, dtype, shape):
    raw = open(os.path.join(d, "out_" + name + ".bin"), "rb").read()
    if dtype == torch.bfloat16:
        return torch.frombuffer(bytearray(raw), dtype=torch.int16).view(torch.bfloat16).reshape(shape)
    return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)


@pytest.mark.parametrize("case", list(CASES))
def test_ssd_cuda_backward_emulated_on_cpu(case, emu_exe, tmp_path):
    b, l, h, p, n, g, Q, dname, o = CASES[case]
    code, dtype = DTYPES[dname]
    gen = torch.Generator().manual_seed(1234 + l * 7 + h * 13 + p + n)
    inp = _inputs(b, l, h, p, n, g, dtype, o, gen)
    cu = o.get("cu")
    cu_t = None if cu is None else torch.tensor(cu, dtype=torch.int64)
    kw = dict(dt_softplus=o.get("softplus", True), dt_limit=(0.01, 3.0) if o.get("limit", True) else None,
              cu_seqlens=cu_t)
    leaves = {k: v.clone().requires_grad_(True) for k, v in inp.items()}
    y, fin, cs = ssd_chunked_ref(**leaves, chunk_size=Q, return_final_states=True, return_chunk_states=True, **kw)
    chunks, seqs, n_slots = chunk_layout(b, l, Q, cu_t)
    sin = states_in_from_chunk_states(cs, leaves.get("initial_states"), b, l, h, p, n, Q, cu_t, F64)
    with torch.no_grad():
        ypre = ssd_chunked_ref(**{k: v for k, v in inp.items() if k != "z"}, chunk_size=Q, **kw)
    gy = torch.randn(y.shape, dtype=F64, generator=gen).to(dtype).to(F64)
    gf = torch.randn(fin.shape, dtype=F64, generator=gen).to(torch.float32).to(F64)
    gs = torch.randn(sin.shape, dtype=F64, generator=gen).to(torch.float32).to(F64)
    n_real = sum(nc for _, nc in seqs)
    gs[n_real:] = 0.0  # slots past the last chunk (varlen bound) are never read
    use_df, use_ds = o.get("dfinal", True), o.get("dsin", True)
    loss = (y * gy).sum() + ((fin * gf).sum() if use_df else 0) + ((sin * gs).sum() if use_ds else 0)
    names = list(leaves)
    exp = dict(zip(names, torch.autograd.grad(loss, [leaves[k] for k in names])))

    d = str(tmp_path)
    nseq = b if cu is None else len(cu) - 1
    offs = [0]
    for _, nc in seqs:
        offs.append(offs[-1] + nc)
    meta = dict(dtype=code, b=b, l=l, h=h, p=p, n=n, g=g, Q=Q, nseq=nseq, n_slots=n_slots,
                softplus=int(kw["dt_softplus"]), limit=int(kw["dt_limit"] is not None), lo=0.01, hi=3.0,
                D=0 if "D" not in inp else inp["D"].dim())
    with open(os.path.join(d, "meta.txt"), "w") as f:
        f.write("".join(f"{k} {v}\n" for k, v in meta.items()))
    for k in ("x", "z", "B", "C"):
        if k in inp:
            _write(d, k, inp[k].to(dtype))
    _write(d, "dout", gy.to(dtype))
    if "z" in inp:
        _write(d, "ypre", ypre.to(dtype))
    for k in ("dt", "A", "dt_bias", "D"):
        if k in inp:
            _write(d, k, inp[k].to(torch.float32))
    _write(d, "states_in", sin.detach().to(torch.float32))
    if use_df:
        _write(d, "d_final", gf.to(torch.float32))
    if use_ds:
        _write(d, "d_states_in", gs.to(torch.float32))
    if cu is not None:
        _write(d, "cu_seqlens", cu_t)
        _write(d, "chunk_offsets", torch.tensor(offs, dtype=torch.int64))
    run = subprocess.run([emu_exe, d], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, f"emulated backward failed:\n{run.stdout}{run.stderr[-3000:]}"

    got = {
        "x": _read(d, "dx", dtype, (b, l, h, p)), "B": _read(d, "dB", dtype, (b, l, g, n)),
        "C": _read(d, "dC", dtype, (b, l, g, n)), "dt": _read(d, "ddt", torch.float32, (b, l, h)),
        "A": _read(d, "dA", torch.float32, (h,)),
    }
    if "z" in inp:
        got["z"] = _read(d, "dz", dtype, (b, l, h, p))
    if "dt_bias" in inp:
        got["dt_bias"] = _read(d, "ddt_bias", torch.float32, (h,))
    if "D" in inp:
        dD = _read(d, "dD", torch.float32, (h, p))
        got["D"] = dD if inp["D"].dim() == 2 else dD.sum(-1)
    if "initial_states" in inp:
        got["initial_states"] = _read(d, "dinit", torch.float32, (nseq, h, p, n))
    assert set(got) == set(exp)
    for k in names:
        assert_close(got[k], exp[k], dtype, factor=GRAD_FACTOR, name=f"d{k}")
    assert math.isfinite(float(got["A"].sum()))
