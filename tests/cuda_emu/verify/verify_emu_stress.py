"""Randomized multi-round sessions of the verify family's CUDA kernels, run on CPU through the emulation
(verify_emu_ops.cpp + verify_emu_shim.h, built by tests/test_verify_cuda_emu.py), checked against
python_ref.verify.verify_step_cache_ref / conv_verify_step_ref: after every call, every output AND every mutated
cache tensor (state, ring_x, ring_B, ring_dt, meta, conv window) is compared; then the caches are re-synced to the
reference so that rounding differences do not pile up.

    python tests/cuda_emu/verify/verify_emu_stress.py --lib /path/libverify_emu.so [--seeds 2] [--rounds R] CASE...
    (or VERIFY_EMU_LIB=/path/libverify_emu.so)

Environment: STRESS_CONTIG=1 keeps all inputs contiguous (so the lean verify_m2_kernel is taken where it fits;
otherwise x, B, C are strided views half the time, which sends those calls to the general verify_ssm_kernel);
EMU_LEAN_NT=128|256 (read by the library) forces the lean kernel's block size. Prints "PASS <case> ..." per case;
the library prints per-kernel launch counts on stderr at exit ("emu launches: lean128=.. lean256=.. ...").
"""
import argparse
import math
import os
import random
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
from python_ref.verify import conv_verify_step_ref, verify_step_cache_ref  # noqa: E402

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
TOL = {F32: 2e-4, F16: 2e-2, BF16: 6e-2}
CONTIG = os.environ.get("STRESS_CONTIG") == "1"
DECODE_FOLD = os.environ.get("STRESS_DECODE_FOLD") == "1"
FOLD_EVERY = os.environ.get("STRESS_FOLD_EVERY") == "1"
DEC_KMAX = 8  # csrc/verify/verify_m2deck_kernel.cuh: kDecKMax
# How often the scenarios of interest happened (printed with PASS, to see that a case exercises them).
STATS = dict(maxc1=0, fold=0, maxc1fold=0, compact=0, inf_mid=0)


def close(a, b, dt, name, ctx):
    a, b = a.double(), b.double()
    tol = TOL[dt]
    excess = torch.where(a == b, -1.0, (a - b).abs() - tol * (1 + b.abs()))  # equal infinities match
    err = excess.max().item() if a.numel() else -1.0
    if not (err <= 0) or torch.isnan(a).any():
        idx = excess.nan_to_num(float("inf")).argmax()
        raise AssertionError(f"{name} mismatch ({ctx}): max excess {err}, at flat index {int(idx)}: "
                             f"{a.flatten()[idx].item()} (emulated CUDA) vs {b.flatten()[idx].item()} (ref)")


def noncontig(t, rng):
    """Same values; half the time a strided view (last dim dense, rows padded by 3) unless STRESS_CONTIG=1."""
    if CONTIG or rng.random() < 0.5 or t.dim() < 2:
        return t
    big = torch.empty(*t.shape[:-1], t.shape[-1] + 3, dtype=t.dtype)
    big[..., :t.shape[-1]] = t
    return big[..., :t.shape[-1]]


def draft_args(rng, acc, b, k, tree):
    """Accepted counts as tokens or (half the time) as node indices; random tree parents (or None: a chain)."""
    is_node = rng.random() < 0.5
    accepted = torch.tensor([a - 1 for a in acc] if is_node else acc, dtype=torch.int32)
    parents = None
    if tree and k > 0:
        parents = torch.full((b, k), -1, dtype=torch.int32)
        for i in range(b):
            for t in range(1, k):
                parents[i, t] = rng.randint(-1, t - 1)
    return is_node, accepted, parents


