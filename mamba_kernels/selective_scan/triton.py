"""Triton twin of the Mamba-1 selective scan, forward and backward (fp32 math; runs under TRITON_INTERPRET=1).

Forward: one program owns BLOCK_D channels of one batch row and keeps their (BLOCK_D, BLOCK_N) states in
registers, walking time sequentially: h = exp2(delta * A*log2e) * h + (delta*u) B_t, y = sum_n C_t h.
Varlen: the program walks the packed sequences one after the other, each from its own initial state.
With SAVE it also stores the state entering every CK-step chunk of every sequence (fp32 (b, d, n_chunks, n),
the same layout as the CUDA forward's, see interface.py).

Backward (same design as the CUDA one, csrc/selective_scan/selective_scan_bwd_kernel.cuh): a program owns
BLOCK_D channels of one (batch row, B/C group) and walks the chunks of each sequence in reverse: it replays
the chunk from its saved state, writing the state entering each step to a program-private scratch (global,
cache-resident), then sweeps the chunk backwards with the adjoint g = dL/dh:
    gs = g + C_t dy_t,  du = D dy + dt sum_n gs B,  ddelta = sum_n gs (A a hprev + B u) * softplus',
    dA += dt gs a hprev,  dB_t += sum_c gs dt u,  dC_t += sum_c dy h_t,  g = gs a   (a = exp(dt A)).
Variable dB/dC are summed over the program's channels and added to fp32 (b, g, n, l) buffers with atomics.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _channel_params(B_ptr, C_ptr, D_ptr, bias_ptr, offs_d, offs_n, md, m2, dstate, VAR_B: tl.constexpr,
                    VAR_C: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_D: tl.constexpr,
                    BLOCK_N: tl.constexpr):
    """Per-channel parameters of a block of channels: constant B, C (d, n) (zeros when variable), D, delta_bias
    (zeros when absent)."""
    if VAR_B:
        Bc = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
    else:
        Bc = tl.load(B_ptr + offs_d[:, None] * dstate + offs_n[None, :], mask=m2, other=0.0)
    if VAR_C:
        Cc = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
    else:
        Cc = tl.load(C_ptr + offs_d[:, None] * dstate + offs_n[None, :], mask=m2, other=0.0)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=md, other=0.0)
    else:
        Dv = tl.zeros((BLOCK_D,), tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=md, other=0.0)
    else:
        bias = tl.zeros((BLOCK_D,), tl.float32)
    return Bc, Cc, Dv, bias


@triton.jit
def _selective_scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, h0_ptr, cu_ptr, out_ptr, last_ptr,
    states_ptr, dim, seqlen, dstate, dpg, nseq, n_ck,
    su_b, su_d, sd_b, sd_d, sz_b, sz_d, so_b, so_d,
    sB_b, sB_g, sB_n, sC_b, sC_g, sC_n,
    VAR_B: tl.constexpr, VAR_C: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr, VARLEN: tl.constexpr, SOFTPLUS: tl.constexpr,
    SAVE: tl.constexpr, CK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_d = tl.program_id(0)
    b = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    md = offs_d < dim
    m2 = md[:, None] & (offs_n < dstate)[None, :]
    A2 = tl.load(A_ptr + offs_d[:, None] * dstate + offs_n[None, :], mask=m2, other=0.0) * 1.4426950408889634
    grp = offs_d // dpg
    Bc, Cc, Dv, bias = _channel_params(B_ptr, C_ptr, D_ptr, bias_ptr, offs_d, offs_n, md, m2, dstate, VAR_B, VAR_C,
                                       HAS_D, HAS_BIAS, BLOCK_D, BLOCK_N)
    u_row = u_ptr + b * su_b + offs_d * su_d
    d_row = delta_ptr + b * sd_b + offs_d * sd_d
    z_row = z_ptr + b * sz_b + offs_d * sz_d
    o_row = out_ptr + b * so_b + offs_d * so_d
    B_row = B_ptr + b * sB_b + grp[:, None] * sB_g + offs_n[None, :] * sB_n
    C_row = C_ptr + b * sC_b + grp[:, None] * sC_g + offs_n[None, :] * sC_n
    ck_base = 0  # saved chunks of the sequences before this one (varlen)
    for q in range(0, nseq):
        if VARLEN:
            s0 = tl.load(cu_ptr + q)
            s1 = tl.load(cu_ptr + q + 1)
            slot = q
        else:
            s0 = 0
            s1 = seqlen
            slot = b
        st_off = (slot * dim + offs_d[:, None]) * dstate + offs_n[None, :]
        if HAS_H0:
            h = tl.load(h0_ptr + st_off, mask=m2, other=0.0)
        else:
            h = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
        for t in range(s0, s1):
            if SAVE:
                if (t - s0) % CK == 0:  # the state entering a chunk, for the backward
                    ck = ck_base + (t - s0) // CK
                    tl.store(states_ptr + ((b * dim + offs_d[:, None]).to(tl.int64) * n_ck + ck) * dstate
                             + offs_n[None, :], h, mask=m2)
            uu = tl.load(u_row + t, mask=md, other=0.0).to(tl.float32)
            dt = tl.load(d_row + t, mask=md, other=0.0).to(tl.float32) + bias
            if SOFTPLUS:
                dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(dt)), dt)
            if VAR_B:
                Bt = tl.load(B_row + t, mask=m2, other=0.0).to(tl.float32)
            else:
                Bt = Bc
            if VAR_C:
                Ct = tl.load(C_row + t, mask=m2, other=0.0).to(tl.float32)
            else:
                Ct = Cc
            h = tl.exp2(dt[:, None] * A2) * h + (dt * uu)[:, None] * Bt
            y = tl.sum(h * Ct, axis=1)
            if HAS_D:
                y += Dv * uu
            if HAS_Z:
                zz = tl.load(z_row + t, mask=md, other=0.0).to(tl.float32)
                y = y * zz * tl.sigmoid(zz)
            tl.store(o_row + t, y.to(out_ptr.dtype.element_ty), mask=md)
        tl.store(last_ptr + st_off, h, mask=m2)
        ck_base += ((s1 - s0 + CK - 1) // CK).to(tl.int32)


def selective_scan_fwd_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, initial_state=None,
                              cu_seqlens=None, delta_softplus=False, poison=False, states=None, ckpt_chunk=1):
    """Forward scan; same contract as the custom op `mamba_kernels::selective_scan_fwd` (inputs checked
    by the public function). Returns (out like u, last_state float32 (slots, d, n)). With `states` (float32
    (b, d, n_chunks, n), contiguous) also saves the state entering every `ckpt_chunk` steps of each sequence."""
    bsz, d, l = u.shape
    n = A.shape[1]
    f32 = torch.float32

    def tcontig(t):  # time (last) axis contiguous
        return t if t.stride(-1) == 1 else t.contiguous()

    def w(t):
        return None if t is None else t.to(f32).contiguous()

    u, delta = tcontig(u), tcontig(delta)
    z = None if z is None else tcontig(z)
    var_b, var_c = B.dim() == 4, C.dim() == 4
    Bk = tcontig(B) if var_b else w(B)
    Ck = tcontig(C) if var_c else w(C)
    g = B.shape[1] if var_b else (C.shape[1] if var_c else 1)
    Ak, Dk, biask, h0 = w(A), w(D), w(delta_bias), w(initial_state)
    nslots = bsz if cu_seqlens is None else cu_seqlens.shape[0] - 1
    out = torch.empty_like(u)
    last = torch.empty(nslots, d, n, dtype=f32, device=u.device)
    if poison:  # tests: unwritten elements stay NaN
        out.fill_(float("nan"))
        last.fill_(float("nan"))
    cu = None if cu_seqlens is None else cu_seqlens.to(torch.int64).contiguous()
    BLOCK_N = triton.next_power_of_2(n)
    BLOCK_D = max(1, min(32, 1024 // BLOCK_N))
    dummy = Ak
    sBb, sBg, sBn = Bk.stride()[:3] if var_b else (0, 0, 0)
    sCb, sCg, sCn = Ck.stride()[:3] if var_c else (0, 0, 0)
    zs = (z.stride(0), z.stride(1)) if z is not None else (0, 0)
    grid = (triton.cdiv(d, BLOCK_D), bsz)
    save = states is not None and states.numel() > 0
    _selective_scan_fwd_kernel[grid](
        u, delta, Ak, Bk, Ck, Dk if Dk is not None else dummy, z if z is not None else u,
        biask if biask is not None else dummy, h0 if h0 is not None else dummy, cu if cu is not None else dummy,
        out, last, states if save else dummy,
        d, l, n, d // g, nslots if cu is not None else 1, states.shape[2] if save else 0,
        u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), zs[0], zs[1], out.stride(0), out.stride(1),
        sBb, sBg, sBn, sCb, sCg, sCn,
        VAR_B=var_b, VAR_C=var_c, HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        HAS_H0=initial_state is not None, VARLEN=cu is not None, SOFTPLUS=delta_softplus,
        SAVE=save, CK=ckpt_chunk, BLOCK_D=BLOCK_D, BLOCK_N=BLOCK_N, num_warps=4,
    )
    return out, last


@triton.jit
def _selective_scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, cu_ptr, dout_ptr, dlast_ptr, states_ptr,
    scratch_ptr, du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr, dinit_ptr,
    dim, seqlen, dstate, dpg, nseq, n_ck,
    su_b, su_d, sd_b, sd_d, sz_b, sz_d, sg_b, sg_d,
    sB_b, sB_g, sB_n, sC_b, sC_g, sC_n,
    VAR_B: tl.constexpr, VAR_C: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_DLAST: tl.constexpr, HAS_DINIT: tl.constexpr, VARLEN: tl.constexpr,
    SOFTPLUS: tl.constexpr, CK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_d = tl.program_id(0)
    grp = tl.program_id(1)
    b = tl.program_id(2)
    n_groups = tl.num_programs(1)
    j = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)            # channel within the group
    offs_d = grp * dpg + j
    offs_n = tl.arange(0, BLOCK_N)
    md = j < dpg
    mn = offs_n < dstate
    m2 = md[:, None] & mn[None, :]
    A = tl.load(A_ptr + offs_d[:, None] * dstate + offs_n[None, :], mask=m2, other=0.0)
    A2 = A * 1.4426950408889634
    Bc, Cc, Dv, bias = _channel_params(B_ptr, C_ptr, D_ptr, bias_ptr, offs_d, offs_n, md, m2, dstate, VAR_B, VAR_C,
                                       HAS_D, HAS_BIAS, BLOCK_D, BLOCK_N)
    u_row = u_ptr + b * su_b + offs_d * su_d
    d_row = delta_ptr + b * sd_b + offs_d * sd_d
    z_row = z_ptr + b * sz_b + offs_d * sz_d
    g_row = dout_ptr + b * sg_b + offs_d * sg_d
    o_row = (b * dim + offs_d).to(tl.int64) * seqlen      # du, ddelta, dz: (b, d, l) contiguous
    B_row = B_ptr + b * sB_b + grp * sB_g + offs_n * sB_n
    C_row = C_ptr + b * sC_b + grp * sC_g + offs_n * sC_n
    dBC_row = ((b * n_groups + grp) * dstate + offs_n).to(tl.int64) * seqlen  # variable dB/dC (b, g, n, l)
    pid = (b * n_groups + grp) * tl.num_programs(0) + pid_d
    scratch = scratch_ptr + pid.to(tl.int64) * (CK * BLOCK_D * BLOCK_N) \
        + tl.arange(0, BLOCK_D)[:, None] * BLOCK_N + offs_n[None, :]
    dA_acc = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
    dB_acc = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
    dC_acc = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
    dD_acc = tl.zeros((BLOCK_D,), tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), tl.float32)
    ck_base = 0
    for q in range(0, nseq):
        if VARLEN:
            s0 = tl.load(cu_ptr + q)
            s1 = tl.load(cu_ptr + q + 1)
            slot = q
        else:
            s0 = 0
            s1 = seqlen
            slot = b
        st_off = (slot * dim + offs_d[:, None]) * dstate + offs_n[None, :]
        if HAS_DLAST:
            g = tl.load(dlast_ptr + st_off, mask=m2, other=0.0)
        else:
            g = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
        nck = (s1 - s0 + CK - 1) // CK
        for kk in range(0, nck):
            k = nck - 1 - kk
            t0 = s0 + k * CK
            nt = tl.minimum(s1 - t0, CK)
            h = tl.load(states_ptr + ((b * dim + offs_d[:, None]).to(tl.int64) * n_ck + ck_base + k) * dstate
                        + offs_n[None, :], mask=m2, other=0.0)
            tl.debug_barrier()  # the previous chunk's sweep has read the scratch this replay overwrites
            for tt in range(0, nt):  # replay: scratch[tt] = state entering step t0 + tt
                t = t0 + tt
                tl.store(scratch + tt * (BLOCK_D * BLOCK_N), h)
                dt = tl.load(d_row + t, mask=md, other=0.0).to(tl.float32) + bias
                if SOFTPLUS:
                    dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(dt)), dt)
                uu = tl.load(u_row + t, mask=md, other=0.0).to(tl.float32)
                if VAR_B:  # one group per program: a (1, n) row for all its channels
                    Bt = tl.load(B_row + t, mask=mn, other=0.0).to(tl.float32)[None, :]
                else:
                    Bt = Bc
                h = tl.exp2(dt[:, None] * A2) * h + (dt * uu)[:, None] * Bt
            tl.debug_barrier()  # scratch written above is read below (possibly by other threads)
            for kt in range(0, nt):  # reverse sweep
                tt = nt - 1 - kt
                t = t0 + tt
                hp = tl.load(scratch + tt * (BLOCK_D * BLOCK_N))
                raw = tl.load(d_row + t, mask=md, other=0.0).to(tl.float32) + bias
                if SOFTPLUS:
                    dt = tl.where(raw <= 20.0, tl.log(1.0 + tl.exp(raw)), raw)
                else:
                    dt = raw
                uu = tl.load(u_row + t, mask=md, other=0.0).to(tl.float32)
                dy = tl.load(g_row + t, mask=md, other=0.0).to(tl.float32)
                if VAR_B:
                    Bt = tl.load(B_row + t, mask=mn, other=0.0).to(tl.float32)[None, :]
                else:
                    Bt = Bc
                if VAR_C:
                    Ct = tl.load(C_row + t, mask=mn, other=0.0).to(tl.float32)[None, :]
                else:
                    Ct = Cc
                a = tl.exp2(dt[:, None] * A2)
                dtu = dt * uu
                ht = a * hp + dtu[:, None] * Bt
                if HAS_Z:
                    zz = tl.load(z_row + t, mask=md, other=0.0).to(tl.float32)
                    sz = tl.sigmoid(zz)
                    y = tl.sum(Ct * ht, axis=1) + Dv * uu
                    tl.store(dz_ptr + o_row + t, (dy * y * sz * (1.0 + zz * (1.0 - sz))).to(dz_ptr.dtype.element_ty),
                             mask=md)
                    dy = dy * zz * sz
                gs = g + Ct * dy[:, None]
                du = Dv * dy + dt * tl.sum(gs * Bt, axis=1)
                tl.store(du_ptr + o_row + t, du.to(du_ptr.dtype.element_ty), mask=md)
                w = gs * a * hp
                ddt = tl.sum(A * w + gs * Bt * uu[:, None], axis=1)
                if SOFTPLUS:
                    ddt = ddt * tl.sigmoid(raw)
                tl.store(ddelta_ptr + o_row + t, ddt.to(ddelta_ptr.dtype.element_ty), mask=md)
                dbias_acc += ddt
                dD_acc += dy * uu
                dA_acc += dt[:, None] * w
                if VAR_B:
                    tl.atomic_add(dB_ptr + dBC_row + t, tl.sum(gs * dtu[:, None], axis=0), mask=mn)
                else:
                    dB_acc += gs * dtu[:, None]
                if VAR_C:
                    tl.atomic_add(dC_ptr + dBC_row + t, tl.sum(ht * dy[:, None], axis=0), mask=mn)
                else:
                    dC_acc += ht * dy[:, None]
                g = gs * a
        if HAS_DINIT:
            tl.store(dinit_ptr + st_off, g, mask=m2)
        ck_base += nck.to(tl.int32)
    w_off = offs_d[:, None] * dstate + offs_n[None, :]
    tl.atomic_add(dA_ptr + w_off, dA_acc, mask=m2)
    if not VAR_B:
        tl.atomic_add(dB_ptr + w_off, dB_acc, mask=m2)
    if not VAR_C:
        tl.atomic_add(dC_ptr + w_off, dC_acc, mask=m2)
    if HAS_D:
        tl.atomic_add(dD_ptr + offs_d, dD_acc, mask=md)
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + offs_d, dbias_acc, mask=md)


def selective_scan_bwd_triton(u, delta, A, B, C, D, z, delta_bias, initial_state, cu_seqlens, delta_softplus,
                              dout, dlast, states, ckpt_chunk, poison=False):
    """Gradients from the states saved by selective_scan_fwd_triton(states=..., ckpt_chunk=...): returns
    [du, ddelta, dz] in u's dtype and [dA, dB, dC, dD, ddelta_bias, dinitial_state] in float32 (dB/dC
    variable: (b, g, n, l); entries for absent inputs: empty)."""
    bsz, d, l = u.shape
    n = A.shape[1]
    f32 = torch.float32
    dev = u.device

    def tcontig(t):  # time (last) axis contiguous
        return t if t.stride(-1) == 1 else t.contiguous()

    def w(t):
        return None if t is None else t.to(f32).contiguous()

    u, delta, dout = tcontig(u), tcontig(delta), tcontig(dout.to(u.dtype))
    z = None if z is None else tcontig(z)
    var_b, var_c = B.dim() == 4, C.dim() == 4
    Bk = tcontig(B) if var_b else w(B)
    Ck = tcontig(C) if var_c else w(C)
    g = B.shape[1] if var_b else (C.shape[1] if var_c else 1)
    Ak, Dk, biask = w(A), w(D), w(delta_bias)
    dl = None if dlast is None else w(dlast)
    nslots = bsz if cu_seqlens is None else cu_seqlens.shape[0] - 1
    cu = None if cu_seqlens is None else cu_seqlens.to(torch.int64).contiguous()

    def out(*shape):
        t = torch.empty(*shape, dtype=u.dtype, device=dev)
        return t.fill_(float("nan")) if poison else t

    du, ddelta = out(bsz, d, l), out(bsz, d, l)
    dz = out(bsz, d, l) if z is not None else torch.empty(0, dtype=u.dtype, device=dev)
    dA = torch.zeros(d, n, dtype=f32, device=dev)
    dB = torch.zeros(*((bsz, g, n, l) if var_b else (d, n)), dtype=f32, device=dev)
    dC = torch.zeros(*((bsz, g, n, l) if var_c else (d, n)), dtype=f32, device=dev)
    dD = torch.zeros(d if D is not None else 0, dtype=f32, device=dev)
    dbias = torch.zeros(d if delta_bias is not None else 0, dtype=f32, device=dev)
    dinit = torch.empty(*((nslots, d, n) if initial_state is not None else (0,)), dtype=f32, device=dev)
    if poison:
        dinit.fill_(float("nan"))
    if bsz == 0 or d == 0:
        return [du, ddelta, dz], [dA, dB, dC, dD, dbias, dinit]
    BLOCK_N = triton.next_power_of_2(n)
    BLOCK_D = max(1, min(32, 1024 // BLOCK_N))
    dpg = d // g
    grid = (triton.cdiv(dpg, BLOCK_D), g, bsz)
    scratch = torch.empty(grid[0] * grid[1] * grid[2] * ckpt_chunk * BLOCK_D * BLOCK_N, dtype=f32, device=dev)
    dummy = Ak
    sBb, sBg, sBn = Bk.stride()[:3] if var_b else (0, 0, 0)
    sCb, sCg, sCn = Ck.stride()[:3] if var_c else (0, 0, 0)
    zs = (z.stride(0), z.stride(1)) if z is not None else (0, 0)
    _selective_scan_bwd_kernel[grid](
        u, delta, Ak, Bk, Ck, Dk if Dk is not None else dummy, z if z is not None else u,
        biask if biask is not None else dummy, cu if cu is not None else dummy, dout,
        dl if dl is not None else dummy, states, scratch, du, ddelta, dz if z is not None else du, dA, dB, dC,
        dD if D is not None else dummy, dbias if delta_bias is not None else dummy,
        dinit if initial_state is not None else dummy,
        d, l, n, dpg, nslots if cu is not None else 1, states.shape[2],
        u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), zs[0], zs[1], dout.stride(0), dout.stride(1),
        sBb, sBg, sBn, sCb, sCg, sCn,
        VAR_B=var_b, VAR_C=var_c, HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        HAS_DLAST=dlast is not None, HAS_DINIT=initial_state is not None, VARLEN=cu is not None,
        SOFTPLUS=delta_softplus, CK=ckpt_chunk, BLOCK_D=BLOCK_D, BLOCK_N=BLOCK_N, num_warps=4,
    )
    return [du, ddelta, dz], [dA, dB, dC, dD, dbias, dinit]
