"""Chunked SSD (Mamba-2) Triton kernels compiled ahead of time for sm_90 (CI has no GPU): every kernel at the
launchers' configs for the issue-4 shapes, and the non-default options of the bench sweeps (split dCB programs;
the state-out d a in B4's dC launch)."""
from __future__ import annotations

# Every Triton kernel at the configs the launchers pick for the issue-4 shapes, compiled ahead of time for sm_90
# (CI has no GPU). Runs in a subprocess without TRITON_INTERPRET: under the interpreter triton.language's own jit
# helpers (tl.zeros, tl.sigmoid, ...) are interpreted functions and cannot be lowered. The launchers run on meta
# tensors inside mamba_kernels.ssd.triton.record_launches, which records (kernel, args, constexprs, warps, stages)
# instead of launching; pointer and int-multiple-of-16 arguments get the divisibility hints the JIT would give.
AOT_SHAPES = {"b4-l4096-h80-p64-n128-g1": (4, 4096, 80, 64, 128, 1, 256),
              "b2-l4096-h32-p128-n128-g32": (2, 4096, 32, 128, 128, 32, 256),
              # chunk 128: where the GPU path runs a requested 256 (mamba_kernels.ssd.interface.compute_chunk_size)
              "b4-l4096-h80-p64-n128-g1-Q128": (4, 4096, 80, 64, 128, 1, 128),
              "b2-l4096-h32-p128-n128-g32-Q128": (2, 4096, 32, 128, 128, 32, 128),
              # chunk 64: the smallest chunk size of the tests (smaller tiles)
              "b4-l4096-h80-p64-n128-g1-Q64": (4, 4096, 80, 64, 128, 1, 64),
              "b2-l4096-h32-p128-n128-g32-Q64": (2, 4096, 32, 128, 128, 32, 64)}
SMEM_LIMIT = {90: 227 * 1024, 80: 163 * 1024}

