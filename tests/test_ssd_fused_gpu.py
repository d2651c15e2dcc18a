"""GPU tests of the fused F1 + F2 walk (a lab at chunk 64: csrc/ssd/ssd_fused_walk_kernel.cuh,
mamba_kernels/ssd/cuda_walk.py's fused_walk_lab; docs/ssd_fused_walk_design.md): against the float64 reference, in the
Triton forward behind MK_SSD_FUSED_WALK=1, under a CUDA graph. H100 / H200 with an sm_90a build only. CPU emulation:
tests/test_ssd_walk_cuda_emu.py (test_ssd_fused_walk_emulated_on_cpu)."""
from __future__ import annotations

import pytest
import torch

from mamba_kernels.ssd import cuda_walk, ssd_chunked_scan
from mamba_kernels.testing import assert_close
from test_ssd import _skip_unavailable, make_inputs


def _skip_without_lab():
    _skip_unavailable("triton", "cuda")
    if not cuda_walk.has_cuda_op("_ssd_fused_walk_lab") or torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the fused walk lab needs an sm_90a build on an H100 / H200")


@pytest.mark.gpu
@pytest.mark.parametrize("cb_src", ["k1", "in", "wg"])
@pytest.mark.parametrize("ctas", [None, 0, 7], ids=["shared", "per-walk", "7ctas"])
@pytest.mark.parametrize("case", ["b2-l300-h8-g1-D-z-init", "b1-l1000-h16-g4-Dhp-noz", "b1-l1-h4-g4-D-z-init",
                                  "b1-l4096-h80-g1-D-z"])
def test_gpu_fused_walk_lab(case, ctas, cb_src, monkeypatch):
    """The fused F1 + F2 walk (a lab at chunk 64: csrc/ssd/ssd_fused_walk_kernel.cuh, cuda_walk.fused_walk_lab)
    against the float64 reference, out and final states (poisoned first); two CTAs an SM sharing the walks' chunks
    (hand-offs), a CTA a walk, or 7 CTAs (hand-off chains through walks longer than a share); C B^T from K1 or
    computed in the walk (MK_SSD_FUSED_CB=1; "wg": its causal part on wgmma too, MK_SSD_FUSED_CAUSAL_WG=1)."""
    _skip_without_lab()
    monkeypatch.setenv("MK_SSD_FUSED_CB", "0" if cb_src == "k1" else "1")
    monkeypatch.setenv("MK_SSD_FUSED_CAUSAL_WG", "1" if cb_src == "wg" else "0")
    b, l, h, g = (int(v[1:]) for v in case.split("-")[:4])
    inp = make_inputs(b, l, h, 64, 128, g, dtype=torch.bfloat16, device="cuda", D_shape="hp" if "Dhp" in case else "h",
                      z="noz" not in case, init="init" in case)
    out = torch.full_like(inp["x"], float("nan"))
    final = torch.full((b, h, 64, 128), float("nan"), device="cuda")
    cuda_walk.fused_walk_lab(**inp, dt_softplus=True, return_final_states=True, out=out, final_states=final,
                             num_ctas=ctas)
    ref = {k: (v.double() if v.is_floating_point() else v) for k, v in inp.items()}
    exp, exp_final = ssd_chunked_scan(**ref, chunk_size=64, dt_softplus=True, return_final_states=True, backend="ref")
    assert_close(out, exp, torch.bfloat16, name=f"{case} out")
    assert_close(final, exp_final, torch.bfloat16, name=f"{case} final")
    again = cuda_walk.fused_walk_lab(**inp, dt_softplus=True, num_ctas=ctas)  # deterministic: the same bits
    assert torch.equal(again, out)


@pytest.mark.gpu
def test_gpu_fused_walk_in_forward_and_graph(monkeypatch):
    """MK_SSD_FUSED_WALK=1: a forward without autograd runs the fused walk (CALLS) and matches the default path at
    the bf16 tolerance; with inputs that need gradients it does not run; captured in a CUDA graph, replays with new
    inputs equal eager calls bit for bit (the hand-off flags are cleared by the kernel itself)."""
    _skip_without_lab()
    inp = make_inputs(2, 1000, 16, 64, 128, 1, dtype=torch.bfloat16, device="cuda", init=True)
    kw = dict(chunk_size=256, dt_softplus=True, return_final_states=True, backend="triton")
    with torch.no_grad():
        exp, exp_final = ssd_chunked_scan(**inp, **kw)
    monkeypatch.setenv("MK_SSD_FUSED_WALK", "1")
    before = cuda_walk.CALLS["fused"]
    with torch.no_grad():
        got, got_final = ssd_chunked_scan(**inp, **kw)
    assert cuda_walk.CALLS["fused"] == before + 1, "the fused walk did not run"
    assert_close(got, exp, torch.bfloat16, name="out")
    assert_close(got_final, exp_final, torch.bfloat16, name="final")
    grad_inp = {k: (v.detach().requires_grad_(True) if v.is_floating_point() else v) for k, v in inp.items()}
    ssd_chunked_scan(**grad_inp, **kw)[0].float().sum().backward()
    assert cuda_walk.CALLS["fused"] == before + 1, "the fused walk ran where a backward needs states_in"
    static = {k: v.clone() for k, v in inp.items()}
    with torch.no_grad():
        ssd_chunked_scan(**static, **kw)  # warm-up (Triton compiles, allocator)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            g_out, g_final = ssd_chunked_scan(**static, **kw)
        for seed in range(3):
            new = make_inputs(2, 1000, 16, 64, 128, 1, dtype=torch.bfloat16, device="cuda", init=True)
            for k in static:
                static[k].copy_(new[k])
            graph.replay()
            e_out, e_final = ssd_chunked_scan(**new, **kw)
            assert torch.equal(g_out, e_out) and torch.equal(g_final, e_final), f"replay {seed}"
