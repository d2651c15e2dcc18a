"""Lab timing of the SSD forward state stage F1 (GPU machine, library built): the CUDA stage (cuda_walk.state) at
several grid sizes (num_ctas sets the walks a CTA) against the Triton walk, at b4 l4096 h80 p64 n128 g1, chunk 128,
with the CUDA results' relative difference from the Triton walk's (outputs NaN-poisoned before each check).
CUDA-event medians of 50 launches after warm-up; one line a variant. (Session 20 also timed lab knobs that dropped one
phase each; their figures are in csrc/ssd/ssd_state_kernel.cuh.) Variants read at every launch, so run once a
variant: MK_SSD_STATE_SKEW=1 (warps 4-7 store h_in after the chunk's mma)."""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from mamba_kernels.ssd import cuda_walk  # noqa: E402
from mamba_kernels.ssd import triton as tri  # noqa: E402


def median_us(fn, reps=50):
    for _ in range(5):
        fn()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    for a, b in ev:
        a.record()
        fn()
        b.record()
    torch.cuda.synchronize()
    t = sorted(a.elapsed_time(b) for a, b in ev)
    return 1000 * t[reps // 2]


def main():
    from mamba_kernels.ssd.cuda import has_cuda_op
    assert has_cuda_op("_ssd_state_cuda"), "mamba_kernels._cuda lacks _ssd_state_cuda"
    b, l, h, p, n, g, q = 4, 4096, 80, 64, 128, 1, 128
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(b, l, h, p, device="cuda", generator=gen).bfloat16()
    B = (torch.randn(b, l, g, n, device="cuda", generator=gen) * 0.5).bfloat16()
    dt = (torch.randn(b, l, h, device="cuda", generator=gen) * 0.5).bfloat16()
    A = -(torch.rand(h, device="cuda", generator=gen) + 0.5)
    bias = torch.randn(h, device="cuda", generator=gen) * 0.5 - 1.0
    *_, hpg, _, dev, kind, prec, sdt, cfg, lay = tri._setup(x, B, q, None)
    dtp, a = tri._cumsum_fwd(dt, A, bias, True, None, lay, b, l, h, q, cfg)
    sin = torch.empty(lay.nk, h, p, n, device="cuda", dtype=torch.bfloat16)
    fin = torch.empty(b, h, p, n, device="cuda", dtype=torch.float32)
    sms = tri._num_sms(dev)
    ref_in, ref_fin = sin.clone(), fin.clone()
    tri._state_fwd_triton(x, B, dtp, a, None, ref_in, ref_fin, lay, l, h, p, n, hpg, g, q, dev, kind, prec, cfg)
    t = median_us(lambda: tri._state_fwd_triton(x, B, dtp, a, None, sin, fin, lay, l, h, p, n, hpg, g, q, dev, kind,
                                                prec, cfg))
    print(f"triton F1: {t:.1f} us", flush=True)
    for ctas in (sms, 160, 2 * sms, 640):
        t = median_us(lambda: cuda_walk.state(x, B, dtp, a, None, lay, ctas, sin, fin))
        sin.fill_(float("nan"))
        fin.fill_(float("nan"))
        cuda_walk.state(x, B, dtp, a, None, lay, ctas, sin, fin)
        torch.cuda.synchronize()
        e_in = ((sin.float() - ref_in.float()).norm() / ref_in.float().norm()).item()
        e_fin = ((fin - ref_fin).norm() / ref_fin.norm()).item()
        print(f"cuda F1 num_ctas {ctas}: {t:.1f} us  (rel diff vs triton: states_in {e_in:.2e}, final {e_fin:.2e})",
              flush=True)

if __name__ == "__main__":
    main()
