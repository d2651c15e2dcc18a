"""Chunked SSD (Mamba-2 scan) benchmarks (H200 targets in issue 4), bf16 activations, fp32 A / D / dt_bias,
softplus on dt, D (h,) and gate z on, chunk 256.

Shapes: Mamba-2 2.7B layer (b4 l4096 h80 p64 n128 g1) and Mamba2-in-Llama3-8B layer (b2 l4096 h32 p128 n128 g32).

Useful FLOPs (anchors.md section 6): forward = b*l*h*(2*Q*p + 4*p*n) + b*l*g*(2*Q*n)
  (intra-chunk (CB o L) X, chunk states + state-to-output, and C B^T once per group); the backward is counted as
  2x the forward, so fwd+bwd = 3x.
Bytes (minimum HBM traffic, bf16 = 2 B): forward reads x, z, dt, B, C and writes out:
  2*(3*b*l*h*p + b*l*h + 2*b*l*g*n); fwd+bwd adds the backward's reads (dout, x, z, dt, B, C) and writes
  (dx, dz, ddt, dB, dC): 2*(5*b*l*h*p + 2*b*l*h + 4*b*l*g*n).
Anchors: mamba_ssm mamba_chunk_scan_combined (same arguments), fla chunk_simple_gla forward (q=C, k=B expanded
per head, v=x*dt, g=A*dt precomputed outside the timing; no D / z, so it does slightly less work).

Expected times of mamba_kernels:triton (H200: 4.27 TB/s copy, 687 TFLOP/s bf16 GEMM; estimates, see the
performance notes in mamba_kernels/ssd/triton.py; the one-head scan's estimates were 3x too low when measured):
  b4 l4096 h80 p64 n128 g1: minimum bytes 0.51 GB (0.12 ms), useful causal FLOPs 64 GFLOP (0.094 ms): memory-bound.
    Our two passes (state walk F1, head-block chunk scan F2) move ~0.85 GB: 0.2 ms at the copy rate, expected
    0.25-0.35 ms (target 0.30; previous one-head scan 0.741 ms, mamba_ssm 0.786 ms same session).
  b2 l4096 h32 p128 n128 g32: minimum bytes 0.34 GB (0.079 ms), 34 GFLOP; two passes ~0.54 GB: expected
    0.15-0.25 ms (target 0.28; previous 0.395 ms).
Diagnostics: bench_ssd_kernels times every kernel of one forward / backward alone; bench_ssd_configs.py sweeps
block configs / kernel variants one kernel at a time (mamba_kernels.ssd.triton._CFG_OVERRIDE / _FWD);
bench_ssd_fwd_legacy_scan is the whole forward with the one-head scan.
The forward is also timed as a CUDA-graph replay (the non-varlen path is sync-free and capturable), which removes
the host launch overhead of its 4 kernels.
"""
from __future__ import annotations

import pytest
import torch

import anchors
from mamba_kernels.ssd import ssd_chunked_scan

BF16 = torch.bfloat16
Q = 256
SHAPES = {
    "b4-l4096-h80-p64-n128-g1": dict(b=4, l=4096, h=80, p=64, n=128, g=1),
    "b2-l4096-h32-p128-n128-g32": dict(b=2, l=4096, h=32, p=128, n=128, g=32),
}


def _inputs(b, l, h, p, n, g, grad=False, device="cuda"):
    gen = torch.Generator(device=device).manual_seed(0)
    r = lambda *s, dtype=BF16, scale=1.0: (torch.randn(*s, device=device, generator=gen) * scale).to(dtype)  # noqa
    inp = dict(x=r(b, l, h, p), dt=r(b, l, h, scale=0.5), A=-(torch.rand(h, device=device, generator=gen) + 0.5),
               B=r(b, l, g, n, scale=0.5), C=r(b, l, g, n, scale=0.5), D=r(h, dtype=torch.float32),
               z=r(b, l, h, p), dt_bias=r(h, dtype=torch.float32, scale=0.5) - 1.0)
    if grad:
        for v in inp.values():
            v.requires_grad_(True)
    return inp


def _flops(b, l, h, p, n, g, chunk=Q):
    return b * l * h * (2 * chunk * p + 4 * p * n) + b * l * g * 2 * chunk * n


