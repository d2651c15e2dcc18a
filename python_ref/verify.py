"""References for single-token decode and speculative verify-and-rollback (one SSM layer).

The recurrence (Mamba / Mamba-2 decode, zero-order hold on A, Euler on B, as in mamba_ssm):

    dt_t = clamp(softplus(dt_raw_t + dt_bias), dt_min, dt_max)       (softplus, bias, clamp optional)
    h_t  = exp(dt_t * A) * h_{t-1} + dt_t * x_t ⊗ B_t                 state (p, n) per head
    y_t  = h_t · C_t + D * x_t,      y_t *= silu(z_t)                   (D, z optional)

Layouts (letters as in conventions.md):
    Mamba-2: state (S, h, p, n); x, z (b, h, p); dt (b, h); A, dt_bias (h,); D (h,) or (h, p); B, C (b, g, n)
             head i uses group i // (h // g).
    Mamba-1: state (S, d, n); x, z, dt (b, d); A (d, n); D, dt_bias (d,); B, C (b, g, n)
             channel c uses group c // (d // g).
Multi-token calls add a k axis after b: x (b, k, h, p) / (b, k, d), dt (b, k, h) / (b, k, d), B/C (b, k, g, n).

Three references:
  * `selective_state_update_ref`: one decode step on a state pool addressed by slots (negative = padding).
  * `VerifyOracle`: the exact semantics of verify_step (paper Algorithm 2, ../shared/docs/verify_step.md):
    the plain sequential recurrence with the full state history; commit = pick the accepted node's state.
  * `verify_step_cache_ref`: the cache algorithm every backend implements (ring of committed-but-unfolded
    tokens, deferred write-back), on the canonical layout of docs/verify_step_design.md. It is the `ref`
    backend of mamba_kernels.verify_step.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


# --------------------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------------------
def process_dt(dt, dt_bias=None, dt_softplus=False, dt_limit=None):
    """dt_eff = clamp(softplus(dt + dt_bias), *dt_limit); each step optional. softplus(x) = x for x > 20."""
    if dt_bias is not None:
        dt = dt + dt_bias
    if dt_softplus:
        dt = torch.where(dt > 20.0, dt, F.softplus(dt))
    if dt_limit is not None:
        dt = dt.clamp(min=dt_limit[0], max=dt_limit[1])
    return dt


def _per_channel(x, dt, A, B, C, D, z, dt_bias):
    """Both layouts -> per-channel form: x, dt, z (..., c); A (c, n); B, C (..., c, n); D, dt_bias (c,).

    Mamba-2 heads are flattened to channels c = h * p with dt, A, D, dt_bias broadcast over p.
    """
    g, n = B.shape[-2], B.shape[-1]
    if A.dim() == 1:  # Mamba-2
        h, p = x.shape[-2], x.shape[-1]
        lead = x.shape[:-2]
        xc = x.reshape(*lead, h * p)
        zc = None if z is None else z.reshape(*lead, h * p)
        dtc = dt.unsqueeze(-1).expand(*lead, h, p).reshape(*lead, h * p)
        Ac = A.unsqueeze(-1).expand(h, p).reshape(h * p, 1).expand(h * p, n)
        Dc = None if D is None else (D.unsqueeze(-1).expand(h, p) if D.dim() == 1 else D).reshape(h * p)
        bc = None if dt_bias is None else dt_bias.unsqueeze(-1).expand(h, p).reshape(h * p)
        per_group = (h // g) * p
    else:  # Mamba-1
        d = x.shape[-1]
        xc, zc, dtc, Ac, Dc, bc = x, z, dt, A, D, dt_bias
        per_group = d // g
    Bc = B.repeat_interleave(per_group, dim=-2)
    Cc = C.repeat_interleave(per_group, dim=-2)
    return xc, dtc, Ac, Bc, Cc, Dc, zc, bc


# --------------------------------------------------------------------------------------------------------
# Single-token decode on a state pool
# --------------------------------------------------------------------------------------------------------
def selective_state_update_ref(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False,
                               dt_limit=None, slots=None):
    """One decode step for a batch of sequences whose states live in a pool; updates `state` in place.

    state: (S, h, p, n) [Mamba-2] or (S, d, n) [Mamba-1]; x: (b, h, p) / (b, d); dt: (b, h) / (b, d);
    A: (h,) / (d, n); B, C: (b, g, n); D: (h,), (h, p) / (d,); z like x; dt_bias: (h,) / (d,);
    slots: (b,) int, row i uses state[slots[i]]; a negative slot is padding: no update, y row = 0.
    Returns y like x. Arithmetic in float64 when the state is float64, else float32.
    """
    b = x.shape[0]
    slots = torch.arange(b) if slots is None else slots.to("cpu", torch.long)
    acc = torch.float64 if state.dtype == torch.float64 else torch.float32
    xc, dtc, Ac, Bc, Cc, Dc, zc, bc = _per_channel(*(t if t is None else t.to(acc)
                                                     for t in (x, dt, A, B, C, D, z, dt_bias)))
    dte = process_dt(dtc, bc, dt_softplus, dt_limit)  # (b, c)
    y = torch.zeros(b, xc.shape[-1], dtype=acc, device=x.device)
    for i in range(b):
        s = int(slots[i])
        if s < 0:
            continue
        h = state[s].to(acc).reshape(xc.shape[-1], -1)  # (c, n)
        h = torch.exp(dte[i, :, None] * Ac) * h + (dte[i] * xc[i])[:, None] * Bc[i]
        state[s] = h.reshape(state[s].shape).to(state.dtype)
        yi = (h * Cc[i]).sum(-1)
        if Dc is not None:
            yi = yi + Dc * xc[i]
        if zc is not None:
            yi = yi * F.silu(zc[i])
        y[i] = yi
    return y.reshape(x.shape).to(x.dtype)


# --------------------------------------------------------------------------------------------------------
# The oracle: sequential recurrence with the full state history
# --------------------------------------------------------------------------------------------------------
def _accepted_node(b, num_accepted=None, accepted_node=None):
    """Row b's accepted pending node: accepted_node[b] (tree drafts) or num_accepted[b] - 1 (chains); -1 = none."""
    return int(accepted_node[b]) if accepted_node is not None else int(num_accepted[b]) - 1


