"""pysnn: spiking neural networks trained by layer-local rules, with fused kernels."""

__version__ = "0.1.0"

from . import nn, ops, reference  # noqa: E402,F401
