"""verify_step and friends: public ops, input checks, torch.library registration, backend dispatch.

Semantics: python_ref.verify.VerifyOracle (paper Algorithm 2); cache algorithm: docs/verify_step_design.md.
"""
from __future__ import annotations

import math
import os
import sys
from typing import Optional, Sequence

import torch
from torch import Tensor

from python_ref import verify as _ref
from .. import _backend, _checks
from .cache import VerifyCache

FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
STATE_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
INT32 = (torch.int32,)


def _debug_enabled(debug: Optional[bool]) -> bool:
    return debug if debug is not None else os.environ.get("MAMBA_KERNELS_DEBUG", "0") == "1"


# ------------------------------------------------------------------------------------------------------
# Backend dispatch (one place for all three ops)
# ------------------------------------------------------------------------------------------------------
_KERNELS: dict = {}


def _kernel(op: str, backend: str):
    fn = _KERNELS.get((op, backend))
    if fn is None:
        fn = _KERNELS[(op, backend)] = _load_kernel(op, backend)
    return fn


def _load_kernel(op: str, backend: str):
    if backend == "cpu":
        import mamba_kernels._C  # noqa: F401
        return getattr(torch.ops.mamba_kernels, f"_{op}_cpu")
    if backend == "cuda":
        import mamba_kernels._cuda  # noqa: F401
        return getattr(torch.ops.mamba_kernels, f"_{op}_cuda")
    if backend == "triton":
        from . import triton as _tr
        return getattr(_tr, f"{op}_triton")
    raise ValueError(f"unknown backend {backend!r}")


def _call(custom_op, name: str, *args) -> None:
    """Run one of the ops below: eager calls on plain tensors go straight to the C++ kernel op, because the
    torch.library wrapper costs more Python time per call (~0.1 ms measured on the H200 host) than the kernel
    itself at small batch; torch.compile tracing, fake tensors and the ref / triton backends use the custom op."""
    backend = args[-1]
    if backend in ("cuda", "cpu") and type(args[0]) is torch.Tensor and not torch.compiler.is_compiling():
        _kernel(name, backend)(*args[:-1])
    else:
        custom_op(*args)


@torch.library.custom_op("mamba_kernels::verify_step",
                         mutates_args=("state", "ring_x", "ring_B", "ring_dt", "meta", "y"))
def _verify_step_op(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                    z: Optional[Tensor], dt_bias: Optional[Tensor], state: Tensor, ring_x: Tensor,
                    ring_B: Tensor, ring_dt: Tensor, meta: Tensor, slots: Tensor, accepted: Tensor,
                    accepted_is_node: bool, parents: Optional[Tensor], y: Tensor, dt_softplus: bool,
                    dt_min: float, dt_max: float, fold_all: bool, backend: str) -> None:
    args = (x, dt, A, B, C, D, z, dt_bias, state, ring_x, ring_B, ring_dt, meta, slots, accepted,
            accepted_is_node, parents, y, dt_softplus, dt_min, dt_max, fold_all)
    if backend == "ref":
        _ref.verify_step_cache_ref(*args)
    else:
        _kernel("verify_step", backend)(*args)


@_verify_step_op.register_fake
def _(*args, **kwargs) -> None:
    return None


@torch.library.custom_op("mamba_kernels::verify_step_fused",
                         mutates_args=("conv_window", "state", "ring_x", "ring_B", "ring_dt", "meta", "y"))
