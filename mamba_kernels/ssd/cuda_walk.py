"""The CUDA stages of the Triton SSD pipeline (csrc/ssd/ssd_walk.cuh, ssd_state_kernel.cuh, ssd_state_wg_kernel.cuh,
ssd_scan_kernel.cuh, ssd_dx_kernel.cuh): the forward's state stage
F1 (torch.ops.mamba_kernels._ssd_state_cuda, twin of _ssd_state_fwd_kernel: a CTA walks several (head, p half) state
walks of one (sequence, group) chunk by chunk, sharing each chunk's B tile), the forward's output stage F2
(torch.ops.mamba_kernels._ssd_scan_cuda, twin of _ssd_chunk_scan_kernel) and the backward's dx stage B2
(torch.ops.mamba_kernels._ssd_dx_cuda, twin of _ssd_bwd_dx_kernel without DA_OUT). F2 and B2: one persistent CTA an
SM walks (chunk, head) items head-fastest, keeping the chunk's C B^T and B / C rows in shared memory across a group's
heads and double-buffering each head's tiles by cp.async. Same results as the Triton kernels up to summation order.

They serve bf16 inputs with p 64, n 128 and chunk 128 (the shape they were written for: Mamba-2's default head and
state sizes, and the chunk the Triton path runs at) on sm_80+ devices that give a CTA the shared memory the stage
needs (F2 / B2 ~195 KB with one team of 8 warps, ~213 KB with two: H100 / H200; F1 100 KB: also A100, not RTX 40xx;
`_fits`) when the extension was built with them and at least 8 heads share a group (with fewer, C B^T and B / C are
reloaded for nearly every item and nothing is shared); the forward stages also need bf16 chunk-entry states. H200,
b4 l4096 h80 p64 n128 g1: F1 163 us against 171 for the Triton walk (2026-12-01, 4a98a62); F2 271.8 us without ypre
(768cb6a; ~337-342 for the Triton kernel); B2 289.5 us (555.7 for the Triton kernel at 62b2482); forward 0.452 ms,
forward + backward 1.771 ms (5f4458b with MK_SSD_WALK_YPRE=1, now the default). MK_SSD_CUDA_WALK=0 in the
environment (read at each call) keeps the Triton kernels: A/B timing; F2's and B2's outputs go through staging rows
(ssd_walk.cuh; F2 328 against 339 us stored from the fragments, 03b0e07) unless MK_SSD_WALK_STAGED=0, F2 / B2 run as
two teams of 8 warps a CTA (F2 271.8 against 325.1 us, B2 289.5 against 310.3, 768cb6a) unless
MK_SSD_WALK_PINGPONG=0, and F2 also serves forwards that keep ypre for a backward unless MK_SSD_WALK_YPRE=0
(scan_serves_ypre). Session 22 (2026-12-01): with two teams an item starts when its (p, n) tile has landed
(MK_SSD_WALK_SPLITWAIT; F2 264.8 against 271.8 us, with ypre 291.4 against 309.9, B2 283.1 against 290.9), a team
prefetches its next item into L2 (MK_SSD_WALK_PREFETCH), F1's warps 4-7 store h_in after the chunk's mma
(MK_SSD_STATE_SKEW; 159-160 against 161-162 us), F2's z rows come by the warp that reads them (MK_SSD_WALK_OWNROWS;
F2 267.6 against 269.9 us): all on by default, "0" turns one off; forward 0.448 ms, forward + backward 1.744 ms
(428e5ba). Sessions 26-27: on a compute capability 9.0 device with an sm_90a build, F2's C h_in^T
(MK_SSD_WALK_WGMMA; 235 against 270 us) and F1 (MK_SSD_STATE_WGMMA; 150.5 against 165 us) run on wgmma by default;
forward 0.4066 ms, forward + backward 1.724 ms (1662b68). Session 28: F1 adds two walks' products as one
(MK_SSD_STATE_PAIRS; 148.8 against 150.9 us) and F2's epilogue loads x / z by ldmatrix (MK_SSD_WALK_LDSM; 233 against
237 us), both on by default. Session 32: F1 moves its tiles and chunk-entry states by the tensor memory accelerator
(MK_SSD_STATE_TMA, MK_SSD_STATE_TMA_LOAD; csrc/common/tma.h; 126-128 against 146-149 us), on by default; forward
0.3739 ms, forward + backward 1.697 ms (f06d819); F2's stages loaded the same way were slower (244 against 234 us;
removed in session 33). Session 33: F1's TMA store issuer waits for the copy engine's reads of a chunk's h_in boxes
just before the next chunk's staging barrier (MK_SSD_STATE_LATE_WAIT; 116.7 against 126.3 us), on by default; forward
0.3658 ms, forward + backward 1.689 ms (31aeccf); four other F1 variants measured and removed in session 34 (see
csrc/ssd/ssd_walk.cu). Session 35: F1's products as one wgmma a k16 step over every walk (MK_SSD_STATE_WIDE), its
loads from addresses fixed once a CTA and its x scaling a token row a thread (MK_SSD_STATE_LEAN=2), F2 / B2's next
item by addition (MK_SSD_WALK_LEAN_NEXT), all on by default: F1 99.5-99.8 against 116.6-117.1 us, F2 231-232 against
234; forward 0.3496 ms, forward + backward 1.671 ms (2964d58). Session 36: F2's wgmma kernel runs its two teams on a
ring of three stages, each team filling the stage it frees for the other team's item three on (MK_SSD_WALK_RING,
csrc/ssd/ssd_walk_ring.cuh; needs 231,216 bytes of shared memory a CTA), on by default: F2 221.5-225.3 against
233.8-235.1 us; forward 0.3426 ms, forward + backward 1.639 ms (ef45e38). Session 37: the ring's fills by the copy
engine (MK_SSD_WALK_RING_TMA) and F2 as a programmatic dependent of the kernel before it (MK_SSD_WALK_PDL), both on by
default: F2 205.5-207.4 against ~224 us; forward 0.3220 ms, forward + backward 1.636 ms (e4646e9 with K0 + K1 as two
launches, MK_SSD_PREP_ONE_LAUNCH=0, the default since 92c8018: as one launch, with the TMA ring, repeated forwards
failed now and then; bench/notes/chunked_ssd_2.md). Session 38: F2's decays as exp2 of an fma and its swizzled
addresses from the lane (F2 lab 208.5-209.5 against 212.5-213.7 us; forward 0.3173 ms with the TMA ring, d86ef82's
kernels); then the TMA ring and the dependent launch off by default again: forwards back to back with them failed
once ("unspecified launch failure"; csrc/ssd/ssd_walk.cu says where else it was seen), so the default is session
36's cp.async ring again until that is understood. Session 40 (no GPU): a lab of F1 and F2 fused into one walk at
chunk 64 (fused_walk_lab; MK_SSD_FUSED_WALK=1 hands the forward's calls without a backward to it). Session 41: timed,
0.345 ms at shape 1 in the bench against the default's 0.337 (output-bound): stays opt-in.
Session 42: the TMA ring's failure explained (a team's parity wait for item j + 3 could pass on the phase before item
j's when item j's own fill had not landed) and fixed with two barriers a stage; session 43: 36,000 forwards back to
back in the modes that failed ran clean (H100), and the TMA ring, the dependent launch and the one-launch K0 + K1 are
the defaults again.
CALLS counts the CUDA launches per stage (tests assert that they happened).
"""
from __future__ import annotations

