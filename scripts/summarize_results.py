#!/usr/bin/env python3
"""Regenerate the markdown summary of a benchmark results file (bench/results/<gpu>-<date>.jsonl).

    python scripts/summarize_results.py bench/results/nvidia-h200-2026-11-29.jsonl        # writes ....md beside it
    python scripts/summarize_results.py a.jsonl b.jsonl -o combined.md                      # several runs, one table
    python scripts/summarize_results.py a.jsonl --stdout

The same code (bench/_harness.py: summarize) writes the summary at the end of every pytest bench session.
Rows are de-duplicated per (kernel, impl, shape, dtype, graph, flush_l2, note), keeping the latest.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import _harness  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("jsonl", nargs="+", type=Path, help="results file(s) written by the bench harness")
    ap.add_argument("-o", "--output", type=Path, help="markdown file (default: first input with .md)")
    ap.add_argument("--stdout", action="store_true", help="print the markdown instead of writing a file")
    args = ap.parse_args(argv)
    rows = []
    for p in args.jsonl:
        rows += _harness.read_rows(p)
    text = _harness.summarize(rows, source=", ".join(p.name for p in args.jsonl))
    if args.stdout:
        sys.stdout.write(text)
        return 0
    out = args.output or args.jsonl[0].with_suffix(".md")
    out.write_text(text)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
