"""Lab (GPU): where verify_m2ws_kernel's time goes, from its mode-4 stamps (csrc/verify/verify_m2ws_kernel.cuh).

Runs bench/bench_verify.py's layer (b rows, k tokens, ceil(k / 2) accepted a call, fp32 state) through the ws kernel
with MK_VERIFY_WS_MODE=4 (results as mode 0; every call synchronises to copy its stamps out), --calls eager calls
after the prime, and prints per call (a call where every unit folds marked) the consumers' time per unit split into
waiting for the tile, the state dots, waiting for the record, y, the rest (a folding unit's new x / B loads, fold
and new ring rows apart); the prep pairs' time per unit split into waiting for a free slot (record and prep area)
and the unit's work; and, per unit index i of a block, the mean of each, so that a start-up wait shows. Times in us
from the SM's cycle counter, scaled by the global timer over each block's life.
Usage: python scripts/lab/ws_stamps.py --case mamba2-64-4 --calls 14 [--pairs 4]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
import bench_verify as bv  # noqa: E402

CS, CT, CD, CR, CE, PS, PW, PO, PE, T0, T1, CY, CRG, CF = range(14)


def read_records(path):
    """[(grid, npair, units, stamps (grid, units_cap, events) uint64)] from the launcher's appended file."""
    out = []
    raw = open(path, "rb").read()
    off = 0
    while off < len(raw):
        grid, npair, units, cap, nev = np.frombuffer(raw, dtype=np.int32, count=5, offset=off)
        off += 20
        n = int(grid) * int(cap) * int(nev)
        st = np.frombuffer(raw, dtype=np.uint64, count=n, offset=off).reshape(int(grid), int(cap), int(nev))
        off += 8 * n
        out.append((int(grid), int(npair), int(units), st.astype(np.int64)))
    return out


def summarize(rec):
    grid, npair, units, st = rec
    mine = np.array([(units - 1 - b) // grid + 1 if b < units else 0 for b in range(grid)])
    cap = st.shape[1]
    life_ns = st[:, 0, T1] - st[:, 0, T0]
    # cycles over the consumers' life: first unit's start to the last recorded unit's end
    last = np.minimum(mine, cap) - 1
    cyc = st[np.arange(grid), last, CE] - st[:, 0, CS]
    ghz = float(np.median(cyc / np.maximum(life_ns, 1)))
    us = lambda c: c / ghz / 1e3  # noqa: E731
    m = min(int(mine.min()), cap)
    s = st[:, :m, :]
    # consumers' order per unit (session 51): tile wait (CT), dots (CY), record wait (CR), y (CD), end (CE); a folding
    # unit: new x / B loads issued (CRG), fold (CF), new ring rows + meta (CE); prep pairs (session 52): the unit's
    # slot wait (PW -> PO, before its ring copies; its loads were issued during the pair's unit before) and its work
    # (PS -> PE, the slot wait and the next unit's loads inside)
    parts = {
        "c_wait_tile": s[:, :, CT] - s[:, :, CS], "c_dots": s[:, :, CY] - s[:, :, CT],
        "c_wait_rec": s[:, :, CR] - s[:, :, CY], "c_y": s[:, :, CD] - s[:, :, CR], "c_rest": s[:, :, CE] - s[:, :, CD],
        "p_wait_slot": s[:, :, PO] - s[:, :, PW], "p_work": s[:, :, PE] - s[:, :, PS],
    }
    fold = bool((s[:, :, CF] > 0).all())  # a call where every unit folds (its fold stamps are set): its fold phases
    if fold:  # f_ring: the new tokens' x / B loads issued before the fold (the ring rows come from the prep pair)
        parts.update({"f_ring": s[:, :, CRG] - s[:, :, CD], "f_fold": s[:, :, CF] - s[:, :, CRG],
                      "f_rest": s[:, :, CE] - s[:, :, CF]})
    kern_us = (st[:, 0, T1].max() - st[:, 0, T0].min()) / 1e3
    return fold, ghz, kern_us, m, {k: us(v.astype(np.float64)) for k, v in parts.items()}, us(
        (s[:, :, PE] - s[:, 0:1, CS]).astype(np.float64)), us((s[:, :, CD] - s[:, 0:1, CS]).astype(np.float64))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", default="mamba2-64-4")
    ap.add_argument("--calls", type=int, default=14)
    ap.add_argument("--pairs", type=int, default=0, help="MK_VERIFY_WS_PAIRS (0: as many as fit)")
    a = ap.parse_args()
    kind, b, k = a.case.split("-")
    b, k = int(b), int(k)
    os.environ["MK_VERIFY_KERNEL"] = "ws"
    if a.pairs:
        os.environ["MK_VERIFY_WS_PAIRS"] = str(a.pairs)
    L = bv._layer(kind, b, k)
    bv._prime(L, "cuda")
    out = torch.empty_like(L["x"])
    fn = bv._ours(L, "cuda", out)
    for _ in range(3):  # warm-up (stamps off)
        fn()
    torch.cuda.synchronize()
    path = os.path.join(tempfile.mkdtemp(), "stamps.bin")
    os.environ["MK_VERIFY_WS_MODE"] = "4"
    os.environ["MK_VERIFY_WS_STAMPS"] = path
    for _ in range(a.calls):
        fn()
    torch.cuda.synchronize()
    del os.environ["MK_VERIFY_WS_STAMPS"], os.environ["MK_VERIFY_WS_MODE"]
    recs = read_records(path)
    print(f"case {a.case}, ring {L['cache'].ring_len}, accepted {math.ceil(k / 2)} a call, {len(recs)} calls, "
          f"{recs[0][1]} prep pairs, grid {recs[0][0]}")
    agg = {}
    for ci, rec in enumerate(recs):
        fold, ghz, kern_us, m, parts, rec_ready, y_done = summarize(rec)
        tot = {k_: float(v.sum(axis=1).mean()) for k_, v in parts.items()}
        print(f"call {ci}: kernel {kern_us:.1f} us (global timer), {ghz:.2f} GHz, {m} units a block | per block "
              "(sum over its units, mean over blocks): " + ", ".join(f"{k_} {v:.1f}" for k_, v in tot.items()))
        agg.setdefault("fold" if fold else "plain", []).append((parts, rec_ready, y_done))
    for key, rows in agg.items():
        print(f"\n{key} calls ({len(rows)}): per unit index i (mean over blocks and calls, us)")
        names = list(rows[0][0])
        print("  i  " + " ".join(f"{n:>11}" for n in names) + "   rec_ready     y_done")
        m = min(r[0][names[0]].shape[1] for r in rows)
        for i in range(m):
            vals = [np.mean([r[0][n][:, i].mean() for r in rows]) for n in names]
            rr = np.mean([r[1][:, i].mean() for r in rows])
            dd = np.mean([r[2][:, i].mean() for r in rows])
            print(f"  {i:2d} " + " ".join(f"{v:11.2f}" for v in vals) + f" {rr:11.2f} {dd:10.2f}")


if __name__ == "__main__":
    main()