import functools
import os

import torch

from .._backend import device_capability
from .cuda import has_cuda_op

CALLS = {"dx": 0, "scan": 0, "state": 0, "fused": 0}
HEADDIM, DSTATE, CHUNK, MIN_HEADS_PER_GROUP = 64, 128, 128, 8


def serves(x: torch.Tensor, p: int, n: int, Q: int, hpg: int, op: str, tiles=()) -> bool:
    """True when the CUDA stage `op` ("_ssd_dx_cuda" / "_ssd_scan_cuda" / "_ssd_state_cuda") runs this call (else
    the Triton kernel). tiles: the caller's tensors that the kernel copies 16 bytes at a time (x, z, B / C, dy): each
    must start on a 16-byte boundary (a contiguous view at an odd offset goes to Triton, which has no such need)."""
    return (x.is_cuda and x.dtype == torch.bfloat16 and p == HEADDIM and n == DSTATE and Q == CHUNK
            and hpg >= MIN_HEADS_PER_GROUP and os.environ.get("MK_SSD_CUDA_WALK", "1") != "0" and tiles_aligned(tiles)
            and device_capability(x.device)[0] >= 8 and has_cuda_op(op)
            and _fits(op, x.device.index if x.device.index is not None else torch.cuda.current_device()))


def scan_serves_ypre() -> bool:
    """Whether F2 also serves forward calls that keep the pre-gate output for a backward: yes unless
    MK_SSD_WALK_YPRE=0 (read at each call; A/B timing). With one team and fragment stores it was slower than the
    Triton kernel there (383.7 against ~378 us); with two teams and staged stores the forward + backward's kernels
    take 1738.9 us against 1815.1 (H200, b4 l4096 h80 p64 n128 g1, 5f4458b)."""
    return os.environ.get("MK_SSD_WALK_YPRE", "1") != "0"


