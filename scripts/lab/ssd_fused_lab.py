"""Lab (GPU: an H100 / H200, the library built with sm_90a): the fused F1 + F2 walk at chunk 64
(csrc/ssd/ssd_fused_walk_kernel.cuh; docs/ssd_fused_walk_design.md, lab step 1) against the library's forward.

At bench shape 1 (b 4, l 4096, h 80, p 64, n 128, g 1; or --shape) and at b 4, h 66 (264 walks: one wave of two
CTAs an SM on 132 SMs, the fused walk's pace without its uneven last wave: shape 1's 320 walks leave 56 for a second
wave), without autograd:
  check   the fused call's out and final states against the library's forward (Triton pipeline, chunk 128 inside),
          relative RMS and max abs error over max |ref| (both bf16 computations: expect ~1e-3 RMS); a short
          sequence (l 300, h 8, initial states) as well;
  time    per-call time of n calls back to back behind a GPU spin (median of rounds; _gpu_timing.batch_time_us):
          the library's forward, the fused lab call (K0 + K1 at chunk 64, then the fused walk: two CTAs an SM sharing
          the walks' chunks, a CTA a walk, and shared with C B^T computed in the walk: MK_SSD_FUSED_CB=1),
          the same with its causal part on wgmma (MK_SSD_FUSED_CAUSAL_WG=1), each also without the gate (z None:
          what z costs), alternating, two rounds;
  lab     the fused call with MK_SSD_FUSED_LAB=1 (the state warpgroup's update left out) and =2 (the output
          warpgroup's causal part and epilogue left out): wrong results, each side's pace alone;
  kernels the kernels of each call under torch.profiler (the fused walk alone, and its prep).
Prints one line a measurement."""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from _gpu_timing import batch_time_us, kernel_table  # noqa: E402
from bench_ssd import SHAPES, _inputs  # noqa: E402

from mamba_kernels.ssd import cuda_walk, ssd_chunked_scan  # noqa: E402


def library(inp, init=None):
    return ssd_chunked_scan(inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], 256, D=inp["D"], z=inp["z"],
                            dt_bias=inp["dt_bias"], dt_softplus=True, initial_states=init, return_final_states=True,
                            backend="triton")


def fused(inp, init=None, num_ctas=None):
    return cuda_walk.fused_walk_lab(inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], D=inp["D"], z=inp["z"],
                                    dt_bias=inp["dt_bias"], dt_softplus=True, initial_states=init,
                                    return_final_states=True, num_ctas=num_ctas)


def fused_per_walk(inp, init=None):
    return fused(inp, init, num_ctas=0)


def fused_noz(inp, init=None):
    return fused({**inp, "z": None}, init)


def set_cb(cbin):
    """MK_SSD_FUSED_CB / MK_SSD_FUSED_CAUSAL_WG for a C B^T source: "0" K1's, "1" in the walk, "wg" in the walk and
    the causal part on wgmma."""
    os.environ["MK_SSD_FUSED_CB"] = "0" if cbin == "0" else "1"
    os.environ["MK_SSD_FUSED_CAUSAL_WG"] = "1" if cbin == "wg" else "0"


# The timed calls: (name, function, C B^T source for set_cb); the kernel tables leave out the no-z ones.
TIMED = (("library", library, "0"), ("fused", fused, "0"), ("fused per-walk", fused_per_walk, "0"),
         ("fused, C B^T inside", fused, "1"), ("fused, C B^T inside, no z", fused_noz, "1"),
         ("fused, causal on wgmma", fused, "wg"), ("fused, causal on wgmma, no z", fused_noz, "wg"))


def errors(got, ref):
    got, ref = got.double(), ref.double()
    rms = ((got - ref).norm() / ref.norm().clamp_min(1e-30)).item()
    return rms, ((got - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


def check(name, inp, init=None):
    with torch.no_grad():
        out_r, fin_r = library(inp, init)
        for label, fn, cbin in (("shared", fused, "0"), ("per-walk", fused_per_walk, "0"),
                                ("shared, C B^T inside", fused, "1"), ("shared, causal on wgmma", fused, "wg")):
            set_cb(cbin)
            out_f, fin_f = fn(inp, init)
            torch.cuda.synchronize()
            (r1, m1), (r2, m2) = errors(out_f, out_r), errors(fin_f, fin_r)
            finite = bool(torch.isfinite(out_f).all() and torch.isfinite(fin_f).all())
            print(f"check {name} {label}: out rms {r1:.2e} max {m1:.2e}; final rms {r2:.2e} max {m2:.2e}; "
                  f"finite {finite}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="b4-l4096-h80-p64-n128-g1")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    inp = _inputs(**SHAPES[args.shape])
    small = _inputs(b=2, l=300, h=8, p=64, n=128, g=1)
    init = torch.randn(2, 8, 64, 128, device="cuda")
    check("b2-l300-h8-init", small, init)
    check(args.shape, inp)
    even = _inputs(b=4, l=4096, h=66, p=64, n=128, g=1)
    spin = int(2e7)
    with torch.no_grad():
        for rnd in range(args.rounds):
            for label, x in ((args.shape, inp), ("b4-l4096-h66 (264 walks)", even)):
                for name, fn, cbin in TIMED:
                    set_cb(cbin)
                    us = batch_time_us(lambda: fn(x), n=20, rounds=5, spin_cycles=spin)
                    print(f"time round {rnd} {label} {name}: {us:.1f} us a call", flush=True)
        set_cb("0")
        os.environ["MK_SSD_FUSED_WALK"] = "1"  # the library's forward with the fused walk (the bench's path)
        for rnd in range(args.rounds):
            us = batch_time_us(lambda: library(inp), n=20, rounds=5, spin_cycles=spin)
            print(f"time round {rnd} {args.shape} library with MK_SSD_FUSED_WALK=1: {us:.1f} us a call", flush=True)
        os.environ.pop("MK_SSD_FUSED_WALK")
        for lab in ("1", "2"):  # MK_SSD_FUSED_LAB (wrong results by design): each warpgroup's side alone
            os.environ["MK_SSD_FUSED_LAB"] = lab
            for rnd in range(args.rounds):
                us = batch_time_us(lambda: fused(inp), n=20, rounds=5, spin_cycles=spin)
                print(f"time round {rnd} {args.shape} fused lab {lab} "
                      f"({'no state update' if lab == '1' else 'no causal part / epilogue'}): {us:.1f} us a call",
                      flush=True)
        os.environ.pop("MK_SSD_FUSED_LAB")
        for name, fn, cbin in (c for c in TIMED if c[1] is not fused_noz):
            set_cb(cbin)
            for kname, per_call, us in kernel_table(lambda: fn(inp), n=10):
                print(f"kernels {name}: {us:8.1f} us x {per_call:.0f}  {kname}", flush=True)


if __name__ == "__main__":
    main()