def ssm_case(seed, *, H, P, N, G, m1, S, R, Kmax, b, rounds, dt_in, dt_st, tree, fused=False, width=4,
             cache_view=False, nopt=False, accum=False, a_view=False, inf_x=False):
    """One session of `rounds` verify steps on S slots (Mamba-1 layout if m1; fused conv + SSM if fused).

    accum: few flushes / fold-alls and mostly full acceptance, so the ring fills up (long unfolded histories).
    cache_view: the state is a strided view into a bigger buffer (state vector loads off).
    nopt: no D, z, dt_bias.
    a_view: A (Mamba-1) is a view with rows of N + 1 (not 16-byte aligned: verify_m1dec_kernel declines it).
    inf_x: in half the batch rows of a call, one x of a leaf of the draft is infinite (the last token of a chain, any
    node no other names as parent in a tree); that token is an ancestor of no other, so the other tokens' y stay finite
    (its own y is not compared; in a tree its earlier siblings' and cousins' y test that the kernels weight only a
    token's path), and the next call never accepts it.
    """
    ops = torch.ops.mamba_kernels
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    Pd = P if m1 else 1
    A = (-torch.rand(H, P, N, generator=g) * 2 - 0.1) if m1 else (-torch.rand(H, 1, 1, generator=g) * 2 - 0.1)
    if a_view:
        A = torch.cat([A, torch.zeros(H, P, 1)], dim=-1)[..., :N]
    D = None if nopt else (rn(H, P) if m1 else rn(H, 1).expand(H, P))
    dt_bias = None if nopt else rn(H, Pd) * 0.5
    dc = H * P + 2 * G * N
    if cache_view:
        state = rn(S, H, P, N + 1).to(dt_st)[..., :N]
    else:
        state = rn(S, H, P, N).to(dt_st)
    cache = dict(state=state, ring_x=rn(S, R, H, P).to(dt_in), ring_B=rn(S, R, H, N).to(dt_in),
                 ring_dt=rn(S, R, H, Pd).abs(), meta=torch.zeros(S, H, 2 + Kmax, dtype=torch.int32))
    if fused:
        cache["window"] = rn(S, width - 1 + Kmax, dc).to(dt_in)
    ref = {k: v.clone() for k, v in cache.items()}
    conv_w = (rn(dc, width) * 0.5).to(rng.choice([F32, dt_in]))
    conv_b = None if rng.random() < 0.3 else (rn(dc) * 0.1).to(conv_w.dtype)
    silu = rng.random() < 0.7
    pend = {i: 0 for i in range(S)}  # tokens pending (drafted last round) per slot
    inf_pend = {}  # slot -> its pending leaf with an infinite x (never accepted)
    perm = list(range(S + 2))
    for r in range(rounds):
        flush = rng.random() < (0.03 if accum else 0.15)
        k = 0 if flush else rng.randint(1, Kmax)
        fold_all = flush or rng.random() < (0.03 if accum else 0.1)
        # STRESS_DECODE_FOLD=1 (with MK_VERIFY_KERNEL=decode): calls of 1 to DEC_KMAX tokens with an fp32 state run
        # verify_m2dec_kernel / verify_m2deck_kernel, which fold on every call; the reference then folds too (same
        # cache contents). Longer drafts take the lean kernel, which defers the fold.
        # STRESS_FOLD_EVERY=1 (Mamba-1 layout, MK_VERIFY_KERNEL=decode): verify_m1_kernel folds on every call with
        # an fp32 state, and so does the reference
        ref_fold = (fold_all or (DECODE_FOLD and 1 <= k <= DEC_KMAX and dt_st == F32 and not fused)
                    or (FOLD_EVERY and m1 and dt_st == F32 and k >= 1))
        if not accum or r == 0:  # accum keeps the same batch -> slot map for the whole session
            rng.shuffle(perm)
        # slots: S means padding (-1), S + 1 an out-of-range slot (skipped like padding)
        slots = torch.tensor([perm[i] if perm[i] < S else (-1 if perm[i] == S else S + 5) for i in range(b)],
                             dtype=torch.int32)
        acc = []
        for i in range(b):
            pn = pend.get(int(slots[i]), 0)
            if not 0 <= int(slots[i]) < S:  # a padding row's count is whatever the engine left there
                acc.append(rng.randint(0, k + 2))
            elif accum:
                acc.append(pn if rng.random() < 0.8 else rng.randint(0, pn))
            else:
                acc.append(rng.choice([0, pn, rng.randint(0, pn), pn, pn + 2 if rng.random() < 0.1 else pn]))
            if int(slots[i]) in inf_pend and min(acc[-1] - 1, pn - 1) == inf_pend[int(slots[i])]:
                acc[-1] = inf_pend[int(slots[i])]  # the node before the leaf (or none)
        is_node, accepted, parents = draft_args(rng, acc, b, k, tree)
        x = noncontig(rn(b, k, H, P).to(dt_in), rng)
        poisoned = {}  # batch row -> its poisoned leaf
        for i in (range(b) if inf_x and k >= 2 else []):
            if rng.random() < 0.5:
                named = set(parents[i].tolist()) if parents is not None else set(range(k - 1))
                poisoned[i] = rng.choice([t for t in range(k) if t not in named])
                STATS["inf_mid"] += poisoned[i] < k - 1  # later tokens that do not descend from it
                x[i, poisoned[i], rng.randrange(H), rng.randrange(P)] = math.inf
        dt = rn(b, k, H, Pd).to(dt_in) * 0.5
        Bm = noncontig(rn(b, k, G, N).to(dt_in), rng)
        Cm = noncontig(rn(b, k, G, N).to(dt_in), rng)
        z = None if nopt else rn(b, k, H, P).to(dt_in)
        soft = not nopt or rng.random() < 0.5
        dmin, dmax = (0.01, 0.7) if rng.random() < 0.3 else (-math.inf, math.inf)
        y = torch.full((b, k, H, P), float("nan"), dtype=dt_in)
        y_ref = y.clone()
        xBC = rn(b, k, dc).to(dt_in)
        for i in range(b):  # statistics: does this round fold the ring / compact a tree path?
            sv = int(slots[i])
            if 0 <= sv < S:
                m = ref["meta"][sv, 0]
                c0, kp0 = int(m[0]), int(m[1])
                a = int(accepted[i]) if is_node else int(accepted[i]) - 1
                a = min(a, kp0 - 1)
                path = (int(m[2 + a]) & ((1 << kp0) - 1)) if a >= 0 else 0
                c1 = c0 + bin(path).count("1")
                STATS["maxc1"] = max(STATS["maxc1"], c1)
                if ref_fold or c1 + k > R:
                    STATS["fold"] += 1
                    STATS["maxc1fold"] = max(STATS["maxc1fold"], c1)
                elif path != (1 << bin(path).count("1")) - 1:
                    STATS["compact"] += 1
        ctx = (f"seed {seed} round {r} k {k} slots {slots.tolist()} accepted {accepted.tolist()} node {is_node} "
               f"fold_all {fold_all}")
        if fused:
            conv = {"xBC": xBC, "window": ref["window"], "weight": conv_w, "bias": conv_b,
                    "activation": "silu" if silu else None}
            verify_step_cache_ref(None, dt, A, None, None, D, z, dt_bias, ref["state"], ref["ring_x"], ref["ring_B"],
                                  ref["ring_dt"], ref["meta"], slots, accepted, is_node, parents, y_ref, soft, dmin,
                                  dmax, fold_all, conv=conv)
            ops._verify_step_fused_cuda(xBC, dt, A, D, z, dt_bias, conv_w, conv_b, silu, cache["window"],
                                        cache["state"], cache["ring_x"], cache["ring_B"], cache["ring_dt"],
                                        cache["meta"], slots, accepted, is_node, parents, y, soft, dmin, dmax,
                                        fold_all)
        else:
            verify_step_cache_ref(x, dt, A, Bm, Cm, D, z, dt_bias, ref["state"], ref["ring_x"], ref["ring_B"],
                                  ref["ring_dt"], ref["meta"], slots, accepted, is_node, parents, y_ref, soft, dmin,
                                  dmax, ref_fold)
            ops._verify_step_cuda(x, dt, A, Bm, Cm, D, z, dt_bias, cache["state"], cache["ring_x"], cache["ring_B"],
                                  cache["ring_dt"], cache["meta"], slots, accepted, is_node, parents, y, soft, dmin,
                                  dmax, fold_all)
        for i, leaf in poisoned.items():  # the poisoned token's own y is not finite in either
            y[i, leaf] = 0
            y_ref[i, leaf] = 0
        close(y, y_ref, dt_in, "y", ctx)
        assert torch.equal(cache["meta"], ref["meta"]), f"meta mismatch ({ctx})\n{cache['meta']}\n{ref['meta']}"
        close(cache["state"], ref["state"], dt_st, "state", ctx)
        close(cache["ring_x"], ref["ring_x"], dt_in, "ring_x", ctx)
        close(cache["ring_B"], ref["ring_B"], dt_in, "ring_B", ctx)
        close(cache["ring_dt"], ref["ring_dt"], F32 if dt_in == F32 else F16, "ring_dt", ctx)
        if fused:
            close(cache["window"], ref["window"], dt_in, "window", ctx)
        for key in cache:
            cache[key].copy_(ref[key])
        for i in range(b):
            if 0 <= int(slots[i]) < S:
                pend[int(slots[i])] = k
                inf_pend.pop(int(slots[i]), None)
                if i in poisoned:
                    inf_pend[int(slots[i])] = poisoned[i]


