"""Spiking blocks: layer → optional BatchNorm → LIF → optional pooling and
dropout, over time-first tensors [T, B, ...] (stateless layers run on
[T·B, ...])."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import nn

from ..backends import get_backend
from .batch_norm import batch_norm_over_input
from .chunks import rows_per_chunk
from .conv import conv2d
from .dropout import SeededDropout
from .norm_lif_pool import settle_membrane_
from .norm_lif_pool_sequence import norm_lif_pool_sequence, norm_lif_pool_sequence_applies
from .pooling import _max_of_windows, pools_2x2_evenly, spike_max_pool


@dataclass
class NeuronConfig:
    decay: float = math.exp(-1.0)
    threshold: float = 1.0
    surrogate: str = "sigmoid"
    alpha: float = 4.0
    grad_mode: str = "bptt"
    backend: str = "fused"


def fold(fn, x: torch.Tensor) -> torch.Tensor:
    """Applies a stateless module to [T, B, ...] as one [T·B, ...] batch."""
    y = fn(x.reshape(x.shape[0] * x.shape[1], *x.shape[2:]))
    return y.reshape(x.shape[0], x.shape[1], *y.shape[1:])


def time_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of x [T, ...] over time as a sum / T, whose gradient reaches
    every step as one stride-0 expand (mean's backward would materialise
    [T, ...]); one step (real-time learning) is returned as a view of
    itself, which equals v / 1 exactly and copies nothing."""
    return x[0] if x.shape[0] == 1 else x.sum(0) / x.shape[0]


def repeated_batch_norm(norm: nn.modules.batchnorm._BatchNorm, x: torch.Tensor, repeats: int) -> torch.Tensor:
    """`norm` over `repeats` copies of x [1, B, ...] along time, computed on x
    alone: the copies' batch mean and (biased) variance are x's own, and the
    running statistics are updated as for repeats·B rows (the unbiased
    variance's n / (n − 1) with n counting every copy)."""
    flat = x.reshape(-1, *x.shape[2:])
    if not (norm.training and norm.track_running_stats):
        return fold(norm, x)
    y = batch_norm_over_input(norm, flat, update_stats=False)
    with torch.no_grad():
        dims = [0, *range(2, flat.dim())]
        mean, var = flat.mean(dims), flat.var(dims, correction=0)
        n = repeats * flat.numel() // flat.shape[1]
        norm.num_batches_tracked.add_(1)
        momentum = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
        norm.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
        norm.running_var.mul_(1 - momentum).add_(var * (n / (n - 1)), alpha=momentum)
    return y.reshape(x.shape)


