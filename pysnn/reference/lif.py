"""Pure-PyTorch multi-step LIF, written step by step from docs/neuron.md.

The ground truth for the fused op's tests and the baseline of its
benchmarks; also the `reference` backend of the trainers. Same signature and
semantics as `pysnn.ops.lif`; gradients come from autograd through the loop.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
from torch.nn import functional as F

from .._validation import check_lif_args, check_lif_pool_args, check_repeated_lif_args

Tensor = torch.Tensor


def surrogate_grad(d: Tensor, surrogate: str, alpha: float) -> Tensor:
    """Surrogate derivative of H at d = u - threshold (see csrc/ops/lif_math.h)."""
    return surrogate_grad_(d.clone(), surrogate, alpha)


def surrogate_grad_(d: Tensor, surrogate: str, alpha: float) -> Tensor:
    """`surrogate_grad` computed in d's own storage (d is overwritten): no
    temporaries of d's size, which matters for [T, B, C, H, W] membranes."""
    if surrogate == "sigmoid":  # α·sg·(1 − sg) = α·(sg − sg²)
        sg = d.mul_(alpha).sigmoid_()
        return sg.addcmul_(sg, sg, value=-1).mul_(alpha)
    if surrogate == "atan":
        return d.mul_(math.pi / 2 * alpha).square_().add_(1).reciprocal_().mul_(alpha / 2)
    if surrogate == "exponential":
        return d.abs_().mul_(-alpha).exp_().mul_(alpha)
    if surrogate == "rectangular":
        inside = d.abs_() <= 1 / alpha
        return d.copy_(inside).mul_(alpha / 2)
    raise ValueError(f"lif: unknown surrogate '{surrogate}'")


class SpikeFunction(torch.autograd.Function):
    """Heaviside step H(u - threshold) forward, surrogate derivative backward."""

    @staticmethod
    def forward(ctx, u: Tensor, threshold: float, surrogate: str, alpha: float) -> Tensor:
        ctx.save_for_backward(u)
        ctx.options = (threshold, surrogate, alpha)
        return (u >= threshold).to(u.dtype)

    @staticmethod
    def backward(ctx, grad_spike: Tensor):
        (u,) = ctx.saved_tensors
        threshold, surrogate, alpha = ctx.options
        return grad_spike * surrogate_grad(u - threshold, surrogate, alpha), None, None, None


def lif(
    x: Tensor,
    decay: float,
    threshold: float,
    *,
    surrogate: str = "sigmoid",
    alpha: float = 4.0,
    grad_mode: str = "bptt",
    u0: Optional[Tensor] = None,
    return_membrane: bool = False,
    return_state: bool = False,
    steps: Optional[int] = None,
) -> Union[Tensor, Tuple[Tensor, ...]]:
    """Reference for `pysnn.ops.lif`; see its docstring for the arguments."""
    if steps is not None:
        check_repeated_lif_args(x, steps, decay, threshold, surrogate, alpha, grad_mode, u0)
        x = x.expand(steps, *x.shape)
    check_lif_args(x, decay, threshold, surrogate, alpha, grad_mode, u0)
    v = torch.zeros_like(x[0]) if u0 is None else u0
    spikes, membranes = [], []
    for t in range(x.shape[0]):
        if grad_mode == "time_local":
            v = v.detach()  # nothing crosses from one step to the next
        u = decay * v + x[t]
        s = SpikeFunction.apply(u, threshold, surrogate, alpha)
        reset = s.detach() if grad_mode == "detach_reset" else s
        v = u - threshold * reset
        spikes.append(s)
        membranes.append(u)
    membrane = torch.stack(membranes) if return_membrane else None
    return select_outputs(torch.stack(spikes), membrane, v, return_membrane, return_state)


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
    """Reference for `pysnn.ops.lif_max_pool2d`: `lif`, then `F.max_pool2d(·, 2)`
    (`overwrite_input` is a permission: the reference never takes it)."""
    check_lif_pool_args(
        x.unsqueeze(0) if steps is not None else x,
        steps if steps is not None else (x.shape[0] if x.dim() else 0),
        decay,
        threshold,
        surrogate,
        alpha,
        grad_mode,
        u0,
    )
    spikes, state = lif(
        x,
        decay,
        threshold,
        surrogate=surrogate,
        alpha=alpha,
        grad_mode=grad_mode,
        u0=u0,
        return_state=True,
        steps=steps,
    )
    pooled = max_pool_last_2x2(spikes)
    return (pooled, state) if return_state else pooled


def max_pool_last_2x2(x: Tensor) -> Tensor:
    """`F.max_pool2d(·, 2)` over the last two dims of x [..., H, W]."""
    *lead, h, w = x.shape
    return F.max_pool2d(x.reshape(-1, 1, h, w), 2).reshape(*lead, h // 2, w // 2)


def select_outputs(
    spikes: Tensor, membrane: Optional[Tensor], state: Tensor, return_membrane: bool, return_state: bool
) -> Union[Tensor, Tuple[Tensor, ...]]:
    """spikes, then the membrane and the final state when asked for."""
    if not (return_membrane or return_state):
        return spikes
    return (spikes,) + ((membrane,) if return_membrane else ()) + ((state,) if return_state else ())
