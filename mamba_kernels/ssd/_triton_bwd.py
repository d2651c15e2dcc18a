"""Backward Triton kernels of the chunked SSD scan (B1..B5; mamba_kernels/ssd/triton.py documents them and
launches them)."""
from __future__ import annotations

import triton
import triton.language as tl

from ._triton_jit import (_block_pair_program, _cast, _chunk, _chunk_head_program, _walk_program, _walk_state_tile,
                          _head_D, _head_expand, _head_sums, _seq, _softplus)


# --------------------------------------------------------------------------------------------- B1: states bwd
@triton.jit
def _ssd_state_bwd_kernel(dout_ptr, z_ptr, ypre_ptr, C_ptr, a_ptr, hin_ptr, dfinal_ptr, dsin_ptr,
                          dy_ptr, dz_ptr, dS_ptr, dinit_ptr, dalast_ptr, cu_ptr, first_ptr,
                          l, h, p, n, hpg, ng, ncr, npb, nnb,
                          Q, VARLEN: tl.constexpr, HAS_Z: tl.constexpr, HAS_DFINAL: tl.constexpr,
                          HAS_DSIN: tl.constexpr, SB: tl.constexpr, BS: tl.constexpr, BP: tl.constexpr,
                          BN: tl.constexpr, KIND: tl.constexpr, PREC: tl.constexpr):
    """Reverse walk over a sequence's chunks (per head, p block). g = gradient w.r.t. the state after chunk c:
    dS[c] = g;  d a_L[c] += exp(a_L) <g, h_in[c]>;  g <- exp(a_L) g + d states_in[c] + sum_t exp(a_t) dy_t^T C_t.
    Also dy = dout silu(z) and dz = dout ypre silu'(z) for the program's columns (stored; dy only with z). With n in
    nnb blocks (adjacent programs), every n block computes dy for its dot and the first one stores dy and dz."""
    hh, seq, grp, row, s0, L, first, offs_p, offs_n, mp, mn = _walk_program(
        nnb, npb, h, hpg, p, n, cu_ptr, first_ptr, l, ncr, VARLEN, BP, BN)
    nb = tl.program_id(0) % nnb
    nck = tl.cdiv(L, Q)
    mpn, st, PN, g = _walk_state_tile(dfinal_ptr, HAS_DFINAL, seq, h, hh, p, n, offs_p, offs_n, mp, mn, BP, BN)
    xyb = ((row * l + s0) * h + hh) * p
    cb_ = C_ptr + ((row * l + s0) * ng + grp) * n
    ab = (row * h + hh) * l + s0
    total = nck * SB
    for i in range(0, total):
        j = total - 1 - i
        c = j // SB
        sb = j % SB
        cst = c * Q
        clen = tl.minimum(L - cst, Q)
        a_last = tl.load(a_ptr + ab + cst + clen - 1)
        e_last = tl.exp(a_last)
        if sb == SB - 1:
            slot = ((first + c) * h + hh) * PN
            tl.store(dS_ptr + slot + st, g.to(dS_ptr.dtype.element_ty), mask=mpn)
            hin = tl.load(hin_ptr + slot + st, mask=mpn, other=0.0).to(tl.float32)
            tl.atomic_add(dalast_ptr + (first + c) * h + hh, e_last * tl.sum(tl.sum(g * hin, axis=1), axis=0),
                          sem="relaxed")
            if HAS_DSIN:
                g = g * e_last + tl.load(dsin_ptr + slot + st, mask=mpn, other=0.0).to(tl.float32)
            else:
                g = g * e_last
        offs_s = sb * BS + tl.arange(0, BS)
        ms = offs_s < clen
        tk = cst + offs_s
        c64 = cst.to(tl.int64)  # int64 chunk base, int32 offsets inside the chunk
        a_s = tl.load(a_ptr + ab + tk, mask=ms, other=0.0)
        e_s = tl.where(ms, tl.exp(a_s), 0.0)
        xy = xyb + c64 * (h * p) + offs_s[:, None] * (h * p) + offs_p[None, :]
        mxy = ms[:, None] & mp[None, :]
        dy = tl.load(dout_ptr + xy, mask=mxy, other=0.0).to(tl.float32)
        if HAS_Z:
            mst = mxy & (nb == 0)
            zz = tl.load(z_ptr + xy, mask=mxy, other=0.0).to(tl.float32)
            yp = tl.load(ypre_ptr + xy, mask=mst, other=0.0).to(tl.float32)
            sig = tl.sigmoid(zz)
            tl.store(dz_ptr + xy, (dy * yp * sig * (1.0 + zz * (1.0 - sig))).to(dz_ptr.dtype.element_ty), mask=mst)
            dy = dy * zz * sig
            tl.store(dy_ptr + xy, dy.to(dy_ptr.dtype.element_ty), mask=mst)
        Cs = tl.load(cb_ + c64 * (ng * n) + offs_s[:, None] * (ng * n) + offs_n[None, :],
                     mask=ms[:, None] & mn[None, :], other=0.0).to(tl.float32)
        g += tl.dot(_cast(tl.trans(dy * e_s[:, None]), KIND), _cast(Cs, KIND), input_precision=PREC)
    tl.store(dinit_ptr + (seq.to(tl.int64) * h + hh) * PN + st, g, mask=mpn)


