"""The CUDA SSD forward (csrc/ssd/: the chunk-parallel pipeline ssd_chunk_kernel.cuh, default, and the fused kernel
ssd_fwd_kernel.cuh, MK_SSD_CUDA_FUSED=1), checked on CPU through the fiber emulation of the CUDA execution model in
tests/cuda_emu/ (cuda_runtime.h: lanes as fibers, warp barriers for shuffles and mma.sync, NaN-poisoned shared
memory). tests/cuda_emu/ssd_emu.cpp runs both paths of every case, unmodified, through the real launcher
(csrc/ssd/ssd_launch.cu, params.path = 2 / 1) and compares out, the pre-gate y, the final states and the
chunk-entry states with the C++ CPU forward in double (csrc/ssd/ssd_cpu.cpp, checked against python_ref by
tests/test_ssd.py). Cases: l = 1, l not a multiple of the chunk, chunk 64 / 128 / 256, g in {1, 2, h}, p in
{32, 33, 48, 64, 128}, n in {16, 17, 32, 40, 64, 128}, varlen with empty, 1-token and long sequences, initial
states, z on / off, D (h) / (h, p) / none, dt in fp32, padded strides (scalar loads) and 16-byte rows (cp.async),
steep decays; bf16 (tensor-core bf16 path), fp32 and fp16 (3xTF32 path) inputs; for the pipeline's 8-warp kernels
and their ticket-ordered chunk hand-over also p 32 with g = h, several p blocks and batch rows, varlen sequences
all shorter than a tile, l = 0 (finisher CTAs) and fp32 p 128 n 128 across chunks of 256 (the emulation aborts if
a chunk finds its predecessor's flag unset). Every case also runs the pipeline's run-time variants (chunk_knobs(),
set by the driver as MK_SSD_HANDOVER / MK_SSD_SCAN_HEADS would): "chunked" = hand-over on (MK_SSD_HANDOVER=1),
one head a scan CTA; "chunked-ho0" = MK_SSD_HANDOVER=0 (chunk states S_c + the separate state-pass kernel: the
library's default); "chunked-sh2" /
"chunked-sh4" = MK_SSD_SCAN_HEADS=2 / 4 (C B^T shared by the heads of a group in one scan CTA; g = h cases check
the launcher's fallback to one head), with cases of g = 1 and 8 / 4 heads a group, varlen, 2 p blocks and fp32
tiles. No GPU needed.
"""
import subprocess

from emu_build import build_emu, run_processes


def test_ssd_cuda_forward_emulated_on_cpu(tmp_path):
    exe = build_emu(tmp_path, "ssd_emu", sources=["csrc/ssd/ssd_cpu.cpp"], timeout=600)
    # the cases in two processes at once (one thread each; the suite's slowest test, ~3 minutes in one)
    n_cases = int(subprocess.run([exe, "count"], capture_output=True, text=True, timeout=60).stdout)
    runs = run_processes([[exe] + [str(i) for i in range(r, n_cases, 2)] for r in range(2)])
    out = "".join(r.stdout for r in runs)
    print(out)
    for r in runs:
        assert r.returncode == 0, f"the emulated CUDA SSD forward disagrees with the CPU forward:\n{r.stdout}" \
                                  f"{r.stderr[-2000:]}"
    assert sum(int(line.split()[1]) for line in out.splitlines() if line.startswith("cases: ")) == n_cases
    for label in ("chunked", "chunked-ho0", "chunked-sh2", "chunked-sh4", "fused  "):
        assert out.count(f"ok   {label} ") >= 29, label
    # an RTX 30xx / 40xx gives a block 101376 bytes: fp32 tiles at n 128 need more (chunk states 103 KB, fused 137
    # KB): the launcher says so instead of cudaFuncSetAttribute's "invalid argument"
    rtx = subprocess.run([exe, "optin", "101376", "b1-l600-h2-p128-n128-g2-Q256-fp32-gentle"], capture_output=True,
                         text=True, timeout=600)
    assert rtx.returncode == 1 and "bytes of shared memory a block; this GPU allows 101376" in rtx.stdout, rtx.stdout
