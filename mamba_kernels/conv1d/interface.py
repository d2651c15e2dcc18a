"""Public causal depthwise conv1d: input checks, backend dispatch, torch.library custom ops, autograd.

Custom ops (namespace mamba_kernels; x / dy in the caller's layout, see ``channel_last``):
  conv1d_fwd(x, weight, bias?, initial_states?, cu_seqlens?, activation, channel_last, return_final_states,
             backend) -> (y, final_states)            final_states is empty unless requested
  conv1d_bwd(dy, dfinal_states?, x, weight, bias?, initial_states?, cu_seqlens?, activation, channel_last,
             need_dinit, backend) -> (dx, dweight, dbias, dinitial_states)   (empty for absent inputs)
  conv1d_update(x (b, d, k) view, conv_state!, weight, bias?, slots?, activation, out!, backend) -> ()
Backends: ref (python_ref), cpu (C++ OpenMP), triton, cuda. Every backend has its
own forward, backward and update kernels.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from python_ref.conv1d import causal_conv1d_bwd_ref, causal_conv1d_ref, causal_conv1d_update_ref

from .. import _backend, _checks
from ..testing import poison_

_SUPPORTED = ("ref", "cpu", "triton", "cuda")
# Tests set this to fill every output buffer with NaN before a kernel writes it (unwritten elements show up).
POISON_OUTPUTS = False
MIN_WIDTH, MAX_WIDTH = 2, 8
_ACTIVATIONS = (None, "silu", "swish")
_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # triton / cuda; cpu and ref add float64


def _silu(activation: Optional[str]) -> bool:
    return activation in ("silu", "swish")


def _grad_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _nseq(x: Tensor, cu_seqlens: Optional[Tensor]) -> int:
    return x.shape[0] if cu_seqlens is None else cu_seqlens.shape[0] - 1


def _logical(t: Tensor, channel_last: bool) -> Tensor:
    """(b, l, d) channel-last -> (b, d, l) view; channel-first unchanged."""
    return t.transpose(1, 2) if channel_last else t


def _unit_inner(t: Tensor) -> Tensor:
    """The kernels (cuda, triton) stream along the last dimension of the caller's layout."""
    return t if t.stride(-1) == 1 else t.contiguous()


def _empty(ref: Tensor, *shape, dtype=None) -> Tensor:
    t = ref.new_empty(shape, dtype=dtype or ref.dtype)
    return poison_(t) if POISON_OUTPUTS else t


def _empty_like(t: Tensor) -> Tensor:
    """Contiguous (in the caller's layout) output like t."""
    out = torch.empty_like(t, memory_format=torch.contiguous_format)
    return poison_(out) if POISON_OUTPUTS else out


# ---------------------------------------------------------------------------------------------------
# Forward backends: each writes y (caller layout, contiguous) and final (nseq, d, w-1) or returns them.


def _fwd_ref(x, weight, bias, init, cu, silu, channel_last, want_final):
    y, final = causal_conv1d_ref(x, weight, bias, init, True, "silu" if silu else None, cu, channel_last)
    return y.contiguous(), final if want_final else None


def _fwd_kernel(op_name, x, weight, bias, init, cu, silu, channel_last, want_final, extra=()):
    y = _empty_like(x)
    final = _empty(x, _nseq(x, cu), weight.shape[0], weight.shape[1] - 1) if want_final else None
    getattr(torch.ops.mamba_kernels, op_name)(_logical(x, channel_last), weight, bias, init, cu,
                                              _logical(y, channel_last), final, silu, *extra)
    return y, final


def _fwd_cpu(x, weight, bias, init, cu, silu, channel_last, want_final):
    import mamba_kernels._C  # noqa: F401  (registers the op)
    return _fwd_kernel("_conv1d_fwd_cpu", x, weight, bias, init, cu, silu, channel_last, want_final)


def _fwd_cuda(x, weight, bias, init, cu, silu, channel_last, want_final):
    import mamba_kernels._cuda  # noqa: F401
    return _fwd_kernel("_conv1d_fwd_cuda", _unit_inner(x), weight, bias, init, cu, silu, channel_last, want_final,
                       extra=(channel_last,))


