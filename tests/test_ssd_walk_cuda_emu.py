"""The SSD head-walk CUDA stages (csrc/ssd/ssd_walk.cuh: the backward's dx stage, ssd_dx_kernel.cuh, and the
forward's output stage, ssd_scan_kernel.cuh, through csrc/ssd/ssd_walk.cu's dispatch; bf16, p 64, n 128, chunk 128),
checked on CPU through the fiber emulation of the CUDA execution model in tests/cuda_emu/ (mma.sync, ldmatrix,
cp.async as plain copies, NaN-poisoned shared memory). tests/cuda_emu/ssd_walk_emu.cpp runs the kernels unmodified
on inputs written here. dx / out / ypre start NaN; what the dx stage adds into its fp32 accumulators (d dt', d a,
d a_L, dD, which start at random values) is compared too; all against a float64 evaluation of the stage's formulas
on the same bf16 inputs (SsdDxParams / SsdScanParams in csrc/ssd/ssd.h; the Triton twins are _ssd_bwd_dx_kernel
without DA_OUT and _ssd_chunk_scan_kernel). C B^T's upper triangle and its rows past a chunk's end are NaN, as
unwritten memory may be: the kernels must never read them into a result. Cases: a short last chunk, grids whose CTAs
start and end inside a chunk's heads, g = 1 / 2 / h (C B^T and B / C reloaded when the group changes), varlen packing
with 1-token and empty slots, D (h) / (h, p) / none, with and without z and ypre. The forward's state stage F1
(ssd_state_kernel.cuh, SsdStateParams; twin of _ssd_state_fwd_kernel) has its own cases (test_ssd_state_stage_*):
h_in (bf16) and the final states (fp32) start NaN, are compared with a float64 walk of the chunk recurrence, and the
slots of no chunk must stay NaN; cases with and without initial states, varlen packing with 5-token and empty
sequences, one or several CTAs. The whole forward and backward with these stages run on the H200 in
tests/test_ssd_gpu.py. No GPU needed.
"""
import os
import re
import subprocess

import pytest
import torch

from mamba_kernels.testing import assert_close

from emu_build import build_emu

F64, BF = torch.float64, torch.bfloat16
P, N, Q = 64, 128, 128

# name: (stage, b, l, h, g, cu_seqlens or None, D mode (0 none, 1 (h), 2 (h, p)), num_ctas, z, ypre)
CASES = {
    "dx-b2-l200-h4-g1-D": ("dx", 2, 200, 4, 1, None, 1, 3, False, False),
    "dx-b1-l300-varlen-h4-g2-Dhp": ("dx", 1, 300, 4, 2, [0, 5, 140, 140, 300], 2, 4, False, False),
    "dx-b1-l128-h2-g2-noD-1cta": ("dx", 1, 128, 2, 2, None, 0, 1, False, False),
    "dx-b1-l257-h3-g3-D-5ctas": ("dx", 1, 257, 3, 3, None, 1, 5, False, False),
    "scan-b2-l200-h4-g1-D-z-ypre": ("scan", 2, 200, 4, 1, None, 1, 3, True, True),
    "scan-b1-l300-varlen-h4-g2-Dhp-z": ("scan", 1, 300, 4, 2, [0, 5, 140, 140, 300], 2, 4, True, False),
    "scan-b1-l128-h2-g2-noD-noz-1cta": ("scan", 1, 128, 2, 2, None, 0, 1, False, False),
    "scan-b1-l257-h3-g3-D-ypre-5ctas": ("scan", 1, 257, 3, 3, None, 1, 5, False, True),
    "scan-b1-l300-h5-g1-D-z-2ctas": ("scan", 1, 300, 5, 1, None, 1, 2, True, False),
    "dx-b1-l300-h5-g1-Dhp-2ctas": ("dx", 1, 300, 5, 1, None, 2, 2, False, False),
    # decays ten times slower (SLOW_DECAY): the state terms stay large next to the causal sums where the others'
    # decays make them ~1e-5 (below the tolerance): C h_in^T in a chunk's last rows (scan), exp(a_L - a_s) B dS^T in
    # its first rows (dx)
    "scan-b1-l256-h6-g1-D-z-slowdecay": ("scan", 1, 256, 6, 1, None, 1, 2, True, False),
    "dx-b1-l256-h6-g1-Dhp-slowdecay": ("dx", 1, 256, 6, 1, None, 2, 2, False, False),
}
# the ring's dynamic shared memory (ssd_walk_ring.cuh, kRingSmemBytes): C B^T 34816 + rows 32768 + 3 x (stage 53248 +
# a / dt' / D 1280) + 6 barriers of 8 bytes (two a stage)
RING_SMEM_BYTES = 34816 + 32768 + 3 * (53248 + 1280) + 6 * 8
SLOW_DECAY = {"scan-b1-l256-h6-g1-D-z-slowdecay", "dx-b1-l256-h6-g1-Dhp-slowdecay"}
# How the stage stores and walks: "direct" (MK_SSD_WALK_STAGED=0: 4-byte stores from the fragments; one team of 8
# warps a CTA, MK_SSD_WALK_PINGPONG=0), "staged" (through the warps' staging rows; one team), "pingpong" (the default:
# staged, two teams of 8 warps a CTA taking alternate items, walk_items_pingpong; the cases hold odd segments of a
# (chunk, group)'s heads, a team with no item in a segment, segments cut by CTA ranges; an item starts on its first
# cp.async group and waits for the rest after its first phase; F2's z rows come by the warp that reads them: the
# emulation's copies are synchronous, so it checks the rows each warp copies, not that the reader is the copier, which
# the GPU tests do), "nosplit" (pingpong with MK_SSD_WALK_SPLITWAIT=0: an item starts when its whole stage has
# landed), "noown" (pingpong with MK_SSD_WALK_OWNROWS=0: z with x in the second group). F2 only: "wgmma" (pingpong
# with MK_SSD_WALK_WGMMA=1: ssd_scan_wg_kernel, the swizzled tiles read through the emulated wgmma's descriptors; the
# other walks set it to 0), "wgmma-nosplit" (the same with MK_SSD_WALK_SPLITWAIT=0) and "wgmma-ldsm" (wgmma with
# MK_SSD_WALK_LDSM=1: the epilogue's x / z pairs by ldmatrix). A "-lean" suffix: MK_SSD_WALK_LEAN_NEXT=1 too (a team's
# next item by adding two heads within the chunk); "-ring": MK_SSD_WALK_RING=1 too (F2's wgmma kernel on the ring of
# three stages, ssd_walk_ring.cuh: the other team's copies completing on emulated mbarriers; the launch's shared memory
# shows that it ran); "-ring-tma": and MK_SSD_WALK_RING_TMA=1 (the ring's fills by emulated tensor-map loads, x / z
# 128-byte-swizzled; the loads' count shows that it ran); "-ring-1team": MK_SSD_WALK_RING_TEAMS=1 (the cp.async ring
# with one team of 8 warps doing every item: a lab of the fused design; 256 threads).
SCAN_CASES = [c for c in CASES if CASES[c][0] == "scan"]
WALKS = [(case, walk) for case in CASES
         for walk in ("direct", "staged", "pingpong", "nosplit", "noown", "pingpong-lean")]
