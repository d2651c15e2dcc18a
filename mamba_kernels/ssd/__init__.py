"""Chunked SSD (Mamba-2) scan: forward and backward, varlen, initial / final / chunk-boundary states."""
from .interface import ssd_chunked_scan

__all__ = ["ssd_chunked_scan"]