def _bytes(b, l, h, p, n, g, bwd=False):
    fwd = 2 * (3 * b * l * h * p + b * l * h + 2 * b * l * g * n)
    return fwd + (2 * (5 * b * l * h * p + 2 * b * l * h + 4 * b * l * g * n) if bwd else 0)


def _ours(backend, chunk=Q):
    def fn(inp):
        return ssd_chunked_scan(inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], chunk, D=inp["D"], z=inp["z"],
                                dt_bias=inp["dt_bias"], dt_softplus=True, backend=backend)
    return fn


def _need_cuda_kernel():
    from mamba_kernels.ssd import cuda as ssd_cuda
    if not ssd_cuda.available():
        pytest.skip("mamba_kernels._cuda lacks _ssd_fwd_cuda (CUDA extension not built with the ssd kernel)")


def _mamba(ms):
    def fn(inp):
        return ms.mamba_chunk_scan_combined(inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], Q, D=inp["D"],
                                            z=inp["z"], dt_bias=inp["dt_bias"], dt_softplus=True)
    return fn


def _fwd_bwd(fn, inp):
    leaves = [v for v in inp.values() if v.requires_grad]
    gout = torch.randn_like(inp["x"])

    def run():
        y = fn(inp)
        return torch.autograd.grad(y, leaves, gout)
    return run


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("impl", ["mamba_kernels:triton", "mamba_kernels:cuda", "mamba_kernels:cuda_fused",
                                  "mamba_kernels:cuda_tbwd", "mamba_ssm"])
@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd"])
def bench_ssd(benchmark, harness, mode, impl, shape, monkeypatch):
    s = SHAPES[shape]
    if impl.startswith("mamba_kernels:cuda"):
        # CUDA forward (mamba_kernels:cuda: the chunk-parallel pipeline, unless MK_SSD_CUDA_FUSED=1;
        # mamba_kernels:cuda_fused: the fused kernel); fwd_bwd: + the CUDA backward (cuda_tbwd: + the Triton
        # backward, MK_SSD_CUDA_BWD=0)
        _need_cuda_kernel()
        from mamba_kernels.ssd import cuda as ssd_cuda
        monkeypatch.setattr(ssd_cuda, "FORCE_FUSED", impl == "mamba_kernels:cuda_fused")
        monkeypatch.setenv("MK_SSD_CUDA_BWD", "0" if impl == "mamba_kernels:cuda_tbwd" else "1")
        fn = _ours("cuda")
    elif impl == "mamba_kernels:triton":
        fn = _ours("triton")
    else:
        fn = _mamba(anchors.mamba_ssm_triton())
    bwd = mode == "fwd_bwd"
    inp = _inputs(**s, grad=bwd)
    call = _fwd_bwd(fn, inp) if bwd else (lambda: fn(inp))
    flops = _flops(**s) * (3 if bwd else 1)
    harness.measure(benchmark, kernel=f"ssd_{mode}", impl=impl, shape=dict(s, chunk=Q), dtype="bfloat16",
                    fn=call, bytes=_bytes(**s, bwd=bwd), flops=flops,
                    note=("D, z, dt_bias, softplus; grads of all inputs" if bwd else "D, z, dt_bias, softplus")
                    + _run_chunk_note("triton" if impl == "mamba_kernels:triton" else None))


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("impl", ["mamba_kernels:triton", "mamba_ssm"])
def bench_ssd_fwd_nogate(benchmark, harness, impl, shape):
    """The forward without the gate z (D, dt_bias, softplus as above): how Mamba-2 layers with a gated RMSNorm call
    the scan (mamba_ssm's Mamba2 passes z=None there), and the configuration of anchors.md section 0's figures
    (no z among their listed arguments)."""
    s = SHAPES[shape]
    inp = _inputs(**s)
    inp["z"] = None
    fn = _ours("triton") if impl == "mamba_kernels:triton" else _mamba(anchors.mamba_ssm_triton())
    b, l, h, p = (s[k] for k in ("b", "l", "h", "p"))
    harness.measure(benchmark, kernel="ssd_fwd_nogate", impl=impl, shape=dict(s, chunk=Q), dtype="bfloat16",
                    fn=lambda: fn(inp), bytes=_bytes(**s) - 2 * b * l * h * p, flops=_flops(**s),
                    note="D, dt_bias, softplus; no z"
                    + _run_chunk_note("triton" if impl == "mamba_kernels:triton" else None))


