"""mamba_kernels: kernels for Mamba and Mamba/Transformer hybrid models.

Public names come from one sub-package per kernel family (verify, conv1d, ssd, selective_scan);
`backends()` says which implementations (ref, cpu, triton, cuda) exist in this install and why not.
"""
from ._backend import backends
from . import testing
from .verify import *  # noqa: F401,F403
from .verify import __all__ as _verify_all
from .conv1d import *  # noqa: F401,F403
from .conv1d import __all__ as _conv1d_all
from .ssd import *  # noqa: F401,F403
from .ssd import __all__ as _ssd_all
from .selective_scan import *  # noqa: F401,F403
from .selective_scan import __all__ as _selective_scan_all

__version__ = "0.1.0"
__all__ = ["backends", "testing", *_verify_all, *_conv1d_all, *_ssd_all, *_selective_scan_all]