def _prefix_parents(k):
    return list(range(-1, k - 1))


class VerifyOracle:
    """Exact semantics of verify_step for one layer, in float64, keeping every node's state.

    `state0`: the committed states after prefill, (S, h, p, n) or (S, d, n). Each `step` call, per batch
    row b with slot s = slots[b] >= 0:
      1. commit: chain mode (`num_accepted`): the committed state becomes the state after pending token
         num_accepted[b] - 1 (0 = keep); tree mode (`accepted_node`): after pending node accepted_node[b]
         (-1 = keep). Everything else pending is dropped.
      2. score the k new tokens: node t continues from its parent's state (parents[b, t], -1 = the committed
         state; chain: t - 1), exactly as sequential decode steps (`selective_state_update_ref`).
      3. remember the k new nodes (their states) as the pending ones.
    Padding rows (slot < 0) give y = 0 and change nothing.
    """

    def __init__(self, state0):
        self.state = state0.detach().to("cpu", torch.float64).clone()
        self.pending = {}  # slot -> list of per-node states (float64)

    def commit(self, slot, accepted_node):
        nodes = self.pending.get(slot, [])
        if accepted_node >= len(nodes):
            raise ValueError(f"slot {slot}: accepted node {accepted_node} but only {len(nodes)} pending")
        if accepted_node >= 0:
            self.state[slot] = nodes[accepted_node]
        self.pending[slot] = []

    def step(self, x, dt, A, B, C, slots, num_accepted=None, *, accepted_node=None, parents=None, D=None,
             z=None, dt_bias=None, dt_softplus=False, dt_limit=None):
        """Inputs in the multi-token layout (b, k, ...); returns y (b, k, ...) in float64."""
        f64 = lambda t: None if t is None else t.detach().to("cpu", torch.float64)  # noqa: E731
        x, dt, A, B, C, D, z, dt_bias = map(f64, (x, dt, A, B, C, D, z, dt_bias))
        bsz, k = x.shape[:2]
        y = torch.zeros_like(x)
        for b in range(bsz):
            s = int(slots[b])
            if s < 0:
                continue
            a = _accepted_node(b, num_accepted, accepted_node)
            self.commit(s, a)
            par = _prefix_parents(k) if parents is None else [int(v) for v in parents[b]]
            nodes = []
            for t in range(k):
                h = (self.state[s] if par[t] < 0 else nodes[par[t]]).clone().unsqueeze(0)
                y[b, t] = selective_state_update_ref(
                    h, x[b:b + 1, t], dt[b:b + 1, t], A, B[b:b + 1, t], C[b:b + 1, t], D=D,
                    z=None if z is None else z[b:b + 1, t], dt_bias=dt_bias, dt_softplus=dt_softplus,
                    dt_limit=dt_limit, slots=torch.zeros(1, dtype=torch.long))[0]
                nodes.append(h[0])
            self.pending[s] = nodes
        return y

    def flush(self, slots, num_accepted=None, *, accepted_node=None):
        """Commit without scoring anything new (what `verify_flush` does); returns nothing."""
        for b in range(len(slots)):
            s = int(slots[b])
            if s < 0:
                continue
            a = _accepted_node(b, num_accepted, accepted_node)
            self.commit(s, a)


