"""Builds a CPU emulation driver of tests/cuda_emu/ (the CUDA kernels' unmodified source under the emulation headers)
for the tests that run one, skipping when no C++ compiler is installed; runs several driver processes at once."""
import concurrent.futures
import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMU_DIR = os.path.join(REPO, "tests", "cuda_emu")


def build_emu(tmp_path_factory, driver: str, timeout: int = 900) -> str:
    """Compiles tests/cuda_emu/<driver>.cpp (g++ -std=c++20 -O1, csrc and the emulation headers on the include
    path); returns the executable's path."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++) to build the CPU emulation of the CUDA kernels")
    exe = str(tmp_path_factory.mktemp("emu") / driver)
    cmd = [cxx, "-std=c++20", "-O1", "-I", EMU_DIR, "-I", os.path.join(REPO, "csrc"),
           os.path.join(EMU_DIR, driver + ".cpp"), "-o", exe]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
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
