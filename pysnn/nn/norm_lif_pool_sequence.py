"""A conv block's batch norm, LIF and 2×2 max pool over a whole sequence
from rest (final-step updates and BPTT), holding one buffer of the
layer's T-step size where the ops one after another hold two.

Separately, batch norm keeps the convolution's output x for its backward
and the fused LIF-pool keeps batch norm's output y, its input, for its own:
two buffers of [T, B, C, H, W]. Here y is never whole: the forward forms it
a few samples (all T steps of each) at a time from x and batch norm's
statistics and runs the LIF-pool on them, and the backward forms it again
the same way, twice (once for batch norm's per-channel sums, once for
dL/dx, which it writes over x). The spikes and running statistics equal
the separate ops' (native batch norm, then `pysnn.ops.lif_max_pool2d`) bit
for bit, the gradients up to the order of batch norm's sums.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from .._validation import backward_once, is_intermediate
from .batch_norm import input_grad_over_, native_arguments
from .chunks import SEQUENCE_CHUNK_FACTOR, rows_per_chunk
from .low_memory import low_memory_enabled
from .norm_lif_pool import _batch_statistics, _lif_options, _normalised

Tensor = torch.Tensor


def sequence_norm_applies(norm: Optional[nn.Module], x: Tensor) -> bool:
    """Whether a whole-sequence pass may form training-mode batch norm's
    output of x, a convolution's output over a sequence [T, B, C, H, W]
    (T > 1), a few samples at a time: inside `low_memory()`
    (pysnn.nn.low_memory), for a plain BatchNorm2d and a float32/64 x."""
    return (
        low_memory_enabled()
        and type(norm) is nn.BatchNorm2d
        and norm.training
        and norm.eps > 0
        and x.is_contiguous()
        and x.dtype in (torch.float32, torch.float64)
        and x.dim() == 5
        and x.shape[0] > 1
        and x.shape[0] * x.shape[1] > 1
    )


def norm_lif_pool_sequence_applies(norm: Optional[nn.Module], x: Tensor) -> bool:
    """Whether `norm_lif_pool_sequence` takes x (`sequence_norm_applies`),
    which its caller gives up, with autograd recording and an even map."""
    return (
        sequence_norm_applies(norm, x)
        and torch.is_grad_enabled()
        and is_intermediate(x)
        and x.shape[3] % 2 == 0
        and x.shape[4] % 2 == 0
    )


def norm_lif_pool_sequence(norm: nn.BatchNorm2d, x: Tensor, neuron: dict) -> Tensor:
    """``lif_max_pool2d(norm(x), **neuron)`` from rest over a sequence x
    [T, B, C, H, W] (`norm_lif_pool_sequence_applies`), holding x and the
    pooled spikes only: batch norm's output and the LIF are computed a few
    samples (all T steps of each) at a time, in the forward and again in
    the backward, which then writes dL/dx over x (the graph runs backward
    once). Spikes and running statistics equal the separate ops' bit for
    bit, the gradients up to the order of batch norm's sums."""
    norm._check_input_dim(x[0])
    F._verify_batch_size(x.view(-1, *x.shape[2:]).size())
    weight, bias, running_mean, running_var, momentum, eps = native_arguments(norm)
    return _NormLifPoolSequence.apply(x, weight, bias, running_mean, running_var, momentum, eps, neuron)


def _sample_chunks(x: Tensor) -> List[slice]:
    """Slices of x's samples (dim 1), all steps of each, of about
    SEQUENCE_CHUNK_FACTOR · CHUNK_ELEMENTS (pysnn.nn.chunks)."""
    rows = rows_per_chunk(x.shape[0] * x[0, 0].numel(), factor=SEQUENCE_CHUNK_FACTOR)
    return [slice(start, min(start + rows, x.shape[1])) for start in range(0, x.shape[1], rows)]


class _NormLifPoolSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps, neuron):
        mean, invstd = _batch_statistics(x.view(-1, *x.shape[2:]), running_mean, running_var, momentum, eps)
        options = _lif_options(neuron)
        steps, batch, channels, height, width = x.shape
        pooled = x.new_empty(steps, batch, channels, height // 2, width // 2)
        for samples in _sample_chunks(x):
            y = _normalised_samples(x, samples, weight, bias, mean, invstd)
            pooled[:, samples] = torch.ops.pysnn.lif_pool_forward(y, steps, *options, None)[0]
        ctx.save_for_backward(x, weight, bias, mean, invstd)
        ctx.options = options
        ctx.set_materialize_grads(False)
        return pooled

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_pooled):
        backward_once(ctx, "norm_lif_pool_sequence")
        x, weight, bias, mean, invstd = ctx.saved_tensors
        if grad_pooled is None:
            grad_pooled = x.new_zeros(*x.shape[:3], x.shape[3] // 2, x.shape[4] // 2)

        def grad_y(samples):  # dL/dy of these samples: the LIF-pool op's gradient, y recomputed
            y = _normalised_samples(x, samples, weight, bias, mean, invstd)
            grad = grad_pooled[:, samples].contiguous()
            return torch.ops.pysnn.lif_pool_backward(grad, None, y, None, *ctx.options)[0]

        grad_weight, grad_bias = batch_norm_backward_over_samples_(x, weight, mean, invstd, grad_y)
        wants_weight, wants_bias = ctx.needs_input_grad[1:3]
        # (running statistics, momentum, eps and the neuron take none)
        return (x, grad_weight if wants_weight else None, grad_bias if wants_bias else None) + (None,) * 5


def batch_norm_backward_over_samples_(x, weight, mean, invstd, grad_y) -> Tuple[Tensor, Tensor]:
    """Training-mode batch norm's backward for x [T, B, C, H, W], whose output
    gradient `grad_y(samples)` forms for a few samples at a time (called
    twice for each chunk of `_sample_chunks(x)`): returns dL/dweight and
    dL/dbias, and writes dL/dx over x (x̂ first, then the input gradient)."""
    channel = (1, 1, -1, 1, 1)
    chunks = _sample_chunks(x)
    dims = [0, 1, 3, 4]
    grad_bias = torch.zeros_like(mean)
    grad_weight = torch.zeros_like(grad_bias)
    for samples in chunks:
        g = grad_y(samples)
        grad_bias += g.sum(dims)
        grad_weight += (g * (x[:, samples] - mean.view(channel)).mul_(invstd.view(channel))).sum(dims)
    n = x.numel() // x.shape[2]
    for samples in chunks:
        g = grad_y(samples)
        x_hat = x[:, samples].sub_(mean.view(channel)).mul_(invstd.view(channel))
        input_grad_over_(x_hat, g, weight, invstd, grad_weight, grad_bias, n, channel_dim=2)
    return grad_weight, grad_bias


def _normalised_samples(x, samples, weight, bias, mean, invstd):
    """Batch norm's training output of x[:, samples] ([T, b, C, H, W], contiguous)."""
    part = x[:, samples]
    rows = part.reshape(-1, *x.shape[2:])  # (a copy unless the chunk is every sample)
    return _normalised(rows, weight, bias, mean, invstd).view(part.shape)
