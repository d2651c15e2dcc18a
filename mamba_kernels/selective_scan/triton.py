"""Triton twin of the Mamba-1 selective scan forward (fp32 math; runs under TRITON_INTERPRET=1).

One program owns BLOCK_D channels of one batch row and keeps their (BLOCK_D, BLOCK_N) states in
registers, walking time sequentially: h = exp2(delta * A*log2e) * h + (delta*u) B_t, y = sum_n C_t h.
Varlen: the program walks the packed sequences one after the other, each from its own initial state.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _selective_scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, h0_ptr, cu_ptr, out_ptr, last_ptr,
    dim, seqlen, dstate, dpg, nseq,
    su_b, su_d, sd_b, sd_d, sz_b, sz_d, so_b, so_d,
    sB_b, sB_g, sB_n, sC_b, sC_g, sC_n,
    VAR_B: tl.constexpr, VAR_C: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr, VARLEN: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_d = tl.program_id(0)
    b = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    md = offs_d < dim
    m2 = md[:, None] & (offs_n < dstate)[None, :]
    A2 = tl.load(A_ptr + offs_d[:, None] * dstate + offs_n[None, :], mask=m2, other=0.0) * 1.4426950408889634
    grp = offs_d // dpg
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
    u_row = u_ptr + b * su_b + offs_d * su_d
    d_row = delta_ptr + b * sd_b + offs_d * sd_d
    z_row = z_ptr + b * sz_b + offs_d * sz_d
    o_row = out_ptr + b * so_b + offs_d * so_d
    B_row = B_ptr + b * sB_b + grp[:, None] * sB_g + offs_n[None, :] * sB_n
    C_row = C_ptr + b * sC_b + grp[:, None] * sC_g + offs_n[None, :] * sC_n
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


def selective_scan_fwd_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, initial_state=None,
                              cu_seqlens=None, delta_softplus=False, poison=False):
    """Forward scan; same contract as the custom op `mamba_kernels::selective_scan_fwd` (inputs checked
    by the public function). Returns (out like u, last_state float32 (slots, d, n))."""
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
    _selective_scan_fwd_kernel[grid](
        u, delta, Ak, Bk, Ck, Dk if Dk is not None else dummy, z if z is not None else u,
        biask if biask is not None else dummy, h0 if h0 is not None else dummy, cu if cu is not None else dummy,
        out, last,
        d, l, n, d // g, nslots if cu is not None else 1,
        u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), zs[0], zs[1], out.stride(0), out.stride(1),
        sBb, sBg, sBn, sCb, sCg, sCn,
        VAR_B=var_b, VAR_C=var_c, HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        HAS_H0=initial_state is not None, VARLEN=cu is not None, SOFTPLUS=delta_softplus,
        BLOCK_D=BLOCK_D, BLOCK_N=BLOCK_N, num_warps=4,
    )
    return out, last
