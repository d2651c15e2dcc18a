"""verify_step: multi-round randomized sessions against the sequential oracle, on every available backend."""
from __future__ import annotations


import pytest
import torch

import mamba_kernels as mk
from mamba_kernels import _backend
from mamba_kernels.testing import assert_close, poison_
from python_ref.verify import ConvVerifyOracle, VerifyOracle, selective_state_update_ref

BACKENDS = ["ref", "cpu", "triton", "cuda"]
ON_GPU = torch.cuda.is_available()


def device_for(backend: str) -> str:
    if not _backend.available(backend):
        pytest.skip(f"backend {backend}: {_backend.backends()[backend]['reason']}")
    if backend == "cuda" or (backend == "triton" and ON_GPU):
        return "cuda"
    return "cpu"


class Layer:
    """Random parameters of one SSM layer (Mamba-2: h heads of p; Mamba-1: d channels) and input makers."""

    def __init__(self, kind, *, h=4, p=8, d=96, n=8, g=1, dtype=torch.float32, state_dtype=torch.float32,
                 use_D=True, use_z=True, use_bias=True, device="cpu", dt_limit=None):
        self.kind, self.n, self.g, self.dtype, self.device = kind, n, g, dtype, device
        self.state_dtype, self.dt_limit = state_dtype, dt_limit
        f32 = dict(dtype=torch.float32, device=device)
        if kind == "mamba2":
            self.h, self.p = h, p
            self.A = -torch.rand(h, **f32) * 2 - 0.1
            self.D = torch.randn(h, **f32) if use_D else None
            self.dt_bias = torch.randn(h, **f32) * 0.5 if use_bias else None
            self.xshape = (h, p)
            self.dtshape = (h,)
        else:
            self.d = d
            self.A = -torch.rand(d, n, **f32) * 2 - 0.1
            self.D = torch.randn(d, **f32) if use_D else None
            self.dt_bias = torch.randn(d, **f32) * 0.5 if use_bias else None
            self.xshape = (d,)
            self.dtshape = (d,)
        self.use_z = use_z

    def cache(self, S, kmax, ring_len=None, conv=None):
        if self.kind == "mamba2":
            kw = dict(nheads=self.h, headdim=self.p)
        else:
            kw = dict(d=self.d)
        if conv is not None:
            kw.update(conv_dim=conv[0], conv_width=conv[1])
        return mk.VerifyCache.allocate(S, dstate=self.n, max_draft=kmax, ngroups=self.g, ring_len=ring_len,
                                       dtype=self.dtype, state_dtype=self.state_dtype, device=self.device, **kw)

    def state_shape(self):
        return (*self.xshape, self.n) if self.kind == "mamba2" else (self.d, self.n)

    def inputs(self, b, k):
        kw = dict(dtype=self.dtype, device=self.device)
        x = torch.randn(b, k, *self.xshape, **kw)
        dt = (torch.randn(b, k, *self.dtshape, **kw) * 0.5)
        B = torch.randn(b, k, self.g, self.n, **kw)
        C = torch.randn(b, k, self.g, self.n, **kw)
        z = torch.randn(b, k, *self.xshape, **kw) if self.use_z else None
        return x, dt, B, C, z

    def params(self):
        return dict(D=self.D, dt_bias=self.dt_bias, dt_softplus=True, dt_limit=self.dt_limit)


def random_tree(b, k, gen):
    par = torch.full((b, k), -1, dtype=torch.int32)
    for i in range(b):
        for t in range(1, k):
            par[i, t] = int(torch.randint(-1, t, (1,), generator=gen))
    return par


def make_slots(S, b, n_pad, gen, device):
    perm = torch.randperm(S, generator=gen)[:b].to(torch.int32)
    if n_pad:
        perm[torch.randperm(b, generator=gen)[:n_pad]] = -1
    return perm.to(device)


