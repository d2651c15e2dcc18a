"""Build-level checks: every CUDA kernel file compiles with plain nvcc (no torch headers) for sm_80 and
sm_90a, and backends() reports something sensible."""
import glob
import os
import shutil
import subprocess

import pytest

import mamba_kernels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CU_FILES = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "csrc", "*", "*.cu")))
ARCHS = {"sm80": "arch=compute_80,code=sm_80", "sm90a": "arch=compute_90a,code=sm_90a"}
NVCC = shutil.which("nvcc")


def test_backends_report():
    info = mamba_kernels.backends()
    assert set(info) == {"ref", "cpu", "triton", "cuda"}
    assert info["ref"]["available"]
    for name, entry in info.items():
        assert isinstance(entry["reason"], str) and entry["reason"], name


def test_cpu_extension_is_built():
    # CI and every install build the C++ CPU extension; its absence is a build failure, not a skip.
    assert mamba_kernels.backends()["cpu"]["available"], mamba_kernels.backends()["cpu"]["reason"]


def test_there_are_cuda_sources():
    assert CU_FILES, "no .cu files under csrc/"


@pytest.mark.skipif(NVCC is None, reason="nvcc not found")
@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("cu", CU_FILES)
def test_nvcc_compiles_kernel_without_torch(cu, arch, tmp_path):
    cmd = [NVCC, "-std=c++17", "-O3", "--expt-relaxed-constexpr", "-I", os.path.join(ROOT, "csrc"),
           "-gencode", ARCHS[arch], "-c", os.path.join(ROOT, cu), "-o", str(tmp_path / "k.o")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"nvcc failed for {cu} ({arch}):\n{res.stderr[-4000:]}"
    # Kernel files must not pull in torch.
    src = open(os.path.join(ROOT, cu)).read()
    assert "torch/" not in src and "ATen/" not in src, f"{cu} includes a torch header"
