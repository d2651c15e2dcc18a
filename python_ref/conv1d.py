"""Reference causal depthwise conv1d (Mamba's short convolution): full-sequence and decode-update forms.

Equation (one channel c of one sequence of length L, width w, weight (d, w)):

    y[c, t] = act( bias[c] + sum_{i=0}^{w-1} weight[c, i] * x[c, t - w + 1 + i] ),   t = 0 .. L-1

Inputs before t = 0 are taken from ``initial_states[:, c, :]`` (shape (w-1,), oldest first: entry j stands for
position j - (w-1)), or are zero without initial states. ``act`` is the identity or SiLU (z * sigmoid(z)).
The final state is the last w-1 inputs of the extended sequence [initial_states, x] (so it still holds part of
the initial state when L < w-1); it is what a decoder continues from.

Varlen: ``cu_seqlens`` (nseq + 1,) int32, cu_seqlens[0] = 0, non-decreasing, cu_seqlens[-1] = total; x is
packed (1, d, total) (or (1, total, d) channel-last), sequence n occupies [cu_seqlens[n], cu_seqlens[n+1]),
nothing crosses a boundary, and initial / final states are per sequence (nseq, d, w-1).

Decode update: a pool of states ``conv_state`` (S, d, s) with s >= w-1 holds the last s inputs of each
sequence (oldest first); k new tokens extend it, the convolution of each new token uses the last w-1 inputs
before it, and the state becomes the last s inputs of [state, x].

Backward (``causal_conv1d_bwd_ref``), with pre = the argument of act and xe = [initial_states, x]:
    dpre[c, t]            = dy[c, t] * act'(pre[c, t])
    dxe[c, t - w + 1 + i] += weight[c, i] * dpre[c, t]      (then dxe[:, -(w-1):] += dfinal_states)
    dx = dxe[:, w-1:],  dinitial_states = dxe[:, :w-1]
    dweight[c, i] = sum_t dpre[c, t] * xe[c, t - w + 1 + i],   dbias[c] = sum_t dpre[c, t]

These functions are the readable ground truth for tests and the ``ref`` backend: they compute in float64
when given float64 and in float32 otherwise; the forward ones are differentiable with torch autograd.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["causal_conv1d_ref", "causal_conv1d_bwd_ref", "causal_conv1d_update_ref"]


def _act(z: torch.Tensor, activation: str | None) -> torch.Tensor:
    if activation is None:
        return z
    if activation in ("silu", "swish"):
        return F.silu(z)
    raise ValueError(f"activation must be None or 'silu', got {activation!r}")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _conv_one(xs: torch.Tensor, weight: torch.Tensor, bias, init, activation):
    """One sequence. xs (d, L) in compute dtype, init (d, w-1) or None -> y (d, L), final (d, w-1)."""
    d, L = xs.shape
    w = weight.shape[1]
    if init is None:
        init = xs.new_zeros(d, w - 1)
    xe = torch.cat([init, xs], dim=1)  # (d, w - 1 + L): position p lives at column p + w - 1
    z = xs.new_zeros(d, L)
    for i in range(w):  # tap i reads x[t - w + 1 + i], i.e. column t + i of xe
        z = z + weight[:, i:i + 1] * xe[:, i:i + L]
    if bias is not None:
        z = z + bias[:, None]
    final = xe[:, xe.shape[1] - (w - 1):]
    return _act(z, activation), final


def causal_conv1d_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                      initial_states: torch.Tensor | None = None, return_final_states: bool = False,
                      activation: str | None = None, cu_seqlens: torch.Tensor | None = None,
                      channel_last: bool = False):
    """Causal depthwise conv1d (see the module docstring for the equation).

    Shapes:
        x               (b, d, l), or (b, l, d) when ``channel_last``; varlen: b = 1 and l = total tokens
        weight          (d, w)
        bias            (d,) or None
        initial_states  (b, d, w-1) (varlen: (nseq, d, w-1)) or None (zeros)
        cu_seqlens      (nseq + 1,) integer, or None
    Returns y in the layout and dtype of x; with ``return_final_states`` the pair (y, final_states) where
    final_states is (b, d, w-1) (varlen: (nseq, d, w-1)) in the dtype of x.

    Example:
        >>> x = torch.randn(2, 8, 5); w = torch.randn(8, 4)
        >>> y, fin = causal_conv1d_ref(x, w, return_final_states=True, activation="silu")
        >>> y.shape, fin.shape
        (torch.Size([2, 8, 5]), torch.Size([2, 8, 3]))
    """
    cdt = _compute_dtype(x.dtype)
    xv = x.transpose(1, 2) if channel_last else x  # (b, d, l)
    xv = xv.to(cdt)
    wt = weight.to(cdt)
    bs = None if bias is None else bias.to(cdt)
    init = None if initial_states is None else initial_states.to(cdt)
    if cu_seqlens is None:
        ys, finals = [], []
        for bi in range(xv.shape[0]):
            y1, f1 = _conv_one(xv[bi], wt, bs, None if init is None else init[bi], activation)
            ys.append(y1)
            finals.append(f1)
        y = torch.stack(ys) if ys else xv.new_zeros(xv.shape)
        final = torch.stack(finals) if finals else xv.new_zeros(0, xv.shape[1], wt.shape[1] - 1)
    else:
        bounds = [int(v) for v in cu_seqlens.tolist()]
        ys, finals = [], []
        for n in range(len(bounds) - 1):
            s, e = bounds[n], bounds[n + 1]
            y1, f1 = _conv_one(xv[0, :, s:e], wt, bs, None if init is None else init[n], activation)
            ys.append(y1)
            finals.append(f1)
        y = torch.cat(ys, dim=1)[None] if ys else xv.new_zeros(xv.shape)
        final = torch.stack(finals) if finals else xv.new_zeros(0, xv.shape[1], wt.shape[1] - 1)
    y = y.to(x.dtype)
    if channel_last:
        y = y.transpose(1, 2)
    if return_final_states:
        return y, final.to(x.dtype)
    return y


def _bwd_one(dy, xs, weight, bias, init, dfinal, activation):
    """One sequence, compute dtype. dy, xs (d, L) -> dx (d, L), dweight (d, w), dbias (d,), dinit (d, w-1)."""
    d, L = xs.shape
    w = weight.shape[1]
    if init is None:
        init = xs.new_zeros(d, w - 1)
    xe = torch.cat([init, xs], dim=1)
    pre = xs.new_zeros(d, L)
    for i in range(w):
        pre = pre + weight[:, i:i + 1] * xe[:, i:i + L]
    if bias is not None:
        pre = pre + bias[:, None]
    if activation is None:
        dpre = dy
    else:
        sg = torch.sigmoid(pre)
        dpre = dy * sg * (1 + pre * (1 - sg))
    dxe = torch.zeros_like(xe)
    dweight = xs.new_zeros(d, w)
    for i in range(w):
        dxe[:, i:i + L] += weight[:, i:i + 1] * dpre
        dweight[:, i] = (dpre * xe[:, i:i + L]).sum(1)
    if dfinal is not None:
        dxe[:, xe.shape[1] - (w - 1):] += dfinal
    return dxe[:, w - 1:], dweight, dpre.sum(1), dxe[:, :w - 1]


def causal_conv1d_bwd_ref(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                          initial_states: torch.Tensor | None = None, dfinal_states: torch.Tensor | None = None,
                          activation: str | None = None, cu_seqlens: torch.Tensor | None = None,
                          channel_last: bool = False):
    """Gradients of ``causal_conv1d_ref`` (explicit formulas, see the module docstring).

    dy has the shape of x (the output's gradient), dfinal_states that of the final states (or None).
    Returns (dx like x, dweight (d, w), dbias (d,) or None, dinitial_states (nseq, d, w-1) or None), dx and
    dinitial_states in the dtype of x, dweight / dbias in the compute dtype (float32, float64 for float64 x).

    Example:
        >>> x = torch.randn(1, 4, 6, dtype=torch.float64); w = torch.randn(4, 3, dtype=torch.float64)
        >>> dx, dw, db, di = causal_conv1d_bwd_ref(torch.ones_like(x), x, w)
        >>> dx.shape, dw.shape, db, di
        (torch.Size([1, 4, 6]), torch.Size([4, 3]), None, None)
    """
    _act(x.new_zeros(()), activation)  # validates the name
    cdt = _compute_dtype(x.dtype)
    xv = (x.transpose(1, 2) if channel_last else x).to(cdt)
    gv = (dy.transpose(1, 2) if channel_last else dy).to(cdt)
    wt = weight.to(cdt)
    bs = None if bias is None else bias.to(cdt)
    init = None if initial_states is None else initial_states.to(cdt)
    dfin = None if dfinal_states is None else dfinal_states.to(cdt)
    if cu_seqlens is None:
        spans = [(bi, 0, xv.shape[2]) for bi in range(xv.shape[0])]
    else:
        bounds = [int(v) for v in cu_seqlens.tolist()]
        spans = [(0, bounds[n], bounds[n + 1]) for n in range(len(bounds) - 1)]
    dx = torch.zeros_like(xv)
    dweight = xv.new_zeros(wt.shape)
    dbias = xv.new_zeros(wt.shape[0])
    dinit = xv.new_zeros(len(spans), wt.shape[0], wt.shape[1] - 1)
    for n, (bi, s, e) in enumerate(spans):
        dx1, dw1, db1, di1 = _bwd_one(gv[bi, :, s:e], xv[bi, :, s:e], wt, bs, None if init is None else init[n],
                                      None if dfin is None else dfin[n], activation)
        dx[bi, :, s:e] = dx1
        dweight += dw1
        dbias += db1
        dinit[n] = di1
    dx = dx.to(x.dtype)
    if channel_last:
        dx = dx.transpose(1, 2)
    return (dx, dweight, dbias if bias is not None else None,
            dinit.to(x.dtype) if initial_states is not None else None)


def causal_conv1d_update_ref(x: torch.Tensor, conv_state: torch.Tensor, weight: torch.Tensor,
                             bias: torch.Tensor | None = None, activation: str | None = None,
                             slots: torch.Tensor | None = None) -> torch.Tensor:
    """Decode step: convolve k new tokens per sequence against a state pool, updating the pool in place.

    Shapes:
        x           (b, d) for one token, or (b, d, k) for k tokens (a channel-last (b, k, d) tensor can be
                    passed as ``x.transpose(1, 2)``)
        conv_state  (S, d, s), s >= w-1: the last s inputs of each sequence, oldest first; modified in place
        weight      (d, w);  bias (d,) or None
        slots       (b,) integer or None: row i uses conv_state[slots[i]] (None: slot i, needs S == b); a
                    slot outside [0, S) (e.g. -1) marks a padding row: its state is untouched, its output zero
    Returns y with the shape of x, in the dtype of x.

    y[i, c, t] = act(bias[c] + sum_j weight[c, j] * e[c, s + t - w + 1 + j]),  e = [conv_state[slot_i], x[i]]
    conv_state[slot_i] <- e[:, -s:]

    Example:
        >>> st = torch.randn(3, 8, 3); w = torch.randn(8, 4)
        >>> y = causal_conv1d_update_ref(torch.randn(2, 8), st, w, slots=torch.tensor([2, -1]))
        >>> y.shape
        torch.Size([2, 8])
    """
    single = x.dim() == 2
    xs = x[:, :, None] if single else x  # (b, d, k)
    b, d, k = xs.shape
    w = weight.shape[1]
    s = conv_state.shape[2]
    cdt = _compute_dtype(x.dtype)
    wt = weight.to(cdt)
    bs = None if bias is None else bias.to(cdt)
    y = torch.zeros(b, d, k, dtype=cdt, device=x.device)
    for i in range(b):
        slot = i if slots is None else int(slots[i])
        if not 0 <= slot < conv_state.shape[0]:
            continue
        e = torch.cat([conv_state[slot].to(cdt), xs[i].to(cdt)], dim=1)  # (d, s + k)
        z = torch.zeros(d, k, dtype=cdt, device=x.device)
        for j in range(w):  # token t, tap j reads column s + t - w + 1 + j of e
            lo = s - w + 1 + j
            z = z + wt[:, j:j + 1] * e[:, lo:lo + k]
        if bs is not None:
            z = z + bs[:, None]
        y[i] = _act(z, activation)
        conv_state[slot] = e[:, k:].to(conv_state.dtype)
    y = y.to(x.dtype)
    return y[:, :, 0] if single else y
