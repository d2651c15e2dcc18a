"""Public Mamba-1 selective scan: input checks, backend dispatch, torch.library custom ops, autograd.

Ops registered here:
  mamba_kernels::selective_scan_fwd   (u, delta, A, B, C, D?, z?, delta_bias?, initial_state?, cu_seqlens?,
                                       delta_softplus, backend, save_states=False) -> (out, last_state, states)
  mamba_kernels::selective_scan_bwd   (same inputs, dout, dlast_state?, backend, states?) -> [du, ddelta, dA,
                                       dB, dC, dD, dz, ddelta_bias, dinitial_state]  (empty for absent inputs)
`states` are the chunk-entry states the cuda and triton forwards save for their backward when save_states is
set (the public function sets it when a gradient will be needed): float32 (b, d, n_chunks, n), one every
_saved_chunk(backend, ...) steps of every sequence; an empty tensor on the other backends or when not saved.
Backward kernels: cpu (C++), cuda (CUDA) and triton, the last two recomputing each chunk from its saved state
(a backward without saved states first reruns the forward to save them). ref differentiates through the
reference (python_ref) with autograd.
"""
from __future__ import annotations

import functools
from typing import Optional

import torch
from torch import Tensor

from python_ref.selective_scan import selective_scan_ref

from .. import _backend, _checks
from ..testing import poison_

_SUPPORTED = ("ref", "cpu", "triton", "cuda")
MAX_DSTATE = 256
# Tests set this: kernel outputs are allocated NaN-filled (mamba_kernels.testing.poison_) so that an element
# a kernel forgot to write fails the comparison instead of passing on stale memory.
POISON_OUTPUTS = False


def _empty(*shape, dtype, device=None):
    t = torch.empty(*shape, dtype=dtype, device=device)
    return poison_(t) if POISON_OUTPUTS else t


def _compute_dtype(u: Tensor) -> torch.dtype:
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _n_slots(u: Tensor, cu_seqlens: Optional[Tensor]) -> int:
    return u.shape[0] if cu_seqlens is None else cu_seqlens.shape[0] - 1


# ---------------------------------------------------------------------------------------------------
# Backend implementations (plain functions; the custom ops below dispatch to them)


def _fwd_cpu(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, delta_softplus):
    import mamba_kernels._C  # noqa: F401  (registers the op)
    cd = _compute_dtype(u)

    def cv(t):
        return None if t is None else t.to(cd).contiguous()

    uc = cv(u)
    out = _empty(u.shape, dtype=cd)
    last = _empty(_n_slots(u, cu_seqlens), u.shape[1], A.shape[1], dtype=cd)
    cu = None if cu_seqlens is None else cu_seqlens.to(torch.int64).contiguous()
    torch.ops.mamba_kernels._selective_scan_fwd_cpu(uc, cv(delta), cv(A), cv(B), cv(C), cv(D), cv(z),
                                                    cv(delta_bias), cv(initial_state), cu, delta_softplus,
                                                    out, last)
    return out.to(u.dtype), last


def _ckpt_chunk(n: int) -> int:
    """Steps between the states the triton forward saves for its backward: its backward's time tile, sized by n."""
    return 16 if n <= 4 else 32 if n <= 32 else 16 if n <= 64 else 8


@functools.lru_cache(maxsize=None)
def _cuda_ckpt_chunk(n: int, var_b: bool, var_c: bool) -> int:
    import mamba_kernels._cuda  # noqa: F401  (registers the op)
    return int(torch.ops.mamba_kernels._selective_scan_ckpt_chunk(n, var_b, var_c))


def _saved_chunk(backend, A, B, C) -> int:
    """Steps between the states `backend`'s forward saves for these inputs (a power of two). cuda: the CUDA
    backward's time tile, which it restarts from the saved state: 32 where the state-lane backward serves the call
    (n 16, variable B and C), else 256 (csrc selective_scan_cuda_ckpt_chunk decides); triton: _ckpt_chunk(n)."""
    if backend == "cuda":  # int(): under fake tensors the shape is a SymInt, which the lru_cache cannot hash
        return _cuda_ckpt_chunk(int(A.shape[1]), B.dim() == 4, C.dim() == 4)
    return _ckpt_chunk(A.shape[1])