def run_session(backend, layer, *, b, S, kmax, rounds, tree=False, ring_len=None, n_pad=1, ks=None, seed=0,
                factor=1.0, check_untouched=True):
    """Drive verify_step and the oracle through `rounds` calls; compare every y and the final state."""
    gen = torch.Generator().manual_seed(seed)
    dev = layer.device
    cache = layer.cache(S, kmax, ring_len)
    state0 = torch.randn(S, *layer.state_shape(), device=dev).to(layer.state_dtype)
    cache.state.copy_(state0)
    # Slots nobody addresses get garbage that must survive bit-for-bit.
    for t in (cache.ring_x, cache.ring_B, cache.ring_dt):
        t.copy_(torch.randn(t.shape, generator=gen).to(t.dtype))
    slots = make_slots(S, b, n_pad, gen, dev)
    live = (slots >= 0).cpu()
    idle = sorted(set(range(S)) - set(slots.cpu().tolist()))
    before = {name: getattr(cache, name)[idle].clone() for name in ("state", "ring_x", "ring_B", "ring_dt", "meta")}
    oracle = VerifyOracle(state0.double())
    pending = torch.zeros(b, dtype=torch.long)
    prev_tree = False
    for r in range(rounds):
        k = int(ks[r]) if ks is not None else int(torch.randint(1, kmax + 1, (1,), generator=gen))
        x, dt, B, C, z = layer.inputs(b, k)
        # Accepted counts: often 0 or everything, else random.
        choice = torch.randint(0, 4, (b,), generator=gen)
        rnd = (torch.rand(b, generator=gen) * (pending + 1).double()).long().clamp(max=pending)
        acc = torch.where(choice == 0, torch.zeros_like(pending), torch.where(choice == 1, pending, rnd))
        kw = dict(**layer.params())
        okw = dict(**layer.params())
        if prev_tree:
            node = (acc - 1).to(torch.int32)
            kw["accepted_node"], okw["accepted_node"] = node.to(dev), node
        else:
            kw["num_accepted"] = okw["num_accepted"] = acc.to(torch.int32)
            kw["num_accepted"] = kw["num_accepted"].to(dev)
        parents = random_tree(b, k, gen) if tree else None
        if parents is not None:
            kw["parents"], okw["parents"] = parents.to(dev), parents
        out = poison_(torch.empty(b, k, *layer.xshape, dtype=layer.dtype, device=dev))
        y = mk.verify_step(x, dt, layer.A, B, C, cache, slots, z=z, out=out, backend=backend, **kw)
        assert y.data_ptr() == out.data_ptr()
        na = okw.pop("num_accepted", None)
        y_ref = oracle.step(x, dt, layer.A, B, C, slots.cpu(), na, z=z, **okw)
        assert_close(y[live], y_ref[live], layer.dtype, factor=factor, name=f"y round {r}")
        assert bool((y[~live.to(y.device)] == 0).all()), "padding rows must be zero"
        pending = torch.full((b,), k, dtype=torch.long)
        prev_tree = tree
    # Final commit: everything accepted, then the checkpoint must equal the oracle's committed state.
    if prev_tree:
        node = torch.full((b,), pending[0].item() - 1, dtype=torch.int32)
        mk.verify_flush(cache, layer.A, slots, accepted_node=node.to(dev), backend=backend)
        oracle.flush(slots.cpu(), accepted_node=node)
    else:
        mk.verify_flush(cache, layer.A, slots, pending.to(torch.int32).to(dev), backend=backend)
        oracle.flush(slots.cpu(), pending.to(torch.int32))
    sl = slots.cpu()[live].long()
    assert_close(cache.state[sl.to(dev)], oracle.state[sl], layer.state_dtype,
                 factor=factor * (2.0 if layer.state_dtype != torch.float32 else 1.0), name="final state")
    if check_untouched:
        for name, t in before.items():
            assert torch.equal(getattr(cache, name)[idle], t), f"cache.{name} of an unaddressed slot changed"
    return cache


# --------------------------------------------------------------------------------------------------------
# Cross-checks of the references
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["mamba2", "mamba1"])
def test_oracle_equals_plain_recurrence(kind):
    """Accepting every draft token, the oracle's outputs and state equal plain sequential decode."""
    layer = Layer(kind, g=2, dtype=torch.float64, state_dtype=torch.float64)
    b, S = 3, 5
    state0 = torch.randn(S, *layer.state_shape(), dtype=torch.float64)
    slots = torch.tensor([4, 0, 2])
    oracle = VerifyOracle(state0)
    plain = state0.clone()
    acc = torch.zeros(b, dtype=torch.int32)
    for k in (3, 1, 4):
        x, dt, B, C, z = layer.inputs(b, k)
        y = oracle.step(x, dt, layer.A, B, C, slots, acc, z=z, **layer.params())
        for t in range(k):
            yt = selective_state_update_ref(plain, x[:, t], dt[:, t], layer.A, B[:, t], C[:, t], z=z[:, t],
                                            slots=slots, **layer.params())
            assert_close(y[:, t], yt, torch.float64, name=f"y t={t}")
        acc = torch.full((b,), k, dtype=torch.int32)
    oracle.flush(slots, acc)
    assert_close(oracle.state, plain, torch.float64, name="state")