WALKS += [(case, walk) for case in SCAN_CASES
          for walk in ("wgmma", "wgmma-nosplit", "wgmma-ldsm", "wgmma-ldsm-lean", "wgmma-ldsm-lean-ring",
                       "wgmma-ldsm-lean-ring-tma", "wgmma-ldsm-lean-ring-1team")]


@pytest.fixture(scope="module")
def emu_exe(tmp_path_factory):
    return build_emu(tmp_path_factory, "ssd_walk_emu")


def _slots(b, l, cu):
    """[(slot, batch row, first token, length)] in the library's chunk-slot order (layout.py)."""
    if cu is None:
        ncr = -(-l // Q)
        return [(r * ncr + c, r, c * Q, min(Q, l - c * Q)) for r in range(b) for c in range(ncr)]
    out, k = [], 0
    for s in range(len(cu) - 1):
        for t0 in range(cu[s], cu[s + 1], Q):
            out.append((k, 0, t0, min(Q, cu[s + 1] - t0)))
            k += 1
    return out


def _write(d, name, t):
    t = t.contiguous()
    (t.view(torch.int16) if t.dtype == BF else t).numpy().tofile(os.path.join(d, name + ".bin"))


def _read(d, name, dtype, shape):
    raw = bytearray(open(os.path.join(d, "out_" + name + ".bin"), "rb").read())
    if dtype == BF:
        return torch.frombuffer(raw, dtype=torch.int16).view(BF).reshape(shape)
    return torch.frombuffer(raw, dtype=dtype).reshape(shape)


def _items(slots, h, g, cb, a, dtp, D):
    """Per (chunk, head) of the stage: (k, row, token slice, head, group, the decay-masked C B^T
    M[t, s] = cb(t, s) exp(a_t - a_s) for s <= t, a, dt', the head's D (0, a scalar or a (1, p) row))."""
    for k, row, t0, ln in slots:
        if ln <= 0:
            continue
        sl = slice(t0, t0 + ln)
        tt = torch.arange(ln)
        causal = tt[:, None] >= tt[None, :]
        for hh in range(h):
            grp = hh // (h // g)
            av, dt = a[row, hh, sl], dtp[row, hh, sl]
            M = torch.where(causal, cb[k, grp, :ln, :ln] * torch.exp(av[:, None] - av[None, :]), 0.0)
            Dv = 0.0 if D is None else (D[hh] if D.dim() == 1 else D[hh][None, :])
            yield k, row, sl, hh, grp, M, av, dt, Dv


def _expected_scan(x, z, C, cb, dtp, a, hin, D, slots, h, g):
    """float64 formulas of the forward output stage: (out, ypre)."""
    y = torch.full(x.shape, float("nan"), dtype=F64)
    for k, row, sl, hh, grp, M, av, dt, Dv in _items(slots, h, g, cb, a, dtp, D):
        X = x[row, sl, hh]
        y[row, sl, hh] = torch.exp(av)[:, None] * (C[row, sl, grp] @ hin[k, hh].T) + (M * dt[None, :]) @ X + Dv * X
    out = y if z is None else y * z * torch.sigmoid(z)
    return out, y


def _expected(x, dy, B, cb, dtp, a, dS, D, slots, h, g, acc):
    """float64 formulas of the dx stage; acc: the accumulators' start values (ddtp, da, dalast, dD), updated."""
    ddtp, da, dalast, dD = (t.clone() for t in acc)
    dx = torch.full(x.shape, float("nan"), dtype=F64)
    for k, row, sl, hh, grp, M, av, dt, Dv in _items(slots, h, g, cb, a, dtp, D):
        X, DY = x[row, sl, hh], dy[row, sl, hh]
        dus = torch.exp(av[-1] - av)[:, None] * (B[row, sl, grp] @ dS[k, hh].T)
        du = M.T @ DY + dus
        dx[row, sl, hh] = du * dt[:, None] + Dv * DY
        ddtp[row, hh, sl] += (X * du).sum(1)
        q = (X * dus).sum(1)
        da[row, hh, sl] -= dt * q
        dalast[k, hh] += (dt * q).sum()
        dD[hh] += (DY * X).sum(0)
    return dx, ddtp, da, dalast, dD


@pytest.mark.parametrize("case,walk", WALKS, ids=[f"{c}-{w}" for c, w in WALKS])
def test_ssd_walk_stage_emulated_on_cpu(case, walk, emu_exe, tmp_path):
    """walk: see WALKS."""
    _check_walk_stage(case, walk, emu_exe, tmp_path)


@pytest.mark.parametrize("walk", ["pingpong", "wgmma-ldsm", "wgmma-ldsm-lean", "wgmma-ldsm-lean-ring",
                                  "wgmma-ldsm-lean-ring-tma", "wgmma-ldsm-lean-ring-1team"])
def test_ssd_scan_stage_keeps_a_nan_sequence_apart(walk, emu_exe, tmp_path):
    """Packed sequences: x of the last one all NaN; the other sequences' outputs stay finite and exact. The chunk
    ending the sequence before it has 7 rows, so a stage that let the next sequence's rows into the products would
    turn them into NaN."""
    _check_walk_stage("scan-b1-l300-varlen-h4-g2-Dhp-z", walk, emu_exe, tmp_path, nan_last=True)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("case", SCAN_CASES)
def test_ssd_ring_tma_under_random_landing(case, seed, emu_exe, tmp_path):
    """F2's TMA-filled ring (the default since session 43) with the emulated tensor-map loads landing in a seeded
    random order once every fiber waits (CUDA_EMU_LAND=random:SEED), not only newest first: its barrier protocol
    must hold for any order the copy engine completes fills in (session 42: with one barrier a stage, a team's parity
    wait could pass on a phase two behind when its own fill landed late)."""
    _check_walk_stage(case, "wgmma-ldsm-lean-ring-tma", emu_exe, tmp_path, land=f"random:{seed}")


def _check_walk_stage(case, walk, emu_exe, tmp_path, nan_last=False, land="newest"):
    """One emulated run of the walk stage `case` the way `walk` says (WALKS), against the float64 formulas. nan_last
    (varlen cases): x of the last sequence NaN, the other sequences' outputs compared. land: CUDA_EMU_LAND (the order
    in which emulated tensor-map loads land; "newest": newest first when every fiber waits)."""
    stage, b, l, h, g, cu, dmode, ctas, use_z, use_ypre = CASES[case]
    gen = torch.Generator().manual_seed(77 + l + 11 * h + g)
    slots = _slots(b, l, cu)
    nk = len(slots) if cu is None else (-(-l // Q)) + len(cu) - 2  # the library's varlen slot bound
    slots += [(k, 0, 0, 0) for k in range(len(slots), nk)]  # bound slots past the last chunk: length 0

    def r(*s, scale=1.0):
        return (torch.randn(*s, generator=gen, dtype=F64) * scale).to(BF)
    x, dy, z, rows = r(b, l, h, P), r(b, l, h, P), r(b, l, h, P), r(b, l, g, N, scale=0.5)
    keep = l if not nan_last else cu[-2]  # tokens compared: before the NaN sequence
    x[:, keep:] = float("nan")
    pn = r(nk, h, P, N, scale=0.5)  # dS (dx stage) or h_in (scan stage)
    cb = r(nk, g, Q, Q, scale=0.3).to(F64)
    dtp = (torch.rand(b, h, l, generator=gen, dtype=F64) * 0.5 + 0.01).float()
    steps = -(torch.rand(b, h, l, generator=gen, dtype=F64) * (0.02 if case in SLOW_DECAY else 0.2))
    a = torch.zeros(b, h, l, dtype=F64)
    for k, row, t0, ln in slots:  # the in-chunk decay cumsum
        if ln > 0:
            a[row, :, t0:t0 + ln] = torch.cumsum(steps[row, :, t0:t0 + ln], -1)
        cb[k, :, :, :] = torch.where(torch.ones(Q, Q).tril().bool(), cb[k], float("nan"))
        cb[k, :, ln:, :] = float("nan")  # rows past the chunk: never written by the C B^T kernel
    a = a.float()
    cb = cb.to(BF)
    D = None if dmode == 0 else torch.randn(*((h,) if dmode == 1 else (h, P)), generator=gen).float()
    acc = [torch.randn(b, h, l, generator=gen).float(), torch.randn(b, h, l, generator=gen).float(),
           torch.randn(nk, h, generator=gen).float(), torch.randn(h, P, generator=gen).float()]
    d = str(tmp_path)
    with open(os.path.join(d, "meta.txt"), "w") as f:
        f.write(f"stage {int(stage == 'scan')}\nb {b}\nl {l}\nh {h}\ng {g}\nn_slots {nk}\nnum_ctas {ctas}\n"
                f"varlen {int(cu is not None)}\nD {dmode}\nz {int(use_z)}\nypre {int(use_ypre)}\n")
    arrays = dict(x=x, rows=rows, cb=cb, pn=pn, dtp=dtp, a=a)
    if stage == "dx":
        arrays.update(dy=dy, ddtp=acc[0], da=acc[1], dalast=acc[2], dD=acc[3])
    elif use_z:
        arrays["z"] = z
    if D is not None:
        arrays["D"] = D
    if cu is not None:
        arrays["tab"] = torch.tensor([[t0, ln] for _, _, t0, ln in slots], dtype=torch.int32)
    for name, t in arrays.items():
        _write(d, name, t)
    two_teams = walk in ("pingpong", "nosplit", "noown", "pingpong-lean") or walk.startswith("wgmma")
    env = {**os.environ, "MK_SSD_WALK_STAGED": "0" if walk == "direct" else "1",
           "MK_SSD_WALK_PINGPONG": "1" if two_teams else "0",
           "MK_SSD_WALK_SPLITWAIT": "0" if walk.endswith("nosplit") else "1",
           "MK_SSD_WALK_OWNROWS": "0" if walk == "noown" else "1",
           "MK_SSD_WALK_WGMMA": "1" if walk.startswith("wgmma") else "0",
           "MK_SSD_WALK_LDSM": "1" if walk.startswith("wgmma-ldsm") else "0",
           "MK_SSD_WALK_LEAN_NEXT": "1" if "-lean" in walk else "0",
           "MK_SSD_WALK_RING": "1" if "-ring" in walk else "0",
           "MK_SSD_WALK_RING_TMA": "1" if walk.endswith("-ring-tma") else "0",
           "MK_SSD_WALK_RING_TEAMS": "1" if walk.endswith("-1team") else "2",
           "CUDA_EMU_LAND": land}
    res = subprocess.run([emu_exe, d], capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    threads = 512 if two_teams and not walk.endswith("-1team") else 256
    assert f"threads {threads}" in res.stdout, res.stdout  # the walk asked for ran
    # the wgmma variant ran (its emulated products counted) exactly when asked for
    assert ("wgmma 0" in res.stdout) != walk.startswith("wgmma"), res.stdout
    assert (f"smem {RING_SMEM_BYTES} " in res.stdout) == ("-ring" in walk), res.stdout  # the ring ran when asked
    tma_loads = int(re.search(r"tma \d+ / (\d+)", res.stdout).group(1))
    assert (tma_loads > 0) == walk.endswith("-ring-tma"), res.stdout  # and its TMA fills
    f64 = {k: t.to(F64) for k, t in dict(x=x, dy=dy, z=z, rows=rows, cb=cb, dtp=dtp, a=a, pn=pn).items()}
    D64 = None if D is None else D.to(F64)
    # outputs carry the bf16 rounding of the decay-weighted C B^T operand and of the bf16 store (measured ~2e-3
    # relative RMS): a quarter of the bf16 bounds; the dx stage's state-path sums (d a, d a_L) and dD take bf16 inputs
    # exactly into fp32 sums: fp32 bounds x 10
    if stage == "scan":
        out, ypre = _expected_scan(f64["x"], f64["z"] if use_z else None, f64["rows"], f64["cb"], f64["dtp"],
                                   f64["a"], f64["pn"], D64, slots, h, g)
        assert_close(_read(d, "out", BF, x.shape)[:, :keep], out[:, :keep], BF, factor=0.25, name=f"{case} out")
        if use_ypre:
            assert_close(_read(d, "ypre", BF, x.shape)[:, :keep], ypre[:, :keep], BF, factor=0.25, name=f"{case} ypre")
        return
    assert not nan_last, "the dx stage's accumulators mix the sequences"
    exp = _expected(f64["x"], f64["dy"], f64["rows"], f64["cb"], f64["dtp"], f64["a"], f64["pn"], D64, slots, h, g,
                    [t.to(F64) for t in acc])
    got = [_read(d, "dx", BF, x.shape), _read(d, "ddtp", torch.float32, (b, h, l)),
           _read(d, "da", torch.float32, (b, h, l)), _read(d, "dalast", torch.float32, (nk, h)),
           _read(d, "dD", torch.float32, (h, P))]
    for name, gt, ex, base in zip(("dx", "ddtp", "da", "dalast", "dD"), got, exp, [None] + acc):
        if name == "dD" and D is None:
            assert torch.equal(gt, base), "dD changed without D"
            continue
        # compare what the stage added (the accumulators' start values are large next to some increments)
        delta_got = gt.to(F64) - (0 if base is None else base.to(F64))
        delta_exp = ex - (0 if base is None else base.to(F64))
        dtype, factor = (BF, 0.25) if name in ("dx", "ddtp") else (torch.float32, 10.0)
        assert_close(delta_got, delta_exp, dtype, factor=factor, name=f"{case} {name}")


# name: (b, l, h, g, cu_seqlens or None, initial states, num_ctas). The stage walks (sequence, head, p half) in order
# over the sequence's chunks; the cases hold a short last chunk, a 5-token sequence, an empty sequence (its final is
# its initial state; its `first` equals the next sequence's) and a slot bound past the last chunk (never written),
# g = 1 / 2 / h, a single CTA, and 96 walks over 7 CTAs (each CTA several walks, its range crossing heads and
# sequences).
STATE_CASES = {
    "state-b2-l200-h4-g1": (2, 200, 4, 1, None, False, 3),
    "state-b1-l300-varlen-h4-g2": (1, 300, 4, 2, [0, 5, 140, 140, 300], False, 4),
    "state-b1-l300-varlen-h4-g2-init": (1, 300, 4, 2, [0, 5, 140, 140, 300], True, 5),
    "state-b1-l128-h2-g2-init-1cta": (1, 128, 2, 2, None, True, 1),
    "state-b1-l257-h3-g3-init": (1, 257, 3, 3, None, True, 5),
    "state-b3-l384-h16-g1-init-7ctas": (3, 384, 16, 1, None, True, 7),
    "state-b1-l300-h4-g1-init-2ctas": (1, 300, 4, 1, None, True, 2),  # 4 walks a CTA (wgmma-pairs: no single walk)
    # an A100's 163 KB a block: at most 3 walks a CTA (6 with 227 KB), 33 CTAs on the "7 SMs"
    "state-b3-l384-h16-g1-init-7ctas-a100smem": (3, 384, 16, 1, None, True, 7, 166912),
}


def _state_smem(walks, skew):
    """ssd_state_kernel.cuh's state_smem_bytes: two stages (B tile 128 x 136, per walk an x half tile 128 x 40 and the
    a / dt' rows) and the h_in staging blocks (16 x 40 bf16; 8, or 4 + 4 W with the skew)."""
    stage = 128 * 136 * 2 + walks * (128 * 40 * 2 + 2 * 128 * 4)
    return 2 * stage + ((4 + 4 * walks) if skew else 8) * 16 * 40 * 2


def _wg_pairs_stage(walks):
    """ssd_state_kernel.cuh's state_wg_stage_bytes(W, pairs): the B tile (128 x 128 bf16), a 16 KB x tile a walk pair
    (an odd last walk a whole one) and each walk's a / dt' rows."""
    return 128 * 128 * 2 + (walks + 1) // 2 * 16384 + walks * 2 * 128 * 4


def _seqs(b, l, cu):
    """[(batch row, first token, length, first chunk slot)] per sequence, slots as layout.DeviceLayout numbers them
    (row * ceil(l / Q) without cu_seqlens; with it the cumulative chunk counts of the sequences before)."""
    if cu is None:
        return [(r, 0, l, r * -(-l // Q)) for r in range(b)]
    out, k = [], 0
    for s in range(len(cu) - 1):
        ln = cu[s + 1] - cu[s]
        out.append((0, cu[s], ln, k))
        k += -(-ln // Q)
    return out


def _expected_state(x, B, dtp, a, init, seqs, h, g):
    """float64 formulas of the forward state stage: ({slot: h_in (h, p, n)}, final (nseq, h, p, n)). Per sequence,
    all heads at once: h_in[slot of chunk c] = S; S = exp(a_L) S + sum_s exp(a_L - a_s) dt'_s x_s^T B_s."""
    hin, final = {}, torch.zeros(len(seqs), h, P, N, dtype=F64)
    grp = torch.arange(h) // (h // g)
    for i, (row, t0, ln, first) in enumerate(seqs):
        S = init[i].clone() if init is not None else torch.zeros(h, P, N, dtype=F64)
        for c, c0 in enumerate(range(t0, t0 + ln, Q)):
            sl = slice(c0, min(c0 + Q, t0 + ln))
            hin[first + c] = S.clone()
            av = a[row, :, sl]  # (h, tokens)
            aL = av[:, -1]
            w = torch.exp(aL[:, None] - av) * dtp[row, :, sl]
            xw = x[row, sl].permute(1, 2, 0) * w[:, None, :]  # (h, p, tokens)
            Bh = B[row, sl][:, grp].permute(1, 0, 2)  # (h, tokens, n)
            S = torch.exp(aL)[:, None, None] * S + xw @ Bh
        final[i] = S
    return hin, final


@pytest.mark.parametrize("variant", ["noskew", "skew", "wgmma", "wgmma-pairs", "wgmma-pairs-tma",
                                     "wgmma-pairs-tmaload", "wgmma-pairs-tmaload-late", "wgmma-pairs-tmaload-wide",
                                     "wgmma-pairs-tmaload-wide-lean1", "wgmma-pairs-tmaload-wide-lean2"])
@pytest.mark.parametrize("case", list(STATE_CASES))
def test_ssd_state_stage_emulated_on_cpu(case, variant, emu_exe, tmp_path):
    """variant: "skew" (MK_SSD_STATE_SKEW: warps 4-7 store their h_in blocks after the chunk's mma), "noskew",
    "wgmma" (MK_SSD_STATE_WGMMA: ssd_state_wg_kernel, the swizzled tiles read through the emulated wgmma),
    "wgmma-pairs" (that with MK_SSD_STATE_PAIRS: two walks' x tiles side by side, one m64n64 product for both) or
    "wgmma-pairs-tma" (that with MK_SSD_STATE_TMA: h_in staged as 128-byte-swizzled boxes, stored by the emulated
    tensor-map copies, which clip at the map's last row as the GPU's do) or "wgmma-pairs-tmaload" (that with
    MK_SSD_STATE_TMA_LOAD: the B and x tiles by emulated tensor-map loads, zeros past the tensors, the rows past a
    chunk's end cleared by the kernel) or "wgmma-pairs-tmaload-late" (that with MK_SSD_STATE_LATE_WAIT: the issuer
    waits for the boxes' reads before the next chunk's staging; the emulated copies are synchronous, so only the GPU
    test can see a race) or "wgmma-pairs-tmaload-wide" (that with MK_SSD_STATE_WIDE: one m64n(32 W)k16 product a k16
    step over every walk, the pair tiles as one operand through the descriptor's LBO), "-lean1" (MK_SSD_STATE_LEAN=1:
    its loads from addresses fixed once a CTA), "-lean2" (=2: and the x scaling a token row a thread)."""
    _check_state_stage(case, variant, emu_exe, tmp_path)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("case", list(STATE_CASES))
def test_ssd_state_stage_under_random_landing(case, seed, emu_exe, tmp_path):
    """F1's default (tensor-map loads of B and x, the wide products, the late wait, lean 2) with the emulated loads
    landing in a seeded random order once every fiber waits (CUDA_EMU_LAND=random:SEED)."""
    _check_state_stage(case, "wgmma-pairs-tmaload-wide-lean2", emu_exe, tmp_path, land=f"random:{seed}")


@pytest.mark.parametrize("variant", ["wgmma-pairs", "wgmma-pairs-tmaload", "wgmma-pairs-tmaload-wide",
                                     "wgmma-pairs-tmaload-wide-lean2"])
def test_ssd_state_stage_keeps_a_nan_sequence_apart(variant, emu_exe, tmp_path):
    """Packed sequences: x and B of the last one all NaN; the other sequences' chunk states and final states stay
    finite and exact (the chunk ending the sequence before it has 7 rows: a stage that let the next sequence's rows
    into the products, as the TMA loads bring them into the tiles, would turn them into NaN)."""
    _check_state_stage("state-b1-l300-varlen-h4-g2-init", variant, emu_exe, tmp_path, nan_last=True)


def _check_state_stage(case, variant, emu_exe, tmp_path, nan_last=False, land="newest"):
    """One emulated run of the state stage `case` in `variant` (test_ssd_state_stage_emulated_on_cpu) against the
    float64 formulas. nan_last (varlen cases): x and B of the last sequence NaN, the other sequences compared. land:
    CUDA_EMU_LAND (as in _check_walk_stage)."""
    skew, wgmma = int(variant == "skew"), variant.startswith("wgmma")
    pairs, tma = int(variant.startswith("wgmma-pairs")), int(variant.startswith("wgmma-pairs-tma"))
    tma_load, wide = int(variant.startswith("wgmma-pairs-tmaload")), int("-wide" in variant)
    late, lean = int(variant.endswith("late") or wide), int(variant[-1]) if "-lean" in variant else 0
    b, l, h, g, cu, use_init, ctas, *optin = STATE_CASES[case]
    gen = torch.Generator().manual_seed(91 + l + 11 * h + g)
    seqs = _seqs(b, l, cu)
    nseq = len(seqs)
    nk = b * -(-l // Q) if cu is None else -(-l // Q) + nseq - 1  # layout.n_chunk_slots
    chunk_slots = [k for k, _, _, ln in _slots(b, l, cu) if ln > 0]
    assert chunk_slots == [first + c for _, _, ln, first in seqs for c in range(-(-ln // Q))]

    def r(*s, scale=1.0):
        return (torch.randn(*s, generator=gen, dtype=F64) * scale).to(BF)
    x, B = r(b, l, h, P), r(b, l, g, N, scale=0.5)
    if nan_last:
        x[:, cu[-2]:], B[:, cu[-2]:] = float("nan"), float("nan")
    dtp = (torch.rand(b, h, l, generator=gen, dtype=F64) * 0.5 + 0.01).float()
    # steps 10x smaller than the other stages' (a_L ~ -1.3 over a whole chunk): every token of a chunk and the state
    # carried in weigh in, so a kernel that drops a token block or the carried state fails (with the others' steps the
    # weights of a chunk's first ~60 tokens and of exp(a_L) S fall below 1e-4)
    steps = -(torch.rand(b, h, l, generator=gen, dtype=F64) * 0.02)
    a = torch.zeros(b, h, l, dtype=F64)
    for _, row, t0, ln in _slots(b, l, cu):  # the in-chunk decay cumsum
        if ln > 0:
            a[row, :, t0:t0 + ln] = torch.cumsum(steps[row, :, t0:t0 + ln], -1)
    a = a.float()
    init = torch.randn(nseq, h, P, N, generator=gen).float() if use_init else None
    d = str(tmp_path)
    with open(os.path.join(d, "meta.txt"), "w") as f:
        f.write(f"stage 2\nb {b}\nl {l}\nh {h}\ng {g}\nnseq {nseq}\nn_slots {nk}\nnum_ctas {ctas}\n"
                f"varlen {int(cu is not None)}\ninit {int(use_init)}\n" + (f"optin {optin[0]}\n" if optin else ""))
    arrays = dict(x=x, rows=B, dtp=dtp, a=a)
    if use_init:
        arrays["init"] = init
    if cu is not None:
        arrays["cu"] = torch.tensor(cu, dtype=torch.int32)
        arrays["first"] = torch.tensor([first for _, _, _, first in seqs], dtype=torch.int32)
    for name, t in arrays.items():
        _write(d, name, t)
    env = {**os.environ, "MK_SSD_STATE_SKEW": str(skew), "MK_SSD_STATE_WGMMA": str(int(wgmma)),
           "MK_SSD_STATE_PAIRS": str(pairs), "MK_SSD_STATE_TMA": str(tma), "MK_SSD_STATE_TMA_LOAD": str(tma_load),
           "MK_SSD_STATE_LATE_WAIT": str(late), "MK_SSD_STATE_WIDE": str(wide), "MK_SSD_STATE_LEAN": str(lean),
           "CUDA_EMU_LAND": land}
    res = subprocess.run([emu_exe, d], capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    # the kernel asked for ran: the skew where its staging fits at the walks a CTA that the plain kernel takes
    walks = int(re.search(r"state walks (\d+)", res.stdout).group(1))
    skew_ran = int(skew and _state_smem(walks, True) <= (optin[0] if optin else 232448))
    tma_ran = int(tma and 2 * _wg_pairs_stage(walks) + walks * 2 * 4096 + 16 <= (optin[0] if optin else 232448))
    load_ran = int(tma_ran and tma_load)
    assert f"skew {skew_ran} wgmma {int(wgmma)} pairs {pairs} tma {tma_ran} tma_load {load_ran} " \
        f"late_wait {int(load_ran and late)} wide {int(load_ran and wide)} lean {lean if load_ran and wide else 0} " \
        "smem_match 1" in res.stdout, res.stdout
    assert (re.search(r"tma \d+ / 0\n", res.stdout) is None) == bool(load_ran), res.stdout  # the loads ran if asked
    calls = int(re.search(r"threads \d+ smem \d+ wgmma (\d+)", res.stdout).group(1))  # emulated wgmma
    assert (calls > 0) == wgmma or "launches 0" in res.stdout, res.stdout
    hin_got = _read(d, "hin", BF, (nk, h, P, N))
    final_got = _read(d, "final", torch.float32, (nseq, h, P, N))
    hin_exp, final_exp = _expected_state(x.to(F64), B.to(F64), dtp.to(F64), a.to(F64),
                                         None if init is None else init.to(F64), seqs, h, g)
    assert sorted(hin_exp) == chunk_slots
    untouched = [k for k in range(nk) if k not in hin_exp]
    assert all(torch.isnan(hin_got[k].float()).all() for k in untouched), f"{case}: wrote a slot of no chunk"
    if nan_last:  # compare the sequences before the NaN one (a sequence's chunk-entry state of its first chunk is
        # its initial state, finite in any case)
        nkeep = len(seqs) - 1
        chunk_slots = [first + c for _, _, ln, first in seqs[:nkeep] for c in range(-(-ln // Q))]
        final_got, final_exp = final_got[:nkeep], final_exp[:nkeep]
    assert torch.isfinite(hin_got[chunk_slots].float()).all(), f"{case}: hin slot of a chunk left unwritten"
    assert torch.isfinite(final_got).all(), f"{case}: final left unwritten"
    # the dot's operands are bf16 (x dt' exp(a_L - a_s) rounded once, B exact) into fp32 sums, and h_in is stored as
    # bf16: about 2e-3 relative RMS each, a quarter of the bf16 bounds (final is fp32 but carries the same operand
    # rounding, so bf16 bounds too)
    assert_close(hin_got[chunk_slots], torch.stack([hin_exp[k] for k in chunk_slots]), BF, factor=0.25,
                 name=f"{case} hin")
    assert_close(final_got, final_exp, BF, factor=0.25, name=f"{case} final")


def test_walk_stages_need_16_byte_aligned_tiles():
    """The CUDA stages copy x / z / B / C / dy 16 bytes at a time: cuda_walk.serves sends a call whose tensors do not
    all start on a 16-byte boundary (a contiguous view at an odd offset) to the Triton kernels (tiles_aligned; the
    GPU side: tests/test_ssd_gpu.py::test_gpu_cuda_walk_misaligned_input_runs_triton)."""
    from mamba_kernels.ssd.cuda_walk import tiles_aligned
    buf = torch.zeros(2 * 64 + 8, dtype=BF)
    aligned, odd = buf[:128].view(2, 64), buf[1:129].view(2, 64)
    assert aligned.data_ptr() % 16 == 0 and odd.data_ptr() % 16 != 0 and odd.is_contiguous()
    assert tiles_aligned((aligned, None, aligned))
    assert not tiles_aligned((aligned, odd))
    assert tiles_aligned((None, buf[8:136]))  # 8 bf16 = 16 bytes in
    assert not tiles_aligned((None, buf[4:132]))  # 8 bytes in


@pytest.mark.parametrize("optin,fits", [(232448, "1 1 1"), (166912, "0 0 1"), (101376, "0 0 0")],
                         ids=["h100", "a100", "rtx4090"])
def test_walk_stages_fit_the_device_shared_memory(optin, fits, emu_exe, tmp_path):
    """ssd_walk_fits (what cuda_walk.serves asks before taking a CUDA stage): the dx and scan walks need ~195 KB of
    shared memory a block (H100 / H200 only), the state stage 100 KB at one walk a CTA (not an RTX 4090's 99 KB);
    elsewhere the Triton kernels run instead of a launch error."""
    with open(os.path.join(str(tmp_path), "meta.txt"), "w") as f:
        f.write(f"stage 3\noptin {optin}\n")
    res = subprocess.run([emu_exe, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == f"fits {fits}", res.stdout


# The fused walk (a lab, ssd_fused_walk_kernel.cuh: F1 and F2 as one walk a (sequence, head) at chunk 64, stage 4 of
# the driver). name: (b, l, h, g, D mode, z, initial states, slow decay, CTAs sharing the walks). The cases hold a
# short last chunk (l 200: 8 tokens; l 130: 2), a single chunk and a single token, walks of five chunks (the two
# stages reused, the state carried through them), g = 1 / 2 / h, D (h) / (h, p) / none. Each runs with a CTA a walk
# and with its CTA count sharing the walks' steps: ranges that end inside a walk (its head piece first, the state
# handed on), whole walks, ranges inside one walk (l 300: 4.3 steps a CTA for walks of 5: hand-off chains), more CTAs
# than steps (l 64).
FQ = 64
FUSED_CASES = {
    "fused-b2-l200-h4-g1-D-z-init": (2, 200, 4, 1, 1, True, True, False, 5),
    "fused-b1-l64-h2-g2-noD-noz": (1, 64, 2, 2, 0, False, False, False, 3),
    "fused-b1-l1-h3-g3-Dhp-z-init": (1, 1, 3, 3, 2, True, True, False, 2),
    "fused-b1-l300-h6-g2-D-z-init-slowdecay": (1, 300, 6, 2, 1, True, True, True, 7),
    "fused-b2-l130-h2-g1-Dhp-noz": (2, 130, 2, 1, 2, False, False, False, 5),
}


def _expected_fused(x, z, B, C, cb, dtp, a, D, init, h, g):
    """float64 formulas of the fused walk: (out, final). Per (sequence, head) over chunks of 64: h_in = S as bf16;
    y = exp(a_t) C h_in^T + (C B^T o exp(a_t - a_s), s <= t) dt' x + D x, out = y silu(z); S = exp(a_L) S +
    sum_s exp(a_L - a_s) dt'_s x_s^T B_s."""
    b, l = x.shape[:2]
    nch = -(-l // FQ)
    out = torch.full(x.shape, float("nan"), dtype=F64)
    final = torch.zeros(b, h, P, N, dtype=F64)
    for row in range(b):
        for hh in range(h):
            grp = hh // (h // g)
            S = init[row, hh].clone() if init is not None else torch.zeros(P, N, dtype=F64)
            for c in range(nch):
                sl = slice(c * FQ, min(l, (c + 1) * FQ))
                ln = sl.stop - sl.start
                av, dt, X = a[row, hh, sl], dtp[row, hh, sl], x[row, sl, hh]
                causal = torch.arange(ln)[:, None] >= torch.arange(ln)[None, :]
                M = torch.where(causal, cb[row * nch + c, grp, :ln, :ln] * torch.exp(av[:, None] - av[None, :]), 0.0)
                hin = S.to(BF).to(F64)
                Dv = 0.0 if D is None else (D[hh] if D.dim() == 1 else D[hh][None, :])
                y = torch.exp(av)[:, None] * (C[row, sl, grp] @ hin.T) + (M * dt[None, :]) @ X + Dv * X
                out[row, sl, hh] = y if z is None else y * z[row, sl, hh] * torch.sigmoid(z[row, sl, hh])
                w = torch.exp(av[-1] - av) * dt
                S = torch.exp(av[-1]) * S + (X * w[:, None]).T @ B[row, sl, grp]
            final[row, hh] = S
    return out, final


@pytest.mark.parametrize("cb_src", ["k1", "in", "wg"])
@pytest.mark.parametrize("split", ["walk", "shared"])
@pytest.mark.parametrize("case", list(FUSED_CASES))
def test_ssd_fused_walk_emulated_on_cpu(case, split, cb_src, emu_exe, tmp_path):
    """The fused walk lab against the float64 formulas, a CTA a walk or the case's CTAs sharing the walks, C B^T from
    K1 ("k1": its upper triangle and its rows past a chunk's end NaN, never read into a result) or computed in the
    kernel ("in": kCbIn; "wg": and its causal part on wgmma, MK_SSD_FUSED_CAUSAL_WG=1); out, the final states and the
    hand-off scratch start NaN."""
    b, l, h, g, dmode, use_z, use_init, slow, ctas = FUSED_CASES[case]
    ctas = 0 if split == "walk" else ctas
    gen = torch.Generator().manual_seed(5 + l + 7 * h + g)
    nch = -(-l // FQ)

    def r(*s, scale=1.0):
        return (torch.randn(*s, generator=gen, dtype=F64) * scale).to(BF)
    x, z, B, C = r(b, l, h, P), r(b, l, h, P), r(b, l, g, N, scale=0.5), r(b, l, g, N, scale=0.5)
    dtp = (torch.rand(b, h, l, generator=gen, dtype=F64) * 0.5 + 0.01).float()
    # slow decay: the carried state and every token of a chunk weigh in (a_L ~ -0.6 over a chunk of 64)
    steps = -(torch.rand(b, h, l, generator=gen, dtype=F64) * (0.02 if slow else 0.2))
    a = torch.zeros(b, h, l, dtype=F64)
    cb = torch.full((b * nch, g, FQ, FQ), float("nan"), dtype=F64)
    for row in range(b):
        for c in range(nch):
            sl = slice(c * FQ, min(l, (c + 1) * FQ))
            ln = sl.stop - sl.start
            a[row, :, sl] = torch.cumsum(steps[row, :, sl], -1)
            cbc = (C[row, sl].to(F64).transpose(0, 1) @ B[row, sl].to(F64).permute(1, 2, 0))  # (g, ln, ln)
            cb[row * nch + c, :, :ln, :ln] = torch.where(torch.ones(ln, ln).tril().bool(), cbc, float("nan"))
    a, cb = a.float(), cb.to(BF)
    D = None if dmode == 0 else torch.randn(*((h,) if dmode == 1 else (h, P)), generator=gen).float()
    init = torch.randn(b, h, P, N, generator=gen).float() if use_init else None
    d = str(tmp_path)
    with open(os.path.join(d, "meta.txt"), "w") as f:
        f.write(f"stage 4\nb {b}\nl {l}\nh {h}\ng {g}\nD {dmode}\nz {int(use_z)}\ninit {int(use_init)}\nctas {ctas}\n"
                f"cbin {int(cb_src != 'k1')}\n")
    arrays = dict(x=x, B=B, C=C, cb=cb, dtp=dtp, a=a)
    arrays.update({k: t for k, t in dict(z=z if use_z else None, D=D, init=init).items() if t is not None})
    for name, t in arrays.items():
        _write(d, name, t)
    env = dict(os.environ, MK_SSD_FUSED_CAUSAL_WG="1" if cb_src == "wg" else "0")
    res = subprocess.run([emu_exe, d], capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    # one launch of the lab kernel, whose emulated wgmma (a lane's call each) show that the variant asked for ran: a
    # step's 8 k16 products of C h_in^T (+ 8 of C B^T with "in" / "wg", + 4 of the causal part with "wg") by the
    # output warpgroup, 4 of the update
    steps = b * h * nch
    per_step = 12 + {"k1": 0, "in": 8, "wg": 12}[cb_src]
    assert f"launches 1 threads 256 smem 108896 wgmma {steps * 128 * per_step} " in res.stdout, res.stdout
    f64 = {k: t.to(F64) for k, t in dict(x=x, z=z, B=B, C=C, cb=cb, dtp=dtp, a=a).items()}
    out, final = _expected_fused(f64["x"], f64["z"] if use_z else None, f64["B"], f64["C"], f64["cb"], f64["dtp"],
                                 f64["a"], None if D is None else D.to(F64), None if init is None else init.to(F64),
                                 h, g)
    # as the state and output stages' own tests: bf16 operands (x' rounded once, h_in, the weighted C B^T) into fp32
    # sums, bf16 stores: a quarter of the bf16 bounds
    assert_close(_read(d, "out", BF, x.shape), out, BF, factor=0.25, name=f"{case} out")
    assert_close(_read(d, "final", torch.float32, (b, h, P, N)), final, BF, factor=0.25, name=f"{case} final")
