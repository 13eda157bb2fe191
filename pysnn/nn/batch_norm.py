"""Training-mode batch norm whose backward writes dL/dx over its input.

A spiking block's norm is the only holder of its layer's fresh output x,
which native batch norm saves for its backward and then meets with a new
x-sized buffer for dL/dx. Here the backward computes dL/dx in x's own
buffer (x̂ first, then the gradient over it), so a block's backward holds
one buffer of that size fewer. The forward and the running statistics are
native batch norm's (`native_batch_norm`, as `F.batch_norm` calls on the
CPU); dL/dx, dL/dweight and dL/dbias equal native's up to the order of
the sums.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from .._validation import backward_once, is_intermediate
from .chunks import row_chunks


def batch_norm_over_input(norm: nn.Module, x: torch.Tensor, update_stats: bool = True) -> torch.Tensor:
    """``norm(x)`` for x ``[N, C, ...]`` that the caller gives up: in training
    mode, with an nn.BatchNorm1d/2d/3d (not a SyncBatchNorm) on a float32 or
    float64 x that is contiguous and neither a leaf nor a view of one, the backward overwrites x
    (which must not be read after this call, and whose graph runs backward
    once). Otherwise ``norm(x)`` itself. With ``update_stats=False`` the
    running statistics are left alone (the caller keeps them) and x is
    normalised by its batch statistics in any mode."""
    if not update_stats and not norm.training:
        raise ValueError("batch_norm_over_input: update_stats=False is for training mode")
    if not (
        type(norm) in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
        and norm.training
        and torch.is_grad_enabled()
        and is_intermediate(x)
        and x.is_contiguous()
        and x.dtype in (torch.float32, torch.float64)
        and x.dim() >= 2
    ):
        if not update_stats:
            return F.batch_norm(x, None, None, norm.weight, norm.bias, True, 0.0, norm.eps)
        return norm(x)
    norm._check_input_dim(x)
    F._verify_batch_size(x.size())
    if not update_stats:
        return _BatchNormOverInput.apply(x, norm.weight, norm.bias, None, None, 0.0, norm.eps)
    return _BatchNormOverInput.apply(x, *native_arguments(norm))


def native_arguments(norm: nn.Module) -> tuple:
    """weight, bias, running mean and variance, momentum and eps for one
    training-mode `native_batch_norm` call in place of ``norm(x)``, counting
    the batch as `_BatchNorm.forward` does."""
    momentum = 0.0 if norm.momentum is None else norm.momentum
    if norm.track_running_stats and norm.num_batches_tracked is not None:  # as _BatchNorm.forward
        norm.num_batches_tracked.add_(1)
        if norm.momentum is None:
            momentum = 1.0 / float(norm.num_batches_tracked)
    running = (norm.running_mean, norm.running_var) if norm.track_running_stats else (None, None)
    return (norm.weight, norm.bias, *running, momentum, norm.eps)


def input_grad_over_(
    x_hat, grad_y, weight, invstd, grad_weight, grad_bias, n: int, channel_dim: int = 1
) -> torch.Tensor:
    """Training-mode batch norm's dL/dx = weight·invstd·(g − Σg/n − x̂·Σ(g·x̂)/n),
    written over x̂ [N, C, ...] (or a few of its samples; the channels in
    dim `channel_dim`): g = grad_y, grad_bias = Σg and grad_weight = Σ(g·x̂)
    over all n values of a channel; the per-channel tensors are [C]."""
    shape = tuple(-1 if d == channel_dim else 1 for d in range(x_hat.dim()))
    scale = invstd if weight is None else weight * invstd
    grad_x = x_hat.mul_((grad_weight / -n).view(shape)).add_(grad_y).sub_((grad_bias / n).view(shape))
    return grad_x.mul_(scale.view(shape))


class _BatchNormOverInput(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
        y, mean, invstd = torch.ops.aten.native_batch_norm(
            x, weight, bias, running_mean, running_var, True, momentum, eps
        )
        ctx.save_for_backward(x, weight, mean, invstd)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        backward_once(ctx, "batch_norm_over_input")
        x, weight, mean, invstd = ctx.saved_tensors
        shape = (1, -1) + (1,) * (x.dim() - 2)
        dims = [0, *range(2, x.dim())]
        n = x.numel() // x.shape[1]
        grad_y = grad_y.contiguous()
        x_hat = x.sub_(mean.view(shape)).mul_(invstd.view(shape))
        grad_bias = grad_y.sum(dims)
        # (the elementwise product Σ g·x̂ needs, a few samples at a time)
        grad_weight = sum((g * h).sum(dims) for g, h in zip(row_chunks(grad_y, x), row_chunks(x_hat)))
        return (
            input_grad_over_(x_hat, grad_y, weight, invstd, grad_weight, grad_bias, n),
            grad_weight if ctx.needs_input_grad[1] else None,
            grad_bias if ctx.needs_input_grad[2] else None,
            None,
            None,
            None,
            None,
        )
