"""Causal depthwise conv1d (Mamba's short convolution): full sequence (forward + backward, initial / final
states, varlen) and the decode update against a pool of states."""
from .interface import causal_conv1d, causal_conv1d_update

__all__ = ["causal_conv1d", "causal_conv1d_update"]