_AOT_SCRIPT = r"""
import json, re, subprocess, sys, tempfile
import torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from mamba_kernels.ssd import triton as tri

TY = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32", torch.int32: "i32", torch.int64: "i64"}


def ptxas_usage(ptx, arch):
    try:
        from triton.backends.nvidia.compiler import get_ptxas
        tool = get_ptxas(arch)
        path = getattr(tool, "path", None) or tool[0]
        with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
            f.write(ptx)
        gpu = "sm_90a" if arch == 90 else "sm_%d" % arch
        r = subprocess.run([path, "-v", "--gpu-name=" + gpu, f.name, "-o", f.name + ".o"], capture_output=True,
                           text=True, timeout=120)
        out = r.stdout + r.stderr
        regs = re.search(r"Used (\d+) registers", out)
        sp = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", out)
        return (int(regs.group(1)) if regs else None), ([int(sp.group(1)), int(sp.group(2))] if sp else None)
    except Exception:  # noqa: BLE001 - resource usage is informative only
        return None, None


def compile_one(kernel, args, kw, arch):
    opts = {k: kw[k] for k in ("num_warps", "num_stages", "maxnreg") if k in kw}
    cnames = {q.name for q in kernel.params if q.is_constexpr}
    consts = {k: v for k, v in kw.items() if k in cnames}
    vals = dict(zip(kernel.arg_names, args))
    vals.update({k: v for k, v in kw.items() if k not in opts and k not in cnames})
    sig, attrs = {}, {}
    for i, name in enumerate(kernel.arg_names):
        if name in consts:
            sig[name] = "constexpr"
            continue
        v = vals[name]
        if isinstance(v, torch.Tensor):
            sig[name] = "*" + TY[v.dtype]
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif isinstance(v, bool):
            sig[name] = "i1"
        elif isinstance(v, int):
            sig[name] = "i32" if abs(v) < 2 ** 31 else "i64"
            if v != 0 and v % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            sig[name] = "fp32"
    src = ASTSource(fn=kernel, signature=sig, constexprs=consts, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", arch, 64 if arch >= 90 else 32), options=opts)


def launches(b, l, h, p, n, g, Q, arch):
    dev, bf = "meta", torch.bfloat16
    x = torch.empty(b, l, h, p, dtype=bf, device=dev)
    dt = torch.empty(b, l, h, dtype=bf, device=dev)
    A, D, bias = (torch.empty(h, device=dev) for _ in range(3))
    B = torch.empty(b, l, g, n, dtype=bf, device=dev)
    C = torch.empty_like(B)
    with tri.record_launches(arch) as rf:
        _, _, s_in, _ = tri.ssd_fwd(x, dt, A, B, C, Q, D, x, bias, True, None, None, None, need_ypre=False)
    old = tri._FWD["scan"]
    tri._FWD["scan"] = "heads" if old == "legacy" else "legacy"  # the A/B alternative of the forward chunk scan
    try:
        with tri.record_launches(arch) as rl:
            tri.ssd_fwd(x, dt, A, B, C, Q, D, x, bias, True, None, None, None, need_ypre=False)
    finally:
        tri._FWD["scan"] = old
    rf.launches += [r for r in rl.launches if r[0] in (tri._ssd_chunk_scan_kernel, tri._ssd_scan_heads_kernel)]
    # K0 and K1 as one launch (MK_SSD_PREP_ONE_LAUNCH, where the CUDA output stage runs: not on meta tensors)
    with tri.record_launches(arch) as rp:
        *_, Qs, _, kind, _, sdt, cfg, lay = tri._setup(x, B, Q, None)
        tri._cumsum_cb_fwd(dt, A, bias, True, None, C, B, lay, b, l, h, g, n, Qs, kind, sdt, cfg)
    rf.launches += rp.launches
    with tri.record_launches(arch) as rb:
        tri.ssd_bwd(x, None, None, x, dt, A, B, C, Q, D, x, bias, True, None, None, None, x, s_in)
    tri._FWD["bwd_dx"] = "heads" if tri._FWD["bwd_dx"] == "legacy" else "legacy"  # the other dx kernel
    try:
        with tri.record_launches(arch) as rl:
            tri.ssd_bwd(x, None, None, x, dt, A, B, C, Q, D, x, bias, True, None, None, None, x, s_in)
    finally:
        tri._FWD["bwd_dx"] = "heads" if tri._FWD["bwd_dx"] == "legacy" else "legacy"
    rb.launches += [r for r in rl.launches if "dx" in r[0].__name__]
    # the split-program option of the bench sweeps (a group's heads over several dCB programs)
    tri._CFG_OVERRIDE.update(bwd_dcb=dict(HSPLIT=4))
    old = dict(tri._FWD)
    tri._FWD.update(scan="legacy", bwd_dx="legacy")
    try:
        with tri.record_launches(arch) as rs:
            tri.ssd_bwd(x, None, None, x, dt, A, B, C, Q, D, x, bias, True, None, None, None, x, s_in)
    finally:
        tri._CFG_OVERRIDE.clear()
        tri._FWD.update(old)
    alt = [r for r in rs.launches if r[0] is tri._ssd_bwd_dcb_kernel]
    # the state-out d a in the dx kernels (_FWD["da_out"] = "dx", the A/B alternative): both dx kernels with it
    old = dict(tri._FWD)
    try:
        for dx_kind in ("legacy", "heads"):
            tri._FWD.update(da_out="dx", bwd_dx=dx_kind)
            with tri.record_launches(arch) as rd:
                tri.ssd_bwd(x, None, None, x, dt, A, B, C, Q, D, x, bias, True, None, None, None, x, s_in)
            alt += [r for r in rd.launches if "dx" in r[0].__name__]
    finally:
        tri._FWD.update(old)
    return ([("fwd",) + r for r in rf.launches] + [("bwd",) + r for r in rb.launches] +
            [("alt",) + r for r in alt])


res = []
for shape, arch in json.loads(sys.argv[1]):
    for phase, kernel, args, kw, _grid in launches(*shape, arch):
        k = compile_one(kernel, args, kw, arch)
        regs, spills = ptxas_usage(k.asm["ptx"], arch)
        res.append(dict(shape=shape, arch=arch, phase=phase, kernel=kernel.__name__, shared=k.metadata.shared,
                        cubin="cubin" in k.asm, regs=regs, spills=spills, num_warps=kw["num_warps"],
                        num_stages=kw["num_stages"]))
print("AOT-RESULT " + json.dumps(res))
"""


def _aot_compile(jobs):
    import json
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", _AOT_SCRIPT, json.dumps(jobs)], capture_output=True, text=True,
                       env=env, cwd=root, timeout=600)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("AOT-RESULT ")]
    assert r.returncode == 0 and line, f"AOT compile failed:\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    return json.loads(line[-1][len("AOT-RESULT "):])


