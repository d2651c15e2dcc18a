"""Public chunked SSD scan: input checks, backend dispatch, torch.library custom ops, autograd.

Custom ops (namespace mamba_kernels):
  ssd_chunked_fwd  -> (out, ypre, states_in, final_states)   backends ref / cpu / triton / cuda
  ssd_chunked_bwd  -> gradients                               backends triton / cuda
`ypre` (pre-gate output, x.dtype) is kept only when z is given, the backend's backward needs it (triton, cuda) and
the caller asks for it (keep_ypre: a backward will run); `states_in` holds the state entering every chunk
(n_slots, h, p, n), from which the public function gathers the prefix-caching chunk states: fp32 (fp64 for fp64 x),
except that the triton backend keeps it in bf16 for bf16 x unless fp32_states (set when chunk states are returned).
The ref and cpu backends differentiate through python_ref (torch autograd). The cuda backend's forward is the CUDA
chunk pipeline (cuda.py, csrc/ssd/ssd_chunk_kernel.cuh; chunk_size a multiple of 64, n <= 128, else the Triton
forward) and its backward the Triton backward, or with MK_SSD_CUDA_BWD=1 the CUDA backward (cuda_bwd.py,
csrc/ssd/ssd_bwd_kernel.cuh; p <= 128 too, else Triton; it measured 1.8-2x slower than Triton's), reading the cuda
forward's ypre and fp32 states_in. cuda is opt-in (backend="cuda"): its forward measured slower than Triton's on
the H200 (kernels 1.09 / 0.45 ms against 0.73 / 0.35 at the two issue shapes), so the default on CUDA tensors stays
triton.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from python_ref.ssd import ssd_chunked_ref

from .. import _backend, _checks
from .layout import chunk_layout, n_chunk_slots

SUPPORTED = ("ref", "cpu", "triton", "cuda")
_INT_DTYPES = (torch.int32, torch.int64)


def _state_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _keeps_ypre(backend: str, z, keep_ypre: bool) -> bool:
    return z is not None and backend in ("triton", "cuda") and keep_ypre


def _states_in_dtype(x: torch.Tensor, backend: str, fp32_states: bool) -> torch.dtype:
    if backend == "triton" and x.dtype == torch.bfloat16 and not fp32_states:
        return torch.bfloat16
    return _state_dtype(x)


def _limit(has_limit: bool, lo: float, hi: float):
    return (lo, hi) if has_limit else None


# --------------------------------------------------------------------------------------------- forward op
def _ssd_chunked_fwd_impl(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                          D: Optional[torch.Tensor], z: Optional[torch.Tensor], dt_bias: Optional[torch.Tensor],
                          initial_states: Optional[torch.Tensor], cu_seqlens: Optional[torch.Tensor],
                          chunk_size: int, dt_softplus: bool, has_limit: bool, dt_lo: float, dt_hi: float,
                          backend: str, keep_ypre: bool = True, fp32_states: bool = True
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    dt_limit = _limit(has_limit, dt_lo, dt_hi)
    sdt = _state_dtype(x)
    if backend == "triton":
        from . import triton as tri
        out, ypre, states_in, final = tri.ssd_fwd(x, dt, A, B, C, chunk_size, D, z, dt_bias, dt_softplus, dt_limit,
                                                  initial_states, cu_seqlens, need_ypre=keep_ypre,
                                                  states_fp32=fp32_states)
        if ypre.numel() == 0:
            ypre = x.new_empty(0, dtype=torch.float32)
        return out, ypre, states_in.to(_states_in_dtype(x, backend, fp32_states)), final.to(sdt)
    if backend == "cuda":
        from .cuda import ssd_fwd_cuda
        out, ypre, states_in, final = ssd_fwd_cuda(x, dt, A, B, C, chunk_size, D, z, dt_bias, dt_softplus, dt_limit,
                                                   initial_states, cu_seqlens, need_ypre=keep_ypre)
        if ypre.numel() == 0:
            ypre = x.new_empty(0, dtype=torch.float32)
        return out, ypre, states_in.to(_states_in_dtype(x, backend, fp32_states)), final.to(sdt)
    if backend == "cpu":
        from .cpu import ssd_fwd_cpu
        return ssd_fwd_cpu(x, dt, A, B, C, chunk_size, D, z, dt_bias, dt_softplus, dt_limit, initial_states,
                           cu_seqlens)
    # ref
    y, final, chunk_states = ssd_chunked_ref(
        x, dt, A, B, C, chunk_size, D=D, z=z, dt_bias=dt_bias, dt_softplus=dt_softplus, dt_limit=dt_limit,
        initial_states=initial_states, return_final_states=True, cu_seqlens=cu_seqlens, return_chunk_states=True)
    b, l, h, p = x.shape
    states_in = states_in_from_chunk_states(chunk_states, initial_states, b, l, h, p, B.shape[-1], chunk_size,
                                            cu_seqlens, sdt)
    return y, x.new_empty(0, dtype=torch.float32), states_in, final.to(sdt)


# the op; eager calls that need none of its dispatch run _ssd_chunked_fwd_impl directly (_backend.direct_call_ok)
ssd_chunked_fwd = torch.library.custom_op("mamba_kernels::ssd_chunked_fwd", mutates_args=())(_ssd_chunked_fwd_impl)


@ssd_chunked_fwd.register_fake
def _(x, dt, A, B, C, D, z, dt_bias, initial_states, cu_seqlens, chunk_size, dt_softplus, has_limit, dt_lo, dt_hi,
      backend, keep_ypre=True, fp32_states=True):
    b, l, h, p = x.shape
    n = B.shape[-1]
    nseq = b if cu_seqlens is None else cu_seqlens.shape[0] - 1
    slots = n_chunk_slots(b, l, chunk_size, None if cu_seqlens is None else nseq)
    sdt = _state_dtype(x)
    ypre = (x.new_empty(x.shape) if _keeps_ypre(backend, z, keep_ypre) else x.new_empty(0, dtype=torch.float32))
    return (torch.empty_like(x), ypre, x.new_empty(slots, h, p, n, dtype=_states_in_dtype(x, backend, fp32_states)),
            x.new_empty(nseq, h, p, n, dtype=sdt))


def states_in_from_chunk_states(chunk_states, initial_states, b, l, h, p, n, chunk_size, cu_seqlens, sdt):
    """(n_slots, h, p, n): the state entering each chunk, from the states after each chunk (ref layout)."""
    chunks, seqs, n_slots = chunk_layout(b, l, chunk_size, cu_seqlens)
    cs = chunk_states.reshape(-1, h, p, n).to(sdt)
    init = (initial_states.to(sdt) if initial_states is not None
            else cs.new_zeros(len(seqs), h, p, n))
    # entering state of chunk k: the state after chunk k-1 of the same sequence, or the sequence's initial state
    pool = torch.cat([cs, init, cs.new_zeros(1, h, p, n)], 0)
    idx = []
    for si, (first, nc) in enumerate(seqs):
        idx += [len(cs) + si] + list(range(first, first + nc - 1)) if nc else []
    idx += [pool.shape[0] - 1] * (n_slots - len(idx))
    return pool[torch.tensor(idx, dtype=torch.long, device=pool.device)] if idx else pool[:0]


# --------------------------------------------------------------------------------------------- backward op
@torch.library.custom_op("mamba_kernels::ssd_chunked_bwd", mutates_args=())
def ssd_chunked_bwd(dout: torch.Tensor, d_states_in: Optional[torch.Tensor], d_final: Optional[torch.Tensor],
                    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                    D: Optional[torch.Tensor], z: Optional[torch.Tensor], dt_bias: Optional[torch.Tensor],
                    initial_states: Optional[torch.Tensor], cu_seqlens: Optional[torch.Tensor],
                    ypre: torch.Tensor, states_in: torch.Tensor, chunk_size: int, dt_softplus: bool,
                    has_limit: bool, dt_lo: float, dt_hi: float, backend: str) -> list[torch.Tensor]:
    """Gradients [dx, ddt, dA, dB, dC, dD, dz, ddt_bias, dinitial_states]; an empty tensor for an absent input."""
    if backend not in ("triton", "cuda"):
        raise ValueError(f"ssd_chunked_bwd: backend {backend!r} has no kernel backward (it uses autograd)")
    from . import triton as tri
    from .cuda_bwd import ssd_bwd_cuda
    bwd = ssd_bwd_cuda if backend == "cuda" else tri.ssd_bwd
    grads = bwd(dout, d_states_in, d_final, x, dt, A, B, C, chunk_size, D, z, dt_bias, dt_softplus,
                _limit(has_limit, dt_lo, dt_hi), initial_states, cu_seqlens, ypre, states_in)
    return [g if g is not None else x.new_empty(0) for g in grads]


@ssd_chunked_bwd.register_fake
def _(dout, d_states_in, d_final, x, dt, A, B, C, D, z, dt_bias, initial_states, cu_seqlens, ypre, states_in,
      chunk_size, dt_softplus, has_limit, dt_lo, dt_hi, backend):
    return [torch.empty_like(t) if t is not None else x.new_empty(0)
            for t in (x, dt, A, B, C, D, z, dt_bias, initial_states)]


# --------------------------------------------------------------------------------------------- autograd
_INPUTS = ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_states")


def _setup_context(ctx, inputs, output):
    (x, dt, A, B, C, D, z, dt_bias, initial_states, cu_seqlens, chunk_size, dt_softplus, has_limit, dt_lo, dt_hi,
     backend) = inputs[:16]
    _, ypre, states_in, _ = output
    ctx.save_for_backward(x, dt, A, B, C, D, z, dt_bias, initial_states, cu_seqlens, ypre, states_in)
    ctx.cfg = (chunk_size, dt_softplus, has_limit, dt_lo, dt_hi, backend)
    # Unused outputs' gradients arrive as None, not as zero tensors: autograd would otherwise fill a zero gradient
    # for ypre and states_in every backward (two bf16 fills, ~76 us of the 3.4 ms fwd+bwd at b4 l4096 h80 on the
    # H200, profile_ssd.py --bwd) and the backward would read the zero states gradient. _backward handles None.
    ctx.set_materialize_grads(False)


def _backward(ctx, dout, d_ypre, d_states_in, d_final):
    x, dt, A, B, C, D, z, dt_bias, initial_states, cu_seqlens, ypre, states_in = ctx.saved_tensors
    chunk_size, dt_softplus, has_limit, dt_lo, dt_hi, backend = ctx.cfg
    ins = (x, dt, A, B, C, D, z, dt_bias, initial_states)
    if dout is None:
        dout = torch.zeros_like(x)
    if backend in ("triton", "cuda"):  # cuda: the CUDA backward (Triton where it does not serve) on ypre / states_in
        grads = ssd_chunked_bwd(dout, d_states_in, d_final, x, dt, A, B, C, D, z, dt_bias, initial_states,
                                cu_seqlens, ypre, states_in, chunk_size, dt_softplus, has_limit, dt_lo, dt_hi,
                                backend)
        grads = [g if t is not None else None for g, t in zip(grads, ins)]
    else:
        # ref / cpu: differentiate the reference (recomputed) with torch autograd
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(True) if t is not None else None for t in ins]
            y, final, chunk_states = ssd_chunked_ref(
                *leaves[:5], chunk_size, D=leaves[5], z=leaves[6], dt_bias=leaves[7], dt_softplus=dt_softplus,
                dt_limit=_limit(has_limit, dt_lo, dt_hi), initial_states=leaves[8], return_final_states=True,
                cu_seqlens=cu_seqlens, return_chunk_states=True)
            outs, gouts = [y], [dout]
            if d_final is not None:
                outs.append(final)
                gouts.append(d_final.to(final.dtype))
            if d_states_in is not None:
                b, l, h, p = x.shape
                s_in = states_in_from_chunk_states(chunk_states, leaves[8], b, l, h, p, B.shape[-1], chunk_size,
                                                   cu_seqlens, states_in.dtype)
                outs.append(s_in)
                gouts.append(d_states_in)
            live = [t for t in leaves if t is not None]
            g = torch.autograd.grad(outs, live, gouts, allow_unused=True)
        it = iter(g)
        grads = [next(it) if t is not None else None for t in leaves]
        grads = [torch.zeros_like(t) if (gr is None and t is not None) else gr for gr, t in zip(grads, ins)]
    return (*grads, None, None, None, None, None, None, None, *([None] * (len(ctx.needs_input_grad) - 16)))


ssd_chunked_fwd.register_autograd(_backward, setup_context=_setup_context)


# --------------------------------------------------------------------------------------------- public op
def _check(x, dt, A, B, C, chunk_size, D, z, dt_bias, dt_limit, initial_states, cu_seqlens):
    fl = _checks.FLOAT_DTYPES
    _checks.tensor("x", x, ndim=4, dtypes=fl)
    b, l, h, p = x.shape
    _checks.tensor("dt", dt, shape=(b, l, h), dtypes=fl)
    _checks.tensor("A", A, shape=(h,), dtypes=fl)
    _checks.tensor("B", B, ndim=4, dtypes=fl)
    if B.shape[0] != b or B.shape[1] != l:
        raise ValueError(f"B: expected shape ({b}, {l}, g, n) matching x's batch and length, got {tuple(B.shape)}")
    g, n = B.shape[2], B.shape[3]
    _checks.tensor("C", C, shape=(b, l, g, n), dtypes=fl)
    if g == 0 or n == 0:
        raise ValueError(f"B: g and n must be positive, got shape {tuple(B.shape)}")
    _checks.divisible("h (x.shape[2])", h, "g (B.shape[2])", g)
    _checks.positive_int("chunk_size", chunk_size)
    if D is not None:
        _checks.tensor("D", D, dtypes=fl)
        if tuple(D.shape) not in ((h,), (h, p)):
            raise ValueError(f"D: expected shape ({h},) or ({h}, {p}), got {tuple(D.shape)}")
    _checks.tensor("z", z, shape=(b, l, h, p), dtypes=fl, optional=True)
    _checks.tensor("dt_bias", dt_bias, shape=(h,), dtypes=fl, optional=True)
    if dt_limit is not None:
        if (not isinstance(dt_limit, (tuple, list)) or len(dt_limit) != 2
                or not all(isinstance(v, (int, float)) for v in dt_limit)):
            raise TypeError(f"dt_limit: expected a (min, max) pair of floats, got {dt_limit!r}")
        if not dt_limit[0] <= dt_limit[1]:
            raise ValueError(f"dt_limit: min must be <= max, got {dt_limit!r}")
    nseq = b
    if cu_seqlens is not None:
        _checks.tensor("cu_seqlens", cu_seqlens, ndim=1, dtypes=_INT_DTYPES)
        if b != 1:
            raise ValueError(f"cu_seqlens: packed sequences need batch size 1, got x with b={b}")
        if cu_seqlens.shape[0] < 2:
            raise ValueError("cu_seqlens: needs at least 2 entries (0 and the total length)")
        cu = cu_seqlens.tolist()
        if cu[0] != 0 or cu[-1] != l:
            raise ValueError(f"cu_seqlens: must start at 0 and end at l={l}, got {cu[0]} .. {cu[-1]}")
        if any(a > c for a, c in zip(cu[:-1], cu[1:])):
            raise ValueError("cu_seqlens: must be non-decreasing (sequence lengths >= 0)")
        nseq = len(cu) - 1
    _checks.tensor("initial_states", initial_states, shape=(nseq, h, p, n), dtypes=fl, optional=True)
    return _checks.same_device(x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias,
                               initial_states=initial_states, cu_seqlens=cu_seqlens)


def ssd_chunked_scan(x, dt, A, B, C, chunk_size=256, *, D=None, z=None, dt_bias=None, dt_softplus=False,
                     dt_limit=None, initial_states=None, return_final_states=False, cu_seqlens=None,
                     return_chunk_states=False, backend=None):
    """Mamba-2 chunked SSD scan (python_ref/ssd.py::ssd_chunked_ref), forward and backward.

    Args:
        x (b, l, h, p); dt (b, l, h); A (h,); B, C (b, l, g, n) with h % g == 0; chunk_size Q: where the
            returned chunk states lie. The output does not depend on it (up to rounding): without
            return_chunk_states the Triton backend on the GPU computes in 128-token chunks when Q > 128 (faster
            there, forward and backward; compute_chunk_size).
        D (h,) or (h, p); z (b, l, h, p) gate (out = (y + D x) * silu(z)); dt_bias (h,);
        dt_softplus: dt <- softplus(dt + dt_bias); dt_limit (lo, hi): then clamp dt.
        initial_states (b, h, p, n), or (nseq, h, p, n) with cu_seqlens.
        cu_seqlens (nseq + 1,) int32/int64: b == 1, sequence i = tokens cu_seqlens[i]:cu_seqlens[i+1]; chunks
            restart at each sequence.
        backend: None (fastest available), "ref", "cpu" (CPU tensors; its backward is the reference's),
            "triton" (CUDA, or CPU under TRITON_INTERPRET=1), "cuda" (CUDA tensors, opt-in: CUDA kernel forward
            for chunk_size a multiple of 64 and n <= 128, else Triton; Triton backward, or with MK_SSD_CUDA_BWD=1 the
            CUDA backward where also p <= 128).
    Returns:
        out (b, l, h, p) in x.dtype; with return_final_states also final_states ((b|nseq), h, p, n); with
        return_chunk_states also the state after every chunk: (b, ceil(l/Q), h, p, n), or (total_chunks, h, p, n)
        with cu_seqlens (sequence i contributes ceil(len_i/Q) chunks, in order). States are fp32 (fp64 for fp64
        x). All outputs are differentiable.

    Example:
        >>> import torch, mamba_kernels
        >>> b, l, h, p, g, n = 1, 10, 4, 8, 2, 16
        >>> x, z = torch.randn(b, l, h, p), torch.randn(b, l, h, p)
        >>> dt, A = torch.randn(b, l, h), -torch.rand(h)
        >>> B, C = torch.randn(b, l, g, n), torch.randn(b, l, g, n)
        >>> y, final = mamba_kernels.ssd_chunked_scan(x, dt, A, B, C, 4, D=torch.ones(h), z=z, dt_softplus=True,
        ...                                           return_final_states=True, backend="ref")
        >>> y.shape, final.shape
        (torch.Size([1, 10, 4, 8]), torch.Size([1, 4, 8, 16]))
    """
    device = _check(x, dt, A, B, C, chunk_size, D, z, dt_bias, dt_limit, initial_states, cu_seqlens)
    supported = SUPPORTED if _cpu_available() else tuple(s for s in SUPPORTED if s != "cpu")
    if backend is None:  # cuda is opt-in until timed on the H200
        supported = tuple(s for s in supported if s != "cuda")
    be = _backend.resolve(backend, device, supported=supported)
    has_limit = dt_limit is not None
    lo, hi = (float(dt_limit[0]), float(dt_limit[1])) if has_limit else (0.0, math.inf)
    # pre-gate output only when a backward can run; fp32 chunk-entry states only when they are returned
    keep_ypre = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, dt, A, B, C, D, z, dt_bias, initial_states))
    Q = compute_chunk_size(be, chunk_size, bool(return_chunk_states), device)
    direct = _backend.direct_call_ok(x, dt, A, B, C, D, z, dt_bias, initial_states, cu_seqlens)
    out, _, states_in, final = (_ssd_chunked_fwd_impl if direct else ssd_chunked_fwd)(
        x, dt, A, B, C, D, z, dt_bias, initial_states, cu_seqlens, Q, bool(dt_softplus), has_limit, lo, hi, be,
        keep_ypre, bool(return_chunk_states))
    res = (out,)
    if return_final_states:
        res = res + (final,)
    if return_chunk_states:
        res = res + (_gather_chunk_states(states_in, final, x.shape[0], x.shape[1], chunk_size, cu_seqlens),)
    return res[0] if len(res) == 1 else res


# H200, bf16, Triton, the issue-4 shapes (b4 l4096 h80 p64 n128 g1 / b2 l4096 h32 p128 n128 g32), chunk 128 against
# 256: forward 0.707-0.712 / 0.300-0.303 ms against 0.731 / 0.348 (chunk 64: 0.717 / 0.314). Session 9, with configs
# chosen at chunk 128: forward 0.539 / 0.289 ms. Session 11 (2026-11-30), forward + backward at the session-10
# configs: 2.50 / 1.22 ms against 2.65 / 1.35 at 256 (chunk 64: 2.77 / 1.27), so the autograd path runs at 128 too.
# The states saved for the backward then double (bf16 states_in: p * n * 2 / 128 bytes a token and head, as much as
# x at p 64, n 128).
_TRITON_GPU_CHUNK = 128


def compute_chunk_size(backend: str, chunk_size: int, return_chunk_states: bool, device) -> int:
    """The chunk size the kernels run at. The scan's output and gradients do not depend on it (up to rounding);
    only returned chunk states do. So a call that returns no chunk states runs at 128 on the Triton backend on
    CUDA tensors when chunk_size > 128 (with or without autograd)."""
    if backend == "triton" and not return_chunk_states \
            and torch.device(device).type == "cuda" and chunk_size > _TRITON_GPU_CHUNK:
        return _TRITON_GPU_CHUNK
    return chunk_size


def _gather_chunk_states(states_in, final, b, l, chunk_size, cu_seqlens):
    """State after each chunk: states_in of the next chunk of the same sequence, or the sequence's final state."""
    if cu_seqlens is None:  # tensor ops only: no host -> device index copy (sync-free, CUDA-graph capturable)
        nc = -(-l // chunk_size)
        if nc == 0:
            return final.new_empty(b, 0, *final.shape[1:])
        si = states_in.view(b, nc, *states_in.shape[1:])
        return torch.cat([si[:, 1:].to(final.dtype), final[:, None]], 1)
    chunks, seqs, n_slots = chunk_layout(b, l, chunk_size, cu_seqlens)
    pool = torch.cat([states_in, final], 0)
    idx = []
    for si, (first, nc) in enumerate(seqs):
        idx += list(range(first + 1, first + nc)) + [n_slots + si] if nc else []
    out = pool[torch.tensor(idx, dtype=torch.long, device=pool.device)]
    if cu_seqlens is None:
        out = out.view(b, -(-l // chunk_size), *out.shape[1:])
    return out


def _cpu_available() -> bool:
    try:
        from .cpu import available
    except ImportError:
        return False
    return available()
