"""Triton kernels of the verify family (SSM verify step, fused Mamba-2 step, conv step with rollback) + launchers.

Semantics: python_ref.verify.verify_step_cache_ref / conv_verify_step_ref; cache layout and algorithm:
docs/verify_step_design.md; low-level contract: docs/verify_lowlevel_ops.md. The launchers take exactly the
positional arguments of the `_verify_step_<be>` / `_verify_step_fused_<be>` / `_conv_verify_step_<be>` schemas.

Programs:
  * SSM step: one program per (batch row, unit). It reads the unit's meta, then loops over P tiles of the state:
    materialise (replay the committed ring tokens), fold the state when needed, score the k new nodes (chain: one
    running state; tree: each node re-walks its ancestor path, O(k^2) tile updates). The new nodes' x, dt, z, B, C
    are held as (k, P) / (k, N) tiles. After a barrier it compacts the ring (tree paths), appends the new tokens
    and rewrites the meta.
  * Fused Mamba-2 step: the same kernel with one program per (batch row, group) looping over the group's heads:
    x, B, C of the new nodes come from the conv with rollback over the raw xBC (node t convolves the committed
    window and the raw inputs along its ancestor path; the tap sources of all nodes are found once, then each
    channel tile is one (k, w, channels) gather), and the program rewrites its group's window channels at the end.
  * Conv step: one program per batch row, looping over channel tiles; writes the slot's conv meta at the end.
All math is fp32. Values stored to bf16 are rounded to nearest even first (so that TRITON_INTERPRET=1, whose bf16
cast truncates, gives the same bits as the GPU). Padding rows (slot < 0 or >= S) get y = 0 and touch nothing.
Index arithmetic is int64. Bad control values never index out of bounds: the accepted node is clamped to the
pending count, an invalid parent (>= own index or < -1) means the root, c / kp from the meta are clamped to the ring.
Interpreter notes (CI runs these kernels under TRITON_INTERPRET=1, where every op costs ~20 us): sums use
tl.reduce with the standard combine function, scalar branches skip work, and there are few helper calls.
"""
from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

from ._triton_jit import _conv_apply, _conv_taps, _new_masks, _rne_bf16, _sum_combine, _window_rows

_MAXK = 32  # masks are 32-bit: at most 32 pending nodes


