"""Triton jit helpers of the verify family's kernels (mamba_kernels/verify/triton.py): bf16 rounding, the tree
drafts' ancestor masks, and the conv-with-rollback taps (window rows, tap sources, the tap sum). Conventions
(fp32 math, int64 indices, the interpreter's reductions): triton.py's docstring.
"""
from __future__ import annotations

import triton
import triton.language as tl
try:  # tl.sum without its @jit wrapper: under TRITON_INTERPRET=1 each jit-helper call re-patches triton.language
    from triton.language.standard import _sum_combine  # (slow); the interpreter reduces this combine_fn with numpy
except ImportError:  # pragma: no cover - same semantics, slower interpreter path
    @triton.jit
    def _sum_combine(a, b):
        return a + b


@triton.jit
def _rne_bf16(v):
    """Round fp32 to the nearest bf16 value (ties to even), kept in fp32 (exactly representable in bf16)."""
    bits = tl.where(v != v, 0, v.to(tl.int32, bitcast=True))  # (NaN: no int32 overflow below)
    r = (bits + 0x7FFF + ((bits >> 16) & 1)) & -65536
    return tl.where(v != v, v, r.to(tl.float32, bitcast=True))


@triton.jit
def _new_masks(par_ptr, s_par_k, k, TREE: tl.constexpr):
    """Ancestor-or-self bitmasks (int32 vector of 32) of the k new nodes; an invalid parent means the root."""
    ar = tl.arange(0, 32)
    if TREE:
        masks = tl.zeros([32], dtype=tl.int32)
        pp = par_ptr
        for t in range(0, k):
            par = tl.load(pp)
            pp += s_par_k
            par = tl.where((par >= t) | (par < -1), -1, par)
            pm = tl.reduce(tl.where(ar == par, masks, 0), 0, _sum_combine)
            masks = tl.where(ar == t, pm | (tl.full([], 1, tl.int32) << t), masks)  # (int32 shift: bit 31 wraps)
    else:
        masks = tl.where(ar < k, (2 << ar) - 1, 0)  # chain: nodes 0..t (2 << 31 wraps to 0: all 32 bits)
    return masks


@triton.jit
def _window_rows(path, kp, WIDTH: tl.constexpr, BLOCK_W: tl.constexpr):
    """Rows of the (old) window holding the committed window after the commit of `path` (oldest first):
    the last w-1 of rows [0, w-1) ++ (w-1 + path nodes). Returns (rows (BLOCK_W,), m = popcount(path))."""
    ar = tl.arange(0, 32)
    bits = ((path >> ar) & 1) * (ar < kp).to(tl.int32)
    m = tl.reduce(bits, 0, _sum_combine)
    prefix = tl.reduce(tl.where(ar[None, :] < ar[:, None], bits[None, :], 0), 1, _sum_combine)  # set bits below
    j = tl.arange(0, BLOCK_W)
    q = m + j
    r = q - (WIDTH - 1)
    node = tl.reduce(tl.where((bits[None, :] == 1) & (prefix[None, :] == r[:, None]), ar[None, :], 0), 1,
                     _sum_combine)
    rows = tl.where(r < 0, q, WIDTH - 1 + node).to(tl.int64)
    return rows, m


@triton.jit
def _conv_taps(k, rows, par_b, s_par_k, TREE: tl.constexpr, WIDTH: tl.constexpr, BLOCK_K: tl.constexpr,
               BLOCK_W: tl.constexpr, BLOCK_WW: tl.constexpr):
    """Sources of the conv taps of every new node t (rows) and tap e (columns; tap e multiplies weight[:, w-1-e]):
    the node, its parent, ... (raw inputs of the batch row) until the root, then the committed window from its
    newest row backwards. Returns (node, window row, is_node), each (BLOCK_K, BLOCK_WW); rows t >= k are never
    raw inputs."""
    ark = tl.arange(0, BLOCK_K)
    ae = tl.arange(0, BLOCK_WW)
    jw = tl.arange(0, BLOCK_W)
    kmask = ark < k
    if TREE:
        node = tl.zeros([BLOCK_K, BLOCK_WW], dtype=tl.int32)
        isn = tl.zeros([BLOCK_K, BLOCK_WW], dtype=tl.int32)
        cur = tl.where(kmask, ark, -1)
        for e in tl.static_range(WIDTH):
            is_node = cur >= 0
            curc = tl.minimum(tl.maximum(cur, 0), tl.maximum(k - 1, 0))
            node = tl.where(ae[None, :] == e, curc[:, None], node)
            isn = tl.where(ae[None, :] == e, is_node.to(tl.int32)[:, None], isn)
            par = tl.load(par_b + curc.to(tl.int64) * s_par_k, mask=is_node, other=-1)
            par = tl.where((par >= cur) | (par < -1), -1, par)
            cur = tl.where(is_node, par, -1)
        depth = tl.reduce(isn, 1, _sum_combine)  # path length covered by the taps
        is_node = isn == 1
    else:
        is_node = (ae[None, :] <= ark[:, None]) & kmask[:, None]
        node = tl.maximum(ark[:, None] - ae[None, :], 0)
        depth = tl.minimum(ark + 1, WIDTH)
    cidx = (WIDTH - 2) - (ae[None, :] - depth[:, None])  # committed-window index of the non-node taps
    row = tl.reduce(tl.where(jw[None, None, :] == cidx[:, :, None], rows[None, None, :], 0), 2, _sum_combine)
    return node.to(tl.int64), row, is_node & (ae < WIDTH)[None, :]


@triton.jit
def _conv_apply(node, row, is_node, ch, ch_mask, xbc_b, s_xbc_k, s_xbc_c, win_sl, s_win_r, s_win_c, cw_ptr, s_cw_c,
                s_cw_w, cb_ptr, s_cb, HAS_CBIAS: tl.constexpr, SILU: tl.constexpr, WIDTH: tl.constexpr,
                BLOCK_WW: tl.constexpr):
    """Conv outputs act(bias + sum_e weight[:, w-1-e] * source_e) of every new node (rows) for channels `ch`
    (columns): a (BLOCK_K, len(ch)) fp32 tile."""
    ae = tl.arange(0, BLOCK_WW).to(tl.int64)
    wt = tl.load(cw_ptr + (WIDTH - 1 - ae)[:, None] * s_cw_w + ch[None, :] * s_cw_c,
                 mask=(ae < WIDTH)[:, None] & ch_mask[None, :], other=0.0).to(tl.float32)
    xv = tl.load(xbc_b + node[:, :, None] * s_xbc_k + ch[None, None, :] * s_xbc_c,
                 mask=is_node[:, :, None] & ch_mask[None, None, :], other=0.0).to(tl.float32)
    cmask = ((is_node == 0) & (ae < WIDTH)[None, :])[:, :, None] & ch_mask[None, None, :]
    cv = tl.load(win_sl + row[:, :, None] * s_win_r + ch[None, None, :] * s_win_c, mask=cmask,
                 other=0.0).to(tl.float32)
    acc = tl.reduce(wt[None, :, :] * (xv + cv), 1, _sum_combine)
    if HAS_CBIAS:
        acc += tl.load(cb_ptr + ch * s_cb, mask=ch_mask, other=0.0).to(tl.float32)[None, :]
    if SILU:
        acc = acc / (1.0 + tl.exp(-acc))
    return acc
