"""Reference Mamba-1 selective scan (S6): a sequential loop over time, readable, float64-capable.

The Mamba paper (Gu & Dao 2023, arXiv 2312.00752, Algorithm 2 and eqs. 2a/2b, 4) discretises the
continuous SSM h'(t) = A h(t) + B x(t), y(t) = C h(t) with a per-token, per-channel step delta
(zero-order hold for A, Euler for B):

    dA_t = exp(delta_t * A)                      (d, n)   A is diagonal per channel
    dB_t = delta_t * B_t                         (d, n)
    h_t  = dA_t * h_{t-1} + dB_t * u_t           state, one (n,) vector per channel
    y_t  = sum_n C_t * h_t + D * u_t
    out  = y * silu(z)                           optional gate

with delta_t = softplus(delta_raw_t + delta_bias) when delta_softplus (else delta_raw_t + delta_bias).

Shapes (letters as in docs: b batch, d channels, l length, n state size, g groups):
    u, delta, z   (b, d, l)
    A             (d, n)            real
    B, C          (d, n)            constant over time, or
                  (b, g, n, l)      variable ("selective"); channel c reads group c // (d // g)
    D, delta_bias (d,)
    initial_state (b, d, n)         h_{-1}; zeros when None
    cu_seqlens    (nseq + 1,) int   packed variable-length batch: b must be 1 and sequence i occupies
                                    u[0, :, cu_seqlens[i]:cu_seqlens[i+1]]; each sequence restarts from
                                    its own initial_state[i] (initial_state is then (nseq, d, n)) and
                                    has its own last state.
Returns out (b, d, l) in u's dtype, and with return_last_state also last_state (b or nseq, d, n) in
the compute dtype (float64 when u is float64, else float32).

Everything is computed in float32 (float64 when u is float64); it is differentiable by autograd.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _compute_dtype(u: torch.Tensor) -> torch.dtype:
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       initial_state=None, return_last_state=False, cu_seqlens=None):
    """Sequential selective scan; see the module docstring for the equations and shapes.

    >>> import torch
    >>> b, d, l, n = 2, 3, 5, 4
    >>> u, dt, z = torch.randn(b, d, l), torch.rand(b, d, l), torch.randn(b, d, l)
    >>> A, B, C = -torch.rand(d, n), torch.randn(b, 1, n, l), torch.randn(b, 1, n, l)
    >>> out, last = selective_scan_ref(u, dt, A, B, C, D=torch.randn(d), z=z, return_last_state=True)
    >>> out.shape, last.shape
    (torch.Size([2, 3, 5]), torch.Size([2, 3, 4]))
    """
    cd = _compute_dtype(u)
    bsz, d, l = u.shape
    n = A.shape[1]
    uf = u.to(cd)
    dt = delta.to(cd)
    if delta_bias is not None:
        dt = dt + delta_bias.to(cd)[None, :, None]
    if delta_softplus:
        dt = F.softplus(dt)
    Af = A.to(cd)

    def expand(X):  # -> (d, n) constant or (b, d, n, l) variable
        X = X.to(cd)
        if X.dim() == 2:
            return X
        g = X.shape[1]
        return X.repeat_interleave(d // g, dim=1)

    Bf, Cf = expand(B), expand(C)
    variable_B, variable_C = Bf.dim() == 4, Cf.dim() == 4

    if cu_seqlens is None:
        bounds = [(0, l)]
        nstate = bsz
    else:
        cs = [int(v) for v in cu_seqlens.tolist()]
        bounds = list(zip(cs[:-1], cs[1:]))
        nstate = len(bounds)

    ys = []
    last_states = []
    for i, (t0, t1) in enumerate(bounds):
        if initial_state is None:
            h = torch.zeros(bsz, d, n, dtype=cd, device=u.device)
        elif cu_seqlens is None:
            h = initial_state.to(cd, copy=True)
        else:
            h = initial_state[i:i + 1].to(cd, copy=True)
        for t in range(t0, t1):
            dA = torch.exp(dt[:, :, t, None] * Af)                        # (b, d, n)
            Bt = Bf[..., t] if variable_B else Bf                         # (b, d, n) or (d, n)
            Ct = Cf[..., t] if variable_C else Cf
            h = dA * h + (dt[:, :, t] * uf[:, :, t])[..., None] * Bt
            ys.append((h * Ct).sum(-1))                                   # (b, d)
        last_states.append(h)
    y = torch.stack(ys, dim=-1) if ys else uf.new_zeros(bsz, d, 0)        # (b, d, l)
    if D is not None:
        y = y + D.to(cd)[None, :, None] * uf
    if z is not None:
        y = y * F.silu(z.to(cd))
    out = y.to(u.dtype)
    if not return_last_state:
        return out
    last = torch.cat(last_states, 0) if cu_seqlens is not None else last_states[0]
    assert last.shape[0] == nstate
    return out, last