class ConvVerifyOracle:
    """Exact semantics of the conv step with rollback (depthwise causal conv, width w), in float64.

    `window0`: (S, w - 1, dc) the last w - 1 committed raw inputs per slot (oldest first) after prefill.
    A node's output is act(bias + sum_i weight[:, i] * seq[-w + i]) where seq is the committed window
    followed by the raw inputs along the node's path (root to node). Commit appends the accepted path's raw
    inputs to the committed history.
    """

    def __init__(self, window0):
        self.window = window0.detach().to("cpu", torch.float64).clone()
        self.pending = {}  # slot -> (raw inputs (k, dc), paths: list of node-index lists)

    def _commit(self, s, a):
        raw, paths = self.pending.get(s, (None, []))
        if a >= len(paths):
            raise ValueError(f"slot {s}: accepted node {a} but only {len(paths)} pending")
        if a >= 0:
            w1 = self.window.shape[1]
            seq = torch.cat([self.window[s], raw[paths[a]]], 0)
            self.window[s] = seq[seq.shape[0] - w1:]
        self.pending[s] = (None, [])

    def step(self, x, weight, bias, slots, num_accepted=None, *, accepted_node=None, parents=None,
             activation=None):
        """x: (b, k, dc) raw inputs; weight (dc, w); bias (dc,) or None. Returns (b, k, dc) float64."""
        x = x.detach().to("cpu", torch.float64)
        weight = weight.detach().to("cpu", torch.float64)
        bias = None if bias is None else bias.detach().to("cpu", torch.float64)
        bsz, k, _ = x.shape
        w = weight.shape[1]
        out = torch.zeros_like(x)
        for b in range(bsz):
            s = int(slots[b])
            if s < 0:
                continue
            a = _accepted_node(b, num_accepted, accepted_node)
            self._commit(s, a)
            par = _prefix_parents(k) if parents is None else [int(v) for v in parents[b]]
            paths = []
            for t in range(k):
                path = ([] if par[t] < 0 else paths[par[t]]) + [t]
                paths.append(path)
                seq = torch.cat([self.window[s], x[b, path]], 0)[-w:]  # (w, dc)
                o = (seq.T * weight).sum(-1)
                if bias is not None:
                    o = o + bias
                out[b, t] = F.silu(o) if activation == "silu" else o
            self.pending[s] = (x[b].clone(), paths)
        return out


# --------------------------------------------------------------------------------------------------------
# The cache algorithm (what every backend implements), canonical layout
# --------------------------------------------------------------------------------------------------------
def _acc_dtype(*ts):
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in ts) else torch.float32


def _parents_row(parents, b, k):
    return _prefix_parents(k) if parents is None else [int(v) for v in parents[b].tolist()]


def _as_int32_bits(masks):
    """Bitmasks of up to 32 nodes stored in int32 (bit 31 makes the value negative)."""
    return torch.tensor([m - (1 << 32) if m >= 1 << 31 else m for m in masks], dtype=torch.int32)


def _masks_from_parents(par):
    masks = []
    for t, p in enumerate(par):
        if p >= t:
            raise ValueError(f"parents must point to an earlier node (node {t} has parent {p})")
        masks.append((0 if p < 0 else masks[p]) | (1 << t))
    return masks


