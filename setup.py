"""Build for mamba_kernels.

Two extensions, both through torch.utils.cpp_extension with ninja:
  mamba_kernels._C     C++ CPU kernels (OpenMP), always built.
  mamba_kernels._cuda  CUDA kernels, built when torch has CUDA and a CUDA toolkit is found.

Environment:
  MAMBA_KERNELS_CUDA   "1" forces the CUDA build (a clear error when impossible), "0" skips it,
                       unset = auto.
  TORCH_CUDA_ARCH_LIST overrides the default architectures "8.0;8.6;8.9;9.0a".
  CUDA_HOME            the toolkit root; otherwise found from nvcc (a wrapper script is resolved).
  MAX_JOBS             parallel compile jobs (ninja).

Nothing is downloaded: sources are globbed from csrc/.
"""
import glob
import os
import re
import shutil
import subprocess
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCHS = "8.0;8.6;8.9;9.0a"


def _is_toolkit_root(path):
    return bool(path) and os.path.isfile(os.path.join(path, "bin", "nvcc")) and (
        os.path.isfile(os.path.join(path, "include", "cuda_runtime.h"))
        or glob.glob(os.path.join(path, "targets", "*", "include", "cuda_runtime.h"))
    )


def find_cuda_home():
    """The CUDA toolkit root, or None.

    `nvcc` on PATH may be a wrapper script (e.g. /usr/local/bin/nvcc exec'ing the real one), so
    its parent is not the toolkit root: ask nvcc itself (`-dryrun` prints TOP=<root>/bin/..).
    """
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if _is_toolkit_root(os.environ.get(var)):
            return os.environ[var]
    nvcc = shutil.which("nvcc")
    if nvcc:
        real = os.path.realpath(nvcc)
        cand = os.path.dirname(os.path.dirname(real))
        if _is_toolkit_root(cand):
            return cand
        try:
            out = subprocess.run([nvcc, "-dryrun", "--version"], capture_output=True, text=True,
                                 timeout=60).stderr
            m = re.search(r"TOP=(\S+)", out)
            if m and _is_toolkit_root(os.path.normpath(m.group(1))):
                return os.path.normpath(m.group(1))
        except (OSError, subprocess.SubprocessError):
            pass
    for cand in ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True):
        if _is_toolkit_root(cand):
            return cand
    return None


CUDA_HOME = find_cuda_home()
if CUDA_HOME:
    # torch.utils.cpp_extension reads CUDA_HOME when it is imported.
    os.environ["CUDA_HOME"] = CUDA_HOME

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def want_cuda():
    flag = os.environ.get("MAMBA_KERNELS_CUDA", "auto").strip().lower()
    possible = torch.version.cuda is not None and CUDA_HOME is not None
    why = ("torch has no CUDA (torch.version.cuda is None)" if torch.version.cuda is None
           else "no CUDA toolkit found (set CUDA_HOME or put nvcc on PATH)")
    if flag in ("1", "on", "true", "yes"):
        if not possible:
            sys.exit(f"MAMBA_KERNELS_CUDA=1 but the CUDA extension cannot be built: {why}")
        return True
    if flag in ("0", "off", "false", "no"):
        return False
    if not possible:
        print(f"mamba_kernels: building without CUDA: {why}", file=sys.stderr)
    return possible


def rel(paths):
    # Deduplicated: "*_cpu.cpp" also matches "*_bind_cpu.cpp", and ninja rejects a source listed twice.
    return sorted({os.path.relpath(p, ROOT) for p in paths})


CXX_FLAGS = ["-O3", "-g0", "-std=c++17", "-fopenmp"]
ext_modules = [
    CppExtension(
        "mamba_kernels._C",
        sources=rel(["csrc/module_cpu.cpp"] + glob.glob(os.path.join(ROOT, "csrc", "*", "*_cpu.cpp"))
                    + glob.glob(os.path.join(ROOT, "csrc", "*", "*_bind_cpu.cpp"))),
        include_dirs=[os.path.join(ROOT, "csrc")],
        extra_compile_args={"cxx": CXX_FLAGS},
        extra_link_args=["-fopenmp"],
    )
]

if want_cuda():
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCHS)
    # kernels with an sm_90a-only variant (wgmma) launch it only when the build holds sm_90a code
    ARCHS = os.environ["TORCH_CUDA_ARCH_LIST"].replace(" ", ";").split(";")
    SM90A_FLAGS = ["-DMK_BUILT_SM90A"] if "9.0a" in ARCHS else []
    ext_modules.append(
        CUDAExtension(
            "mamba_kernels._cuda",
            sources=rel(["csrc/module_cuda.cpp"] + glob.glob(os.path.join(ROOT, "csrc", "*", "*.cu"))
                        + glob.glob(os.path.join(ROOT, "csrc", "*", "*_bind_cuda.cpp"))),
            include_dirs=[os.path.join(ROOT, "csrc")],
            extra_compile_args={
                "cxx": ["-O3", "-g0", "-std=c++17"],
                "nvcc": ["-O3", "-std=c++17", "--use_fast_math", "-lineinfo",
                         "--expt-relaxed-constexpr", "-U__CUDA_NO_HALF_OPERATORS__",
                         "-U__CUDA_NO_HALF_CONVERSIONS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
                         "-U__CUDA_NO_HALF2_OPERATORS__"] + SM90A_FLAGS,
            },
        )
    )

setup(
    name="mamba_kernels",
    version="0.1.0",
    description="Kernels for Mamba and Mamba/Transformer hybrid models",
    packages=find_packages(include=["mamba_kernels", "mamba_kernels.*", "python_ref", "model_zoo",
                                    "model_zoo.*"]),
    ext_modules=ext_modules,
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    python_requires=">=3.10",
    install_requires=["torch>=2.6", "numpy"],
    extras_require={"triton": ["triton>=3.4"], "test": ["pytest", "pytest-benchmark"]},
)
