"""Triton jit helpers shared by the SSD kernels (mamba_kernels/ssd/triton.py documents the algorithm)."""
from __future__ import annotations

import triton
import triton.language as tl


# --------------------------------------------------------------------------------------------- jit helpers
@triton.jit
def _cast(v, KIND: tl.constexpr):
    """Cast a fp32 tile to the tl.dot operand type (1 bf16, 2 fp16, 0 fp32; 3 / 4: bf16 / fp16 rounding kept in fp32,
    the interpreter's emulation of 1 / 2)."""
    if KIND == 1:
        r = v.to(tl.bfloat16)
    elif KIND == 2:
        r = v.to(tl.float16)
    elif KIND == 3:
        r = v.to(tl.bfloat16).to(tl.float32)
    elif KIND == 4:
        r = v.to(tl.float16).to(tl.float32)
    else:
        r = v.to(tl.float32)
    return r


@triton.jit
def _softplus(v):
    return tl.where(v <= 20.0, tl.log(1.0 + tl.exp(v)), v)


@triton.jit
def _chunk(k, tab_ptr, l, ncr, Q, VARLEN: tl.constexpr):
    """Chunk slot k -> (batch row (int64), first token within the row (int64), length). Without cu_seqlens the
    chunks of row r are slots r*ncr .. r*ncr+ncr-1; with cu_seqlens the table holds (start, len) per slot."""
    if VARLEN:
        row = tl.zeros((), dtype=tl.int64)
        start = tl.load(tab_ptr + 2 * k).to(tl.int64)
        ln = tl.load(tab_ptr + 2 * k + 1)
    else:
        row = (k // ncr).to(tl.int64)
        c = k % ncr
        start = (c * Q).to(tl.int64)
        ln = tl.minimum(l - c * Q, Q)
    return row, start, ln


@triton.jit
def _seq(seq, cu_ptr, first_ptr, l, ncr, VARLEN: tl.constexpr):
    """Sequence index -> (batch row, first token within the row, length, first chunk slot), all int64 but len."""
    if VARLEN:
        row = tl.zeros((), dtype=tl.int64)
        s0 = tl.load(cu_ptr + seq).to(tl.int64)
        ln = (tl.load(cu_ptr + seq + 1) - tl.load(cu_ptr + seq)).to(tl.int32)
        first = tl.load(first_ptr + seq).to(tl.int64)
    else:
        row = seq.to(tl.int64)
        s0 = tl.zeros((), dtype=tl.int64)
        ln = l + tl.zeros((), dtype=tl.int32)
        first = seq.to(tl.int64) * ncr
    return row, s0, ln, first


@triton.jit
def _causal_block_dot(cb, a_m, dt_m, causal, xm, KIND: tl.constexpr, PREC: tl.constexpr):
    """A chunk's diagonal (causal) block of the intra-chunk term: (CB o exp(a_t - a_s) dt'_s, t >= s) x, fp32."""
    dec = tl.exp(tl.where(causal, a_m[:, None] - a_m[None, :], float("-inf")))
    return tl.dot(_cast(cb * dec * dt_m[None, :], KIND), _cast(xm, KIND), input_precision=PREC)


@triton.jit
def _head_D(D_ptr, hh, p, offs_p, mp, HAS_D: tl.constexpr, D_HP: tl.constexpr):
    """The D skip weights of head hh: (1, BP) for D (h, p) (D_HP), a scalar for D (h,), 0 without D."""
    if HAS_D:
        if D_HP:
            Dv = tl.load(D_ptr + hh * p + offs_p, mask=mp, other=0.0).to(tl.float32)[None, :]
        else:
            Dv = tl.load(D_ptr + hh).to(tl.float32)
    else:
        Dv = 0.0
    return Dv


@triton.jit
def _store_outputs(y, xm, Dv, xy, mxy, z_ptr, out_ptr, ypre_ptr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
                   STORE_YPRE: tl.constexpr):
    """y += D x; the pre-gate y (STORE_YPRE, with z); out = y silu(z) (or y), at element offsets xy (mask mxy)."""
    if HAS_D:
        y += xm * Dv
    if HAS_Z:
        if STORE_YPRE:
            tl.store(ypre_ptr + xy, y.to(ypre_ptr.dtype.element_ty), mask=mxy)
        zm = tl.load(z_ptr + xy, mask=mxy, other=0.0).to(tl.float32)
        y = y * zm * tl.sigmoid(zm)
    tl.store(out_ptr + xy, y.to(out_ptr.dtype.element_ty), mask=mxy)


@triton.jit
def _block_pair_program(pid, ng, nmb):
    """Program pid of a (chunk, row-block pair, group) kernel (CB forward, dCB backward): group fastest, then the
    nmb x nmb pairs (t block tb, s block sb). Returns (group, chunk, tb, sb); pairs with sb > tb have no work."""
    gg = pid % ng
    rest = pid // ng
    pair = rest % (nmb * nmb)
    return gg, rest // (nmb * nmb), pair // nmb, pair % nmb


@triton.jit
def _chunk_head_program(h, npb, hpg, ng, p, n, tab_ptr, l, ncr, Q: tl.constexpr, VARLEN: tl.constexpr):
    """Program of a one-head chunk kernel (forward scan, backward dx): programs are ordered (chunk, p block, head),
    head fastest. Returns the head, p block, chunk, its (row, first token, length), the group, and the element
    offsets of the chunk's first token in x / y (xyb), B / C (bc), the decay cumsum (ab) and CB (cbb)."""
    pid = tl.program_id(0)
    hh = pid % h
    rest = pid // h
    pb = rest % npb
    k = rest // npb
    row, start, ln = _chunk(k, tab_ptr, l, ncr, Q, VARLEN)
    grp = hh // hpg
    tok0 = row * l + start
    xyb = (tok0 * h + hh) * p
    bc = (tok0 * ng + grp) * n
    ab = (row * h + hh) * l + start
    cbb = (k.to(tl.int64) * ng + grp) * Q * Q
    return hh, pb, k, row, start, ln, grp, tok0, xyb, bc, ab, cbb


@triton.jit
def _walk_program(nnb, npb, h, hpg, p, n, cu_ptr, first_ptr, l, ncr, VARLEN: tl.constexpr, BP: tl.constexpr,
                  BN: tl.constexpr):
    """Program of a chunk-state walk (forward state passing and its backward): programs are ordered (sequence,
    head, p block, n block), n fastest (adjacent programs share x tiles). Returns the head, sequence, group, the
    sequence's (row, first token, length, first chunk slot) and the p / n offsets with their masks."""
    pid = tl.program_id(0)
    nb = pid % nnb
    pid = pid // nnb
    pb = pid % npb
    sh = pid // npb
    hh = sh % h
    seq = sh // h
    grp = hh // hpg
    row, s0, ln, first = _seq(seq, cu_ptr, first_ptr, l, ncr, VARLEN)
    offs_p = pb * BP + tl.arange(0, BP)
    offs_n = nb * BN + tl.arange(0, BN)
    return hh, seq, grp, row, s0, ln, first, offs_p, offs_n, offs_p < p, offs_n < n


@triton.jit
def _walk_state_tile(ptr, HAS: tl.constexpr, seq, h, hh, p, n, offs_p, offs_n, mp, mn, BP: tl.constexpr,
                     BN: tl.constexpr):
    """A chunk-state walk's (p, n) tile: its mask, element offsets within a (p, n) state and p * n, and the fp32
    tile of the per-(sequence, head) states at ptr (initial states, or the final states' gradient), zeros without."""
    mpn = mp[:, None] & mn[None, :]
    st = offs_p[:, None] * n + offs_n[None, :]
    PN = p * n
    if HAS:
        tile = tl.load(ptr + (seq.to(tl.int64) * h + hh) * PN + st, mask=mpn, other=0.0).to(tl.float32)
    else:
        tile = tl.zeros((BP, BN), dtype=tl.float32)
    return mpn, st, PN, tile


@triton.jit
def _head_sums(t, head_hp, HB: tl.constexpr):
    """(rows, HP) -> (rows, HB): sums over each head's columns (column j belongs to head head_hp[j])."""
    offs_h = tl.arange(0, HB)
    out = tl.zeros((t.shape[0], HB), dtype=tl.float32)
    for j in tl.static_range(HB):
        sj = tl.sum(tl.where(head_hp[None, :] == j, t, 0.0), axis=1)
        out = tl.where(offs_h[None, :] == j, sj[:, None], out)
    return out


@triton.jit
def _head_expand(v, head_hp, HB: tl.constexpr):
    """(rows, HB) -> (rows, HP): column j gets v[:, head_hp[j]]."""
    offs_h = tl.arange(0, HB)
    out = tl.zeros((v.shape[0], head_hp.shape[0]), dtype=tl.float32)
    for j in tl.static_range(HB):
        vj = tl.sum(tl.where(offs_h[None, :] == j, v, 0.0), axis=1)
        out = tl.where(head_hp[None, :] == j, vj[:, None], out)
    return out