class SpikingBlock(nn.Module):
    """One spiking layer. Trainers use its stages separately:
    `integrate` (synaptic input x[t]), `fire` (LIF), `emit` (pool, dropout)."""

    def __init__(
        self,
        layer: nn.Module,
        neuron: NeuronConfig,
        *,
        norm: Optional[nn.Module] = None,
        pool: Optional[nn.Module] = None,
        dropout: float = 0.0,
        dropout_seed: int = 0,
    ) -> None:
        super().__init__()
        self.layer, self.norm, self.pool = layer, norm, pool
        self.dropout = SeededDropout(dropout, dropout_seed) if dropout > 0 else None
        self.neuron = neuron
        backend = get_backend(neuron.backend)
        self._lif, self._lif_max_pool2d = backend.lif, backend.lif_max_pool2d

    @property
    def is_linear(self) -> bool:
        return isinstance(self.layer, nn.Linear)

    def integrate(self, h: torch.Tensor, expand: bool = True) -> torch.Tensor:
        """The synaptic input x[t] of every step of h. For an input that repeats
        over time, `expand=False` returns the one step it repeats ([1, B, ...])."""
        if self.repeats_over_time(h):
            # The same input at every step (direct coding, a stride-0 view): the
            # layer (and batch norm) run once and the output is expanded, so the
            # forward GEMM and, through expand's backward (a sum over T), the
            # weight-gradient GEMM are T times smaller, and the LIF saves the
            # stride-0 view for its backward: no T·B-row copy is kept.
            x = self.layer_output(h[:1])
            if self.norm is not None:
                x = repeated_batch_norm(self.norm, x, h.shape[0])
            return x.expand(h.shape[0], *x.shape[1:]) if expand else x
        return self.normalise(self.layer_output(h))

    @staticmethod
    def repeats_over_time(h: torch.Tensor) -> bool:
        """Whether h [T, B, ...] is one step repeated (a stride-0 view over time)."""
        return h.dim() > 2 and h.shape[0] > 1 and h.stride(0) == 0

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """The norm (if any) over x [T, B, ...], the layer's fresh output,
        which the norm's backward may overwrite (`batch_norm_over_input`)."""
        if self.norm is None:
            return x
        return fold(lambda v: batch_norm_over_input(self.norm, v), x)

    def drive(self, h: torch.Tensor) -> Tuple[torch.Tensor, Optional[int]]:
        """The LIF's input for h and its `steps` argument: x[t] of every step
        ([T, B, ...], None), or for an input that repeats over time its one
        step ([B, ...], T), whose gradient the LIF then sums over the steps in
        its kernel instead of in a [T, B, ...] buffer."""
        x = self.integrate(h, expand=False)
        if x.shape[0] == 1 and h.shape[0] > 1:
            return x.squeeze(0), h.shape[0]
        return x, None

    def layer_output(self, h: torch.Tensor) -> torch.Tensor:
        """The layer (not its norm) over h [T, B, ...]."""
        if self.is_linear:  # a Linear applies to the last dim of [T, B, n] directly
            return self.layer(h.flatten(2))
        return fold(lambda v: conv2d(self.layer, v), h)

    def fire(
        self,
        x: torch.Tensor,
        grad_mode: Optional[str] = None,
        return_membrane: bool = False,
        u0: Optional[torch.Tensor] = None,
        return_state: bool = False,
        steps: Optional[int] = None,
    ):
        """The LIF over x's steps from the membrane `u0` (zeros if None); with
        `return_state`, the post-reset membrane after the last step comes last.
        With `steps`, x is one step repeated `steps` times (see `drive`)."""
        return self._lif(
            x,
            **self.neuron_args(grad_mode),
            u0=u0,
            return_membrane=return_membrane,
            return_state=return_state,
            steps=steps,
        )

    def fire_pooled(
        self,
        x: torch.Tensor,
        grad_mode: Optional[str] = None,
        u0: Optional[torch.Tensor] = None,
        return_state: bool = False,
        steps: Optional[int] = None,
        overwrite_input: bool = False,
    ):
        """`pooled(fire(x, ...))`. With a 2×2 spike max pool over an even map
        the two run as one op (`lif_max_pool2d`) that never holds the
        full-size spikes nor, in the backward, their gradient; with
        `overwrite_input` (x is the caller's to give up) its backward writes
        dL/dx over x."""
        if not self.fuses_pool(x):
            out = self.fire(x, grad_mode, u0=u0, return_state=return_state, steps=steps)
            return (self.pooled(out[0]), out[1]) if return_state else self.pooled(out)
        return self._lif_max_pool2d(
            x,
            **self.neuron_args(grad_mode),
            u0=u0,
            return_state=return_state,
            steps=steps,
            overwrite_input=overwrite_input,
        )

    def neuron_args(self, grad_mode: Optional[str] = None) -> dict:
        """The neuron's parameters as the LIF ops take them (grad_mode: this call's, or the block's)."""
        n = self.neuron
        return dict(
            decay=n.decay,
            threshold=n.threshold,
            surrogate=n.surrogate,
            alpha=n.alpha,
            grad_mode=grad_mode or n.grad_mode,
        )

    def fuses_pool(self, x: torch.Tensor) -> bool:
        """Whether `fire_pooled` runs the LIF and the pool on x as one op."""
        return x.dim() >= 3 and pools_2x2_evenly(self.pool, x)

    def surrogate_grad_(self, membrane: torch.Tensor) -> torch.Tensor:
        """σ'(u[t]) of this layer's neurons, computed in (and overwriting) `membrane`."""
        from ..reference.lif import surrogate_grad_

        return surrogate_grad_(membrane.sub_(self.neuron.threshold), self.neuron.surrogate, self.neuron.alpha)

    def spikes_of(self, membrane: torch.Tensor) -> torch.Tensor:
        """The spikes of pre-reset membrane u: u ≥ threshold, in u's dtype
        (the LIF's spikes, bit for bit)."""
        return membrane.ge(self.neuron.threshold).to(membrane.dtype)

    def times_surrogate_grad_(self, grad: torch.Tensor, membrane: torch.Tensor) -> torch.Tensor:
        """grad ⊙ σ'(membrane) (same shape, [T, B, ...]), written over grad,
        a few samples at a time: membrane is left as it is."""
        rows = rows_per_chunk(membrane[0, 0].numel())
        for g, u in zip(grad.split(rows, 1), membrane.split(rows, 1)):
            g.mul_(self.surrogate_grad_(u.clone()))
        return grad

    def fire_step_by_step(
        self, x: torch.Tensor, steps: int
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """The LIF from rest over `steps` steps of x, outside autograd, one step
        at a time, so no [T, B, ...] buffer of spikes or membranes is formed.
        Returns the pooled spikes of every step [T, B, ...] (before dropout),
        the firing rates [B, ...] and, for a repeated input, σ'(u[t]) averaged
        over the steps [1, B, ...].

        x [T, B, ...] (T = steps) is the caller's own: its membranes u[t]
        (pre-reset) are written over it, and the third item is None.
        x [1, B, ...] with steps > 1 is one step repeated, left as it is.
        Spikes, rates and membranes are the LIF op's bit for bit (the charge
        x + decay·u rounded as its kernels round it, in float32/float64)."""
        repeated = x.shape[0] == 1 and steps > 1
        if not repeated and x.shape[0] != steps:
            raise ValueError(f"fire_step_by_step: x has {x.shape[0]} steps, expected {steps} (or 1 repeated)")
        pooled, state = None, None
        spike_sum = torch.zeros_like(x[0])
        post_sum = torch.zeros_like(x[0]) if repeated else None
        for t in range(steps):
            if repeated:  # the step's charge in the carried state's buffer: decay·u rounded, then + x
                u = x[0].clone() if state is None else state.mul_(self.neuron.decay).add_(x[0])
            else:
                u = x[t]
                if state is not None:
                    u.add_(state.mul_(self.neuron.decay))
            spike_sum.add_(u >= self.neuron.threshold)  # (the spikes as a mask: 1 byte per neuron)
            step_pooled = self._pooled_spikes_of(u)
            if pooled is None:
                pooled = step_pooled.new_empty((steps, *step_pooled.shape))
            pooled[t].copy_(step_pooled)
            del step_pooled
            state = settle_membrane_(u.clone(), self.neuron_args())
            if repeated:
                post_sum.add_(self.surrogate_grad_(u))
            del u
        rates = spike_sum.div_(steps)
        return pooled, rates, None if post_sum is None else post_sum.div_(steps).unsqueeze(0)

    def _pooled_spikes_of(self, membrane: torch.Tensor) -> torch.Tensor:
        """`pooled` of one step's spikes for its pre-reset membrane [B, ...]:
        a 2×2 max pool's window fires if its largest membrane reaches the
        threshold, so it pools the membrane (no spikes of the full size)."""
        if pools_2x2_evenly(self.pool, membrane):
            return _max_of_windows(membrane).ge(self.neuron.threshold).to(membrane.dtype)
        return self.pooled(self.spikes_of(membrane).unsqueeze(0))[0]

    def pooled(self, spikes: torch.Tensor) -> torch.Tensor:
        if isinstance(self.pool, nn.MaxPool2d):  # (spike_max_pool falls back to the module itself)
            return fold(lambda s: spike_max_pool(s, self.pool), spikes)
        return fold(self.pool, spikes) if self.pool is not None else spikes

    def drop(self, h: torch.Tensor) -> torch.Tensor:
        return self.dropout(h) if self.dropout is not None else h

    @property
    def output_scale(self) -> float:
        """The value of a kept spike in `emit`'s output (1, or 1/(1 − p) under dropout)."""
        return self.dropout.scale if self.dropout is not None else 1.0

    def emit(self, spikes: torch.Tensor) -> torch.Tensor:
        return self.drop(self.pooled(spikes))

    def drive_pooled(self, h: torch.Tensor) -> torch.Tensor:
        """`fire_pooled` of `drive(h)`, from rest: the block's output before
        dropout. A sequence into a conv block with batch norm and a fused pool
        runs as one `norm_lif_pool_sequence`, which holds the convolution's
        output and the pooled spikes only (batch norm's output and the LIF's
        input, a second buffer of the layer's T-step size, are recomputed a
        few samples at a time)."""
        if self.neuron.backend == "fused" and not self.repeats_over_time(h):
            x = self.layer_output(h)
            if self.fuses_pool(x) and norm_lif_pool_sequence_applies(self.norm, x):
                return norm_lif_pool_sequence(self.norm, x, self.neuron_args())
            return self.fire_pooled(self.normalise(x), overwrite_input=True)
        x, steps = self.drive(h)
        return self.fire_pooled(x, steps=steps, overwrite_input=True)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.drop(self.drive_pooled(h))

    def output_shape(self, input_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        with torch.no_grad():
            probe = torch.zeros(1, 1, *input_shape)
            if self.is_linear:
                return (self.layer.out_features,)
            return tuple(self.pooled(fold(self.layer, probe)).shape[2:])