# --------------------------------------------------------------------------------------------- B2: dx, ddt
@triton.jit
def _ssd_bwd_dx_kernel(x_ptr, dy_ptr, B_ptr, C_ptr, cb_ptr, dtp_ptr, a_ptr, hin_ptr, dS_ptr, D_ptr,
                       dx_ptr, ddtp_ptr, da_ptr, dalast_ptr, dD_ptr, tab_ptr,
                       l, h, p, n, hpg, ng, ncr, npb,
                       Q, VARLEN: tl.constexpr, HAS_D: tl.constexpr, D_HP: tl.constexpr,
                       BM: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr, KIND: tl.constexpr,
                       PREC: tl.constexpr, DA_OUT: tl.constexpr = True):
    """Chunk k, head hh, p block pb, all source blocks sb (dS and h_in read once); u_s = dt'_s x_s,
    e_s = exp(a_L - a_s):
      du_s = sum_{t>=s} CB_ts exp(a_t - a_s) dy_t + e_s B_s dS^T;  dx_s = dt'_s du_s + D dy_s;  d dt'_s += x_s.du_s
      state-in path:  d a_s -= dt'_s q_s,  d a_L += sum_s dt'_s q_s,  q_s = e_s x_s.(dS B_s)
      state-out path (DA_OUT; else the dC kernel adds it): d a_s += exp(a_s) dy_s.(h_in C_s)
    Off-diagonal blocks (t block > s block) factor exp(a_t - a_s) = exp(a_t - a_r) exp(a_r - a_s), a_r = a at the
    source block's last token. The intra-chunk d a terms come from _ssd_bwd_dcb_kernel; dD added atomically."""
    hh, pb, k, row, start, ln, grp, tok0, xyb, bc, ab, cbb = _chunk_head_program(
        h, npb, hpg, ng, p, n, tab_ptr, l, ncr, Q, VARLEN)
    if ln <= 0:
        return
    offs_p = pb * BP + tl.arange(0, BP)
    mp = offs_p < p
    offs_n = tl.arange(0, BN)
    mn = offs_n < n
    a_last = tl.load(a_ptr + ab + ln - 1)
    mpn = mp[:, None] & mn[None, :]
    slot = (k.to(tl.int64) * h + hh) * p * n + offs_p[:, None] * n + offs_n[None, :]
    dST = tl.trans(_cast(tl.load(dS_ptr + slot, mask=mpn, other=0.0).to(tl.float32), KIND))     # (n, p)
    if DA_OUT:
        hinT = tl.trans(_cast(tl.load(hin_ptr + slot, mask=mpn, other=0.0).to(tl.float32), KIND))   # (n, p)
    Dv = _head_D(D_ptr, hh, p, offs_p, mp, HAS_D, D_HP)
    dD = tl.zeros((BP,), dtype=tl.float32)
    dal = tl.zeros((BM,), dtype=tl.float32)
    ntb = tl.cdiv(ln, BM)
    for sb in range(0, ntb):
        s0 = sb * BM
        offs_s = s0 + tl.arange(0, BM)
        ms = offs_s < ln
        a_s = tl.load(a_ptr + ab + offs_s, mask=ms, other=0.0)
        dt_s = tl.load(dtp_ptr + ab + offs_s, mask=ms, other=0.0)
        a_r = tl.load(a_ptr + ab + tl.minimum(s0 + BM, ln) - 1)
        du = tl.zeros((BM, BP), dtype=tl.float32)
        for tb in range(sb + 1, ntb):  # off-diagonal target blocks: every t > a_r's token >= s
            offs_t = tb * BM + tl.arange(0, BM)
            mt = offs_t < ln
            a_t = tl.load(a_ptr + ab + offs_t, mask=mt, other=0.0)
            cbT = tl.load(cb_ptr + cbb + offs_t[None, :] * Q + offs_s[:, None], mask=ms[:, None] & mt[None, :],
                          other=0.0).to(tl.float32)                                        # (s, t)
            rowf = tl.where(mt, tl.exp(a_t - a_r), 0.0)
            dyt = tl.load(dy_ptr + xyb + offs_t[:, None] * (h * p) + offs_p[None, :],
                          mask=mt[:, None] & mp[None, :], other=0.0).to(tl.float32)
            du += tl.dot(_cast(cbT * rowf[None, :], KIND), _cast(dyt, KIND), input_precision=PREC)
        du = du * tl.where(ms, tl.exp(a_r - a_s), 0.0)[:, None]
        # diagonal block
        xy = xyb + offs_s[:, None] * (h * p) + offs_p[None, :]
        mxy = ms[:, None] & mp[None, :]
        dys = tl.load(dy_ptr + xy, mask=mxy, other=0.0).to(tl.float32)
        causal = (offs_s[None, :] >= offs_s[:, None]) & ms[None, :] & ms[:, None]
        # causal mask on the load: CB above the diagonal is never written (B2's blocks need not be the CB kernel's)
        cbT = tl.load(cb_ptr + cbb + offs_s[None, :] * Q + offs_s[:, None], mask=causal,
                      other=0.0).to(tl.float32)                                            # (s, t)
        dec = tl.exp(tl.where(causal, a_s[None, :] - a_s[:, None], float("-inf")))
        du += tl.dot(_cast(cbT * dec, KIND), _cast(dys, KIND), input_precision=PREC)
        msn = ms[:, None] & mn[None, :]
        dat = tl.zeros((BM,), dtype=tl.float32)
        if DA_OUT:  # state-out path (d a only): exp(a_s) dy_s.(h_in C_s)
            Cs = _cast(tl.load(C_ptr + bc + offs_s[:, None] * (ng * n) + offs_n[None, :], mask=msn,
                               other=0.0).to(tl.float32), KIND)
            yo = tl.dot(Cs, hinT, input_precision=PREC)                                     # (s, p)
            dat = tl.where(ms, tl.exp(a_s), 0.0) * tl.sum(dys * yo, axis=1)
        # state-in path: e_s B_s dS^T
        Bs = _cast(tl.load(B_ptr + bc + offs_s[:, None] * (ng * n) + offs_n[None, :], mask=msn,
                           other=0.0).to(tl.float32), KIND)
        dus = tl.dot(Bs, dST, input_precision=PREC) * tl.where(ms, tl.exp(a_last - a_s), 0.0)[:, None]
        du += dus
        xs = tl.load(x_ptr + xy, mask=mxy, other=0.0).to(tl.float32)
        q = tl.sum(xs * dus, axis=1)
        dx = du * dt_s[:, None]
        if HAS_D:
            dx += dys * Dv
            dD += tl.sum(dys * xs, axis=0)
        tl.store(dx_ptr + xy, dx.to(dx_ptr.dtype.element_ty), mask=mxy)
        tl.atomic_add(ddtp_ptr + ab + offs_s, tl.sum(xs * du, axis=1), mask=ms, sem="relaxed")
        tl.atomic_add(da_ptr + ab + offs_s, dat - dt_s * q, mask=ms, sem="relaxed")
        dal += dt_s * q
    tl.atomic_add(dalast_ptr + k * h + hh, tl.sum(dal, axis=0), sem="relaxed")
    if HAS_D:
        tl.atomic_add(dD_ptr + hh * p + offs_p, dD, mask=mp, sem="relaxed")  # (h, p), also for D (h,)


