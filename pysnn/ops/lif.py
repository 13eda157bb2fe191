"""`pysnn.ops.lif`: the fused multi-step LIF neuron (docs/neuron.md).

Backed by `torch.ops.pysnn.lif_forward` and one of two backwards. By
default the forward saves no membrane: autograd keeps a reference to x (free
for a stride-0 direct-coding input) and `lif_backward_input` recomputes each
neuron's membrane, writes the surrogate derivative at it into the
input-gradient buffer it must allocate anyway, then sweeps that backward in
place: one buffer the size of x fewer than saving the membrane, and one pass fewer. When the membrane is returned
(`return_membrane=True`) it is an output anyway: it is saved, and
`lif_backward` reads it (and takes its gradient).

With `steps`, x is one step's input repeated at every step (direct coding):
`lif_repeated_forward` runs it and `lif_repeated_backward` returns x's
gradient summed over the steps, so neither direction holds a [T, ...] copy
of x or of its gradient.

A single step from a `u0` that needs no gradient (real-time learning's
carried membrane) is charged before the kernel, `x + decay * u0`, rounded
as the kernel's first step rounds it, and run from rest: autograd then
saves one input-sized tensor instead of two, and the backward computes no
gradient for u0 (`charge_single_step`).
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch

from .._validation import (
    check_lif_args,
    check_lif_options,
    check_like,
    check_repeated_lif_args,
    check_steps,
    check_time_first,
)
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
    steps: Optional[int] = None,
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
        steps: if given, ``x`` is one step's input ``[...]``, the same at each
            of ``steps`` steps (direct coding); equal to passing
            ``x.expand(steps, *x.shape)``, but x's gradient is summed over the
            steps inside the kernel instead of in a ``[T, ...]`` buffer.

    Returns:
        spikes ``[T, ...]`` in x's dtype (0 or 1), then the membrane if
        ``return_membrane``, then the final state if ``return_state``.
    """
    x, u0 = charge_single_step(x, u0, decay, steps)
    if steps is not None:
        check_steps(steps)
        if not return_membrane:
            spikes, state = torch.ops.pysnn.lif_repeated_forward(
                x, steps, float(decay), float(threshold), surrogate, float(alpha), grad_mode, u0
            )
            return select_outputs(spikes, None, state, False, return_state)
        x = x.expand(steps, *x.shape)  # the membrane is [T, ...] anyway
    spikes, membrane, state = torch.ops.pysnn.lif_forward(
        x, float(decay), float(threshold), surrogate, float(alpha), grad_mode, u0, return_membrane
    )
    return select_outputs(spikes, membrane, state, return_membrane, return_state)


def charge_single_step(
    x: Tensor, u0: Optional[Tensor], decay: float, steps: Optional[int], in_place: bool = False
) -> Tuple[Tensor, Optional[Tensor]]:
    """(x + decay * u0, None) for one step from a u0 that needs no gradient,
    else (x, u0) unchanged; `steps` is the op's (x's one step repeated
    `steps` times, or None for a sequence x [T, ...]). Exact: the product
    and the sum are rounded separately in x's dtype, as the kernels' first
    step does in float32 and float64 (other dtypes charge in float32 inside
    the kernel, so they are left to it), and the first step from rest is
    that charge.

    Without `in_place` the charge is a new tensor, made only while autograd
    records x (it then saves one tensor instead of x and u0). With it, the
    caller owns x and u0 (real-time learning's fresh synaptic input and
    carried membrane) and nothing autograd saved holds x: u0 is scaled and
    added into x, allocating nothing.
    Arguments the op would reject pass through to its checks."""
    if (
        (steps if steps is not None else (x.shape[0] if x.dim() >= 1 else 0)) != 1
        or u0 is None
        or u0.requires_grad
        or x.dtype not in (torch.float32, torch.float64)
        or u0.dtype != x.dtype
        or u0.device != x.device
        or x.numel() == 0
        or u0.shape != x.shape[-u0.dim() :]
        or x.numel() != u0.numel()
    ):
        return x, u0
    if in_place:
        # Adding a constant has the identity for gradient, so it goes through
        # `.data`, which autograd does not track: an in-place op on x, or one
        # through detach() (which shares x's version counter), would turn x,
        # a view in a block, into an as_strided view whose backward copies
        # its gradient into a zeroed buffer of the whole base.
        x.data.add_(u0.mul_(decay).reshape(x.shape))
        return x, None
    if not (torch.is_grad_enabled() and x.requires_grad):
        return x, u0
    # decay·u0 rounded first, then + x into the same buffer: one new tensor
    # (not a view, so the backward passes x's gradient through uncopied)
    return (u0.reshape(x.shape) * decay).add_(x), None


@torch.library.register_fake("pysnn::lif_forward")
def _lif_forward_fake(x, decay, threshold, surrogate, alpha, grad_mode, u0, save_membrane):
    check_lif_args(x, decay, threshold, surrogate, alpha, grad_mode, u0)
    membrane_shape = x.shape if save_membrane else (0,)
    return x.new_empty(x.shape), x.new_empty(membrane_shape), x.new_empty(x.shape[1:])


