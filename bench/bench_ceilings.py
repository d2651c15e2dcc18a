"""Hardware ceilings of the GPU, and a check of the harness against them.

The harness measures the ceilings (device-to-device copy bandwidth, bf16 GEMM rate) on first use and records
them as rows "ceiling_copy" / "ceiling_bf16_gemm"; these benches make sure that happens even when no other
bench runs. They also time a smaller copy and the same GEMM through ``harness.measure``: their frac_of_floor
should come out near 1.0 (copy a bit lower for a tensor that is not 1 GiB), which checks the timing and the
floor arithmetic end to end.
"""
import torch


def bench_ceiling_copy(benchmark, harness):
    harness.ensure_ceilings()
    n = 64 << 20  # 256 MiB of fp32: well above L2
    src = torch.ones(n, device="cuda", dtype=torch.float32)
    dst = torch.empty_like(src)
    row = harness.measure(benchmark, kernel="copy", impl="torch", shape=dict(l=n), dtype="float32",
                          fn=lambda: dst.copy_(src), bytes=2 * n * 4, note="dst.copy_(src), 256 MiB")
    assert row["ms"] > 0


def bench_ceiling_bf16_gemm(benchmark, harness):
    harness.ensure_ceilings()
    m = 8192
    a = torch.randn(m, m, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(m, m, device="cuda", dtype=torch.bfloat16)
    c = torch.empty(m, m, device="cuda", dtype=torch.bfloat16)
    row = harness.measure(benchmark, kernel="bf16_gemm", impl="torch", shape=dict(d=m), dtype="bfloat16",
                          fn=lambda: torch.mm(a, b, out=c), bytes=3 * m * m * 2, flops=2 * m ** 3,
                          note="torch.mm 8192^3, random data")
    assert row["ms"] > 0
