"""Triton kernels for the chunked SSD scan (forward and backward) and their launchers.

Algorithm (python_ref/ssd.py::ssd_chunked_ref): chunks of Q tokens that never straddle a sequence; a_t is the
chunk-local cumulative sum of dt*A.

Forward, 4 launches:
  1. _ssd_chunk_cumsum_fwd_kernel   dt -> dt' = clamp(softplus(dt + bias)), a = cumsum_chunk(dt' A)
  2. _ssd_chunk_state_kernel        S_c = sum_s exp(a_last - a_s) dt'_s x_s B_s^T                 (p, n) fp32
  3. _ssd_state_passing_fwd_kernel  h_in[c+1] = exp(a_last_c) h_in[c] + S_c, per sequence, final states
  4. _ssd_chunk_scan_fwd_kernel     y_t = exp(a_t) C_t h_in^T + sum_{s<=t} (C_t.B_s) exp(a_t-a_s) dt'_s x_s
                                    + D x_t;  out = y * silu(z)
Backward, 5 launches (+1 recompute of step 1):
  a. _ssd_chunk_state_kernel (IS_BWD)  dH_c = sum_t exp(a_t) dy_t C_t^T   (gradient reaching h_in[c] via outputs)
  b. _ssd_state_passing_bwd_kernel     reverse pass over chunks: dS_c, d a_last (decay), d initial_states
  c. _ssd_chunk_bwd_kernel             per block of a chunk, intra-chunk terms: dx, d dt', dB, dC (per head), d a
     _ssd_chunk_state_bwd_kernel       adds the terms through chunk states / states_in (p in slices)
  d. _ssd_chunk_cumsum_bwd_kernel      d a -> d(dt' A) (reverse cumsum) -> d dt', dA; back through clamp/softplus

All math is fp32 inside the kernels; matmuls use tl.dot with IEEE fp32 for fp32 inputs and tf32 otherwise.
Tensors are made contiguous by the launchers; the chunk table (row, start, len) describes every chunk, so
varlen (cu_seqlens) and batched inputs go through the same kernels.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .layout import chunk_layout


# --------------------------------------------------------------------------------------------- chunk table
def _tables(b, l, chunk_size, cu_seqlens, device):
    chunks, seqs, n_slots = chunk_layout(b, l, chunk_size, cu_seqlens)
    table = torch.tensor(chunks if chunks else [(0, 0, 0)], dtype=torch.int32, device=device)
    seq_table = torch.tensor(seqs, dtype=torch.int32, device=device)
    return table, seq_table, len(chunks), len(seqs), n_slots


def _np2(v: int, lo: int = 16) -> int:
    return max(lo, triton.next_power_of_2(int(v)))


def _prec(dtype: torch.dtype) -> str:
    return "ieee" if dtype in (torch.float32, torch.float64) else "tf32"


# --------------------------------------------------------------------------------------------- kernels
@triton.jit
def _softplus(v):
    return tl.where(v <= 20.0, tl.log(1.0 + tl.exp(v)), v)


@triton.jit
def _ssd_chunk_cumsum_fwd_kernel(dt_ptr, A_ptr, bias_ptr, dtp_ptr, a_ptr, table_ptr, l, h, dt_lo, dt_hi,
                                 HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_LIMIT: tl.constexpr,
                                 BLOCK_Q: tl.constexpr, BLOCK_H: tl.constexpr):
    k = tl.program_id(0)
    hb = tl.program_id(1)
    row = tl.load(table_ptr + k * 3).to(tl.int64)
    start = tl.load(table_ptr + k * 3 + 1).to(tl.int64)
    ln = tl.load(table_ptr + k * 3 + 2)
    offs_q = tl.arange(0, BLOCK_Q)
    offs_h = hb * BLOCK_H + tl.arange(0, BLOCK_H)
    mask = (offs_q < ln)[:, None] & (offs_h < h)[None, :]
    ptrs = (row * l + start + offs_q)[:, None] * h + offs_h[None, :]
    dt = tl.load(dt_ptr + ptrs, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        dt += tl.load(bias_ptr + offs_h, mask=offs_h < h, other=0.0).to(tl.float32)[None, :]
    if SOFTPLUS:
        dt = _softplus(dt)
    if HAS_LIMIT:
        dt = tl.minimum(tl.maximum(dt, dt_lo), dt_hi)
    dt = tl.where(mask, dt, 0.0)
    A = tl.load(A_ptr + offs_h, mask=offs_h < h, other=0.0).to(tl.float32)
    a = tl.cumsum(dt * A[None, :], axis=0)
    tl.store(dtp_ptr + ptrs, dt, mask=mask)
    tl.store(a_ptr + ptrs, a, mask=mask)


@triton.jit
def _ssd_chunk_state_kernel(X_ptr, BC_ptr, dtp_ptr, a_ptr, out_ptr, table_ptr, l, h, p, n, hpg, ng,
                            IS_BWD: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_P: tl.constexpr,
                            BLOCK_N: tl.constexpr, PREC: tl.constexpr):
    """out[k, h] (p, n) = sum_s w_s X_s^T BC_s over the chunk's tokens, with
    forward: X = x, BC = B, w_s = exp(a_last - a_s) dt'_s;   backward (IS_BWD): X = dy, BC = C, w_s = exp(a_s)."""
    k = tl.program_id(0)
    pb = tl.program_id(1)
    hh = tl.program_id(2)
    row = tl.load(table_ptr + k * 3).to(tl.int64)
    start = tl.load(table_ptr + k * 3 + 1).to(tl.int64)
    ln = tl.load(table_ptr + k * 3 + 2)
    tok0 = row * l + start
    grp = hh // hpg
    a_last = tl.load(a_ptr + (tok0 + ln - 1) * h + hh)
    offs_p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    mp = offs_p < p
    mn = offs_n < n
    acc = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    for s0 in range(0, ln, BLOCK_S):
        offs_s = s0 + tl.arange(0, BLOCK_S)
        ms = offs_s < ln
        tok = tok0 + offs_s
        a_s = tl.load(a_ptr + tok * h + hh, mask=ms, other=0.0)
        if IS_BWD:
            w = tl.exp(a_s)
        else:
            w = tl.exp(a_last - a_s) * tl.load(dtp_ptr + tok * h + hh, mask=ms, other=0.0)
        w = tl.where(ms, w, 0.0)
        xT = tl.load(X_ptr + (tok[None, :] * h + hh) * p + offs_p[:, None], mask=ms[None, :] & mp[:, None],
                     other=0.0).to(tl.float32)
        bc = tl.load(BC_ptr + (tok[:, None] * ng + grp) * n + offs_n[None, :], mask=ms[:, None] & mn[None, :],
                     other=0.0).to(tl.float32)
        acc += tl.dot(xT * w[None, :], bc, input_precision=PREC)
    out_off = ((k * h + hh).to(tl.int64) * p + offs_p[:, None]) * n + offs_n[None, :]
    tl.store(out_ptr + out_off, acc, mask=mp[:, None] & mn[None, :])


