"""Launcher for the CUDA backward of the chunked SSD (torch.ops.mamba_kernels._ssd_bwd_cuda; kernels in
csrc/ssd/ssd_bwd_kernel.cuh and ssd_bwd_chunk_kernel.cuh).

The backward of backend="cuda" (interface.py). It reads what the CUDA forward saved: the pre-gate output ypre (x's
dtype, when z is given) and the fp32 chunk-entry states states_in. It serves fp32 / fp16 / bf16 inputs with
chunk_size a multiple of 64, n <= 128 and p <= 128, and runs the Triton backward (same gradients) elsewhere, when the
extension lacks the op, or unless MK_SSD_CUDA_BWD=1 is set in the environment (read at each call: A/B timing).
Opt-in because it is slow: H200, bf16, chunk 256 (2026-11-29, 7fadbba): 15.7 ms at b4 l4096 h80 p64 n128 g1 and
8.1 ms at b2 l4096 h32 p128 n128 g32, against 2.59 / 1.35 ms for the Triton backward on the same saved tensors
(correct: the GPU tests against the reference pass). With the group kernels' head loops split across CTAs
(ssd_bwd_group_split) and 16-byte batched tile loads: 4.61 / 2.68 ms (2026-11-30, 4a0a73b; Triton 2.60 / 1.36).
CALLS counts which backward ran (tests assert the CUDA one did).
"""
from __future__ import annotations

import os

import torch

from .cuda import chunk_slots, has_cuda_op

MAX_DSTATE = 128
MAX_HEADDIM = 128
CHUNK_MULTIPLE = 64
CALLS = {"cuda": 0, "triton": 0}


def available() -> bool:
    """True when the CUDA extension contains the ssd backward op."""
    return has_cuda_op("_ssd_bwd_cuda")


def enabled() -> bool:
    return os.environ.get("MK_SSD_CUDA_BWD", "0") == "1"


def kernel_serves(x: torch.Tensor, B: torch.Tensor, chunk_size: int, states_in: torch.Tensor) -> bool:
    return (x.is_cuda and x.dtype in (torch.float32, torch.float16, torch.bfloat16)
            and B.shape[-1] <= MAX_DSTATE and x.shape[-1] <= MAX_HEADDIM and chunk_size % CHUNK_MULTIPLE == 0
            and x.shape[2] <= 65535 and states_in.dtype == torch.float32)


def ssd_bwd_cuda(dout, d_states_in, d_final, x, dt, A, B, C, chunk_size, D, z, dt_bias, dt_softplus, dt_limit,
                 initial_states, cu_seqlens, ypre, states_in):
    """Same contract as triton.ssd_bwd: (dx, ddt, dA, dB, dC, dD, dz, ddt_bias, dinitial_states), None for absent
    inputs."""
    if not (enabled() and available() and kernel_serves(x, B, chunk_size, states_in)
            and (z is None or ypre.numel() == x.numel())):
        from . import triton as tri
        CALLS["triton"] += 1
        return tri.ssd_bwd(dout, d_states_in, d_final, x, dt, A, B, C, chunk_size, D, z, dt_bias, dt_softplus,
                           dt_limit, initial_states, cu_seqlens, ypre, states_in)
    CALLS["cuda"] += 1
    b, l, h, p = x.shape
    g, n = B.shape[-2:]
    f32 = torch.float32

    def act(t):
        return None if t is None else t.detach().to(x.dtype).contiguous()

    def w(t):
        return None if t is None else t.detach().to(f32).contiguous()
    xx, BB, CC, zz, yp, go = act(x), act(B), act(C), act(z), act(ypre) if z is not None else None, act(dout)
    nseq, cu, offs, n_slots = chunk_slots(b, l, chunk_size, cu_seqlens)
    sin = states_in.detach().contiguous()
    if sin.shape[0] != n_slots:
        raise ValueError(f"states_in: expected {n_slots} chunk slots, got {sin.shape[0]}")
    dev = x.device
    dx = torch.empty_like(xx)
    ddt = torch.empty(b, l, h, device=dev, dtype=f32)
    dA = torch.empty(h, device=dev, dtype=f32)
    dB = torch.empty_like(BB)
    dC = torch.empty_like(CC)
    dD = torch.empty(h, p, device=dev, dtype=f32) if D is not None else torch.empty(0, device=dev, dtype=f32)
    dz = torch.empty_like(zz) if z is not None else torch.empty(0, device=dev, dtype=x.dtype)
    dbias = torch.empty(h, device=dev, dtype=f32)
    dinit = torch.empty(nseq, h, p, n, device=dev, dtype=f32)
    lo, hi = (float(dt_limit[0]), float(dt_limit[1])) if dt_limit is not None else (0.0, 0.0)
    torch.ops.mamba_kernels._ssd_bwd_cuda(
        go, xx, w(dt), w(A), BB, CC, w(D), zz, w(dt_bias), yp, w(sin), w(d_final), w(d_states_in), cu, offs,
        int(chunk_size), bool(dt_softplus), dt_limit is not None, lo, hi,
        dx, ddt, dA, dB, dC, dD, dz, dbias, dinit)
    dD_out = None
    if D is not None:
        dD_out = (dD if D.dim() == 2 else dD.sum(-1)).to(D.dtype)
    return (dx.to(x.dtype), ddt.to(dt.dtype), dA.to(A.dtype), dB.to(B.dtype), dC.to(C.dtype), dD_out,
            dz.to(z.dtype) if z is not None else None, dbias.to(dt_bias.dtype) if dt_bias is not None else None,
            dinit.to(initial_states.dtype) if initial_states is not None else None)
