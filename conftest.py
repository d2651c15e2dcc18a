"""Test and benchmark setup (repo root, so it applies to tests/ and bench/ alike): on a machine without a CUDA device, run Triton kernels under the interpreter.

TRITON_INTERPRET must be set before any @triton.jit decorator runs, i.e. before mamba_kernels'
Triton modules are imported, so it is set here at import time of the conftest.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device (none visible)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("gpu") and not HAS_CUDA:
            item.add_marker(pytest.mark.skip(reason="GPU test: no CUDA device visible"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
    # Under pytest-xdist many workers share one GPU: hand each test's cached blocks back, or workers that each keep
    # the peak of their largest float64 reference run the device out of memory (session 47: 14 OOMs with 12 workers).
    if HAS_CUDA and os.environ.get("PYTEST_XDIST_WORKER") and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
