"""Warp-stall samples of one kernel by phase: the per-SASS csv that scripts/ncu_verify.sh writes (ncu --page source
--csv) split at the block barriers (BAR.SYNC), each phase's share of the samples and its main stall reasons, then
the instructions with the most samples. A stall_barrier sample is charged to the instruction after the barrier, so a
phase's "barrier" samples are warps that reached the barrier ending the phase before it and wait for the others.

  python3 scripts/ncu_phases.py ncu_mamba2-64-4_cuda_sass.csv [--top 25]

A csv of several launches (NCU_VERIFY_LAUNCHES=2: the split pair's prep and stream kernels) holds one section a
kernel, each headed by a "Kernel Name" row (ncu may print a section twice): each distinct section is reported.
"""
import argparse
import csv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    rows = list(csv.reader(open(a.csv)))
    starts = [i for i, r in enumerate(rows) if r and r[0] == "Kernel Name"] or [0]
    seen = set()
    for a0, a1 in zip(starts, starts[1:] + [len(rows)]):
        sec = rows[a0:a1]
        key = tuple(map(tuple, sec))
        if key in seen:
            continue
        seen.add(key)
        if sec[0] and sec[0][0] == "Kernel Name":
            print(f"== {sec[0][1]}")
        report(sec, a.top)


def report(rows, top):
    head = next(i for i, r in enumerate(rows) if r and r[0] == "Address")
    hdr = rows[head]
    data = [r for r in rows[head + 1:] if len(r) == len(hdr)]
    col = {h: j for j, h in enumerate(hdr)}
    reasons = [j for j, h in enumerate(hdr) if h.startswith("stall_") and "Not Issued" not in h]
    samples = col["Warp Stall Sampling (All Samples)"]
    executed = col["Instructions Executed"]
    total = sum(int(r[samples]) for r in data) or 1
    print(f"{total} samples, {len(data)} SASS instructions")
    start, phase = 0, 1
    for i, r in enumerate(data + [None]):
        if r is not None and "BAR.SYNC" not in r[1] and i != len(data) - 1:
            continue
        seg = data[start:i + 1]
        if not seg:
            break
        n = sum(int(x[samples]) for x in seg)
        by = sorted(((sum(int(x[j]) for x in seg), hdr[j][6:]) for j in reasons), reverse=True)[:4]
        print(f"phase {phase}: SASS {start}-{i}, {n} samples ({100 * n / total:.1f}%), "
              f"{sum(int(x[executed]) for x in seg)} warp instructions; " + ", ".join(f"{k} {v}" for v, k in by))
        start, phase = i + 1, phase + 1
    print("top instructions (index, SASS, samples, warp instructions executed, main stalls):")
    for i in sorted(sorted(range(len(data)), key=lambda i: -int(data[i][samples]))[:top]):
        r = data[i]
        by = sorted(((int(r[j]), hdr[j][6:]) for j in reasons), reverse=True)[:2]
        print(f"{i:5d} {r[1].strip()[:56]:56s} {r[samples]:>5s} {r[executed]:>7s}  " +
              ", ".join(f"{k} {v}" for v, k in by if v))


if __name__ == "__main__":
    main()
