"""`pysnn.ops.lif_max_pool2d`: the fused LIF neuron and a 2×2, stride-2 max
pool of its spikes in one op (a spiking conv block's neuron and pooling).

Backed by `torch.ops.pysnn.lif_pool_forward` / `lif_pool_backward`: only the
pooled spikes leave the kernel, and the backward recomputes each window's
membranes and its first spike from x, so neither the full-size spikes nor
their gradient is ever allocated. The pooled gradient reaches the first
neuron of each window that spiked (row-major), or the window's first neuron
when none did, as `F.max_pool2d`'s does. A single step from a u0 that
needs no gradient is charged before the kernel, as in `pysnn.ops.lif`.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch

from .._validation import check_lif_pool_args, check_like, check_steps, check_time_first, pooled_shape
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
) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """``F.max_pool2d(lif(x, ...), 2)`` over the last two dims, fused.

    Args:
        x: synaptic input, ``[T, ..., H, W]`` (H and W even), or with
            ``steps`` one step ``[..., H, W]`` repeated at each of ``steps``
            steps (its gradient is then summed over the steps in the kernel).
        decay, threshold, surrogate, alpha, grad_mode, u0: as `pysnn.ops.lif`.
        return_state: also return the post-reset membrane after the last step
            (``[..., H, W]``), which continues the sequence as ``u0``.

    Returns:
        the pooled spikes ``[T, ..., H/2, W/2]`` in x's dtype, then the state
        if ``return_state``.
    """
    if steps is not None:
        check_steps(steps)
        x = x.unsqueeze(0)
    elif x.dim() >= 3 and x.shape[0] > 1 and x.stride(0) == 0:
        steps, x = x.shape[0], x[:1]  # a stride-0 expand over time: run its one step
    else:
        steps = x.shape[0] if x.dim() >= 1 else 0
    x, u0 = charge_single_step(x, u0, decay, steps)  # (see pysnn.ops.lif)
    pooled, state = torch.ops.pysnn.lif_pool_forward(
        x, steps, float(decay), float(threshold), surrogate, float(alpha), grad_mode, u0
    )
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