def _verify_step_fused_op(xBC: Tensor, dt: Tensor, A: Tensor, D: Optional[Tensor], z: Optional[Tensor],
                          dt_bias: Optional[Tensor], conv_weight: Tensor, conv_bias: Optional[Tensor],
                          conv_silu: bool, conv_window: Tensor, state: Tensor, ring_x: Tensor, ring_B: Tensor,
                          ring_dt: Tensor, meta: Tensor, slots: Tensor, accepted: Tensor,
                          accepted_is_node: bool, parents: Optional[Tensor], y: Tensor, dt_softplus: bool,
                          dt_min: float, dt_max: float, fold_all: bool, backend: str) -> None:
    if backend == "ref":
        conv = {"xBC": xBC, "window": conv_window, "weight": conv_weight, "bias": conv_bias,
                "activation": "silu" if conv_silu else None}
        _ref.verify_step_cache_ref(None, dt, A, None, None, D, z, dt_bias, state, ring_x, ring_B, ring_dt, meta,
                                   slots, accepted, accepted_is_node, parents, y, dt_softplus, dt_min, dt_max,
                                   fold_all, conv=conv)
    else:
        _kernel("verify_step_fused", backend)(
            xBC, dt, A, D, z, dt_bias, conv_weight, conv_bias, conv_silu, conv_window, state, ring_x, ring_B,
            ring_dt, meta, slots, accepted, accepted_is_node, parents, y, dt_softplus, dt_min, dt_max, fold_all)


@_verify_step_fused_op.register_fake
def _(*args, **kwargs) -> None:
    return None


@torch.library.custom_op("mamba_kernels::conv_verify_step", mutates_args=("window", "meta", "out"))
def _conv_verify_step_op(x: Tensor, window: Tensor, meta: Tensor, weight: Tensor, bias: Optional[Tensor],
                         slots: Tensor, accepted: Tensor, accepted_is_node: bool, parents: Optional[Tensor],
                         out: Tensor, silu: bool, backend: str) -> None:
    if backend == "ref":
        _ref.conv_verify_step_ref(x, window, meta, weight, bias, slots, accepted, accepted_is_node, parents, out,
                                  "silu" if silu else None)
    else:
        _kernel("conv_verify_step", backend)(x, window, meta, weight, bias, slots, accepted, accepted_is_node,
                                             parents, out, silu)


@_conv_verify_step_op.register_fake
def _(*args, **kwargs) -> None:
    return None


# ------------------------------------------------------------------------------------------------------
# DLPack: accept any DLPack array (e.g. CuPy), return the same kind
# ------------------------------------------------------------------------------------------------------
def _from_dlpack(v):
    if v is None or isinstance(v, (torch.Tensor, bool, int, float, str, tuple, list, VerifyCache)):
        return v
    if hasattr(v, "__dlpack__"):
        return torch.from_dlpack(v)
    return v


def _to_kind_of(like, y: Tensor):
    if isinstance(like, torch.Tensor) or like is None:
        return y
    mod = sys.modules.get(type(like).__module__.split(".")[0])
    if mod is not None and hasattr(mod, "from_dlpack"):
        return mod.from_dlpack(y)
    return y


# ------------------------------------------------------------------------------------------------------
# Shared checks
# ------------------------------------------------------------------------------------------------------
def _check_cache(cache: VerifyCache, device, *, need_conv_meta=False, need_conv_window=False):
    if not isinstance(cache, VerifyCache):
        raise TypeError(f"cache: expected a VerifyCache, got {type(cache).__name__}")
    S, R, H, P = cache.ring_x.shape if cache.ring_x.dim() == 4 else (None,) * 4
    if S is None:
        raise ValueError(f"cache.ring_x: expected 4 dimensions (S, R, H, P), got {tuple(cache.ring_x.shape)}")
    N = cache.ring_B.shape[-1]
    if N < 1 or H < 1 or P < 1:
        raise ValueError(f"cache: state size n, units and channels per unit must be >= 1, got "
                         f"ring_x {tuple(cache.ring_x.shape)}, ring_B {tuple(cache.ring_B.shape)}")
    _checks.tensor("cache.state", cache.state, dtypes=STATE_DTYPES, device=device, contiguous_last=True)
    _checks.tensor("cache.ring_B", cache.ring_B, shape=(S, R, H, N), dtypes=(cache.ring_x.dtype,), device=device,
                   contiguous_last=True)
    _checks.tensor("cache.ring_dt", cache.ring_dt, shape=(S, R, H, None), dtypes=(torch.float32,), device=device)
    Kmax = cache.meta.shape[-1] - 2
    _checks.tensor("cache.meta", cache.meta, shape=(S, H, Kmax + 2), dtypes=INT32, device=device)
    _checks.tensor("cache.ring_x", cache.ring_x, device=device, contiguous_last=True)
    if not 1 <= Kmax <= 32 or R < Kmax:
        raise ValueError(f"cache: need 1 <= max_draft <= 32 and ring_len >= max_draft, got {Kmax}, {R}")
    if need_conv_window:
        if cache.conv_window is None:
            raise ValueError("cache.conv_window: this op needs a conv window (allocate with conv_dim=, conv_width=)")
        _checks.tensor("cache.conv_window", cache.conv_window, ndim=3, device=device, contiguous_last=True)
        if cache.conv_window.shape[0] != S:
            raise ValueError(f"cache.conv_window: expected {S} slots, got shape {tuple(cache.conv_window.shape)}")
    if need_conv_meta:
        _checks.tensor("cache.conv_meta", cache.conv_meta, shape=(S, Kmax + 1), dtypes=INT32, device=device)
    return S, R, H, P, N, Kmax


