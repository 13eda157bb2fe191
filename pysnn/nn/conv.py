"""2-d convolutions on the CPU a few samples at a time, for training steps
that trade speed for memory (`pysnn.nn.low_memory`).

oneDNN, which runs CPU convolutions, computes a convolution's output in
its own blocked layout and then reorders it, and computes the weight
gradient from a reordered copy of the output gradient: both hold a second
buffer of the output's size while they run. Run over a few samples at a
time, each of those copies is a few samples' size, and the output and
the gradients are written into buffers of their own size. The output is
each sample's own computation, the weight and bias gradients are sums of
the per-chunk sums (so they equal native's up to the order of the sums).
The calls cost time (an epoch of real-time CNN training takes 7-17 %
longer on 2 cores), so they are taken only inside `low_memory()`
(`--low-memory`, the default).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from .chunks import rows_per_chunk
from .low_memory import low_memory_enabled

Tensor = torch.Tensor

# Chunks of the output (pysnn.nn.chunks); in the forward, in samples a multiple
# of 8 (oneDNN's batch blocking: a chunk of 8k samples gave bit for bit the
# whole batch's output on the CPUs tested). The backward's sums change order in any chunks.
_SAMPLE_MULTIPLE = 8


def conv2d(conv: nn.Module, x: Tensor) -> Tensor:
    """``conv(x)``; inside `low_memory()` (pysnn.nn.low_memory), `chunked_conv2d(conv, x)`."""
    return chunked_conv2d(conv, x) if low_memory_enabled() else conv(x)


def chunked_conv_applies(conv: nn.Module, x: Tensor) -> bool:
    """Whether `chunked_conv2d(conv, x)` runs in chunks: a plain nn.Conv2d
    (zero padding) on a CPU float32/float64 batch x [N, C, H, W] of more
    samples than one chunk."""
    return (
        type(conv) is nn.Conv2d
        and conv.padding_mode == "zeros"
        and isinstance(conv.padding, tuple)
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and x.dim() == 4
        and x.shape[0] > _rows_per_chunk(conv, x)
    )


def chunked_conv2d(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``conv(x)`` for x [N, C, H, W], computed (forward and backward) a few
    samples at a time where `chunked_conv_applies`, else ``conv(x)``."""
    if not chunked_conv_applies(conv, x):
        return conv(x)
    rows = (_rows_per_chunk(conv, x), _rows_per_chunk(conv, x, multiple=1))
    return _ChunkedConv2d.apply(x, conv.weight, conv.bias, _options(conv), rows)


def _options(conv: nn.Conv2d) -> tuple:
    return (list(conv.stride), list(conv.padding), list(conv.dilation), conv.groups)


def _rows_per_chunk(conv: nn.Module, x: Tensor, multiple: int = _SAMPLE_MULTIPLE) -> int:
    out_channels = getattr(conv, "out_channels", 1)
    return rows_per_chunk(out_channels * x[0, 0].numel(), multiple)  # (about: the output's map is no larger)


class _ChunkedConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, options, rows):
        rows, ctx.backward_rows = rows
        stride, padding, dilation, groups = options
        out = None
        for start in range(0, x.shape[0], rows):
            y = torch.ops.aten.convolution(
                x[start : start + rows], weight, bias, stride, padding, dilation, False, [0, 0], groups
            )
            if out is None:
                out = x.new_empty(x.shape[0], *y.shape[1:])
            out[start : start + rows].copy_(y)
            del y
        ctx.save_for_backward(x, weight)
        ctx.options, ctx.has_bias = options, bias is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.options
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        bias_sizes = [weight.shape[0]] if ctx.has_bias else None
        grad_x = torch.empty_like(x) if mask[0] else None
        grad_weight = grad_bias = None
        rows = ctx.backward_rows
        for start in range(0, x.shape[0], rows):
            gx, gw, gb = torch.ops.aten.convolution_backward(
                grad_out[start : start + rows],
                x[start : start + rows],
                weight,
                bias_sizes,
                stride,
                padding,
                dilation,
                False,
                [0, 0],
                groups,
                mask,
            )
            if mask[0]:
                grad_x[start : start + rows].copy_(gx)
            if mask[1]:
                grad_weight = gw if grad_weight is None else grad_weight.add_(gw)
            if mask[2]:
                grad_bias = gb if grad_bias is None else grad_bias.add_(gb)
        return grad_x, grad_weight, grad_bias, None, None
