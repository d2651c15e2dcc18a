"""Decode and speculative verify-and-rollback for Mamba-1 and Mamba-2 layers."""
from .cache import VerifyCache
from .interface import conv_verify_step, verify_flush, verify_step, verify_step_fused

__all__ = ["VerifyCache", "verify_step", "verify_step_fused", "verify_flush", "conv_verify_step"]