def _check_control(slots, num_accepted, accepted_node, parents, b, k, device):
    _checks.tensor("slots", slots, shape=(b,), dtypes=INT32, device=device)
    if (num_accepted is None) == (accepted_node is None):
        raise ValueError("pass exactly one of num_accepted (chain drafts) or accepted_node (tree drafts)")
    if num_accepted is not None:
        _checks.tensor("num_accepted", num_accepted, shape=(b,), dtypes=INT32, device=device)
    else:
        _checks.tensor("accepted_node", accepted_node, shape=(b,), dtypes=INT32, device=device)
    _checks.tensor("parents", parents, shape=(b, k), dtypes=INT32, device=device, optional=True)
    accepted = num_accepted if num_accepted is not None else accepted_node
    return accepted, accepted_node is not None


def _debug_check(meta_pending, S, slots, accepted, is_node, parents, k):
    """Host-synchronising validation (debug mode): slot range, accepted <= pending, parents < own index."""
    sl = slots.cpu().to(torch.long)
    if bool((sl >= S).any()):
        raise ValueError(f"slots: entries must be < num_slots ({S}) (negative = padding); got {sl.tolist()}")
    acc = accepted.cpu().to(torch.long)
    live = sl >= 0
    kp = meta_pending(sl.clamp(min=0)).cpu().to(torch.long)
    if is_node:
        bad = live & ((acc < -1) | (acc >= kp))
        what = "accepted_node must be in [-1, pending count)"
    else:
        bad = live & ((acc < 0) | (acc > kp))
        what = "num_accepted must be in [0, pending count]"
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"{'accepted_node' if is_node else 'num_accepted'}: {what}; row {i} has "
                         f"{int(acc[i])} with {int(kp[i])} pending")
    if parents is not None and k > 0:
        par = parents.cpu().to(torch.long)
        idx = torch.arange(k).expand_as(par)
        if bool(((par >= idx) | (par < -1)).any()):
            raise ValueError("parents: each node's parent must be -1 (the committed state) or an earlier node")


def _dt_limits(dt_limit):
    if dt_limit is None:
        return -math.inf, math.inf
    lo, hi = dt_limit
    return float(lo), float(hi)