# --------------------------------------------------------------------------------------------------------
# Sessions against the oracle
# --------------------------------------------------------------------------------------------------------
LAYOUTS = {
    "m2-g1": dict(kind="mamba2", h=4, p=8, n=8, g=1),
    "m2-gh": dict(kind="mamba2", h=4, p=16, n=16, g=4),
    "m1-g1": dict(kind="mamba1", d=96, n=8, g=1),
    "m1-g2": dict(kind="mamba1", d=80, n=4, g=2),
}
DTYPES = {"fp32": (torch.float32, torch.float32), "bf16-state32": (torch.bfloat16, torch.float32),
          "fp16-state16": (torch.float16, torch.float16), "bf16-statebf16": (torch.bfloat16, torch.bfloat16)}


@pytest.mark.parametrize("dtypes", list(DTYPES))
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_chain_session(backend, layout, dtypes):
    dev = device_for(backend)
    dtype, sdtype = DTYPES[dtypes]
    layer = Layer(device=dev, dtype=dtype, state_dtype=sdtype, **LAYOUTS[layout])
    run_session(backend, layer, b=5, S=9, kmax=4, rounds=7, ring_len=8, seed=hash((layout, dtypes)) % 1000)


@pytest.mark.parametrize("layout", ["m2-g1", "m1-g2"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_tree_session(backend, layout):
    dev = device_for(backend)
    layer = Layer(device=dev, **LAYOUTS[layout])
    run_session(backend, layer, b=4, S=6, kmax=5, rounds=6, tree=True, ring_len=12, seed=3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_options_off_and_dt_limit(backend):
    """No D, no z, no dt_bias; a dt clamp; ring as short as max_draft (fold on every call with acceptance)."""
    dev = device_for(backend)
    layer = Layer("mamba2", device=dev, use_D=False, use_z=False, use_bias=False, dt_limit=(0.01, 0.5))
    run_session(backend, layer, b=3, S=4, kmax=3, rounds=5, ring_len=3, n_pad=0, seed=5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float64(backend):
    if backend in ("cuda", "triton"):
        pytest.skip("float64 is a ref/cpu feature (documented)")
    dev = device_for(backend)
    layer = Layer("mamba2", device=dev, dtype=torch.float64, state_dtype=torch.float64)
    # The cache keeps processed dt in fp32 by design (ring_dt), so replayed tokens carry ~1e-8 relative error.
    run_session(backend, layer, b=3, S=4, kmax=4, rounds=4, seed=11, factor=1000.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_variable_k_per_sequence(backend):
    """Rows draft different lengths by padding to a common k and accepting at most their own count."""
    dev = device_for(backend)
    layer = Layer("mamba2", device=dev)
    b, S, k = 4, 6, 4
    cache = layer.cache(S, k)
    state0 = torch.randn(S, *layer.state_shape(), device=dev)
    cache.state.copy_(state0)
    oracle = VerifyOracle(state0.double())
    slots = torch.tensor([5, 1, 3, 0], dtype=torch.int32, device=dev)
    own = torch.tensor([1, 4, 2, 3])
    acc = torch.zeros(b, dtype=torch.int32)
    for r in range(5):
        x, dt, B, C, z = layer.inputs(b, k)
        y = mk.verify_step(x, dt, layer.A, B, C, cache, slots, acc.to(dev), z=z, backend=backend,
                           **layer.params())
        y_ref = oracle.step(x, dt, layer.A, B, C, slots.cpu(), acc, z=z, **layer.params())
        for i in range(b):  # only the row's own draft positions are meaningful
            assert_close(y[i, :own[i]], y_ref[i, :own[i]], layer.dtype, name=f"row {i}")
        acc = (torch.rand(b) * (own + 1)).long().clamp(max=own).to(torch.int32)


@pytest.mark.parametrize("tree", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_nonfinite_draft_token_stays_off_path(backend, tree):
    """An infinite x in one draft token reaches only its own y and its descendants': the tokens whose path does not
    hold it (the earlier tokens of a chain; in a tree, the other branch) get the oracle's finite y, and a next call
    that does not accept it, and the flush after, match the oracle. On CUDA b h = 1024 units with k 4 take the split
    pair (a form that weighted every node, 0 off the path, would turn 0 x inf into NaN)."""
    dev = device_for(backend)
    big = dev == "cuda"
    layer = Layer("mamba2", device=dev, h=32 if big else 4, p=32 if big else 8, n=64 if big else 16, g=8 if big else 2,
                  dtype=torch.bfloat16)
    b, k, S = (32, 4, 36) if big else (3, 4, 5)
    gen = torch.Generator().manual_seed(21)
    cache = layer.cache(S, k, ring_len=16)
    state0 = torch.randn(S, *layer.state_shape(), generator=gen).to(dev)
    cache.state.copy_(state0)
    oracle = VerifyOracle(state0.double())
    slots = make_slots(S, b, 0, gen, dev)
    # chain: token 3 (the last) is poisoned; tree: node 1, a leaf (1 and 2 are children of 0, 3 of 2)
    parents = torch.tensor([[-1, 0, 0, 2]] * b, dtype=torch.int32) if tree else None
    bad = 1 if tree else 3
    accept = [None, 2, 3]  # tokens (chain) or node + 1 (tree) of the previous draft; 3: node 2 / path 0, 2, 3
    for r in range(3):
        x, dt, B, C, z = layer.inputs(b, k)
        if r == 1:
            x[:, bad, 5 % layer.h, 3] = float("inf")
        kw, okw = dict(**layer.params()), dict(**layer.params())
        na = torch.zeros(b, dtype=torch.int32) if accept[r] is None else torch.full((b,), accept[r], dtype=torch.int32)
        if tree and accept[r] is not None:
            kw["accepted_node"] = okw["accepted_node"] = na - 1
            kw["accepted_node"] = kw["accepted_node"].to(dev)
            na = None
        else:
            kw["num_accepted"] = na.to(dev)
        if tree:
            kw["parents"], okw["parents"] = parents.to(dev), parents
        y = mk.verify_step(x, dt, layer.A, B, C, cache, slots, z=z, backend=backend, **kw)
        y_ref = oracle.step(x, dt, layer.A, B, C, slots.cpu(), na, z=z, **okw)
        keep = [t for t in range(k) if not (r == 1 and t == bad)]
        if r == 1:  # the poison reaches its own token
            assert not bool(torch.isfinite(y_ref[:, bad].float()).all())
        assert bool(torch.isfinite(y_ref[:, keep].float()).all())
        assert bool(torch.isfinite(y[:, keep].float()).all()), f"round {r}: a token off the poisoned one's path"
        assert_close(y[:, keep], y_ref[:, keep], layer.dtype, name=f"y round {r}")
    if tree:
        node = torch.full((b,), k - 1, dtype=torch.int32)
        mk.verify_flush(cache, layer.A, slots, accepted_node=node.to(dev), backend=backend)
        oracle.flush(slots.cpu(), accepted_node=node)
    else:
        mk.verify_flush(cache, layer.A, slots, torch.full((b,), k, dtype=torch.int32, device=dev), backend=backend)
        oracle.flush(slots.cpu(), torch.full((b,), k, dtype=torch.int32))
    sl = slots.cpu().long()
    assert_close(cache.state[sl.to(dev)], oracle.state[sl], layer.state_dtype, name="final state")


@pytest.mark.parametrize("backend", BACKENDS)
def test_wide_k_and_batch(backend):
    """k from 1 to 16 and batches up to 64 (smaller on CPU to keep CI fast)."""
    dev = device_for(backend)
    big = dev == "cuda"
    layer = Layer("mamba2", device=dev, h=8 if big else 2, p=32 if big else 4, n=32 if big else 4, g=2,
                  dtype=torch.bfloat16 if big else torch.float32)
    ks = [1, 16, 7, 2, 16, 1, 11]
    b = 64 if big else 6
    run_session(backend, layer, b=b, S=b + 8, kmax=16, rounds=len(ks), ks=ks, ring_len=24, n_pad=3, seed=7)


@pytest.mark.parametrize("tree", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_mamba1_one_token_session(backend, tree):
    """Mamba-1 layout, one-token calls most rounds: on CUDA verify_m1dec_kernel (k = 1, fp32 state, 8 states a lane)
    with verify_m1_kernel's longer drafts in between (both fold on every call); N 16 and 8, G 2, padding rows."""
    dev = device_for(backend)
    ks = [1, 1, 3, 1, 1, 2, 1, 4, 1, 1]
    # d 256 / 160: units of 64 / 16 channels on CUDA; on the CPU (the Triton interpreter: ~40 s a run at d 256)
    # 64 / 40 keep two groups of 32 / 4-channel units and CI fast
    sizes = ((16, 256), (8, 160)) if dev == "cuda" else ((16, 64), (8, 40))
    for n, d in sizes:
        layer = Layer("mamba1", device=dev, d=d, n=n, g=2, dtype=torch.bfloat16)
        run_session(backend, layer, b=6, S=10, kmax=4, rounds=len(ks), ks=ks, tree=tree, ring_len=8, n_pad=2,
                    seed=21 + tree + n)


@pytest.mark.parametrize("wide", ["0", "1"], ids=["o32", "wide"])
def test_large_grid_cuda(wide, monkeypatch):
    """CUDA at b * h >= 1024 units with k >= 2, where the automatic choice is the split kernel pair
    (verify_m2prep_kernel + verify_m2str_kernel, docs/verify_step_design.md): k 2 to 4, a ring of 16 that folds
    every few calls, tree drafts half the rounds, padding rows, untouched slots; p 32 and p = n = 128 (the
    benchmark's head shape); the profiler confirms the pair ran, the prep kernel with 32-bit offsets or, wide, int64
    ones (MK_VERIFY_WIDE_OFFSETS=1)."""
    dev = device_for("cuda")
    monkeypatch.setenv("MK_VERIFY_WIDE_OFFSETS", wide)
    ks = [2, 4, 4, 3, 4, 4, 2, 4, 4]
    configs = [(False, 32, 64, 32), (True, 32, 64, 32), (False, 128, 128, 8)]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for i, (tree, p, n, g) in enumerate(configs):
            layer = Layer("mamba2", device=dev, h=32, p=p, n=n, g=g, dtype=torch.bfloat16)
            run_session("cuda", layer, b=40, S=48, kmax=4, rounds=len(ks), ks=ks, tree=tree, ring_len=16, n_pad=3,
                        seed=11 + i)
    names = " ".join(e.key for e in prof.key_averages())
    assert "verify_m2prep_kernel" in names and "verify_m2str_kernel" in names, names
    prep = [_template_args(e.key)[2] for e in prof.key_averages() if "verify_m2prep_kernel<" in e.key]  # kO32
    assert prep and all(a == ("true" if wide == "0" else "false") for a in prep), prep


def _template_args(kernel_name):
    """'void ns::k<__nv_bfloat16, 128, 8, true, true>(ns::P)' -> ['__nv_bfloat16', '128', '8', 'true', 'true']."""
    return kernel_name[kernel_name.index("<") + 1:kernel_name.rindex(">")].split(", ")


@pytest.mark.parametrize("wide", ["0", "1"], ids=["o32", "wide"])
@pytest.mark.parametrize("tree", [False, True])
def test_mamba1_one_token_offsets_cuda(tree, wide, monkeypatch):
    """test_mamba1_one_token_session's sessions on CUDA with the profiler checking which instantiations of
    verify_m1dec_kernel (one token) and verify_m1_kernel (2 to 4) ran: the 32-bit-offset ones wherever offsets_fit32
    holds (here always), the int64 ones under MK_VERIFY_WIDE_OFFSETS=1 (read at every launch)."""
    dev = device_for("cuda")
    monkeypatch.setenv("MK_VERIFY_WIDE_OFFSETS", wide)
    ks = [1, 1, 3, 1, 1, 2, 1, 4, 1, 1]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for n, d in ((16, 256), (8, 160)):
            layer = Layer("mamba1", device=dev, d=d, n=n, g=2, dtype=torch.bfloat16)
            run_session("cuda", layer, b=6, S=10, kmax=4, rounds=len(ks), ks=ks, tree=tree, ring_len=8, n_pad=2,
                        seed=41 + tree + n)
    for name in ("verify_m1dec_kernel", "verify_m1_kernel"):
        ran = [e.key for e in prof.key_averages() if name + "<" in e.key]
        assert ran and all(_template_args(n)[-1] == ("true" if wide == "0" else "false") for n in ran), ran


@pytest.mark.parametrize("dec_last, wide", [("0", "0"), ("1", "0"), ("1", "1")],
                         ids=["cluster", "last_arrival", "last_arrival_wide"])
def test_small_batch_decode_cuda(dec_last, wide, monkeypatch):
    """CUDA at small grids (under 256 units) with an fp32 state, the Mamba-2 layout at p, n in {64, 128}: the decode
    kernels (verify_m2dec_kernel for one token, verify_m2deck_kernel for 2 to 8; both fold on every call), drafts of
    9 to 12 tokens in between (the lean kernel, deferring the fold: committed ring tokens and pending nodes past the
    staged rows for the decode kernels' general replay), chain and tree drafts, padding rows, untouched slots; the
    profiler confirms that both decode kernels ran. last_arrival: the one-token kernel without a cluster (the
    default), cluster: with one (MK_VERIFY_DEC_LAST=0; read at every launch); the last-arrival kernel and the lean
    kernel with 32-bit offsets (offsets_fit32 holds here) or, wide, the int64 ones (MK_VERIFY_WIDE_OFFSETS=1)."""
    dev = device_for("cuda")
    monkeypatch.setenv("MK_VERIFY_DEC_LAST", dec_last)
    monkeypatch.setenv("MK_VERIFY_WIDE_OFFSETS", wide)
    ks = [1, 4, 2, 8, 1, 3, 12, 5, 1, 7, 10, 2, 6, 1]
    configs = [(False, 128, 128, 1, torch.bfloat16), (True, 64, 128, 4, torch.float32),
               (True, 128, 64, 2, torch.bfloat16)]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for i, (tree, p, n, g, dtype) in enumerate(configs):
            layer = Layer("mamba2", device=dev, h=4, p=p, n=n, g=g, dtype=dtype)
            run_session("cuda", layer, b=3, S=8, kmax=12, rounds=len(ks), ks=ks, tree=tree, ring_len=16, n_pad=1,
                        seed=31 + i)
    names = " ".join(e.key for e in prof.key_averages())
    assert "verify_m2dec_kernel" in names and "verify_m2deck_kernel" in names, names
    dec = [_template_args(e.key) for e in prof.key_averages() if "verify_m2dec_kernel" in e.key]
    o32 = dec_last == "1" and wide == "0"  # template arguments <TI, N, LPR, kLast, kO32>
    assert dec and all(a[3:] == ["true" if dec_last == "1" else "false", "true" if o32 else "false"] for a in dec), dec
    # the drafts of 9 to 12 tokens: the lean kernel (fp32 state: 32-bit offsets unless wide)
    lean = [_template_args(e.key) for e in prof.key_averages() if "verify_m2_kernel<" in e.key]
    assert lean and all(a[-1] == ("false" if wide == "1" else "true") for a in lean), lean


# --------------------------------------------------------------------------------------------------------
# Conv step and fused Mamba-2 step
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("width", [2, 4, 8])
@pytest.mark.parametrize("tree", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_verify_session(backend, tree, width):
    dev = device_for(backend)
    gen = torch.Generator().manual_seed(width)
    b, S, kmax, dc = 3, 5, 4, 24
    dtype = torch.float32
    cache = mk.VerifyCache.allocate(S, nheads=1, headdim=4, dstate=2, max_draft=kmax, conv_dim=dc,
                                    conv_width=width, dtype=dtype, device=dev)
    win0 = torch.randn(S, width - 1, dc, dtype=dtype, device=dev)
    cache.reset_slots(torch.arange(S), conv_inputs=win0)
    weight = torch.randn(dc, width, device=dev)
    bias = torch.randn(dc, device=dev)
    oracle = ConvVerifyOracle(win0)
    slots = torch.tensor([3, -1, 0], dtype=torch.int32, device=dev)
    live = (slots >= 0).cpu()
    pending = torch.zeros(b, dtype=torch.long)
    for r in range(6):
        k = int(torch.randint(1, kmax + 1, (1,), generator=gen))
        x = torch.randn(b, k, dc, dtype=dtype, device=dev)
        acc = (torch.rand(b, generator=gen) * (pending + 1)).long().clamp(max=pending)
        parents = random_tree(b, k, gen) if tree else None
        kw = dict(accepted_node=(acc - 1).to(torch.int32)) if (tree and r) else dict(num_accepted=acc.to(torch.int32))
        out = mk.conv_verify_step(x, cache, weight, bias, slots=slots, parents=None if parents is None else
                                  parents.to(dev), backend=backend, **{n: v.to(dev) for n, v in kw.items()})
        ref = oracle.step(x, weight, bias, slots.cpu(), parents=parents, activation="silu",
                          **{("num_accepted" if n == "num_accepted" else n): v for n, v in kw.items()})
        assert_close(out[live], ref[live], dtype, name=f"conv out round {r}")
        pending = torch.full((b,), k, dtype=torch.long)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("g", [1, 2])
@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_session(backend, g, dtype):
    """Fused step == conv oracle -> split x|B|C -> SSM oracle -> gate."""
    dev = device_for(backend)
    gen = torch.Generator().manual_seed(g)
    h, p, n, w, b, S, kmax = 4, 8, 8, 4, 3, 5, 4
    dc = h * p + 2 * g * n
    layer = Layer("mamba2", h=h, p=p, n=n, g=g, dtype=dtype, device=dev)
    cache = layer.cache(S, kmax, ring_len=7, conv=(dc, w))
    state0 = torch.randn(S, h, p, n, device=dev)
    win0 = torch.randn(S, w - 1, dc, device=dev).to(dtype)
    cache.reset_slots(torch.arange(S), state=state0, conv_inputs=win0)
    weight = torch.randn(dc, w, device=dev) * 0.5
    bias = torch.randn(dc, device=dev) * 0.1
    ssm, conv = VerifyOracle(state0.double()), ConvVerifyOracle(win0)
    slots = torch.tensor([4, 1, -1], dtype=torch.int32, device=dev)
    live = (slots >= 0).cpu()
    pending = torch.zeros(b, dtype=torch.long)
    for r in range(6):
        k = int(torch.randint(1, kmax + 1, (1,), generator=gen))
        xBC = torch.randn(b, k, dc, device=dev).to(dtype)
        _, dt, _, _, z = layer.inputs(b, k)
        acc = (torch.rand(b, generator=gen) * (pending + 1)).long().clamp(max=pending).to(torch.int32)
        y = mk.verify_step_fused(xBC, dt, z, cache, slots, acc.to(dev), A=layer.A, conv_weight=weight,
                                 conv_bias=bias, D=layer.D, dt_bias=layer.dt_bias, backend=backend)
        xbc = conv.step(xBC, weight, bias, slots.cpu(), acc, activation="silu")
        xs = xbc[..., :h * p].reshape(b, k, h, p)
        Bs = xbc[..., h * p:h * p + g * n].reshape(b, k, g, n)
        Cs = xbc[..., h * p + g * n:].reshape(b, k, g, n)
        y_ref = ssm.step(xs, dt, layer.A, Bs, Cs, slots.cpu(), acc, z=z, D=layer.D, dt_bias=layer.dt_bias,
                         dt_softplus=True)
        # bf16: the conv output is rounded to bf16 before the SSM in a kernel but not in the oracle.
        assert_close(y[live], y_ref[live], dtype, factor=2.0, name=f"fused y round {r}")
        pending = torch.full((b,), k, dtype=torch.long)
    mk.verify_flush(cache, layer.A, slots, pending.to(torch.int32).to(dev), backend=backend)
    ssm.flush(slots.cpu(), pending.to(torch.int32))
    sl = slots.cpu()[live].long()
    assert_close(cache.state[sl.to(dev)], ssm.state[sl], dtype, factor=2.0, name="final state")


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_draft_32(backend):
    """k = 32 uses bit 31 of the int32 path masks (stored negative): chains and trees must still commit right."""
    dev = device_for(backend)
    layer = Layer("mamba2", device=dev, h=2, p=4, n=4, g=1)
    run_session(backend, layer, b=2, S=3, kmax=32, rounds=3, ks=[32, 32, 5], ring_len=40, n_pad=0, seed=13)
    run_session(backend, layer, b=2, S=3, kmax=32, rounds=3, ks=[32, 32, 3], ring_len=32, n_pad=0, seed=14,
                tree=True)
