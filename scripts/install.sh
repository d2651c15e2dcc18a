#!/usr/bin/env bash
# Install mamba_kernels and what its tests need into the current Python environment.
# Keeps an existing torch (e.g. a CUDA build on a GPU machine); otherwise installs the pinned CPU-friendly
# torch 2.13.0. Builds the C++ CPU extension always and the CUDA extension when torch has CUDA and nvcc
# exists (MAMBA_KERNELS_CUDA=1/0 forces it on/off).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q torch==2.13.0
fi
need=()
for mod_pkg in triton:triton==3.7.0 pytest:pytest pytest_benchmark:pytest-benchmark xdist:pytest-xdist ninja:ninja \
               pybind11:pybind11 numpy:numpy einops:einops setuptools:setuptools wheel:wheel; do
  mod=${mod_pkg%%:*}; pkg=${mod_pkg#*:}
  "$PY" -c "import $mod" 2>/dev/null || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then "$PY" -m pip install -q "${need[@]}"; fi
MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" -m pip install -q --no-build-isolation -e .
"$PY" -c "import mamba_kernels, json; print(json.dumps(mamba_kernels.backends(), indent=1))"
