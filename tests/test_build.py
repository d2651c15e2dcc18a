"""Build-level checks: every CUDA kernel file compiles with plain nvcc (no torch headers) for sm_80 and
sm_90a, and backends() reports something sensible."""
import concurrent.futures
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


class _ParallelNvcc:
    """The nvcc compiles of test_nvcc_compiles_kernel_without_torch, run os.cpu_count() at a time: they are the
    slowest part of the CPU suite (single-threaded, minutes in all), and run one after another they kept CI past its
    time budget. The first request submits its own compile first, then every other one; each test waits for its own
    result."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
        self.futures = {}

    def _compile(self, cu, arch):
        out = os.path.join(self.out_dir, cu.replace(os.sep, "_") + f".{arch}.o")
        cmd = [NVCC, "-std=c++17", "-O3", "--expt-relaxed-constexpr", "-I", os.path.join(ROOT, "csrc"),
               "-gencode", ARCHS[arch], "-c", os.path.join(ROOT, cu), "-o", out]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=900)

    def result(self, cu, arch):
        if (cu, arch) not in self.futures:
            self.futures[(cu, arch)] = self.pool.submit(self._compile, cu, arch)
            for c in CU_FILES:
                for a in ARCHS:
                    if (c, a) not in self.futures:
                        self.futures[(c, a)] = self.pool.submit(self._compile, c, a)
        return self.futures[(cu, arch)].result()


@pytest.fixture(scope="module")
def parallel_nvcc(tmp_path_factory):
    runner = _ParallelNvcc(str(tmp_path_factory.mktemp("nvcc")))
    yield runner
    runner.pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.skipif(NVCC is None, reason="nvcc not found")
@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("cu", CU_FILES)
def test_nvcc_compiles_kernel_without_torch(cu, arch, parallel_nvcc):
    res = parallel_nvcc.result(cu, arch)
    assert res.returncode == 0, f"nvcc failed for {cu} ({arch}):\n{res.stderr[-4000:]}"
    # Kernel files must not pull in torch.
    src = open(os.path.join(ROOT, cu)).read()
    assert "torch/" not in src and "ATen/" not in src, f"{cu} includes a torch header"


def test_forcing_cuda_without_cuda_is_a_clear_error():
    import torch

    if torch.version.cuda is not None and NVCC is not None:
        import pytest
        pytest.skip("CUDA build is possible here")
    env = dict(os.environ, MAMBA_KERNELS_CUDA="1")
    res = subprocess.run(["python", "setup.py", "--name"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode != 0
    assert "MAMBA_KERNELS_CUDA=1 but the CUDA extension cannot be built" in res.stderr + res.stdout


def test_cuda_home_is_found_through_a_wrapper_nvcc():
    """A wrapper script on PATH (like /usr/local/bin/nvcc here) is not the toolkit root; setup.py asks nvcc."""
    if NVCC is None:
        import pytest
        pytest.skip("nvcc not found")
    code = ("import runpy,sys; sys.argv=['setup.py','--name']; import os; os.environ.pop('CUDA_HOME', None);"
            "g = runpy.run_path('setup.py', run_name='not_main'); print('CUDA_HOME=' + str(g['find_cuda_home']()))")
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_HOME", "CUDA_PATH")}
    res = subprocess.run(["python", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("CUDA_HOME=")]
    assert line, res.stderr[-2000:]
    home = line[0].split("=", 1)[1]
    assert os.path.isfile(os.path.join(home, "bin", "nvcc")), home
