"""Launcher for the C++ OpenMP CPU forward (csrc/ssd/ssd_cpu.cpp via torch.ops.mamba_kernels._ssd_fwd_cpu)."""
from __future__ import annotations

import functools

import torch

from .layout import chunk_layout


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """True when mamba_kernels._C is importable and contains the ssd op."""
    try:
        import mamba_kernels._C  # noqa: F401
    except ImportError:
        return False
    return hasattr(torch.ops.mamba_kernels, "_ssd_fwd_cpu")


def ssd_fwd_cpu(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, dt_softplus=False, dt_limit=None,
                initial_states=None, cu_seqlens=None):
    """Same outputs as triton.ssd_fwd: out (x.dtype), ypre (empty: the CPU backend's backward is the
    reference's), states_in (n_slots, h, p, n), final (nseq, h, p, n); states in float32 (float64 for fp64 x)."""
    if not available():
        raise RuntimeError("the ssd CPU op is not built into mamba_kernels._C; run "
                           "`pip install --no-build-isolation -e .`")
    b, l, h, p = x.shape
    n = B.shape[-1]
    cdt = torch.float64 if x.dtype == torch.float64 else torch.float32
    chunks, seqs, n_slots = chunk_layout(b, l, chunk_size, cu_seqlens)
    spans = ([(r, 0, l) for r in range(b)] if cu_seqlens is None else
             [(0, s, e) for s, e in zip(cu_seqlens.tolist()[:-1], cu_seqlens.tolist()[1:])])
    seq_info = torch.tensor([[row, s, e - s, first] for (row, s, e), (first, _) in zip(spans, seqs)],
                            dtype=torch.int64).reshape(-1, 4)

    def c(t):
        return None if t is None else t.detach().to(cdt).contiguous()
    out = torch.empty(b, l, h, p, dtype=cdt)
    states_in = torch.zeros(n_slots, h, p, n, dtype=cdt)
    final = torch.empty(len(seqs), h, p, n, dtype=cdt)
    torch.ops.mamba_kernels._ssd_fwd_cpu(
        c(x), c(dt), c(A), c(B), c(C), c(D), c(z), c(dt_bias), c(initial_states), seq_info, chunk_size,
        bool(dt_softplus), dt_limit is not None, float(dt_limit[0]) if dt_limit else 0.0,
        float(dt_limit[1]) if dt_limit else 0.0, out, states_in, final)
    return out.to(x.dtype), x.new_empty(0, dtype=torch.float32), states_in, final