def test_triton_kernels_compile_for_sm90():
    """Every Triton kernel (both kernels of each A/B pair in mamba_kernels.ssd.triton._FWD) at the launchers'
    configs for both issue-4 shapes lowers to an sm_90 cubin within the 227 KB shared-memory limit (resource usage
    printed for the record: pytest -s)."""
    res = _aot_compile([[list(s), 90] for s in AOT_SHAPES.values()])
    from mamba_kernels.ssd import triton as tri
    expected = {n for n in dir(tri) if n.startswith("_ssd_") and n.endswith("_kernel")}
    assert {r["kernel"] for r in res} == expected
    for r in res:
        print(f"sm_{r['arch']} {r['shape']} {r['phase']} {r['kernel']}: shared {r['shared'] / 1024:.1f} KB, "
              f"{r['regs']} regs, spills {r['spills']}, {r['num_warps']} warps, {r['num_stages']} stages")
        assert r["cubin"], r
        assert r["shared"] <= SMEM_LIMIT[90], r



def _default_launch_options(b, l, h, p, n, g, Q, arch):
    """{kernel name: constexprs + launch options} of one bf16 forward + backward at the default variants, recorded
    on meta tensors for sm_<arch> (in this process: recording does not use the interpreter)."""
    import torch
    from mamba_kernels.ssd import triton as tri
    x = torch.empty(b, l, h, p, dtype=torch.bfloat16, device="meta")
    dt = torch.empty(b, l, h, dtype=torch.bfloat16, device="meta")
    A, D, bias = (torch.empty(h, device="meta") for _ in range(3))
    B = torch.empty(b, l, g, n, dtype=torch.bfloat16, device="meta")
    with tri.record_launches(arch) as rec:
        _, _, s_in, _ = tri.ssd_fwd(x, dt, A, B, B, Q, D, x, bias, True, None, None, None)
        tri.ssd_bwd(x, None, None, x, dt, A, B, B, Q, D, x, bias, True, None, None, None, x, s_in)
    return {kernel.__name__: kw for kernel, _, kw, _ in rec.launches}


def test_state_walk_and_dcb_configs_by_walk_count():
    """The launch configs the H200 sweeps chose (sm_90, bf16, n 128; recorded, not compiled): more state walks than
    SMs (shape 1: 320) run the walks F1 / B1 with 4 warps in 64-token steps under a 168-register cap; one wave of
    walks (shape 2: 128) keeps 8 warps, the whole chunk a step and no cap; dCB is capped at both, the forward scan at
    shape 1 (p 64, chunk 128) only; sm_80 caps nothing."""
    many = _default_launch_options(*AOT_SHAPES["b4-l4096-h80-p64-n128-g1-Q128"], 90)
    for name, stages in (("_ssd_state_fwd_kernel", 3), ("_ssd_state_bwd_kernel", 1)):
        kw = many[name]
        assert (kw["num_warps"], kw["num_stages"], kw["BS"], kw.get("maxnreg")) == (4, stages, 64, 168), (name, kw)
    assert many["_ssd_bwd_dcb_kernel"].get("maxnreg") == 168
    # the forward scan at p 64, chunk 128: 32-row blocks, 2 warps, 1 stage, 128-register cap (session-12 sweep)
    kw = many["_ssd_chunk_scan_kernel"]
    assert (kw["BM"], kw["num_warps"], kw["num_stages"], kw.get("maxnreg")) == (32, 2, 1, 128), kw
    one_wave = _default_launch_options(*AOT_SHAPES["b2-l4096-h32-p128-n128-g32-Q128"], 90)
    for name in ("_ssd_state_fwd_kernel", "_ssd_state_bwd_kernel"):
        kw = one_wave[name]
        assert (kw["num_warps"], kw["BS"], kw.get("maxnreg")) == (8, 128, None), (name, kw)
    assert one_wave["_ssd_bwd_dcb_kernel"].get("maxnreg") == 168
    assert one_wave["_ssd_chunk_scan_kernel"].get("maxnreg") is None  # p 128: 64-row blocks, no cap
    sm80 = _default_launch_options(*AOT_SHAPES["b4-l4096-h80-p64-n128-g1-Q128"], 80)
    assert all(kw.get("maxnreg") is None for kw in sm80.values()), sm80
