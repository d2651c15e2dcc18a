"""How a (batched or cu_seqlens-packed) input is cut into chunks; shared by every backend."""
from __future__ import annotations

import torch


def chunk_layout(b: int, l: int, chunk_size: int, cu_seqlens):
    """Sequences and chunks. Returns (chunks [(row, start, len)], seqs [(first_chunk, n_chunks)], n_slots).

    n_slots is a bound on the number of chunks that depends only on shapes (so fake kernels can allocate):
    b * ceil(l / Q) without cu_seqlens, ceil(l / Q) + nseq - 1 with.
    """
    if cu_seqlens is None:
        spans = [(r, 0, l) for r in range(b)]
        n_slots = b * (-(-l // chunk_size))
    else:
        cu = [int(v) for v in cu_seqlens.tolist()]
        spans = [(0, cu[i], cu[i + 1]) for i in range(len(cu) - 1)]
        n_slots = max(-(-l // chunk_size) + len(spans) - 1, 0)
    chunks, seqs = [], []
    for row, s, e in spans:
        first = len(chunks)
        for c0 in range(s, e, chunk_size):
            chunks.append((row, c0, min(chunk_size, e - c0)))
        seqs.append((first, len(chunks) - first))
    return chunks, seqs, n_slots


def n_chunk_slots(b: int, l: int, chunk_size: int, nseq: int | None) -> int:
    """Same bound as chunk_layout, from shapes only (nseq is None without cu_seqlens)."""
    if nseq is None:
        return b * (-(-l // chunk_size))
    return max(-(-l // chunk_size) + nseq - 1, 0)


class DeviceLayout:
    """Chunk slots of a call for the GPU kernels (Triton, CUDA head-walk stages): nk slots (grid size), nseq sequences,
    device tables for cu_seqlens (else dummies): tab (nk, 2) int32 (first token, length), cu, first (first chunk slot
    of each sequence) int32."""

    def __init__(self, b, l, Q, cu_seqlens, device):
        self.varlen = cu_seqlens is not None
        self.ncr = -(-l // Q) if l > 0 else 0
        if not self.varlen:
            self.nseq = b
            self.nk = b * self.ncr
            # never read (the kernels' varlen loads are compiled out): empty, so that a dense call launches no fill
            dummy = torch.empty(2, dtype=torch.int32, device=device)
            self.tab = self.cu = self.first = dummy
            return
        nseq = cu_seqlens.shape[0] - 1
        self.nseq = nseq
        self.nk = max(self.ncr + nseq - 1, 0)  # same bound as layout.n_chunk_slots
        cu = cu_seqlens.to(device=device, dtype=torch.int64)
        lens = cu[1:] - cu[:-1]
        nck = (lens + Q - 1) // Q
        cum = torch.cumsum(nck, 0)
        first = cum - nck
        slots = torch.arange(self.nk, device=device, dtype=torch.int64)
        seq = torch.searchsorted(cum, slots, right=True).clamp_(max=nseq - 1)
        start = cu[seq] + (slots - first[seq]) * Q
        ln = torch.minimum(cu[seq + 1] - start, torch.full_like(start, Q)).clamp_(min=0)
        ln = torch.where(slots < cum[-1], ln, torch.zeros_like(ln))
        self.tab = torch.stack([start, ln], 1).to(torch.int32).contiguous() if self.nk else \
            torch.zeros(2, dtype=torch.int32, device=device)
        self.cu = cu.to(torch.int32).contiguous()
        self.first = first.to(torch.int32).contiguous()