# --------------------------------------------------------------------------------------------- B2h: dx, head blocks
@triton.jit
def _ssd_bwd_dx_heads_kernel(x_ptr, dy_ptr, B_ptr, C_ptr, cb_ptr, dtp_ptr, a_ptr, hin_ptr, dS_ptr, D_ptr,
                             dx_ptr, ddtp_ptr, da_ptr, dalast_ptr, dD_ptr, tab_ptr,
                             l, h, p, n, hpg, ng, ncr, nhb, npb, Q, span_max,
                             VARLEN: tl.constexpr, HAS_D: tl.constexpr, D_HP: tl.constexpr, BM: tl.constexpr,
                             HB: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr, KIND: tl.constexpr,
                             PREC: tl.constexpr, DA_OUT: tl.constexpr = True):
    """_ssd_bwd_dx_kernel for HB heads of one group at once (columns j = (head j // BP, p) of (rows, HP = HB * BP)
    tiles, as in _ssd_scan_heads_kernel): the group's CB^T, B and C are shared by the heads' dots. Per source
    block s (a_r = a at the block's last token):
      du_s = exp(a_r - a_s) [ B_s (exp(a_L - a_r) dS)^T + sum_{t>=s} CB_ts (exp(a_t - a_r) dy_t) ]
    with the diagonal block inside the sum when its decay span max |a - a_r| <= span_max, else exactly per head.
    dx_s = dt'_s du_s + D dy_s;  d dt'_s += x_s.du_s;  d a_s += exp(a_s) dy_s.(h_in C_s) - dt'_s q_s (the first
    term only when DA_OUT, else the dC kernel adds it); d a_L += sum_s dt'_s q_s with q_s = x_s.(state-in part of
    du_s); dD added atomically."""
    pid = tl.program_id(0)
    pb = pid % npb
    rest = pid // npb
    hb = rest % nhb
    k = rest // nhb
    row, start, ln = _chunk(k, tab_ptr, l, ncr, Q, VARLEN)
    if ln <= 0:
        return
    HP: tl.constexpr = HB * BP
    hh0 = hb * HB
    grp = hh0 // hpg
    offs_h = tl.arange(0, HB)
    offs_n = tl.arange(0, BN)
    mn = offs_n < n
    offs_j = tl.arange(0, HP)
    head_hp = offs_j // BP
    pj = pb * BP + offs_j % BP
    mj = pj < p
    colj = head_hp * p + pj                                            # (HP,) offset of (head, p) in a token row
    tok0 = row * l + start
    xyb = (tok0 * h + hh0) * p
    xb = x_ptr + xyb
    dyb = dy_ptr + xyb
    bcb = (tok0 * ng + grp) * n
    Cb = C_ptr + bcb
    Bb = B_ptr + bcb
    ab0 = (row * h + hh0) * l + start
    ap = a_ptr + ab0
    dp = dtp_ptr + ab0
    cbp = cb_ptr + (k.to(tl.int64) * ng + grp) * Q * Q
    slot = (k.to(tl.int64) * h + hh0) * p * n + colj[:, None] * n + offs_n[None, :]
    mslot = mj[:, None] & mn[None, :]
    a_last_hp = tl.load(ap + head_hp * l + ln - 1)                     # (HP,)
    if HAS_D:
        if D_HP:
            Dv = tl.load(D_ptr + hh0 * p + colj, mask=mj, other=0.0).to(tl.float32)[None, :]
        else:
            Dv = tl.load(D_ptr + hh0 + head_hp).to(tl.float32)[None, :]
    dD = tl.zeros((HP,), dtype=tl.float32)
    dal = tl.zeros((HB,), dtype=tl.float32)
    ntb = tl.cdiv(ln, BM)
    for sb in range(0, ntb):
        s0 = sb * BM
        offs_s = s0 + tl.arange(0, BM)
        ms = offs_s < ln
        last = tl.minimum(s0 + BM, ln) - 1
        a_r = tl.load(ap + offs_h * l + last)                                             # (HB,)
        a_s = tl.load(ap + offs_h[None, :] * l + offs_s[:, None], mask=ms[:, None], other=0.0)   # (BM, HB)
        dt_s = tl.load(dp + offs_h[None, :] * l + offs_s[:, None], mask=ms[:, None], other=0.0)
        dlt = tl.where(ms[:, None], a_s - a_r[None, :], 0.0)
        span = tl.max(tl.max(tl.abs(dlt), axis=1), axis=0)
        fast = (span <= span_max).to(tl.int32)
        xy = offs_s[:, None] * (h * p) + colj[None, :]
        mxy = ms[:, None] & mj[None, :]
        msn = ms[:, None] & mn[None, :]
        dat = tl.zeros((BM, HB), dtype=tl.float32)
        if DA_OUT:  # state-out path (d a only): exp(a_s) dy_s.(h_in C_s)
            Cs = _cast(tl.load(Cb + offs_s[:, None] * (ng * n) + offs_n[None, :], mask=msn,
                               other=0.0).to(tl.float32), KIND)
            hinT = tl.trans(_cast(tl.load(hin_ptr + slot, mask=mslot, other=0.0).to(tl.float32), KIND))
            yo = tl.dot(Cs, hinT, input_precision=PREC)                                     # (BM, HP)
            dys = tl.load(dyb + xy, mask=mxy, other=0.0).to(tl.float32)
            dat = tl.where(ms[:, None], tl.exp(a_s), 0.0) * _head_sums(dys * yo, head_hp, HB)   # (BM, HB)
        # state-in path, before the row factor exp(a_r - a_s): B_s (exp(a_L - a_r) dS)^T
        rowf = tl.where(ms[:, None], tl.exp(-dlt), 0.0)
        a_r_hp = tl.load(ap + head_hp * l + last)
        acc = tl.zeros((BM, HP), dtype=tl.float32)
        for tb in range(sb + 1 - fast, ntb):  # target blocks after the source block (and the diagonal when fast)
            offs_t = tb * BM + tl.arange(0, BM)
            mt = offs_t < ln
            cbT = tl.load(cbp + offs_t[None, :] * Q + offs_s[:, None], mask=ms[:, None] & mt[None, :],
                          other=0.0).to(tl.float32)                                        # (s, t)
            cbT = tl.where(offs_t[None, :] >= offs_s[:, None], cbT, 0.0)
            a_t = tl.load(ap + offs_h[None, :] * l + offs_t[:, None], mask=mt[:, None], other=0.0)   # (BM, HB)
            colf = tl.where(mt[:, None], tl.exp(a_t - a_r[None, :]), 0.0)
            dyt = tl.load(dyb + offs_t[:, None] * (h * p) + colj[None, :], mask=mt[:, None] & mj[None, :],
                          other=0.0).to(tl.float32)
            dyt = dyt * _head_expand(colf, head_hp, HB)
            acc += tl.dot(_cast(cbT, KIND), _cast(dyt, KIND), input_precision=PREC)
        # state-in part after the loop, added (not the loop's initial accumulator: a dot feeding a dot gets all warps
        # along M in Triton, computed twice at BM = 64 / 8 warps)
        Bs = _cast(tl.load(Bb + offs_s[:, None] * (ng * n) + offs_n[None, :], mask=msn, other=0.0).to(tl.float32),
                   KIND)
        dST = tl.trans(_cast(tl.load(dS_ptr + slot, mask=mslot, other=0.0).to(tl.float32)
                             * tl.exp(a_last_hp - a_r_hp)[:, None], KIND))                  # (BN, HP)
        dus = tl.dot(Bs, dST, input_precision=PREC)                                         # (BM, HP)
        xs = tl.load(xb + xy, mask=mxy, other=0.0).to(tl.float32)
        q = _head_sums(xs * dus, head_hp, HB) * rowf                                        # (BM, HB)
        du = (acc + dus) * _head_expand(rowf, head_hp, HB)
        if fast == 0:  # steep decay inside the diagonal block: exact exp(a_t - a_s), one head at a time (dy masked
            # to the head's columns, so the dot adds to those only)
            causal = (offs_s[None, :] >= offs_s[:, None]) & ms[None, :] & ms[:, None]
            cbd = tl.load(cbp + offs_s[None, :] * Q + offs_s[:, None], mask=causal,
                          other=0.0).to(tl.float32)                                        # (s, t)
            dys = tl.load(dyb + xy, mask=mxy, other=0.0).to(tl.float32)
            for j in tl.static_range(HB):
                a_j = tl.load(ap + j * l + offs_s, mask=ms, other=0.0)
                dec = tl.exp(tl.where(causal, a_j[None, :] - a_j[:, None], float("-inf")))
                r = tl.dot(_cast(cbd * dec, KIND), _cast(tl.where(head_hp[None, :] == j, dys, 0.0), KIND),
                           input_precision=PREC)
                du += tl.where(head_hp[None, :] == j, r, 0.0)  # (the where keeps Triton from making du its acc)
        dx = du * _head_expand(dt_s, head_hp, HB)
        if HAS_D:
            dys = tl.load(dyb + xy, mask=mxy, other=0.0).to(tl.float32)
            dx += dys * Dv
            dD += tl.sum(dys * xs, axis=0)
        tl.store(dx_ptr + xyb + xy, dx.to(dx_ptr.dtype.element_ty), mask=mxy)
        hs = ab0 + offs_h[None, :] * l + offs_s[:, None]                                   # (BM, HB)
        tl.atomic_add(ddtp_ptr + hs, _head_sums(xs * du, head_hp, HB), mask=ms[:, None], sem="relaxed")
        tl.atomic_add(da_ptr + hs, dat - dt_s * q, mask=ms[:, None], sem="relaxed")
        dal += tl.sum(dt_s * q, axis=0)
    tl.atomic_add(dalast_ptr + k * h + hh0 + offs_h, dal, sem="relaxed")
    if HAS_D:
        tl.atomic_add(dD_ptr + hh0 * p + colj, dD, mask=mj, sem="relaxed")  # (h, p), also for D (h,)