def _fwd_triton(x, weight, bias, init, cu, silu, channel_last, want_final):
    from .triton import conv1d_fwd_triton
    x = _unit_inner(x)
    y = _empty_like(x)
    final = _empty(x, _nseq(x, cu), weight.shape[0], weight.shape[1] - 1) if want_final else None
    conv1d_fwd_triton(_logical(x, channel_last), weight, bias, init, cu, _logical(y, channel_last), final, silu)
    return y, final


_FWD = {"ref": _fwd_ref, "cpu": _fwd_cpu, "cuda": _fwd_cuda, "triton": _fwd_triton}


# ---------------------------------------------------------------------------------------------------
# Backward backends -> (dx, dweight fp32/fp64 (d, w), dbias or None, dinit or None)


def _bwd_ref(dy, dfinal, x, weight, bias, init, cu, silu, channel_last, need_dinit):
    dx, dw, db, di = causal_conv1d_bwd_ref(dy, x, weight, bias, init, dfinal, "silu" if silu else None, cu,
                                           channel_last)
    return dx.contiguous(), dw, db, di if need_dinit else None


def _bwd_alloc(x, weight, bias, cu, need_dinit, param_dtypes=False):
    """dweight / dbias in fp32 (fp64 for fp64 x), or with param_dtypes in the dtypes of weight / bias."""
    dx = _empty_like(x)
    gd = _grad_dtype(x)
    dw = _empty(x, weight.shape[0], weight.shape[1], dtype=weight.dtype if param_dtypes else gd)
    db = _empty(x, weight.shape[0], dtype=bias.dtype if param_dtypes else gd) if bias is not None else None
    di = _empty(x, _nseq(x, cu), weight.shape[0], weight.shape[1] - 1) if need_dinit else None
    return dx, dw, db, di


def _bwd_cpu(dy, dfinal, x, weight, bias, init, cu, silu, channel_last, need_dinit):
    import mamba_kernels._C  # noqa: F401
    dx, dw, db, di = _bwd_alloc(x, weight, bias, cu, need_dinit)
    torch.ops.mamba_kernels._conv1d_bwd_cpu(_logical(x, channel_last), weight, bias, init, cu,
                                            _logical(dy, channel_last), dfinal, _logical(dx, channel_last), dw, db,
                                            di, silu)
    return dx, dw, db, di


def _bwd_cuda(dy, dfinal, x, weight, bias, init, cu, silu, channel_last, need_dinit):
    import mamba_kernels._cuda  # noqa: F401
    x, dy = _unit_inner(x), _unit_inner(dy)
    dx, dw, db, di = _bwd_alloc(x, weight, bias, cu, need_dinit, param_dtypes=True)
    torch.ops.mamba_kernels._conv1d_bwd_cuda(_logical(x, channel_last), weight, bias, init, cu,
                                             _logical(dy, channel_last), dfinal, _logical(dx, channel_last), dw, db,
                                             di, silu, channel_last)
    return dx, dw, db, di


def _bwd_triton(dy, dfinal, x, weight, bias, init, cu, silu, channel_last, need_dinit):
    from .triton import conv1d_bwd_triton
    x, dy = _unit_inner(x), _unit_inner(dy)
    dx, dw, db, di = _bwd_alloc(x, weight, bias, cu, need_dinit)
    conv1d_bwd_triton(_logical(x, channel_last), weight, bias, init, cu, _logical(dy, channel_last), dfinal,
                      _logical(dx, channel_last), dw, db, di, silu)
    return dx, dw, db, di


_BWD = {"ref": _bwd_ref, "cpu": _bwd_cpu, "cuda": _bwd_cuda, "triton": _bwd_triton}


# ---------------------------------------------------------------------------------------------------
# Update backends (mutate conv_state and out)


def _update_ref(x, conv_state, weight, bias, slots, silu, out):
    out.copy_(causal_conv1d_update_ref(x, conv_state, weight, bias, "silu" if silu else None, slots))


def _update_cpu(x, conv_state, weight, bias, slots, silu, out):
    import mamba_kernels._C  # noqa: F401
    torch.ops.mamba_kernels._conv1d_update_cpu(x, conv_state, weight, bias, slots, out, silu)


def _update_cuda(x, conv_state, weight, bias, slots, silu, out):
    import mamba_kernels._cuda  # noqa: F401
    torch.ops.mamba_kernels._conv1d_update_cuda(x, conv_state, weight, bias, slots, out, silu)


