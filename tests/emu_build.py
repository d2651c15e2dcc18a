"""Builds a CPU emulation driver of tests/cuda_emu/ (the CUDA kernels' unmodified source under the emulation headers)
for the tests that run one, skipping when no C++ compiler is installed; runs several driver processes at once."""
import concurrent.futures
import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMU_DIR = os.path.join(REPO, "tests", "cuda_emu")


def build_emu(tmp, driver: str, sources=(), flags=(), skip_if=(), timeout: int = 900) -> str:
    """Compiles tests/cuda_emu/<driver>.cpp and `sources` (paths under the repository root; g++ -std=c++20 -O1 and
    `flags`, csrc and the emulation headers on the include path) into `tmp` (a directory, or pytest's
    tmp_path_factory: a new one); returns the executable's path. Skips when no compiler is installed, or when the
    compiler's errors name one of `skip_if` (a missing C++20 facility)."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++) to build the CPU emulation of the CUDA kernels")
    exe = str((tmp.mktemp("emu") if hasattr(tmp, "mktemp") else tmp) / driver)
    cmd = [cxx, "-std=c++20", "-O1", *flags, "-I", EMU_DIR, "-I", os.path.join(REPO, "csrc"),
           os.path.join(EMU_DIR, driver + ".cpp"), *[os.path.join(REPO, f) for f in sources], "-o", exe]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0 and any(m in res.stderr for m in skip_if):
        pytest.skip(f"{cxx} lacks a C++20 facility the emulation uses: {res.stderr[-300:]}")
    assert res.returncode == 0, f"building the emulation failed:\n{res.stderr[-4000:]}"
    return exe


def run_processes(argvs, envs=None, workers: int = 2, timeout: int = 1200):
    """Runs each argv (with envs[i] as its environment, if given) `workers` at a time, output captured; returns the
    CompletedProcess of each, in order. Why: an emulation driver is one thread, and the slowest CPU tests run several
    (cases in shards, or one pass per launcher switch)."""
    envs = envs or [None] * len(argvs)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda a, e: subprocess.run(a, capture_output=True, text=True, timeout=timeout, env=e),
                             argvs, envs))