def _run_chunk_note(backend):
    """The chunk size our kernels run at when it differs from the requested Q (no chunk states are returned:
    mamba_kernels.ssd.interface.compute_chunk_size)."""
    from mamba_kernels.ssd.interface import compute_chunk_size
    q = compute_chunk_size(backend, Q, False, "cuda") if backend else Q
    return "" if q == Q else f"; kernels run at chunk {q}"


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("impl", ["mamba_kernels:cuda", "mamba_kernels:cuda_tbwd"])
def bench_ssd_cuda_bwd(benchmark, harness, impl, shape, monkeypatch):
    """The backward alone, after one CUDA forward whose graph is kept: the CUDA backward (mamba_kernels:cuda) or the
    Triton backward on the same saved tensors (mamba_kernels:cuda_tbwd, MK_SSD_CUDA_BWD=0)."""
    _need_cuda_kernel()
    monkeypatch.setenv("MK_SSD_CUDA_BWD", "0" if impl == "mamba_kernels:cuda_tbwd" else "1")
    s = SHAPES[shape]
    inp = _inputs(**s, grad=True)
    leaves = [v for v in inp.values() if v.requires_grad]
    y = _ours("cuda")(inp)
    gout = torch.randn_like(y)
    harness.measure(benchmark, kernel="ssd_bwd", impl=impl, shape=dict(s, chunk=Q), dtype="bfloat16",
                    fn=lambda: torch.autograd.grad(y, leaves, gout, retain_graph=True),
                    bytes=_bytes(**s, bwd=True) - _bytes(**s), flops=2 * _flops(**s),
                    note="D, z, dt_bias, softplus; grads of all inputs")


@pytest.mark.parametrize("shape", list(SHAPES))
def bench_ssd_fwd_graph(benchmark, harness, shape):
    """Our forward replayed from a CUDA graph (no host launch overhead; the non-varlen path never syncs)."""
    s = SHAPES[shape]
    fn = _ours("triton")
    inp = _inputs(**s)
    harness.measure(benchmark, kernel="ssd_fwd", impl="mamba_kernels:triton", shape=dict(s, chunk=Q),
                    dtype="bfloat16", fn=lambda: fn(inp), bytes=_bytes(**s), flops=_flops(**s), graph=True,
                    note="D, z, dt_bias, softplus" + _run_chunk_note("triton"))


