"""verify_step's engine contract: op registration (opcheck), bad input, debug checks, poisoned pools,
DLPack arrays, CUDA-graph capture."""
from __future__ import annotations

import pytest
import torch

import mamba_kernels as mk
from mamba_kernels.verify import interface as vi
from mamba_kernels.testing import assert_close
from test_verify import BACKENDS, Layer, device_for

I32 = torch.int32


def _setup(dev="cpu", b=2, k=3, kind="mamba2", **kw):
    layer = Layer(kind, device=dev, **kw)
    cache = layer.cache(6, 4)
    cache.state.normal_()
    x, dt, B, C, z = layer.inputs(b, k)
    slots = torch.tensor([4, 1][:b], dtype=I32, device=dev)
    acc = torch.zeros(b, dtype=I32, device=dev)
    return layer, cache, (x, dt, B, C, z), slots, acc


def test_opcheck_custom_ops():
    layer, cache, (x, dt, B, C, z), slots, acc = _setup()
    y = torch.empty_like(x)
    args = (x, dt.unsqueeze(-1), layer.A.view(-1, 1, 1), B, C, layer.D.unsqueeze(-1).expand(4, 8).contiguous(), z,
            layer.dt_bias.unsqueeze(-1), cache.state, cache.ring_x, cache.ring_B, cache.ring_dt, cache.meta, slots,
            acc, False, None, y, True, float("-inf"), float("inf"), False, "ref")
    torch.library.opcheck(vi._verify_step_op, args)
    dc = 4 * 8 + 2 * 8
    cc = mk.VerifyCache.allocate(6, nheads=4, headdim=8, dstate=8, max_draft=4, conv_dim=dc, conv_width=4,
                                 dtype=torch.float32)
    xc = torch.randn(2, 3, dc)
    out = torch.empty_like(xc)
    torch.library.opcheck(vi._conv_verify_step_op, (xc, cc.conv_window, cc.conv_meta, torch.randn(dc, 4), None,
                                                    slots, acc, False, None, out, True, "ref"))
    torch.library.opcheck(vi._verify_step_fused_op, (
        xc, dt.unsqueeze(-1), layer.A.view(-1, 1, 1), None, z, None, torch.randn(dc, 4), torch.randn(dc), True,
        cc.conv_window, cc.state, cc.ring_x, cc.ring_B, cc.ring_dt, cc.meta, slots, acc, False, None, y, True,
        float("-inf"), float("inf"), False, "ref"))


@pytest.mark.parametrize("case,exc,match", [
    ("x_rank", ValueError, "x"),
    ("dt_shape", ValueError, "dt"),
    ("A_dtype", TypeError, "A"),
    ("B_groups", ValueError, "h"),
    ("slots_dtype", TypeError, "slots"),
    ("both_accept", ValueError, "num_accepted"),
    ("k_too_big", ValueError, "max_draft"),
    ("layout_mismatch", ValueError, "Mamba-1"),
    ("parents_shape", ValueError, "parents"),
    ("out_shape", ValueError, "out"),
    ("cache_type", TypeError, "cache"),
    ("x_dtype_vs_ring", TypeError, "ring_x"),
])
def test_bad_input(case, exc, match):
    layer, cache, (x, dt, B, C, z), slots, acc = _setup()
    kw = dict(z=z, D=layer.D, dt_bias=layer.dt_bias)
    args = [x, dt, layer.A, B, C, cache, slots, acc]
    if case == "x_rank":
        args[0] = x[0]
    elif case == "dt_shape":
        args[1] = dt[:, :, :2]
    elif case == "A_dtype":
        args[2] = layer.A.double()
    elif case == "B_groups":
        args[3] = torch.randn(2, 3, 3, 8)
        args[4] = torch.randn(2, 3, 3, 8)
    elif case == "slots_dtype":
        args[6] = slots.long()
    elif case == "both_accept":
        kw["accepted_node"] = acc
    elif case == "k_too_big":
        x, dt, B, C, z = layer.inputs(2, 5)
        args[:5] = [x, dt, layer.A, B, C]
        kw["z"] = z
    elif case == "layout_mismatch":
        args[5] = Layer("mamba1").cache(6, 4)
    elif case == "parents_shape":
        kw["parents"] = torch.zeros(2, 2, dtype=I32)
    elif case == "out_shape":
        kw["out"] = torch.empty(2, 3, 4, 7)
    elif case == "cache_type":
        args[5] = {"state": cache.state}
    elif case == "x_dtype_vs_ring":
        args[0], args[1], args[3], args[4] = x.half(), dt.half(), B.half(), C.half()
        kw["z"] = z.half()
    with pytest.raises(exc, match=match):
        mk.verify_step(*args, backend="ref", **kw)