@triton.jit
def _ssd_state_passing_fwd_kernel(S_ptr, a_ptr, init_ptr, hin_ptr, final_ptr, table_ptr, seq_ptr, l, h, PN,
                                  HAS_INIT: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.program_id(0)
    hh = tl.program_id(1)
    blk = tl.program_id(2)
    c0 = tl.load(seq_ptr + 2 * i)
    nc = tl.load(seq_ptr + 2 * i + 1)
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    m = offs < PN
    if HAS_INIT:
        st = tl.load(init_ptr + (i * h + hh).to(tl.int64) * PN + offs, mask=m, other=0.0).to(tl.float32)
    else:
        st = tl.zeros((BLOCK,), dtype=tl.float32)
    for j in range(0, nc):
        k = c0 + j
        row = tl.load(table_ptr + k * 3).to(tl.int64)
        start = tl.load(table_ptr + k * 3 + 1).to(tl.int64)
        ln = tl.load(table_ptr + k * 3 + 2)
        a_last = tl.load(a_ptr + (row * l + start + ln - 1) * h + hh)
        base = (k * h + hh).to(tl.int64) * PN
        tl.store(hin_ptr + base + offs, st, mask=m)
        st = tl.exp(a_last) * st + tl.load(S_ptr + base + offs, mask=m, other=0.0)
    tl.store(final_ptr + (i * h + hh).to(tl.int64) * PN + offs, st, mask=m)


@triton.jit
def _ssd_state_passing_bwd_kernel(dH_ptr, hin_ptr, a_ptr, dfinal_ptr, dS_ptr, dinit_ptr, ddecay_ptr, table_ptr,
                                  seq_ptr, l, h, PN, nblk, HAS_DFINAL: tl.constexpr, BLOCK: tl.constexpr):
    """Reverse over a sequence's chunks. g = gradient w.r.t. the state after chunk k:
    dS_k = g;  d a_last_k += exp(a_last_k) <g, h_in[k]>;  g <- dH_k + exp(a_last_k) g."""
    i = tl.program_id(0)
    hh = tl.program_id(1)
    blk = tl.program_id(2)
    c0 = tl.load(seq_ptr + 2 * i)
    nc = tl.load(seq_ptr + 2 * i + 1)
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    m = offs < PN
    if HAS_DFINAL:
        g = tl.load(dfinal_ptr + (i * h + hh).to(tl.int64) * PN + offs, mask=m, other=0.0).to(tl.float32)
    else:
        g = tl.zeros((BLOCK,), dtype=tl.float32)
    for j in range(0, nc):
        k = c0 + nc - 1 - j
        row = tl.load(table_ptr + k * 3).to(tl.int64)
        start = tl.load(table_ptr + k * 3 + 1).to(tl.int64)
        ln = tl.load(table_ptr + k * 3 + 2)
        decay = tl.exp(tl.load(a_ptr + (row * l + start + ln - 1) * h + hh))
        base = (k * h + hh).to(tl.int64) * PN
        tl.store(dS_ptr + base + offs, g, mask=m)
        hin = tl.load(hin_ptr + base + offs, mask=m, other=0.0)
        tl.store(ddecay_ptr + (k * h + hh) * nblk + blk, decay * tl.sum(g * hin, axis=0))
        g = tl.load(dH_ptr + base + offs, mask=m, other=0.0) + decay * g
    tl.store(dinit_ptr + (i * h + hh).to(tl.int64) * PN + offs, g, mask=m)


@triton.jit
def _ssd_chunk_scan_fwd_kernel(x_ptr, B_ptr, C_ptr, dtp_ptr, a_ptr, hin_ptr, D_ptr, z_ptr, out_ptr, ypre_ptr,
                               table_ptr, l, h, p, n, hpg, ng, nmb,
                               HAS_D: tl.constexpr, D_HP: tl.constexpr, HAS_Z: tl.constexpr,
                               BLOCK_M: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
                               PREC: tl.constexpr):
    pid0 = tl.program_id(0)
    pb = tl.program_id(1)
    hh = tl.program_id(2)
    k = pid0 // nmb
    mb = pid0 % nmb
    row = tl.load(table_ptr + k * 3).to(tl.int64)
    start = tl.load(table_ptr + k * 3 + 1).to(tl.int64)
    ln = tl.load(table_ptr + k * 3 + 2)
    tok0 = row * l + start
    grp = hh // hpg
    offs_m = mb * BLOCK_M + tl.arange(0, BLOCK_M)
    mm = offs_m < ln
    tok_m = tok0 + offs_m
    offs_p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    mp = offs_p < p
    offs_n = tl.arange(0, BLOCK_N)
    mn = offs_n < n
    a_m = tl.load(a_ptr + tok_m * h + hh, mask=mm, other=0.0)
    Cm = tl.load(C_ptr + (tok_m[:, None] * ng + grp) * n + offs_n[None, :], mask=mm[:, None] & mn[None, :],
                 other=0.0).to(tl.float32)
    # state -> output: exp(a_t) C_t h_in^T
    hinT = tl.load(hin_ptr + ((k * h + hh).to(tl.int64) * p + offs_p[None, :]) * n + offs_n[:, None],
                   mask=mp[None, :] & mn[:, None], other=0.0)
    acc = tl.dot(Cm, hinT, input_precision=PREC) * tl.exp(a_m)[:, None]
    # intra-chunk: (C B^T o L) (dt x)
    for sb in range(0, mb + 1):
        offs_s = sb * BLOCK_M + tl.arange(0, BLOCK_M)
        ms = offs_s < ln
        tok_s = tok0 + offs_s
        Bs = tl.load(B_ptr + (tok_s[:, None] * ng + grp) * n + offs_n[None, :], mask=ms[:, None] & mn[None, :],
                     other=0.0).to(tl.float32)
        a_s = tl.load(a_ptr + tok_s * h + hh, mask=ms, other=0.0)
        dt_s = tl.load(dtp_ptr + tok_s * h + hh, mask=ms, other=0.0)
        xs = tl.load(x_ptr + (tok_s[:, None] * h + hh) * p + offs_p[None, :], mask=ms[:, None] & mp[None, :],
                     other=0.0).to(tl.float32)
        cb = tl.dot(Cm, tl.trans(Bs), input_precision=PREC)
        causal = (offs_m[:, None] >= offs_s[None, :]) & ms[None, :]
        dec = tl.exp(tl.where(causal, a_m[:, None] - a_s[None, :], float("-inf")))
        acc += tl.dot(cb * dec * dt_s[None, :], xs, input_precision=PREC)
    xy_off = (tok_m[:, None] * h + hh) * p + offs_p[None, :]
    mxy = mm[:, None] & mp[None, :]
    if HAS_D:
        xm = tl.load(x_ptr + xy_off, mask=mxy, other=0.0).to(tl.float32)
        if D_HP:
            Dv = tl.load(D_ptr + hh * p + offs_p, mask=mp, other=0.0).to(tl.float32)
            acc += xm * Dv[None, :]
        else:
            acc += xm * tl.load(D_ptr + hh).to(tl.float32)
    if HAS_Z:
        tl.store(ypre_ptr + xy_off, acc, mask=mxy)
        zm = tl.load(z_ptr + xy_off, mask=mxy, other=0.0).to(tl.float32)
        acc = acc * zm * tl.sigmoid(zm)
    tl.store(out_ptr + xy_off, acc.to(out_ptr.dtype.element_ty), mask=mxy)


@triton.jit
def _ssd_chunk_bwd_kernel(x_ptr, B_ptr, C_ptr, dtp_ptr, a_ptr, dy_ptr, D_ptr,
                          dx_ptr, ddt_ptr, dBh_ptr, dCh_ptr, da_ptr,
                          table_ptr, l, h, p, n, hpg, ng, nmb,
                          HAS_D: tl.constexpr, D_HP: tl.constexpr,
                          BLOCK_M: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
                          PREC: tl.constexpr):
    """Intra-chunk gradients for one block j of rows of one chunk, one head. The block is both a source s
    (columns of M) and a target t (rows of M), M[t, s] = (C_t.B_s) exp(a_t - a_s) [s <= t], y_t = sum_s M[t, s]
    dt'_s x_s + ...; the terms through the chunk states are added by _ssd_chunk_state_bwd_kernel."""
    pid0 = tl.program_id(0)
    hh = tl.program_id(1)
    k = pid0 // nmb
    jb = pid0 % nmb
    row = tl.load(table_ptr + k * 3).to(tl.int64)
    start = tl.load(table_ptr + k * 3 + 1).to(tl.int64)
    ln = tl.load(table_ptr + k * 3 + 2)
    tok0 = row * l + start
    grp = hh // hpg
    offs_j = jb * BLOCK_M + tl.arange(0, BLOCK_M)
    mj = offs_j < ln
    tok_j = tok0 + offs_j
    offs_p = tl.arange(0, BLOCK_P)
    mp = offs_p < p
    offs_n = tl.arange(0, BLOCK_N)
    mn = offs_n < n
    mjp = mj[:, None] & mp[None, :]
    mjn = mj[:, None] & mn[None, :]
    xp_off = (tok_j[:, None] * h + hh) * p + offs_p[None, :]
    bc_off = (tok_j[:, None] * ng + grp) * n + offs_n[None, :]
    a_j = tl.load(a_ptr + tok_j * h + hh, mask=mj, other=0.0)
    dt_j = tl.load(dtp_ptr + tok_j * h + hh, mask=mj, other=0.0)
    x_j = tl.load(x_ptr + xp_off, mask=mjp, other=0.0).to(tl.float32)
    dy_j = tl.load(dy_ptr + xp_off, mask=mjp, other=0.0)
    B_j = tl.load(B_ptr + bc_off, mask=mjn, other=0.0).to(tl.float32)
    C_j = tl.load(C_ptr + bc_off, mask=mjn, other=0.0).to(tl.float32)

    # ---- block as source s: intra-chunk terms over targets t >= s
    ddtx = tl.zeros((BLOCK_M, BLOCK_P), dtype=tl.float32)   # d(dt' x)_s
    dB = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    da = tl.zeros((BLOCK_M,), dtype=tl.float32)
    xdt_j = x_j * dt_j[:, None]
    ntb = tl.cdiv(ln, BLOCK_M)
    for tb in range(jb, ntb):
        offs_t = tb * BLOCK_M + tl.arange(0, BLOCK_M)
        mt = offs_t < ln
        tok_t = tok0 + offs_t
        a_t = tl.load(a_ptr + tok_t * h + hh, mask=mt, other=0.0)
        C_t = tl.load(C_ptr + (tok_t[:, None] * ng + grp) * n + offs_n[None, :], mask=mt[:, None] & mn[None, :],
                      other=0.0).to(tl.float32)
        dy_t = tl.load(dy_ptr + (tok_t[:, None] * h + hh) * p + offs_p[None, :], mask=mt[:, None] & mp[None, :],
                       other=0.0)
        causal = (offs_t[None, :] >= offs_j[:, None]) & mt[None, :] & mj[:, None]
        dec = tl.exp(tl.where(causal, a_t[None, :] - a_j[:, None], float("-inf")))      # (s, t)
        MT = tl.dot(B_j, tl.trans(C_t), input_precision=PREC) * dec
        ddtx += tl.dot(MT, dy_t, input_precision=PREC)
        dMT = tl.dot(xdt_j, tl.trans(dy_t), input_precision=PREC)
        dB += tl.dot(dMT * dec, C_t, input_precision=PREC)
        da -= tl.sum(dMT * MT, axis=1)
    dx = ddtx * dt_j[:, None]
    ddt = tl.sum(x_j * ddtx, axis=1)
    if HAS_D:
        if D_HP:
            dx += dy_j * tl.load(D_ptr + hh * p + offs_p, mask=mp, other=0.0).to(tl.float32)[None, :]
        else:
            dx += dy_j * tl.load(D_ptr + hh).to(tl.float32)

    # ---- block as target t: intra-chunk terms over sources s <= t
    dC = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for sb in range(0, jb + 1):
        offs_s = sb * BLOCK_M + tl.arange(0, BLOCK_M)
        ms = offs_s < ln
        tok_s = tok0 + offs_s
        a_s = tl.load(a_ptr + tok_s * h + hh, mask=ms, other=0.0)
        dt_s = tl.load(dtp_ptr + tok_s * h + hh, mask=ms, other=0.0)
        B_s = tl.load(B_ptr + (tok_s[:, None] * ng + grp) * n + offs_n[None, :], mask=ms[:, None] & mn[None, :],
                      other=0.0).to(tl.float32)
        x_s = tl.load(x_ptr + (tok_s[:, None] * h + hh) * p + offs_p[None, :], mask=ms[:, None] & mp[None, :],
                      other=0.0).to(tl.float32)
        causal = (offs_j[:, None] >= offs_s[None, :]) & ms[None, :] & mj[:, None]
        dec = tl.exp(tl.where(causal, a_j[:, None] - a_s[None, :], float("-inf")))      # (t, s)
        M = tl.dot(C_j, tl.trans(B_s), input_precision=PREC) * dec
        dM = tl.dot(dy_j, tl.trans(x_s * dt_s[:, None]), input_precision=PREC)
        dC += tl.dot(dM * dec, B_s, input_precision=PREC)
        da += tl.sum(dM * M, axis=1)

    tl.store(dx_ptr + xp_off, dx, mask=mjp)
    tl.store(ddt_ptr + tok_j * h + hh, ddt, mask=mj)
    hn_off = (tok_j[:, None] * h + hh) * n + offs_n[None, :]
    tl.store(dBh_ptr + hn_off, dB, mask=mjn)
    tl.store(dCh_ptr + hn_off, dC, mask=mjn)
    tl.store(da_ptr + tok_j * h + hh, da, mask=mj)


@triton.jit
def _ssd_chunk_state_bwd_kernel(x_ptr, B_ptr, C_ptr, dtp_ptr, a_ptr, dy_ptr, hin_ptr, dS_ptr,
                                dx_ptr, ddt_ptr, dBh_ptr, dCh_ptr, da_ptr, dalast_ptr,
                                table_ptr, l, h, p, n, hpg, ng, nmb,
                                BLOCK_M: tl.constexpr, BLOCK_PS: tl.constexpr, BLOCK_N: tl.constexpr,
                                PREC: tl.constexpr):
    """Adds the gradients through the chunk states to one block's (dx, d dt', dB, dC, d a) written by
    _ssd_chunk_bwd_kernel, looping over p in slices so a (p, n) state tile never sits whole in shared memory:
      chunk state  S = sum_s w_s x_s B_s^T, w_s = exp(a_last - a_s) dt'_s, dS its gradient:
        dx_s += w_s dS B_s,  dB_s += w_s dS^T x_s,  dw_s = x_s . (dS B_s) -> d dt'_s, d a_s, d a_last
      state to output  y_t += exp(a_t) h_in C_t:
        dC_t += exp(a_t) h_in^T dy_t,  d a_t += exp(a_t) dy_t . (h_in C_t)"""
    pid0 = tl.program_id(0)
    hh = tl.program_id(1)
    k = pid0 // nmb
    jb = pid0 % nmb
    row = tl.load(table_ptr + k * 3).to(tl.int64)
    start = tl.load(table_ptr + k * 3 + 1).to(tl.int64)
    ln = tl.load(table_ptr + k * 3 + 2)
    tok0 = row * l + start
    grp = hh // hpg
    offs_j = jb * BLOCK_M + tl.arange(0, BLOCK_M)
    mj = offs_j < ln
    tok_j = tok0 + offs_j
    offs_n = tl.arange(0, BLOCK_N)
    mn = offs_n < n
    mjn = mj[:, None] & mn[None, :]
    bc_off = (tok_j[:, None] * ng + grp) * n + offs_n[None, :]
    a_j = tl.load(a_ptr + tok_j * h + hh, mask=mj, other=0.0)
    dt_j = tl.load(dtp_ptr + tok_j * h + hh, mask=mj, other=0.0)
    a_last = tl.load(a_ptr + (tok0 + ln - 1) * h + hh)
    B_j = tl.load(B_ptr + bc_off, mask=mjn, other=0.0).to(tl.float32)
    C_j = tl.load(C_ptr + bc_off, mask=mjn, other=0.0).to(tl.float32)
    e_j = tl.where(mj, tl.exp(a_last - a_j), 0.0)
    w = e_j * dt_j
    ea = tl.where(mj, tl.exp(a_j), 0.0)
    dB = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    dC = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    dw = tl.zeros((BLOCK_M,), dtype=tl.float32)
    dat = tl.zeros((BLOCK_M,), dtype=tl.float32)
    st_base = (k * h + hh).to(tl.int64) * p
    for p0 in range(0, p, BLOCK_PS):
        offs_p = p0 + tl.arange(0, BLOCK_PS)
        mp = offs_p < p
        mjp = mj[:, None] & mp[None, :]
        xp_off = (tok_j[:, None] * h + hh) * p + offs_p[None, :]
        x_j = tl.load(x_ptr + xp_off, mask=mjp, other=0.0).to(tl.float32)
        dy_j = tl.load(dy_ptr + xp_off, mask=mjp, other=0.0)
        st_off = (st_base + offs_p[:, None]) * n + offs_n[None, :]
        mpn = mp[:, None] & mn[None, :]
        dS = tl.load(dS_ptr + st_off, mask=mpn, other=0.0)                                # (ps, n)
        BdS = tl.dot(B_j, tl.trans(dS), input_precision=PREC)                              # (s, ps)
        dx_old = tl.load(dx_ptr + xp_off, mask=mjp, other=0.0)
        tl.store(dx_ptr + xp_off, dx_old + w[:, None] * BdS, mask=mjp)
        dB += tl.dot(x_j, dS, input_precision=PREC)
        dw += tl.sum(x_j * BdS, axis=1)
        hin = tl.load(hin_ptr + st_off, mask=mpn, other=0.0)                               # (ps, n)
        dC += tl.dot(dy_j, hin, input_precision=PREC)
        dat += tl.sum(dy_j * tl.dot(C_j, tl.trans(hin), input_precision=PREC), axis=1)
    hn_off = (tok_j[:, None] * h + hh) * n + offs_n[None, :]
    tl.store(dBh_ptr + hn_off, tl.load(dBh_ptr + hn_off, mask=mjn, other=0.0) + w[:, None] * dB, mask=mjn)
    tl.store(dCh_ptr + hn_off, tl.load(dCh_ptr + hn_off, mask=mjn, other=0.0) + ea[:, None] * dC, mask=mjn)
    ddt_old = tl.load(ddt_ptr + tok_j * h + hh, mask=mj, other=0.0)
    tl.store(ddt_ptr + tok_j * h + hh, ddt_old + e_j * dw, mask=mj)
    da_old = tl.load(da_ptr + tok_j * h + hh, mask=mj, other=0.0)
    tl.store(da_ptr + tok_j * h + hh, da_old - dw * w + ea * dat, mask=mj)
    tl.atomic_add(dalast_ptr + k * h + hh, tl.sum(dw * w, axis=0))


@triton.jit
def _ssd_chunk_cumsum_bwd_kernel(dt_ptr, A_ptr, bias_ptr, dtp_ptr, da_ptr, dalast_ptr, ddt_in_ptr, ddt_out_ptr,
                                 dA_part_ptr, table_ptr, l, h, dt_lo, dt_hi,
                                 HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_LIMIT: tl.constexpr,
                                 BLOCK_Q: tl.constexpr, BLOCK_H: tl.constexpr):
    """d a (per position, plus the chunk's d a_last) -> d(dt' A)_j = sum_{t >= j} d a_t (reverse cumsum),
    d dt' += A d(dt' A), dA += sum dt' d(dt' A); then back through clamp and softplus to the raw dt."""
    k = tl.program_id(0)
    hb = tl.program_id(1)
    row = tl.load(table_ptr + k * 3).to(tl.int64)
    start = tl.load(table_ptr + k * 3 + 1).to(tl.int64)
    ln = tl.load(table_ptr + k * 3 + 2)
    offs_q = tl.arange(0, BLOCK_Q)
    offs_h = hb * BLOCK_H + tl.arange(0, BLOCK_H)
    mh = offs_h < h
    mask = (offs_q < ln)[:, None] & mh[None, :]
    ptrs = (row * l + start + offs_q)[:, None] * h + offs_h[None, :]
    da = tl.load(da_ptr + ptrs, mask=mask, other=0.0)
    dalast = tl.load(dalast_ptr + k * h + offs_h, mask=mh, other=0.0)
    da += tl.where((offs_q == ln - 1)[:, None], dalast[None, :], 0.0)
    rc = tl.sum(da, axis=0)[None, :] - tl.cumsum(da, axis=0) + da
    rc = tl.where(mask, rc, 0.0)
    A = tl.load(A_ptr + offs_h, mask=mh, other=0.0).to(tl.float32)
    dtp = tl.load(dtp_ptr + ptrs, mask=mask, other=0.0)
    ddt = tl.load(ddt_in_ptr + ptrs, mask=mask, other=0.0) + A[None, :] * rc
    tl.store(dA_part_ptr + k * h + offs_h, tl.sum(dtp * rc, axis=0), mask=mh)
    v = tl.load(dt_ptr + ptrs, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        v += tl.load(bias_ptr + offs_h, mask=mh, other=0.0).to(tl.float32)[None, :]
    if HAS_LIMIT:
        sp = v
        if SOFTPLUS:
            sp = _softplus(v)
        ddt = tl.where((sp >= dt_lo) & (sp <= dt_hi), ddt, 0.0)
    if SOFTPLUS:
        ddt = ddt * tl.where(v <= 20.0, tl.sigmoid(v), 1.0)
    tl.store(ddt_out_ptr + ptrs, ddt, mask=mask)


# --------------------------------------------------------------------------------------------- launchers
def _blocks(chunk_size, p, n):
    BM = min(64, _np2(chunk_size))
    if p * n >= 128 * 128 or n >= 256:  # shared memory (sm_90 AOT compiles: bwd > 227 KB otherwise)
        BM = min(BM, 32)
    return BM


def _cumsum_fwd(dt, A, dt_bias, dt_softplus, dt_limit, table, nk, b, l, h, chunk_size):
    dtp = torch.zeros(b, l, h, device=dt.device, dtype=torch.float32)
    a = torch.zeros_like(dtp)
    BH = min(16, triton.next_power_of_2(h))
    lo, hi = dt_limit if dt_limit is not None else (0.0, 0.0)
    if nk:
        _ssd_chunk_cumsum_fwd_kernel[(nk, triton.cdiv(h, BH))](
            dt, A, dt_bias if dt_bias is not None else A, dtp, a, table, l, h, float(lo), float(hi),
            HAS_BIAS=dt_bias is not None, SOFTPLUS=bool(dt_softplus), HAS_LIMIT=dt_limit is not None,
            BLOCK_Q=_np2(chunk_size, 2), BLOCK_H=BH)
    return dtp, a


def _contig(*ts):
    return [t.contiguous() if t is not None else None for t in ts]


def ssd_fwd(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, dt_softplus=False, dt_limit=None,
            initial_states=None, cu_seqlens=None):
    """Returns out (b, l, h, p) x.dtype, ypre (pre-gate y, fp32, or empty without z),
    states_in (n_slots, h, p, n) fp32 (state entering each chunk; unused slots zero), final (nseq, h, p, n) fp32."""
    x, dt, A, B, C, D, z, dt_bias, initial_states = _contig(x, dt, A, B, C, D, z, dt_bias, initial_states)
    b, l, h, p = x.shape
    g, n = B.shape[-2:]
    dev = x.device
    table, seq_table, nk, nseq, n_slots = _tables(b, l, chunk_size, cu_seqlens, dev)
    dtp, a = _cumsum_fwd(dt, A, dt_bias, dt_softplus, dt_limit, table, nk, b, l, h, chunk_size)
    prec = _prec(x.dtype)
    BN = _np2(n)
    BPs = min(64, _np2(p))
    BM = _blocks(chunk_size, p, n)
    S = torch.zeros(n_slots, h, p, n, device=dev, dtype=torch.float32)
    states_in = torch.zeros_like(S)
    final = torch.empty(nseq, h, p, n, device=dev, dtype=torch.float32)
    out = torch.empty_like(x)
    ypre = torch.empty(x.shape if z is not None else (0,), device=dev, dtype=torch.float32)
    if nk:
        _ssd_chunk_state_kernel[(nk, triton.cdiv(p, BPs), h)](
            x, B, dtp, a, S, table, l, h, p, n, h // g, g,
            IS_BWD=False, BLOCK_S=BM, BLOCK_P=BPs, BLOCK_N=BN, PREC=prec)
    PN = p * n
    BLK = min(1024, triton.next_power_of_2(PN))
    _ssd_state_passing_fwd_kernel[(nseq, h, triton.cdiv(PN, BLK))](
        S, a, initial_states if initial_states is not None else S, states_in, final, table, seq_table, l, h, PN,
        HAS_INIT=initial_states is not None, BLOCK=BLK)
    if nk:
        nmb = triton.cdiv(chunk_size, BM)
        _ssd_chunk_scan_fwd_kernel[(nk * nmb, triton.cdiv(p, BPs), h)](
            x, B, C, dtp, a, states_in, D if D is not None else A, z if z is not None else x, out,
            ypre if z is not None else out, table, l, h, p, n, h // g, g, nmb,
            HAS_D=D is not None, D_HP=D is not None and D.dim() == 2, HAS_Z=z is not None,
            BLOCK_M=BM, BLOCK_P=BPs, BLOCK_N=BN, PREC=prec)
    return out, ypre, states_in, final


def ssd_bwd(dout, d_states_in, d_final, x, dt, A, B, C, chunk_size, D, z, dt_bias, dt_softplus, dt_limit,
            initial_states, cu_seqlens, ypre, states_in):
    """Gradients (dx, ddt, dA, dB, dC, dD, dz, ddt_bias, dinitial_states); None for absent inputs.

    d_states_in / d_final: gradients w.r.t. the forward's states_in / final outputs (None when unused)."""
    x, dt, A, B, C, D, z, dt_bias, initial_states = _contig(x, dt, A, B, C, D, z, dt_bias, initial_states)
    b, l, h, p = x.shape
    g, n = B.shape[-2:]
    dev = x.device
    table, seq_table, nk, nseq, n_slots = _tables(b, l, chunk_size, cu_seqlens, dev)
    dtp, a = _cumsum_fwd(dt, A, dt_bias, dt_softplus, dt_limit, table, nk, b, l, h, chunk_size)
    prec = _prec(x.dtype)
    dout = dout.to(torch.float32)
    dz = None
    if z is not None:
        zf = z.to(torch.float32)
        sig = torch.sigmoid(zf)
        dy = dout * zf * sig
        dz = (dout * ypre * sig * (1 + zf * (1 - sig))).to(z.dtype)
    else:
        dy = dout
    dy = dy.contiguous()
    dD = None
    if D is not None:
        dDhp = (dy * x.to(torch.float32)).sum(dim=(0, 1))
        dD = (dDhp if D.dim() == 2 else dDhp.sum(-1)).to(D.dtype)
    BN = _np2(n)
    BPs = min(64, _np2(p))
    BP = _np2(p)
    BM = _blocks(chunk_size, p, n)
    PN = p * n
    BLK = min(1024, triton.next_power_of_2(PN))
    nblk = triton.cdiv(PN, BLK)
    # a. gradient reaching each chunk's entering state through the outputs, plus any direct gradient
    dH = torch.zeros(n_slots, h, p, n, device=dev, dtype=torch.float32)
    if nk:
        _ssd_chunk_state_kernel[(nk, triton.cdiv(p, BPs), h)](
            dy, C, dtp, a, dH, table, l, h, p, n, h // g, g,
            IS_BWD=True, BLOCK_S=BM, BLOCK_P=BPs, BLOCK_N=BN, PREC=prec)
    if d_states_in is not None:
        dH += d_states_in.to(torch.float32)
    # b. reverse state passing
    dS = torch.zeros_like(dH)
    dinit = torch.empty(nseq, h, p, n, device=dev, dtype=torch.float32)
    ddecay = torch.zeros(max(n_slots, 1), h, nblk, device=dev, dtype=torch.float32)
    dfin = d_final.to(torch.float32).contiguous() if d_final is not None else None
    _ssd_state_passing_bwd_kernel[(nseq, h, nblk)](
        dH, states_in, a, dfin if dfin is not None else dH, dS, dinit, ddecay, table, seq_table, l, h, PN, nblk,
        HAS_DFINAL=dfin is not None, BLOCK=BLK)
    dalast = ddecay.sum(-1).contiguous()
    # c. per-block gradients
    dx = torch.zeros(b, l, h, p, device=dev, dtype=torch.float32)
    ddt_direct = torch.zeros(b, l, h, device=dev, dtype=torch.float32)
    dBh = torch.zeros(b, l, h, n, device=dev, dtype=torch.float32)
    dCh = torch.zeros_like(dBh)
    da = torch.zeros_like(ddt_direct)
    if nk:
        # shared memory (measured with sm_90 AOT compiles): fp32 ("ieee") tiles need the smaller blocks
        BMb = min(BM, 32) if prec == "ieee" else BM
        BPS = min(BP, 32 if (BN < 256 and prec != "ieee") else 16)
        nmb = triton.cdiv(chunk_size, BMb)
        _ssd_chunk_bwd_kernel[(nk * nmb, h)](
            x, B, C, dtp, a, dy, D if D is not None else A,
            dx, ddt_direct, dBh, dCh, da, table, l, h, p, n, h // g, g, nmb,
            HAS_D=D is not None, D_HP=D is not None and D.dim() == 2,
            BLOCK_M=BMb, BLOCK_P=BP, BLOCK_N=BN, PREC=prec, num_warps=8 if BP * BN >= 128 * 128 else 4)
        _ssd_chunk_state_bwd_kernel[(nk * nmb, h)](
            x, B, C, dtp, a, dy, states_in, dS, dx, ddt_direct, dBh, dCh, da, dalast,
            table, l, h, p, n, h // g, g, nmb,
            BLOCK_M=BMb, BLOCK_PS=BPS, BLOCK_N=BN, PREC=prec,
            num_warps=8 if BN >= 128 else 4)
    # d. dt chain
    ddt = torch.zeros(b, l, h, device=dev, dtype=torch.float32)
    dA_part = torch.zeros(max(nk, 1), h, device=dev, dtype=torch.float32)
    if nk:
        BH = min(16, triton.next_power_of_2(h))
        lo, hi = dt_limit if dt_limit is not None else (0.0, 0.0)
        _ssd_chunk_cumsum_bwd_kernel[(nk, triton.cdiv(h, BH))](
            dt, A, dt_bias if dt_bias is not None else A, dtp, da, dalast, ddt_direct, ddt, dA_part, table, l, h,
            float(lo), float(hi), HAS_BIAS=dt_bias is not None, SOFTPLUS=bool(dt_softplus),
            HAS_LIMIT=dt_limit is not None, BLOCK_Q=_np2(chunk_size, 2), BLOCK_H=BH)
    dA = dA_part.sum(0).to(A.dtype)
    ddt_bias = ddt.sum(dim=(0, 1)).to(dt_bias.dtype) if dt_bias is not None else None
    dB = dBh.view(b, l, g, h // g, n).sum(3).to(B.dtype)
    dC = dCh.view(b, l, g, h // g, n).sum(3).to(C.dtype)
    dinit = dinit.to(initial_states.dtype) if initial_states is not None else None
    return dx.to(x.dtype), ddt.to(dt.dtype), dA, dB, dC, dD, dz, ddt_bias, dinit
