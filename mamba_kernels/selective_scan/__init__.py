"""Mamba-1 selective scan (S6): forward and backward, initial state, varlen packing."""
from .interface import selective_scan

__all__ = ["selective_scan"]
