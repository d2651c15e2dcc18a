"""The one tolerance helper used by every test (and by benchmarks' sanity checks).

Error measure: relative RMS error ||actual - expected|| / ||expected|| (fla's assert_close), plus a
bound on the largest single error relative to max|expected|, so a few wrong elements in a large tensor
cannot hide inside the RMS. NaN/Inf in `actual` where `expected` is finite always fails, which is
how a poisoned (NaN-filled) output that a kernel forgot to write is caught.
"""
from __future__ import annotations

import torch

# dtype -> (relative RMS error bound, max-abs error bound relative to max|expected|).
# Values: fp32 arithmetic lands near 1e-6 relative; fp16 has an 11-bit mantissa (~5e-4 per rounding),
# bf16 an 8-bit one (~4e-3 per rounding); recurrences accumulate a few roundings.
TOLERANCES = {
    torch.float64: (1e-10, 1e-9),
    torch.float32: (2e-5, 2e-4),
    torch.float16: (3e-3, 2e-2),
    torch.bfloat16: (2e-2, 8e-2),
}


def tolerance(dtype: torch.dtype, factor: float = 1.0) -> tuple[float, float]:
    rms, mx = TOLERANCES[dtype]
    return rms * factor, mx * factor


def rel_rms_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    a = actual.detach().to(torch.float64).cpu()
    e = expected.detach().to(torch.float64).cpu()
    den = e.pow(2).mean().sqrt().item()
    num = (a - e).pow(2).mean().sqrt().item()
    return num / max(den, 1e-30)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None,
                 *, factor: float = 1.0, name: str = "output") -> None:
    """Assert `actual` matches `expected` within the tolerance of `dtype` (default: actual.dtype).

    `factor` widens both bounds for computations known to accumulate more rounding (documented
    at the call site).
    """
    dtype = dtype or actual.dtype
    if tuple(actual.shape) != tuple(expected.shape):
        raise AssertionError(f"{name}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
    a = actual.detach().to(torch.float64).cpu()
    e = expected.detach().to(torch.float64).cpu()
    finite = torch.isfinite(e)
    bad = finite & ~torch.isfinite(a)
    if bad.any():
        idx = bad.nonzero()[0].tolist()
        raise AssertionError(f"{name}: {int(bad.sum())} non-finite values where the reference is finite "
                             f"(first at {idx}); an unwritten (poisoned) output?")
    if a.numel() == 0:
        return
    rms_tol, max_tol = tolerance(dtype, factor)
    err = rel_rms_error(a, e)
    scale = e.abs().max().item()
    max_err = (a - e).abs().max().item()
    if not (err <= rms_tol and max_err <= max_tol * max(scale, 1e-30)):
        raise AssertionError(f"{name}: relative RMS error {err:.3e} (bound {rms_tol:.1e}), max abs error "
                             f"{max_err:.3e} (bound {max_tol * scale:.3e}) for dtype {dtype}")


def poison_(t: torch.Tensor) -> torch.Tensor:
    """Fill a float output buffer with NaN (ints with a sentinel) before a kernel writes it."""
    if t.dtype.is_floating_point:
        return t.fill_(float("nan"))
    return t.fill_(-123456789 if t.dtype in (torch.int32, torch.int64) else 0)


def aot_compile_triton(fn, signature: dict, constexprs: dict, arch: int = 90, num_warps: int = 4):
    """Compile a @triton.jit kernel ahead of time for CUDA sm_<arch> without a GPU (CI checks that every Triton
    kernel lowers to PTX and a cubin for Hopper). `signature` maps every argument name to a Triton type string
    ("*bf16", "*fp32", "i32", "fp32", ... and "constexpr" for compile-time arguments given in `constexprs`).
    Returns the compiled kernel (its .asm holds "ptx" and "cubin")."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from triton.runtime.jit import JITFunction

    while not isinstance(fn, JITFunction) and type(fn).__name__ != "InterpretedFunction" and hasattr(fn, "fn"):
        fn = fn.fn  # unwrap autotuners / heuristics
    if not isinstance(fn, JITFunction):  # under TRITON_INTERPRET=1 @triton.jit gives an InterpretedFunction
        fn = JITFunction(fn.fn)
    src = ASTSource(fn=fn, signature=signature, constexprs=constexprs)
    return triton.compile(src, target=GPUTarget("cuda", arch, 64), options={"num_warps": num_warps})


_TRITON_PTR_TYPES = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16", torch.float64: "*fp64",
                     torch.int32: "*i32", torch.int64: "*i64", torch.int8: "*i8", torch.uint8: "*u8",
                     torch.bool: "*i1", torch.int16: "*i16"}


def record_triton_launches(fn, *args, **kwargs):
    """Run `fn(*args, **kwargs)` under TRITON_INTERPRET=1 and return (result, launches): every Triton kernel
    it launched, as (jit function, {arg name: value}, launch options). Used to compile exactly what a launcher
    launches ahead of time for Hopper (see `aot_compile_launches`)."""
    from triton.runtime.interpreter import InterpretedFunction

    launches = []
    orig = InterpretedFunction.run

    def run(self, *a, **kw):
        names = [p.name for p in self.params] if hasattr(self, "params") else list(self.arg_names)
        opts = {k: kw[k] for k in ("num_warps", "num_stages") if k in kw}
        bound = dict(zip(names, a))
        bound.update({k: v for k, v in kw.items() if k in names})
        launches.append((self, bound, opts))
        return orig(self, *a, **kw)

    InterpretedFunction.run = run
    try:
        result = fn(*args, **kwargs)
    finally:
        InterpretedFunction.run = orig
    return result, launches


def aot_compile_launches(launches, arch: int = 90):
    """Compile recorded launches (`record_triton_launches`) for CUDA sm_<arch> without a GPU.

    Runs in a subprocess with TRITON_INTERPRET unset, so the kernels' modules import as real JIT functions.
    Returns one dict per distinct kernel specialisation: name, shared (bytes), n_regs, n_spills, has_cubin.
    """
    import json
    import os
    import subprocess
    import sys

    from triton.runtime.jit import JITFunction

    specs, seen = [], set()
    for interp, bound, opts in launches:
        params = JITFunction(interp.fn).params
        sig, consts = {}, {}
        for p in params:
            v = bound.get(p.name, p.default if p.has_default else None)
            if p.is_constexpr or v is None:
                sig[p.name], consts[p.name] = "constexpr", v
            elif isinstance(v, torch.Tensor):
                sig[p.name] = _TRITON_PTR_TYPES[v.dtype]
            elif isinstance(v, bool):
                sig[p.name] = "i1"
            elif isinstance(v, int):
                sig[p.name] = "i32" if -2**31 <= v < 2**31 else "i64"
            elif isinstance(v, float):
                sig[p.name] = "fp32"
            else:
                raise TypeError(f"{interp.fn.__name__}: cannot type argument {p.name}={v!r}")
        spec = dict(module=interp.fn.__module__, name=interp.fn.__name__, sig=sig, consts=consts,
                    num_warps=opts.get("num_warps", 4), arch=arch)
        key = json.dumps(spec, sort_keys=True)
        if key not in seen:
            seen.add(key)
            specs.append(spec)
    code = (
        "import json, sys, importlib\n"
        "from mamba_kernels.testing import aot_compile_triton\n"
        "out = []\n"
        "for s in json.loads(sys.stdin.read()):\n"
        "    fn = getattr(importlib.import_module(s['module']), s['name'])\n"
        "    k = aot_compile_triton(fn, s['sig'], s['consts'], arch=s['arch'], num_warps=s['num_warps'])\n"
        "    out.append(dict(name=s['name'], shared=k.metadata.shared, num_warps=k.metadata.num_warps,\n"
        "                    has_cubin='cubin' in k.asm, ptx_bytes=len(k.asm.get('ptx', ''))))\n"
        "print('AOT-RESULT' + json.dumps(out))\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run([sys.executable, "-c", code], input=json.dumps(specs), capture_output=True, text=True,
                         env=env, timeout=900, cwd=root)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("AOT-RESULT")]
    if res.returncode != 0 or not lines:
        raise RuntimeError(f"ahead-of-time Triton compile failed:\n{res.stderr[-4000:]}")
    return json.loads(lines[0][len("AOT-RESULT"):])
