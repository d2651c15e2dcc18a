"""Triton twin of the CUDA conv1d kernels: forward, backward, decode update (fp32 math in every kernel).

Tiles are (channels x time) and every tap is a shifted masked load (served from L1/L2), so both layouts
use one kernel: the strides decide, and the tile shape follows the unit-stride axis. Varlen sequences and
initial states are handled per column: each time column finds its sequence by binary search in cu_seqlens
and positions before the sequence start read the sequence's initial state (or zero).

Launchers take logical (b, d, l) views (any strides) and preallocated outputs, like the C++ bindings.
They run on CUDA tensors, and on CPU tensors under TRITON_INTERPRET=1 (tests).
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

__all__ = ["conv1d_fwd_triton", "conv1d_bwd_triton", "conv1d_update_triton"]


@triton.jit
def _seq_of(cu, t, NSEQ, LOG_NSEQ: tl.constexpr):
    """Largest n with cu[n] <= t (the sequence holding position t), elementwise over the vector t."""
    lo = tl.zeros(t.shape, dtype=tl.int32)
    hi = tl.zeros(t.shape, dtype=tl.int32) + (NSEQ - 1)
    for _ in tl.static_range(LOG_NSEQ):
        mid = (lo + hi + 1) // 2
        v = tl.load(cu + mid)
        go = v <= t
        lo = tl.where(go, mid, lo)
        hi = tl.where(go, hi, mid - 1)
    return lo


@triton.jit
def _xe(x_row, init_ptr, offs_d, pos, s, n, mask, sxc, sxl, sin, sic, siw,
        W: tl.constexpr, HAS_INIT: tl.constexpr):
    """x at positions pos (BLOCK_L) of channels offs_d (BLOCK_D), extended before the sequence start s (per
    column) by initial state n (per column). fp32 tile (BLOCK_D, BLOCK_L). The masks keep every access in
    bounds even for a cu_seqlens with bad values (pos >= 0, 0 <= ji < W - 1)."""
    inside = (pos >= s) & (pos >= 0)
    v = tl.load(x_row + offs_d[:, None] * sxc + pos[None, :].to(tl.int64) * sxl,
                mask=mask & inside[None, :], other=0.0).to(tl.float32)
    if HAS_INIT:
        ji = pos - s + (W - 1)
        iv = tl.load(init_ptr + n[None, :].to(tl.int64) * sin + offs_d[:, None] * sic + ji[None, :] * siw,
                     mask=mask & (~inside & (ji >= 0) & (ji < W - 1))[None, :], other=0.0).to(tl.float32)
        v = tl.where(inside[None, :], v, iv)
    return v


@triton.jit
def _pre(x_row, w_ptr, bias_v, init_ptr, offs_d, mask_d, q, s, n, mask, sxc, sxl, swc, sww, sin, sic, siw,
         W: tl.constexpr, HAS_INIT: tl.constexpr):
    """Pre-activation at positions q (BLOCK_L) for channels offs_d: bias + sum_i w[i] xe(q - W + 1 + i)."""
    z = tl.zeros(mask.shape, dtype=tl.float32) + bias_v[:, None]
    for i in tl.static_range(W):
        wi = tl.load(w_ptr + offs_d * swc + i * sww, mask=mask_d, other=0.0).to(tl.float32)
        z += wi[:, None] * _xe(x_row, init_ptr, offs_d, q - (W - 1) + i, s, n, mask, sxc, sxl, sin, sic, siw,
                               W, HAS_INIT)
    return z


# Sizes are not specialized on (each distinct value class would compile a new variant); strides are, so a
# unit stride gives contiguous, vectorized accesses.
@triton.jit(do_not_specialize=["D", "L", "NSEQ"])
def _conv1d_fwd_kernel(x, w_ptr, bias, init_ptr, cu, y, D, L, NSEQ,
                       sxb, sxc, sxl, syb, syc, syl, swc, sww, sbias, sin, sic, siw,
                       W: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_INIT: tl.constexpr, VARLEN: tl.constexpr,
                       SILU: tl.constexpr, LOG_NSEQ: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr):
    pid_l, pid_d, pid_b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    offs_d = (pid_d * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)
    offs_l = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    mask_d = offs_d < D
    mask = mask_d[:, None] & (offs_l < L)[None, :]
    if VARLEN:
        n = _seq_of(cu, offs_l, NSEQ, LOG_NSEQ)
        s = tl.load(cu + n)
    else:
        n = tl.zeros([BLOCK_L], dtype=tl.int32) + pid_b
        s = tl.zeros([BLOCK_L], dtype=tl.int32)
    x_row = x + pid_b.to(tl.int64) * sxb
    bias_v = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias_v = tl.load(bias + offs_d * sbias, mask=mask_d, other=0.0).to(tl.float32)
    z = _pre(x_row, w_ptr, bias_v, init_ptr, offs_d, mask_d, offs_l, s, n, mask, sxc, sxl, swc, sww, sin, sic, siw,
             W, HAS_INIT)
    if SILU:
        z = z * tl.sigmoid(z)
    tl.store(y + pid_b.to(tl.int64) * syb + offs_d[:, None] * syc + offs_l[None, :].to(tl.int64) * syl,
             z.to(y.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["D", "L"])
def _conv1d_final_kernel(x, init_ptr, cu, final, D, L, sxb, sxc, sxl, sin, sic, siw, sfn, sfc, sfw,
                         W: tl.constexpr, WP2: tl.constexpr, HAS_INIT: tl.constexpr, VARLEN: tl.constexpr,
                         BLOCK_D: tl.constexpr):
    """final[n, c, j] = xe(e_n - (W-1) + j); one program per (sequence, channel block)."""
    pid_n, pid_d = tl.program_id(0), tl.program_id(1)
    offs_d = (pid_d * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)
    j = tl.arange(0, WP2)
    mask = (offs_d < D)[:, None] & (j < W - 1)[None, :]
    if VARLEN:  # clamped into [0, L]: a bad cu_seqlens cannot send the loads out of bounds
        e = tl.minimum(tl.maximum(tl.load(cu + pid_n + 1), 0), L)
        s = tl.minimum(tl.maximum(tl.load(cu + pid_n), 0), e)
        x_row = x
    else:
        s = 0
        e = L
        x_row = x + pid_n.to(tl.int64) * sxb
    pos = e - (W - 1) + j
    sv = tl.zeros([WP2], dtype=tl.int32) + s
    nv = tl.zeros([WP2], dtype=tl.int32) + pid_n
    v = _xe(x_row, init_ptr, offs_d, pos, sv, nv, mask, sxc, sxl, sin, sic, siw, W, HAS_INIT)
    tl.store(final + pid_n.to(tl.int64) * sfn + offs_d[:, None] * sfc + j[None, :] * sfw,
             v.to(final.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["D", "L", "NSEQ", "NLB"])
def _conv1d_bwd_kernel(x, w_ptr, bias, init_ptr, cu, dy, dfinal, dx, dw_part, db_part, D, L, NSEQ, NLB,
                       sxb, sxc, sxl, sdyb, sdyc, sdyl, sdxb, sdxc, sdxl, swc, sww, sbias, sin, sic, siw,
                       sfn, sfc, sfw,
                       W: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_INIT: tl.constexpr, HAS_DFINAL: tl.constexpr,
                       VARLEN: tl.constexpr, SILU: tl.constexpr, LOG_NSEQ: tl.constexpr,
                       BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr):
    """dx for the tile; dweight / dbias partial sums of the tile into row (b * NLB + pid_l) of the partials.
    dpre at t + k (k < W) is recomputed for every shift k (W^2 shifted loads from L1/L2)."""
    pid_l, pid_d, pid_b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    offs_d = (pid_d * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)
    offs_l = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    mask_d = offs_d < D
    mask = mask_d[:, None] & (offs_l < L)[None, :]
    if VARLEN:
        n = _seq_of(cu, offs_l, NSEQ, LOG_NSEQ)
        s = tl.load(cu + n)
        e = tl.minimum(tl.load(cu + n + 1), L)  # dy / dfinal loads stay in bounds for a bad cu_seqlens
    else:
        n = tl.zeros([BLOCK_L], dtype=tl.int32) + pid_b
        s = tl.zeros([BLOCK_L], dtype=tl.int32)
        e = tl.zeros([BLOCK_L], dtype=tl.int32) + L
    x_row = x + pid_b.to(tl.int64) * sxb
    dy_row = dy + pid_b.to(tl.int64) * sdyb
    bias_v = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias_v = tl.load(bias + offs_d * sbias, mask=mask_d, other=0.0).to(tl.float32)

    dxa = tl.zeros([BLOCK_D, BLOCK_L], dtype=tl.float32)
    for k in tl.static_range(W):  # dpre at q = t + k feeds dx[t] through tap W - 1 - k
        q = offs_l + k
        mq = mask & (q < e)[None, :]  # same sequence as t
        z = _pre(x_row, w_ptr, bias_v, init_ptr, offs_d, mask_d, q, s, n, mq, sxc, sxl, swc, sww, sin, sic, siw,
                 W, HAS_INIT)
        g = tl.load(dy_row + offs_d[:, None] * sdyc + q[None, :].to(tl.int64) * sdyl, mask=mq,
                    other=0.0).to(tl.float32)
        if SILU:
            sg = tl.sigmoid(z)
            dp = g * sg * (1.0 + z * (1.0 - sg))
        else:
            dp = g
        dp = tl.where(mq, dp, 0.0)
        wk = tl.load(w_ptr + offs_d * swc + (W - 1 - k) * sww, mask=mask_d, other=0.0).to(tl.float32)
        dxa += wk[:, None] * dp
        if k == 0:  # dpre at t itself: weight and bias gradients
            prow = pid_b.to(tl.int64) * NLB + pid_l
            for i in tl.static_range(W):
                xv = _xe(x_row, init_ptr, offs_d, offs_l - (W - 1) + i, s, n, mask, sxc, sxl, sin, sic, siw,
                         W, HAS_INIT)
                tl.store(dw_part + (prow * D + offs_d) * W + i, tl.sum(dp * xv, axis=1), mask=mask_d)
            if HAS_BIAS:
                tl.store(db_part + prow * D + offs_d, tl.sum(dp, axis=1), mask=mask_d)
    if HAS_DFINAL:
        jf = offs_l - e + (W - 1)
        mf = mask & ((jf >= 0) & (jf < W - 1))[None, :]
        dxa += tl.load(dfinal + n[None, :].to(tl.int64) * sfn + offs_d[:, None] * sfc + jf[None, :] * sfw,
                       mask=mf, other=0.0).to(tl.float32)
    tl.store(dx + pid_b.to(tl.int64) * sdxb + offs_d[:, None] * sdxc + offs_l[None, :].to(tl.int64) * sdxl,
             dxa.to(dx.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["D", "L"])
def _conv1d_dinit_kernel(x, w_ptr, bias, init_ptr, cu, dy, dfinal, dinit, D, L,
                         sxb, sxc, sxl, sdyb, sdyc, sdyl, swc, sww, sbias, sin, sic, siw, sfn, sfc, sfw,
                         sdn, sdc, sdw,
                         W: tl.constexpr, WP2: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_DFINAL: tl.constexpr,
                         VARLEN: tl.constexpr, SILU: tl.constexpr, BLOCK_D: tl.constexpr):
    """dinit[n, c, j] = sum_{m <= j, m < len} w[j - m] dpre[s + m] + dfinal[n, c, j - len] (j >= len)."""
    pid_n, pid_d = tl.program_id(0), tl.program_id(1)
    offs_d = (pid_d * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)
    mask_d = offs_d < D
    m = tl.arange(0, WP2)
    if VARLEN:
        e = tl.minimum(tl.maximum(tl.load(cu + pid_n + 1), 0), L)
        s = tl.minimum(tl.maximum(tl.load(cu + pid_n), 0), e)
        x_row = x
        dy_row = dy
    else:
        s = 0
        e = L
        x_row = x + pid_n.to(tl.int64) * sxb
        dy_row = dy + pid_n.to(tl.int64) * sdyb
    length = e - s
    q = s + m  # the first W-1 positions of the sequence
    mq = mask_d[:, None] & ((m < W - 1) & (q < e))[None, :]
    sv = tl.zeros([WP2], dtype=tl.int32) + s
    nv = tl.zeros([WP2], dtype=tl.int32) + pid_n
    bias_v = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias_v = tl.load(bias + offs_d * sbias, mask=mask_d, other=0.0).to(tl.float32)
    z = _pre(x_row, w_ptr, bias_v, init_ptr, offs_d, mask_d, q, sv, nv, mq, sxc, sxl, swc, sww, sin, sic, siw, W, True)
    g = tl.load(dy_row + offs_d[:, None] * sdyc + q[None, :].to(tl.int64) * sdyl, mask=mq, other=0.0).to(tl.float32)
    if SILU:
        sg = tl.sigmoid(z)
        dp = g * sg * (1.0 + z * (1.0 - sg))
    else:
        dp = g
    dp = tl.where(mq, dp, 0.0)
    for j in tl.static_range(W - 1):
        acc = tl.zeros([BLOCK_D], dtype=tl.float32)
        for mm in tl.static_range(j + 1):  # m = mm, tap j - mm
            wv = tl.load(w_ptr + offs_d * swc + (j - mm) * sww, mask=mask_d, other=0.0).to(tl.float32)
            col = tl.sum(tl.where((m == mm)[None, :], dp, 0.0), axis=1)
            acc += wv * col
        if HAS_DFINAL:
            acc += tl.load(dfinal + pid_n.to(tl.int64) * sfn + offs_d * sfc + (j - length) * sfw,
                           mask=mask_d & (j >= length), other=0.0).to(tl.float32)
        tl.store(dinit + pid_n.to(tl.int64) * sdn + offs_d * sdc + j * sdw, acc.to(dinit.dtype.element_ty),
                 mask=mask_d)


@triton.jit(do_not_specialize=["D", "K", "LS", "NSLOTS"])
def _conv1d_update_kernel(x, state, w_ptr, bias, slots, out, D, K, LS, NSLOTS,
                          sxb, sxc, sxl, ssn, ssc, ssl, sob, soc, sol, swc, sww, sbias,
                          W: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_SLOTS: tl.constexpr, SILU: tl.constexpr,
                          BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_S: tl.constexpr):
    """One program per (row, channel block). All loads (outputs' windows, the new state) happen before any
    store, so out may alias x and the state is shifted in place safely."""
    pid_b, pid_d = tl.program_id(0), tl.program_id(1)
    offs_d = (pid_d * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)
    mask_d = offs_d < D
    if HAS_SLOTS:
        slot = tl.load(slots + pid_b).to(tl.int64)
    else:
        slot = pid_b.to(tl.int64)
    valid = (slot >= 0) & (slot < NSLOTS)
    slot = tl.where(valid, slot, 0)
    x_row = x + pid_b.to(tl.int64) * sxb
    st_row = state + slot * ssn
    tt = tl.arange(0, BLOCK_K)
    mk = mask_d[:, None] & (tt < K)[None, :] & valid
    acc = tl.zeros([BLOCK_D, BLOCK_K], dtype=tl.float32)
    if HAS_BIAS:
        acc += tl.load(bias + offs_d * sbias, mask=mask_d, other=0.0).to(tl.float32)[:, None]
    for i in tl.static_range(W):  # token t, tap i reads column LS + t - W + 1 + i of [state, x]
        col = LS + tt - (W - 1) + i
        from_state = col < LS
        sv = tl.load(st_row + offs_d[:, None] * ssc + col[None, :] * ssl, mask=mk & from_state[None, :], other=0.0)
        xv = tl.load(x_row + offs_d[:, None] * sxc + (col - LS)[None, :] * sxl, mask=mk & ~from_state[None, :],
                     other=0.0)
        v = tl.where(from_state[None, :], sv.to(tl.float32), xv.to(tl.float32))
        wi = tl.load(w_ptr + offs_d * swc + i * sww, mask=mask_d, other=0.0).to(tl.float32)
        acc += wi[:, None] * v
    if SILU:
        acc = acc * tl.sigmoid(acc)
    acc = tl.where(valid, acc, 0.0)
    jj = tl.arange(0, BLOCK_S)
    src = K + jj  # new state entry j = column K + j of [state, x]
    ms = mask_d[:, None] & (jj < LS)[None, :] & valid
    src_state = src < LS
    ns = tl.load(st_row + offs_d[:, None] * ssc + src[None, :] * ssl, mask=ms & src_state[None, :], other=0.0)
    nx = tl.load(x_row + offs_d[:, None] * sxc + (src - LS)[None, :] * sxl, mask=ms & ~src_state[None, :], other=0.0)
    new_state = tl.where(src_state[None, :], ns, nx.to(ns.dtype))
    tl.debug_barrier()  # every load above completes before the stores below
    tl.store(out + pid_b.to(tl.int64) * sob + offs_d[:, None] * soc + tt[None, :] * sol,
             acc.to(out.dtype.element_ty), mask=mask_d[:, None] & (tt < K)[None, :])
    tl.store(st_row + offs_d[:, None] * ssc + jj[None, :] * ssl, new_state, mask=ms)


# ---------------------------------------------------------------------------------------------------
# Launchers (logical (b, d, l) views; outputs preallocated)


def _log_nseq(nseq: int) -> int:
    return max(1, math.ceil(math.log2(max(nseq, 1))) + 1)


def _tiles(x: torch.Tensor, interpret: bool):
    """(BLOCK_D, BLOCK_L): long along the unit-stride axis."""
    if interpret:
        return 16, 64
    if x.stride(2) == 1 and x.stride(1) != 1:  # channel-first
        return 8, 256
    return 64, 32


def _interpreted(x: torch.Tensor) -> bool:
    return x.device.type != "cuda"


def _strides_or_zero(t, n):
    return tuple(t.stride()) if t is not None else (0,) * n


def conv1d_fwd_triton(x, weight, bias, init, cu, y, final, silu):
    """x, y: (b, d, l) views; weight (d, w); bias (d,)?; init (nseq, d, w-1)?; cu (nseq+1,) int32?;
    final (nseq, d, w-1)? written when given."""
    b, d, L = x.shape
    W = weight.shape[1]
    nseq = b if cu is None else cu.shape[0] - 1
    BD, BL = _tiles(x, _interpreted(x))
    sin = _strides_or_zero(init, 3)
    dummy = x  # never read when the matching flag is off
    if L > 0 and d > 0 and b > 0:
        grid = (triton.cdiv(L, BL), triton.cdiv(d, BD), b)
        _conv1d_fwd_kernel[grid](
            x, weight, bias if bias is not None else dummy, init if init is not None else dummy,
            cu if cu is not None else dummy, y, d, L, nseq,
            *x.stride(), *y.stride(), *weight.stride(), bias.stride(0) if bias is not None else 0, *sin,
            W=W, HAS_BIAS=bias is not None, HAS_INIT=init is not None, VARLEN=cu is not None, SILU=silu,
            LOG_NSEQ=_log_nseq(nseq), BLOCK_D=BD, BLOCK_L=BL)
    if final is not None and nseq > 0 and d > 0:
        BDF = 64
        _conv1d_final_kernel[(nseq, triton.cdiv(d, BDF))](
            x, init if init is not None else dummy, cu if cu is not None else dummy, final, d, L,
            *x.stride(), *sin, *final.stride(),
            W=W, WP2=triton.next_power_of_2(W), HAS_INIT=init is not None, VARLEN=cu is not None, BLOCK_D=BDF)


def conv1d_bwd_triton(x, weight, bias, init, cu, dy, dfinal, dx, dweight, dbias, dinit, silu):
    """Gradients into dx (like x), dweight (d, w) fp32, dbias (d,) fp32?, dinit (nseq, d, w-1)?."""
    b, d, L = x.shape
    W = weight.shape[1]
    nseq = b if cu is None else cu.shape[0] - 1
    BD, BL = _tiles(x, _interpreted(x))
    nlb = triton.cdiv(L, BL)
    dw_part = torch.zeros(b * nlb, d, W, dtype=torch.float32, device=x.device)
    db_part = torch.zeros(b * nlb, d, dtype=torch.float32, device=x.device)
    sin = _strides_or_zero(init, 3)
    sfin = _strides_or_zero(dfinal, 3)
    dummy = x
    if L > 0 and d > 0 and b > 0:
        _conv1d_bwd_kernel[(nlb, triton.cdiv(d, BD), b)](
            x, weight, bias if bias is not None else dummy, init if init is not None else dummy,
            cu if cu is not None else dummy, dy, dfinal if dfinal is not None else dummy, dx, dw_part, db_part,
            d, L, nseq, nlb, *x.stride(), *dy.stride(), *dx.stride(), *weight.stride(),
            bias.stride(0) if bias is not None else 0, *sin, *sfin,
            W=W, HAS_BIAS=bias is not None, HAS_INIT=init is not None, HAS_DFINAL=dfinal is not None,
            VARLEN=cu is not None, SILU=silu, LOG_NSEQ=_log_nseq(nseq), BLOCK_D=BD, BLOCK_L=BL)
    dweight.copy_(dw_part.sum(0))
    if dbias is not None:
        dbias.copy_(db_part.sum(0))
    if dinit is not None and nseq > 0 and d > 0:
        BDI = 64
        _conv1d_dinit_kernel[(nseq, triton.cdiv(d, BDI))](
            x, weight, bias if bias is not None else dummy, init, cu if cu is not None else dummy, dy,
            dfinal if dfinal is not None else dummy, dinit, d, L,
            *x.stride(), *dy.stride(), *weight.stride(), bias.stride(0) if bias is not None else 0, *sin, *sfin,
            *dinit.stride(),
            W=W, WP2=triton.next_power_of_2(W), HAS_BIAS=bias is not None, HAS_DFINAL=dfinal is not None,
            VARLEN=cu is not None, SILU=silu, BLOCK_D=BDI)


def conv1d_update_triton(x, conv_state, weight, bias, slots, out, silu):
    """x, out (b, d, k) views; conv_state (S, d, s) updated in place; slots (b,) int32?."""
    b, d, K = x.shape
    S, _, LS = conv_state.shape
    W = weight.shape[1]
    if b == 0 or d == 0:
        return
    BK = triton.next_power_of_2(max(K, 1))
    BS = triton.next_power_of_2(max(LS, 1))
    BD = max(16, min(256, 4096 // max(BK, BS)))
    _conv1d_update_kernel[(b, triton.cdiv(d, BD))](
        x, conv_state, weight, bias if bias is not None else x, slots if slots is not None else x, out,
        d, K, LS, S, *x.stride(), *conv_state.stride(), *out.stride(), *weight.stride(),
        bias.stride(0) if bias is not None else 0,
        W=W, HAS_BIAS=bias is not None, HAS_SLOTS=slots is not None, SILU=silu,
        BLOCK_D=BD, BLOCK_K=BK, BLOCK_S=BS)
