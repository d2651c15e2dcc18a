"""`python -m mamba_kernels.demo`: run each kernel family on random inputs against its python_ref twin, on every
available backend, and print the relative error and time. Exits non-zero if any backend disagrees."""
from __future__ import annotations

import os
import sys
import time

import torch

if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") is None:
    # Triton kernels run on CPU tensors under the interpreter, which must be on before any @triton.jit is
    # decorated; `python -m` has already imported the package, so start again with it set.
    os.execvpe(sys.executable, [sys.executable, "-m", "mamba_kernels.demo", *sys.argv[1:]],
               dict(os.environ, TRITON_INTERPRET="1"))

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


def demo_conv1d(backend):
    """Causal depthwise conv (width 4, silu) with an initial state, vs python_ref.conv1d."""
    from python_ref.conv1d import causal_conv1d_ref

    dev = _devices(backend)
    x, w, bias = torch.randn(2, 48, 67, device=dev), torch.randn(48, 4, device=dev), torch.randn(48, device=dev)
    init = torch.randn(2, 48, 3, device=dev)
    y = mk.causal_conv1d(x, w, bias, initial_states=init, activation="silu", backend=backend)
    return rel_rms_error(y, causal_conv1d_ref(x.double(), w.double(), bias.double(), initial_states=init.double(),
                                              activation="silu"))


def demo_ssd(backend):
    """Chunked SSD (Mamba-2 scan) with D, z, softplus and an initial state, vs the sequential recurrence."""
    from python_ref.ssd import ssd_sequential_ref

    dev = _devices(backend)
    b, l, h, p, g, n = 2, 70, 4, 16, 2, 16
    x, dt = torch.randn(b, l, h, p, device=dev), torch.randn(b, l, h, device=dev)
    A, D = -torch.rand(h, device=dev) - 0.1, torch.randn(h, device=dev)
    B, C = torch.randn(b, l, g, n, device=dev), torch.randn(b, l, g, n, device=dev)
    z, h0 = torch.randn(b, l, h, p, device=dev), torch.randn(b, h, p, n, device=dev)
    kw = dict(D=D, z=z, dt_softplus=True, initial_states=h0)
    y = mk.ssd_chunked_scan(x, dt, A, B, C, 32, backend=backend, **kw)
    y = y[0] if isinstance(y, tuple) else y
    y_ref = ssd_sequential_ref(*(t.double() for t in (x, dt, A, B, C)),
                               **{k: (v.double() if torch.is_tensor(v) else v) for k, v in kw.items()})
    return rel_rms_error(y, y_ref[0] if isinstance(y_ref, tuple) else y_ref)


def demo_selective_scan(backend):
    """Mamba-1 selective scan with z, D, delta_bias, softplus, variable grouped B/C and an initial state."""
    from python_ref.selective_scan import selective_scan_ref

    dev = _devices(backend)
    b, d, l, n, g = 2, 40, 53, 8, 2
    u, delta, z = (torch.randn(b, d, l, device=dev) for _ in range(3))
    A, D, bias = -torch.rand(d, n, device=dev) - 0.1, torch.randn(d, device=dev), torch.randn(d, device=dev) * 0.1
    B, C = torch.randn(b, g, n, l, device=dev), torch.randn(b, g, n, l, device=dev)
    h0 = torch.randn(b, d, n, device=dev)
    kw = dict(delta_softplus=True, initial_state=h0)
    y = mk.selective_scan(u, delta, A, B, C, D, z, bias, backend=backend, **kw)
    y = y[0] if isinstance(y, tuple) else y
    y_ref = selective_scan_ref(*(t.double() for t in (u, delta, A, B, C, D, z, bias)), delta_softplus=True,
                               initial_state=h0.double())
    return rel_rms_error(y, y_ref[0] if isinstance(y_ref, tuple) else y_ref)


DEMOS = {"verify_step": demo_verify, "causal_conv1d": demo_conv1d, "ssd_chunked_scan": demo_ssd,
         "selective_scan": demo_selective_scan}


def main() -> int:
    info = mk.backends()
    print("backends:")
    for name, e in info.items():
        print(f"  {name:7s} {'yes' if e['available'] else 'no ':3s}  {e['reason']}")
    ok = True
    print(f"\n{'op':16s} {'backend':8s} {'rel. error':>11s} {'bound':>8s} {'seconds':>8s}")
    for op, fn in DEMOS.items():
        for backend, e in info.items():
            if not e["available"]:
                continue
            t0 = time.perf_counter()
            try:
                err = fn(backend)
            except Exception as exc:  # noqa: BLE001 - report and keep going
                print(f"{op:16s} {backend:8s} FAILED: {exc!r}")
                ok = False
                continue
            bound = tolerance(torch.float32)[0]
            good = err <= bound
            ok &= good
            print(f"{op:16s} {backend:8s} {err:11.2e} {bound:8.0e} {time.perf_counter() - t0:8.2f}"
                  f"{'' if good else '  <-- too large'}")
    print("\nall backends agree with the references" if ok else "\nSOME BACKENDS DISAGREE")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
