"""Pure-PyTorch references of every fused op, with the same signatures."""
from .lif import lif

__all__ = ["lif"]