def _n_ckpt(l, nseq: int, chunk: int):
    """Saved states per (batch row, channel): ceil(l / chunk), plus one per packed sequence (nseq > 0), whose
    chunks restart at each sequence start."""
    return -(-l // chunk) + nseq


def _states_shape(u, A, cu_seqlens, chunk):
    nseq = 0 if cu_seqlens is None else cu_seqlens.shape[0] - 1
    return (u.shape[0], u.shape[1], _n_ckpt(u.shape[2], nseq, chunk), A.shape[1])


def _lastc(t, dtype):  # dtype, time (last) axis contiguous
    t = t.to(dtype)
    return t if t.stride(-1) == 1 else t.contiguous()


def _cuda_inputs(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens):
    """The dtypes and layouts the CUDA binding takes (see selective_scan_bind_cuda.cpp)."""
    f32 = torch.float32

    def wc(t):
        return None if t is None else t.to(f32).contiguous()

    ud = u.dtype
    Bk = _lastc(B, ud) if B.dim() == 4 else wc(B)
    Ck = _lastc(C, ud) if C.dim() == 4 else wc(C)
    cu = None if cu_seqlens is None else cu_seqlens.to(torch.int64).contiguous()
    return (_lastc(u, ud), _lastc(delta, ud), wc(A), Bk, Ck, wc(D), None if z is None else _lastc(z, ud),
            wc(delta_bias), wc(initial_state), cu)


def _fwd_cuda(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, delta_softplus, save_states=False):
    import mamba_kernels._cuda  # noqa: F401  (registers the op)
    f32 = torch.float32
    out = _empty(u.shape, dtype=u.dtype, device=u.device)
    last = _empty(_n_slots(u, cu_seqlens), u.shape[1], A.shape[1], dtype=f32, device=u.device)
    chunk = _saved_chunk("cuda", A, B, C)
    if save_states:
        states = _empty(_states_shape(u, A, cu_seqlens, chunk), dtype=f32, device=u.device)
    else:
        states = torch.empty(0, dtype=f32, device=u.device)
    torch.ops.mamba_kernels._selective_scan_fwd_cuda(
        *_cuda_inputs(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens), delta_softplus, out, last,
        states, chunk)
    return out, last, states


def _fwd_triton(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, delta_softplus,
                save_states=False):
    from .triton import selective_scan_fwd_triton
    f32 = torch.float32
    if save_states:
        states = _empty(_states_shape(u, A, cu_seqlens, _ckpt_chunk(A.shape[1])), dtype=f32, device=u.device)
    else:
        states = torch.empty(0, dtype=f32, device=u.device)
    out, last = selective_scan_fwd_triton(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens,
                                          delta_softplus, poison=POISON_OUTPUTS, states=states,
                                          ckpt_chunk=_ckpt_chunk(A.shape[1]))
    return out, last, states


def _fwd_ref(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, delta_softplus):
    out, last = selective_scan_ref(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                                   delta_softplus=delta_softplus, initial_state=initial_state,
                                   return_last_state=True, cu_seqlens=cu_seqlens)
    return out, last


_FWD = {"ref": _fwd_ref, "cpu": _fwd_cpu, "cuda": _fwd_cuda, "triton": _fwd_triton}
_SAVES_STATES = ("cuda", "triton")  # backends whose backward restarts from states their forward saves


def _bwd_cpu(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, delta_softplus, dout, dlast):
    import mamba_kernels._C  # noqa: F401
    cd = _compute_dtype(u)

    def cv(t):
        return None if t is None else t.to(cd).contiguous()

    b, d, l = u.shape
    n = A.shape[1]
    du, ddelta = _empty(b, d, l, dtype=cd), _empty(b, d, l, dtype=cd)
    dA = _empty(d, n, dtype=cd)
    dB = _empty(b, d, n, l, dtype=cd) if B.dim() == 4 else _empty(d, n, dtype=cd)
    dC = _empty(b, d, n, l, dtype=cd) if C.dim() == 4 else _empty(d, n, dtype=cd)
    dD = _empty(d, dtype=cd) if D is not None else torch.empty(0, dtype=cd)
    dz = _empty(b, d, l, dtype=cd) if z is not None else torch.empty(0, dtype=cd)
    dbias = _empty(d, dtype=cd) if delta_bias is not None else torch.empty(0, dtype=cd)
    dinit = (_empty(_n_slots(u, cu_seqlens), d, n, dtype=cd) if initial_state is not None
             else torch.empty(0, dtype=cd))
    cu = None if cu_seqlens is None else cu_seqlens.to(torch.int64).contiguous()
    torch.ops.mamba_kernels._selective_scan_bwd_cpu(
        cv(u), cv(delta), cv(A), cv(B), cv(C), cv(D), cv(z), cv(delta_bias), cv(initial_state), cu,
        delta_softplus, cv(dout), cv(dlast), du, ddelta, dA, dB, dC, dD, dz, dbias, dinit)
    if B.dim() == 4:
        dB = dB.view(b, B.shape[1], d // B.shape[1], n, l).sum(2)
    if C.dim() == 4:
        dC = dC.view(b, C.shape[1], d // C.shape[1], n, l).sum(2)
    return [du, ddelta, dA, dB, dC, dD, dz, dbias, dinit]


def _bwd_cuda(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, delta_softplus, dout, dlast,
              states):
    import mamba_kernels._cuda  # noqa: F401
    f32 = torch.float32
    b, d, l = u.shape
    n = A.shape[1]
    dev, ud = u.device, u.dtype
    du, ddelta = _empty(b, d, l, dtype=ud, device=dev), _empty(b, d, l, dtype=ud, device=dev)
    dz = _empty(b, d, l, dtype=ud, device=dev) if z is not None else torch.empty(0, dtype=ud, device=dev)
    # Accumulated by the kernel (the binding zeroes them): fp32.
    dA = torch.empty(d, n, dtype=f32, device=dev)
    dB = torch.empty(*((b, B.shape[1], n, l) if B.dim() == 4 else (d, n)), dtype=f32, device=dev)
    dC = torch.empty(*((b, C.shape[1], n, l) if C.dim() == 4 else (d, n)), dtype=f32, device=dev)
    dD = torch.empty(d if D is not None else 0, dtype=f32, device=dev)
    dbias = torch.empty(d if delta_bias is not None else 0, dtype=f32, device=dev)
    dinit = (_empty(_n_slots(u, cu_seqlens), d, n, dtype=f32, device=dev) if initial_state is not None
             else torch.empty(0, dtype=f32, device=dev))
    torch.ops.mamba_kernels._selective_scan_bwd_cuda(
        *_cuda_inputs(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens), delta_softplus, states,
        _saved_chunk("cuda", A, B, C), _lastc(dout, ud), None if dlast is None else dlast.to(f32).contiguous(),
        du, ddelta, dA, dB, dC, dD, dz, dbias, dinit)
    return [du, ddelta, dA, dB, dC, dD, dz, dbias, dinit]


def _bwd_triton(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, delta_softplus, dout, dlast,
                states):
    from .triton import selective_scan_bwd_triton
    (du, ddelta, dz), (dA, dB, dC, dD, dbias, dinit) = selective_scan_bwd_triton(
        u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, delta_softplus, dout, dlast, states,
        _ckpt_chunk(A.shape[1]), poison=POISON_OUTPUTS)
    return [du, ddelta, dA, dB, dC, dD, dz, dbias, dinit]


def _bwd_ref(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, delta_softplus, dout, dlast):
    """Gradients by autograd through the reference (any device; slow for long sequences)."""
    with torch.enable_grad():
        args = [u, delta, A, B, C, D, z, delta_bias, initial_state]
        leaves = [None if t is None else t.detach().requires_grad_(True) for t in args]
        out, last = selective_scan_ref(*leaves[:5], D=leaves[5], z=leaves[6], delta_bias=leaves[7],
                                       delta_softplus=delta_softplus, initial_state=leaves[8],
                                       return_last_state=True, cu_seqlens=cu_seqlens)
        outs, gos = [out], [dout.to(out.dtype)]
        if dlast is not None:
            outs.append(last)
            gos.append(dlast.to(last.dtype))
        present = [t for t in leaves if t is not None]
        grads = torch.autograd.grad(outs, present, gos, allow_unused=True)
    it = iter(grads)
    res = []
    for t in leaves:
        if t is None:
            res.append(u.new_empty(0, dtype=_compute_dtype(u)))
        else:
            gr = next(it)
            res.append(torch.zeros_like(t) if gr is None else gr)
    return res


_BWD_KERNEL = {"cpu": _bwd_cpu, "cuda": _bwd_cuda, "triton": _bwd_triton}  # backends with a backward kernel

# ---------------------------------------------------------------------------------------------------
# Custom ops


def _selective_scan_fwd_impl(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                             z: Optional[Tensor], delta_bias: Optional[Tensor], initial_state: Optional[Tensor],
                             cu_seqlens: Optional[Tensor], delta_softplus: bool, backend: str,
                             save_states: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Forward scan on `backend`; returns (out like u, last_state (slots, d, n) float32/float64, states).
    states: with save_states on the cuda / triton backends the chunk-entry states for the backward (see the
    module docstring), else an empty float32 tensor."""
    args = (u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, delta_softplus)
    if backend in _SAVES_STATES:
        out, last, states = _FWD[backend](*args, save_states=save_states)
    else:
        (out, last), states = _FWD[backend](*args), u.new_empty(0, dtype=torch.float32)
    return out, last.to(_compute_dtype(u)), states


# the op; eager calls that need none of its dispatch run _selective_scan_fwd_impl directly (_backend.direct_call_ok)
selective_scan_fwd = torch.library.custom_op("mamba_kernels::selective_scan_fwd",
                                             mutates_args=())(_selective_scan_fwd_impl)


def _saves_states(backend, save_states):
    return backend in _SAVES_STATES and save_states


@selective_scan_fwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, delta_softplus, backend, save_states=False):
    last = u.new_empty(_n_slots(u, cu_seqlens), u.shape[1], A.shape[1], dtype=_compute_dtype(u))
    states = u.new_empty(_states_shape(u, A, cu_seqlens, _saved_chunk(backend, A, B, C))
                         if _saves_states(backend, save_states) else (0,),
                         dtype=torch.float32)
    return torch.empty_like(u), last, states


@torch.library.custom_op("mamba_kernels::selective_scan_bwd", mutates_args=())
def selective_scan_bwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                       z: Optional[Tensor], delta_bias: Optional[Tensor], initial_state: Optional[Tensor],
                       cu_seqlens: Optional[Tensor], delta_softplus: bool, dout: Tensor,
                       dlast_state: Optional[Tensor], backend: str, states: Optional[Tensor] = None
                       ) -> list[Tensor]:
    """Gradients [du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dinitial_state], each in its input's dtype
    (an empty tensor where the input is None). cuda and triton need `states` from their
    selective_scan_fwd(save_states=True) (None or empty: rerun the forward to save them)."""
    if backend not in _BWD_KERNEL:
        raise ValueError(f"backend: selective_scan_bwd has kernels for {list(_BWD_KERNEL)}, got {backend!r}")
    args = (u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, delta_softplus)
    if backend in _SAVES_STATES:
        if states is None or states.numel() == 0:
            states = _FWD[backend](*args, save_states=True)[2]
        grads = _BWD_KERNEL[backend](*args, dout, dlast_state, states)
    else:
        grads = _BWD_KERNEL[backend](*args, dout, dlast_state)
    return _cast_grads(grads, u, [u, delta, A, B, C, D, z, delta_bias, initial_state])


def _cast_grads(grads, u, ins):
    return [g.to(t.dtype) if t is not None else g.to(_compute_dtype(u)) for g, t in zip(grads, ins)]


@selective_scan_bwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, delta_softplus, dout, dlast_state,
      backend, states=None):
    ins = [u, delta, A, B, C, D, z, delta_bias, initial_state]
    return [torch.empty_like(t) if t is not None else u.new_empty(0, dtype=_compute_dtype(u)) for t in ins]


def _setup_context(ctx, inputs, output):
    (u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, delta_softplus, backend) = inputs[:12]
    states = output[2]
    ctx.mark_non_differentiable(states)
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, states)
    ctx.delta_softplus = delta_softplus
    ctx.backend = backend
    ctx.set_materialize_grads(False)  # unused outputs' gradients arrive as None (handled below), not zero fills


def _backward(ctx, dout, dlast, _dstates):
    u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, states = ctx.saved_tensors
    if dout is None:
        dout = torch.zeros_like(u)
    ins = [u, delta, A, B, C, D, z, delta_bias, initial_state]
    if ctx.backend in _BWD_KERNEL:
        grads = selective_scan_bwd(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens,
                                   ctx.delta_softplus, dout.contiguous(), dlast, ctx.backend, states)
    else:
        # Autograd through the reference; not inside a custom op (autograd is off below the op).
        grads = _cast_grads(_bwd_ref(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens,
                                     ctx.delta_softplus, dout, dlast), u, ins)
    grads = [None if t is None else g for g, t in zip(grads, ins)]
    return (*grads, None, None, None, None)


selective_scan_fwd.register_autograd(_backward, setup_context=_setup_context)


# ---------------------------------------------------------------------------------------------------
# Public function


def _check(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, delta_softplus, return_last_state):
    act = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
    wts = (torch.float32, torch.float64)
    _checks.tensor("u", u, ndim=3, dtypes=act)
    b, d, l = u.shape
    _checks.tensor("delta", delta, shape=(b, d, l), dtypes=(u.dtype,))
    _checks.tensor("A", A, ndim=2, dtypes=wts)
    if A.shape[0] != d:
        raise ValueError(f"A: expected shape ({d}, n) with d={d} from u, got {tuple(A.shape)}")
    n = A.shape[1]
    if not 1 <= n <= MAX_DSTATE:
        raise ValueError(f"A: state size n={n} must be in [1, {MAX_DSTATE}]")
    groups = []
    for name, X in (("B", B), ("C", C)):
        _checks.tensor(name, X, dtypes=act)
        if X.dim() == 2:
            if tuple(X.shape) != (d, n):
                raise ValueError(f"{name}: expected (d, n) = ({d}, {n}) or (b, g, n, l), got {tuple(X.shape)}")
        elif X.dim() == 4:
            if X.shape[0] != b or X.shape[2] != n or X.shape[3] != l:
                raise ValueError(f"{name}: expected (b, g, n, l) = ({b}, g, {n}, {l}), got {tuple(X.shape)}")
            g = X.shape[1]
            if g < 1 or d % g != 0:
                raise ValueError(f"{name}: group count g={g} must divide d={d}")
            groups.append(g)
        else:
            raise ValueError(f"{name}: expected (d, n) or (b, g, n, l), got shape {tuple(X.shape)}")
    if len(groups) == 2 and groups[0] != groups[1]:
        raise ValueError(f"C: variable B and C must have the same group count, got {groups[0]} and {groups[1]}")
    _checks.tensor("D", D, shape=(d,), dtypes=wts, optional=True)
    _checks.tensor("z", z, shape=(b, d, l), dtypes=(u.dtype,), optional=True)
    _checks.tensor("delta_bias", delta_bias, shape=(d,), dtypes=wts, optional=True)
    if not isinstance(delta_softplus, bool):
        raise TypeError(f"delta_softplus: expected a bool, got {type(delta_softplus).__name__}")
    if not isinstance(return_last_state, bool):
        raise TypeError(f"return_last_state: expected a bool, got {type(return_last_state).__name__}")
    slots = b
    if cu_seqlens is not None:
        _checks.tensor("cu_seqlens", cu_seqlens, ndim=1, dtypes=(torch.int32, torch.int64))
        if b != 1:
            raise ValueError(f"cu_seqlens: packed sequences need batch size 1 (u is (1, d, total)), got b={b}")
        if cu_seqlens.shape[0] < 2:
            raise ValueError("cu_seqlens: expected at least 2 entries (nseq + 1)")
        cs = cu_seqlens.detach().cpu()
        if int(cs[0]) != 0 or int(cs[-1]) != l or bool((cs[1:] < cs[:-1]).any()):
            raise ValueError(f"cu_seqlens: must start at 0, be non-decreasing and end at l={l}, got {cs.tolist()}")
        slots = cu_seqlens.shape[0] - 1
    _checks.tensor("initial_state", initial_state, shape=(slots, d, n), dtypes=wts, optional=True)
    _checks.same_device(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias,
                        initial_state=initial_state, cu_seqlens=cu_seqlens)


def _cuda_bwd_fits(u, A, B, C) -> bool:
    """Whether the CUDA backward's shared memory fits u's GPU for this call (the time-parallel kernel with both B and C
    variable: ~137-155 KB a block, more than an RTX 30xx / 40xx gives; the state-lane kernel, n 16: 88 KB;
    csrc selective_scan_bwd_fits)."""
    if not hasattr(torch.ops.mamba_kernels, "_selective_scan_bwd_fits"):
        return True  # an extension built before the check: its backward reports the limit itself
    dev = u.device.index if u.device.index is not None else torch.cuda.current_device()
    return _bwd_fits_cached(int(A.shape[1]), B.dim() == 4, C.dim() == 4, dev)


@functools.lru_cache(maxsize=None)
def _bwd_fits_cached(n: int, var_b: bool, var_c: bool, dev: int) -> bool:
    return bool(torch.ops.mamba_kernels._selective_scan_bwd_fits(n, var_b, var_c, dev))


def _training_fallback() -> str:
    """The backend an automatic choice takes for a call that needs a gradient when the CUDA backward does not fit the
    GPU: Triton (forward and backward: the backward restarts from states its own forward saves), else the
    reference."""
    return "triton" if _backend.available("triton") else "ref"


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor] = None,
                   z: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None, *,
                   delta_softplus: bool = False, initial_state: Optional[Tensor] = None,
                   return_last_state: bool = False, cu_seqlens: Optional[Tensor] = None,
                   backend: Optional[str] = None):
    """Mamba-1 selective scan (S6), differentiable; equations in python_ref/selective_scan.py.

    Shapes (b batch, d channels, l length, n state size <= 256, g groups dividing d):
        u, delta, z      (b, d, l)        float32 / float16 / bfloat16 (float64: ref and cpu only), one dtype
        A                (d, n)           float32 (or float64)
        B, C             (d, n) constant, or (b, g, n, l) variable; channel c uses group c // (d // g)
        D, delta_bias    (d,)             float32 (or float64)
        initial_state    (b, d, n)        float32; with cu_seqlens (nseq, d, n)
        cu_seqlens       (nseq + 1,)      int32/int64, b == 1, sequences packed along l, each restarting
                                          from its own initial state; cu_seqlens[0] == 0, [-1] == l
    Returns out (b, d, l) in u's dtype; with return_last_state also last_state (b or nseq, d, n) in
    float32 (float64 for float64 inputs). Gradients flow to every tensor input, and through last_state:
    backward kernels on cpu, cuda and triton (the cuda / triton forwards then also save float32 states,
    b*d*n*l/32 values at n = 16, for their backward); ref differentiates through the reference.
    `backend`: None (fastest available: cuda > triton > ref on GPU, cpu > ref on CPU; a call that needs a gradient
    on a GPU whose shared memory the CUDA backward does not fit, e.g. variable B and C on an RTX 30xx / 40xx, runs
    on triton) or one of "ref", "cpu", "triton", "cuda".

    Example:
        >>> import torch, mamba_kernels
        >>> b, d, l, n = 2, 64, 100, 16
        >>> u, dt, z = torch.randn(b, d, l), torch.randn(b, d, l), torch.randn(b, d, l)
        >>> A = -torch.rand(d, n) * 4
        >>> B, C = torch.randn(b, 1, n, l), torch.randn(b, 1, n, l)
        >>> out, last = mamba_kernels.selective_scan(u, dt, A, B, C, torch.ones(d), z, torch.zeros(d),
        ...     delta_softplus=True, return_last_state=True)
        >>> out.shape, last.shape
        (torch.Size([2, 64, 100]), torch.Size([2, 64, 16]))
    """
    _check(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, delta_softplus, return_last_state)
    be = _backend.resolve(backend, u.device, supported=_SUPPORTED)
    if u.dtype == torch.float64 and be in ("cuda", "triton"):
        raise TypeError(f"u: float64 inputs are supported by the ref and cpu backends, not {be!r}")
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (u, delta, A, B, C, D, z, delta_bias, initial_state))
    if needs_grad and backend is None and be == "cuda" and not _cuda_bwd_fits(u, A, B, C):
        be = _training_fallback()
    # The cuda / triton backwards restart from states their forward saves: save them when a gradient will be
    # needed.
    save = be in _SAVES_STATES and needs_grad
    direct = _backend.direct_call_ok(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens)
    out, last, _ = (_selective_scan_fwd_impl if direct else selective_scan_fwd)(
        u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, delta_softplus, be, save)
    return (out, last) if return_last_state else out
