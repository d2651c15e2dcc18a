"""Tests for the chunked SSD (Mamba-2) scan: references cross-checked, every backend against float64 references."""
from __future__ import annotations

import pytest
import torch

from python_ref.ssd import ssd_chunked_ref, ssd_sequential_ref

F64 = torch.float64


def make_inputs(b, l, h, p, n, g, *, dtype=F64, device="cpu", D_shape="h", z=True, bias=True, init=False,
                nseq=None, requires_grad=False, A_scale=None):
    """Fresh random inputs; dt around softplus range, A negative (times A_scale (h,) if given: steep decays).
    nseq: number of initial states (varlen)."""
    def r(*s, scale=1.0, dt_=dtype):
        return (torch.randn(*s, dtype=F64) * scale).to(dt_).to(device)
    inp = dict(
        x=r(b, l, h, p),
        dt=r(b, l, h, scale=0.5) - 1.0,
        A=(-(torch.rand(h, dtype=F64) + 0.5) * (1.0 if A_scale is None else torch.tensor(A_scale, dtype=F64))
           ).to(torch.float32 if dtype != F64 else F64).to(device),
        B=r(b, l, g, n, scale=0.5),
        C=r(b, l, g, n, scale=0.5),
    )
    wdt = torch.float32 if dtype != F64 else F64
    if D_shape == "h":
        inp["D"] = r(h, dt_=wdt)
    elif D_shape == "hp":
        inp["D"] = r(h, p, dt_=wdt)
    if z:
        inp["z"] = r(b, l, h, p)
    if bias:
        inp["dt_bias"] = r(h, scale=0.5, dt_=wdt)
    if init:
        inp["initial_states"] = r(nseq if nseq is not None else b, h, p, n, scale=0.5, dt_=wdt)
    if requires_grad:
        for v in inp.values():
            v.requires_grad_(True)
    return inp


