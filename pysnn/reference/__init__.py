"""Pure-PyTorch references of every fused op, with the same signatures."""

from .hsic import hsic, hsic_loss, hsic_loss_grad_, hsic_modulator, hsic_post_signal, hsic_update, kernel_matrix
from .lif import lif, lif_max_pool2d, surrogate_grad

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