_STAGE = {"_ssd_dx_cuda": 0, "_ssd_scan_cuda": 1, "_ssd_state_cuda": 2}


@functools.lru_cache(maxsize=None)
def _fits(op: str, device: int) -> bool:
    """Whether the device gives a CTA the shared memory the stage needs (the walk stages ~195 KB: sm_90 only; the
    state stage 100 KB). Else the Triton kernel runs (before this check an A100 or RTX GPU got a launch error)."""
    return hasattr(torch.ops.mamba_kernels, "_ssd_walk_fits") and \
        bool(torch.ops.mamba_kernels._ssd_walk_fits(_STAGE[op], device))


def tiles_aligned(tiles) -> bool:
    """Every tensor given (None skipped) starts on a 16-byte boundary."""
    return all(t is None or t.data_ptr() % 16 == 0 for t in tiles)


def dx(x, dy, B, cb, dtp, a, dS, D, tab, n_slots, num_ctas, dx_out, ddtp, da, dalast, dD32) -> None:
    """dx = dt' du + D dy; adds d dt', d a, d a_L and dD (when D is given) into the fp32 accumulators (shapes as the
    Triton backward's: x, dy, dx (b, l, h, p); B (b, l, g, n); cb (n_slots, g, Q, Q); dtp, a, ddtp, da (b, h, l);
    dS (n_slots, h, p, n); dalast (n_slots, h); dD32 (h, p)). tab: the varlen chunk table (n_slots, 2) or None."""
    CALLS["dx"] += 1
    torch.ops.mamba_kernels._ssd_dx_cuda(x, dy, B, cb, dtp, a, dS, d_fp32(D), tab, int(n_slots), int(num_ctas), dx_out,
                                        ddtp, da, dalast, dD32)


def scan(x, z, C, cb, dtp, a, states_in, D, tab, n_slots, num_ctas, out, ypre) -> None:
    """out = y silu(z) (or y), ypre = y when given, y = exp(a) C h_in^T + (C B^T o decay o dt') x + D x (shapes as the
    Triton forward's: x, z, out, ypre (b, l, h, p); C (b, l, g, n); states_in (n_slots, h, p, n) bf16)."""
    CALLS["scan"] += 1
    torch.ops.mamba_kernels._ssd_scan_cuda(x, z, C, cb, dtp, a, states_in, d_fp32(D), tab, int(n_slots), int(num_ctas),
                                          out, ypre)


def state(x, B, dtp, a, initial_states, lay, num_ctas, states_in, final) -> None:
    """states_in[slot of chunk c] = the state entering chunk c (bf16), final = the state after each sequence (fp32):
    S = exp(a_L) S + sum_s exp(a_L - a_s) dt'_s x_s^T B_s from initial_states (or 0). x (b, l, h, p), B (b, l, g, n)
    bf16; dtp, a (b, h, l) fp32; initial_states, final (nseq, h, p, n) fp32; states_in (lay.nk, h, p, n) bf16;
    lay: the call's DeviceLayout (its cu / first tables with cu_seqlens)."""
    CALLS["state"] += 1
    init = None if initial_states is None else initial_states.float().contiguous()
    cu, first = (lay.cu, lay.first) if lay.varlen else (None, None)
    torch.ops.mamba_kernels._ssd_state_cuda(x, B, dtp, a, init, cu, first, int(lay.nseq), int(lay.nk), int(num_ctas),
                                           states_in, final)


def d_fp32(D):
    """D as the walk kernels read it (fp32, contiguous; None stays None): no copy for such a D."""
    return None if D is None else D.detach().float().contiguous()


_FUSED_FLAGS = {}  # device index -> the fused walk's hand-off flags (int32 zeros; every call leaves them 0)