# --------------------------------------------------------------------------------------------- B3: dCB
@triton.jit
def _ssd_bwd_dcb_kernel(x_ptr, dy_ptr, cb_ptr, dtp_ptr, a_ptr, dcb_ptr, da_ptr, tab_ptr,
                        l, h, p, hpg, ng, ncr, nmb,
                        Q, VARLEN: tl.constexpr, NPK: tl.constexpr, BM: tl.constexpr,
                        BPK: tl.constexpr, KIND: tl.constexpr, PREC: tl.constexpr, HSPLIT: tl.constexpr = 1):
    """Block (tb, sb), tb >= sb, of chunk k, group gg: G_h = (dy_t u_s^T) o exp(a_t - a_s) [s <= t] per head of the
    group; dCB = sum_h G_h (stored, feeds dB / dC); d a_t += rowsum(G_h o CB), d a_s -= colsum(G_h o CB).
    HSPLIT > 1: the group's heads split over HSPLIT programs (heads hs, hs + HSPLIT, ...; adjacent programs), their
    dCB partial sums added atomically into a zeroed fp32 dcb: more programs in flight where g is small."""
    pid = tl.program_id(0)
    hs = pid % HSPLIT
    gg, k, tb, sb = _block_pair_program(pid // HSPLIT, ng, nmb)
    if sb > tb:
        return
    row, start, ln = _chunk(k, tab_ptr, l, ncr, Q, VARLEN)
    if tb * BM >= ln:
        return
    offs_t = tb * BM + tl.arange(0, BM)
    offs_s = sb * BM + tl.arange(0, BM)
    mt = offs_t < ln
    ms = offs_s < ln
    causal = (offs_t[:, None] >= offs_s[None, :]) & mt[:, None] & ms[None, :]
    cbb = (k.to(tl.int64) * ng + gg) * Q * Q
    cb = tl.load(cb_ptr + cbb + offs_t[:, None] * Q + offs_s[None, :], mask=causal, other=0.0).to(tl.float32)
    tok0 = row * l + start
    acc = tl.zeros((BM, BM), dtype=tl.float32)
    for j in range(hs, hpg, HSPLIT):
        hh = gg * hpg + j
        ab = (row * h + hh) * l + start
        a_t = tl.load(a_ptr + ab + offs_t, mask=mt, other=0.0)
        a_s = tl.load(a_ptr + ab + offs_s, mask=ms, other=0.0)
        dt_s = tl.load(dtp_ptr + ab + offs_s, mask=ms, other=0.0)
        xyb = (tok0 * h + hh) * p
        if NPK == 1:  # one dot per head: the head loop is the pipelined loop
            offs_p = tl.arange(0, BPK)
            mp = offs_p < p
            dyt = tl.load(dy_ptr + xyb + offs_t[:, None] * (h * p) + offs_p[None, :],
                          mask=mt[:, None] & mp[None, :], other=0.0).to(tl.float32)
            xs = tl.load(x_ptr + xyb + offs_s[:, None] * (h * p) + offs_p[None, :],
                         mask=ms[:, None] & mp[None, :], other=0.0).to(tl.float32)
            dM = tl.dot(_cast(dyt, KIND), tl.trans(_cast(xs, KIND)), input_precision=PREC)
        else:
            dM = tl.zeros((BM, BM), dtype=tl.float32)
            for p0 in range(0, p, BPK):
                offs_p = p0 + tl.arange(0, BPK)
                mp = offs_p < p
                dyt = tl.load(dy_ptr + xyb + offs_t[:, None] * (h * p) + offs_p[None, :],
                              mask=mt[:, None] & mp[None, :], other=0.0).to(tl.float32)
                xs = tl.load(x_ptr + xyb + offs_s[:, None] * (h * p) + offs_p[None, :],
                             mask=ms[:, None] & mp[None, :], other=0.0).to(tl.float32)
                dM += tl.dot(_cast(dyt, KIND), tl.trans(_cast(xs, KIND)), input_precision=PREC)
        if tb > sb:  # off-diagonal: exp(a_t - a_s) = exp(a_t - a_r) exp(a_r - a_s), a_r = a at the t block's start
            a_r = tl.load(a_ptr + ab + tb * BM)
            dec = (tl.where(mt, tl.exp(a_t - a_r), 0.0)[:, None] *
                   tl.where(ms, tl.exp(a_r - a_s) * dt_s, 0.0)[None, :])
        else:
            dec = tl.exp(tl.where(causal, a_t[:, None] - a_s[None, :], float("-inf"))) * dt_s[None, :]
        Gd = dM * dec
        acc += Gd
        G = Gd * cb
        tl.atomic_add(da_ptr + ab + offs_t, tl.sum(G, axis=1), mask=mt, sem="relaxed")
        tl.atomic_add(da_ptr + ab + offs_s, -tl.sum(G, axis=0), mask=ms, sem="relaxed")
    if HSPLIT > 1:
        tl.atomic_add(dcb_ptr + cbb + offs_t[:, None] * Q + offs_s[None, :], acc, mask=causal, sem="relaxed")
    else:
        tl.store(dcb_ptr + cbb + offs_t[:, None] * Q + offs_s[None, :], acc.to(dcb_ptr.dtype.element_ty),
                 mask=(offs_t < Q)[:, None] & (offs_s < Q)[None, :])


# --------------------------------------------------------------------------------------------- B4: dB, dC
@triton.jit
def _ssd_bwd_dbc_kernel(u_ptr, bc_ptr, dcb_ptr, dtp_ptr, a_ptr, st_ptr, out_ptr, cs_ptr, da_ptr, tab_ptr,
                        l, h, p, n, hpg, ng, ncr, nmb,
                        Q, VARLEN: tl.constexpr, IS_DC: tl.constexpr, NPK: tl.constexpr,
                        BM: tl.constexpr, BPK: tl.constexpr, BN: tl.constexpr, KIND: tl.constexpr,
                        PREC: tl.constexpr, DC_DA: tl.constexpr = False):
    """Rows jb of chunk k, group gg; launched twice:
      dB (IS_DC False; u = x, bc = C, st = dS):     dB_j = sum_{t>=j} dCB_tj C_t + sum_heads exp(a_L - a_j) dt'_j x_j dS
      dC (IS_DC True;  u = dy, bc = B, st = h_in):  dC_j = sum_{s<=j} dCB_js B_s + sum_heads exp(a_j) dy_j h_in
    DC_DA (dC launch, when the dx kernel runs without DA_OUT): also the state-out path's d a_j += exp(a_j)
    C_j.(dy_j h_in) per head (cs = C), from the dot dy_j h_in formed here anyway, so that the dx kernel needs no
    (rows, n) x (n, p) dot for it. One (BM, n) fp32 accumulator per program, so BM can be large and dS / h_in are
    read by few row blocks. dCB loads are masked to the causal triangle (any block grid of _ssd_bwd_dcb_kernel
    works)."""
    pid = tl.program_id(0)
    gg = pid % ng
    rest = pid // ng
    jb = rest % nmb
    k = rest // nmb
    row, start, ln = _chunk(k, tab_ptr, l, ncr, Q, VARLEN)
    if jb * BM >= ln:
        return
    offs_j = jb * BM + tl.arange(0, BM)
    mj = offs_j < ln
    offs_n = tl.arange(0, BN)
    mn = offs_n < n
    tok0 = row * l + start
    bcb = (tok0 * ng + gg) * n
    cbb = (k.to(tl.int64) * ng + gg) * Q * Q
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    if DC_DA:
        Cj = tl.load(cs_ptr + bcb + offs_j[:, None] * (ng * n) + offs_n[None, :], mask=mj[:, None] & mn[None, :],
                     other=0.0).to(tl.float32)
    if IS_DC:
        for sb in range(0, jb + 1):
            offs_s = sb * BM + tl.arange(0, BM)
            ms = offs_s < ln
            dcb = tl.load(dcb_ptr + cbb + offs_j[:, None] * Q + offs_s[None, :],
                          mask=mj[:, None] & ms[None, :] & (offs_j[:, None] >= offs_s[None, :]),
                          other=0.0).to(tl.float32)                                        # (j, s)
            Bs = tl.load(bc_ptr + bcb + offs_s[:, None] * (ng * n) + offs_n[None, :], mask=ms[:, None] & mn[None, :],
                         other=0.0).to(tl.float32)
            acc += tl.dot(_cast(dcb, KIND), _cast(Bs, KIND), input_precision=PREC)
    else:
        for tb in range(jb, tl.cdiv(ln, BM)):
            offs_t = tb * BM + tl.arange(0, BM)
            mt = offs_t < ln
            dcbT = tl.load(dcb_ptr + cbb + offs_t[None, :] * Q + offs_j[:, None],
                           mask=mj[:, None] & mt[None, :] & (offs_t[None, :] >= offs_j[:, None]),
                           other=0.0).to(tl.float32)                                       # (j, t)
            Ct = tl.load(bc_ptr + bcb + offs_t[:, None] * (ng * n) + offs_n[None, :], mask=mt[:, None] & mn[None, :],
                         other=0.0).to(tl.float32)
            acc += tl.dot(_cast(dcbT, KIND), _cast(Ct, KIND), input_precision=PREC)
    for i in range(0, hpg * NPK):  # (head of the group, p block) pairs: one pipelined loop
        hh = gg * hpg + i // NPK
        p0 = (i % NPK) * BPK
        ab = (row * h + hh) * l + start
        a_j = tl.load(a_ptr + ab + offs_j, mask=mj, other=0.0)
        if IS_DC:
            wj = tl.where(mj, tl.exp(a_j), 0.0)
        else:
            dt_j = tl.load(dtp_ptr + ab + offs_j, mask=mj, other=0.0)
            a_last = tl.load(a_ptr + ab + ln - 1)
            wj = tl.where(mj, tl.exp(a_last - a_j) * dt_j, 0.0)
        offs_p = p0 + tl.arange(0, BPK)
        mp = offs_p < p
        uj = tl.load(u_ptr + (tok0 * h + hh) * p + offs_j[:, None] * (h * p) + offs_p[None, :],
                     mask=mj[:, None] & mp[None, :], other=0.0).to(tl.float32)
        st = tl.load(st_ptr + (k.to(tl.int64) * h + hh) * p * n + offs_p[:, None] * n + offs_n[None, :],
                     mask=mp[:, None] & mn[None, :], other=0.0).to(tl.float32)
        if DC_DA:
            t = tl.dot(_cast(uj, KIND), _cast(st, KIND), input_precision=PREC)              # dy_j h_in: (BM, n)
            acc += t * wj[:, None]
            tl.atomic_add(da_ptr + ab + offs_j, wj * tl.sum(t * Cj, axis=1), mask=mj, sem="relaxed")
        else:
            acc += tl.dot(_cast(uj * wj[:, None], KIND), _cast(st, KIND), input_precision=PREC)
    tl.store(out_ptr + bcb + offs_j[:, None] * (ng * n) + offs_n[None, :], acc.to(out_ptr.dtype.element_ty),
             mask=mj[:, None] & mn[None, :])


# --------------------------------------------------------------------------------------------- B5: dt chain
@triton.jit
def _ssd_cumsum_bwd_kernel(dt_ptr, A_ptr, bias_ptr, dtp_ptr, da_ptr, dalast_ptr, ddtp_ptr, ddt_ptr, dA_ptr,
                           dbias_ptr, tab_ptr, l, h, ncr, dt_lo, dt_hi,
                           Q, VARLEN: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                           HAS_LIMIT: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_H: tl.constexpr):
    """d a (per token, plus the chunk's d a_L on its last token) -> d(dt' A)_j = sum_{t>=j} d a_t; d dt' += A d(dt' A),
    dA += sum dt' d(dt' A); then back through clamp and softplus to the raw dt. dA and d dt_bias added atomically."""
    k = tl.program_id(0)
    hb = tl.program_id(1)
    row, start, ln = _chunk(k, tab_ptr, l, ncr, Q, VARLEN)
    offs_q = tl.arange(0, BLOCK_Q)
    offs_h = hb * BLOCK_H + tl.arange(0, BLOCK_H)
    mh = offs_h < h
    mask = (offs_q < ln)[:, None] & mh[None, :]
    hl = row * h * l + start + offs_h[None, :] * l + offs_q[:, None]
    da = tl.load(da_ptr + hl, mask=mask, other=0.0)
    dalast = tl.load(dalast_ptr + k * h + offs_h, mask=mh, other=0.0)
    da += tl.where((offs_q == ln - 1)[:, None], dalast[None, :], 0.0)
    rc = tl.sum(da, axis=0)[None, :] - tl.cumsum(da, axis=0) + da
    rc = tl.where(mask, rc, 0.0)
    A = tl.load(A_ptr + offs_h, mask=mh, other=0.0).to(tl.float32)
    dtp = tl.load(dtp_ptr + hl, mask=mask, other=0.0)
    ddt = tl.load(ddtp_ptr + hl, mask=mask, other=0.0) + A[None, :] * rc
    tl.atomic_add(dA_ptr + offs_h, tl.sum(dtp * rc, axis=0), mask=mh, sem="relaxed")
    lh = (row * l + start + offs_q[:, None]) * h + offs_h[None, :]
    v = tl.load(dt_ptr + lh, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        v += tl.load(bias_ptr + offs_h, mask=mh, other=0.0).to(tl.float32)[None, :]
    if HAS_LIMIT:
        sp = v
        if SOFTPLUS:
            sp = _softplus(v)
        ddt = tl.where((sp >= dt_lo) & (sp <= dt_hi), ddt, 0.0)
    if SOFTPLUS:
        ddt = ddt * tl.where(v <= 20.0, tl.sigmoid(v), 1.0)
    ddt = tl.where(mask, ddt, 0.0)
    tl.store(ddt_ptr + lh, ddt.to(ddt_ptr.dtype.element_ty), mask=mask)
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + offs_h, tl.sum(ddt, axis=0), mask=mh, sem="relaxed")
