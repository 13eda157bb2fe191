"""`pysnn.ops.lif_max_pool2d`: the fused LIF neuron and a 2×2, stride-2 max
pool of its spikes in one op (a spiking conv block's neuron and pooling).

Backed by `torch.ops.pysnn.lif_pool_forward` / `lif_pool_backward`: only the
pooled spikes leave the kernel, and the backward recomputes each window's
membranes and its first spike from x, so neither the full-size spikes nor
their gradient is ever allocated. The pooled gradient reaches the first
neuron of each window that spiked (row-major), or the window's first neuron
when none did, as `F.max_pool2d`'s does. A single step from a u0 that
needs no gradient is charged before the kernel, as in `pysnn.ops.lif`. With
`overwrite_input`, the backward (`lif_pool_backward_over_input`) writes
dL/dx over x instead of allocating a buffer of x's size.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch.autograd.function import once_differentiable

from .._validation import (
    backward_once,
    check_lif_pool_args,
    check_like,
    check_steps,
    check_time_first,
    is_intermediate,
    pooled_shape,
)
from .lif import charge_single_step

Tensor = torch.Tensor


def lif_max_pool2d(
    x: Tensor,
    decay: float,
    threshold: float,
    *,
    surrogate: str = "sigmoid",
    alpha: float = 4.0,
    grad_mode: str = "bptt",
    u0: Optional[Tensor] = None,
    return_state: bool = False,
    steps: Optional[int] = None,
    overwrite_input: bool = False,
) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """``F.max_pool2d(lif(x, ...), 2)`` over the last two dims, fused.

    Args:
        x: synaptic input, ``[T, ..., H, W]`` (H and W even), or with
            ``steps`` one step ``[..., H, W]`` repeated at each of ``steps``
            steps (its gradient is then summed over the steps in the kernel).
        decay, threshold, surrogate, alpha, grad_mode, u0: as `pysnn.ops.lif`.
        return_state: also return the post-reset membrane after the last step
            (``[..., H, W]``), which continues the sequence as ``u0``.
        overwrite_input: the caller gives x up (e.g. a layer's fresh output
            that nothing else holds): the backward writes dL/dx over x, which
            must not be read after it, and the graph cannot be run backward
            twice. Taken when x is contiguous and neither a leaf nor a view of
            one (`is_intermediate`); otherwise the backward allocates dL/dx.

    Returns:
        the pooled spikes ``[T, ..., H/2, W/2]`` in x's dtype, then the state
        if ``return_state``.
    """
    overwrite_input = overwrite_input and is_intermediate(x) and torch.is_grad_enabled()
    if steps is not None:
        check_steps(steps)
        x = x.unsqueeze(0)
    elif x.dim() >= 3 and x.shape[0] > 1 and x.stride(0) == 0:
        steps, x = x.shape[0], x[:1]  # a stride-0 expand over time: run its one step
    else:
        steps = x.shape[0] if x.dim() >= 1 else 0
    x, u0 = charge_single_step(x, u0, decay, steps)  # (see pysnn.ops.lif)
    args = (x, steps, float(decay), float(threshold), surrogate, float(alpha), grad_mode, u0)
    if overwrite_input and x.is_contiguous():
        pooled, state = _LifPoolOverInput.apply(*args)
    else:
        pooled, state = torch.ops.pysnn.lif_pool_forward(*args)
    return (pooled, state) if return_state else pooled


@torch.library.register_fake("pysnn::lif_pool_forward")
def _lif_pool_forward_fake(x, steps, decay, threshold, surrogate, alpha, grad_mode, u0):
    check_lif_pool_args(x, steps, decay, threshold, surrogate, alpha, grad_mode, u0)
    return x.new_empty(pooled_shape(steps, x.shape)), x.new_empty(x.shape[1:])


@torch.library.register_fake("pysnn::lif_pool_backward")
def _lif_pool_backward_fake(grad_pooled, grad_state, x, u0, decay, threshold, surrogate, alpha, grad_mode):
    check_time_first("lif", "grad_pooled", grad_pooled)
    check_lif_pool_args(x, grad_pooled.shape[0], decay, threshold, surrogate, alpha, grad_mode, u0)
    check_like("lif", "grad_pooled", grad_pooled, x, pooled_shape(grad_pooled.shape[0], x.shape), "x")
    if grad_state is not None:
        check_like("lif", "grad_state", grad_state, x, x.shape[1:], "x[0]")
    return x.new_empty(x.shape), x.new_empty(x.shape[1:] if u0 is not None else (0,))


def _setup_context(ctx, inputs, output):
    x, steps, decay, threshold, surrogate, alpha, grad_mode, u0 = inputs
    ctx.set_materialize_grads(False)
    ctx.options = (decay, threshold, surrogate, alpha, grad_mode)
    ctx.steps = steps
    ctx.has_u0 = u0 is not None
    ctx.save_for_backward(x, u0)


def _backward(ctx, grad_pooled, grad_state):
    x, u0 = ctx.saved_tensors
    if grad_pooled is None:
        grad_pooled = torch.zeros(pooled_shape(ctx.steps, x.shape), dtype=x.dtype, device=x.device)
    grad_x, grad_u0 = torch.ops.pysnn.lif_pool_backward(grad_pooled, grad_state, x, u0, *ctx.options)
    return grad_x, None, None, None, None, None, None, (grad_u0 if ctx.has_u0 else None)


torch.library.register_autograd("pysnn::lif_pool_forward", _backward, setup_context=_setup_context)


@torch.library.register_fake("pysnn::lif_pool_backward_over_input")
def _lif_pool_backward_over_input_fake(grad_pooled, grad_state, x, u0, decay, threshold, surrogate, alpha, grad_mode):
    _lif_pool_backward_fake(grad_pooled, grad_state, x, u0, decay, threshold, surrogate, alpha, grad_mode)
    if not x.is_contiguous():
        raise ValueError("lif_pool_backward_over_input: x must be contiguous")
    return x.new_empty(x.shape[1:] if u0 is not None else (0,))


class _LifPoolOverInput(torch.autograd.Function):
    """lif_pool_forward whose backward writes dL/dx over the saved x."""

    @staticmethod
    def forward(ctx, *inputs):
        pooled, state = torch.ops.pysnn.lif_pool_forward(*inputs)
        _setup_context(ctx, inputs, (pooled, state))
        return pooled, state

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_pooled, grad_state):
        backward_once(ctx, "lif_max_pool2d(overwrite_input=True)")
        x, u0 = ctx.saved_tensors
        if grad_pooled is None:
            grad_pooled = torch.zeros(pooled_shape(ctx.steps, x.shape), dtype=x.dtype, device=x.device)
        grad_u0 = torch.ops.pysnn.lif_pool_backward_over_input(grad_pooled, grad_state, x, u0, *ctx.options)
        return x, None, None, None, None, None, None, (grad_u0 if ctx.has_u0 else None)
