"""2×2 max pooling of spikes that keeps one byte per input element for its
backward, where `nn.MaxPool2d` keeps the float input and 64-bit indices
(12 bytes per float32 element). A 0/1 input is exact in uint8, and the
gradient goes where max_pool2d's does: to the first maximum of each window
in row-major order (the first spike, or the window's first element when it
has none)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class _SpikeMaxPool2x2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spikes: torch.Tensor) -> torch.Tensor:
        ctx.dtype = spikes.dtype
        ctx.save_for_backward(spikes.to(torch.uint8))
        return F.max_pool2d(spikes, 2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (saved,) = ctx.saved_tensors
        n, c, h, w = saved.shape
        windows = saved.view(n, c, h // 2, 2, w // 2, 2)
        a, b = windows[:, :, :, 0, :, 0], windows[:, :, :, 0, :, 1]
        d, e = windows[:, :, :, 1, :, 0], windows[:, :, :, 1, :, 1]
        # Which element of each window is the first maximum, one 0/1 uint8
        # mask per position, each a quarter of the input; the gradient is
        # selected with `where` on their bool views, so no float copy of a mask.
        seen = a | b
        first_b = b & (1 - a)
        first_d = d & (1 - seen)
        seen |= d
        first_e = e & (1 - seen)
        seen |= e
        first_a = a | (1 - seen)  # the first spike, or the first element of a window without one
        del seen
        grad_spikes = grad.new_empty((n, c, h // 2, 2, w // 2, 2))
        zero = grad.new_zeros(())
        for (row, col), mask in zip(((0, 0), (0, 1), (1, 0), (1, 1)), (first_a, first_b, first_d, first_e)):
            torch.where(mask.view(torch.bool), grad, zero, out=grad_spikes[:, :, :, row, :, col])
        return grad_spikes.view(n, c, h, w)


def is_spike_pool_2x2(pool: nn.Module) -> bool:
    return (
        isinstance(pool, nn.MaxPool2d)
        and pool.kernel_size in (2, (2, 2))
        and pool.stride in (2, (2, 2))
        and pool.padding in (0, (0, 0))
        and pool.dilation in (1, (1, 1))
        and not pool.ceil_mode
        and not pool.return_indices
    )


def pools_2x2_evenly(pool: nn.Module, x: torch.Tensor) -> bool:
    """Whether `pool` is a 2×2, stride-2 max pool and x's last two dims are
    even (every window whole): where the spike pools apply."""
    return is_spike_pool_2x2(pool) and x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0


def spike_max_pool(spikes: torch.Tensor, pool: nn.Module) -> torch.Tensor:
    """`pool(spikes)` for spikes (every element 0 or 1, [N, C, H, W]): with a
    2×2, stride-2 max pool over even H and W, the same values and gradient
    with a uint8 copy of the input saved for the backward; `pool` itself
    otherwise. Any input but spikes would get a wrong gradient: callers pass spikes."""
    if not pools_2x2_evenly(pool, spikes):
        return pool(spikes)
    if not (torch.is_grad_enabled() and spikes.requires_grad):
        return _max_of_windows(spikes)
    return _SpikeMaxPool2x2.apply(spikes)


def _max_of_windows(x: torch.Tensor) -> torch.Tensor:
    """2×2, stride-2 max pool without a gradient: the maximum of the windows'
    four corners, accumulated in the output (max_pool2d on the CPU would also
    write 64-bit indices, twice the output's size, and runs ~4x slower)."""
    n, c, h, w = x.shape
    windows = x.reshape(n, c, h // 2, 2, w // 2, 2)
    out = torch.maximum(windows[:, :, :, 0, :, 0], windows[:, :, :, 0, :, 1])
    torch.maximum(out, windows[:, :, :, 1, :, 0], out=out)
    return torch.maximum(out, windows[:, :, :, 1, :, 1], out=out)
