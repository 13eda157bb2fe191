"""Spiking layers built on the fused ops."""
from .lif import LIF

__all__ = ["LIF"]