def verify_step_cache_ref(x, dt, A, B, C, D, z, dt_bias, state, ring_x, ring_B, ring_dt, meta, slots,
                          accepted, accepted_is_node, parents, y, dt_softplus, dt_min, dt_max, fold_all,
                          conv=None):
    """The cache algorithm of docs/verify_step_design.md on the canonical layout (mutates the cache, writes y).

    Canonical shapes (H "units" of P channels; Mamba-2: units = heads; Mamba-1: units = channel blocks):
      x, z, y (b, k, H, P); dt (b, k, H, Pd) raw, Pd in {1, P}; A (H, Pa, Na), Pa in {1, P}, Na in {1, N};
      B, C (b, k, G, N) with unit u in group u // (H // G); D (H, P) or None; dt_bias (H, Pd) or None;
      state (S, H, P, N); ring_x (S, R, H, P); ring_B (S, R, H, N); ring_dt (S, R, H, Pd) float32;
      meta (S, H, 2 + Kmax) int32 = [c, kp, mask_0 .. mask_{Kmax-1}]; slots, accepted (b,) int32;
      parents (b, k) int32 or None (chain).
    `conv`: None, or a dict for the fused Mamba-2 step: {"xBC": (b, k, dc) raw, "window": (S, w-1+Kmax, dc),
    "weight": (dc, w), "bias": (dc,) or None, "activation": "silu" | None}; then x, B, C are computed here
    from xBC by the conv with rollback (channel order [x (H*P) | B (G*N) | C (G*N)]) and the x, B, C
    arguments are ignored.
    """
    bsz, k = y.shape[:2]
    H, P, N = state.shape[1], state.shape[2], state.shape[3]
    R = ring_x.shape[1]
    G = (conv["xBC"].shape[-1] - H * P) // (2 * N) if conv is not None else B.shape[2]
    heads_per_group = H // G
    acc = _acc_dtype(state, x if conv is None else conv["xBC"])
    for b in range(bsz):
        s = int(slots[b])
        if s < 0 or s >= state.shape[0]:  # padding (or an out-of-range slot: never touched)
            y[b] = 0
            continue
        m = meta[s].to(torch.long)
        if not bool((m == m[0]).all()):
            raise RuntimeError(f"verify cache meta differs between units of slot {s}")
        c, kp = int(m[0, 0]), int(m[0, 1])
        a = _accepted_node(b, None if accepted_is_node else accepted, accepted if accepted_is_node else None)
        a = min(a, kp - 1)
        path = (int(m[0, 2 + a]) & 0xFFFFFFFF) if a >= 0 else 0
        path_nodes = [t for t in range(kp) if (path >> t) & 1]
        committed = list(range(c)) + [c + t for t in path_nodes]
        c1 = len(committed)

        # Materialise the committed state: fold the committed ring tokens into the checkpoint.
        h = state[s].to(acc)
        for pos in committed:
            dte = ring_dt[s, pos].to(acc)  # (H, Pd)
            decay = torch.exp(dte[:, :, None] * A.to(acc)).expand(H, P, N)
            h = decay * h + (dte * ring_x[s, pos].to(acc))[:, :, None] * ring_B[s, pos].to(acc)[:, None, :]

        # New tokens' inputs (through the conv with rollback in the fused step).
        if conv is not None:
            xt, Bt, Ct = _fused_conv(conv, b, s, path_nodes, k, parents, H, P, G, N, acc)
        else:
            xt, Bt, Ct = x[b].to(acc), B[b].to(acc), C[b].to(acc)
        Bu = Bt.repeat_interleave(heads_per_group, dim=1)  # (k, H, N)
        Cu = Ct.repeat_interleave(heads_per_group, dim=1)
        dte_new = process_dt(dt[b].to(acc), None if dt_bias is None else dt_bias.to(acc), dt_softplus,
                             None if (dt_min == -math.inf and dt_max == math.inf) else (dt_min, dt_max))
        par = _parents_row(parents, b, k)
        masks = _masks_from_parents(par)
        node_h = []
        for t in range(k):
            hp = h if par[t] < 0 else node_h[par[t]]
            decay = torch.exp(dte_new[t][:, :, None] * A.to(acc)).expand(H, P, N)
            ht = decay * hp + (dte_new[t] * xt[t])[:, :, None] * Bu[t][:, None, :]
            node_h.append(ht)
            yt = (ht * Cu[t][:, None, :]).sum(-1)
            if D is not None:
                yt = yt + D.to(acc) * xt[t]
            if z is not None:
                yt = yt * F.silu(z[b, t].to(acc))
            y[b, t] = yt.to(y.dtype)

        # Write back: fold (checkpoint <- committed state) when the ring would overflow, else defer.
        fold = fold_all or c1 + k > R
        if fold:
            state[s] = h.to(state.dtype)
            base = 0
        else:
            base = c1
            if path_nodes != list(range(len(path_nodes))):  # tree: compact the path into the ring
                src = [c + t for t in path_nodes]
                for buf in (ring_x, ring_B, ring_dt):
                    buf[s, c:c1] = buf[s, src].clone()
        ring_x[s, base:base + k] = xt.to(ring_x.dtype)
        ring_B[s, base:base + k] = Bu.to(ring_B.dtype)
        ring_dt[s, base:base + k] = dte_new.to(ring_dt.dtype)
        meta[s, :, 0] = base
        meta[s, :, 1] = k
        meta[s, :, 2:2 + k] = _as_int32_bits(masks)
    return y


