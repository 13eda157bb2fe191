"""One real-time step of a conv block: batch norm → charge → LIF → 2×2 max
pool, holding two buffers of the layer's size where the ops one after
another hold three.

Separately, batch norm keeps the convolution's output x for its backward,
the LIF keeps its charged input h, and the LIF's new membrane is a third
buffer, all alive while the step's local loss runs backward. Here the
charge goes into the carried membrane's own buffer, the backward
recomputes the LIF's and the pool's gradient from h a few samples at a time
(never holding it whole) and writes dL/dx over x, and h turns into the new
membrane only after the backward (`settle_membrane_`): x and h are all the
step holds. Every value equals the separate ops' (`pysnn.ops.lif_max_pool2d`
after native batch norm) bit for bit, except the batch-norm gradient's
sums, which run in another order.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from .._validation import backward_once, is_intermediate
from .batch_norm import input_grad_over_, native_arguments
from .chunks import row_chunks

Tensor = torch.Tensor


def norm_lif_pool_applies(norm: Optional[nn.Module], x: Tensor, u0: Optional[Tensor]) -> bool:
    """Whether `norm_lif_pool_step` takes x, one step [1, B, C, H, W] of a
    convolution's output that its caller gives up, and the carried membrane u0."""
    return (
        type(norm) is nn.BatchNorm2d
        and norm.training
        and norm.eps > 0
        and torch.is_grad_enabled()
        and is_intermediate(x)
        and x.is_contiguous()
        and x.dtype in (torch.float32, torch.float64)
        and x.dim() == 5
        and x.shape[0] == 1
        and x.shape[1] > 1
        and x.shape[3] % 2 == 0
        and x.shape[4] % 2 == 0
        and (
            u0 is None
            or (u0.shape == x.shape[1:] and u0.dtype == x.dtype and u0.is_contiguous() and not u0.requires_grad)
        )
    )


def norm_lif_pool_step(
    norm: nn.BatchNorm2d, x: Tensor, carried: List[Optional[Tensor]], neuron: dict
) -> Tuple[Tensor, Tensor]:
    """``lif_max_pool2d(norm(x) + decay·u0, **neuron)`` for one step x
    [1, B, C, H, W] (`norm_lif_pool_applies`), u0 = ``carried.pop()`` (the
    caller's last reference, or None at rest; its buffer takes the charge).
    Returns the pooled spikes and the charged input h [B, C, H, W]; once the
    step's backward has run (or if none will), `settle_membrane_(h, neuron)`
    turns h into the post-reset membrane that continues the sequence. x is
    overwritten by the backward, and the graph runs backward once."""
    norm._check_input_dim(x[0])
    F._verify_batch_size(x[0].size())
    weight, bias, running_mean, running_var, momentum, eps = native_arguments(norm)
    return _NormLifPool.apply(x, weight, bias, running_mean, running_var, momentum, eps, carried, neuron)


def settle_membrane_(h: Tensor, neuron: dict) -> Tensor:
    """The post-reset membrane of charged input h [B, ...], written over h
    (the LIF op's state, bit for bit), a few samples at a time."""
    for rows in row_chunks(h):
        state = torch.ops.pysnn.lif_forward(rows.unsqueeze(0), *_lif_options(neuron), None, False)[2]
        rows.copy_(state)
    return h


def _batch_statistics(rows, running_mean, running_var, momentum, eps):
    """Training-mode `native_batch_norm`'s mean and invstd of rows, and its
    update of the running statistics, without its output (bit for bit:
    invstd = 1/√(var + eps) in double, rounded once, as its kernel does)."""
    mean, var = torch.ops.aten.batch_norm_update_stats(rows, running_mean, running_var, momentum)
    return mean, torch.rsqrt(var.double() + eps).to(var.dtype)


def _normalised(rows, weight, bias, mean, invstd):
    """Training-mode batch norm's output for a few samples: the eval-mode
    kernel with a variance of 1, eps 0 and weight·invstd as the weight
    computes the training kernel's x·(weight·invstd) + (bias − mean·weight·invstd)
    with its roundings (the same per-channel terms and elementwise pass)."""
    scale = invstd if weight is None else invstd * weight
    one = torch.ones_like(invstd)
    return torch.ops.aten.native_batch_norm(rows, scale, bias, mean, one, False, 0.0, 0.0)[0]


def _lif_options(neuron: dict) -> tuple:
    n = neuron
    return (
        float(n["decay"]),
        float(n["threshold"]),
        n["surrogate"],
        float(n["alpha"]),
        n["grad_mode"],
    )


class _NormLifPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps, carried, neuron):
        rows = x.view(x.shape[1:])
        mean, invstd = _batch_statistics(rows, running_mean, running_var, momentum, eps)
        u0 = carried.pop()
        h = torch.empty_like(rows) if u0 is None else u0
        for part, h_part in zip(row_chunks(rows), row_chunks(h)):
            y = _normalised(part, weight, bias, mean, invstd)
            if u0 is None:
                h_part.copy_(y)
            else:  # decay·u0 rounded, then + y: charge_single_step's sum, in u0's buffer
                h_part.mul_(neuron["decay"]).add_(y)
        del u0, y
        options = _lif_options(neuron)
        pooled = h.new_empty(1, *h.shape[:2], h.shape[2] // 2, h.shape[3] // 2)
        for out, part in zip(row_chunks(pooled[0], h), row_chunks(h)):
            out.copy_(torch.ops.pysnn.lif_pool_forward(part.unsqueeze(0), 1, *options, None)[0][0])
        ctx.save_for_backward(x, h, weight, mean, invstd)
        ctx.options = options
        ctx.mark_non_differentiable(h)
        ctx.set_materialize_grads(False)  # (h's gradient would be an h-sized zeros)
        return pooled, h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_pooled, _grad_h):
        backward_once(ctx, "norm_lif_pool_step")
        x, h, weight, mean, invstd = ctx.saved_tensors
        rows = x.view(x.shape[1:])
        channel = (1, -1, 1, 1)
        if grad_pooled is None:
            grad_pooled = h.new_zeros(1, *h.shape[:2], h.shape[2] // 2, h.shape[3] // 2)
        grad_pooled = grad_pooled[0].contiguous()
        parts = list(zip(row_chunks(rows), row_chunks(h), row_chunks(grad_pooled, h)))

        def grad_h(part, grad_part):  # dL/dh of these samples: the LIF-pool op's gradient
            args = (grad_part.unsqueeze(0), None, part.unsqueeze(0), None, *ctx.options)
            return torch.ops.pysnn.lif_pool_backward(*args)[0][0]

        dims = [0, 2, 3]
        grad_bias = torch.zeros_like(mean)
        grad_weight = torch.zeros_like(grad_bias)
        for x_part, h_part, grad_part in parts:
            g = grad_h(h_part, grad_part)
            grad_bias += g.sum(dims)
            grad_weight += (g * (x_part - mean.view(channel)).mul_(invstd.view(channel))).sum(dims)
        # dL/dx over x, a few samples at a time: x̂ first, then batch norm's input gradient
        n = rows.numel() // rows.shape[1]
        for x_part, h_part, grad_part in parts:
            x_hat = x_part.sub_(mean.view(channel)).mul_(invstd.view(channel))
            input_grad_over_(x_hat, grad_h(h_part, grad_part), weight, invstd, grad_weight, grad_bias, n)
        return (
            x,
            grad_weight if ctx.needs_input_grad[1] else None,
            grad_bias if ctx.needs_input_grad[2] else None,
            None,
            None,
            None,
            None,
            None,
            None,
        )
