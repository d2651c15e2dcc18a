"""`python -m mamba_kernels.demo`: run each kernel family on random inputs against its python_ref twin, on every
available backend, and print the relative error and time. Exits non-zero if any backend disagrees."""
from __future__ import annotations

import os
import sys
import time

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton kernels run on CPU tensors, interpreted

import mamba_kernels as mk  # noqa: E402
from mamba_kernels.testing import rel_rms_error, tolerance  # noqa: E402
from python_ref.verify import VerifyOracle  # noqa: E402


def _devices(backend):
    return "cuda" if backend == "cuda" or (backend == "triton" and torch.cuda.is_available()) else "cpu"


def demo_verify(backend):
    """Three rounds of speculative verify on a small Mamba-2 layer vs the sequential oracle."""
    dev = _devices(backend)
    b, h, p, n, g, K, S = 2, 4, 16, 8, 2, 4, 4
    cache = mk.VerifyCache.allocate(S, nheads=h, headdim=p, dstate=n, ngroups=g, max_draft=K,
                                    dtype=torch.float32, device=dev)
    state0 = torch.randn(S, h, p, n, device=dev)
    cache.state.copy_(state0)
    oracle = VerifyOracle(state0)
    A, D = -torch.rand(h, device=dev), torch.randn(h, device=dev)
    slots = torch.tensor([3, 1], dtype=torch.int32, device=dev)
    acc = torch.zeros(b, dtype=torch.int32)
    err = 0.0
    for _ in range(3):
        x, dt = torch.randn(b, K, h, p, device=dev), torch.randn(b, K, h, device=dev)
        B, C = torch.randn(b, K, g, n, device=dev), torch.randn(b, K, g, n, device=dev)
        y = mk.verify_step(x, dt, A, B, C, cache, slots, acc.to(dev), D=D, dt_softplus=True, backend=backend)
        y_ref = oracle.step(x, dt, A, B, C, slots.cpu(), acc, D=D, dt_softplus=True)
        err = max(err, rel_rms_error(y, y_ref))
        acc = torch.randint(0, K + 1, (b,), dtype=torch.int32)
    return err


DEMOS = {"verify_step": demo_verify}


def main() -> int:
    info = mk.backends()
    print("backends:")
    for name, e in info.items():
        print(f"  {name:7s} {'yes' if e['available'] else 'no ':3s}  {e['reason']}")
    ok = True
    print(f"\n{'op':14s} {'backend':8s} {'rel. error':>11s} {'bound':>8s} {'seconds':>8s}")
    for op, fn in DEMOS.items():
        for backend, e in info.items():
            if not e["available"]:
                continue
            t0 = time.perf_counter()
            try:
                err = fn(backend)
            except Exception as exc:  # noqa: BLE001 - report and keep going
                print(f"{op:14s} {backend:8s} FAILED: {exc!r}")
                ok = False
                continue
            bound = tolerance(torch.float32)[0]
            good = err <= bound
            ok &= good
            print(f"{op:14s} {backend:8s} {err:11.2e} {bound:8.0e} {time.perf_counter() - t0:8.2f}"
                  f"{'' if good else '  <-- too large'}")
    print("\nall backends agree with the references" if ok else "\nSOME BACKENDS DISAGREE")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
