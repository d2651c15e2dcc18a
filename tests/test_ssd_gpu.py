"""GPU tests of the chunked SSD (Mamba-2) scan (pytest -m gpu on a CUDA machine): the Triton and CUDA backends
against the float64 reference on the issue's awkward shapes and every dtype, opcheck, torch.compile, CUDA graphs,
the CUDA kernels' own checks. Helpers and the CPU tests: tests/test_ssd.py."""
from __future__ import annotations

import re

import pytest
import torch

from mamba_kernels.ssd import ssd_chunked_scan
from mamba_kernels.ssd.interface import ssd_chunked_bwd, ssd_chunked_fwd
from mamba_kernels.testing import assert_close
from test_ssd import _op_args, _skip_unavailable, check_against_ref, make_inputs


# --------------------------------------------------------------------------------------------- GPU
# (b, l, h, p, n, g, chunk, options); every case checks the forward outputs and every gradient.
GPU_CASES = {}
for _q in (64, 128, 256):
    for _l in (1, 255, 1000):
        GPU_CASES[f"b2-l{_l}-h4-p64-n128-g1-Q{_q}"] = (2, _l, 4, 64, 128, 1, _q, {})
for _p in (32, 64, 128):
    for _n in (16, 64, 128, 256):
        GPU_CASES[f"b1-l777-h4-p{_p}-n{_n}-g2-Q256"] = (1, 777, 4, _p, _n, 2, 256, dict(D_shape="hp"))
for _g in (1, 8, 16):
    GPU_CASES[f"b2-l300-h16-p64-n64-g{_g}-Q128"] = (2, 300, 16, 64, 64, _g, 128, {})
GPU_CASES["b1-l2050-varlen-short-long-Q256"] = (1, 2050, 4, 64, 128, 1, 256,
                                                dict(cu=[0, 1, 2, 5, 300, 301, 2000, 2000, 2050]))
GPU_CASES["b1-l1100-varlen-Q64-noz-noinit"] = (1, 1100, 8, 128, 128, 8, 64,
                                               dict(cu=[0, 3, 64, 65, 1100], z=False, init=False, dt_limit=None))
GPU_CASES["b2-l513-h32-p128-n128-g32-Q256-llama"] = (2, 513, 32, 128, 128, 32, 256, {})
GPU_CASES["b1-l400-h4-p64-n128-g1-Q100-odd-chunk"] = (1, 400, 4, 64, 128, 1, 100, {})
GPU_CASES["b1-l600-h80-p64-n128-g1-Q256-hpg80"] = (1, 600, 80, 64, 128, 1, 256, {})  # issue shape's head grouping
GPU_CASES["b2-l300-h80-p64-n128-g1-Q256"] = (2, 300, 80, 64, 128, 1, 256, {})  # 160 state walks (> SMs: capped)
GPU_CASES["b1-l1500-h48-p64-n128-g1-Q256-varlen-walks"] = (1, 1500, 48, 64, 128, 1, 256,  # 192 varlen walks
                                                           dict(cu=[0, 7, 700, 701, 1500]))
GPU_CASES["b1-l300-h2-p256-n64-g2-Q128"] = (1, 300, 2, 256, 64, 2, 128, {})  # p in two blocks of 128 (Triton scan)

GPU_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", list(GPU_DTYPES))
@pytest.mark.parametrize("case", list(GPU_CASES))
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_gpu_vs_ref(backend, case, dtype, monkeypatch):
    _skip_unavailable(backend, "cuda")
    monkeypatch.setenv("MK_SSD_CUDA_BWD", "1")  # backend cuda: the CUDA backward (opt-in) against the reference
    b, l, h, p, n, g, chunk, opts = GPU_CASES[case]
    check_against_ref(backend, "cuda", GPU_DTYPES[dtype], b, l, h, p, n, g, chunk, grad_factor=5.0, **opts)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", list(GPU_DTYPES))
@pytest.mark.parametrize("case", ["b2-l1000-h4-p64-n128-g1-Q256", "b1-l2050-varlen-short-long-Q256",
                                  "b2-l513-h32-p128-n128-g32-Q256-llama", "b1-l300-h2-p256-n64-g2-Q128",
                                  "b2-l300-h80-p64-n128-g1-Q256"])
def test_gpu_triton_without_chunk_states(case, dtype):
    """chunk_size 256 without return_chunk_states: the Triton kernels run at 128 (compute_chunk_size), forward alone
    and forward + backward; outputs, final states and every gradient match the reference at 256 (b2 h80: 160 state
    walks, the register-capped walk configs)."""
    _skip_unavailable("triton", "cuda")
    b, l, h, p, n, g, chunk, opts = GPU_CASES[case]
    with torch.no_grad():
        check_against_ref("triton", "cuda", GPU_DTYPES[dtype], b, l, h, p, n, g, chunk, grads=False,
                          chunk_states=False, **opts)
    check_against_ref("triton", "cuda", GPU_DTYPES[dtype], b, l, h, p, n, g, chunk, grad_factor=5.0,
                      chunk_states=False, **opts)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", list(GPU_DTYPES))
@pytest.mark.parametrize("bwd_dx", ["legacy", "heads"])
@pytest.mark.parametrize("case", ["b2-l1000-h4-p64-n128-g1-Q256", "b1-l2050-varlen-short-long-Q256",
                                  "b2-l513-h32-p128-n128-g32-Q256-llama", "b1-l1100-varlen-Q64-noz-noinit"])