# ------------------------------------------------------------------------------------------------------
# Public ops
# ------------------------------------------------------------------------------------------------------
def verify_step(x, dt, A, B, C, cache: VerifyCache, slots, num_accepted=None, *, D=None, z=None, dt_bias=None,
                dt_softplus: bool = False, dt_limit: Optional[Sequence[float]] = None, accepted_node=None,
                parents=None, out=None, backend: Optional[str] = None, debug: Optional[bool] = None):
    """Speculative verify-and-rollback of one SSM layer: commit, score k draft tokens, remember them.

    Per batch row b (slot s = slots[b]; negative = padding: y[b] = 0, cache untouched):
      1. commit the first num_accepted[b] pending tokens of slot s (tree drafts: the path to accepted_node[b],
         -1 = none) into its state, drop the other pending tokens;
      2. y[b, t] for the k new tokens, exactly as k sequential decode steps (tree drafts: node t continues
         from parents[b, t], -1 = the committed state);
      3. remember the k new tokens as pending.
    k = 1 with num_accepted = 1 each call is plain decode.

    Shapes (Mamba-2 | Mamba-1):
      x, z:   (b, k, h, p) | (b, k, d)          dt: (b, k, h) | (b, k, d)       same float dtype as x
      A:      (h,) | (d, n) fp32                D: (h,) or (h, p) | (d,) fp32    dt_bias: (h,) | (d,) fp32
      B, C:   (b, k, g, n), dtype of x          cache: VerifyCache.allocate(..., nheads=h, headdim=p | d=d)
      slots, num_accepted / accepted_node: (b,) int32; parents: (b, k) int32 (tree drafts) or None
      returns y like x (written into `out` when given; nothing is allocated then, except that the CUDA backend's
      split kernel pair, taken from b * h >= 1024 with k >= 2, takes a per-call scratch of about
      b * h * (k * p + ring_len + 3 * k + 8) fp32 from the caching allocator: no sync, capturable).
    No host synchronisation (debug=True or MAMBA_KERNELS_DEBUG=1 adds a synchronising validation of
    slots, num_accepted <= pending count and parents); capturable in a CUDA graph for a fixed k.
    DLPack arrays (e.g. CuPy) are accepted; y is returned as the same kind as x.

    Example:
        >>> import torch, mamba_kernels as mk
        >>> cache = mk.VerifyCache.allocate(4, nheads=2, headdim=8, dstate=4, max_draft=4, dtype=torch.float32)
        >>> x, dt = torch.randn(2, 3, 2, 8), torch.rand(2, 3, 2)
        >>> B, C = torch.randn(2, 3, 1, 4), torch.randn(2, 3, 1, 4)
        >>> A = -torch.rand(2)
        >>> slots = torch.tensor([0, 3], dtype=torch.int32)
        >>> y = mk.verify_step(x, dt, A, B, C, cache, slots, torch.zeros(2, dtype=torch.int32))
        >>> y.shape
        torch.Size([2, 3, 2, 8])
    """
    like = x
    x, dt, A, B, C, D, z, dt_bias, slots, num_accepted, accepted_node, parents, out = map(
        _from_dlpack, (x, dt, A, B, C, D, z, dt_bias, slots, num_accepted, accepted_node, parents, out))
    if not isinstance(cache, VerifyCache):
        raise TypeError(f"cache: expected a VerifyCache, got {type(cache).__name__}")
    cache = cache.map_tensors(_from_dlpack)
    _checks.tensor("x", x, dtypes=FLOATS, contiguous_last=True)
    device = x.device
    S, R, H, P, N, Kmax = _check_cache(cache, device)
    if x.dim() == 4:  # Mamba-2
        b, k, h, p = x.shape
        if cache.is_mamba1:
            raise ValueError(f"x: got the Mamba-2 layout (b, k, h, p) but the cache holds a Mamba-1 state "
                             f"{tuple(cache.state.shape)}")
        _checks.tensor("cache.state", cache.state, shape=(S, h, p, N))
        _checks.tensor("dt", dt, shape=(b, k, h), dtypes=(x.dtype,), device=device)
        _checks.tensor("A", A, shape=(h,), dtypes=(torch.float32,), device=device)
        Bshape = (b, k, None, N)
        _checks.tensor("B", B, shape=Bshape, dtypes=(x.dtype,), device=device, contiguous_last=True)
        g = B.shape[2]
        _checks.divisible("h", h, "g (B.shape[2])", g)
        if D is not None and D.dim() == 1:
            _checks.tensor("D", D, shape=(h,), dtypes=(torch.float32,), device=device)
            D2 = D.unsqueeze(-1).expand(h, p)
        else:
            D2 = _checks.tensor("D", D, shape=(h, p), dtypes=(torch.float32,), device=device, optional=True)
        _checks.tensor("dt_bias", dt_bias, shape=(h,), dtypes=(torch.float32,), device=device, optional=True)
        _checks.tensor("z", z, shape=(b, k, h, p), dtypes=(x.dtype,), device=device, contiguous_last=True,
                       optional=True)
        if cache.ring_dt.shape[-1] != 1:
            raise ValueError("cache.ring_dt: a Mamba-2 cache has ring_dt (S, R, h, 1)")
        x4, z4, dt4, A3 = x, z, dt.unsqueeze(-1), A.view(h, 1, 1)
        bias2 = None if dt_bias is None else dt_bias.unsqueeze(-1)
        state4 = cache.state
        y_shape = (b, k, h, p)
    elif x.dim() == 3:  # Mamba-1
        b, k, d = x.shape
        if not cache.is_mamba1:
            raise ValueError(f"x: got the Mamba-1 layout (b, k, d) but the cache holds a Mamba-2 state "
                             f"{tuple(cache.state.shape)}")
        _checks.tensor("cache.state", cache.state, shape=(S, d, N))
        if H * P != d:
            raise ValueError(f"x: d = {d} does not match the cache's {H} units x {P} channels")
        _checks.tensor("dt", dt, shape=(b, k, d), dtypes=(x.dtype,), device=device, contiguous_last=True)
        _checks.tensor("A", A, shape=(d, N), dtypes=(torch.float32,), device=device, contiguous_last=True)
        _checks.tensor("B", B, shape=(b, k, None, N), dtypes=(x.dtype,), device=device, contiguous_last=True)
        g = B.shape[2]
        _checks.divisible("d", d, "g (B.shape[2])", g)
        if (d // g) % P:
            raise ValueError(f"B: {g} groups of {d // g} channels do not fit the cache's units of {P} channels "
                             f"(allocate the cache with ngroups={g})")
        _checks.tensor("D", D, shape=(d,), dtypes=(torch.float32,), device=device, optional=True)
        _checks.tensor("dt_bias", dt_bias, shape=(d,), dtypes=(torch.float32,), device=device, optional=True)
        _checks.tensor("z", z, shape=(b, k, d), dtypes=(x.dtype,), device=device, contiguous_last=True,
                       optional=True)
        if cache.ring_dt.shape[-1] != P:
            raise ValueError(f"cache.ring_dt: a Mamba-1 cache has ring_dt (S, R, H, {P})")
        x4 = x.unflatten(-1, (H, P))
        z4 = None if z is None else z.unflatten(-1, (H, P))
        dt4, A3 = dt.unflatten(-1, (H, P)), A.view(H, P, N)
        D2 = None if D is None else D.view(H, P)
        bias2 = None if dt_bias is None else dt_bias.view(H, P)
        state4 = cache.state.unflatten(1, (H, P))
        y_shape = (b, k, d)
    else:
        raise ValueError(f"x: expected (b, k, h, p) [Mamba-2] or (b, k, d) [Mamba-1], got {tuple(x.shape)}")
    _checks.tensor("C", C, shape=tuple(B.shape), dtypes=(x.dtype,), device=device, contiguous_last=True)
    if cache.ring_x.dtype != x.dtype:
        raise TypeError(f"cache.ring_x: expected dtype {x.dtype} (like x), got {cache.ring_x.dtype}")
    if k > Kmax:
        raise ValueError(f"x: k = {k} draft tokens exceed the cache's max_draft ({Kmax})")
    accepted, is_node = _check_control(slots, num_accepted, accepted_node, parents, b, k, device)
    if out is None:
        out = torch.empty(y_shape, dtype=x.dtype, device=device)
    else:
        _checks.tensor("out", out, shape=y_shape, dtypes=(x.dtype,), device=device)
        if not out.is_contiguous():
            raise ValueError("out: must be contiguous")
    y4 = out if out.dim() == 4 else out.unflatten(-1, (H, P))
    be = _backend.resolve(backend, device)
    if be in ("cuda", "triton") and (x.dtype == torch.float64 or cache.state.dtype == torch.float64):
        raise TypeError(f"x / cache.state: float64 is supported by the ref and cpu backends only, not {be!r}")
    if _debug_enabled(debug):
        _debug_check(lambda sl: cache.meta[sl, 0, 1], S, slots, accepted, is_node, parents, k)
    dt_min, dt_max = _dt_limits(dt_limit)
    _call(_verify_step_op, "verify_step", x4, dt4, A3, B, C, D2, z4, bias2, state4, cache.ring_x, cache.ring_B, cache.ring_dt, cache.meta,
                    slots, accepted, is_node, parents, y4, bool(dt_softplus), dt_min, dt_max, False, be)
    return _to_kind_of(like, out)


def verify_flush(cache: VerifyCache, A, slots, num_accepted=None, *, accepted_node=None,
                 backend: Optional[str] = None, debug: Optional[bool] = None) -> None:
    """Commit the accepted pending tokens and write the committed state back into cache.state.

    After it, cache.state[slots[b]] is the state after every committed token (what the oracle reports) and
    nothing is pending. Commits the conv window too when the cache has one (fused step). A: as in verify_step.
    """
    A, slots, num_accepted, accepted_node = map(_from_dlpack, (A, slots, num_accepted, accepted_node))
    if not isinstance(cache, VerifyCache):
        raise TypeError(f"cache: expected a VerifyCache, got {type(cache).__name__}")
    cache = cache.map_tensors(_from_dlpack)
    device = cache.state.device
    S, R, H, P, N, Kmax = _check_cache(cache, device)
    b = _checks.tensor("slots", slots, ndim=1, dtypes=INT32, device=device).shape[0]
    accepted, is_node = _check_control(slots, num_accepted, accepted_node, None, b, 0, device)
    if cache.is_mamba1:
        _checks.tensor("A", A, shape=(H * P, N), dtypes=(torch.float32,), device=device)
        A3, state4, Pd = A.view(H, P, N), cache.state.unflatten(1, (H, P)), P
    else:
        _checks.tensor("A", A, shape=(H,), dtypes=(torch.float32,), device=device)
        A3, state4, Pd = A.view(H, 1, 1), cache.state, 1
    be = _backend.resolve(backend, device)
    if _debug_enabled(debug):
        _debug_check(lambda sl: cache.meta[sl, 0, 1], S, slots, accepted, is_node, None, 0)
    dtype = cache.ring_x.dtype
    x = torch.empty(b, 0, H, P, dtype=dtype, device=device)
    dt = torch.empty(b, 0, H, Pd, dtype=dtype, device=device)
    G = 1
    Bm = torch.empty(b, 0, G, N, dtype=dtype, device=device)
    y = torch.empty(b, 0, H, P, dtype=dtype, device=device)
    if cache.conv_window is not None and not cache.is_mamba1:
        dc = cache.conv_window.shape[-1]
        w = cache.conv_window.shape[1] - Kmax + 1
        G = (dc - H * P) // (2 * N)
        if G < 1 or dc != H * P + 2 * G * N or H % G:
            raise ValueError(f"cache.conv_window: {dc} channels do not match h*p + 2*g*n for h={H}, p={P}, n={N}")
        xBC = torch.empty(b, 0, dc, dtype=cache.conv_window.dtype, device=device)
        weight = torch.zeros(dc, w, dtype=torch.float32, device=device)
        _call(_verify_step_fused_op, "verify_step_fused", xBC, dt, A3, None, None, None, weight, None, False, cache.conv_window, state4,
                              cache.ring_x, cache.ring_B, cache.ring_dt, cache.meta, slots, accepted, is_node,
                              None, y, False, -math.inf, math.inf, True, be)
    else:
        _call(_verify_step_op, "verify_step", x, dt, A3, Bm, Bm, None, None, None, state4, cache.ring_x, cache.ring_B, cache.ring_dt,
                        cache.meta, slots, accepted, is_node, None, y, False, -math.inf, math.inf, True, be)
