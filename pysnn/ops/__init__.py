"""Fused ops backed by `torch.ops.pysnn.*` (compiled C++/CUDA kernels)."""
from .._extension import load as _load

_load()

from .lif import lif  # noqa: E402

__all__ = ["lif"]