def conv_case(seed, *, dc, width, S, Kmax, b, rounds, dt_in, tree):
    """One session of the standalone conv verify step (conv window + meta cache)."""
    ops = torch.ops.mamba_kernels
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    win = rn(S, width - 1 + Kmax, dc).to(dt_in)
    meta = torch.zeros(S, 1 + Kmax, dtype=torch.int32)
    rwin, rmeta = win.clone(), meta.clone()
    weight = rn(dc, width).to(rng.choice([F32, dt_in]))
    bias = None if rng.random() < 0.3 else rn(dc).to(weight.dtype)
    silu = rng.random() < 0.5
    pending = {i: 0 for i in range(-1, S + 6)}
    for r in range(rounds):
        sl = rng.sample(range(S), b)
        if b > 1:
            sl[0] = rng.choice([-1, S + 5])  # padding / out-of-range slot
        slots = torch.tensor(sl, dtype=torch.int32)
        k = rng.randint(0, Kmax)
        acc = [rng.choice([0, pending[int(s)], rng.randint(0, pending[int(s)])]) for s in slots.tolist()]
        is_node, accepted, parents = draft_args(rng, acc, b, k, tree)
        x = rn(b, k, dc).to(dt_in)
        out = torch.full((b, k, dc), float("nan"), dtype=dt_in)
        rout = out.clone()
        conv_verify_step_ref(x, rwin, rmeta, weight, bias, slots, accepted, is_node, parents, rout,
                             "silu" if silu else None)
        ops._conv_verify_step_cuda(x, win, meta, weight, bias, slots, accepted, is_node, parents, out, silu)
        ctx = f"conv seed {seed} round {r} k {k} slots {sl} accepted {accepted.tolist()} node {is_node}"
        close(out, rout, dt_in, "conv out", ctx)
        close(win, rwin, dt_in, "conv window", ctx)
        assert torch.equal(meta, rmeta), f"conv meta mismatch ({ctx})\n{meta}\n{rmeta}"
        win.copy_(rwin)
        for s_ in slots.tolist():
            if 0 <= s_ < S:
                pending[s_] = k


