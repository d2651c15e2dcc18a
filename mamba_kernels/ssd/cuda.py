"""Launcher for the CUDA forward (torch.ops.mamba_kernels._ssd_fwd_cuda).

Default path: the chunk-parallel pipeline (csrc/ssd/ssd_chunk_kernel.cuh: chunk states, a state-passing kernel, then
the chunk scan; the binding also allocates a small workspace of chunk decays / hand-over flags). MK_SSD_CUDA_FUSED=1 in the environment (read
once per process) selects the fused kernel (csrc/ssd/ssd_fwd_kernel.cuh) instead; torch.ops.mamba_kernels.
_ssd_fwd_cuda_fused always runs the fused kernel (same arguments).
Variants of the pipeline for A/B timing, read once per process by the launcher (csrc/ssd/ssd_chunk_kernel.cuh,
chunk_knobs()): MK_SSD_HANDOVER=1 (the chunk-state kernel hands the state from chunk to chunk instead of the separate
state-pass kernel; default 0: measured faster on the H200)
and MK_SSD_SCAN_HEADS=2 / 4 (heads of one group a chunk-scan CTA, C B^T shared; default 1).
The CUDA forward serves chunk_size a multiple of 64, n <= 128 and fp32 / fp16 / bf16 inputs; other calls run the
Triton forward (same outputs). Its backward is the Triton backward (interface.py), which reads the pre-gate output
and the fp32 chunk-entry states written here.
"""
from __future__ import annotations

import functools

import torch

from .layout import n_chunk_slots

MAX_DSTATE = 128
CHUNK_MULTIPLE = 64
# Benchmark switch (bench/bench_ssd.py, impl mamba_kernels:cuda_fused): True runs the fused kernel through
# _ssd_fwd_cuda_fused in this process whatever MK_SSD_CUDA_FUSED says.
FORCE_FUSED = False


@functools.lru_cache(maxsize=None)
def has_cuda_op(name: str) -> bool:
    """True when mamba_kernels._cuda is importable and registers torch.ops.mamba_kernels.<name>."""
    try:
        import mamba_kernels._cuda  # noqa: F401
    except ImportError:
        return False
    return hasattr(torch.ops.mamba_kernels, name)


def available() -> bool:
    """True when the CUDA extension contains the ssd forward op."""
    return has_cuda_op("_ssd_fwd_cuda")


def kernel_serves(x: torch.Tensor, B: torch.Tensor, chunk_size: int) -> bool:
    return (x.dtype in (torch.float32, torch.float16, torch.bfloat16) and B.shape[-1] <= MAX_DSTATE
            and chunk_size % CHUNK_MULTIPLE == 0 and x.shape[2] <= 65535)


def chunk_slots(b, l, chunk_size, cu_seqlens):
    """The chunk-slot layout of a call: (nseq, cu_seqlens as int64 or None, chunk_offsets (nseq + 1,) int64 on the
    device -- the first chunk slot of each sequence -- or None, n_slots). No host sync."""
    nseq, cu, offs = b, None, None
    if cu_seqlens is not None:
        nseq = cu_seqlens.shape[0] - 1
        cu = cu_seqlens.detach().to(torch.int64).contiguous()
        nck = torch.div(cu[1:] - cu[:-1] + chunk_size - 1, chunk_size, rounding_mode="floor")
        offs = torch.cat([cu.new_zeros(1), torch.cumsum(nck, 0)])
    return nseq, cu, offs, n_chunk_slots(b, l, chunk_size, None if cu_seqlens is None else nseq)


def ssd_fwd_cuda(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, dt_softplus=False, dt_limit=None,
                 initial_states=None, cu_seqlens=None, need_ypre=True):
    """Same outputs as triton.ssd_fwd(..., states_fp32=True): out (x.dtype), ypre (pre-gate y in x.dtype when z is
    given and need_ypre, else empty), states_in (n_slots, h, p, n) fp32 (unused varlen slots zero), final
    (nseq, h, p, n) fp32."""
    if not kernel_serves(x, B, chunk_size) or not available():
        from . import triton as tri
        return tri.ssd_fwd(x, dt, A, B, C, chunk_size, D, z, dt_bias, dt_softplus, dt_limit, initial_states,
                           cu_seqlens, need_ypre=need_ypre, states_fp32=True)
    b, l, h, p = x.shape
    n = B.shape[-1]
    f32 = torch.float32

    def act(t):  # x's dtype, contiguous last dimension (any other strides)
        if t is None:
            return None
        t = t.detach().to(x.dtype)
        return t if t.stride(-1) == 1 else t.contiguous()

    def w(t):
        return None if t is None else t.detach().to(f32).contiguous()
    xx, BB, CC, zz = act(x), act(B), act(C), act(z)
    dtt = dt.detach()
    if dtt.dtype not in (x.dtype, f32):
        dtt = dtt.to(f32)
    nseq, cu, offs, n_slots = chunk_slots(b, l, chunk_size, cu_seqlens)
    out = torch.empty(b, l, h, p, device=x.device, dtype=x.dtype)
    ypre = torch.empty(x.shape if (z is not None and need_ypre) else (0,), device=x.device, dtype=x.dtype)
    states_in = (torch.zeros if cu_seqlens is not None else torch.empty)(n_slots, h, p, n, device=x.device, dtype=f32)
    final = torch.empty(nseq, h, p, n, device=x.device, dtype=f32)
    lo, hi = (float(dt_limit[0]), float(dt_limit[1])) if dt_limit is not None else (0.0, 0.0)
    op = torch.ops.mamba_kernels._ssd_fwd_cuda_fused if FORCE_FUSED else torch.ops.mamba_kernels._ssd_fwd_cuda
    op(
        xx, dtt, w(A), BB, CC, w(D), zz, w(dt_bias), w(initial_states), cu, offs, int(chunk_size),
        bool(dt_softplus), dt_limit is not None, lo, hi, out, ypre, states_in, final)
    return out, ypre, states_in, final
