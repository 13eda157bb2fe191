"""Inputs a conv block's fused batch-norm ops must refuse (tests of their `*_applies`)."""

import torch
from torch import nn

# Each leaves the op nothing it may overwrite or compute exactly.
REFUSED = ["leaf", "non-contiguous", "batch_norm_1d", "eval", "no_grad", "odd_width", "bfloat16", "zero_eps"]


def refused_case(case: str, shape: tuple):
    """(norm, x, grad enabled) for x [S, B, C, H, W] of `shape` that `case` spoils,
    or (norm, x, True) unchanged for a case the caller spoils itself."""
    norm, x, grad = nn.BatchNorm2d(shape[2]), torch.randn(shape, requires_grad=True) * 1.0, True
    if case == "leaf":
        x = x.detach().requires_grad_()
    elif case == "non-contiguous":
        x = (torch.randn(shape[:3] + shape[4:2:-1], requires_grad=True) * 1.0).transpose(3, 4)
    elif case == "batch_norm_1d":
        norm = nn.BatchNorm1d(shape[2])
    elif case == "eval":
        norm.eval()
    elif case == "no_grad":
        grad = False
    elif case == "odd_width":
        x = torch.randn(shape[:4] + (5,), requires_grad=True) * 1.0
    elif case == "bfloat16":
        x = x.bfloat16()
    elif case == "zero_eps":  # (1/√(var + eps) of a constant channel: native batch norm's 0, not inf)
        norm.eps = 0.0
    return norm, x, grad
