"""Kernel matrices, HSIC and the fused three-factor HSIC update (docs/hsic.md).

Backed by `torch.ops.pysnn.*`. Half and bfloat16 inputs are computed in
float32 and give float32 results. Kernel matrices are taken to be symmetric
(as every kernel here is); gradients with respect to them are the gradients
on symmetric matrices.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from .. import _validation as v

Tensor = torch.Tensor


def _new(t: Tensor, shape) -> Tensor:
    return t.new_empty(shape, dtype=v.compute_dtype(t.dtype))


# ---- kernel_matrix ----


def kernel_matrix(
    z: Tensor,
    *,
    kind: str = "gaussian",
    sigma: float = 5.0,
    sigma_scaling: str = "none",
    c1: float = 1.0,
    c0: float = 0.0,
) -> Tensor:
    """The [m, m] kernel matrix of the rows of ``z`` ([m, ...], flattened per sample).

    Kinds: ``gaussian`` exp(−‖a_i−a_j‖²/(2σ²)), ``laplacian`` exp(−‖a_i−a_j‖/σ),
    ``cosine`` (0 for a zero row), ``sigmoid`` tanh(c1·a_iᵀa_j + c0), ``linear``.
    ``sigma_scaling="dim"`` uses σ²·d for gaussian and σ·√d for laplacian, d the
    feature count. Differentiable.
    """
    return torch.ops.pysnn.kernel_matrix(z, kind, float(sigma), sigma_scaling, float(c1), float(c0))


@torch.library.register_fake("pysnn::kernel_matrix")
def _kernel_matrix_fake(z, kind, sigma, sigma_scaling, c1, c0):
    v.check_kernel_matrix_args(z, kind, sigma, sigma_scaling, c1, c0)
    return _new(z, (z.shape[0], z.shape[0]))


@torch.library.register_fake("pysnn::kernel_matrix_backward")
def _kernel_matrix_backward_fake(grad, z, k, kind, sigma, sigma_scaling, c1, c0):
    return z.new_empty(z.shape)


def _kernel_matrix_setup(ctx, inputs, output):
    z, *ctx.options = inputs
    ctx.save_for_backward(z, output)


def _kernel_matrix_backward(ctx, grad):
    z, k = ctx.saved_tensors
    return (torch.ops.pysnn.kernel_matrix_backward(grad, z, k, *ctx.options),) + (None,) * 5


torch.library.register_autograd("pysnn::kernel_matrix", _kernel_matrix_backward, setup_context=_kernel_matrix_setup)


# ---- hsic ----


def hsic(k: Tensor, l: Tensor, *, estimator: str = "approx") -> Tensor:
    """HSIC of two symmetric [m, m] kernel matrices. Estimators: ``approx``
    (mean(K∘L) − mean(K)·mean(L)), ``biased`` (tr(KHLH)/m²), ``unbiased``
    (Song et al. 2012, m >= 4). Differentiable."""
    return torch.ops.pysnn.hsic(k, l, estimator)


@torch.library.register_fake("pysnn::hsic")
def _hsic_fake(k, l, estimator):
    v.check_hsic_args(k, l, estimator)
    return _new(k, ())


@torch.library.register_fake("pysnn::hsic_backward")
def _hsic_backward_fake(grad, k, l, estimator):
    return k.new_empty(k.shape), l.new_empty(l.shape)


def _hsic_setup(ctx, inputs, output):
    k, l, ctx.estimator = inputs
    ctx.save_for_backward(k, l)


def _hsic_backward(ctx, grad):
    k, l = ctx.saved_tensors
    grad_k, grad_l = torch.ops.pysnn.hsic_backward(grad, k, l, ctx.estimator)
    return grad_k, grad_l, None


torch.library.register_autograd("pysnn::hsic", _hsic_backward, setup_context=_hsic_setup)


# ---- hsic_modulator ----


def hsic_modulator(
    kx: Tensor,
    ky: Tensor,
    *,
    beta: float = 2.0,
    estimator: str = "approx",
    normalize: str = "none",
    kz: Optional[Tensor] = None,
) -> Tensor:
    """The third factor M of the three-factor rule: an [m, m] matrix whose
    product with Kz's gradient gives the layer's update.

    ``normalize="none"``: HSIC(X, Z) − β·HSIC(Z, Y) = Σ M ∘ Kz for any Kz;
    compute it once per batch and share it across layers.
    ``normalize="cka"``: M = ∂[nHSIC(X, Z) − β·nHSIC(Z, Y)]/∂Kz for the
    normalised (CKA) HSIC, which depends on the layer's own ``kz`` (from its
    detached rates): one per layer; zero for a silent layer. Needs the approx
    or biased estimator. ``normalize="cca"``: the same for Ma et al.'s
    nHSIC(A, B) = tr(R_A R_B), R = K̃(K̃ + εmI)⁻¹, K̃ = HKH, ε = 1e-5 (the
    estimator is not used). Not differentiable in any form.
    """
    if normalize == "none":
        if kz is not None:
            raise ValueError("hsic_modulator: kz is only used with normalize='cka'")
        return torch.ops.pysnn.hsic_modulator(kx, ky, float(beta), estimator)
    if normalize not in ("cka", "cca"):
        raise ValueError(f"hsic_modulator: normalize must be 'none', 'cka' or 'cca', got '{normalize}'")
    if kz is None:
        raise ValueError(f"hsic_modulator: normalize='{normalize}' needs the layer's kernel matrix kz")
    if normalize == "cka":
        return torch.ops.pysnn.hsic_modulator_cka(kx, ky, kz, float(beta), estimator)
    return torch.ops.pysnn.hsic_modulator_cca(kx, ky, kz, float(beta))


@torch.library.register_fake("pysnn::hsic_modulator")
def _hsic_modulator_fake(kx, ky, beta, estimator):
    v.check_modulator_args(kx, ky, beta, estimator)
    return _new(kx, kx.shape)


@torch.library.register_fake("pysnn::hsic_modulator_cka")
def _hsic_modulator_cka_fake(kx, ky, kz, beta, estimator):
    v.check_modulator_args(kx, ky, beta, estimator)
    v.check_modulator_args(kx, kz, beta, estimator)
    if estimator == "unbiased":
        raise ValueError("hsic_modulator(normalize='cka'): needs the approx or biased estimator")
    return _new(kx, kx.shape)


@torch.library.register_fake("pysnn::hsic_modulator_cca")
def _hsic_modulator_cca_fake(kx, ky, kz, beta):
    v.check_modulator_args(kx, ky, beta, "approx")
    v.check_modulator_args(kx, kz, beta, "approx")
    return _new(kx, kx.shape)


# ---- hsic_loss (autograd in C++: csrc/ops/autograd/hsic_autograd.cpp) ----


def hsic_loss(z: Tensor, modulator: Tensor, *, sigma: float = 5.0, sigma_scaling: str = "none") -> Tensor:
    """L = Σ M ∘ Kz for the gaussian kernel on ``z`` ([m, ...]).

    Its backward is the closed form ∂L/∂z = −(2/σ²)(diag(A·1) − A)z, A = M∘Kz
    (symmetrised), one GEMM; the modulator is a constant and gets no gradient.
    """
    if modulator.requires_grad and torch.is_grad_enabled():
        raise ValueError(
            "hsic_loss: modulator must not require grad (it is the constant third "
            "factor); build it under torch.no_grad() or pass modulator.detach()"
        )
    loss, _ = torch.ops.pysnn.hsic_loss(z, modulator, float(sigma), sigma_scaling)
    return loss


@torch.library.register_fake("pysnn::hsic_loss")
def _hsic_loss_fake(z, modulator, sigma, sigma_scaling):
    v.check_hsic_loss_args(z, modulator, sigma, sigma_scaling)
    return _new(z, ()), _new(z, (z.shape[0], z.shape[0]))


def hsic_loss_grad_(z: Tensor, modulator: Tensor, *, sigma: float = 5.0, sigma_scaling: str = "none") -> Tensor:
    """`hsic_loss`'s value, with ∂L/∂z written over z (in place, outside
    autograd): z (contiguous float32 or float64) holds the gradient after the
    call. For a caller that needs z no more, e.g. a layer's rates once its
    kernel is built: no z-sized gradient buffer is allocated."""
    return torch.ops.pysnn.hsic_loss_grad_(z, modulator, float(sigma), sigma_scaling)


@torch.library.register_fake("pysnn::hsic_loss_grad_")
def _hsic_loss_grad_fake(z, modulator, sigma, sigma_scaling):
    v.check_hsic_loss_grad_args(z, modulator, sigma, sigma_scaling)
    return _new(z, ())


@torch.library.register_fake("pysnn::hsic_loss_backward")
def _hsic_loss_backward_fake(grad, z, weighted, sigma, sigma_scaling):
    return z.new_empty(z.shape)


# ---- hsic_post_signal ----


def hsic_post_signal(
    post_grad: Tensor, rates: Tensor, modulator: Tensor, *, sigma: float = 5.0, sigma_scaling: str = "none"
) -> Tuple[Tensor, Tensor]:
    """The post-synaptic learning signal δ[t] = G ⊙ post_grad[t] / T and the loss.

    G = ∂L/∂rates by the closed form; ``post_grad`` [T, m, n] is the surrogate
    derivative σ'(u[t]) of the layer, ``rates`` [m, n] its mean spikes over T.
    Feed δ to a conv layer's weight gradient (``hsic_update`` does it for linear
    layers). Returns ``(delta [T, m, n], loss)``.
    """
    return torch.ops.pysnn.hsic_post_signal(post_grad, rates, modulator, float(sigma), sigma_scaling)


@torch.library.register_fake("pysnn::hsic_post_signal")
def _hsic_post_signal_fake(post_grad, rates, modulator, sigma, sigma_scaling):
    v.check_three_factor_args("hsic_post_signal", post_grad, rates, modulator, sigma, sigma_scaling)
    return _new(post_grad, post_grad.shape), _new(rates, ())


# ---- hsic_update ----


def hsic_update(
    pre: Tensor, post_grad: Tensor, rates: Tensor, modulator: Tensor, *, sigma: float = 5.0, sigma_scaling: str = "none"
) -> Tuple[Tensor, Tensor, Tensor]:
    """The fused three-factor HSIC update of a spiking linear layer.

    ``pre`` [T, m, n_in] presynaptic spikes (or input) per step, ``post_grad``
    [T, m, n_out] the surrogate derivative σ'(u[t]), ``rates`` [m, n_out], the
    ``modulator`` from `hsic_modulator`. Returns ``(grad_weight [n_out, n_in],
    grad_bias [n_out], loss)``: what W.grad and b.grad would be after
    ``hsic_loss(rates).backward()`` under the ``time_local`` surrogate.
    """
    return torch.ops.pysnn.hsic_update(pre, post_grad, rates, modulator, float(sigma), sigma_scaling)


@torch.library.register_fake("pysnn::hsic_update")
def _hsic_update_fake(pre, post_grad, rates, modulator, sigma, sigma_scaling):
    v.check_three_factor_args("hsic_update", post_grad, rates, modulator, sigma, sigma_scaling, pre=pre)
    n_out, n_in = post_grad.shape[2], pre.shape[2]
    return _new(pre, (n_out, n_in)), _new(pre, (n_out,)), _new(pre, ())


# ---- internal kernels (csrc/ops/<name>.cpp): fakes only, they are not differentiated ----


@torch.library.register_fake("pysnn::_kernel_from_gram")
def _kernel_from_gram_fake(gram, kind, a, b):
    return torch.empty_like(gram)


@torch.library.register_fake("pysnn::_gaussian_weighted")
def _gaussian_weighted_fake(gram, modulator, scale):
    return torch.empty_like(gram), gram.new_empty(gram.shape[0])


@torch.library.register_fake("pysnn::_row_moments")
def _row_moments_fake(k, l):
    return tuple(k.new_empty(k.shape[0]) for _ in range(3))


@torch.library.register_fake("pysnn::_centre")
def _centre_fake(d, row_sums, total, estimator):
    return torch.empty_like(d)


@torch.library.register_fake("pysnn::_spike_mm")
def _spike_mm_fake(a, spikes):
    return a.new_empty(a.shape[1], spikes.shape[1])