def _fused_flags(dev, walks):
    """The fused walk's hand-off flags for `walks` walks on `dev`: zeros, kept across calls (grown as needed), since
    the kernel clears each flag after its reader has taken the state (a CUDA graph's replays find them cleared too).
    One buffer a device: calls on two streams at once would share it (a lab)."""
    idx = dev.index if dev.index is not None else torch.cuda.current_device()
    flags = _FUSED_FLAGS.get(idx)
    if flags is None or flags.numel() < walks:
        flags = _FUSED_FLAGS[idx] = torch.zeros(max(walks, 1024), device=dev, dtype=torch.int32)
    return flags[:walks]


def fused_serves(x, z, B, C, cu_seqlens) -> bool:
    """Whether the Triton forward hands a call without a backward to the fused walk (fused_walk_lab): only with
    MK_SSD_FUSED_WALK=1 (read at each call; off by default: a lab, slower than the default at shape 1), bf16, p 64,
    n 128, no cu_seqlens, 16-byte aligned tiles, on a compute capability 9.0 device with the op built (sm_90a)."""
    return (os.environ.get("MK_SSD_FUSED_WALK", "0") == "1" and x.is_cuda and x.dtype == torch.bfloat16
            and cu_seqlens is None and x.shape[-1] == HEADDIM and B.shape[-1] == DSTATE and tiles_aligned((x, z, B, C))
            and device_capability(x.device) == (9, 0) and has_cuda_op("_ssd_fused_walk_lab"))


def fused_walk_lab(x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False, dt_limit=None,
                   initial_states=None, return_final_states=False, out=None, final_states=None, num_ctas=None):
    """A lab, not part of the API (csrc/ssd/ssd_fused_walk_kernel.cuh, docs/ssd_fused_walk_design.md): the chunked SSD
    forward without autograd as K0 and K1 at chunk 64 (the Triton kernels: dt' and the in-chunk cumsum a, C B^T) and
    one fused CUDA walk a (sequence, head) (F1 + F2, h_in kept on chip). x, z (b, l, h, 64), B, C (b, l, g, 128) bf16;
    dt (b, l, h); A, dt_bias (h); D (h) or (h, 64); initial_states (b, h, 64, 128). Returns out (and the final states,
    fp32), written into `out` / `final_states` when given. num_ctas: None = two CTAs an SM sharing the walks' chunks
    evenly (lab step 2: states handed on between CTAs), 0 = a CTA a walk (lab step 1), else that many CTAs. With
    MK_SSD_FUSED_CB=1 the walk computes each chunk's C B^T itself (wgmma, fp32 values weighted before rounding) and
    K1 does not run; with MK_SSD_FUSED_CAUSAL_WG=1 as well, its causal part runs on wgmma (A from registers). Needs
    an sm_90a build on an H100 / H200 (scripts/lab/ssd_fused_lab.py times it)."""
    from .triton import _cb, _contig, _cumsum_fwd, _setup
    if not has_cuda_op("_ssd_fused_walk_lab"):
        raise RuntimeError("fused_walk_lab: the CUDA extension was built without the fused walk")
    x, dt, A, B, C, z, dt_bias = _contig(x, dt, A, B, C, z, dt_bias)
    b, l, h, p, g, n, hpg, Q, dev, kind, prec, sdt, cfg, lay = _setup(x, B, 64, None)
    dtp, a = _cumsum_fwd(dt, A, dt_bias, dt_softplus, dt_limit, lay, b, l, h, Q, cfg)
    # MK_SSD_FUSED_CB=1 (read at each call): C B^T on wgmma inside the walk instead of K1's (no K1 launch)
    cb = None if os.environ.get("MK_SSD_FUSED_CB", "0") == "1" else _cb(C, B, lay, l, g, n, Q, kind, sdt, cfg)
    out = torch.empty_like(x) if out is None else out
    final = None
    if return_final_states:
        final = torch.empty(b, h, p, n, device=x.device, dtype=torch.float32) if final_states is None else final_states
    init = None if initial_states is None else initial_states.detach().float().contiguous()
    if num_ctas is None:
        num_ctas = 2 * torch.cuda.get_device_properties(x.device).multi_processor_count
    scratch = flags = None
    if num_ctas > 0:
        scratch = torch.empty(b * h * p * n, device=x.device, dtype=torch.float32)
        flags = _fused_flags(x.device, b * h)
    torch.ops.mamba_kernels._ssd_fused_walk_lab(x, z, B, C, cb, dtp, a, d_fp32(D), init, out, final, num_ctas,
                                                scratch, flags)
    CALLS["fused"] += 1
    return (out, final) if return_final_states else out
