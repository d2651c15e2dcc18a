"""Reference Mamba-2 SSD (state space duality) scan: a sequential recurrence and the chunked algorithm.

Both functions compute the same thing (they cross-check each other in tests/test_ssd.py); the chunked one
is the algorithm the Triton / CUDA kernels implement, written with einsums so each stage is readable.

Shapes (letters as everywhere in this repo):
    x  (b, l, h, p)      inputs, h heads of head dim p
    dt (b, l, h)         step sizes (before dt_bias / softplus / dt_limit)
    A  (h,)              per-head scalar decay rate (negative for a stable scan)
    B, C (b, l, g, n)    input / output projections, g groups (head i uses group i // (h // g))
    D  (h,) or (h, p)    skip connection
    z  (b, l, h, p)      gate: y <- y * silu(z)
    dt_bias (h,)
    initial_states (b, h, p, n), or (nseq, h, p, n) with cu_seqlens
    cu_seqlens (nseq + 1,) int: with b == 1, sequence i is tokens cu_seqlens[i]:cu_seqlens[i+1] of the packed
        length axis; each sequence starts from its own initial state and has its own final state.

Computation is done in float64 when the inputs are float64, otherwise in float32; outputs y have x's dtype,
states have the computation dtype.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


# --------------------------------------------------------------------------------------------- helpers
def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def process_dt(dt, dt_bias=None, dt_softplus=False, dt_limit=None, dtype=torch.float32):
    """dt <- clamp(softplus(dt + dt_bias), *dt_limit) (each step optional), in `dtype`."""
    dt = dt.to(dtype)
    if dt_bias is not None:
        dt = dt + dt_bias.to(dtype)
    if dt_softplus:
        dt = F.softplus(dt)  # threshold 20: identity above, as in mamba_ssm
    if dt_limit is not None:
        dt = dt.clamp(min=float(dt_limit[0]), max=float(dt_limit[1]))
    return dt


def _expand_groups(BC: torch.Tensor, h: int) -> torch.Tensor:
    """(..., g, n) -> (..., h, n): head i reads group i // (h // g)."""
    g = BC.shape[-2]
    return BC.repeat_interleave(h // g, dim=-2)


def _sequences(b: int, l: int, cu_seqlens):
    """[(batch_row, start, end)] for each sequence."""
    if cu_seqlens is None:
        return [(i, 0, l) for i in range(b)]
    cu = [int(v) for v in cu_seqlens.tolist()]
    return [(0, cu[i], cu[i + 1]) for i in range(len(cu) - 1)]


def _gate(y, x, D, z, cdt):
    if D is not None:
        Dv = D.to(cdt)
        y = y + x.to(cdt) * (Dv[:, None] if Dv.dim() == 1 else Dv)
    if z is not None:
        y = y * F.silu(z.to(cdt))
    return y


# --------------------------------------------------------------------------------------------- sequential
def ssd_sequential_ref(x, dt, A, B, C, *, D=None, z=None, dt_bias=None, dt_softplus=False, dt_limit=None,
                       initial_states=None, return_final_states=False, cu_seqlens=None):
    """The SSM recurrence, one token at a time (Mamba-2 paper eq. (1) with scalar-identity A_t = a_t I):

        dt_t = clamp(softplus(dt_t + dt_bias), dt_limit)
        h_t  = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T          h_t: (p, n) per head
        y_t  = h_t C_t + D x_t
        y_t <- y_t * silu(z_t)

    Returns y (b, l, h, p) in x's dtype, and with return_final_states also the state after each sequence's
    last token: (b, h, p, n), or (nseq, h, p, n) with cu_seqlens.
    """
    b, l, h, p = x.shape
    n = B.shape[-1]
    cdt = _compute_dtype(x)
    dtp = process_dt(dt, dt_bias, dt_softplus, dt_limit, cdt)          # (b, l, h)
    Bh = _expand_groups(B.to(cdt), h)                                   # (b, l, h, n)
    Ch = _expand_groups(C.to(cdt), h)
    xc = x.to(cdt)
    Ac = A.to(cdt)
    ys = [None] * l if cu_seqlens is None else []
    rows = []
    finals = []
    for si, (row, s, e) in enumerate(_sequences(b, l, cu_seqlens)):
        if initial_states is not None:
            state = initial_states[si if cu_seqlens is not None else row].to(cdt)
        else:
            state = xc.new_zeros(h, p, n)
        seq_y = []
        for t in range(s, e):
            dA = torch.exp(dtp[row, t] * Ac)                                       # (h,)
            state = dA[:, None, None] * state + (dtp[row, t][:, None, None] * xc[row, t][:, :, None]
                                                 * Bh[row, t][:, None, :])
            seq_y.append(torch.einsum("hpn,hn->hp", state, Ch[row, t]))
        rows.append((row, s, e, seq_y))
        finals.append(state)
    # Assemble y without in-place writes (keeps it differentiable).
    if cu_seqlens is None:
        y = torch.stack([torch.stack(r[3], 0) if r[3] else xc.new_zeros(0, h, p) for r in rows], 0)
    else:
        parts = [torch.stack(r[3], 0) for r in rows if r[3]]
        y = (torch.cat(parts, 0) if parts else xc.new_zeros(0, h, p))[None]
    y = _gate(y, xc, D, z, cdt).to(x.dtype)
    if return_final_states:
        return y, torch.stack(finals, 0)
    return y


# --------------------------------------------------------------------------------------------- chunked
def _segsum_decay(a: torch.Tensor) -> torch.Tensor:
    """a (..., Q) chunk-local cumsum of dt*A -> L (..., Q, Q) with L[t, s] = exp(a_t - a_s) for s <= t, else 0."""
    Q = a.shape[-1]
    diff = a[..., :, None] - a[..., None, :]
    causal = torch.ones(Q, Q, dtype=torch.bool, device=a.device).tril()
    return torch.exp(diff.masked_fill(~causal, -math.inf))


def _ssd_chunked_one(x, dt, A, B, C, h0, Q):
    """One sequence. x (L, h, p), dt (L, h) processed, A (h,), B/C (L, h, n) per head, h0 (h, p, n).

    Returns y (L, h, p) without D / z, states_in (nc, h, p, n): the state entering each chunk, and the
    final state (h, p, n).
    """
    L, h, p = x.shape
    n = B.shape[-1]
    nc = -(-L // Q)
    pad = nc * Q - L
    if pad:  # padded tokens have dt = 0: decay 1, no input, outputs dropped
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
        dt = F.pad(dt, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, 0, 0, pad))
    x, dt, B, C = (t.reshape(nc, Q, *t.shape[1:]) for t in (x, dt, B, C))
    a = torch.cumsum(dt * A, dim=1).transpose(1, 2)                    # (nc, h, Q): a_t = sum_{j<=t} dt_j A
    # 1. intra-chunk (the quadratic "attention" form of SSD): Y_diag = (C B^T o L) (dt x)
    Lmat = _segsum_decay(a)                                            # (nc, h, Q, Q)
    y_diag = torch.einsum("cthn,cshn,chts,csh,cshp->cthp", C, B, Lmat, dt, x)
    # 2. chunk states: S_c = sum_s exp(a_last - a_s) dt_s x_s B_s^T
    decay_to_end = torch.exp(a[..., -1:] - a)                          # (nc, h, Q)
    S = torch.einsum("cshn,chs,csh,cshp->chpn", B, decay_to_end, dt, x)
    # 3. state passing: h_in[c+1] = exp(a_last_c) h_in[c] + S_c
    chunk_decay = torch.exp(a[..., -1])                                # (nc, h)
    states_in = []
    state = h0
    for c in range(nc):
        states_in.append(state)
        state = chunk_decay[c][:, None, None] * state + S[c]
    states_in = torch.stack(states_in, 0) if nc else h0.new_zeros(0, h, p, n)
    # 4. state -> output: Y_off = exp(a_t) C_t h_in^T
    y_off = torch.einsum("cthn,chpn,cht->cthp", C, states_in, torch.exp(a)) if nc else x.new_zeros(0, Q, h, p)
    y = (y_diag + y_off).reshape(nc * Q, h, p)[:L]
    return y, states_in, state


def ssd_chunked_ref(x, dt, A, B, C, chunk_size, *, D=None, z=None, dt_bias=None, dt_softplus=False,
                    dt_limit=None, initial_states=None, return_final_states=False, cu_seqlens=None,
                    return_chunk_states=False):
    """The SSD chunked algorithm (Mamba-2 paper, section 6 / Listing 1), per sequence, chunk length Q.

    With a_t = sum_{j <= t, j in chunk} dt_j A (chunk-local cumulative log-decay):
      1. intra-chunk (quadratic, attention-like):  Y_diag[t] = sum_{s<=t} (C_t . B_s) exp(a_t - a_s) dt_s x_s
      2. chunk states:                             S_c = sum_s exp(a_last - a_s) dt_s x_s B_s^T      (p, n)
      3. state passing (sequential over chunks):   h_{c+1} = exp(a_last of chunk c) h_c + S_c,  h_0 = initial
      4. state to output:                          Y_off[t] = exp(a_t) h_c C_t
      y = Y_diag + Y_off + D x,  y <- y * silu(z)

    Chunks start at every sequence start (they never straddle a cu_seqlens boundary); the last chunk of a
    sequence may be short. Returns y, then (if asked) final_states ((b|nseq), h, p, n), then (if asked)
    chunk_states: the state after each chunk, (b, ceil(l/Q), h, p, n) without cu_seqlens, or
    (total_chunks, h, p, n) with cu_seqlens, sequence i's ceil(len_i/Q) chunks in order (the last one of each
    sequence equals its final state). These are the prefix-caching checkpoints.
    """
    b, l, h, p = x.shape
    n = B.shape[-1]
    cdt = _compute_dtype(x)
    dtp = process_dt(dt, dt_bias, dt_softplus, dt_limit, cdt)
    Bh = _expand_groups(B.to(cdt), h)
    Ch = _expand_groups(C.to(cdt), h)
    xc = x.to(cdt)
    Ac = A.to(cdt)
    ys, finals, chunk_states = [], [], []
    for si, (row, s, e) in enumerate(_sequences(b, l, cu_seqlens)):
        if initial_states is not None:
            h0 = initial_states[si if cu_seqlens is not None else row].to(cdt)
        else:
            h0 = xc.new_zeros(h, p, n)
        y, states_in, final = _ssd_chunked_one(xc[row, s:e], dtp[row, s:e], Ac, Bh[row, s:e], Ch[row, s:e], h0,
                                               chunk_size)
        ys.append(y)
        finals.append(final)
        chunk_states.append(torch.cat([states_in[1:], final[None]], 0) if states_in.shape[0] else states_in)
    if cu_seqlens is None:
        y = torch.stack(ys, 0)
        chunk_states = torch.stack(chunk_states, 0)
    else:
        y = torch.cat(ys, 0)[None]
        chunk_states = torch.cat(chunk_states, 0)
    y = _gate(y, xc, D, z, cdt).to(x.dtype)
    out = (y,)
    if return_final_states:
        out = out + (torch.stack(finals, 0),)
    if return_chunk_states:
        out = out + (chunk_states,)
    return out[0] if len(out) == 1 else out