def _update_triton(x, conv_state, weight, bias, slots, silu, out):
    from .triton import conv1d_update_triton
    conv1d_update_triton(x, conv_state, weight, bias, slots, out, silu)


_UPDATE = {"ref": _update_ref, "cpu": _update_cpu, "cuda": _update_cuda, "triton": _update_triton}


# ---------------------------------------------------------------------------------------------------
# Custom ops


def _conv1d_fwd_impl(x: Tensor, weight: Tensor, bias: Optional[Tensor], initial_states: Optional[Tensor],
                     cu_seqlens: Optional[Tensor], activation: Optional[str], channel_last: bool,
                     return_final_states: bool, backend: str) -> tuple[Tensor, Tensor]:
    """Forward on `backend`: (y like x (contiguous), final_states (nseq, d, w-1) or an empty tensor)."""
    y, final = _FWD[backend](x, weight, bias, initial_states, cu_seqlens, _silu(activation), channel_last,
                             return_final_states)
    return y, final if final is not None else x.new_empty(0)


# the op; eager calls that need none of its dispatch run _conv1d_fwd_impl directly (_backend.direct_call_ok)
conv1d_fwd = torch.library.custom_op("mamba_kernels::conv1d_fwd", mutates_args=())(_conv1d_fwd_impl)


@conv1d_fwd.register_fake
def _(x, weight, bias, initial_states, cu_seqlens, activation, channel_last, return_final_states, backend):
    y = torch.empty_like(x, memory_format=torch.contiguous_format)
    if return_final_states:
        return y, x.new_empty(_nseq(x, cu_seqlens), weight.shape[0], weight.shape[1] - 1)
    return y, x.new_empty(0)


