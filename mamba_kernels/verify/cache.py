"""VerifyCache: the per-layer tensors verify_step reads and writes (layout in docs/verify_step_design.md).

A plain bundle of tensors (no Python-side state): engines may allocate it themselves, slice it, keep it in
their own pools, or build it from DLPack arrays; `allocate` is the convenient way.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Optional

import torch


def mamba1_unit_size(d: int, ngroups: int) -> int:
    """Channels per unit for the Mamba-1 layout: a power of two <= 64 dividing d / ngroups."""
    return math.gcd(d // ngroups, 64)


@dataclass
class VerifyCache:
    """Cache of one SSM layer for speculative verify-and-rollback.

    state:   (S, h, p, n) [Mamba-2] or (S, d, n) [Mamba-1], fp32/bf16/fp16 — the checkpoint state.
    ring_x:  (S, R, H, P) — x of ring tokens (H units of P channels: Mamba-2 heads, or Mamba-1 channel blocks).
    ring_B:  (S, R, H, n) — B of ring tokens, per unit.
    ring_dt: (S, R, H, Pd) fp32 — processed dt (Pd = 1 for Mamba-2, P for Mamba-1).
    meta:    (S, H, 2 + Kmax) int32 — per unit [committed-unfolded count, pending count, pending masks].
    conv_window: (S, w - 1 + Kmax, dc) or None — [last w-1 committed raw conv inputs | pending raw inputs].
    conv_meta:   (S, 1 + Kmax) int32 or None — for the standalone conv_verify_step.
    """

    state: torch.Tensor
    ring_x: torch.Tensor
    ring_B: torch.Tensor
    ring_dt: torch.Tensor
    meta: torch.Tensor
    conv_window: Optional[torch.Tensor] = None
    conv_meta: Optional[torch.Tensor] = None

    @property
    def num_slots(self) -> int:
        return self.state.shape[0]

    @property
    def max_draft(self) -> int:
        return self.meta.shape[-1] - 2

    @property
    def ring_len(self) -> int:
        return self.ring_x.shape[1]

    @property
    def is_mamba1(self) -> bool:
        return self.state.dim() == 3

    @classmethod
    def allocate(cls, num_slots: int, *, dstate: int, max_draft: int, nheads: Optional[int] = None,
                 headdim: Optional[int] = None, d: Optional[int] = None, ngroups: int = 1,
                 ring_len: Optional[int] = None, dtype: torch.dtype = torch.bfloat16,
                 state_dtype: torch.dtype = torch.float32, conv_dim: Optional[int] = None,
                 conv_width: Optional[int] = None, device=None) -> "VerifyCache":
        """Allocate a zeroed cache. Mamba-2: pass nheads, headdim; Mamba-1: pass d (and ngroups).

        ring_len (R, default max(2 * max_draft, 16)) bounds how many committed tokens are replayed before the
        state is written back; larger = fewer state writes, more replay arithmetic.
        conv_dim / conv_width add a conv window (Mamba-2 fused step: conv_dim = h*p + 2*g*n).
        Example:
            >>> c = VerifyCache.allocate(8, nheads=4, headdim=16, dstate=8, max_draft=4)
            >>> tuple(c.state.shape), tuple(c.ring_x.shape), tuple(c.meta.shape)
            ((8, 4, 16, 8), (8, 16, 4, 16), (8, 4, 6))
        """
        if (nheads is None) == (d is None):
            raise ValueError("pass either nheads and headdim (Mamba-2) or d (Mamba-1)")
        if not 1 <= max_draft <= 32:
            raise ValueError(f"max_draft must be in [1, 32], got {max_draft}")
        R = ring_len if ring_len is not None else max(2 * max_draft, 16)
        if R < max_draft:
            raise ValueError(f"ring_len ({R}) must be >= max_draft ({max_draft})")
        kw = dict(device=device)
        if nheads is not None:
            if headdim is None:
                raise ValueError("headdim is required with nheads")
            if nheads % ngroups:
                raise ValueError(f"nheads ({nheads}) must be divisible by ngroups ({ngroups})")
            H, P, Pd = nheads, headdim, 1
            state = torch.zeros(num_slots, nheads, headdim, dstate, dtype=state_dtype, **kw)
        else:
            if d % ngroups:
                raise ValueError(f"d ({d}) must be divisible by ngroups ({ngroups})")
            P = mamba1_unit_size(d, ngroups)
            H, Pd = d // P, P
            state = torch.zeros(num_slots, d, dstate, dtype=state_dtype, **kw)
        cache = cls(
            state=state,
            ring_x=torch.zeros(num_slots, R, H, P, dtype=dtype, **kw),
            ring_B=torch.zeros(num_slots, R, H, dstate, dtype=dtype, **kw),
            ring_dt=torch.zeros(num_slots, R, H, Pd, dtype=torch.float32, **kw),
            meta=torch.zeros(num_slots, H, 2 + max_draft, dtype=torch.int32, **kw),
        )
        if conv_dim is not None:
            if conv_width is None or not 2 <= conv_width <= 8:
                raise ValueError(f"conv_width must be in [2, 8], got {conv_width}")
            cache.conv_window = torch.zeros(num_slots, conv_width - 1 + max_draft, conv_dim, dtype=dtype, **kw)
            cache.conv_meta = torch.zeros(num_slots, 1 + max_draft, dtype=torch.int32, **kw)
        return cache

    def reset_slots(self, slots: torch.Tensor, state: Optional[torch.Tensor] = None,
                    conv_inputs: Optional[torch.Tensor] = None) -> None:
        """Start sequences in `slots` (e.g. after prefill): state[slots] = state (or 0), nothing pending,
        conv window = the last w-1 raw conv inputs `conv_inputs` (len(slots), w - 1, dc) (or 0)."""
        idx = slots.to(device=self.state.device, dtype=torch.long)
        if state is None:
            self.state[idx] = 0
        else:
            self.state[idx] = state.to(self.state.dtype)
        self.meta[idx] = 0
        if self.conv_window is not None:
            w1 = self.conv_window.shape[1] - self.max_draft
            self.conv_window[idx] = 0
            if conv_inputs is not None:
                self.conv_window[idx, :w1] = conv_inputs.to(self.conv_window.dtype)
            self.conv_meta[idx] = 0

    def map_tensors(self, fn) -> "VerifyCache":
        """A cache with fn applied to every present tensor; self when fn returns each one unchanged (the usual
        case: torch tensors through the DLPack import, on every eager call)."""
        old = [getattr(self, name) for name in _FIELD_NAMES]
        new = [None if v is None else fn(v) for v in old]
        for a, b in zip(old, new):
            if a is not b:
                return VerifyCache(**dict(zip(_FIELD_NAMES, new)))
        return self


_FIELD_NAMES = tuple(f.name for f in fields(VerifyCache))