# --------------------------------------------------------------------------------------------- references
@pytest.mark.parametrize("chunk", [1, 4, 16])
@pytest.mark.parametrize("l", [1, 16, 37])
@pytest.mark.parametrize("g", [1, 2, 4])
def test_ref_chunked_equals_sequential(l, chunk, g):
    inp = make_inputs(2, l, 4, 3, 5, g, D_shape="hp", init=True)
    kw = dict(dt_softplus=True, dt_limit=(0.01, 3.0), return_final_states=True)
    y1, f1 = ssd_sequential_ref(**inp, **kw)
    y2, f2, cs = ssd_chunked_ref(**inp, chunk_size=chunk, return_chunk_states=True, **kw)
    torch.testing.assert_close(y2, y1, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(f2, f1, rtol=1e-10, atol=1e-10)
    assert cs.shape == (2, -(-l // chunk), 4, 3, 5)
    torch.testing.assert_close(cs[:, -1], f1)
    # chunk states are the sequential states at chunk ends
    inp_prefix = {k: (v[:, :chunk] if k in ("x", "dt", "B", "C", "z") else v) for k, v in inp.items()}
    if l >= chunk:
        _, f_prefix = ssd_sequential_ref(**inp_prefix, **kw)
        torch.testing.assert_close(cs[:, 0], f_prefix, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("seqlens", [[1, 16, 20, 37], [5], [0, 3, 0, 18]])
def test_ref_varlen_equals_each_sequence(seqlens):
    h, p, n, g = 4, 3, 5, 2
    L = sum(seqlens)
    cu = torch.tensor([0] + torch.tensor(seqlens).cumsum(0).tolist(), dtype=torch.int32)
    inp = make_inputs(1, L, h, p, n, g, init=True, nseq=len(seqlens))
    kw = dict(dt_softplus=True, return_final_states=True)
    y, f, cs = ssd_chunked_ref(**inp, chunk_size=8, cu_seqlens=cu, return_chunk_states=True, **kw)
    ys, fs = ssd_sequential_ref(**inp, cu_seqlens=cu, **kw)
    torch.testing.assert_close(y, ys, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(f, fs, rtol=1e-10, atol=1e-10)
    assert cs.shape[0] == sum(-(-s // 8) for s in seqlens)
    k = 0
    for i, s in enumerate(seqlens):
        a, e = int(cu[i]), int(cu[i + 1])
        one = {kk: (v[:, a:e] if kk in ("x", "dt", "B", "C", "z") else v) for kk, v in inp.items()}
        one["initial_states"] = inp["initial_states"][i:i + 1]
        y1, f1, cs1 = ssd_chunked_ref(**one, chunk_size=8, return_chunk_states=True, **kw)
        torch.testing.assert_close(y[:, a:e], y1, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(f[i], f1[0], rtol=1e-10, atol=1e-10)
        nc = -(-s // 8)
        torch.testing.assert_close(cs[k:k + nc], cs1[0], rtol=1e-10, atol=1e-10)
        k += nc


# --------------------------------------------------------------------------------------------- backends
import mamba_kernels  # noqa: E402
from mamba_kernels import _backend  # noqa: E402
from mamba_kernels.ssd import ssd_chunked_scan  # noqa: E402
from mamba_kernels.ssd.interface import ssd_chunked_bwd, ssd_chunked_fwd  # noqa: E402
from mamba_kernels.testing import assert_close  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
BACKENDS = ["ref", "cpu", "triton", "cuda"]
GRAD_NAMES = ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_states")


def _skip_unavailable(backend, device):
    if not _backend.available(backend):
        pytest.skip(f"backend {backend} unavailable: {_backend.backends()[backend]['reason']}")
    if backend == "cpu" and device != "cpu":
        pytest.skip("cpu backend runs on CPU tensors")
    if backend == "cuda" and device != "cuda":
        pytest.skip("cuda backend runs on CUDA tensors")
    if backend == "cpu":
        from mamba_kernels.ssd.interface import _cpu_available
        if not _cpu_available():
            pytest.skip("ssd C++ CPU op not built into mamba_kernels._C")


def check_against_ref(backend, device, dtype, b, l, h, p, n, g, chunk, *, cu=None, D_shape="h", z=True, bias=True,
                      init=True, softplus=True, dt_limit=(0.01, 3.0), grads=True, factor=1.0, grad_factor=4.0,
                      A_scale=None, chunk_states=True):
    """Forward outputs (y, final states, chunk states unless chunk_states=False) and every gradient vs the float64
    reference."""
    nseq = None if cu is None else len(cu) - 1
    inp = make_inputs(b, l, h, p, n, g, dtype=dtype, device=device, D_shape=D_shape, z=z, bias=bias, init=init,
                      nseq=nseq, requires_grad=grads, A_scale=A_scale)
    cu_t = None if cu is None else torch.tensor(cu, dtype=torch.int32, device=device)
    kw = dict(dt_softplus=softplus, dt_limit=dt_limit, cu_seqlens=cu_t, return_final_states=True,
              return_chunk_states=True)
    ref_inp = {k: v.detach().to(F64).requires_grad_(grads) for k, v in inp.items()}
    yr, finr, csr = ssd_chunked_ref(**ref_inp, chunk_size=chunk, **kw)
    if chunk_states:
        y, fin, cs = ssd_chunked_scan(**inp, chunk_size=chunk, backend=backend, **kw)
    else:  # the kernels may run at another chunk size then (compute_chunk_size); compare what is returned
        y, fin = ssd_chunked_scan(**inp, chunk_size=chunk, backend=backend, **dict(kw, return_chunk_states=False))
        cs, csr = torch.zeros(1, dtype=F64), torch.zeros(1, dtype=F64)
    assert y.dtype == dtype and y.shape == (b, l, h, p)
    assert_close(y, yr, dtype, factor=factor, name="out")
    assert_close(fin, finr, dtype, factor=factor, name="final_states")
    assert_close(cs, csr, dtype, factor=factor, name="chunk_states")
    if not grads:
        return
    gy, gf, gc = torch.randn_like(yr), torch.randn_like(finr), torch.randn_like(csr)
    loss = (y.to(F64) * gy).sum() + (fin.to(F64) * gf).sum() + (cs.to(F64) * gc).sum()
    loss_r = (yr * gy).sum() + (finr * gf).sum() + (csr * gc).sum()
    names = [k for k in GRAD_NAMES if k in inp]
    got = torch.autograd.grad(loss, [inp[k] for k in names])
    exp = torch.autograd.grad(loss_r, [ref_inp[k] for k in names])
    for k, a, e in zip(names, got, exp):
        assert a.dtype == inp[k].dtype and a.shape == inp[k].shape, k
        assert_close(a, e, a.dtype if a.dtype != torch.float32 or dtype == torch.float32 else dtype,
                     factor=grad_factor * factor, name=f"d{k}")


# (b, l, h, p, n, g, chunk, options); small enough for the Triton interpreter on 2 cores
CPU_CASES = {
    "b2-l37-h4-p16-n16-g2-Q16": (2, 37, 4, 16, 16, 2, 16, {}),
    "b1-l1-h2-p8-n5-g1-Q16": (1, 1, 2, 8, 5, 1, 16, {}),
    "b2-l50-h4-p8-n16-g4-Q16-Dhp-noz-noinit": (2, 50, 4, 8, 16, 4, 16,
                                               dict(D_shape="hp", z=False, init=False, dt_limit=None)),
    "b1-l32-h2-p16-n8-g1-Q16-bare": (1, 32, 2, 16, 8, 1, 16,
                                     dict(D_shape=None, z=False, bias=False, init=False, softplus=False,
                                          dt_limit=None)),
    "b1-l50-varlen-1-2-17-30": (1, 50, 4, 8, 16, 2, 16, dict(cu=[0, 1, 3, 20, 50])),
    "b1-l40-varlen-empty-seqs": (1, 40, 2, 16, 8, 1, 16, dict(cu=[0, 0, 17, 17, 40], D_shape="hp")),
    # Under the interpreter the Triton launchers use 16-wide blocks, so these have several row / token / p blocks
    # per chunk (off-diagonal decay factorisation, p blocks, head loops of grouped kernels).
    "b1-l100-h4-p32-n16-g2-Q48": (1, 100, 4, 32, 16, 2, 48, {}),
    "b1-l70-h2-p32-n24-g2-Q32-hpg1-Dhp": (1, 70, 2, 32, 24, 2, 32, dict(D_shape="hp")),
    "b1-l90-h4-p16-n16-g1-varlen-Q32": (1, 90, 4, 16, 16, 1, 32, dict(cu=[0, 5, 40, 41, 90])),
    # steep decay on some heads (|A dt| ~ 10-40 per token): the forward chunk scan's diagonal blocks exceed its
    # factorisation span and take the exact per-head path; other blocks / heads stay on the shared-dot path
    "b1-l60-h4-p16-n16-g1-Q32-steep": (1, 60, 4, 16, 16, 1, 32, dict(A_scale=[40.0, 1.0, 1.0, 0.02])),
}


@pytest.mark.parametrize("case", list(CPU_CASES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_cpu_tensors_vs_ref(backend, case):
    _skip_unavailable(backend, "cpu")
    b, l, h, p, n, g, chunk, opts = CPU_CASES[case]
    check_against_ref(backend, "cpu", torch.float32, b, l, h, p, n, g, chunk, **opts)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64], ids=["bf16", "fp16", "fp64"])
@pytest.mark.parametrize("backend", ["ref", "cpu"])
def test_cpu_backends_other_dtypes(backend, dtype):
    _skip_unavailable(backend, "cpu")
    check_against_ref(backend, "cpu", dtype, 2, 37, 4, 8, 16, 2, 16, D_shape="hp", cu=None)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_triton_cpu_half_inputs(dtype):
    """Half-precision inputs through the (interpreted) Triton backend: bf16 keeps states_in, dy, dS, CB and dCB in
    bf16 buffers (the interpreter runs the dots in fp32, the GPU in bf16 / fp16)."""
    _skip_unavailable("triton", "cpu")
    check_against_ref("triton", "cpu", dtype, 1, 50, 4, 32, 16, 2, 32, D_shape="hp", grad_factor=5.0)


@pytest.mark.parametrize("case", [(1, 300, 4, 64, 128, 2, 256), (1, 200, 2, 128, 64, 2, 128),
                                  (1, 150, 8, 64, 32, 1, 64)],
                         ids=["b1-l300-h4-p64-n128-g2-Q256", "b1-l200-h2-p128-n64-g2-Q128-hpg1",
                              "b1-l150-h8-p64-n32-g1-Q64-hpg8"])
def test_triton_cpu_gpu_configs_bf16_emulation(case, monkeypatch):
    """The GPU block configs (64-row blocks, 128-token state blocks, 128-row dB / dC blocks) under the interpreter,
    with dot operands rounded to bf16 as on the GPU: checks the indexing of the real configs and the bf16 tolerances
    of the GPU tests on CPU."""
    _skip_unavailable("triton", "cpu")
    from mamba_kernels.ssd import triton as tri
    monkeypatch.setitem(tri._EMULATE, "half_dots", True)
    check_against_ref("triton", "cpu", torch.bfloat16, *case, grad_factor=5.0)


@pytest.mark.parametrize("case", ["b1-l90-h4-p16-n16-g1-varlen-Q32", "b1-l70-h2-p32-n24-g2-Q32-hpg1-Dhp",
                                  "b1-l60-h4-p16-n16-g1-Q32-steep", "b2-l50-h4-p8-n16-g4-Q16-Dhp-noz-noinit"])
def test_triton_cpu_kernel_variants(case, monkeypatch):
    """The non-default kernel of each A/B pair (mamba_kernels.ssd.triton._FWD): the one-head chunk scan (also used
    on the GPU for fp32 inputs) and the head-block backward dx kernel."""
    _skip_unavailable("triton", "cpu")
    from mamba_kernels.ssd import triton as tri
    monkeypatch.setitem(tri._FWD, "scan", "legacy" if tri._FWD["scan"] == "heads" else "heads")
    monkeypatch.setitem(tri._FWD, "bwd_dx", "legacy" if tri._FWD["bwd_dx"] == "heads" else "heads")
    b, l, h, p, n, g, chunk, opts = CPU_CASES[case]
    check_against_ref("triton", "cpu", torch.float32, b, l, h, p, n, g, chunk, **opts)


@pytest.mark.parametrize("bwd_dx", ["legacy", "heads"])
@pytest.mark.parametrize("case", ["b1-l90-h4-p16-n16-g1-varlen-Q32", "b1-l70-h2-p32-n24-g2-Q32-hpg1-Dhp",
                                  "b1-l60-h4-p16-n16-g1-Q32-steep", "b2-l50-h4-p8-n16-g4-Q16-Dhp-noz-noinit"])
def test_triton_cpu_state_out_da_in_dx_kernel(case, bwd_dx, monkeypatch):
    """_FWD["da_out"] = "dx" (the A/B alternative; the default forms the state-out path's d a in B4's dC launch):
    that d a formed by the dx kernel instead (both dx kernels; p in two B4 blocks at p 32; no initial state;
    varlen; steep decay): every gradient."""
    _skip_unavailable("triton", "cpu")
    from mamba_kernels.ssd import triton as tri
    monkeypatch.setitem(tri._FWD, "da_out", "dx")
    monkeypatch.setitem(tri._FWD, "bwd_dx", bwd_dx)
    b, l, h, p, n, g, chunk, opts = CPU_CASES[case]
    check_against_ref("triton", "cpu", torch.float32, b, l, h, p, n, g, chunk, **opts)


@pytest.mark.parametrize("bwd_dx, over", [("legacy", dict(bwd_dx=dict(BM=32))), ("heads", dict(bwd_dx_h=dict(BM=32))),
                                          ("legacy", dict(bwd_dcb=dict(BM=32))), ("legacy", dict(chunk_scan=dict(BM=32)))],
                         ids=["dx-BM32", "dxh-BM32", "dcb-BM32", "scan-BM32"])
def test_triton_cpu_blocks_unlike_cb_blocks(bwd_dx, over, monkeypatch):
    """Row blocks other than the CB kernel's (sweep configs; the interpreter's CB blocks are 16 and its unwritten
    blocks above the diagonal NaN): a dx / dCB block of a whole 32-token chunk reads CB only on and below the
    diagonal, and the one-head forward scan at 32-row blocks gets CB in 32-blocks. Partial last chunk, varlen slots,
    steep decay; forward and every gradient."""
    _skip_unavailable("triton", "cpu")
    from mamba_kernels.ssd import triton as tri
    monkeypatch.setitem(tri._FWD, "scan", "legacy")
    monkeypatch.setitem(tri._FWD, "bwd_dx", bwd_dx)
    for k, v in over.items():
        monkeypatch.setitem(tri._CFG_OVERRIDE, k, v)
    for case in ("b1-l90-h4-p16-n16-g1-varlen-Q32", "b1-l60-h4-p16-n16-g1-Q32-steep"):
        b, l, h, p, n, g, chunk, opts = CPU_CASES[case]
        check_against_ref("triton", "cpu", torch.float32, b, l, h, p, n, g, chunk, **opts)


@pytest.mark.parametrize("hsplit", [2, 3])
def test_triton_cpu_split_programs(hsplit, monkeypatch):
    """The split-program config of the bench sweeps (not a default): the dCB kernel with a group's heads over hsplit
    programs (fp32 atomics; 3 does not divide the 4 heads a group), through partial last chunks, varlen slots and
    steep decay, forward and every gradient."""
    _skip_unavailable("triton", "cpu")
    from mamba_kernels.ssd import triton as tri
    monkeypatch.setitem(tri._FWD, "scan", "legacy")
    monkeypatch.setitem(tri._FWD, "bwd_dx", "legacy")
    monkeypatch.setitem(tri._CFG_OVERRIDE, "bwd_dcb", dict(HSPLIT=hsplit))
    for case in ("b1-l90-h4-p16-n16-g1-varlen-Q32", "b1-l60-h4-p16-n16-g1-Q32-steep"):
        b, l, h, p, n, g, chunk, opts = CPU_CASES[case]
        check_against_ref("triton", "cpu", torch.float32, b, l, h, p, n, g, chunk, **opts)


def test_compute_chunk_size():
    """A call without returned chunk states (with or without autograd) runs at 128 on the Triton backend on CUDA
    tensors for chunk_size > 128; everything else runs at the requested size."""
    from mamba_kernels.ssd.interface import compute_chunk_size
    assert compute_chunk_size("triton", 256, False, "cuda") == 128
    assert compute_chunk_size("triton", 200, False, torch.device("cuda", 0)) == 128
    assert compute_chunk_size("triton", 256, True, "cuda") == 256
    assert compute_chunk_size("triton", 128, False, "cuda") == 128
    assert compute_chunk_size("triton", 64, False, "cuda") == 64
    assert compute_chunk_size("triton", 256, False, "cpu") == 256
    for be in ("cuda", "cpu", "ref"):
        assert compute_chunk_size(be, 256, False, "cuda") == 256


def test_chunk_size_without_chunk_states_cpu(monkeypatch):
    """chunk_size without return_chunk_states (the path where a backend may pick its own chunk size): outputs and
    every gradient still match the reference at the requested chunk size, also when the kernels run at a smaller
    one (the GPU rule of compute_chunk_size applied on the CPU here: chunk 32 requested, 16 run)."""
    from mamba_kernels.ssd import interface
    for backend in ("cpu", "triton"):
        _skip_unavailable(backend, "cpu")
        check_against_ref(backend, "cpu", torch.float32, 1, 70, 2, 16, 16, 1, 32, chunk_states=False)
    _skip_unavailable("triton", "cpu")
    ran = []
    monkeypatch.setattr(interface, "compute_chunk_size",
                        lambda be, q, states, dev: ran.append(q) or (16 if not states and q > 16 else q))
    check_against_ref("triton", "cpu", torch.float32, 1, 70, 2, 16, 16, 1, 32, chunk_states=False)
    check_against_ref("triton", "cpu", torch.float32, 1, 50, 4, 8, 16, 2, 32, chunk_states=False,
                      cu=[0, 1, 3, 20, 50])
    assert ran == [32, 32]


def test_triton_cpu_head_blocks_with_p_blocks(monkeypatch):
    """Head-block kernels with each head's p split over programs (a config override of the bench sweeps)."""
    _skip_unavailable("triton", "cpu")
    from mamba_kernels.ssd import triton as tri
    monkeypatch.setitem(tri._FWD, "bwd_dx", "heads")
    monkeypatch.setitem(tri._CFG_OVERRIDE, "scan", dict(HB=2, BP=8))
    monkeypatch.setitem(tri._CFG_OVERRIDE, "bwd_dx_h", dict(HB=2, BP=8))
    check_against_ref("triton", "cpu", torch.float32, 1, 60, 4, 16, 16, 1, 32, D_shape="hp",
                      A_scale=[40.0, 1.0, 1.0, 0.02])


def test_triton_forward_without_grad():
    """No autograd: the pre-gate output is not stored, and the output is bitwise the same; chunk-entry states are
    fp32 when returned."""
    _skip_unavailable("triton", "cpu")
    inp = make_inputs(1, 40, 2, 16, 16, 1, dtype=torch.bfloat16, init=True)
    kw = dict(chunk_size=16, dt_softplus=True, backend="triton")
    with torch.no_grad():
        y0 = ssd_chunked_scan(**inp, **kw)
        args = (inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], inp["D"], inp["z"], inp["dt_bias"],
                inp["initial_states"], None, 16, True, False, 0.0, float("inf"), "triton")
        _, ypre, s_in, _ = ssd_chunked_fwd(*args, False, False)
        assert ypre.numel() == 0 and s_in.dtype == torch.bfloat16
        _, ypre, s_in, _ = ssd_chunked_fwd(*args, True, True)
        assert ypre.shape == inp["x"].shape and ypre.dtype == torch.bfloat16 and s_in.dtype == torch.float32
    leaves = {k: v.clone().requires_grad_(True) for k, v in inp.items()}
    y1 = ssd_chunked_scan(**leaves, **kw)
    assert y1.requires_grad and torch.equal(y0, y1.detach())
    _, fin, cs = ssd_chunked_scan(**leaves, **kw, return_final_states=True, return_chunk_states=True)
    assert fin.dtype == torch.float32 and cs.dtype == torch.float32


def test_default_backend_on_cpu_is_cpu_when_built():
    from mamba_kernels.ssd.interface import _cpu_available
    d = make_inputs(1, 8, 2, 4, 4, 1, dtype=torch.float32)
    y = ssd_chunked_scan(**d, chunk_size=4)
    expected = "cpu" if _cpu_available() else "ref"
    assert_close(y, ssd_chunked_scan(**d, chunk_size=4, backend=expected), torch.float32)
    assert _backend.resolve(None, torch.device("cpu"), ("ref", "cpu")) == ("cpu" if _backend.available("cpu")
                                                                           else "ref")


def test_ref_backend_float64_gradcheck():
    """Autograd wiring of the custom op (ref backend) against finite differences, tiny shapes."""
    inp = make_inputs(1, 5, 2, 2, 3, 1, D_shape="hp", init=True, requires_grad=True)

    def f(*args):
        kw = dict(zip(GRAD_NAMES, args))
        y, fin, cs = ssd_chunked_scan(kw["x"], kw["dt"], kw["A"], kw["B"], kw["C"], 2, D=kw["D"], z=kw["z"],
                                      dt_bias=kw["dt_bias"], initial_states=kw["initial_states"],
                                      dt_softplus=True, return_final_states=True, return_chunk_states=True,
                                      backend="ref")
        return y, fin, cs
    assert torch.autograd.gradcheck(f, tuple(inp[k] for k in GRAD_NAMES))


@pytest.mark.parametrize("used", ["out", "final", "chunk_states", "final+chunk_states"])
@pytest.mark.parametrize("backend", ["ref", "cpu", "triton"])
def test_gradients_when_outputs_are_unused(backend, used):
    """Outputs left out of the loss reach the backward as None (no zero gradients are materialised): every input's
    gradient still matches the reference's when the loss uses only y, only the final states, or only the chunk
    states."""
    _skip_unavailable(backend, "cpu")
    inp = make_inputs(1, 40, 2, 16, 16, 1, D_shape="h", init=True, requires_grad=True)
    kw = dict(dt_softplus=True, return_final_states=True, return_chunk_states=True)
    ref_inp = {k: v.detach().to(F64).requires_grad_(True) for k, v in inp.items()}
    outs = ssd_chunked_scan(**inp, chunk_size=16, backend=backend, **kw)
    outs_r = ssd_chunked_ref(**ref_inp, chunk_size=16, **kw)
    pick = {"out": [0], "final": [1], "chunk_states": [2], "final+chunk_states": [1, 2]}[used]
    torch.manual_seed(1)
    gs = [torch.randn_like(outs_r[i]) for i in pick]
    loss = sum((outs[i].to(F64) * g).sum() for i, g in zip(pick, gs))
    loss_r = sum((outs_r[i] * g).sum() for i, g in zip(pick, gs))
    names = [k for k in GRAD_NAMES if k in inp]
    got = torch.autograd.grad(loss, [inp[k] for k in names], allow_unused=True)
    exp = torch.autograd.grad(loss_r, [ref_inp[k] for k in names], allow_unused=True)
    for k, a, e in zip(names, got, exp):
        a = torch.zeros_like(inp[k]) if a is None else a
        e = torch.zeros_like(ref_inp[k]) if e is None else e
        assert_close(a, e, torch.float32, factor=4.0, name=f"d{k} ({used})")


def test_triton_float64_inputs_gradcheck_loose():
    """Triton backend's autograd wiring with fp64 tensors (fp32 math inside, so loose tolerances)."""
    _skip_unavailable("triton", "cpu")
    inp = make_inputs(1, 5, 2, 16, 16, 1, D_shape="h", init=True, requires_grad=True)

    def f(*args):
        kw = dict(zip(GRAD_NAMES, args))
        y, fin = ssd_chunked_scan(kw["x"], kw["dt"], kw["A"], kw["B"], kw["C"], 4, D=kw["D"], z=kw["z"],
                                  dt_bias=kw["dt_bias"], initial_states=kw["initial_states"], dt_softplus=True,
                                  return_final_states=True, backend="triton")
        return y, fin
    assert torch.autograd.gradcheck(f, tuple(inp[k] for k in GRAD_NAMES), eps=1e-3, atol=5e-3, rtol=5e-3,
                                    fast_mode=True)


def _op_args(backend, device="cpu", dtype=torch.float32, cu=None):
    inp = make_inputs(1, 20, 2, 16, 16, 1, dtype=dtype, device=device, D_shape="hp", init=True,
                      nseq=None if cu is None else len(cu) - 1)
    cu_t = None if cu is None else torch.tensor(cu, dtype=torch.int32, device=device)
    return (inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], inp["D"], inp["z"], inp["dt_bias"],
            inp["initial_states"], cu_t, 16, True, True, 0.01, 3.0, backend)


@pytest.mark.parametrize("cu", [None, [0, 7, 20]], ids=["dense", "varlen"])
@pytest.mark.parametrize("backend", ["ref", "cpu", "triton"])
def test_opcheck_fwd(backend, cu):
    _skip_unavailable(backend, "cpu")
    args = _op_args(backend, cu=cu)
    for t in args[:9]:
        t.requires_grad_(True)
    utils = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")
    if backend in ("ref", "cpu") and cu is not None:
        # The ref (and cpu) backend's backward re-runs python_ref under torch autograd; the reference reads cu_seqlens
        # values on the host, which AOT autograd cannot trace (data-dependent). Triton's backward is a custom op.
        utils = utils[:-1]
    torch.library.opcheck(ssd_chunked_fwd, args, test_utils=utils)


@pytest.mark.parametrize("flags", [(False, False), (True, False)], ids=["no-ypre", "bf16-states"])
def test_opcheck_fwd_triton_flags(flags):
    _skip_unavailable("triton", "cpu")
    args = _op_args("triton", dtype=torch.bfloat16)
    for t in args[:9]:
        t.requires_grad_(True)
    torch.library.opcheck(ssd_chunked_fwd, args + flags,
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


def test_opcheck_bwd_triton():
    _skip_unavailable("triton", "cpu")
    args = _op_args("triton")
    out, ypre, states_in, final = ssd_chunked_fwd(*args)
    bargs = (torch.randn_like(out), torch.randn_like(states_in), torch.randn_like(final), *args[:10], ypre,
             states_in, *args[10:])
    torch.library.opcheck(ssd_chunked_bwd, bargs)


# --------------------------------------------------------------------------------------------- bad inputs
def _good():
    return make_inputs(1, 8, 4, 4, 4, 2, D_shape="h", init=True)


@pytest.mark.parametrize("mutate,exc,match", [
    (lambda d: d.update(B=torch.randn(1, 8, 3, 4, dtype=F64), C=torch.randn(1, 8, 3, 4, dtype=F64)),
     ValueError, "divisible"),
    (lambda d: d.update(dt=torch.randn(1, 7, 4, dtype=F64)), ValueError, "dt"),
    (lambda d: d.update(C=torch.randn(1, 8, 2, 5, dtype=F64)), ValueError, "C"),
    (lambda d: d.update(B=torch.randn(1, 9, 2, 4, dtype=F64)), ValueError, "B"),
    (lambda d: d.update(x=d["x"].to(torch.int32)), TypeError, "x"),
    (lambda d: d.update(A=torch.randn(3, dtype=F64)), ValueError, "A"),
    (lambda d: d.update(D=torch.randn(4, 3, dtype=F64)), ValueError, "D"),
    (lambda d: d.update(z=torch.randn(1, 8, 4, 3, dtype=F64)), ValueError, "z"),
    (lambda d: d.update(dt_bias=torch.randn(4, dtype=F64).to(torch.int64)), TypeError, "dt_bias"),
    (lambda d: d.update(initial_states=torch.randn(2, 4, 4, 4, dtype=F64)), ValueError, "initial_states"),
    (lambda d: d.update(chunk_size=0), ValueError, "chunk_size"),
    (lambda d: d.update(chunk_size=16.0), TypeError, "chunk_size"),
    (lambda d: d.update(dt_limit=(1.0, 0.5)), ValueError, "dt_limit"),
    (lambda d: d.update(cu_seqlens=torch.tensor([0, 5, 3, 8])), ValueError, "cu_seqlens"),
    (lambda d: d.update(cu_seqlens=torch.tensor([0, 5, 7])), ValueError, "cu_seqlens"),
    (lambda d: d.update(cu_seqlens=torch.tensor([0.0, 8.0])), TypeError, "cu_seqlens"),
    (lambda d: d.update(cu_seqlens=torch.tensor([0, 4, 8])), ValueError, "initial_states"),
    (lambda d: d.update(backend="nope"), ValueError, "backend"),
], ids=["h-not-divisible-by-g", "dt-length", "C-vs-B", "B-length", "x-int", "A-shape", "D-shape", "z-shape",
        "dt_bias-int", "init-batch", "chunk-0", "chunk-float", "dt_limit-order", "cu-decreasing", "cu-end",
        "cu-float", "cu-init-count", "backend-name"])
def test_bad_inputs(mutate, exc, match):
    d = _good()
    d.update(chunk_size=4)
    mutate(d)
    with pytest.raises(exc, match=match):
        ssd_chunked_scan(**d)


def test_cu_seqlens_needs_batch_1():
    d = make_inputs(2, 8, 4, 4, 4, 2)
    with pytest.raises(ValueError, match="cu_seqlens"):
        ssd_chunked_scan(**d, chunk_size=4, cu_seqlens=torch.tensor([0, 8]))


@pytest.mark.parametrize("cu", [None, [0, 1, 3, 20, 50]], ids=["dense", "varlen"])
@pytest.mark.parametrize("g", [1, 2])
def test_triton_cpu_prep_one_launch_matches_two(cu, g):
    """_ssd_cumsum_cb_fwd_kernel (K0 and K1 as one launch, MK_SSD_PREP_ONE_LAUNCH) writes what _ssd_cumsum_fwd_kernel
    and _ssd_cb_kernel write, bit for bit (the CB blocks above the diagonal stay unwritten, NaN, in both)."""
    _skip_unavailable("triton", "cpu")
    from mamba_kernels.ssd import triton as tri
    b = 1 if cu is not None else 2
    d = make_inputs(b, 50, 4, 8, 16, g, dtype=torch.float32, nseq=None if cu is None else len(cu) - 1)
    cu_t = None if cu is None else torch.tensor(cu, dtype=torch.int32)
    x, dt, B, C = d["x"], d["dt"], d["B"], d["C"]
    _, l, h, p, g_, n, _, Q, _, kind, _, sdt, cfg, lay = tri._setup(x, B, 16, cu_t)
    lim = (0.01, 3.0)
    dtp, a = tri._cumsum_fwd(dt, d["A"], d["dt_bias"], True, lim, lay, b, l, h, Q, cfg)
    cb = tri._cb(C, B, lay, l, g_, n, Q, kind, sdt, cfg)
    dtp1, a1, cb1 = tri._cumsum_cb_fwd(dt, d["A"], d["dt_bias"], True, lim, C, B, lay, b, l, h, g_, n, Q, kind, sdt,
                                       cfg)
    assert torch.equal(dtp1, dtp) and torch.equal(a1, a)
    assert torch.equal(cb1.isnan(), cb.isnan()) and torch.equal(cb1.nan_to_num(), cb.nan_to_num())
    assert not cb.isnan().all() and torch.isfinite(a).all()  # something was written


@pytest.mark.parametrize("one_launch", ["1", "0"])
def test_triton_cpu_backward_with_prep_one_launch(monkeypatch, one_launch):
    """MK_SSD_PREP_ONE_LAUNCH=1 (the default): the backward's K0 and K1 as one launch (_cumsum_cb_fwd); =0: as two.
    Outputs and every gradient match the float64 reference either way (varlen, groups, D per channel)."""
    _skip_unavailable("triton", "cpu")
    monkeypatch.setenv("MK_SSD_PREP_ONE_LAUNCH", one_launch)
    from mamba_kernels.ssd import triton as tri
    calls = []
    real = tri._cumsum_cb_fwd
    monkeypatch.setattr(tri, "_cumsum_cb_fwd", lambda *a, **k: calls.append(1) or real(*a, **k))
    check_against_ref("triton", "cpu", torch.float32, 1, 50, 4, 8, 16, 2, 16, cu=[0, 1, 3, 20, 50], D_shape="hp")
    assert bool(calls) == (one_launch == "1"), f"one-launch K0 + K1 ran {len(calls)} times with {one_launch}"