@torch.library.register_fake("pysnn::lif_backward")
def _lif_backward_fake(grad_spikes, grad_membrane, grad_state, membrane, decay, threshold, surrogate, alpha, grad_mode):
    check_time_first("lif", "membrane", membrane)
    check_like("lif", "grad_spikes", grad_spikes, membrane, membrane.shape, "membrane")
    if grad_membrane is not None:
        check_like("lif", "grad_membrane", grad_membrane, membrane, membrane.shape, "membrane")
    if grad_state is not None:
        check_like("lif", "grad_state", grad_state, membrane, membrane.shape[1:], "membrane")
    check_lif_options(decay, threshold, surrogate, alpha, grad_mode)
    return membrane.new_empty(membrane.shape), membrane.new_empty(membrane.shape[1:])


@torch.library.register_fake("pysnn::lif_backward_input")
def _lif_backward_input_fake(grad_spikes, grad_state, x, u0, decay, threshold, surrogate, alpha, grad_mode):
    check_time_first("lif", "x", x)
    check_like("lif", "grad_spikes", grad_spikes, x, x.shape, "x")
    if grad_state is not None:
        check_like("lif", "grad_state", grad_state, x, x.shape[1:], "x")
    if u0 is not None:
        check_like("lif", "u0", u0, x, x.shape[1:], "x")
    check_lif_options(decay, threshold, surrogate, alpha, grad_mode)
    return x.new_empty(x.shape), x.new_empty(x.shape[1:] if u0 is not None else (0,))


@torch.library.register_fake("pysnn::lif_repeated_forward")
def _lif_repeated_forward_fake(x, steps, decay, threshold, surrogate, alpha, grad_mode, u0):
    check_repeated_lif_args(x, steps, decay, threshold, surrogate, alpha, grad_mode, u0)
    return x.new_empty((steps, *x.shape)), x.new_empty(x.shape)


@torch.library.register_fake("pysnn::lif_repeated_backward")
def _lif_repeated_backward_fake(grad_spikes, grad_state, x, u0, decay, threshold, surrogate, alpha, grad_mode):
    check_time_first("lif", "grad_spikes", grad_spikes)
    check_repeated_lif_args(x, grad_spikes.shape[0], decay, threshold, surrogate, alpha, grad_mode, u0)
    check_like("lif", "grad_spikes", grad_spikes, x, (grad_spikes.shape[0], *x.shape), "x")
    if grad_state is not None:
        check_like("lif", "grad_state", grad_state, x, x.shape, "x")
    return x.new_empty(x.shape), x.new_empty(x.shape if u0 is not None else (0,))


def _setup_context(ctx, inputs, output):
    x, decay, threshold, surrogate, alpha, grad_mode, u0, save_membrane = inputs
    _, membrane, _ = output
    ctx.set_materialize_grads(False)
    ctx.options = (decay, threshold, surrogate, alpha, grad_mode)
    ctx.save_membrane = save_membrane
    ctx.has_u0 = u0 is not None
    # The membrane when it was computed anyway; else x (and u0) to recompute it.
    ctx.save_for_backward(*((membrane,) if save_membrane else (x, u0)))


def _backward(ctx, grad_spikes, grad_membrane, grad_state):
    if ctx.save_membrane:
        (membrane,) = ctx.saved_tensors
        if grad_spikes is None:
            grad_spikes = torch.zeros_like(membrane)
        grad_x, grad_u0 = torch.ops.pysnn.lif_backward(grad_spikes, grad_membrane, grad_state, membrane, *ctx.options)
    else:
        x, u0 = ctx.saved_tensors
        if grad_spikes is None:
            grad_spikes = torch.zeros(x.shape, dtype=x.dtype, device=x.device)
        grad_x, grad_u0 = torch.ops.pysnn.lif_backward_input(grad_spikes, grad_state, x, u0, *ctx.options)
    return grad_x, None, None, None, None, None, (grad_u0 if ctx.has_u0 else None), None


torch.library.register_autograd("pysnn::lif_forward", _backward, setup_context=_setup_context)


def _setup_repeated_context(ctx, inputs, output):
    x, steps, decay, threshold, surrogate, alpha, grad_mode, u0 = inputs
    ctx.set_materialize_grads(False)
    ctx.options = (decay, threshold, surrogate, alpha, grad_mode)
    ctx.steps = steps
    ctx.has_u0 = u0 is not None
    ctx.save_for_backward(x, u0)


def _repeated_backward(ctx, grad_spikes, grad_state):
    x, u0 = ctx.saved_tensors
    if grad_spikes is None:
        grad_spikes = torch.zeros((ctx.steps, *x.shape), dtype=x.dtype, device=x.device)
    grad_x, grad_u0 = torch.ops.pysnn.lif_repeated_backward(grad_spikes, grad_state, x, u0, *ctx.options)
    return grad_x, None, None, None, None, None, None, (grad_u0 if ctx.has_u0 else None)


torch.library.register_autograd(
    "pysnn::lif_repeated_forward", _repeated_backward, setup_context=_setup_repeated_context
)
