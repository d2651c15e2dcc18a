"""Triton kernels of the verify family (SSM verify step, fused Mamba-2 step, conv step with rollback) + launchers.

Semantics: python_ref.verify.verify_step_cache_ref / conv_verify_step_ref; cache layout and algorithm:
docs/verify_step_design.md; low-level contract: docs/verify_lowlevel_ops.md. The launchers take exactly the
positional arguments of the `_verify_step_<be>` / `_verify_step_fused_<be>` / `_conv_verify_step_<be>` schemas.

Programs:
  * SSM step: one program per (batch row, unit). It reads the unit's meta, then loops over P tiles of the state:
    materialise (replay the committed ring tokens), fold the state when needed, score the k new nodes (chain: one
    running state; tree: each node re-walks its ancestor path, O(k^2) tile updates). After a barrier it compacts
    the ring (tree paths), appends the new tokens and rewrites the meta.
  * Fused Mamba-2 step: the same kernel with one program per (batch row, group): x, B, C of a node come from the
    conv with rollback over the raw xBC (evaluated where needed: node t convolves the committed window and the raw
    inputs along its ancestor path), and the program rewrites its group's window channels at the end.
  * Conv step: one program per batch row, looping over channel tiles; writes the slot's conv meta at the end.
All math is fp32. Values stored to bf16 are rounded to nearest even first (so that TRITON_INTERPRET=1, whose bf16
cast truncates, gives the same bits as the GPU). Padding rows (slot < 0 or >= S) get y = 0 and touch nothing.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

_MAXK = 32  # masks are 32-bit: at most 32 pending nodes


# --------------------------------------------------------------------------------------------- helpers
@triton.jit
def _rne_bf16(v):
    """Round fp32 to the nearest bf16 value (ties to even), kept in fp32 (exactly representable in bf16)."""
    bits = v.to(tl.int32, bitcast=True)
    r = (bits + 0x7FFF + ((bits >> 16) & 1)) & -65536
    return tl.where(v != v, v, r.to(tl.float32, bitcast=True))


@triton.jit
def _for_store(v, BF16: tl.constexpr):
    if BF16:
        v = _rne_bf16(v)
    return v


@triton.jit
def _log1p(u):
    """log(1 + u) accurate for small u (Goldberg), without libdevice."""
    w = 1.0 + u
    d = w - 1.0
    return tl.where(d == 0.0, u, tl.log(w) * (u / tl.where(d == 0.0, 1.0, d)))


@triton.jit
def _silu(v):
    return v / (1.0 + tl.exp(-v))


@triton.jit
def _proc_dt(v, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, dt_min, dt_max):
    if HAS_BIAS:
        v = v + bias
    if SOFTPLUS:
        v = tl.where(v > 20.0, v, _log1p(tl.exp(v)))
    v = tl.where(v < dt_min, dt_min, v)
    v = tl.where(v > dt_max, dt_max, v)
    return v


@triton.jit
def _new_masks(par_ptr, s_par_k, k, TREE: tl.constexpr):
    """Ancestor-or-self bitmasks (int32 vector of 32) of the k new nodes; an invalid parent means the root."""
    ar = tl.arange(0, 32)
    masks = tl.zeros([32], dtype=tl.int32)
    for t in range(0, k):
        if TREE:
            par = tl.load(par_ptr + t * s_par_k)
        else:
            par = t - 1
        par = tl.where((par >= t) | (par < -1), -1, par)
        pm = tl.sum(tl.where(ar == par, masks, 0), axis=0)
        masks = tl.where(ar == t, pm | (1 << t), masks)
    return masks


@triton.jit
def _window_rows(path, kp, WIDTH: tl.constexpr, BLOCK_W: tl.constexpr):
    """Rows of the (old) window holding the committed window after the commit of `path` (oldest first):
    the last w-1 of rows [0, w-1) ++ (w-1 + path nodes). Returns (rows (BLOCK_W,), m = popcount(path))."""
    ar = tl.arange(0, 32)
    bits = ((path >> ar) & 1) * (ar < kp).to(tl.int32)
    m = tl.sum(bits, axis=0)
    prefix = tl.sum(tl.where(ar[None, :] < ar[:, None], bits[None, :], 0), axis=1)  # set bits below each bit
    j = tl.arange(0, BLOCK_W)
    q = m + j
    r = q - (WIDTH - 1)
    node = tl.sum(tl.where((bits[None, :] == 1) & (prefix[None, :] == r[:, None]), ar[None, :], 0), axis=1)
    rows = tl.where(r < 0, q, WIDTH - 1 + node)
    return rows, m


@triton.jit
def _conv_node(t, k, ch, ch_mask, valid, rows, xbc_ptr, s_xbc_k, s_xbc_c, win_ptr, s_win_r, s_win_c, cw_ptr,
               s_cw_c, s_cw_w, cb_ptr, s_cb, par_ptr, s_par_k, HAS_CBIAS: tl.constexpr, SILU: tl.constexpr,
               TREE: tl.constexpr, WIDTH: tl.constexpr, BLOCK_W: tl.constexpr):
    """Conv output of node t for channels `ch`: act(bias + sum_i w[:, i] * seq[-w + i]), seq = committed window
    ++ raw inputs along the node's path (walked backwards through the parents). xbc_ptr / win_ptr / par_ptr
    already point at the batch row / slot."""
    if HAS_CBIAS:
        acc = tl.load(cb_ptr + ch * s_cb, mask=ch_mask, other=0.0).to(tl.float32)
    else:
        acc = tl.zeros(ch.shape, dtype=tl.float32)
    jw = tl.arange(0, BLOCK_W)
    cur = t
    cidx = t * 0 + (WIDTH - 2)
    for e in tl.static_range(WIDTH):
        is_node = cur >= 0
        curc = tl.minimum(tl.maximum(cur, 0), tl.maximum(k - 1, 0))
        xv = tl.load(xbc_ptr + curc * s_xbc_k + ch * s_xbc_c, mask=ch_mask & is_node, other=0.0).to(tl.float32)
        row = tl.sum(tl.where(jw == cidx, rows, 0), axis=0)
        cv = tl.load(win_ptr + row * s_win_r + ch * s_win_c, mask=ch_mask & (cur < 0) & valid,
                     other=0.0).to(tl.float32)
        wt = tl.load(cw_ptr + ch * s_cw_c + (WIDTH - 1 - e) * s_cw_w, mask=ch_mask, other=0.0).to(tl.float32)
        acc += wt * tl.where(is_node, xv, cv)
        if TREE:
            par = tl.load(par_ptr + curc * s_par_k)
            par = tl.where((par >= cur) | (par < -1), -1, par)
        else:
            par = cur - 1
        cidx = tl.where(is_node, cidx, cidx - 1)
        cur = tl.where(is_node, par, cur)
    if SILU:
        acc = _silu(acc)
    return acc


@triton.jit
def _node_vec(t, k, off, mask, valid, rows, src_ptr, s_src_k, xbc_ptr, s_xbc_k, s_xbc_c, win_ptr, s_win_r,
              s_win_c, cw_ptr, s_cw_c, s_cw_w, cb_ptr, s_cb, par_ptr, s_par_k, FUSED: tl.constexpr,
              HAS_CBIAS: tl.constexpr, SILU: tl.constexpr, TREE: tl.constexpr, WIDTH: tl.constexpr,
              BLOCK_W: tl.constexpr):
    """Node t's input vector: plain step: src[t, off] (off = element offsets); fused step: conv output of
    channels `off`."""
    if FUSED:
        v = _conv_node(t, k, off, mask, valid, rows, xbc_ptr, s_xbc_k, s_xbc_c, win_ptr, s_win_r, s_win_c, cw_ptr,
                       s_cw_c, s_cw_w, cb_ptr, s_cb, par_ptr, s_par_k, HAS_CBIAS, SILU, TREE, WIDTH, BLOCK_W)
    else:
        v = tl.load(src_ptr + t * s_src_k + off, mask=mask, other=0.0).to(tl.float32)
    return v


# --------------------------------------------------------------------------------------------- SSM kernel
@triton.jit
def _verify_ssm_kernel(
        x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, dtb_ptr,
        st_ptr, rx_ptr, rB_ptr, rdt_ptr, meta_ptr, slots_ptr, acc_ptr, par_ptr, y_ptr,
        xbc_ptr, cw_ptr, cb_ptr, win_ptr,
        k, S, R, H, P, N, Pd, G, dt_min, dt_max,
        s_x_b, s_x_k, s_x_h, s_x_p,
        s_dt_b, s_dt_k, s_dt_h, s_dt_p,
        s_A_h, s_A_p, s_A_n,
        s_B_b, s_B_k, s_B_g, s_B_n,
        s_C_b, s_C_k, s_C_g, s_C_n,
        s_D_h, s_D_p,
        s_z_b, s_z_k, s_z_h, s_z_p,
        s_dtb_h, s_dtb_p,
        s_st_s, s_st_h, s_st_p, s_st_n,
        s_rx_s, s_rx_r, s_rx_h, s_rx_p,
        s_rB_s, s_rB_r, s_rB_h, s_rB_n,
        s_rdt_s, s_rdt_r, s_rdt_h, s_rdt_p,
        s_meta_s, s_meta_h, s_meta_j,
        s_slots, s_acc, s_par_b, s_par_k,
        s_y_b, s_y_k, s_y_h, s_y_p,
        s_xbc_b, s_xbc_k, s_xbc_c,
        s_cw_c, s_cw_w, s_cb,
        s_win_s, s_win_r, s_win_c,
        ACC_IS_NODE: tl.constexpr, TREE: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
        HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, FOLD_ALL: tl.constexpr, A_FULL: tl.constexpr,
        FUSED: tl.constexpr, HAS_CBIAS: tl.constexpr, CONV_SILU: tl.constexpr, WIDTH: tl.constexpr,
        HEADS_PER_PROG: tl.constexpr, Y_BF16: tl.constexpr, ST_BF16: tl.constexpr, RING_BF16: tl.constexpr,
        BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    j = tl.program_id(1)
    u0 = j * HEADS_PER_PROG
    hpg = H // G
    g = u0 // hpg
    s_raw = tl.load(slots_ptr + b * s_slots)
    valid = (s_raw >= 0) & (s_raw < S)
    s = tl.where(valid, s_raw, 0).to(tl.int64)
    ar32 = tl.arange(0, 32)

    # ---- commit: the accepted node's path (read every unit's copy from the first unit of this program)
    mrow = meta_ptr + s * s_meta_s + u0 * s_meta_h
    c = tl.load(mrow, mask=valid, other=0)
    kp = tl.load(mrow + s_meta_j, mask=valid, other=0)
    c = tl.minimum(tl.maximum(c, 0), R)
    kp = tl.minimum(tl.maximum(kp, 0), tl.minimum(k * 0 + 32, R - c))
    a = tl.load(acc_ptr + b * s_acc)
    if not ACC_IS_NODE:
        a = a - 1
    a = tl.minimum(a, kp - 1)
    path = tl.load(mrow + (2 + tl.maximum(a, 0)) * s_meta_j, mask=valid & (a >= 0), other=0)
    bits = ((path >> ar32) & 1) * (ar32 < kp).to(tl.int32)
    m = tl.sum(bits, axis=0)
    c1 = c + m
    if FOLD_ALL:
        fold = c1 >= 0
    else:
        fold = c1 + k > R
    base = tl.where(fold, 0, c1)
    par_b = par_ptr + b * s_par_b
    masks = _new_masks(par_b, s_par_k, k, TREE)

    # ---- fused: conv rows of the committed window; pointers at this row / slot
    xbc_b = xbc_ptr + b * s_xbc_b
    win_sl = win_ptr + s * s_win_s
    if FUSED:
        rows, m_unused = _window_rows(path, kp, WIDTH, BLOCK_W)
    else:
        rows = tl.zeros([BLOCK_W], dtype=tl.int32)
    HP = H * P

    offs_p0 = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    nmask = offs_n < N
    x_b = x_ptr + b * s_x_b
    dt_b = dt_ptr + b * s_dt_b
    z_b = z_ptr + b * s_z_b
    y_b = y_ptr + b * s_y_b
    # B / C of this program's group: plain step: element offsets; fused step: xBC channels
    if FUSED:
        offB = HP + g * N + offs_n
        offC = HP + G * N + g * N + offs_n
        B_src = B_ptr
        C_src = C_ptr
    else:
        offB = offs_n * s_B_n
        offC = offs_n * s_C_n
        B_src = B_ptr + b * s_B_b + g * s_B_g
        C_src = C_ptr + b * s_C_b + g * s_C_g

    for hh in range(0, HEADS_PER_PROG):
        u = u0 + hh
        for p0 in range(0, P, BLOCK_P):
            offs_p = p0 + offs_p0
            pmask = offs_p < P
            tmask = pmask[:, None] & nmask[None, :]
            if FUSED:
                offx = u * P + offs_p
            else:
                offx = u * s_x_h + offs_p * s_x_p
            st_ptrs = st_ptr + s * s_st_s + u * s_st_h + offs_p[:, None] * s_st_p + offs_n[None, :] * s_st_n
            h = tl.load(st_ptrs, mask=tmask & valid, other=0.0).to(tl.float32)
            if A_FULL:
                Av = tl.load(A_ptr + u * s_A_h + offs_p[:, None] * s_A_p + offs_n[None, :] * s_A_n, mask=tmask,
                             other=0.0).to(tl.float32)
            else:
                Av = tl.load(A_ptr + u * s_A_h + offs_p * s_A_p, mask=pmask, other=0.0).to(tl.float32)
            rx_u = rx_ptr + s * s_rx_s + u * s_rx_h + offs_p * s_rx_p
            rB_u = rB_ptr + s * s_rB_s + u * s_rB_h + offs_n * s_rB_n
            rdt_u = rdt_ptr + s * s_rdt_s + u * s_rdt_h + offs_p * s_rdt_p
            # materialise: [0, c) then the pending path nodes
            for i in range(0, c + kp):
                pos = i
                sel = valid & ((i < c) | (((path >> tl.maximum(i - c, 0)) & 1) == 1))
                dtv = tl.load(rdt_u + pos * s_rdt_r, mask=pmask & sel, other=0.0).to(tl.float32)
                xv = tl.load(rx_u + pos * s_rx_r, mask=pmask & sel, other=0.0).to(tl.float32)
                Bv = tl.load(rB_u + pos * s_rB_r, mask=nmask & sel, other=0.0).to(tl.float32)
                if A_FULL:
                    dA = tl.exp(dtv[:, None] * Av)
                else:
                    dA = tl.exp(dtv * Av)[:, None]
                h = tl.where(sel, dA * h + (dtv * xv)[:, None] * Bv[None, :], h)
            st_mask = tmask & valid & fold
            tl.store(st_ptrs, _for_store(h, ST_BF16), mask=st_mask)
            if HAS_D:
                Dv = tl.load(D_ptr + u * s_D_h + offs_p * s_D_p, mask=pmask, other=0.0).to(tl.float32)
            if HAS_BIAS:
                biasv = tl.load(dtb_ptr + u * s_dtb_h + offs_p * s_dtb_p, mask=pmask, other=0.0).to(tl.float32)
            else:
                biasv = tl.zeros([BLOCK_P], dtype=tl.float32)
            # score the new nodes
            hc = h
            for t in range(0, k):
                xt = _node_vec(t, k, offx, pmask, valid, rows, x_b, s_x_k, xbc_b, s_xbc_k, s_xbc_c, win_sl,
                               s_win_r, s_win_c, cw_ptr, s_cw_c, s_cw_w, cb_ptr, s_cb, par_b, s_par_k, FUSED,
                               HAS_CBIAS, CONV_SILU, TREE, WIDTH, BLOCK_W)
                Ct = _node_vec(t, k, offC, nmask, valid, rows, C_src, s_C_k, xbc_b, s_xbc_k, s_xbc_c, win_sl,
                               s_win_r, s_win_c, cw_ptr, s_cw_c, s_cw_w, cb_ptr, s_cb, par_b, s_par_k, FUSED,
                               HAS_CBIAS, CONV_SILU, TREE, WIDTH, BLOCK_W)
                if TREE:
                    mt = tl.sum(tl.where(ar32 == t, masks, 0), axis=0)
                    hc = h
                    for jn in range(0, t + 1):
                        selj = ((mt >> jn) & 1) == 1
                        xj = _node_vec(jn, k, offx, pmask, valid, rows, x_b, s_x_k, xbc_b, s_xbc_k, s_xbc_c,
                                       win_sl, s_win_r, s_win_c, cw_ptr, s_cw_c, s_cw_w, cb_ptr, s_cb, par_b,
                                       s_par_k, FUSED, HAS_CBIAS, CONV_SILU, TREE, WIDTH, BLOCK_W)
                        Bj = _node_vec(jn, k, offB, nmask, valid, rows, B_src, s_B_k, xbc_b, s_xbc_k, s_xbc_c,
                                       win_sl, s_win_r, s_win_c, cw_ptr, s_cw_c, s_cw_w, cb_ptr, s_cb, par_b,
                                       s_par_k, FUSED, HAS_CBIAS, CONV_SILU, TREE, WIDTH, BLOCK_W)
                        dtj = tl.load(dt_b + jn * s_dt_k + u * s_dt_h + offs_p * s_dt_p, mask=pmask,
                                      other=0.0).to(tl.float32)
                        dtj = _proc_dt(dtj, biasv, HAS_BIAS, SOFTPLUS, dt_min, dt_max)
                        if A_FULL:
                            dA = tl.exp(dtj[:, None] * Av)
                        else:
                            dA = tl.exp(dtj * Av)[:, None]
                        hc = tl.where(selj, dA * hc + (dtj * xj)[:, None] * Bj[None, :], hc)
                else:
                    Bt = _node_vec(t, k, offB, nmask, valid, rows, B_src, s_B_k, xbc_b, s_xbc_k, s_xbc_c, win_sl,
                                   s_win_r, s_win_c, cw_ptr, s_cw_c, s_cw_w, cb_ptr, s_cb, par_b, s_par_k, FUSED,
                                   HAS_CBIAS, CONV_SILU, TREE, WIDTH, BLOCK_W)
                    dtt = tl.load(dt_b + t * s_dt_k + u * s_dt_h + offs_p * s_dt_p, mask=pmask,
                                  other=0.0).to(tl.float32)
                    dtt = _proc_dt(dtt, biasv, HAS_BIAS, SOFTPLUS, dt_min, dt_max)
                    if A_FULL:
                        dA = tl.exp(dtt[:, None] * Av)
                    else:
                        dA = tl.exp(dtt * Av)[:, None]
                    hc = dA * hc + (dtt * xt)[:, None] * Bt[None, :]
                yv = tl.sum(hc * Ct[None, :], axis=1)
                if HAS_D:
                    yv += Dv * xt
                if HAS_Z:
                    zv = tl.load(z_b + t * s_z_k + u * s_z_h + offs_p * s_z_p, mask=pmask, other=0.0).to(tl.float32)
                    yv = yv * _silu(zv)
                yv = tl.where(valid, yv, 0.0)
                tl.store(y_b + t * s_y_k + u * s_y_h + offs_p * s_y_p, _for_store(yv, Y_BF16), mask=pmask)

    # ---- write back (every read of the ring / window / meta of this program is done)
    tl.debug_barrier()
    compact = valid & (fold == 0)
    for hh in range(0, HEADS_PER_PROG):
        u = u0 + hh
        rx_u = rx_ptr + s * s_rx_s + u * s_rx_h
        rB_u = rB_ptr + s * s_rB_s + u * s_rB_h
        rdt_u = rdt_ptr + s * s_rdt_s + u * s_rdt_h
        # tree paths: ring[c + i] = ring[c + path_node_i]
        cnt = c * 0
        for t in range(0, kp):
            sel = compact & (((path >> t) & 1) == 1) & (cnt != t)
            srcp = c + t
            dstp = c + cnt
            for p0 in range(0, P, BLOCK_P):
                offs_p = p0 + offs_p0
                pmask = offs_p < P
                xv = tl.load(rx_u + srcp * s_rx_r + offs_p * s_rx_p, mask=pmask & sel)
                dv = tl.load(rdt_u + srcp * s_rdt_r + offs_p * s_rdt_p, mask=(offs_p < Pd) & sel)
                tl.debug_barrier()
                tl.store(rx_u + dstp * s_rx_r + offs_p * s_rx_p, xv, mask=pmask & sel)
                tl.store(rdt_u + dstp * s_rdt_r + offs_p * s_rdt_p, dv, mask=(offs_p < Pd) & sel)
            Bv = tl.load(rB_u + srcp * s_rB_r + offs_n * s_rB_n, mask=nmask & sel)
            tl.debug_barrier()
            tl.store(rB_u + dstp * s_rB_r + offs_n * s_rB_n, Bv, mask=nmask & sel)
            cnt += ((path >> t) & 1)
            tl.debug_barrier()
        # the new tokens at ring[base, base + k)
        for t in range(0, k):
            pos = base + t
            wsel = valid & (pos < R)
            for p0 in range(0, P, BLOCK_P):
                offs_p = p0 + offs_p0
                pmask = offs_p < P
                if FUSED:
                    offx = u * P + offs_p
                else:
                    offx = u * s_x_h + offs_p * s_x_p
                xt = _node_vec(t, k, offx, pmask, valid, rows, x_b, s_x_k, xbc_b, s_xbc_k, s_xbc_c, win_sl,
                               s_win_r, s_win_c, cw_ptr, s_cw_c, s_cw_w, cb_ptr, s_cb, par_b, s_par_k, FUSED,
                               HAS_CBIAS, CONV_SILU, TREE, WIDTH, BLOCK_W)
                tl.store(rx_u + pos * s_rx_r + offs_p * s_rx_p, _for_store(xt, RING_BF16), mask=pmask & wsel)
                if HAS_BIAS:
                    biasv = tl.load(dtb_ptr + u * s_dtb_h + offs_p * s_dtb_p, mask=pmask, other=0.0).to(tl.float32)
                else:
                    biasv = tl.zeros([BLOCK_P], dtype=tl.float32)
                dtt = tl.load(dt_b + t * s_dt_k + u * s_dt_h + offs_p * s_dt_p, mask=pmask, other=0.0).to(tl.float32)
                dtt = _proc_dt(dtt, biasv, HAS_BIAS, SOFTPLUS, dt_min, dt_max)
                tl.store(rdt_u + pos * s_rdt_r + offs_p * s_rdt_p, dtt, mask=(offs_p < Pd) & wsel)
            Bt = _node_vec(t, k, offB, nmask, valid, rows, B_src, s_B_k, xbc_b, s_xbc_k, s_xbc_c, win_sl, s_win_r,
                           s_win_c, cw_ptr, s_cw_c, s_cw_w, cb_ptr, s_cb, par_b, s_par_k, FUSED, HAS_CBIAS,
                           CONV_SILU, TREE, WIDTH, BLOCK_W)
            tl.store(rB_u + pos * s_rB_r + offs_n * s_rB_n, _for_store(Bt, RING_BF16), mask=nmask & wsel)
        mrow_u = meta_ptr + s * s_meta_s + u * s_meta_h
        tl.store(mrow_u, base, mask=valid)
        tl.store(mrow_u + s_meta_j, k + c * 0, mask=valid)
        tl.store(mrow_u + (2 + ar32) * s_meta_j, masks, mask=valid & (ar32 < k))

    if FUSED:
        # ---- the group's conv window: rows [0, w-1) = committed window, rows [w-1, w-1+k) = raw new inputs
        tl.debug_barrier()
        jw = tl.arange(0, BLOCK_W)
        nch = HEADS_PER_PROG * P + 2 * N
        for c0 in range(0, nch, BLOCK_C):
            jc = c0 + tl.arange(0, BLOCK_C)
            cmask = jc < nch
            xpart = HEADS_PER_PROG * P
            ch = tl.where(jc < xpart, u0 * P + jc,
                          tl.where(jc < xpart + N, HP + g * N + (jc - xpart), HP + G * N + g * N + (jc - xpart - N)))
            wmask = (jw < WIDTH - 1)[:, None] & cmask[None, :] & valid
            cwin = tl.load(win_sl + rows[:, None] * s_win_r + ch[None, :] * s_win_c, mask=wmask)
            tl.debug_barrier()
            tl.store(win_sl + jw[:, None] * s_win_r + ch[None, :] * s_win_c, cwin, mask=wmask)
            for t in range(0, k):
                xr = tl.load(xbc_b + t * s_xbc_k + ch * s_xbc_c, mask=cmask)
                tl.store(win_sl + (WIDTH - 1 + t) * s_win_r + ch * s_win_c, xr, mask=cmask & valid)
            tl.debug_barrier()


# --------------------------------------------------------------------------------------------- conv kernel
@triton.jit
def _conv_verify_kernel(x_ptr, win_ptr, meta_ptr, w_ptr, bias_ptr, slots_ptr, acc_ptr, par_ptr, out_ptr,
                        k, S, dc, Kmax,
                        s_x_b, s_x_k, s_x_c, s_win_s, s_win_r, s_win_c, s_meta_s, s_meta_j, s_w_c, s_w_w, s_bias,
                        s_slots, s_acc, s_par_b, s_par_k, s_out_b, s_out_k, s_out_c,
                        ACC_IS_NODE: tl.constexpr, TREE: tl.constexpr, HAS_BIAS: tl.constexpr,
                        SILU: tl.constexpr, WIDTH: tl.constexpr, OUT_BF16: tl.constexpr,
                        BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    s_raw = tl.load(slots_ptr + b * s_slots)
    valid = (s_raw >= 0) & (s_raw < S)
    s = tl.where(valid, s_raw, 0).to(tl.int64)
    ar32 = tl.arange(0, 32)
    mrow = meta_ptr + s * s_meta_s
    kp = tl.load(mrow, mask=valid, other=0)
    kp = tl.minimum(tl.maximum(kp, 0), Kmax)
    a = tl.load(acc_ptr + b * s_acc)
    if not ACC_IS_NODE:
        a = a - 1
    a = tl.minimum(a, kp - 1)
    path = tl.load(mrow + (1 + tl.maximum(a, 0)) * s_meta_j, mask=valid & (a >= 0), other=0)
    rows, m = _window_rows(path, kp, WIDTH, BLOCK_W)
    par_b = par_ptr + b * s_par_b
    masks = _new_masks(par_b, s_par_k, k, TREE)
    x_b = x_ptr + b * s_x_b
    win_sl = win_ptr + s * s_win_s
    jw = tl.arange(0, BLOCK_W)
    for c0 in range(0, dc, BLOCK_C):
        ch = c0 + tl.arange(0, BLOCK_C)
        cmask = ch < dc
        for t in range(0, k):
            o = _conv_node(t, k, ch, cmask, valid, rows, x_b, s_x_k, s_x_c, win_sl, s_win_r, s_win_c, w_ptr, s_w_c,
                           s_w_w, bias_ptr, s_bias, par_b, s_par_k, HAS_BIAS, SILU, TREE, WIDTH, BLOCK_W)
            o = tl.where(valid, o, 0.0)
            tl.store(out_ptr + b * s_out_b + t * s_out_k + ch * s_out_c, _for_store(o, OUT_BF16), mask=cmask)
        tl.debug_barrier()
        wmask = (jw < WIDTH - 1)[:, None] & cmask[None, :] & valid
        cwin = tl.load(win_sl + rows[:, None] * s_win_r + ch[None, :] * s_win_c, mask=wmask)
        tl.debug_barrier()
        tl.store(win_sl + jw[:, None] * s_win_r + ch[None, :] * s_win_c, cwin, mask=wmask)
        for t in range(0, k):
            xr = tl.load(x_b + t * s_x_k + ch * s_x_c, mask=cmask)
            tl.store(win_sl + (WIDTH - 1 + t) * s_win_r + ch * s_win_c, xr, mask=cmask & valid)
        tl.debug_barrier()
    tl.store(mrow, k + s * 0, mask=valid)
    tl.store(mrow + (1 + ar32) * s_meta_j, masks, mask=valid & (ar32 < k))


# --------------------------------------------------------------------------------------------- launchers
def _np2(v: int, lo: int = 1) -> int:
    return max(lo, triton.next_power_of_2(max(int(v), 1)))


def _st(t, n):
    """Strides of t padded to n entries (a missing tensor: zeros)."""
    return tuple(t.stride()) if t is not None else (0,) * n


def _nz(t, fallback):
    """A tensor with storage for the kernel argument: t, or `fallback` when t is None or empty."""
    return t if (t is not None and t.numel() > 0) else fallback


def _check_k(k, Kmax, R):
    if not (0 <= k <= Kmax <= min(R, _MAXK)):
        raise ValueError(f"verify (triton): need 0 <= k <= Kmax <= min(R, 32), got k={k}, Kmax={Kmax}, R={R}")


def _launch_ssm(x, dt, A, B, C, D, z, dt_bias, state, ring_x, ring_B, ring_dt, meta, slots, accepted,
                accepted_is_node, parents, y, dt_softplus, dt_min, dt_max, fold_all, conv):
    batch, k = y.shape[0], y.shape[1]
    S, H, P, N = state.shape
    R = ring_x.shape[1]
    Kmax = meta.shape[2] - 2
    Pd = ring_dt.shape[3]
    Pa, Na = A.shape[1], A.shape[2]
    _check_k(k, Kmax, R)
    if batch == 0:
        return
    # Broadcast dims of size 1 get stride 0 so the kernels can index them with the channel / state index.
    sA = (A.stride(0), A.stride(1) if Pa > 1 else 0, A.stride(2) if Na > 1 else 0)
    sdt = (*dt.stride()[:3], dt.stride(3) if dt.shape[3] > 1 else 0)
    sdtb = (dt_bias.stride(0), dt_bias.stride(1) if dt_bias.shape[1] > 1 else 0) if dt_bias is not None else (0, 0)
    srdt = (*ring_dt.stride()[:3], ring_dt.stride(3) if Pd > 1 else 0)
    fused = conv is not None
    dummy = state
    if fused:
        xBC, conv_weight, conv_bias, conv_silu, window = conv
        dc = xBC.shape[2]
        G = (dc - H * P) // (2 * N)
        width = conv_weight.shape[1]
        heads_per_prog = H // G
        grid = (batch, G)
    else:
        xBC = conv_weight = conv_bias = window = None
        conv_silu = False
        G = B.shape[2]
        width = 2
        heads_per_prog = 1
        grid = (batch, H)
    BLOCK_N = _np2(N)
    BLOCK_P = min(_np2(P), max(1, 4096 // BLOCK_N))
    BLOCK_W = _np2(width - 1)
    BLOCK_C = min(_np2(heads_per_prog * P + 2 * N), 256)
    bf16 = torch.bfloat16
    _verify_ssm_kernel[grid](
        _nz(x, dummy), _nz(dt, dummy), A, _nz(B, dummy), _nz(C, dummy), _nz(D, dummy), _nz(z, dummy),
        _nz(dt_bias, dummy), state, ring_x, ring_B, ring_dt, meta, slots, accepted, _nz(parents, meta), _nz(y, dummy),
        _nz(xBC, dummy), _nz(conv_weight, dummy), _nz(conv_bias, dummy), _nz(window, dummy),
        k, S, R, H, P, N, Pd, G, float(dt_min), float(dt_max),
        *_st(x, 4), *sdt, *sA, *_st(B, 4), *_st(C, 4), *_st(D, 2), *_st(z, 4), *sdtb,
        *state.stride(), *ring_x.stride(), *ring_B.stride(), *srdt, *meta.stride(),
        slots.stride(0), accepted.stride(0), *_st(parents, 2), *y.stride(),
        *_st(xBC, 3), *_st(conv_weight, 2), *_st(conv_bias, 1), *_st(window, 3),
        ACC_IS_NODE=bool(accepted_is_node), TREE=parents is not None, HAS_D=D is not None, HAS_Z=z is not None,
        HAS_BIAS=dt_bias is not None, SOFTPLUS=bool(dt_softplus), FOLD_ALL=bool(fold_all), A_FULL=Na > 1,
        FUSED=fused, HAS_CBIAS=conv_bias is not None, CONV_SILU=bool(conv_silu), WIDTH=width,
        HEADS_PER_PROG=heads_per_prog, Y_BF16=y.dtype == bf16, ST_BF16=state.dtype == bf16,
        RING_BF16=ring_x.dtype == bf16, BLOCK_P=BLOCK_P, BLOCK_N=BLOCK_N, BLOCK_W=BLOCK_W, BLOCK_C=BLOCK_C)


def verify_step_triton(x, dt, A, B, C, D, z, dt_bias, state, ring_x, ring_B, ring_dt, meta, slots, accepted,
                       accepted_is_node, parents, y, dt_softplus, dt_min, dt_max, fold_all):
    """Triton twin of `_verify_step_cpu` (same positional arguments; see docs/verify_lowlevel_ops.md)."""
    _launch_ssm(x, dt, A, B, C, D, z, dt_bias, state, ring_x, ring_B, ring_dt, meta, slots, accepted,
                accepted_is_node, parents, y, dt_softplus, dt_min, dt_max, fold_all, None)


def verify_step_fused_triton(xBC, dt, A, D, z, dt_bias, conv_weight, conv_bias, conv_silu, conv_window, state,
                             ring_x, ring_B, ring_dt, meta, slots, accepted, accepted_is_node, parents, y,
                             dt_softplus, dt_min, dt_max, fold_all):
    """Triton twin of `_verify_step_fused_cpu` (Mamba-2: Pd = 1, A (H, 1, 1))."""
    H, P, N = state.shape[1:]
    dc = xBC.shape[2]
    if (dc - H * P) <= 0 or (dc - H * P) % (2 * N) or H % ((dc - H * P) // (2 * N)):
        raise ValueError(f"xBC: dc = {dc} must be H*P + 2*G*N with G dividing H (H={H}, P={P}, N={N})")
    _launch_ssm(None, dt, A, None, None, D, z, dt_bias, state, ring_x, ring_B, ring_dt, meta, slots, accepted,
                accepted_is_node, parents, y, dt_softplus, dt_min, dt_max, fold_all,
                (xBC, conv_weight, conv_bias, conv_silu, conv_window))


def conv_verify_step_triton(x, window, meta, weight, bias, slots, accepted, accepted_is_node, parents, out, silu):
    """Triton twin of `_conv_verify_step_cpu`: one program per batch row."""
    batch, k, dc = x.shape
    S = window.shape[0]
    Kmax = meta.shape[1] - 1
    width = weight.shape[1]
    if not (0 <= k <= Kmax <= _MAXK):
        raise ValueError(f"conv_verify_step (triton): need 0 <= k <= Kmax <= 32, got k={k}, Kmax={Kmax}")
    if batch == 0:
        return
    dummy = window
    _conv_verify_kernel[(batch,)](
        _nz(x, dummy), window, meta, weight, _nz(bias, weight), slots, accepted, _nz(parents, meta), _nz(out, dummy),
        k, S, dc, Kmax,
        *x.stride(), *window.stride(), *meta.stride(), *weight.stride(), *_st(bias, 1),
        slots.stride(0), accepted.stride(0), *_st(parents, 2), *out.stride(),
        ACC_IS_NODE=bool(accepted_is_node), TREE=parents is not None, HAS_BIAS=bias is not None, SILU=bool(silu),
        WIDTH=width, OUT_BF16=out.dtype == torch.bfloat16, BLOCK_W=_np2(width - 1), BLOCK_C=min(_np2(dc), 256))
