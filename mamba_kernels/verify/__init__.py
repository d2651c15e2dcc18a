"""Decode and speculative verify-and-rollback for Mamba-1 and Mamba-2 layers."""
from .cache import VerifyCache
from .fused import conv_verify_step, verify_step_fused
from .interface import verify_flush, verify_step

__all__ = ["VerifyCache", "verify_step", "verify_step_fused", "verify_flush", "conv_verify_step"]
