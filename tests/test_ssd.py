"""Tests for the chunked SSD (Mamba-2) scan: references cross-checked, every backend against float64 references."""
from __future__ import annotations

import pytest
import torch

from python_ref.ssd import ssd_chunked_ref, ssd_sequential_ref

F64 = torch.float64


def make_inputs(b, l, h, p, n, g, *, dtype=F64, device="cpu", D_shape="h", z=True, bias=True, init=False,
                nseq=None, requires_grad=False):
    """Fresh random inputs; dt around softplus range, A negative. nseq: number of initial states (varlen)."""
    def r(*s, scale=1.0, dt_=dtype):
        return (torch.randn(*s, dtype=F64) * scale).to(dt_).to(device)
    inp = dict(
        x=r(b, l, h, p),
        dt=r(b, l, h, scale=0.5) - 1.0,
        A=-(torch.rand(h, dtype=F64) + 0.5).to(torch.float32 if dtype != F64 else F64).to(device),
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
