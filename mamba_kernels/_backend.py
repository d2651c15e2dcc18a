"""Which backends exist in this install, and which one runs a given call.

Backends:
  ref     pure PyTorch (python_ref/), always available, any device.
  cpu     C++ OpenMP kernels (mamba_kernels._C), CPU tensors.
  triton  Triton kernels, CUDA tensors; CPU tensors only under TRITON_INTERPRET=1 (tests).
  cuda    CUDA C++ kernels (mamba_kernels._cuda), CUDA tensors.
"""
from __future__ import annotations

import functools
import importlib
import os

import torch

BACKENDS = ("ref", "cpu", "triton", "cuda")


@functools.lru_cache(maxsize=None)
def _probe(name: str) -> tuple[bool, str]:
    if name == "ref":
        return True, "pure PyTorch reference, always available"
    if name == "cpu":
        try:
            importlib.import_module("mamba_kernels._C")
        except ImportError as e:
            return False, f"C++ CPU extension not built or not importable ({e}); run `pip install --no-build-isolation -e .`"
        return True, "C++ OpenMP extension mamba_kernels._C"
    if name == "triton":
        try:
            import triton  # noqa: F401
        except ImportError as e:
            return False, f"triton is not installed ({e})"
        if torch.cuda.is_available():
            return True, f"triton {triton.__version__} on {torch.cuda.get_device_name()}"
        if os.environ.get("TRITON_INTERPRET") == "1":
            return True, f"triton {triton.__version__} under TRITON_INTERPRET=1 (CPU tensors, slow)"
        return False, "no CUDA device (set TRITON_INTERPRET=1 to run Triton kernels on CPU tensors)"
    if name == "cuda":
        if torch.version.cuda is None:
            return False, "this torch build has no CUDA"
        try:
            importlib.import_module("mamba_kernels._cuda")
        except ImportError as e:
            return False, (f"CUDA extension not built or not importable ({e}); rebuild with "
                           "MAMBA_KERNELS_CUDA=1 pip install --no-build-isolation -e .")
        if not torch.cuda.is_available():
            return False, "CUDA extension built, but no CUDA device is visible"
        return True, f"CUDA extension mamba_kernels._cuda on {torch.cuda.get_device_name()}"
    raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")


@functools.lru_cache(maxsize=None)
def _capability_of(index: int) -> tuple[int, int]:
    return torch.cuda.get_device_capability(index)


def device_capability(device: torch.device) -> tuple[int, int]:
    """(major, minor) of CUDA device `device`, cached per device index: launchers ask on every call, and torch's own
    query (lazy init, index resolution, properties) costs a few microseconds each time."""
    return _capability_of(device.index if device.index is not None else torch.cuda.current_device())


def direct_call_ok(*tensors) -> bool:
    """Whether an eager call may run an op's implementation directly instead of through its torch.library custom op.

    The custom op's dispatch costs ~50 us of host time a call (the SSD forward, session 46: 167 against 116 us), as
    much as a small GPU kernel, and does nothing here when no autograd graph is to be recorded (grad mode off, or no
    argument requires grad), no torch function / dispatch mode is active (FakeTensorMode, FlopCounterMode, opcheck's
    modes), no functorch transform (vmap, grad) is active, torch.compile is not tracing, the autograd profiler is off
    (it labels the op) and every argument is a plain torch.Tensor (no subclass, no nn.Parameter). `tensors` may
    contain None."""
    # is_compiling first: torch.compile traces it as a constant True and never reaches the C queries it cannot trace
    if (torch.compiler.is_compiling() or torch._C._len_torch_dispatch_stack()
            or torch._C._is_torch_function_mode_enabled() or torch._C._are_functorch_transforms_active()
            or torch.autograd.profiler._is_profiler_enabled):
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t is not None and (type(t) is not torch.Tensor or (grad and t.requires_grad)):
            return False
    return True


def backends() -> dict[str, dict]:
    """What is available here: {name: {"available": bool, "reason": str}} for ref, cpu, triton, cuda."""
    return {name: {"available": _probe(name)[0], "reason": _probe(name)[1]} for name in BACKENDS}


def available(name: str) -> bool:
    return _probe(name)[0]


def resolve(backend: str | None, device: torch.device, supported=BACKENDS) -> str:
    """The backend a call on `device` runs: `backend` if given (checked), else the fastest available.

    `supported` lists the backends the op implements (in case a family lacks one).
    """
    if backend is not None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS} or None, got {backend!r}")
        if backend not in supported:
            raise ValueError(f"backend={backend!r} is not implemented for this op (has {supported})")
        ok, why = _probe(backend)
        if not ok:
            raise RuntimeError(f"backend={backend!r} is not available: {why}")
        if backend in ("cuda",) and device.type != "cuda":
            raise ValueError(f"backend='cuda' needs CUDA tensors, got tensors on {device}")
        if backend == "cpu" and device.type != "cpu":
            raise ValueError(f"backend='cpu' needs CPU tensors, got tensors on {device}")
        if backend == "triton" and device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError(f"backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1), got {device}")
        return backend
    order = ("cuda", "triton", "ref") if device.type == "cuda" else ("cpu", "ref")
    for name in order:
        if name in supported and _probe(name)[0]:
            return name
    return "ref"