def _fused_conv(conv, b, s, path_nodes, k, parents, H, P, G, N, acc):
    """Conv with rollback for the fused step: commit the accepted path into the window, then convolve the
    new tokens along their paths. Returns x (k, H, P), B (k, G, N), C (k, G, N) after the activation."""
    win, weight, bias = conv["window"], conv["weight"].to(acc), conv["bias"]
    w = weight.shape[1]
    xr = conv["xBC"][b].to(acc)  # (k, dc)
    committed = torch.cat([win[s, :w - 1].to(acc), win[s, w - 1 + torch.tensor(path_nodes, dtype=torch.long)]
                           .to(acc)], 0)[-(w - 1):] if path_nodes else win[s, :w - 1].to(acc)
    par = _parents_row(parents, b, k)
    paths, out = [], []
    for t in range(k):
        path = ([] if par[t] < 0 else paths[par[t]]) + [t]
        paths.append(path)
        seq = torch.cat([committed, xr[path]], 0)[-w:]
        o = (seq.T * weight).sum(-1)
        if bias is not None:
            o = o + bias.to(acc)
        out.append(F.silu(o) if conv["activation"] == "silu" else o)
    out = torch.stack(out) if k else xr.new_zeros(0, xr.shape[-1])  # (k, dc)
    win[s, :w - 1] = committed.to(win.dtype)
    win[s, w - 1:w - 1 + k] = conv["xBC"][b].to(win.dtype)
    xs = out[:, :H * P].reshape(k, H, P)
    Bs = out[:, H * P:H * P + G * N].reshape(k, G, N)
    Cs = out[:, H * P + G * N:].reshape(k, G, N)
    return xs, Bs, Cs


def conv_verify_step_ref(x, window, meta, weight, bias, slots, accepted, accepted_is_node, parents, out,
                         activation):
    """Standalone conv step with rollback (canonical layout; mutates window/meta, writes out).

    x, out (b, k, dc); window (S, w - 1 + Kmax, dc) = [committed w-1 raw inputs | pending raw inputs];
    meta (S, 1 + Kmax) int32 = [kp, mask_0 .. mask_{Kmax-1}]; weight (dc, w); bias (dc,) or None.
    """
    bsz, k, _ = x.shape
    w = weight.shape[1]
    acc = _acc_dtype(x, window)
    for b in range(bsz):
        s = int(slots[b])
        if s < 0 or s >= window.shape[0]:  # padding (or an out-of-range slot: never touched)
            out[b] = 0
            continue
        kp = int(meta[s, 0])
        a = _accepted_node(b, None if accepted_is_node else accepted, accepted if accepted_is_node else None)
        a = min(a, kp - 1)
        path = (int(meta[s, 1 + a]) & 0xFFFFFFFF) if a >= 0 else 0
        path_nodes = [t for t in range(kp) if (path >> t) & 1]
        committed = torch.cat([window[s, :w - 1], window[s, [w - 1 + t for t in path_nodes]]], 0)[-(w - 1):]
        committed = committed.to(acc)
        par = _parents_row(parents, b, k)
        masks = _masks_from_parents(par)
        for t in range(k):
            path_t = [i for i in range(k) if (masks[t] >> i) & 1]
            seq = torch.cat([committed, x[b, path_t].to(acc)], 0)[-w:]
            o = (seq.T * weight.to(acc)).sum(-1)
            if bias is not None:
                o = o + bias.to(acc)
            out[b, t] = (F.silu(o) if activation == "silu" else o).to(out.dtype)
        window[s, :w - 1] = committed.to(window.dtype)
        window[s, w - 1:w - 1 + k] = x[b].to(window.dtype)
        meta[s, 0] = k
        meta[s, 1:1 + k] = _as_int32_bits(masks)
    return out
