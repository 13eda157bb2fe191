"""`pysnn.ops.lif`: the fused multi-step LIF neuron (docs/neuron.md).

Backed by `torch.ops.pysnn.lif_forward` / `lif_backward`. The forward saves
only the pre-reset membrane u[t] (x's dtype, the size of x) and only when a
gradient is needed; the backward recomputes the surrogate from it in one
reverse sweep per neuron.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch

from .._validation import check_lif_args, check_like, check_lif_options, check_time_first
from ..reference.lif import select_outputs, surrogate_grad  # noqa: F401  (shared pure helpers)

Tensor = torch.Tensor


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
) -> Union[Tensor, Tuple[Tensor, ...]]:
    """Multi-step LIF with soft reset over a time-first input ``x`` of shape ``[T, ...]``.

    ``u[t] = decay * (u[t-1] - threshold * s[t-1]) + x[t]``, ``s[t] = (u[t] >= threshold)``.

    Args:
        x: synaptic input per step, floating point, ``[T, ...]`` with ``T >= 1``.
        decay: membrane decay λ in [0, 1].
        threshold: firing threshold v_th > 0.
        surrogate: derivative used for ∂s/∂u: "sigmoid", "atan", "exponential",
            "rectangular" (width 2/alpha, height alpha/2).
        alpha: surrogate sharpness, > 0.
        grad_mode: "bptt" (exact reverse sweep), "detach_reset" (no gradient
            through the reset) or "time_local" (no gradient across steps).
        u0: post-reset membrane entering the first step, ``x.shape[1:]``; zeros if None.
        return_membrane: also return the pre-reset membrane u[t], ``[T, ...]``
            (differentiable); ``surrogate_grad(u - threshold, ...)`` gives σ'(u[t]).
        return_state: also return the post-reset membrane after the last step,
            which continues the sequence when passed back as ``u0``.

    Returns:
        spikes ``[T, ...]`` in x's dtype (0 or 1), then the membrane if
        ``return_membrane``, then the final state if ``return_state``.
    """
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or (u0 is not None and u0.requires_grad))
    spikes, membrane, state = torch.ops.pysnn.lif_forward(
        x, float(decay), float(threshold), surrogate, float(alpha), grad_mode, u0,
        needs_grad or return_membrane)
    return select_outputs(spikes, membrane, state, return_membrane, return_state)


@torch.library.register_fake("pysnn::lif_forward")
def _lif_forward_fake(x, decay, threshold, surrogate, alpha, grad_mode, u0, save_membrane):
    check_lif_args(x, decay, threshold, surrogate, alpha, grad_mode, u0)
    membrane_shape = x.shape if save_membrane else (0,)
    return x.new_empty(x.shape), x.new_empty(membrane_shape), x.new_empty(x.shape[1:])


@torch.library.register_fake("pysnn::lif_backward")
def _lif_backward_fake(grad_spikes, grad_membrane, grad_state, membrane, decay, threshold,
                       surrogate, alpha, grad_mode):
    check_time_first("lif", "membrane", membrane)
    check_like("lif", "grad_spikes", grad_spikes, membrane, membrane.shape, "membrane")
    if grad_membrane is not None:
        check_like("lif", "grad_membrane", grad_membrane, membrane, membrane.shape, "membrane")
    if grad_state is not None:
        check_like("lif", "grad_state", grad_state, membrane, membrane.shape[1:], "membrane")
    check_lif_options(decay, threshold, surrogate, alpha, grad_mode)
    return membrane.new_empty(membrane.shape), membrane.new_empty(membrane.shape[1:])


def _setup_context(ctx, inputs, output):
    x, decay, threshold, surrogate, alpha, grad_mode, u0, save_membrane = inputs
    _, membrane, _ = output
    ctx.set_materialize_grads(False)
    ctx.options = (decay, threshold, surrogate, alpha, grad_mode)
    ctx.save_membrane = save_membrane
    ctx.has_u0 = u0 is not None
    ctx.save_for_backward(membrane)


def _backward(ctx, grad_spikes, grad_membrane, grad_state):
    if not ctx.save_membrane:
        raise RuntimeError("pysnn.lif_forward was called with save_membrane=False, so it cannot "
                           "be differentiated; pass save_membrane=True (pysnn.ops.lif does this)")
    (membrane,) = ctx.saved_tensors
    if grad_spikes is None:
        grad_spikes = torch.zeros_like(membrane)
    grad_x, grad_u0 = torch.ops.pysnn.lif_backward(
        grad_spikes, grad_membrane, grad_state, membrane, *ctx.options)
    return grad_x, None, None, None, None, None, (grad_u0 if ctx.has_u0 else None), None


torch.library.register_autograd("pysnn::lif_forward", _backward, setup_context=_setup_context)
