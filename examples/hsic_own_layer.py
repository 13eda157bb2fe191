"""Train your own spiking linear layer with the fused three-factor HSIC rule.

No autograd graph and no backprop: per batch, one modulator from the input
and label kernels, then `hsic_update` gives the layer's weight gradient.
    python examples/hsic_own_layer.py
"""

import torch

import pysnn

torch.manual_seed(0)
T, classes, n_in, n_out, lr = 8, 4, 32, 128, 100.0
centres = torch.rand(classes, n_in)
weight = torch.randn(n_out, n_in) * 0.3
bias = torch.zeros(n_out)
decay, threshold = 0.75, 0.6


def batch(m=64):
    labels = torch.randint(0, classes, (m,))
    return (centres[labels] + 0.15 * torch.randn(m, n_in)).clamp(0, 1), labels


for step in range(201):
    x, labels = batch()
    pre = x.expand(T, *x.shape)  # direct coding: the same input at every step
    spikes, membrane = pysnn.ops.lif(pre @ weight.T + bias, decay, threshold, return_membrane=True)
    rates = spikes.mean(0)
    post_grad = pysnn.ops.surrogate_grad(membrane - threshold, "sigmoid", 4.0)  # σ'(u[t])

    kx = pysnn.ops.kernel_matrix(x, sigma_scaling="dim")
    ky = pysnn.ops.kernel_matrix(torch.nn.functional.one_hot(labels, classes) - 1 / classes, kind="cosine")
    modulator = pysnn.ops.hsic_modulator(kx, ky, beta=2.0)  # once per batch, shared by all layers
    grad_w, grad_b, loss = pysnn.ops.hsic_update(pre, post_grad, rates, modulator, sigma_scaling="dim")
    weight -= lr * grad_w
    bias -= lr * grad_b
    if step % 50 == 0:
        kz = pysnn.ops.kernel_matrix(rates, sigma_scaling="dim")
        print(f"step {step:3d}  loss {loss.item():+.5f}  HSIC(Z, Y) {pysnn.ops.hsic(kz, ky).item():.5f}")