@pytest.mark.parametrize("backend", BACKENDS)
def test_debug_check_rejects_overlong_accept_and_bad_slot(backend):
    dev = device_for(backend)
    layer, cache, (x, dt, B, C, z), slots, acc = _setup(dev)
    mk.verify_step(x, dt, layer.A, B, C, cache, slots, acc, z=z, backend=backend)
    with pytest.raises(ValueError, match="num_accepted"):
        mk.verify_step(x, dt, layer.A, B, C, cache, slots, torch.tensor([4, 0], dtype=I32, device=dev), z=z,
                       backend=backend, debug=True)
    with pytest.raises(ValueError, match="slots"):
        mk.verify_step(x, dt, layer.A, B, C, cache, torch.tensor([6, 0], dtype=I32, device=dev), acc, z=z,
                       backend=backend, debug=True)
    with pytest.raises(ValueError, match="parents"):
        mk.verify_step(x, dt, layer.A, B, C, cache, slots, acc, z=z, backend=backend, debug=True,
                       parents=torch.tensor([[-1, 1, 0], [-1, 0, 0]], dtype=I32, device=dev))


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_of_range_inputs_never_write_out_of_bounds(backend):
    """Without the debug check: an accepted count above the pending count is clamped, a slot >= S is treated
    as padding; nothing outside the addressed slots changes (the pool is poisoned with NaN)."""
    dev = device_for(backend)
    layer, cache, (x, dt, B, C, z), slots, acc = _setup(dev)
    idle = [0, 2, 3, 5]
    for t in (cache.state, cache.ring_x, cache.ring_B, cache.ring_dt):
        t[idle] = float("nan")
    cache.meta[idle] = 7
    snap = {n: getattr(cache, n)[idle].clone() for n in ("state", "ring_x", "ring_B", "ring_dt", "meta")}
    mk.verify_step(x, dt, layer.A, B, C, cache, slots, acc, z=z, backend=backend)
    bad_slots = torch.tensor([4, 6], dtype=I32, device=dev)  # 6 == S: out of range
    y = mk.verify_step(x, dt, layer.A, B, C, cache, bad_slots, torch.tensor([9, 1], dtype=I32, device=dev), z=z,
                       backend=backend)
    assert bool(torch.isfinite(y[0]).all()) and bool((y[1] == 0).all())
    for n, t in snap.items():
        cur = getattr(cache, n)[idle]
        same = torch.equal(cur.view(torch.int32) if cur.dtype == torch.float32 else cur, t.view(torch.int32)
                           if t.dtype == torch.float32 else t) if n != "ring_x" and n != "ring_B" else \
            bool(torch.isnan(cur).all())
        assert same, f"cache.{n} of an unaddressed slot changed"


def test_dlpack_numpy_roundtrip():
    np = pytest.importorskip("numpy")
    layer, cache, (x, dt, B, C, z), slots, acc = _setup()
    ref = mk.verify_step(x, dt, layer.A, B, C, cache.map_tensors(torch.clone), slots, acc, z=z, backend="ref")
    y = mk.verify_step(x.numpy(), dt.numpy(), layer.A.numpy(), B.numpy(), C.numpy(), cache, slots.numpy(),
                       acc.numpy(), z=z.numpy(), backend="ref")
    assert isinstance(y, np.ndarray)
    assert_close(torch.from_numpy(y), ref, torch.float32)


@pytest.mark.gpu
def test_dlpack_cupy_roundtrip():
    cp = pytest.importorskip("cupy")
    layer, cache, (x, dt, B, C, z), slots, acc = _setup("cuda")
    ref = mk.verify_step(x, dt, layer.A, B, C, cache.map_tensors(torch.clone), slots, acc, z=z)
    c = cache.map_tensors(cp.from_dlpack)
    y = mk.verify_step(cp.from_dlpack(x), cp.from_dlpack(dt), layer.A, cp.from_dlpack(B), cp.from_dlpack(C),
                       mk.VerifyCache(*[getattr(c, f) for f in ("state", "ring_x", "ring_B", "ring_dt", "meta")]),
                       cp.from_dlpack(slots), cp.from_dlpack(acc), z=cp.from_dlpack(z))
    assert isinstance(y, cp.ndarray)
    assert_close(torch.from_dlpack(y), ref, torch.float32)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("fused", [False, True], ids=["ssm", "fused"])
