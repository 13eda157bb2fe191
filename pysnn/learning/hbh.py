"""SNN-HBH (docs/hsic.md, thesis ch. 4): every hidden layer follows the HSIC
bottleneck on its firing rates Z, through the three-factor rule: a modulator
(from the kernels of the batch), times the post-synaptic difference and
gate, times the presynaptic spikes. The first term of the bottleneck is
HSIC(Z, Z) by default (Pogodin & Latham; each layer builds its modulator
from its own rates) or the thesis' HSIC(X, Z) (`hsic_term="input"`; one
modulator per batch for every layer): L = HSIC(·, Z) − β·HSIC(Z, Y).
Linear layers take the fused `hsic_update`; other layers (conv, batch norm)
feed the post-synaptic signal δ to their own weight gradient. The output
layer learns from its own cross-entropy."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..backends import get_backend
from ..nn.blocks import time_mean
from ..nn.norm_lif_signal import norm_lif_rates, norm_lif_signal_applies, norm_lif_signal_backward_
from .base import LocalTrainer


def label_kernel(ops, labels: torch.Tensor, classes: int, kind: str = "cosine", sigma: float = 1.0) -> torch.Tensor:
    """The kernel on one-hot labels; for cosine the labels are centred first,
    which makes it ~28x stronger than a gaussian with sigma 5 (docs/hsic.md)."""
    onehot = F.one_hot(labels, classes).float()
    if kind == "cosine":
        onehot = onehot - 1.0 / classes
    return ops.kernel_matrix(onehot, kind=kind, sigma=sigma)


class HBHTrainer(LocalTrainer):
    grad_mode = "time_local"

    def __init__(self, model, config, classes, input_shape):
        super().__init__(model, config, classes)
        self.ops = get_backend(config.backend)
        self.layer_optimizers = [
            self.add_optimizer(block.parameters(), block=index) for index, block in enumerate(model.blocks)
        ]
        self._label_kernel: tuple = (None, None)  # (labels, their kernel), built once per batch

    def batch_context(self, images, labels):
        """With `hsic_term = "input"`, what every layer of the batch shares: the
        modulator M from Kx and Ky, or when normalised (cka, cca) Kx itself
        (each layer's normalised M also depends on its own Kz); with "self",
        nothing: each layer builds its own."""
        c = self.config
        if c.hsic_term != "input":
            return None
        with torch.no_grad():
            kx = self.kernel(self.batch.gather(images.flatten(1)))
            if c.hsic_norm != "none":
                return kx
            ky = self.label_kernel(self.batch.gather(labels))
            return self.ops.hsic_modulator(kx, ky, beta=c.beta, estimator=c.estimator)

    def modulator(self, rates: torch.Tensor, labels: torch.Tensor, shared) -> torch.Tensor:
        """The third factor of a layer with these (detached) rates: the batch's
        shared M; normalised (cka, cca), the normalised bottleneck's gradient at this
        layer's Kz; for HSIC(Z, Z) one with 2·Kz in place of Kx (HSIC is
        bilinear and symmetric, so ∂HSIC(Kz, Kz)/∂Kz = 2·C(Kz))."""
        c = self.config
        if shared is not None and c.hsic_norm == "none":
            return shared
        kz = self.kernel(rates.flatten(1))
        ky = self.label_kernel(labels).to(kz.dtype)
        if c.hsic_norm != "none":
            return self.ops.hsic_modulator(
                shared.to(kz.dtype), ky, beta=c.beta, estimator=c.estimator, normalize=c.hsic_norm, kz=kz
            )
        return self.ops.hsic_modulator(2 * kz, ky, beta=c.beta, estimator=c.estimator)

    def kernel(self, z: torch.Tensor) -> torch.Tensor:
        """--kernel on the rows of z: the input's and every layer's kernel."""
        c = self.config
        c1, c0 = c.kernel_param
        return self.ops.kernel_matrix(z, kind=c.kernel, sigma=c.sigma, sigma_scaling=c.sigma_scaling, c1=c1, c0=c0)

    def label_kernel(self, labels: torch.Tensor) -> torch.Tensor:
        cached_labels, kernel = self._label_kernel
        if cached_labels is not labels:
            kernel = label_kernel(self.ops, labels, self.classes, self.config.label_kernel, self.config.sigma)
            self._label_kernel = (labels, kernel)
        return kernel

    def _fused_linear_update(self, index, block, inputs, labels, shared):
        """The fused three-factor update: no autograd graph at all."""
        c = self.config
        with torch.no_grad():
            spikes, membrane = self.fire(index, block.integrate(inputs), return_membrane=True)
            post_grad = block.surrogate_grad_(membrane)
            rates = time_mean(spikes)
            grad_w, grad_b, loss = self.ops.hsic_update(
                inputs.flatten(2),
                post_grad,
                rates,
                self.modulator(rates, labels, shared),
                sigma=c.sigma,
                sigma_scaling=c.sigma_scaling,
            )
        block.layer.weight.grad = grad_w.to(block.layer.weight.dtype)
        if block.layer.bias is not None:
            block.layer.bias.grad = grad_b.to(block.layer.bias.dtype)
        return block.emit(spikes)

    def _signal_update(self, index, block, inputs, labels, shared):
        """δ[t] = ∂L/∂x[t] under the time-local surrogate, fed to the layer's own backward.
        Buffers of the layer's full size are dropped as soon as they are used."""
        if self._signal_through_norm(block, inputs):
            x = block.layer_output(inputs)
            if norm_lif_signal_applies(block.norm, x):
                return self._norm_signal_update(block, x, labels, shared)
            x = block.normalise(x)
        else:
            x = block.integrate(inputs, expand=False)  # [1, B, ...] if the input repeats over the T steps
        with torch.no_grad():
            # Real time: x.data is charged into the step's membrane in place
            # and σ' is read from it after G exists, a few samples at a time
            # (`fire_unsettled`). Final step: x.data becomes the membranes in
            # the same way (`fire_step_by_step`). Otherwise σ' is formed now,
            # over the LIF op's membrane. Autograd never sees x change.
            post_grad, membranes_in_x = None, False
            spikes = self.fire_unsettled(index, x.data)
            if spikes is None and self._fires_step_by_step(block, x):
                # (a repeated input's σ' is averaged over the steps instead)
                pooled, rates, post_grad = block.fire_step_by_step(x.data, inputs.shape[0])
                membranes_in_x = post_grad is None
                post_grad = None if post_grad is None else post_grad.flatten(2)
                out = block.drop(pooled)
                del pooled
            else:
                if spikes is None:
                    spikes, membrane = self.fire(
                        index, x.data.expand(inputs.shape[0], *x.shape[1:]), return_membrane=True
                    )
                    post_grad = block.surrogate_grad_(membrane).flatten(2)
                    del membrane
                    if x.shape[0] < post_grad.shape[0]:  # x's gradient is Σ_t δ[t] = G ⊙ Σ_t σ'(u[t]) / T
                        post_grad = post_grad.mean(0, keepdim=True)
                rates = time_mean(spikes)
                # the layer's output now: a pooled block then holds its pooled
                # spikes, not the full [T, B, ...] map, through its backward
                out = block.emit(spikes)
                del spikes
        grad_rates = self._grad_of_rates(rates, out, labels, shared)
        del rates
        # δ = σ' ⊙ G / T is written over σ' (or G): no second buffer of the layer's size
        if membranes_in_x:  # δ[t] = σ'(u[t]) ⊙ G / T, over the membranes
            grad_rates = grad_rates.view(x.shape[1:]).div_(x.shape[0])
            delta = block.surrogate_grad_(x.data).mul_(grad_rates)
        elif post_grad is None:  # one step: δ = G ⊙ σ'(u), over G
            delta = block.times_surrogate_grad_(grad_rates.view(x.shape), x.data)
        else:
            delta = post_grad.mul_(grad_rates.div_(post_grad.shape[0]))
        del post_grad, grad_rates
        x.backward(delta.reshape(x.shape).to(x.dtype))
        return out

    def _norm_signal_update(self, block, x, labels, shared):
        """`_signal_update` of a sequence x (a conv block's output before its
        batch norm), holding x and the pooled spikes only: batch norm's output
        and the membranes are formed a few samples at a time, for the rates
        and again for δ (pysnn.nn.norm_lif_signal)."""
        pooled, rates, mean, invstd = norm_lif_rates(block, x.data)
        with torch.no_grad():
            out = block.drop(pooled)
        del pooled
        grad_rates = self._grad_of_rates(rates, out, labels, shared)
        del rates
        signal = grad_rates.view(x.shape[1:]).div_(x.shape[0])  # G / T
        x.backward(norm_lif_signal_backward_(block, x.data, mean, invstd, signal))
        return out

    def _grad_of_rates(self, rates, out, labels, shared):
        """G = ∂L/∂rates of this process's samples for the layer's (detached)
        rates [B, ...] and emitted output `out`, [B, N]: the gaussian's closed
        form (`hsic_loss_grad_`, the fused `hsic_loss` backward, as in
        `hsic_post_signal`) written over the rates, else through the kernel;
        with global kernels, this rank's rows of it."""
        c = self.config
        with torch.no_grad():
            rates = rates.flatten(1)
            if self.batch.is_global:  # kernels over every rank's samples
                rates, labels = self.batch.gather(rates), self.batch.gather(labels)
            modulator = self.modulator(rates, labels, shared)
        if c.kernel == "gaussian" and not self.batch.is_global:
            if rates.untyped_storage().data_ptr() == out.untyped_storage().data_ptr():
                rates = rates.clone(memory_format=torch.contiguous_format)  # (out is a view of them)
            rates = rates.contiguous()
            with torch.no_grad():
                self.ops.hsic_loss_grad_(rates, modulator, sigma=c.sigma, sigma_scaling=c.sigma_scaling)
            return rates
        z = rates.detach().requires_grad_()
        (grad_rates,) = torch.autograd.grad((modulator * self.kernel(z)).sum(), z)
        return self.batch.local_rows(grad_rates)

    def _signal_through_norm(self, block, inputs) -> bool:
        """Whether a final-step update may take `_norm_signal_update`: a
        sequence (not a repeated step) into a block with 2-d batch norm, on
        the fused backend (the reference one stays the plain PyTorch baseline)."""
        return (
            self.neuron_state is None
            and block.neuron.backend == "fused"
            and isinstance(block.norm, torch.nn.BatchNorm2d)
            and not block.repeats_over_time(inputs)
        )

    def _fires_step_by_step(self, block, x) -> bool:
        """Whether a final-step update fires block's input x one step at a
        time (`SpikingBlock.fire_step_by_step`): the fused backend (the
        reference one stays the plain PyTorch baseline) on float32/64."""
        return (
            self.neuron_state is None
            and block.neuron.backend == "fused"
            and x.dtype in (torch.float32, torch.float64)
            and x.is_contiguous()
        )

    def update_layer(self, index, inputs, labels, context):
        block = self.model.blocks[index]
        fused = block.is_linear and block.norm is None and self.config.kernel == "gaussian" and not self.batch.is_global
        update = self._fused_linear_update if fused else self._signal_update
        return update(index, block, inputs, labels, context)  # the emitted (pooled, dropped) spikes