@pytest.mark.parametrize("shape", list(SHAPES))
def bench_ssd_fla_fwd(benchmark, harness, shape):
    """fla chunk_simple_gla forward on the equivalent problem (no D / z; its backward needs Triton >= 3.7.1 on
    Hopper)."""
    s = SHAPES[shape]
    gla = anchors.fla_chunk_simple_gla()
    b, l, h, p, n, g = (s[k] for k in "blhpng")
    inp = _inputs(**s)
    dt = torch.nn.functional.softplus(inp["dt"].float() + inp["dt_bias"])
    q = inp["C"].repeat_interleave(h // g, dim=2).contiguous()
    k = inp["B"].repeat_interleave(h // g, dim=2).contiguous()
    v = (inp["x"].float() * dt[..., None]).to(BF16)
    gl = (dt * inp["A"]).contiguous()
    harness.measure(benchmark, kernel="ssd_fwd", impl="fla", shape=dict(s, chunk=64), dtype="bfloat16",
                    fn=lambda: gla(q, k, v, g=gl, scale=1.0), bytes=_bytes(**s), flops=_flops(**s, chunk=64),
                    note="chunk_simple_gla fwd, B/C pre-expanded per head, v=x*dt and g=A*dt precomputed, no D/z")


def bench_ssd_ref_small(benchmark, harness):
    """The float32 python reference at a small shape, for scale."""
    s = dict(b=1, l=1024, h=8, p=64, n=64, g=1)
    inp = _inputs(**s)
    fn = _ours("ref")
    harness.measure(benchmark, kernel="ssd_fwd", impl="ref", shape=dict(s, chunk=Q), dtype="bfloat16",
                    fn=lambda: fn(inp), bytes=_bytes(**s), flops=_flops(**s), note="python_ref, fp32 math")


def bench_ssd_triton_small(benchmark, harness):
    s = dict(b=1, l=1024, h=8, p=64, n=64, g=1)
    inp = _inputs(**s)
    fn = _ours("triton")
    harness.measure(benchmark, kernel="ssd_fwd", impl="mamba_kernels:triton", shape=dict(s, chunk=Q),
                    dtype="bfloat16", fn=lambda: fn(inp), bytes=_bytes(**s), flops=_flops(**s))


@pytest.mark.parametrize("shape", list(SHAPES))
def bench_ssd_fwd_legacy_scan(benchmark, harness, shape):
    """A/B: the forward with the previous chunk-scan kernel (one head per program) instead of the head-block one."""
    from mamba_kernels.ssd import triton as tri
    s = SHAPES[shape]
    fn = _ours("triton")
    inp = _inputs(**s)
    old = tri._FWD["scan"]
    tri._FWD["scan"] = "legacy"
    try:
        harness.measure(benchmark, kernel="ssd_fwd", impl="mamba_kernels:triton[legacy-scan]",
                        shape=dict(s, chunk=Q), dtype="bfloat16", fn=lambda: fn(inp), bytes=_bytes(**s),
                        flops=_flops(**s), note="D, z, dt_bias, softplus; _FWD['scan'] = 'legacy'")
    finally:
        tri._FWD["scan"] = old


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("phase", ["fwd", "bwd"])
def bench_ssd_kernels(benchmark, harness, phase, shape):
    """Per-kernel GPU times of one forward (no pre-gate store, as without autograd) or one backward: the launches
    are recorded, replayed once in order (so every intermediate holds real values), then each is timed alone.
    Rows: kernel ssd_<phase>_part, impl mamba_kernels:triton:<launch index>:<kernel name>."""
    from mamba_kernels.ssd import triton as tri
    s = SHAPES[shape]
    inp = _inputs(**s)
    x, dt, A, B, C, D, z, bias = (inp[k] for k in ("x", "dt", "A", "B", "C", "D", "z", "dt_bias"))
    args = (x, dt, A, B, C, Q, D, z, bias, True, None, None, None)
    _, ypre, s_in, _ = tri.ssd_fwd(*args, need_ypre=True)
    major, minor = torch.cuda.get_device_capability()
    with tri.record_launches(10 * major + minor) as rec:
        if phase == "fwd":
            tri.ssd_fwd(*args, need_ypre=False)
        else:
            tri.ssd_bwd(torch.randn_like(x), None, None, x, dt, A, B, C, Q, D, z, bias, True, None, None, None,
                        ypre, s_in)
    for i in range(len(rec.launches)):
        rec.replay(i)
    torch.cuda.synchronize()
    for i, (kernel, *_rest) in enumerate(rec.launches):
        harness.measure(benchmark if i == 0 else None, kernel=f"ssd_{phase}_part",
                        impl=f"mamba_kernels:triton:{i}:{kernel.__name__}", shape=dict(s, chunk=Q),
                        dtype="bfloat16", fn=lambda i=i: rec.replay(i), bytes=0, flops=0,
                        note="one kernel of the launch sequence, replayed alone")


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("chunk", [64, 256])
@pytest.mark.parametrize("states", ["states", "nostates"])
@pytest.mark.parametrize("impl", ["mamba_kernels:cuda", "mamba_kernels:cuda_fused"])
def bench_ssd_cuda_fwd_kernel(benchmark, harness, shape, chunk, states, impl):
    """The CUDA forward alone (outputs preallocated, no ypre). impl mamba_kernels:cuda: the default path of
    torch.ops.mamba_kernels._ssd_fwd_cuda, the chunk-parallel pipeline (3 kernels; nostates: the binding then
    allocates the chunk-state scratch itself, the pipeline needs it either way), unless MK_SSD_CUDA_FUSED=1 is set;
    mamba_kernels:cuda_fused: torch.ops.mamba_kernels._ssd_fwd_cuda_fused, the fused kernel (tiles of 64 tokens
    whatever the chunk: chunk only sets how often it writes states). With the fp32 chunk-entry states (what the
    public op writes: b * l / chunk * h * p * n * 4 bytes, 168 MB at shape 1 and chunk 256) or without them."""
    _need_cuda_kernel()
    s = SHAPES[shape]
    b, l, h, p = (s[k] for k in ("b", "l", "h", "p"))
    inp = _inputs(**s)
    out = torch.empty_like(inp["x"])
    nslots = b * (-(-l // chunk))
    sin = torch.empty(nslots if states == "states" else 0, h, p, n, device="cuda", dtype=torch.float32)
    fin = torch.empty(b, h, p, n, device="cuda", dtype=torch.float32)
    empty = torch.empty(0, device="cuda", dtype=BF16)
    fused = impl == "mamba_kernels:cuda_fused"
    op = torch.ops.mamba_kernels._ssd_fwd_cuda_fused if fused else torch.ops.mamba_kernels._ssd_fwd_cuda

    def run():
        op(inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], inp["D"], inp["z"], inp["dt_bias"], None, None, None,
           chunk, True, False, 0.0, 0.0, out, empty, sin, fin)
    extra = sin.numel() * 4
    # executed FLOPs of the 64-token tiles (C B^T and S x on the causal 16-row blocks: 5/8 of the square,
    # per head and p block) + C h^T + state update (the pipeline: + the chunk-state pass, 2 p n a token)
    flops = b * l * h * (2 * 64 * n * 5 / 8 * -(-p // 64) + 2 * 64 * p * 5 / 8 + 4 * p * n)
    if not fused:
        flops += b * l * h * 2 * p * n
        extra = 4 * nslots * h * p * n * 4  # chunk states written, read + entering states written, read
    harness.measure(benchmark, kernel="ssd_fwd_kernel", impl=impl, shape=dict(s, chunk=chunk),
                    dtype="bfloat16", fn=run, bytes=_bytes(**s) + extra, flops=int(flops),
                    note=f"kernel only, {states}; flops = executed (64-token tiles)")


@pytest.mark.parametrize("impl", ["mamba_kernels:cuda_state", "mamba_kernels:triton"])
def bench_ssd_state_stage(benchmark, harness, impl):
    """The forward's state stage F1 alone at b4 l4096 h80 p64 n128 g1, chunk 128 (what the library's forward runs):
    the CUDA stage (csrc/ssd/ssd_state_kernel.cuh, W (head, p half) walks a CTA) against the Triton walk
    (_ssd_state_fwd_kernel) on the same dt' / a. Bytes: x and B read once, the bf16 chunk-entry states and the fp32
    final states written (the stage's floor)."""
    from mamba_kernels.ssd import cuda_walk
    from mamba_kernels.ssd import triton as tri
    s = SHAPES["b4-l4096-h80-p64-n128-g1"]
    b, l, h, p = (s[k] for k in ("b", "l", "h", "p"))
    q = 128
    inp = _inputs(**s)
    x, B = inp["x"], inp["B"]
    _, _, _, _, _, _, hpg, _, dev, kind, prec, sdt, cfg, lay = tri._setup(x, B, q, None)
    dtp, a = tri._cumsum_fwd(inp["dt"], inp["A"], inp["dt_bias"], True, None, lay, b, l, h, q, cfg)
    states_in = torch.empty(lay.nk, h, p, n, device=dev, dtype=sdt)
    final = torch.empty(b, h, p, n, device=dev, dtype=torch.float32)
    if impl == "mamba_kernels:cuda_state":
        if not cuda_walk.serves(x, p, n, q, hpg, "_ssd_state_cuda", (x, B)):
            pytest.skip("the CUDA state stage is not built or does not serve this GPU")
        fn = lambda: cuda_walk.state(x, B, dtp, a, None, lay, tri._num_sms(dev), states_in, final)  # noqa: E731
    else:
        fn = lambda: tri._state_fwd_triton(x, B, dtp, a, None, states_in, final, lay, l, h, p, n, hpg, g, q,  # noqa
                                           dev, kind, prec, cfg)
    nbytes = 2 * b * l * h * p + 2 * b * l * g * n + 2 * lay.nk * h * p * n + 4 * b * h * p * n
    harness.measure(benchmark, kernel="ssd_state_stage", impl=impl, shape=dict(s, chunk=q), dtype="bfloat16",
                    fn=fn, bytes=nbytes, flops=2 * b * l * h * p * n, note="F1 alone, chunk 128")
