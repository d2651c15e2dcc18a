"""The conv step with rollback, and the fused Mamba-2 step (conv with rollback + SSM verify + gate).

Kept apart from interface.py for size; the custom ops themselves are registered there.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .. import _backend, _checks
from .cache import VerifyCache
from . import interface as _i

_ACTIVATIONS = (None, "silu", "swish")


def _activation_is_silu(activation) -> bool:
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation: expected None or 'silu', got {activation!r}")
    return activation is not None


def _check_conv_weight(weight, bias, dc, device):
    _checks.tensor("conv_weight", weight, ndim=2, dtypes=(torch.float32, torch.float16, torch.bfloat16),
                   device=device)
    if weight.shape[0] != dc or not 2 <= weight.shape[1] <= 8:
        raise ValueError(f"conv_weight: expected shape ({dc}, w) with w in [2, 8], got {tuple(weight.shape)}")
    _checks.tensor("conv_bias", bias, shape=(dc,), dtypes=(weight.dtype,), device=device, optional=True)
    return weight.shape[1]


def conv_verify_step(x, cache: VerifyCache, weight, bias=None, *, slots, num_accepted=None, accepted_node=None,
                     parents=None, activation: Optional[str] = "silu", out=None, backend: Optional[str] = None,
                     debug: Optional[bool] = None):
    """Depthwise causal conv over k draft tokens with rollback of the conv window.

    x: (b, k, dc) raw conv inputs; cache.conv_window (S, w - 1 + Kmax, dc), cache.conv_meta (S, 1 + Kmax);
    weight (dc, w), w in [2, 8]; bias (dc,); slots, num_accepted / accepted_node (b,) int32; parents (b, k).
    Commit the accepted pending tokens into the window, then out[b, t] = act(bias + sum_i weight[:, i] *
    seq[-w + i]) where seq = committed window ++ the raw inputs along node t's path. Returns (b, k, dc).

    Example:
        >>> import torch, mamba_kernels as mk
        >>> cache = mk.VerifyCache.allocate(2, nheads=1, headdim=4, dstate=2, max_draft=3, conv_dim=8,
        ...                                 conv_width=4, dtype=torch.float32)
        >>> x = torch.randn(1, 3, 8)
        >>> out = mk.conv_verify_step(x, cache, torch.randn(8, 4), slots=torch.tensor([1], dtype=torch.int32),
        ...                           num_accepted=torch.zeros(1, dtype=torch.int32))
        >>> out.shape
        torch.Size([1, 3, 8])
    """
    like = x
    x, weight, bias, slots, num_accepted, accepted_node, parents, out = map(
        _i._from_dlpack, (x, weight, bias, slots, num_accepted, accepted_node, parents, out))
    if not isinstance(cache, VerifyCache):
        raise TypeError(f"cache: expected a VerifyCache, got {type(cache).__name__}")
    cache = cache.map_tensors(_i._from_dlpack)
    _checks.tensor("x", x, ndim=3, dtypes=_i.FLOATS, contiguous_last=True)
    device = x.device
    b, k, dc = x.shape
    if cache.conv_window is None or cache.conv_meta is None:
        raise ValueError("cache.conv_window: this op needs a conv window (allocate with conv_dim=, conv_width=)")
    S = cache.conv_window.shape[0]
    Kmax = cache.conv_meta.shape[-1] - 1
    _checks.tensor("cache.conv_meta", cache.conv_meta, shape=(S, Kmax + 1), dtypes=_i.INT32, device=device)
    w = _check_conv_weight(weight, bias, dc, device)
    _checks.tensor("cache.conv_window", cache.conv_window, shape=(S, w - 1 + Kmax, dc), dtypes=(x.dtype,),
                   device=device, contiguous_last=True)
    if k > Kmax:
        raise ValueError(f"x: k = {k} draft tokens exceed the cache's max_draft ({Kmax})")
    accepted, is_node = _i._check_control(slots, num_accepted, accepted_node, parents, b, k, device)
    silu = _activation_is_silu(activation)
    if out is None:
        out = torch.empty_like(x)
    else:
        _checks.tensor("out", out, shape=(b, k, dc), dtypes=(x.dtype,), device=device)
    be = _backend.resolve(backend, device)
    if _i._debug_enabled(debug):
        _i._debug_check(lambda sl: cache.conv_meta[sl, 0], S, slots, accepted, is_node, parents, k)
    _i._call(_i._conv_verify_step_op, "conv_verify_step", x, cache.conv_window, cache.conv_meta, weight, bias, slots, accepted, is_node, parents,
                            out, silu, be)
    return _i._to_kind_of(like, out)


def verify_step_fused(xBC, dt, z, cache: VerifyCache, slots, num_accepted=None, *, A, conv_weight, conv_bias=None,
                      D=None, dt_bias=None, dt_softplus: bool = True, dt_limit: Optional[Sequence[float]] = None,
                      activation: Optional[str] = "silu", accepted_node=None, parents=None, out=None,
                      backend: Optional[str] = None, debug: Optional[bool] = None):
    """Fused Mamba-2 verify step: raw xBC -> conv with rollback -> split x | B | C -> SSM verify -> gate.

    xBC: (b, k, h*p + 2*g*n) raw conv inputs (channel order x, B, C as in Mamba-2's in_proj); dt: (b, k, h);
    z: (b, k, h, p) or None; A (h,), D (h,) or (h, p), dt_bias (h,) fp32; conv_weight (dc, w), conv_bias (dc,);
    cache: VerifyCache.allocate(..., nheads=h, headdim=p, dstate=n, ngroups=g, conv_dim=dc, conv_width=w).
    Same commit/score/remember semantics as verify_step; returns y (b, k, h, p).

    Example:
        >>> import torch, mamba_kernels as mk
        >>> h, p, n, g, w = 2, 4, 4, 1, 4
        >>> dc = h * p + 2 * g * n
        >>> cache = mk.VerifyCache.allocate(2, nheads=h, headdim=p, dstate=n, max_draft=2, conv_dim=dc,
        ...                                 conv_width=w, dtype=torch.float32)
        >>> y = mk.verify_step_fused(torch.randn(1, 2, dc), torch.randn(1, 2, h), None, cache,
        ...                          torch.tensor([0], dtype=torch.int32), torch.zeros(1, dtype=torch.int32),
        ...                          A=-torch.rand(h), conv_weight=torch.randn(dc, w))
        >>> y.shape
        torch.Size([1, 2, 2, 4])
    """
    like = xBC
    xBC, dt, z, slots, num_accepted, accepted_node, parents, out, A, conv_weight, conv_bias, D, dt_bias = map(
        _i._from_dlpack, (xBC, dt, z, slots, num_accepted, accepted_node, parents, out, A, conv_weight, conv_bias,
                          D, dt_bias))
    if not isinstance(cache, VerifyCache):
        raise TypeError(f"cache: expected a VerifyCache, got {type(cache).__name__}")
    cache = cache.map_tensors(_i._from_dlpack)
    _checks.tensor("xBC", xBC, ndim=3, dtypes=_i.FLOATS, contiguous_last=True)
    device = xBC.device
    S, R, H, P, N, Kmax = _i._check_cache(cache, device, need_conv_window=True)
    if cache.is_mamba1:
        raise ValueError("cache: verify_step_fused is the Mamba-2 step; got a Mamba-1 cache")
    b, k, dc = xBC.shape
    G = (dc - H * P) // (2 * N)
    if G < 1 or dc != H * P + 2 * G * N or H % G:
        raise ValueError(f"xBC: last dim {dc} must be h*p + 2*g*n with h={H}, p={P}, n={N} and g dividing h")
    w = _check_conv_weight(conv_weight, conv_bias, dc, device)
    _checks.tensor("cache.conv_window", cache.conv_window, shape=(S, w - 1 + Kmax, dc), dtypes=(xBC.dtype,))
    _checks.tensor("dt", dt, shape=(b, k, H), dtypes=(xBC.dtype,), device=device)
    _checks.tensor("z", z, shape=(b, k, H, P), dtypes=(xBC.dtype,), device=device, contiguous_last=True,
                   optional=True)
    _checks.tensor("A", A, shape=(H,), dtypes=(torch.float32,), device=device)
    if D is not None and D.dim() == 1:
        _checks.tensor("D", D, shape=(H,), dtypes=(torch.float32,), device=device)
        D = D.unsqueeze(-1).expand(H, P)
    else:
        _checks.tensor("D", D, shape=(H, P), dtypes=(torch.float32,), device=device, optional=True)
    _checks.tensor("dt_bias", dt_bias, shape=(H,), dtypes=(torch.float32,), device=device, optional=True)
    if cache.ring_x.dtype != xBC.dtype:
        raise TypeError(f"cache.ring_x: expected dtype {xBC.dtype} (like xBC), got {cache.ring_x.dtype}")
    if k > Kmax:
        raise ValueError(f"xBC: k = {k} draft tokens exceed the cache's max_draft ({Kmax})")
    accepted, is_node = _i._check_control(slots, num_accepted, accepted_node, parents, b, k, device)
    silu = _activation_is_silu(activation)
    if out is None:
        out = torch.empty(b, k, H, P, dtype=xBC.dtype, device=device)
    else:
        _checks.tensor("out", out, shape=(b, k, H, P), dtypes=(xBC.dtype,), device=device)
    be = _backend.resolve(backend, device)
    if be in ("cuda", "triton") and (xBC.dtype == torch.float64 or cache.state.dtype == torch.float64):
        raise TypeError(f"xBC / cache.state: float64 is supported by the ref and cpu backends only, not {be!r}")
    if _i._debug_enabled(debug):
        _i._debug_check(lambda sl: cache.meta[sl, 0, 1], S, slots, accepted, is_node, parents, k)
    dt_min, dt_max = _i._dt_limits(dt_limit)
    _i._call(_i._verify_step_fused_op, "verify_step_fused", xBC, dt.unsqueeze(-1), A.view(H, 1, 1), D, z, None if dt_bias is None else
                             dt_bias.unsqueeze(-1), conv_weight, conv_bias, silu, cache.conv_window, cache.state,
                             cache.ring_x, cache.ring_B, cache.ring_dt, cache.meta, slots, accepted, is_node,
                             parents, out, bool(dt_softplus), dt_min, dt_max, False, be)
    return _i._to_kind_of(like, out)
