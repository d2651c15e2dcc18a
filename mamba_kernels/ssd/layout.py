"""How a (batched or cu_seqlens-packed) input is cut into chunks; shared by every backend."""
from __future__ import annotations


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