def test_cuda_graph_replay_equals_eager(backend, fused):
    """Capture one verify call (k fixed, num_accepted read from a device tensor), replay it over several
    rounds with new inputs copied in, and compare with the same rounds run eagerly on a copy of the cache."""
    device_for(backend)
    h, p, n, g, w, b, k = 8, 32, 32, 2, 4, 16, 4
    dc = h * p + 2 * g * n
    layer = Layer("mamba2", h=h, p=p, n=n, g=g, dtype=torch.bfloat16, device="cuda")
    cache = layer.cache(b + 4, k, ring_len=8, conv=(dc, w))
    cache.state.normal_()
    cache.conv_window.normal_()
    eager = cache.map_tensors(torch.clone)
    slots = torch.randperm(b + 4, device="cuda")[:b].to(I32)
    weight = torch.randn(dc, w, device="cuda")
    static = dict(x=torch.randn(b, k, dc if fused else h * p, device="cuda").to(torch.bfloat16),
                  dt=torch.randn(b, k, h, device="cuda").to(torch.bfloat16),
                  B=torch.randn(b, k, g, n, device="cuda").to(torch.bfloat16),
                  C=torch.randn(b, k, g, n, device="cuda").to(torch.bfloat16),
                  z=torch.randn(b, k, h, p, device="cuda").to(torch.bfloat16),
                  acc=torch.zeros(b, dtype=I32, device="cuda"))
    out = torch.empty(b, k, h, p, device="cuda", dtype=torch.bfloat16)

    def call(c, s, o):
        if fused:
            return mk.verify_step_fused(s["x"], s["dt"], s["z"], c, slots, s["acc"], A=layer.A, conv_weight=weight,
                                        D=layer.D, dt_bias=layer.dt_bias, out=o, backend=backend)
        return mk.verify_step(s["x"].view(b, k, h, p), s["dt"], layer.A, s["B"], s["C"], c, slots, s["acc"],
                              z=s["z"], out=o, backend=backend, **layer.params())

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    warm = cache.map_tensors(torch.clone)
    with torch.cuda.stream(side):
        call(warm, static, out)  # warm-up (compiles Triton kernels) on a scratch cache
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call(cache, static, out)
    gen = torch.Generator(device="cuda").manual_seed(0)
    for r in range(6):
        fresh = {key: (torch.randn(v.shape, device="cuda", generator=gen).to(v.dtype) if v.is_floating_point()
                       else torch.randint(0, k + 1 if r else 1, v.shape, device="cuda", generator=gen).to(I32))
                 for key, v in static.items()}
        for key in static:
            static[key].copy_(fresh[key])
        graph.replay()
        y_eager = call(eager, fresh, None)
        torch.cuda.synchronize()
        assert_close(out, y_eager, torch.bfloat16, factor=0.01, name=f"graph round {r}")
    assert torch.equal(cache.state, eager.state)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only check (on a GPU the kernels run)")
def test_triton_kernels_compile_ahead_of_time_for_sm90():
    """Every Triton kernel the verify launchers start (chain, tree, fused, conv) lowers to a Hopper cubin, at
    the Mamba-2-in-Llama3-8B head shape, without a GPU (interpreted launch recorded, then compiled)."""
    pytest.importorskip("triton")
    from mamba_kernels.testing import aot_compile_launches, record_triton_launches

    h, p, n, g, w, k = 2, 128, 128, 2, 4, 4
    dc = h * p + 2 * g * n
    layer = Layer("mamba2", h=h, p=p, n=n, g=g, dtype=torch.bfloat16)
    cache = layer.cache(3, k, conv=(dc, w))
    slots = torch.tensor([2, 0], dtype=I32)
    acc = torch.zeros(2, dtype=I32)
    x, dt, B, C, z = layer.inputs(2, k)
    par = torch.tensor([[-1, 0, 0, 1], [-1, -1, 1, 2]], dtype=I32)
    launches = []
    for kw in (dict(), dict(parents=par)):
        launches += record_triton_launches(mk.verify_step, x, dt, layer.A, B, C, cache, slots, acc, z=z,
                                           backend="triton", **kw, **layer.params())[1]
    launches += record_triton_launches(mk.verify_step_fused, torch.randn(2, k, dc).to(torch.bfloat16), dt, z, cache,
                                       slots, acc, A=layer.A, conv_weight=torch.randn(dc, w), backend="triton")[1]
    launches += record_triton_launches(mk.conv_verify_step, torch.randn(2, k, dc).to(torch.bfloat16), cache,
                                       torch.randn(dc, w), slots=slots, num_accepted=acc, backend="triton")[1]
    compiled = aot_compile_launches(launches, arch=90)
    names = {c["name"] for c in compiled}
    assert len(names) >= 2 and all(c["has_cubin"] for c in compiled), compiled
    assert all(c["shared"] <= 227 * 1024 for c in compiled), compiled


def test_empty_state_size_is_a_clear_error():
    layer, cache, (x, dt, B, C, z), slots, acc = _setup()
    bad = mk.VerifyCache(cache.state[..., :0], cache.ring_x, cache.ring_B[..., :0], cache.ring_dt, cache.meta)
    with pytest.raises(ValueError, match="state size n"):
        mk.verify_step(x, dt, layer.A, B[..., :0], C[..., :0], bad, slots, acc, backend="ref")