@torch.library.custom_op("mamba_kernels::conv1d_bwd", mutates_args=())
def conv1d_bwd(dy: Tensor, dfinal_states: Optional[Tensor], x: Tensor, weight: Tensor, bias: Optional[Tensor],
               initial_states: Optional[Tensor], cu_seqlens: Optional[Tensor], activation: Optional[str],
               channel_last: bool, need_dinit: bool, backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients (dx like x, dweight like weight, dbias like bias, dinitial_states like initial_states); an
    empty tensor stands for an absent bias / an unwanted dinitial_states."""
    dx, dw, db, di = _BWD[backend](dy, dfinal_states, x, weight, bias, initial_states, cu_seqlens, _silu(activation),
                                   channel_last, need_dinit and initial_states is not None)
    dw = dw.to(weight.dtype)
    db = db.to(bias.dtype) if db is not None else x.new_empty(0)
    di = di if di is not None else x.new_empty(0)
    return dx, dw, db, di


@conv1d_bwd.register_fake
def _(dy, dfinal_states, x, weight, bias, initial_states, cu_seqlens, activation, channel_last, need_dinit,
      backend):
    dx = torch.empty_like(x, memory_format=torch.contiguous_format)
    dw = torch.empty_like(weight, memory_format=torch.contiguous_format)
    db = torch.empty_like(bias, memory_format=torch.contiguous_format) if bias is not None else x.new_empty(0)
    di = (x.new_empty(_nseq(x, cu_seqlens), weight.shape[0], weight.shape[1] - 1)
          if need_dinit and initial_states is not None else x.new_empty(0))
    return dx, dw, db, di


def _setup_context(ctx, inputs, output):
    x, weight, bias, initial_states, cu_seqlens, activation, channel_last, return_final_states, backend = inputs
    ctx.save_for_backward(x, weight, bias, initial_states, cu_seqlens)
    ctx.activation, ctx.channel_last, ctx.backend = activation, channel_last, backend
    ctx.return_final_states = return_final_states
    ctx.set_materialize_grads(False)  # unused outputs' gradients arrive as None (handled below), not zero fills


def _backward(ctx, dy, dfinal):
    x, weight, bias, initial_states, cu_seqlens = ctx.saved_tensors
    if not ctx.return_final_states or dfinal is None or dfinal.numel() == 0:
        dfinal = None
    need_dinit = initial_states is not None and ctx.needs_input_grad[3]
    if dy is None:
        dy = torch.zeros_like(x)
    dx, dw, db, di = conv1d_bwd(dy, dfinal, x, weight, bias, initial_states, cu_seqlens, ctx.activation,
                                ctx.channel_last, need_dinit, ctx.backend)
    return (dx, dw, db if bias is not None else None, di if need_dinit else None, None, None, None, None, None)


conv1d_fwd.register_autograd(_backward, setup_context=_setup_context)


@torch.library.custom_op("mamba_kernels::conv1d_update", mutates_args=("conv_state", "out"))
def conv1d_update(x: Tensor, conv_state: Tensor, weight: Tensor, bias: Optional[Tensor], slots: Optional[Tensor],
                  activation: Optional[str], out: Tensor, backend: str) -> None:
    """Decode update on `backend`: x, out (b, d, k) views; conv_state (S, d, s) and out are written."""
    _UPDATE[backend](x, conv_state, weight, bias, slots, _silu(activation), out)


@conv1d_update.register_fake
def _(x, conv_state, weight, bias, slots, activation, out, backend):
    return None


# The decode update has no autograd, so the public function calls the C++ ops (schema'd, mutation-annotated)
# directly for the cpu / cuda backends: the Python custom-op layer costs tens of microseconds per call, more
# than the one-token kernel. Their fake kernels keep them traceable by torch.compile.
_DIRECT_UPDATE_OPS = {}


def _direct_update_op(backend: str):
    op = _DIRECT_UPDATE_OPS.get(backend)
    if op is None:
        import importlib
        importlib.import_module("mamba_kernels._C" if backend == "cpu" else "mamba_kernels._cuda")
        name = f"mamba_kernels::_conv1d_update_{backend}"
        torch.library.register_fake(name)(lambda x, conv_state, weight, bias, slots, out, silu: None)
        op = _DIRECT_UPDATE_OPS[backend] = getattr(torch.ops.mamba_kernels, f"_conv1d_update_{backend}").default
    return op


# ---------------------------------------------------------------------------------------------------
# Public API


def _check_weight(weight: Tensor, device) -> int:
    _checks.tensor("weight", weight, ndim=2, dtypes=_checks.FLOAT_DTYPES, device=device)
    w = weight.shape[1]
    if not MIN_WIDTH <= w <= MAX_WIDTH:
        raise ValueError(f"weight: conv width (weight.shape[1]) must be in [{MIN_WIDTH}, {MAX_WIDTH}], got {w}")
    return w


def _check_activation(activation):
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation: expected None or 'silu', got {activation!r}")


@torch.compiler.assume_constant_result
def _resolve(backend: Optional[str], device_type: str) -> str:
    """_backend.resolve, evaluated once at trace time under torch.compile (it only depends on constants)."""
    return _backend.resolve(backend, torch.device(device_type), supported=_SUPPORTED)


def _check_backend_dtype(backend: str, x: Tensor):
    if backend in ("cuda", "triton") and x.dtype not in _KERNEL_DTYPES:
        raise TypeError(f"x: dtype {x.dtype} is not supported by backend={backend!r} (float32, float16, bfloat16; "
                        "float64 runs on the 'cpu' and 'ref' backends)")


def _check_cu_seqlens(cu_seqlens, x: Tensor, total: int) -> Tensor:
    _checks.tensor("cu_seqlens", cu_seqlens, ndim=1, dtypes=(torch.int32, torch.int64))
    if cu_seqlens.device != x.device:
        raise ValueError(f"cu_seqlens: expected a tensor on {x.device} (like x), got one on {cu_seqlens.device}")
    if cu_seqlens.shape[0] < 1:
        raise ValueError("cu_seqlens: expected (nseq + 1,) entries, got an empty tensor")
    if x.shape[0] != 1:
        raise ValueError(f"x: varlen packing (cu_seqlens) needs batch 1, got batch {x.shape[0]}")
    if cu_seqlens.device.type == "cpu" and not torch.compiler.is_compiling():  # on a GPU it would cost a sync
        v = cu_seqlens.tolist()
        if v[0] != 0 or v[-1] != total or any(b < a for a, b in zip(v, v[1:])):
            raise ValueError(f"cu_seqlens: must start at 0, be non-decreasing and end at the token count {total}, "
                             f"got {v if len(v) <= 16 else v[:8] + ['...'] + v[-4:]}")
    return cu_seqlens.to(torch.int32).contiguous()


def _infer_layout(x: Tensor, d: int, channel_last: Optional[bool]) -> bool:
    if channel_last is None:
        first, last = x.shape[1] == d, x.shape[2] == d
        if first and last:
            raise ValueError(f"channel_last: x has shape {tuple(x.shape)} and the channel count {d} fits both "
                             "(b, d, l) and (b, l, d); pass channel_last=True or False")
        if not (first or last):
            raise ValueError(f"x: shape {tuple(x.shape)} has no dimension matching the {d} channels of weight "
                             "(expected (b, d, l) or, channel-last, (b, l, d))")
        return last
    if not isinstance(channel_last, bool):
        raise TypeError(f"channel_last: expected a bool or None, got {type(channel_last).__name__}")
    dim = 2 if channel_last else 1
    if x.shape[dim] != d:
        want = "(b, l, d)" if channel_last else "(b, d, l)"
        raise ValueError(f"x: channel_last={channel_last} expects {want} with d = {d} (weight.shape[0]), got shape "
                         f"{tuple(x.shape)}")
    return channel_last


def causal_conv1d(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, *,
                  initial_states: Optional[Tensor] = None, return_final_states: bool = False,
                  activation: Optional[str] = None, cu_seqlens: Optional[Tensor] = None,
                  channel_last: Optional[bool] = None, backend: Optional[str] = None):
    """Causal depthwise conv1d, y[c, t] = act(bias[c] + sum_{i<w} weight[c, i] * x[c, t - w + 1 + i]).

    Shapes:
        x               (b, d, l), or channel-last (b, l, d); varlen: b = 1, l = total tokens
        weight          (d, w), 2 <= w <= 8;  bias (d,) or None
        initial_states  (b, d, w-1), varlen (nseq, d, w-1), dtype of x, or None (zeros)
        cu_seqlens      (nseq + 1,) int32 (or int64), cumulative sequence starts, or None
        channel_last    None infers the layout from which dimension of x has weight.shape[0] entries (an error
                        when both do: pass it explicitly when l may equal d)
        activation      None or "silu" ("swish" is accepted as a synonym)
    Returns y in the shape and dtype of x, or (y, final_states) with ``return_final_states``; final_states is
    (b or nseq, d, w-1): the last w-1 inputs of each sequence (including initial states for short ones).
    Differentiable in x, weight, bias and initial_states. Backends: "cuda", "triton" (CUDA tensors or
    TRITON_INTERPRET=1), "cpu", "ref"; None picks the fastest available for the device of x.

    Example:
        >>> import torch, mamba_kernels
        >>> x = torch.randn(2, 64, 10); w = torch.randn(64, 4); b = torch.randn(64)
        >>> y, fin = mamba_kernels.causal_conv1d(x, w, b, activation="silu", return_final_states=True)
        >>> y.shape, fin.shape
        (torch.Size([2, 64, 10]), torch.Size([2, 64, 3]))
    """
    _checks.tensor("x", x, ndim=3, dtypes=_checks.FLOAT_DTYPES)
    device = x.device
    w = _check_weight(weight, device)
    d = weight.shape[0]
    channel_last = _infer_layout(x, d, channel_last)
    total = x.shape[1] if channel_last else x.shape[2]
    _checks.tensor("bias", bias, shape=(d,), dtypes=_checks.FLOAT_DTYPES, device=device, optional=True)
    _check_activation(activation)
    if not isinstance(return_final_states, bool):
        raise TypeError(f"return_final_states: expected a bool, got {type(return_final_states).__name__}")
    if cu_seqlens is not None:
        cu_seqlens = _check_cu_seqlens(cu_seqlens, x, total)
    nseq = _nseq(x, cu_seqlens)
    if initial_states is not None:
        _checks.tensor("initial_states", initial_states, shape=(nseq, d, w - 1), device=device)
        if initial_states.dtype != x.dtype:
            raise TypeError(f"initial_states: expected the dtype of x ({x.dtype}), got {initial_states.dtype}")
    backend = _resolve(backend, device.type)
    _check_backend_dtype(backend, x)
    direct = _backend.direct_call_ok(x, weight, bias, initial_states, cu_seqlens)
    y, final = (_conv1d_fwd_impl if direct else conv1d_fwd)(x, weight, bias, initial_states, cu_seqlens, activation,
                                                            channel_last, return_final_states, backend)
    return (y, final) if return_final_states else y


def causal_conv1d_update(x: Tensor, conv_state: Tensor, weight: Tensor, bias: Optional[Tensor] = None, *,
                         slots: Optional[Tensor] = None, activation: Optional[str] = None,
                         out: Optional[Tensor] = None, backend: Optional[str] = None) -> Tensor:
    """Decode step: convolve k new tokens per sequence against a pool of conv states, updating it in place.

    Shapes:
        x           (b, d) one token, or (b, d, k) k tokens; any strides (a channel-last (b, k, d) tensor can be
                    passed as ``x.transpose(1, 2)`` without a copy)
        conv_state  (S, d, s) with s >= w-1, dtype of x: the last s inputs of each sequence, oldest first;
                    updated in place to the last s inputs of [state, x]
        weight      (d, w), 2 <= w <= 8;  bias (d,) or None
        slots       (b,) int32: row i uses conv_state[slots[i]]; a slot outside [0, S) (e.g. -1) marks a
                    padding row, whose state is untouched and whose output is zero. None: row i uses slot i
                    (then S must equal b). Rows must use distinct slots.
        out         optional output buffer shaped like x (may be x itself)
    Returns y shaped like x: y[i, c, t] = act(bias[c] + sum_j weight[c, j] * e[c, s + t - w + 1 + j]) with
    e = [conv_state[slots[i]], x[i]].

    Example:
        >>> import torch, mamba_kernels
        >>> state = torch.zeros(8, 64, 3); w = torch.randn(64, 4)
        >>> y = mamba_kernels.causal_conv1d_update(torch.randn(2, 64), state, w,
        ...                                        slots=torch.tensor([5, -1], dtype=torch.int32))
        >>> y.shape
        torch.Size([2, 64])
    """
    _checks.tensor("x", x, dtypes=_checks.FLOAT_DTYPES)
    if x.dim() not in (2, 3):
        raise ValueError(f"x: expected (b, d) or (b, d, k), got shape {tuple(x.shape)}")
    device = x.device
    w = _check_weight(weight, device)
    d = weight.shape[0]
    if x.shape[1] != d:
        raise ValueError(f"x: expected (b, d) or (b, d, k) with d = {d} (weight.shape[0]), got shape "
                         f"{tuple(x.shape)}")
    b = x.shape[0]
    _checks.tensor("conv_state", conv_state, ndim=3, device=device)
    if conv_state.shape[1] != d or conv_state.shape[2] < w - 1:
        raise ValueError(f"conv_state: expected (S, {d}, s) with s >= {w - 1}, got shape {tuple(conv_state.shape)}")
    if conv_state.dtype != x.dtype:
        raise TypeError(f"conv_state: expected the dtype of x ({x.dtype}), got {conv_state.dtype}")
    _checks.tensor("bias", bias, shape=(d,), dtypes=_checks.FLOAT_DTYPES, device=device, optional=True)
    _check_activation(activation)
    if slots is not None:
        _checks.tensor("slots", slots, shape=(b,), dtypes=(torch.int32, torch.int64), device=device)
        slots = slots.to(torch.int32).contiguous()
    elif conv_state.shape[0] != b:
        raise ValueError(f"conv_state: without slots it needs one state per row of x ({b}), got "
                         f"{conv_state.shape[0]}")
    if out is None:
        out = torch.empty_like(x)
        if POISON_OUTPUTS:
            poison_(out)
    else:
        _checks.tensor("out", out, shape=tuple(x.shape), device=device)
        if out.dtype != x.dtype:
            raise TypeError(f"out: expected the dtype of x ({x.dtype}), got {out.dtype}")
    backend = _resolve(backend, device.type)
    _check_backend_dtype(backend, x)
    xv, ov = (x[:, :, None], out[:, :, None]) if x.dim() == 2 else (x, out)
    if backend in ("cpu", "cuda") and not torch.compiler.is_compiling():
        _direct_update_op(backend)(xv, conv_state, weight, bias, slots, ov, _silu(activation))
    else:
        conv1d_update(xv, conv_state, weight, bias, slots, activation, ov, backend)
    return out