CASES = {
    # general-kernel shapes (N or P not a power of two, big P, k = 32, strided cache, no optional inputs)
    "m2_basic": dict(H=4, P=8, N=8, G=2, m1=False, S=6, R=8, Kmax=4, b=4, rounds=8, dt_in=F32, dt_st=F32, tree=False),
    "m2_n128": dict(H=2, P=16, N=128, G=1, m1=False, S=5, R=20, Kmax=6, b=3, rounds=10, dt_in=F32, dt_st=F32, tree=False),
    "m2_n128_tree": dict(H=2, P=16, N=128, G=2, m1=False, S=5, R=20, Kmax=6, b=3, rounds=10, dt_in=BF16, dt_st=F32, tree=True),
    "m2_bigP": dict(H=1, P=130, N=36, G=1, m1=False, S=3, R=9, Kmax=5, b=2, rounds=8, dt_in=F32, dt_st=F32, tree=True),
    "m2_N5": dict(H=3, P=7, N=5, G=3, m1=False, S=4, R=6, Kmax=3, b=3, rounds=8, dt_in=F16, dt_st=F16, tree=True),
    "m2_bf16st": dict(H=2, P=12, N=20, G=1, m1=False, S=4, R=18, Kmax=8, b=3, rounds=10, dt_in=BF16, dt_st=BF16, tree=False),
    "m2_f16st_N64": dict(H=2, P=40, N=64, G=2, m1=False, S=4, R=34, Kmax=12, b=3, rounds=8, dt_in=F16, dt_st=F16, tree=True),
    "m2_view": dict(H=2, P=9, N=12, G=1, m1=False, S=4, R=7, Kmax=4, b=3, rounds=8, dt_in=F32, dt_st=F32, tree=True, cache_view=True),
    "m2_nopt": dict(H=2, P=8, N=16, G=2, m1=False, S=4, R=4, Kmax=4, b=3, rounds=8, dt_in=F32, dt_st=F32, tree=False, nopt=True),
    "m2_colpass": dict(H=1, P=3, N=600, G=1, m1=False, S=3, R=5, Kmax=3, b=2, rounds=6, dt_in=F32, dt_st=F32, tree=True),
    "m2_k32": dict(H=1, P=8, N=8, G=1, m1=False, S=3, R=40, Kmax=31, b=2, rounds=5, dt_in=F32, dt_st=F32, tree=True),
    # Mamba-1 layout (always the general kernel)
    "m1_basic": dict(H=3, P=16, N=8, G=1, m1=True, S=5, R=8, Kmax=4, b=3, rounds=8, dt_in=F32, dt_st=F32, tree=False),
    "m1_tree": dict(H=2, P=64, N=16, G=2, m1=True, S=4, R=20, Kmax=6, b=3, rounds=8, dt_in=BF16, dt_st=F32, tree=True),
    "m1_bf16st": dict(H=2, P=12, N=20, G=1, m1=True, S=4, R=9, Kmax=5, b=3, rounds=8, dt_in=BF16, dt_st=BF16, tree=True),
    "m1_bigP": dict(H=1, P=600, N=4, G=1, m1=True, S=3, R=6, Kmax=3, b=2, rounds=6, dt_in=F32, dt_st=F32, tree=True),
    # fused conv + SSM
    "fused_g1": dict(H=3, P=8, N=8, G=1, m1=False, S=4, R=8, Kmax=4, b=3, rounds=8, dt_in=F32, dt_st=F32, tree=False, fused=True, width=4),
    "fused_tree": dict(H=4, P=16, N=24, G=2, m1=False, S=4, R=12, Kmax=5, b=3, rounds=8, dt_in=BF16, dt_st=F32, tree=True, fused=True, width=2),
    "fused_w8": dict(H=2, P=8, N=8, G=2, m1=False, S=4, R=20, Kmax=6, b=3, rounds=8, dt_in=F16, dt_st=F16, tree=True, fused=True, width=8),
    # accumulating sessions (ring fills up, folds at capacity)
    "acc_m2": dict(H=2, P=16, N=128, G=1, m1=False, S=4, R=40, Kmax=8, b=3, rounds=14, dt_in=BF16, dt_st=F32, tree=False, accum=True),
    "acc_m2_tree": dict(H=2, P=12, N=20, G=2, m1=False, S=4, R=37, Kmax=7, b=3, rounds=14, dt_in=F32, dt_st=BF16, tree=True, accum=True),
    "acc_m2_bigP": dict(H=1, P=130, N=12, G=1, m1=False, S=3, R=35, Kmax=6, b=2, rounds=14, dt_in=F32, dt_st=F32, tree=True, accum=True),
    "acc_m1": dict(H=2, P=16, N=8, G=1, m1=True, S=4, R=40, Kmax=8, b=3, rounds=14, dt_in=F32, dt_st=F32, tree=True, accum=True),
    "acc_m1_bigP": dict(H=1, P=520, N=4, G=1, m1=True, S=3, R=36, Kmax=6, b=2, rounds=14, dt_in=F16, dt_st=F32, tree=True, accum=True),
    "acc_fused": dict(H=4, P=8, N=8, G=2, m1=False, S=4, R=38, Kmax=8, b=3, rounds=14, dt_in=F32, dt_st=F32, tree=True, fused=True, width=4, accum=True),
    # production-like shapes (P, N powers of two: the lean verify_m2_kernel when inputs are contiguous)
    "hot_m2": dict(H=2, P=128, N=128, G=1, m1=False, S=3, R=16, Kmax=4, b=2, rounds=10, dt_in=BF16, dt_st=F32, tree=False, accum=True),
    # hot_m2 with an infinite x in the last draft token of half the rows (the tokens before it must stay finite: a
    # form that weighted every node, 0 off a token's path, would turn 0 x inf into NaN)
    "hot_m2_inf": dict(H=2, P=128, N=128, G=1, m1=False, S=3, R=16, Kmax=4, b=2, rounds=10, dt_in=BF16, dt_st=F32, tree=True, accum=True, inf_x=True),
    "hot_m2_k8": dict(H=1, P=128, N=128, G=1, m1=False, S=3, R=16, Kmax=8, b=2, rounds=8, dt_in=BF16, dt_st=F32, tree=True, accum=True),
    "lean_bf16st": dict(H=2, P=64, N=128, G=2, m1=False, S=4, R=16, Kmax=6, b=3, rounds=10, dt_in=BF16, dt_st=BF16, tree=True, accum=True),
    "lean_f16": dict(H=2, P=32, N=64, G=1, m1=False, S=4, R=12, Kmax=4, b=3, rounds=10, dt_in=F16, dt_st=F32, tree=False, accum=True),
    "lean_f32_k16": dict(H=1, P=16, N=32, G=1, m1=False, S=3, R=32, Kmax=16, b=2, rounds=8, dt_in=F32, dt_st=F16, tree=True, accum=True),
    # P = 256 > the rows one 256-thread pass holds: the state tile's second pass goes through shared memory
    "tc_k16": dict(H=2, P=32, N=64, G=1, m1=False, S=3, R=32, Kmax=16, b=2, rounds=8, dt_in=F32, dt_st=F32, tree=True, accum=True),
    "lean_2pass": dict(H=1, P=256, N=128, G=1, m1=False, S=3, R=16, Kmax=4, b=2, rounds=8, dt_in=BF16, dt_st=BF16, tree=True, accum=True),
    # fp32 inputs and state, P = N = 64 (a cluster of 2 blocks a unit in the decode kernel), tree drafts of at most 2
    # nodes (half the calls are one-token calls)
    "dec_f32": dict(H=3, P=64, N=64, G=1, m1=False, S=4, R=8, Kmax=2, b=3, rounds=12, dt_in=F32, dt_st=F32, tree=True, accum=False),
    # fp32 inputs, fp16 state, three heads sharing one B / C group, 9 units
    # drafts of up to 12 tokens, P 64, N 128, trees, long histories: under MK_VERIFY_KERNEL=decode the drafts past
    # verify_m2deck_kernel's 8 tokens take the lean kernel (deferred fold), so the decode kernels then find committed
    # ring tokens and pending nodes past their staged rows (their general replay)
    "dec_k12": dict(H=2, P=64, N=128, G=1, m1=False, S=3, R=16, Kmax=12, b=2, rounds=14, dt_in=BF16, dt_st=F32, tree=True, accum=True),
    "tc_mix": dict(H=3, P=128, N=128, G=1, m1=False, S=4, R=12, Kmax=4, b=3, rounds=6, dt_in=F32, dt_st=F16, tree=True, accum=True),
    # Mamba-1 lean kernel shapes (N 8 / 16, 16-byte rows): bf16 state with G = H, tree drafts; f16 inputs with
    # P not a multiple of 32 (idle lanes), long rings
    "m1_lean_bf16st": dict(H=3, P=32, N=16, G=3, m1=True, S=4, R=12, Kmax=5, b=3, rounds=10, dt_in=BF16, dt_st=BF16, tree=True),
    "m1_lean_f16": dict(H=2, P=40, N=8, G=1, m1=True, S=4, R=24, Kmax=6, b=3, rounds=12, dt_in=F16, dt_st=F32, tree=True, accum=True),
    # drafts of up to 12 tokens (tokens past the Mamba-1 lean kernel's 8 staged ones), long rings (several staged
    # batches of ring tokens), idle lanes (P 48 in blocks of 64)
    "m1_k12": dict(H=2, P=48, N=16, G=1, m1=True, S=3, R=30, Kmax=12, b=3, rounds=10, dt_in=BF16, dt_st=F32, tree=True, accum=True),
    # one-token calls half the time (Kmax 2): verify_m1dec_kernel under MK_VERIFY_KERNEL=decode (8 states a lane),
    # after two-token tree drafts (its general replay of a multi-node path); G = H; N 8 with idle lanes (P 40 at
    # one lane a channel: 40 threads in a block of 64); fp32 inputs (float4 rows)
    "m1_dec": dict(H=3, P=64, N=16, G=3, m1=True, S=4, R=8, Kmax=2, b=3, rounds=12, dt_in=BF16, dt_st=F32, tree=True),
    "m1_dec_n8": dict(H=2, P=40, N=8, G=1, m1=True, S=4, R=6, Kmax=2, b=3, rounds=12, dt_in=F16, dt_st=F32, tree=True),
    "m1_dec_aview": dict(H=2, P=64, N=16, G=1, m1=True, S=3, R=6, Kmax=2, b=3, rounds=8, dt_in=BF16, dt_st=F32, tree=False, a_view=True),
    "m1_dec_f32": dict(H=2, P=16, N=16, G=1, m1=True, S=3, R=6, Kmax=2, b=3, rounds=12, dt_in=F32, dt_st=F32, tree=False),
    "hot_m1": dict(H=2, P=64, N=16, G=1, m1=True, S=3, R=8, Kmax=4, b=2, rounds=10, dt_in=BF16, dt_st=F32, tree=False, accum=True),
    "hot_fused": dict(H=2, P=128, N=128, G=2, m1=False, S=3, R=16, Kmax=4, b=2, rounds=6, dt_in=BF16, dt_st=F32, tree=False, fused=True, accum=True),
}
CONV = {
    "conv_chain": dict(dc=37, width=4, S=5, Kmax=4, b=3, rounds=8, dt_in=F32, tree=False),
    "conv_tree": dict(dc=700, width=3, S=5, Kmax=6, b=3, rounds=8, dt_in=BF16, tree=True),
    "conv_w8": dict(dc=20, width=8, S=4, Kmax=10, b=2, rounds=8, dt_in=F16, tree=True),
    "conv_w2": dict(dc=9, width=2, S=4, Kmax=3, b=3, rounds=8, dt_in=F32, tree=True),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cases", nargs="*", help=f"case names (default: all): {', '.join(list(CASES) + list(CONV))}")
    ap.add_argument("--lib", default=os.environ.get("VERIFY_EMU_LIB"),
                    help="the emulation library (default: $VERIFY_EMU_LIB)")
    ap.add_argument("--seeds", type=int, default=2, help="sessions per case (seeds 1, 8, 15, ...)")
    ap.add_argument("--rounds", type=int, default=None, help="cap on the rounds of each session")
    args = ap.parse_args(argv)
    if not args.lib:
        ap.error("no library: pass --lib or set VERIFY_EMU_LIB")
    names = args.cases or list(CASES) + list(CONV)
    unknown = [n for n in names if n not in CASES and n not in CONV]
    if unknown:
        ap.error(f"unknown case(s): {unknown}")
    torch.ops.load_library(args.lib)
    for nm in names:
        kw = dict(CASES[nm] if nm in CASES else CONV[nm])
        if args.rounds is not None:
            kw["rounds"] = min(kw["rounds"], args.rounds)
        for seed in range(args.seeds):
            (ssm_case if nm in CASES else conv_case)(seed * 7 + 1, **kw)
        if kw.get("inf_x") and kw.get("tree"):  # the case exists for the poisoned leaves with later tokens
            assert STATS["inf_mid"] > 0, f"{nm}: no poisoned leaf before the last token"
        print("PASS", nm, STATS if nm in CASES else "", flush=True)
        for key in STATS:
            STATS[key] = 0


if __name__ == "__main__":
    main()
