"""The CUDA dx stage (B2) of the Triton SSD backward (torch.ops.mamba_kernels._ssd_dx_cuda; kernel in
csrc/ssd/ssd_dx_kernel.cuh): one persistent CTA an SM walks (chunk, head) items head-fastest, keeping the chunk's
C B^T and B in shared memory across a group's heads and double-buffering each head's dy / x / dS tiles by cp.async.
Same results as the Triton B2 kernel (_ssd_bwd_dx_kernel, without DA_OUT) up to summation order.

It serves bf16 inputs with p 64, n 128 and chunk 128 (the shape it was written for: Mamba-2's default head size and
state size, and the chunk the autograd path runs at) on sm_80+ when the extension was built with it and at least
8 heads share a group (with fewer, C B^T and B are reloaded for nearly every item and nothing is shared).
MK_SSD_CUDA_DX=0 in the environment (read at each call) keeps the Triton kernel: A/B timing. CALLS counts the
CUDA launches (tests assert that they happened).
"""
from __future__ import annotations

import os

import torch

from .cuda import has_cuda_op

CALLS = {"cuda": 0}
HEADDIM, DSTATE, CHUNK, MIN_HEADS_PER_GROUP = 64, 128, 128, 8


def serves(x: torch.Tensor, p: int, n: int, Q: int, hpg: int, da_in_dx: bool) -> bool:
    """True when the CUDA stage runs this call's dx (else the Triton kernel)."""
    return (x.is_cuda and x.dtype == torch.bfloat16 and p == HEADDIM and n == DSTATE and Q == CHUNK
            and hpg >= MIN_HEADS_PER_GROUP and not da_in_dx and os.environ.get("MK_SSD_CUDA_DX", "1") != "0"
            and torch.cuda.get_device_capability(x.device)[0] >= 8 and has_cuda_op("_ssd_dx_cuda"))


def run(x, dy, B, cb, dtp, a, dS, D, tab, n_slots, num_ctas, dx, ddtp, da, dalast, dD32) -> None:
    """dx = dt' du + D dy; adds d dt', d a, d a_L and dD (when D is given) into the fp32 accumulators (shapes as the
    Triton backward's: x, dy, dx (b, l, h, p); B (b, l, g, n); cb (n_slots, g, Q, Q); dtp, a, ddtp, da (b, h, l);
    dS (n_slots, h, p, n); dalast (n_slots, h); dD32 (h, p)). tab: the varlen chunk table (n_slots, 2) or None."""
    CALLS["cuda"] += 1
    Df = None if D is None else D.detach().float().contiguous()
    torch.ops.mamba_kernels._ssd_dx_cuda(x, dy, B, cb, dtp, a, dS, Df, tab, int(n_slots), int(num_ctas), dx, ddtp,
                                        da, dalast, dD32)