# --------------------------------------------------------------------------------------------- SSM kernel
@triton.jit
def _processed_dt(dt_row, s_dt_k, s_dt_p, dtb_row, s_dtb_p, ks, offs_p, kpmask, pmask, dt_min, dt_max,
                  HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """(tokens ks, channels offs_p) of the raw dt -> + dt_bias, softplus (dt > 20 -> dt), clamp to [dt_min, dt_max]."""
    dt = tl.load(dt_row + ks[:, None] * s_dt_k + offs_p[None, :] * s_dt_p, mask=kpmask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        dt += tl.load(dtb_row + offs_p * s_dtb_p, mask=pmask, other=0.0).to(tl.float32)[None, :]
    if SOFTPLUS:
        ex = tl.exp(dt)
        w1p = 1.0 + ex
        d1p = w1p - 1.0
        # softplus = log1p(exp(dt)) (Goldberg's accurate log1p)
        sp = tl.where(d1p == 0.0, ex, tl.log(w1p) * (ex / tl.where(d1p == 0.0, 1.0, d1p)))
        dt = tl.where(dt > 20.0, dt, sp)
    dt = tl.where(dt < dt_min, dt_min, dt)
    return tl.where(dt > dt_max, dt_max, dt)


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
        BLOCK_K: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_W: tl.constexpr,
        BLOCK_WW: tl.constexpr, BLOCK_C: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    j = tl.program_id(1).to(tl.int64)
    u0 = j * HEADS_PER_PROG
    g = u0 // (H // G)
    HP = H * P
    s_raw = tl.load(slots_ptr + b * s_slots)
    valid = (s_raw >= 0) & (s_raw < S)
    ar32 = tl.arange(0, 32)
    # index vectors in int64: offsets never overflow (and the interpreter skips its int32 overflow checks)
    ark = tl.arange(0, BLOCK_K).to(tl.int64)
    kmask = ark < k
    offs_p0 = tl.arange(0, BLOCK_P).to(tl.int64)
    offs_n = tl.arange(0, BLOCK_N).to(tl.int64)
    nmask = offs_n < N
    y_b = y_ptr + b * s_y_b
    if valid:
        s = s_raw.to(tl.int64)
        # ---- commit: the accepted node's path (every unit holds the same meta; read this program's first)
        mrow = meta_ptr + s * s_meta_s + u0 * s_meta_h
        c = tl.load(mrow)
        kp = tl.load(mrow + s_meta_j)
        c = tl.minimum(tl.maximum(c, 0), R)
        kp = tl.minimum(tl.maximum(kp, 0), tl.minimum(R - c, 32))
        a = tl.load(acc_ptr + b * s_acc)
        if not ACC_IS_NODE:
            a = a - 1
        a = tl.minimum(a, kp - 1)
        path = tl.load(mrow + (2 + tl.maximum(a, 0)) * s_meta_j, mask=a >= 0, other=0)
        bits = ((path >> ar32) & 1) * (ar32 < kp).to(tl.int32)
        m = tl.reduce(bits, 0, _sum_combine)
        c1 = c + m
        not_prefix = tl.reduce(bits * (ar32 >= m).to(tl.int32), 0, _sum_combine) > 0  # tree path: compact ring
        if FOLD_ALL:
            fold = c1 >= 0
        else:
            fold = c1 + k > R
        base = tl.where(fold, 0, c1)
        par_b = par_ptr + b * s_par_b
        masks = _new_masks(par_b, s_par_k, k, TREE)
        xbc_b = xbc_ptr + b * s_xbc_b
        win_sl = win_ptr + s * s_win_s

        # ---- B, C of the k new nodes for this program's group: (BLOCK_K, BLOCK_N) tiles
        knmask = kmask[:, None] & nmask[None, :]
        if FUSED:
            rows, m_unused = _window_rows(path, kp, WIDTH, BLOCK_W)
            tn, tr, ti = _conv_taps(k, rows, par_b, s_par_k, TREE, WIDTH, BLOCK_K, BLOCK_W, BLOCK_WW)
            Bt_all = _conv_apply(tn, tr, ti, HP + g * N + offs_n, nmask, xbc_b, s_xbc_k, s_xbc_c, win_sl, s_win_r,
                                 s_win_c, cw_ptr, s_cw_c, s_cw_w, cb_ptr, s_cb, HAS_CBIAS, CONV_SILU, WIDTH, BLOCK_WW)
            Ct_all = _conv_apply(tn, tr, ti, HP + G * N + g * N + offs_n, nmask, xbc_b, s_xbc_k, s_xbc_c, win_sl,
                                 s_win_r, s_win_c, cw_ptr, s_cw_c, s_cw_w, cb_ptr, s_cb, HAS_CBIAS, CONV_SILU, WIDTH,
                                 BLOCK_WW)
        else:
            rows = tl.zeros([BLOCK_W], dtype=tl.int32)
            Bt_all = tl.load(B_ptr + b * s_B_b + g * s_B_g + ark[:, None] * s_B_k + offs_n[None, :] * s_B_n,
                             mask=knmask, other=0.0).to(tl.float32)
            Ct_all = tl.load(C_ptr + b * s_C_b + g * s_C_g + ark[:, None] * s_C_k + offs_n[None, :] * s_C_n,
                             mask=knmask, other=0.0).to(tl.float32)

        for hh in range(0, HEADS_PER_PROG):
            u = u0 + hh
            for p0 in range(0, P, BLOCK_P):
                offs_p = p0 + offs_p0
                pmask = offs_p < P
                tmask = pmask[:, None] & nmask[None, :]
                kpmask = kmask[:, None] & pmask[None, :]
                # the new nodes' x, processed dt, z: (BLOCK_K, BLOCK_P) tiles
                if FUSED:
                    xt_all = _conv_apply(tn, tr, ti, u * P + offs_p, pmask, xbc_b, s_xbc_k, s_xbc_c, win_sl, s_win_r,
                                         s_win_c, cw_ptr, s_cw_c, s_cw_w, cb_ptr, s_cb, HAS_CBIAS, CONV_SILU, WIDTH,
                                         BLOCK_WW)
                else:
                    xt_all = tl.load(x_ptr + b * s_x_b + u * s_x_h + ark[:, None] * s_x_k + offs_p[None, :] * s_x_p,
                                     mask=kpmask, other=0.0).to(tl.float32)
                dt_all = _processed_dt(dt_ptr + b * s_dt_b + u * s_dt_h, s_dt_k, s_dt_p, dtb_ptr + u * s_dtb_h, s_dtb_p,
                                       ark, offs_p, kpmask, pmask, dt_min, dt_max, HAS_BIAS, SOFTPLUS)
                if HAS_Z:
                    zt_all = tl.load(z_ptr + b * s_z_b + u * s_z_h + ark[:, None] * s_z_k + offs_p[None, :] * s_z_p,
                                     mask=kpmask, other=0.0).to(tl.float32)
                    gate_all = zt_all / (1.0 + tl.exp(-zt_all))
                if HAS_D:
                    Dv = tl.load(D_ptr + u * s_D_h + offs_p * s_D_p, mask=pmask, other=0.0).to(tl.float32)
                if A_FULL:
                    Av = tl.load(A_ptr + u * s_A_h + offs_p[:, None] * s_A_p + offs_n[None, :] * s_A_n, mask=tmask,
                                 other=0.0).to(tl.float32)
                else:
                    Av = tl.load(A_ptr + u * s_A_h + offs_p * s_A_p, mask=pmask, other=0.0).to(tl.float32)

                # materialise the committed state: checkpoint, then ring [0, c), then the pending path nodes
                st_ptrs = st_ptr + s * s_st_s + u * s_st_h + offs_p[:, None] * s_st_p + offs_n[None, :] * s_st_n
                h = tl.load(st_ptrs, mask=tmask, other=0.0).to(tl.float32)
                rx_u = rx_ptr + s * s_rx_s + u * s_rx_h + offs_p * s_rx_p
                rB_u = rB_ptr + s * s_rB_s + u * s_rB_h + offs_n * s_rB_n
                rdt_u = rdt_ptr + s * s_rdt_s + u * s_rdt_h + offs_p * s_rdt_p
                # (a prefix path is contiguous with [0, c): one plain loop; a tree path: test each pending node)
                for i in range(0, tl.where(not_prefix, c, c1)):
                    dtv = tl.load(rdt_u, mask=pmask, other=0.0).to(tl.float32)
                    xv = tl.load(rx_u, mask=pmask, other=0.0).to(tl.float32)
                    Bv = tl.load(rB_u, mask=nmask, other=0.0).to(tl.float32)
                    if A_FULL:
                        dA = tl.exp(dtv[:, None] * Av)
                    else:
                        dA = tl.exp(dtv * Av)[:, None]
                    h = dA * h + (dtv * xv)[:, None] * Bv[None, :]
                    rdt_u += s_rdt_r
                    rx_u += s_rx_r
                    rB_u += s_rB_r
                if not_prefix:
                    for t in range(0, kp):
                        if ((path >> t) & 1) == 1:
                            dtv = tl.load(rdt_u, mask=pmask, other=0.0).to(tl.float32)
                            xv = tl.load(rx_u, mask=pmask, other=0.0).to(tl.float32)
                            Bv = tl.load(rB_u, mask=nmask, other=0.0).to(tl.float32)
                            if A_FULL:
                                dA = tl.exp(dtv[:, None] * Av)
                            else:
                                dA = tl.exp(dtv * Av)[:, None]
                            h = dA * h + (dtv * xv)[:, None] * Bv[None, :]
                        rdt_u += s_rdt_r
                        rx_u += s_rx_r
                        rB_u += s_rB_r
                if fold:
                    hs = h
                    if ST_BF16:
                        hs = _rne_bf16(hs)
                    tl.store(st_ptrs, hs, mask=tmask)

                # score the new nodes (chain: one running state; tree: walk each node's path)
                y_all = tl.zeros([BLOCK_K, BLOCK_P], dtype=tl.float32)
                hc = h
                for t in range(0, k):
                    if TREE:
                        mt = tl.reduce(tl.where(ar32 == t, masks, 0), 0, _sum_combine)
                        hc = h
                        for jn in range(0, t + 1):
                            if ((mt >> jn) & 1) == 1:
                                xj = tl.reduce(tl.where(ark[:, None] == jn, xt_all, 0.0), 0, _sum_combine)
                                dtj = tl.reduce(tl.where(ark[:, None] == jn, dt_all, 0.0), 0, _sum_combine)
                                Bj = tl.reduce(tl.where(ark[:, None] == jn, Bt_all, 0.0), 0, _sum_combine)
                                if A_FULL:
                                    dA = tl.exp(dtj[:, None] * Av)
                                else:
                                    dA = tl.exp(dtj * Av)[:, None]
                                hc = dA * hc + (dtj * xj)[:, None] * Bj[None, :]
                    else:
                        xt = tl.reduce(tl.where(ark[:, None] == t, xt_all, 0.0), 0, _sum_combine)
                        dtt = tl.reduce(tl.where(ark[:, None] == t, dt_all, 0.0), 0, _sum_combine)
                        Bt = tl.reduce(tl.where(ark[:, None] == t, Bt_all, 0.0), 0, _sum_combine)
                        if A_FULL:
                            dA = tl.exp(dtt[:, None] * Av)
                        else:
                            dA = tl.exp(dtt * Av)[:, None]
                        hc = dA * hc + (dtt * xt)[:, None] * Bt[None, :]
                    Ct = tl.reduce(tl.where(ark[:, None] == t, Ct_all, 0.0), 0, _sum_combine)
                    yv = tl.reduce(hc * Ct[None, :], 1, _sum_combine)
                    y_all = tl.where(ark[:, None] == t, yv[None, :], y_all)
                # D skip and z gate for all nodes at once, then one store of the (k, P) tile
                if HAS_D:
                    y_all += Dv[None, :] * xt_all
                if HAS_Z:
                    y_all = y_all * gate_all
                if Y_BF16:
                    y_all = _rne_bf16(y_all)
                tl.store(y_b + u * s_y_h + ark[:, None] * s_y_k + offs_p[None, :] * s_y_p, y_all, mask=kpmask)

        # ---- write back (every read of this program's ring / window / meta is done)
        tl.debug_barrier()
        for hh in range(0, HEADS_PER_PROG):
            u = u0 + hh
            rx_u = rx_ptr + s * s_rx_s + u * s_rx_h
            rB_u = rB_ptr + s * s_rB_s + u * s_rB_h
            rdt_u = rdt_ptr + s * s_rdt_s + u * s_rdt_h
            if (fold == 0) & not_prefix:
                # tree path: ring[c + i] = ring[c + path_node_i] (sources are never behind destinations)
                cnt = c * 0
                for t in range(0, kp):
                    if (((path >> t) & 1) == 1) & (cnt != t):
                        for p0 in range(0, P, BLOCK_P):
                            offs_p = p0 + offs_p0
                            xv = tl.load(rx_u + (c + t) * s_rx_r + offs_p * s_rx_p, mask=offs_p < P)
                            dv = tl.load(rdt_u + (c + t) * s_rdt_r + offs_p * s_rdt_p, mask=offs_p < Pd)
                            tl.debug_barrier()
                            tl.store(rx_u + (c + cnt) * s_rx_r + offs_p * s_rx_p, xv, mask=offs_p < P)
                            tl.store(rdt_u + (c + cnt) * s_rdt_r + offs_p * s_rdt_p, dv, mask=offs_p < Pd)
                        Bv = tl.load(rB_u + (c + t) * s_rB_r + offs_n * s_rB_n, mask=nmask)
                        tl.debug_barrier()
                        tl.store(rB_u + (c + cnt) * s_rB_r + offs_n * s_rB_n, Bv, mask=nmask)
                        tl.debug_barrier()
                    cnt += (path >> t) & 1
            # the new tokens at ring[base, base + k)
            posk = base + ark
            for p0 in range(0, P, BLOCK_P):
                offs_p = p0 + offs_p0
                pmask = offs_p < P
                kpmask = kmask[:, None] & pmask[None, :]
                if FUSED:
                    xt_all = _conv_apply(tn, tr, ti, u * P + offs_p, pmask, xbc_b, s_xbc_k, s_xbc_c, win_sl, s_win_r,
                                         s_win_c, cw_ptr, s_cw_c, s_cw_w, cb_ptr, s_cb, HAS_CBIAS, CONV_SILU, WIDTH,
                                         BLOCK_WW)
                else:
                    xt_all = tl.load(x_ptr + b * s_x_b + u * s_x_h + ark[:, None] * s_x_k + offs_p[None, :] * s_x_p,
                                     mask=kpmask, other=0.0).to(tl.float32)
                if RING_BF16:
                    xt_all = _rne_bf16(xt_all)
                tl.store(rx_u + posk[:, None] * s_rx_r + offs_p[None, :] * s_rx_p, xt_all, mask=kpmask)
                dt_all = _processed_dt(dt_ptr + b * s_dt_b + u * s_dt_h, s_dt_k, s_dt_p, dtb_ptr + u * s_dtb_h, s_dtb_p,
                                       ark, offs_p, kpmask, pmask, dt_min, dt_max, HAS_BIAS, SOFTPLUS)
                tl.store(rdt_u + posk[:, None] * s_rdt_r + offs_p[None, :] * s_rdt_p, dt_all,
                         mask=kmask[:, None] & (offs_p < Pd)[None, :])
            Bs = Bt_all
            if RING_BF16:
                Bs = _rne_bf16(Bs)
            tl.store(rB_u + posk[:, None] * s_rB_r + offs_n[None, :] * s_rB_n, Bs, mask=knmask)
            mrow_u = meta_ptr + s * s_meta_s + u * s_meta_h
            tl.store(mrow_u, base)
            tl.store(mrow_u + s_meta_j, k + c * 0)
            tl.store(mrow_u + (2 + ar32.to(tl.int64)) * s_meta_j, masks, mask=ar32 < k)

        if FUSED:
            # ---- the group's conv window: rows [0, w-1) = committed window, rows [w-1, w-1+k) = new raw inputs
            tl.debug_barrier()
            jw = tl.arange(0, BLOCK_W).to(tl.int64)
            nch = HEADS_PER_PROG * P + 2 * N
            xpart = HEADS_PER_PROG * P
            for c0 in range(0, nch, BLOCK_C):
                jc = c0 + tl.arange(0, BLOCK_C).to(tl.int64)
                cmask = jc < nch
                ch = tl.where(jc < xpart, u0 * P + jc,
                              tl.where(jc < xpart + N, HP + g * N + (jc - xpart),
                                       HP + G * N + g * N + (jc - xpart - N)))
                wmask = (jw < WIDTH - 1)[:, None] & cmask[None, :]
                cwin = tl.load(win_sl + rows[:, None] * s_win_r + ch[None, :] * s_win_c, mask=wmask)
                tl.debug_barrier()
                tl.store(win_sl + jw[:, None] * s_win_r + ch[None, :] * s_win_c, cwin, mask=wmask)
                kcmask = kmask[:, None] & cmask[None, :]
                xr = tl.load(xbc_b + ark[:, None] * s_xbc_k + ch[None, :] * s_xbc_c, mask=kcmask)
                tl.store(win_sl + (WIDTH - 1 + ark)[:, None] * s_win_r + ch[None, :] * s_win_c, xr, mask=kcmask)
                tl.debug_barrier()
    else:
        # padding row: y = 0, nothing else touched
        for hh in range(0, HEADS_PER_PROG):
            u = u0 + hh
            for p0 in range(0, P, BLOCK_P):
                offs_p = p0 + offs_p0
                kpmask = kmask[:, None] & (offs_p < P)[None, :]
                tl.store(y_b + u * s_y_h + ark[:, None] * s_y_k + offs_p[None, :] * s_y_p,
                         tl.zeros([BLOCK_K, BLOCK_P], dtype=tl.float32), mask=kpmask)


# --------------------------------------------------------------------------------------------- conv kernel
@triton.jit
def _conv_verify_kernel(x_ptr, win_ptr, meta_ptr, w_ptr, bias_ptr, slots_ptr, acc_ptr, par_ptr, out_ptr,
                        k, S, dc, Kmax,
                        s_x_b, s_x_k, s_x_c, s_win_s, s_win_r, s_win_c, s_meta_s, s_meta_j, s_w_c, s_w_w, s_bias,
                        s_slots, s_acc, s_par_b, s_par_k, s_out_b, s_out_k, s_out_c,
                        ACC_IS_NODE: tl.constexpr, TREE: tl.constexpr, HAS_BIAS: tl.constexpr,
                        SILU: tl.constexpr, WIDTH: tl.constexpr, OUT_BF16: tl.constexpr, BLOCK_K: tl.constexpr,
                        BLOCK_W: tl.constexpr, BLOCK_WW: tl.constexpr, BLOCK_C: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    s_raw = tl.load(slots_ptr + b * s_slots)
    valid = (s_raw >= 0) & (s_raw < S)
    ar32 = tl.arange(0, 32)
    ark = tl.arange(0, BLOCK_K).to(tl.int64)
    kmask = ark < k
    jw = tl.arange(0, BLOCK_W).to(tl.int64)
    x_b = x_ptr + b * s_x_b
    out_b = out_ptr + b * s_out_b
    if valid:
        s = s_raw.to(tl.int64)
        mrow = meta_ptr + s * s_meta_s
        kp = tl.load(mrow)
        kp = tl.minimum(tl.maximum(kp, 0), Kmax)
        a = tl.load(acc_ptr + b * s_acc)
        if not ACC_IS_NODE:
            a = a - 1
        a = tl.minimum(a, kp - 1)
        path = tl.load(mrow + (1 + tl.maximum(a, 0)) * s_meta_j, mask=a >= 0, other=0)
        rows, m = _window_rows(path, kp, WIDTH, BLOCK_W)
        par_b = par_ptr + b * s_par_b
        masks = _new_masks(par_b, s_par_k, k, TREE)
        win_sl = win_ptr + s * s_win_s
        tn, tr, ti = _conv_taps(k, rows, par_b, s_par_k, TREE, WIDTH, BLOCK_K, BLOCK_W, BLOCK_WW)
        for c0 in range(0, dc, BLOCK_C):
            ch = c0 + tl.arange(0, BLOCK_C).to(tl.int64)
            cmask = ch < dc
            kcmask = kmask[:, None] & cmask[None, :]
            o = _conv_apply(tn, tr, ti, ch, cmask, x_b, s_x_k, s_x_c, win_sl, s_win_r, s_win_c, w_ptr, s_w_c,
                            s_w_w, bias_ptr, s_bias, HAS_BIAS, SILU, WIDTH, BLOCK_WW)
            if OUT_BF16:
                o = _rne_bf16(o)
            tl.store(out_b + ark[:, None] * s_out_k + ch[None, :] * s_out_c, o, mask=kcmask)
            tl.debug_barrier()
            wmask = (jw < WIDTH - 1)[:, None] & cmask[None, :]
            cwin = tl.load(win_sl + rows[:, None] * s_win_r + ch[None, :] * s_win_c, mask=wmask)
            tl.debug_barrier()
            tl.store(win_sl + jw[:, None] * s_win_r + ch[None, :] * s_win_c, cwin, mask=wmask)
            xr = tl.load(x_b + ark[:, None] * s_x_k + ch[None, :] * s_x_c, mask=kcmask)
            tl.store(win_sl + (WIDTH - 1 + ark)[:, None] * s_win_r + ch[None, :] * s_win_c, xr, mask=kcmask)
            tl.debug_barrier()
        tl.store(mrow, k + s_raw * 0)
        tl.store(mrow + (1 + ar32.to(tl.int64)) * s_meta_j, masks, mask=ar32 < k)
    else:
        for c0 in range(0, dc, BLOCK_C):
            ch = c0 + tl.arange(0, BLOCK_C).to(tl.int64)
            kcmask = kmask[:, None] & (ch < dc)[None, :]
            tl.store(out_b + ark[:, None] * s_out_k + ch[None, :] * s_out_c,
                     tl.zeros([BLOCK_K, BLOCK_C], dtype=tl.float32), mask=kcmask)


# --------------------------------------------------------------------------------------------- launchers
def _np2(v: int, lo: int = 1) -> int:
    return max(lo, triton.next_power_of_2(max(int(v), 1)))


def _st(t, n):
    """Strides of t padded to n entries (a missing tensor: zeros)."""
    return tuple(t.stride()) if t is not None else (0,) * n


def _nz(t, fallback):
    """A tensor with storage for the kernel argument: t, or `fallback` when t is None or empty."""
    return t if (t is not None and t.numel() > 0) else fallback


def _on_device(t):
    """Launch on t's GPU (Triton launches on the current CUDA device); a no-op for CPU tensors (interpreter)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


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
    BLOCK_K = _np2(k)
    BLOCK_W = _np2(width - 1)
    BLOCK_WW = _np2(width)
    BLOCK_C = min(_np2(heads_per_prog * P + 2 * N), 256)
    bf16 = torch.bfloat16
    with _on_device(state):
        _verify_ssm_kernel[grid](
            _nz(x, dummy), _nz(dt, dummy), A, _nz(B, dummy), _nz(C, dummy), _nz(D, dummy), _nz(z, dummy),
            _nz(dt_bias, dummy), state, ring_x, ring_B, ring_dt, meta, slots, accepted, _nz(parents, meta),
            _nz(y, dummy),
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
            RING_BF16=ring_x.dtype == bf16, BLOCK_K=BLOCK_K, BLOCK_P=BLOCK_P, BLOCK_N=BLOCK_N, BLOCK_W=BLOCK_W,
            BLOCK_WW=BLOCK_WW, BLOCK_C=BLOCK_C)


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
    with _on_device(window):
        _conv_verify_kernel[(batch,)](
            _nz(x, dummy), window, meta, weight, _nz(bias, weight), slots, accepted, _nz(parents, meta),
            _nz(out, dummy),
            k, S, dc, Kmax,
            *x.stride(), *window.stride(), *meta.stride(), *weight.stride(), *_st(bias, 1),
            slots.stride(0), accepted.stride(0), *_st(parents, 2), *out.stride(),
            ACC_IS_NODE=bool(accepted_is_node), TREE=parents is not None, HAS_BIAS=bias is not None, SILU=bool(silu),
            WIDTH=width, OUT_BF16=out.dtype == torch.bfloat16, BLOCK_K=_np2(k), BLOCK_W=_np2(width - 1),
            BLOCK_WW=_np2(width), BLOCK_C=min(_np2(dc), 256))
