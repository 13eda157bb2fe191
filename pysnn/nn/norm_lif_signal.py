"""A conv block's batch norm and LIF over a whole sequence from rest, for a
learning signal that exists only after the forward: HBH's final-step update,
δ[t] = σ'(u[t]) ⊙ G / T with G from every sample's rates. It holds the
convolution's output x and the pooled spikes only.

Run as ops, batch norm keeps x for its backward and its output becomes the
T steps' membranes, which δ is then formed over: two buffers of the layer's
T-step size. Here batch norm's output and the LIF are formed a few samples
(all T steps of each) at a time, once for the spikes (`norm_lif_rates`) and
twice more in the backward (`norm_lif_signal_backward_`: batch norm's
per-channel sums, then dL/dx over x). Spikes, rates and running statistics
equal the ops' bit for bit, the gradients up to the order of batch norm's
sums.
"""

from __future__ import annotations

from typing import Tuple

import torch

from .batch_norm import native_arguments
from .norm_lif_pool import _batch_statistics, _lif_options
from .norm_lif_pool_sequence import (
    _normalised_samples,
    _sample_chunks,
    batch_norm_backward_over_samples_,
    sequence_norm_applies,
)

Tensor = torch.Tensor


def norm_lif_signal_applies(norm, x: Tensor) -> bool:
    """Whether `norm_lif_rates` takes x, a convolution's output over a
    sequence whose data the caller gives up (`sequence_norm_applies`)."""
    return sequence_norm_applies(norm, x)


@torch.no_grad()
def norm_lif_rates(block, x: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Batch norm (training: its running statistics updated as ``norm(x)``
    updates them) and the LIF from rest over x [T, B, C, H, W], a few
    samples at a time, outside autograd. Returns the pooled spikes [T, B, ...]
    (``block.pooled``, before dropout), the firing rates [B, C, H, W] and
    batch norm's mean and invstd for `norm_lif_signal_backward_`."""
    weight, bias, running_mean, running_var, momentum, eps = native_arguments(block.norm)
    mean, invstd = _batch_statistics(x.view(-1, *x.shape[2:]), running_mean, running_var, momentum, eps)
    options = _lif_options(block.neuron_args())
    pooled, rates = None, x.new_empty(x.shape[1:])
    for samples in _sample_chunks(x):
        y = _normalised_samples(x, samples, weight, bias, mean, invstd)
        spikes = torch.ops.pysnn.lif_forward(y, *options, None, False)[0]
        del y
        part = block.pooled(spikes)
        if pooled is None:
            pooled = part.new_empty(x.shape[0], x.shape[1], *part.shape[2:])
        pooled[:, samples] = part
        rates[samples] = spikes.sum(0) / x.shape[0]  # (`time_mean`)
    return pooled, rates, mean, invstd


@torch.no_grad()
def norm_lif_signal_backward_(block, x: Tensor, mean: Tensor, invstd: Tensor, signal: Tensor) -> Tensor:
    """δ[t] = σ'(u[t]) ⊙ signal (signal [B, C, H, W], the same at every step)
    for the membranes u of `norm_lif_rates`'s forward, back through batch
    norm: adds batch norm's weight and bias gradients and writes dL/dx over
    x, which it returns (for the convolution's backward)."""
    norm = block.norm
    weight, bias = norm.weight, norm.bias
    options = _lif_options(block.neuron_args())

    def delta(samples):
        y = _normalised_samples(x, samples, weight, bias, mean, invstd)
        membrane = torch.ops.pysnn.lif_forward(y, *options, None, True)[1]
        del y
        return block.surrogate_grad_(membrane).mul_(signal[samples])

    grad_weight, grad_bias = batch_norm_backward_over_samples_(x, weight, mean, invstd, delta)
    for param, grad in ((weight, grad_weight), (bias, grad_bias)):
        if param is not None and param.requires_grad:
            param.grad = grad if param.grad is None else param.grad.add_(grad)
    return x
