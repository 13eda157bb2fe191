"""Fused ops backed by `torch.ops.pysnn.*` (compiled C++/CUDA kernels)."""

from .._extension import load as _load

_load()

from .hsic import (  # noqa: E402
    hsic,
    hsic_loss,
    hsic_loss_grad_,
    hsic_modulator,
    hsic_post_signal,
    hsic_update,
    kernel_matrix,
)
from .lif import lif, surrogate_grad  # noqa: E402
from .lif_pool import lif_max_pool2d  # noqa: E402

__all__ = [
    "hsic",
    "hsic_loss",
    "hsic_loss_grad_",
    "hsic_modulator",
    "hsic_post_signal",
    "hsic_update",
    "kernel_matrix",
    "lif",
    "lif_max_pool2d",
    "surrogate_grad",
]