def test_gpu_triton_state_out_da_in_dx_kernel(case, bwd_dx, dtype, monkeypatch):
    """_FWD["da_out"] = "dx" (the A/B alternative: the state-out path's d a formed by the dx kernel instead of B4's
    dC launch): every gradient, with both dx kernels."""
    _skip_unavailable("triton", "cuda")
    from mamba_kernels.ssd import triton as tri
    monkeypatch.setitem(tri._FWD, "da_out", "dx")
    monkeypatch.setitem(tri._FWD, "bwd_dx", bwd_dx)
    b, l, h, p, n, g, chunk, opts = GPU_CASES[case]
    check_against_ref("triton", "cuda", GPU_DTYPES[dtype], b, l, h, p, n, g, chunk, grad_factor=5.0, **opts)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["ref", "triton", "cuda"])
def test_gpu_opcheck_fwd(backend):
    args = _op_args(backend, device="cuda", dtype=torch.bfloat16, cu=[0, 7, 20])
    for t in args[:9]:
        t.requires_grad_(True)
    utils = ("test_schema", "test_autograd_registration", "test_faketensor")
    torch.library.opcheck(ssd_chunked_fwd, args, test_utils=utils + (("test_aot_dispatch_dynamic",)
                                                                     if backend == "triton" else ()))


@pytest.mark.gpu
def test_gpu_torch_compile_triton():
    inp = make_inputs(2, 300, 4, 64, 64, 2, dtype=torch.bfloat16, device="cuda", init=True, requires_grad=True)

    def f(**kw):
        return ssd_chunked_scan(**kw, chunk_size=128, dt_softplus=True, return_final_states=True,
                                backend="triton")
    y, fin = torch.compile(f)(**inp)
    y2, fin2 = f(**inp)
    assert_close(y, y2.float(), torch.bfloat16, name="compiled out")
    assert_close(fin, fin2, torch.float32, name="compiled final")
    (y.float().sum() + fin.sum()).backward()
    assert all(v.grad is not None and torch.isfinite(v.grad).all() for v in inp.values())


