"""Input checks used once, at the public boundary of every op.

Each helper raises TypeError (wrong kind / dtype) or ValueError (wrong shape / value / device) with a
message that names the argument and states what was expected.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _fmt_shape(shape: Sequence) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def tensor(name: str, t, *, shape: Sequence | None = None, dtypes: Iterable[torch.dtype] | None = None,
           device: torch.device | None = None, ndim: int | None = None, contiguous_last: bool = False,
           optional: bool = False):
    """Check one tensor argument. `shape` entries may be None (any size) or ints.

    Returns the tensor (or None for an absent optional argument).
    """
    if t is None:
        if optional:
            return None
        raise TypeError(f"{name}: expected a tensor, got None")
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    # Plain loops and one read of t.shape: these checks run on every eager call of every op (decode-sized calls
    # are dominated by host time), so they avoid generator expressions and repeated tensor attribute reads.
    ts = t.shape
    if ndim is not None and len(ts) != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {_fmt_shape(ts)}")
    if shape is not None:
        bad = len(ts) != len(shape)
        if not bad:
            for s, have in zip(shape, ts):
                if s is not None and s != have:
                    bad = True
                    break
        if bad:
            want = _fmt_shape(["*" if s is None else s for s in shape])
            raise ValueError(f"{name}: expected shape {want}, got {_fmt_shape(ts)}")
    if dtypes is not None:
        if not isinstance(dtypes, tuple):
            dtypes = tuple(dtypes)
        if t.dtype not in dtypes:
            names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
            raise TypeError(f"{name}: expected dtype in ({names}), got {str(t.dtype).replace('torch.', '')}")
    if device is not None and t.device != device:
        raise ValueError(f"{name}: expected a tensor on {device}, got one on {t.device}")
    if contiguous_last and ts and ts[-1] != 1 and t.stride(-1) != 1:
        raise ValueError(f"{name}: the last dimension must be contiguous (stride 1), got strides {tuple(t.stride())}")
    return t


def same_device(**tensors) -> torch.device:
    """All non-None tensors on one device; returns it."""
    dev = None
    first = None
    for name, t in tensors.items():
        if t is None:
            continue
        if dev is None:
            dev, first = t.device, name
        elif t.device != dev:
            raise ValueError(f"{name}: expected a tensor on {dev} (like {first}), got one on {t.device}")
    return dev


def positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
    if v <= 0:
        raise ValueError(f"{name}: expected a positive int, got {v}")
    return v


def divisible(name: str, value: int, by_name: str, by: int):
    if by <= 0 or value % by != 0:
        raise ValueError(f"{name} ({value}) must be divisible by {by_name} ({by})")