def _captured_forward(inp, kw):
    """ssd_chunked_scan(**inp, **kw) warmed up on a side stream, then captured in a CUDA graph: (graph, outputs)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        ssd_chunked_scan(**inp, **kw)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = ssd_chunked_scan(**inp, **kw)
    return graph, outs


@pytest.mark.gpu
def test_gpu_forward_sync_free_and_cuda_graph():
    """Without cu_seqlens the Triton forward does no host sync and replays from a CUDA graph bitwise."""
    inp = make_inputs(2, 700, 8, 64, 128, 2, dtype=torch.bfloat16, device="cuda", init=True)
    kw = dict(chunk_size=256, dt_softplus=True, return_final_states=True, backend="triton")
    with torch.no_grad():
        y_ref, f_ref = ssd_chunked_scan(**inp, **kw)  # compiles the kernels
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            ssd_chunked_scan(**inp, **kw)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        graph, (y, f) = _captured_forward(inp, kw)
        graph.replay()
        torch.cuda.synchronize()
    assert torch.equal(y, y_ref) and torch.equal(f, f_ref)


@pytest.mark.gpu
def test_gpu_backward_sync_free():
    """Forward + backward without cu_seqlens: no host sync anywhere (kernels compiled by a first call)."""
    inp = make_inputs(2, 300, 8, 64, 64, 2, dtype=torch.bfloat16, device="cuda", init=True, requires_grad=True)
    leaves = list(inp.values())

    def step():
        y, fin = ssd_chunked_scan(**inp, chunk_size=128, dt_softplus=True, return_final_states=True,
                                  backend="triton")
        return torch.autograd.grad((y.float().square().sum() + fin.sum()), leaves)
    g0 = step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        g1 = step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for k, a, b_ in zip(inp, g0, g1):
        assert_close(b_, a.float(), a.dtype if a.dtype != torch.float32 else torch.bfloat16, name=f"d{k} rerun")



@pytest.mark.gpu
def test_gpu_cuda_forward_kernel_is_built():
    """backend="cuda" falls back to the Triton forward where the CUDA kernel does not serve a call (and when the
    extension lacks the op): the kernel itself must be there, or every cuda test above timed Triton."""
    _skip_unavailable("cuda", "cuda")
    from mamba_kernels.ssd import cuda as ssd_cuda
    assert ssd_cuda.available(), "mamba_kernels._cuda has no _ssd_fwd_cuda op: rebuild the extension"


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_gpu_cuda_forward_strided_inputs(dtype):
    """Non-contiguous x / z / B / C / dt views (the kernel takes their strides) give the contiguous result."""
    _skip_unavailable("cuda", "cuda")
    inp = make_inputs(2, 300, 4, 64, 128, 2, dtype=dtype, device="cuda", init=True)
    strided = dict(inp)
    for k in ("x", "z", "B", "C", "dt"):
        t = inp[k]
        big = torch.empty(*t.shape[:-1], t.shape[-1] + 8, dtype=t.dtype, device=t.device) if k != "dt" else \
            torch.empty(t.shape[0], t.shape[1], t.shape[2] * 3, dtype=t.dtype, device=t.device)
        view = big[..., :t.shape[-1]] if k != "dt" else big[..., ::3]
        view.copy_(t)
        strided[k] = view
    kw = dict(chunk_size=128, dt_softplus=True, return_final_states=True, return_chunk_states=True, backend="cuda")
    with torch.no_grad():
        got = ssd_chunked_scan(**strided, **kw)
        exp = ssd_chunked_scan(**inp, **kw)
    for a, e, name in zip(got, exp, ("out", "final", "chunk_states")):
        assert torch.equal(a, e), name


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=["bf16", "fp16", "fp32"])
@pytest.mark.parametrize("cu", [None, [0, 1, 130, 130, 600]], ids=["dense", "varlen"])
def test_gpu_cuda_backward_runs_the_kernel(dtype, cu, monkeypatch):
    """backend="cuda" with MK_SSD_CUDA_BWD=1 takes the CUDA backward (mamba_kernels/ssd/cuda_bwd.py) where it serves
    (op built, p, n <= 128, chunk a multiple of 64): its call counter moves, and its gradients match the Triton
    backward's on the same inputs; MK_SSD_CUDA_BWD=0 (the default) takes the Triton one. (test_gpu_vs_ref[cuda-*]
    compares the CUDA backward with the reference.)"""
    _skip_unavailable("cuda", "cuda")
    from mamba_kernels.ssd import cuda_bwd
    assert cuda_bwd.available(), "mamba_kernels._cuda has no _ssd_bwd_cuda op: rebuild the extension"
    nseq = None if cu is None else len(cu) - 1
    b, l = (2, 300) if cu is None else (1, 600)
    inp = make_inputs(b, l, 4, 64, 128, 2, dtype=dtype, device="cuda", init=True, nseq=nseq, requires_grad=True)
    cu_t = None if cu is None else torch.tensor(cu, dtype=torch.int32, device="cuda")
    names = list(inp)

    def grads():
        y, fin, cs = ssd_chunked_scan(**inp, chunk_size=128, dt_softplus=True, dt_limit=(0.01, 3.0),
                                      cu_seqlens=cu_t, return_final_states=True, return_chunk_states=True,
                                      backend="cuda")
        loss = y.float().square().sum() + fin.sum() + cs.square().sum()
        return torch.autograd.grad(loss, [inp[k] for k in names])
    before = dict(cuda_bwd.CALLS)
    monkeypatch.setenv("MK_SSD_CUDA_BWD", "1")
    g_cuda = grads()
    assert cuda_bwd.CALLS["cuda"] == before["cuda"] + 1 and cuda_bwd.CALLS["triton"] == before["triton"]
    monkeypatch.setenv("MK_SSD_CUDA_BWD", "0")
    g_tri = grads()
    assert cuda_bwd.CALLS["triton"] == before["triton"] + 1
    for k, a, e in zip(names, g_cuda, g_tri):
        assert a.dtype == inp[k].dtype and a.shape == inp[k].shape, k
        assert_close(a, e.float(), a.dtype if a.dtype != torch.float32 or dtype == torch.float32 else dtype,
                     factor=5.0, name=f"d{k} cuda vs triton backward")


@pytest.mark.gpu
def test_gpu_opcheck_bwd_cuda(monkeypatch):
    _skip_unavailable("cuda", "cuda")
    monkeypatch.setenv("MK_SSD_CUDA_BWD", "1")
    inp = make_inputs(1, 150, 2, 64, 32, 1, dtype=torch.bfloat16, device="cuda", D_shape="hp", init=True)
    args = (inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], inp["D"], inp["z"], inp["dt_bias"],
            inp["initial_states"], None, 64, True, True, 0.01, 3.0, "cuda")
    out, ypre, states_in, final = ssd_chunked_fwd(*args)
    bargs = (torch.randn_like(out), torch.randn_like(states_in), torch.randn_like(final), *args[:10], ypre,
             states_in, *args[10:])
    torch.library.opcheck(ssd_chunked_bwd, bargs)


@pytest.mark.gpu
@pytest.mark.parametrize("stores", ["direct", "staged", "pingpong", "pingpong-noypre", "pingpong-nosplit",
                                    "pingpong-noown", "pingpong-wgmma", "pingpong-wgmma-nosplit",
                                    "pingpong-wgmma-ldsm", "pingpong-wgmma-ldsm-lean",
                                    "pingpong-wgmma-ldsm-lean-ring", "pingpong-wgmma-ldsm-lean-ring-tma",
                                    "pingpong-wgmma-ldsm-lean-ring-1team"])
@pytest.mark.parametrize("D_shape", ["h", "hp", None], ids=["Dh", "Dhp", "noD"])
@pytest.mark.parametrize("cu", [None, [0, 1, 130, 130, 1000]], ids=["dense", "varlen"])
def test_gpu_triton_cuda_walk_stages(cu, D_shape, stores, monkeypatch):
    """The Triton pipeline's forward output stage and backward dx stage run the CUDA head-walk kernels
    (mamba_kernels/ssd/cuda_walk.py) for bf16, p 64, n 128, chunk 128 with >= 8 heads a group: their counters move;
    outputs and every gradient match the float64 reference, and the all-Triton pipeline (MK_SSD_CUDA_WALK=0) on the
    same inputs (also without z; the forward stage serves the no-grad and the autograd call). stores "direct":
    MK_SSD_WALK_STAGED=0 (4-byte stores from the fragments, one team of 8 warps a CTA); "staged": through the warps' staging rows, one
    team (MK_SSD_WALK_PINGPONG=0); "pingpong" (the default): staged, two teams of 8 warps a CTA on alternate items,
    the output stage serving the autograd call too (storing ypre); "pingpong-noypre": MK_SSD_WALK_YPRE=0, the Triton
    scan kernel for the autograd call; "pingpong-nosplit": MK_SSD_WALK_SPLITWAIT=0 (an item starts when its whole
    stage has landed; the default starts on its first cp.async group); "pingpong-noown": MK_SSD_WALK_OWNROWS=0 (F2's z
    rows with x in the second cp.async group; the default: by the warp that reads them); "pingpong-wgmma(-nosplit)":
    MK_SSD_WALK_WGMMA=1, the output stage's C h_in^T on wgmma (ssd_scan_wg_kernel, sm_90a; the profiler shows it
    ran; the other variants set the switch to 0); "pingpong-wgmma-ldsm": that with MK_SSD_WALK_LDSM=1 (the epilogue's
    x / z pairs by ldmatrix); "-lean": MK_SSD_WALK_LEAN_NEXT=1 as well (a team's next item two heads on by
    addition); "-ring": and MK_SSD_WALK_RING=1 (ssd_scan_ring_kernel: the three-stage ring, ssd_walk_ring.cuh);
    "-ring-tma": and MK_SSD_WALK_RING_TMA=1 (ssd_scan_ring_tma_kernel: its fills by the copy engine); "-ring-1team":
    MK_SSD_WALK_RING=1 with MK_SSD_WALK_RING_TEAMS=1 (the ring with one team of 8 warps: a lab of the fused design)."""
    _skip_unavailable("triton", "cuda")
    wgmma = "wgmma" in stores
    if wgmma and torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma variant runs on compute capability 9.0 only")
    monkeypatch.setenv("MK_SSD_WALK_WGMMA", "1" if wgmma else "0")
    monkeypatch.setenv("MK_SSD_WALK_STAGED", "0" if stores == "direct" else "1")
    monkeypatch.setenv("MK_SSD_WALK_PINGPONG", "1" if stores.startswith("pingpong") else "0")
    monkeypatch.setenv("MK_SSD_WALK_YPRE", "0" if stores == "pingpong-noypre" else "1")
    monkeypatch.setenv("MK_SSD_WALK_SPLITWAIT", "0" if stores.endswith("nosplit") else "1")
    monkeypatch.setenv("MK_SSD_WALK_OWNROWS", "0" if stores == "pingpong-noown" else "1")
    monkeypatch.setenv("MK_SSD_WALK_LDSM", "1" if "ldsm" in stores else "0")
    monkeypatch.setenv("MK_SSD_WALK_LEAN_NEXT", "1" if "-lean" in stores else "0")
    ring, ring_tma = stores.endswith("-ring") or stores.endswith("-ring-1team"), stores.endswith("-ring-tma")
    monkeypatch.setenv("MK_SSD_WALK_RING", "1" if ring or ring_tma else "0")
    monkeypatch.setenv("MK_SSD_WALK_RING_TMA", "1" if ring_tma else "0")
    monkeypatch.setenv("MK_SSD_WALK_RING_TEAMS", "1" if stores.endswith("-1team") else "2")
    from mamba_kernels.ssd import cuda_walk
    probe = torch.empty(1, device="cuda", dtype=torch.bfloat16)
    assert all(cuda_walk.serves(probe, 64, 128, 128, 8, op) for op in ("_ssd_dx_cuda", "_ssd_scan_cuda",
                                                                       "_ssd_state_cuda")), \
        "mamba_kernels._cuda lacks the head-walk ops (or MK_SSD_CUDA_WALK=0): rebuild the extension"
    nseq = None if cu is None else len(cu) - 1
    b, l, h = (2, 300, 16) if cu is None else (1, 1000, 24)
    before = dict(cuda_walk.CALLS)
    check_against_ref("triton", "cuda", torch.bfloat16, b, l, h, 64, 128, 1 if cu is None else 3, 128,
                      grad_factor=5.0, cu=cu, D_shape=D_shape, z=D_shape != "hp")
    # (returned chunk states keep fp32 chunk-entry states: the forward stages stay Triton there, the dx stage runs)
    assert _walk_calls(cuda_walk) == {"dx": before["dx"] + 1, "scan": before["scan"], "state": before["state"]}
    inp = make_inputs(b, l, h, 64, 128, 2, dtype=torch.bfloat16, device="cuda", init=True, nseq=nseq,
                      requires_grad=True, D_shape=D_shape)
    cu_t = None if cu is None else torch.tensor(cu, dtype=torch.int32, device="cuda")
    names = list(inp)

    def run():
        kw = dict(chunk_size=128, dt_softplus=True, dt_limit=(0.01, 3.0), cu_seqlens=cu_t, return_final_states=True,
                  backend="triton")
        with torch.no_grad():
            y_inf, _ = ssd_chunked_scan(**inp, **kw)
        y, fin = ssd_chunked_scan(**inp, **kw)
        loss = y.float().square().sum() + fin.sum()
        return [y_inf, y] + list(torch.autograd.grad(loss, [inp[k] for k in names]))
    mid = dict(cuda_walk.CALLS)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        got = run()
        torch.cuda.synchronize()
    ran_ring = any("ssd_scan_ring_kernel" in e.name for e in prof.events())
    assert ran_ring == ring, f"ssd_scan_ring_kernel ran: {ran_ring}, asked for: {ring}"
    ran_ring_tma = any("ssd_scan_ring_tma_kernel" in e.name for e in prof.events())
    assert ran_ring_tma == ring_tma, f"ssd_scan_ring_tma_kernel ran: {ran_ring_tma}, asked for: {ring_tma}"
    one_team = any(re.search(r"ssd_scan_ring_kernel<__nv_bfloat16, 1>", e.name) for e in prof.events())
    assert one_team == stores.endswith("-1team"), f"the one-team ring ran: {one_team}, asked for: {stores}"
    any_ring = ring or ring_tma
    ran_wg = any("ssd_scan_wg_kernel" in e.name for e in prof.events())
    assert ran_wg == (wgmma and not any_ring), f"ssd_scan_wg_kernel ran: {ran_wg}, asked for: {wgmma and not any_ring}"
    ldsm = "ldsm" in stores and not any_ring  # (the ring kernels have the ldmatrix epilogue)
    ran_ldsm = any(re.search(r"ssd_scan_wg_kernel<__nv_bfloat16, true[,>]", e.name) for e in prof.events())
    assert ran_ldsm == ldsm, f"the ldmatrix epilogue ran: {ran_ldsm}, asked for: {ldsm}"
    # the output stage serves both forwards (with autograd storing ypre; with MK_SSD_WALK_YPRE=0 the Triton scan
    # runs that one), the state stage both forwards
    done = {"dx": mid["dx"] + 1, "scan": mid["scan"] + (1 if stores == "pingpong-noypre" else 2),
            "state": mid["state"] + 2}
    assert _walk_calls(cuda_walk) == done
    monkeypatch.setenv("MK_SSD_CUDA_WALK", "0")
    exp = run()
    assert _walk_calls(cuda_walk) == done
    for k, a, e in zip(["y (no grad)", "y"] + names, got, exp):
        assert_close(a, e.float(), torch.bfloat16, factor=2.0, name=f"{k}: cuda walk stages vs triton")


@pytest.mark.gpu
@pytest.mark.parametrize("state_wide", ["0", "1", "lean2", "lean2-ring", "lean2-ring-tma"])
def test_gpu_cuda_walk_nan_sequence_stays_apart(state_wide, monkeypatch):
    """Packed sequences through the CUDA walk stages (the state stage's TMA loads, the default; state_wide "1":
    MK_SSD_STATE_WIDE, "lean2": and MK_SSD_STATE_LEAN=2, MK_SSD_WALK_LEAN_NEXT=1, "-ring": and MK_SSD_WALK_RING=1,
    F2 on the three-stage ring, "-ring-tma": its fills by TMA, the rows past a chunk's end cleared by F2): x, B and
    C of the
    last sequence all NaN leave the other sequences' outputs and final states bit for bit as without them. The chunk
    ending the sequence before it holds 1 row (that sequence is 129 tokens): the TMA loads bring the next sequence's
    rows into its tiles, and the stages must clear them (tests/test_ssd_walk_cuda_emu.py checks the same on the
    CPU)."""
    _skip_unavailable("triton", "cuda")
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the TMA variants run on compute capability 9.0 only")
    monkeypatch.setenv("MK_SSD_STATE_WIDE", "0" if state_wide == "0" else "1")
    monkeypatch.setenv("MK_SSD_STATE_LEAN", state_wide[4] if state_wide.startswith("lean") else "0")
    monkeypatch.setenv("MK_SSD_WALK_RING", "1" if "-ring" in state_wide else "0")
    monkeypatch.setenv("MK_SSD_WALK_RING_TMA", "1" if state_wide.endswith("-ring-tma") else "0")
    monkeypatch.setenv("MK_SSD_WALK_LEAN_NEXT", "1" if state_wide.startswith("lean") else "0")
    from mamba_kernels.ssd import cuda_walk
    cu = [0, 1, 130, 130, 1000]
    inp = make_inputs(1, 1000, 24, 64, 128, 3, dtype=torch.bfloat16, device="cuda", init=True, nseq=len(cu) - 1)
    kw = dict(chunk_size=128, dt_softplus=True, cu_seqlens=torch.tensor(cu, dtype=torch.int32, device="cuda"),
              return_final_states=True, backend="triton")
    before = dict(cuda_walk.CALLS)
    y0, f0 = ssd_chunked_scan(**inp, **kw)
    assert cuda_walk.CALLS["state"] > before["state"] and cuda_walk.CALLS["scan"] > before["scan"], \
        "the CUDA walk stages did not run"
    for k in ("x", "B", "C"):
        inp[k][:, cu[-2]:] = float("nan")
    y1, f1 = ssd_chunked_scan(**inp, **kw)
    torch.cuda.synchronize()
    assert torch.isnan(y1[:, cu[-2]:]).any(), "the NaN sequence's outputs are finite: the inputs were not poisoned"
    assert torch.isfinite(y1[:, :cu[-2]]).all(), "a NaN sequence reached the outputs of the sequences before it"
    assert torch.equal(y1[:, :cu[-2]], y0[:, :cu[-2]]) and torch.equal(f1[:-1], f0[:-1])


@pytest.mark.gpu
@pytest.mark.parametrize("cu", [None, [0, 1, 130, 130, 1000]], ids=["dense", "varlen"])
def test_gpu_prep_one_launch(cu, monkeypatch):
    """MK_SSD_PREP_ONE_LAUNCH=1: where the CUDA output stage serves (bf16, p 64, n 128, >= 8 heads a group), K0 and
    K1 run as one launch (_ssd_cumsum_cb_fwd_kernel, seen by the profiler), and the forward's outputs equal the
    two-launch forward's bit for bit (and the ypre-keeping autograd forward's too); F2 then follows F1 directly, as
    its programmatic dependent (MK_SSD_WALK_PDL=1), against the two-launch forward without it."""
    _skip_unavailable("triton", "cuda")
    from mamba_kernels.ssd import cuda_walk
    nseq = None if cu is None else len(cu) - 1
    b, l, h = (2, 300, 16) if cu is None else (1, 1000, 24)
    inp = make_inputs(b, l, h, 64, 128, 2, dtype=torch.bfloat16, device="cuda", init=True, nseq=nseq,
                      requires_grad=True)
    kw = dict(chunk_size=128, dt_softplus=True, dt_limit=(0.01, 3.0), return_final_states=True, backend="triton",
              cu_seqlens=None if cu is None else torch.tensor(cu, dtype=torch.int32, device="cuda"))

    def run():
        with torch.no_grad():
            y0, f0 = ssd_chunked_scan(**inp, **kw)
        y1, f1 = ssd_chunked_scan(**inp, **kw)
        return [t.detach() for t in (y0, f0, y1, f1)]
    monkeypatch.setenv("MK_SSD_PREP_ONE_LAUNCH", "0")
    monkeypatch.setenv("MK_SSD_WALK_PDL", "0")
    before = cuda_walk.CALLS["scan"]
    exp = run()
    assert cuda_walk.CALLS["scan"] == before + 2, "the CUDA output stage did not serve these inputs"
    monkeypatch.setenv("MK_SSD_PREP_ONE_LAUNCH", "1")
    monkeypatch.setenv("MK_SSD_WALK_PDL", "1")
    for t in exp:
        assert torch.isfinite(t.float()).all()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        got = run()
        torch.cuda.synchronize()
    names = [e.name for e in prof.events()]
    assert any("_ssd_cumsum_cb_fwd_kernel" in n for n in names), "the one-launch K0 + K1 did not run"
    assert not any(n.startswith("_ssd_cb_kernel") for n in names), "K1 still ran on its own"
    for k, a, e in zip(("y (no grad)", "final (no grad)", "y", "final"), got, exp):
        assert torch.equal(a, e), k


@pytest.mark.gpu
def test_gpu_state_pdl(monkeypatch):
    """MK_SSD_STATE_PDL=1 (a lab): F1 a programmatic dependent of the kernel before it (bf16 initial states: their
    conversion is that kernel here). Outputs equal the default forward's bit for bit, eagerly and replayed from a CUDA
    graph."""
    _skip_unavailable("triton", "cuda")
    from mamba_kernels.ssd import cuda_walk
    inp = make_inputs(2, 1000, 16, 64, 128, 1, dtype=torch.bfloat16, device="cuda", init=True)
    inp["initial_states"] = inp["initial_states"].to(torch.bfloat16)
    kw = dict(chunk_size=128, dt_softplus=True, return_final_states=True, backend="triton")
    with torch.no_grad():
        monkeypatch.setenv("MK_SSD_STATE_PDL", "0")
        exp = ssd_chunked_scan(**inp, **kw)
        monkeypatch.setenv("MK_SSD_STATE_PDL", "1")
        before = cuda_walk.CALLS["scan"]
        got = ssd_chunked_scan(**inp, **kw)
        torch.cuda.synchronize()
        assert cuda_walk.CALLS["scan"] == before + 1, "the CUDA output stage did not serve these inputs"
        for a, e in zip(got, exp):
            assert torch.isfinite(e.float()).all() and torch.equal(a, e)
        graph, outs = _captured_forward(inp, kw)
        for o in outs:
            o.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        for a, e in zip(outs, exp):
            assert torch.equal(a, e)


@pytest.mark.gpu
def test_gpu_forward_back_to_back_stays_put():
    """The Triton forward with its CUDA head-walk stages (the defaults), 400 calls back to back (batches of 20
    enqueued behind a GPU spin, as training loops and benchmarks run them): no CUDA error, and each batch's last output
    equal bit for bit to the first call's (the kernels are deterministic). Session 37's defaults (F2's TMA-filled
    ring) failed like this now and then ("unspecified launch failure"); scripts/stress_ssd.py --batch runs longer."""
    _skip_unavailable("triton", "cuda")
    from mamba_kernels.ssd import cuda_walk
    inp = make_inputs(2, 2048, 80, 64, 128, 1, dtype=torch.bfloat16, device="cuda")
    kw = dict(chunk_size=128, dt_softplus=True, backend="triton")
    before = cuda_walk.CALLS["scan"]
    with torch.no_grad():
        ref = ssd_chunked_scan(**inp, **kw).clone()
        assert cuda_walk.CALLS["scan"] == before + 1, "the CUDA output stage did not serve these inputs"
        assert torch.isfinite(ref.float()).all()
        for _ in range(20):
            torch.cuda.synchronize()
            torch.cuda._sleep(30_000_000)  # ~16 ms: the host enqueues the 20 calls meanwhile (no gap between them)
            for _ in range(20):
                y = ssd_chunked_scan(**inp, **kw)
            assert torch.equal(y, ref)


@pytest.mark.gpu
def test_gpu_cuda_walk_misaligned_input_runs_triton():
    """x as a contiguous view 2 bytes past a 16-byte boundary: the CUDA head-walk stages (16-byte copies) do not serve
    it (cuda_walk.tiles_aligned); the Triton kernels do, and the outputs match the same call on an aligned copy."""
    _skip_unavailable("triton", "cuda")
    from mamba_kernels.ssd import cuda_walk
    inp = make_inputs(1, 300, 16, 64, 128, 1, dtype=torch.bfloat16, device="cuda", init=True)
    buf = torch.empty(inp["x"].numel() + 8, device="cuda", dtype=torch.bfloat16)
    x_odd = buf[1:1 + inp["x"].numel()].view(inp["x"].shape)
    x_odd.copy_(inp["x"])
    assert x_odd.is_contiguous() and x_odd.data_ptr() % 16 != 0
    kw = dict(chunk_size=128, dt_softplus=True, backend="triton")
    before = dict(cuda_walk.CALLS)
    with torch.no_grad():
        y_odd = ssd_chunked_scan(**{**inp, "x": x_odd}, **kw)
        assert cuda_walk.CALLS == before
        y = ssd_chunked_scan(**inp, **kw)
    assert cuda_walk.CALLS["scan"] == before["scan"] + 1 and cuda_walk.CALLS["state"] == before["state"] + 1
    assert_close(y_odd, y.float(), torch.bfloat16, name="misaligned x (Triton) vs aligned x (CUDA stage)")


def _walk_calls(cuda_walk):
    return {k: cuda_walk.CALLS[k] for k in ("dx", "scan", "state")}


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["noskew", "skew", "wgmma", "wgmma-pairs", "wgmma-pairs-tma",
                                     "wgmma-pairs-tmaload", "wgmma-pairs-tmaload-late", "wgmma-pairs-tmaload-wide",
                                     "wgmma-pairs-tmaload-wide-lean1", "wgmma-pairs-tmaload-wide-lean2"])
@pytest.mark.parametrize("case", ["b2-l300-h16-g1", "b3-l1000-h80-g1-init", "varlen-h24-g3-init"])
def test_gpu_cuda_state_stage(case, variant, monkeypatch):
    """The forward's CUDA state stage (cuda_walk.state, csrc/ssd/ssd_state_kernel.cuh) against a float64 evaluation of
    its formula on the same dt' / a: every chunk-entry state (bf16; the stage's slots of no chunk keep their poison)
    and the final states (fp32). b3 h80 g1: 480 (head, p half) walks, several a CTA. variant: MK_SSD_STATE_SKEW on /
    off, or MK_SSD_STATE_WGMMA=1 (ssd_state_wg_kernel, sm_90a; the profiler shows it ran), "wgmma-pairs" with
    MK_SSD_STATE_PAIRS=1 too (two walks a product; its template argument shows in the kernel's name),
    "wgmma-pairs-tma" with MK_SSD_STATE_TMA=1 too (h_in by tensor-map stores; SsdStateTmaParams in the name),
    "wgmma-pairs-tmaload" with MK_SSD_STATE_TMA_LOAD=1 too (the tiles by tensor-map loads; SsdStateTmaLoadParams),
    "wgmma-pairs-tmaload-late" with MK_SSD_STATE_LATE_WAIT=1 too (the boxes' read wait moved; SsdStateLateWaitParams:
    a race there would show as wrong chunk-entry states), "wgmma-pairs-tmaload-wide" with MK_SSD_STATE_WIDE=1 as well
    (one m64n(32 W)k16 product a k16 step over every walk; SsdStateWideParams), "-lean1" / "-lean2" with
    MK_SSD_STATE_LEAN=1 / 2 (SsdStateLeanParams / SsdStateRowScaleParams)."""
    _skip_unavailable("triton", "cuda")
    wgmma, pairs, tma = variant.startswith("wgmma"), variant.startswith("wgmma-pairs"), "tma" in variant
    tma_load, wide = variant.startswith("wgmma-pairs-tmaload"), "-wide" in variant
    late, lean = variant.endswith("late") or wide, variant[-1] if "-lean" in variant else "0"
    if wgmma and torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma variant runs on compute capability 9.0 only")
    monkeypatch.setenv("MK_SSD_STATE_SKEW", "1" if variant == "skew" else "0")
    monkeypatch.setenv("MK_SSD_STATE_WGMMA", "1" if wgmma else "0")
    monkeypatch.setenv("MK_SSD_STATE_PAIRS", "1" if pairs else "0")
    monkeypatch.setenv("MK_SSD_STATE_TMA", "1" if tma else "0")
    monkeypatch.setenv("MK_SSD_STATE_TMA_LOAD", "1" if tma_load else "0")
    monkeypatch.setenv("MK_SSD_STATE_LATE_WAIT", "1" if late else "0")
    monkeypatch.setenv("MK_SSD_STATE_WIDE", "1" if wide else "0")
    monkeypatch.setenv("MK_SSD_STATE_LEAN", lean)
    from mamba_kernels.ssd import cuda_walk
    from mamba_kernels.ssd import triton as tri
    b, l, h, g, init = {"b2-l300-h16-g1": (2, 300, 16, 1, False), "b3-l1000-h80-g1-init": (3, 1000, 80, 1, True),
                        "varlen-h24-g3-init": (1, 1000, 24, 3, True)}[case]
    cu = [0, 1, 130, 130, 1000] if case.startswith("varlen") else None
    inp = make_inputs(b, l, h, 64, 128, g, dtype=torch.bfloat16, device="cuda", init=init,
                      nseq=None if cu is None else len(cu) - 1)
    x, B = inp["x"], inp["B"]
    cu_t = None if cu is None else torch.tensor(cu, dtype=torch.int32, device="cuda")
    *_, hpg, q, dev, kind, prec, sdt, cfg, lay = tri._setup(x, B, 128, cu_t)
    assert cuda_walk.serves(x, 64, 128, q, hpg, "_ssd_state_cuda", (x, B)), "the CUDA state stage is not built"
    dtp, a = tri._cumsum_fwd(inp["dt"], inp["A"], inp["dt_bias"], True, None, lay, b, l, h, q, cfg)
    states_in = torch.full((lay.nk, h, 64, 128), float("nan"), device=dev, dtype=torch.bfloat16)
    final = torch.full((lay.nseq, h, 64, 128), float("nan"), device=dev, dtype=torch.float32)
    init_t = inp.get("initial_states") if init else None
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        cuda_walk.state(x, B, dtp, a, init_t, lay, tri._num_sms(dev), states_in, final)
        torch.cuda.synchronize()
    ran_wg = any("ssd_state_wg_kernel" in e.name for e in prof.events())
    assert ran_wg == wgmma, f"ssd_state_wg_kernel ran: {ran_wg}, asked for: {wgmma}"
    ran_pairs = any("ssd_state_wg_kernel" in e.name and re.search(r", true[,>]", e.name) for e in prof.events())
    assert ran_pairs == pairs, f"the paired products ran: {ran_pairs}, asked for: {pairs}"
    ran_tma = any(re.search("SsdState(Tma|LateWait|Wide|Lean|RowScale)", e.name) for e in prof.events())
    assert ran_tma == tma, f"the TMA stores ran: {ran_tma}, asked for: {tma}"
    ran_load = any(re.search("SsdState(TmaLoad|LateWait|Wide|Lean|RowScale)Params", e.name) for e in prof.events())
    assert ran_load == tma_load, f"the TMA loads ran: {ran_load}, asked for: {tma_load}"
    ran_late = any(re.search("SsdState(LateWait|Wide|Lean|RowScale)Params", e.name) for e in prof.events())
    assert ran_late == late, f"the late box wait ran: {ran_late}, asked for: {late}"
    ran_wide = any(re.search("SsdState(Wide|Lean|RowScale)Params", e.name) for e in prof.events())
    assert ran_wide == wide, f"the wide products ran: {ran_wide}, asked for: {wide}"
    ran_lean = next((v for v, t in (("2", "RowScale"), ("1", "Lean"))
                     if any(f"SsdState{t}Params" in e.name for e in prof.events())), "0")
    assert ran_lean == lean, f"MK_SSD_STATE_LEAN ran: {ran_lean}, asked for: {lean}"
    spans = [(r, 0, l) for r in range(b)] if cu is None else [(0, cu[i], cu[i + 1]) for i in range(len(cu) - 1)]
    X, Bd, dt64, a64 = x.double(), B.double(), dtp.double(), a.double()
    exp_in = torch.full(states_in.shape, float("nan"), dtype=torch.float64)
    exp_fin = torch.zeros(final.shape, dtype=torch.float64)
    slot = 0
    for seq, (row, s0, s1) in enumerate(spans):
        S = init_t[seq].double().cpu() if init else torch.zeros(h, 64, 128, dtype=torch.float64)
        for t0 in range(s0, s1, q):
            t1 = min(t0 + q, s1)
            exp_in[slot] = S
            av, dv = a64[row, :, t0:t1].cpu(), dt64[row, :, t0:t1].cpu()
            w = torch.exp(av[:, -1:] - av) * dv                                   # (h, len)
            xs = X[row, t0:t1].cpu()                                              # (len, h, p)
            bs = Bd[row, t0:t1].cpu().repeat_interleave(hpg, dim=1)              # (len, h, n)
            S = torch.exp(av[:, -1])[:, None, None] * S + torch.einsum("th,thp,thn->hpn", w.T, xs, bs)
            slot += 1
        exp_fin[seq] = S
    got_in = states_in.cpu()
    filled = ~torch.isnan(exp_in)
    assert torch.isnan(got_in[~filled]).all(), "slots of no chunk were written"
    assert_close(got_in[filled], exp_in[filled], torch.bfloat16, name=f"{case} states_in")
    assert_close(final.cpu(), exp_fin, torch.bfloat16, name=f"{case} final")
