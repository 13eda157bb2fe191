"""Pure-PyTorch kernel matrices and HSIC, written from the equations of
docs/hsic.md (thesis 4-12..4-25). Test oracle, benchmark baseline and the
`reference` backend; same signatures as `pysnn.ops`."""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from .. import _validation as v

Tensor = torch.Tensor


def _rows(z: Tensor) -> Tensor:
    return z.to(v.compute_dtype(z.dtype)).reshape(z.shape[0], -1)


def _squared_distances(a: Tensor) -> Tensor:
    norms = (a * a).sum(1)
    d2 = (norms[:, None] + norms[None, :] - 2 * a @ a.T).clamp_min(0)
    return d2 * (1 - torch.eye(len(a), dtype=a.dtype, device=a.device))  # exactly 0 on the diagonal


def kernel_matrix(
    z: Tensor,
    *,
    kind: str = "gaussian",
    sigma: float = 5.0,
    sigma_scaling: str = "none",
    c1: float = 1.0,
    c0: float = 0.0,
) -> Tensor:
    v.check_kernel_matrix_args(z, kind, sigma, sigma_scaling, c1, c0)
    a = _rows(z)
    d = a.shape[1] if sigma_scaling == "dim" else 1
    if kind == "gaussian":
        return torch.exp(-_squared_distances(a) / (2 * sigma**2 * d))
    if kind == "laplacian":
        d2 = _squared_distances(a)
        positive = d2 > 0
        dist = torch.where(positive, torch.where(positive, d2, 1.0).sqrt(), 0.0)  # no sqrt'(0)
        return torch.exp(-dist / (sigma * d**0.5))
    if kind == "cosine":
        unit = torch.nn.functional.normalize(a, dim=1)  # a zero row stays zero
        return unit @ unit.T
    if kind == "sigmoid":
        return torch.tanh(c1 * a @ a.T + c0)
    return a @ a.T


def _centring(m: int, like: Tensor) -> Tensor:
    return torch.eye(m, dtype=like.dtype, device=like.device) - 1.0 / m


def hsic(k: Tensor, l: Tensor, *, estimator: str = "approx") -> Tensor:
    v.check_hsic_args(k, l, estimator)
    k, l = k.to(v.compute_dtype(k.dtype)), l.to(v.compute_dtype(l.dtype))
    m = k.shape[0]
    if estimator == "approx":
        return (k * l).mean() - k.mean() * l.mean()
    if estimator == "biased":
        h = _centring(m, k)
        return torch.trace(k @ h @ l @ h) / m**2
    kt, lt = k - torch.diag(torch.diag(k)), l - torch.diag(torch.diag(l))
    one = torch.ones(m, 1, dtype=k.dtype, device=k.device)
    value = (
        torch.trace(kt @ lt)
        + (one.T @ kt @ one) * (one.T @ lt @ one) / ((m - 1) * (m - 2))
        - 2 / (m - 2) * (one.T @ kt @ lt @ one)
    )
    return value.squeeze() / (m * (m - 3))


def hsic_modulator(
    kx: Tensor,
    ky: Tensor,
    *,
    beta: float = 2.0,
    estimator: str = "approx",
    normalize: str = "none",
    kz: Optional[Tensor] = None,
) -> Tensor:
    """M with Σ M∘Kz = HSIC(Kx, Kz) − β HSIC(Kz, Ky), from the formulas of docs/hsic.md
    (approx, biased) or as the symmetric gradient of that linear map (unbiased);
    with normalize="cka", the gradient of the normalised bottleneck at `kz`."""
    if normalize in ("cka", "cca"):
        if kz is None:
            raise ValueError(f"hsic_modulator: normalize='{normalize}' needs the layer's kernel matrix kz")
        if normalize == "cka":
            return hsic_modulator_cka(kx, ky, kz, beta=beta, estimator=estimator)
        return hsic_modulator_cca(kx, ky, kz, beta=beta)
    if normalize != "none":
        raise ValueError(f"hsic_modulator: normalize must be 'none', 'cka' or 'cca', got '{normalize}'")
    v.check_modulator_args(kx, ky, beta, estimator)
    kx, ky = kx.to(v.compute_dtype(kx.dtype)), ky.to(v.compute_dtype(ky.dtype))
    m = kx.shape[0]
    if estimator == "approx":
        return ((kx - kx.mean()) - beta * (ky - ky.mean())) / m**2
    if estimator == "biased":
        h = _centring(m, kx)
        return (h @ kx @ h - beta * h @ ky @ h) / m**2
    with torch.enable_grad():
        base = torch.zeros_like(kx, requires_grad=True)
        kz = (base + base.T) / 2
        objective = hsic(kx, kz, estimator=estimator) - beta * hsic(kz, ky, estimator=estimator)
        (grad,) = torch.autograd.grad(objective, base)
    return grad.detach()


def normalised_hsic(k: Tensor, l: Tensor, estimator: str = "approx") -> Tensor:
    """nHSIC in CKA form: HSIC(K, L) / sqrt(HSIC(K, K)·HSIC(L, L)); 0 when
    either kernel is constant over the batch (its centred matrix is 0), as
    the fused op defines it."""
    kk, ll = hsic(k, k, estimator=estimator), hsic(l, l, estimator=estimator)
    # HSIC(K, K) = ‖C(K)‖²/m²: at the rounding level of K's entries, K is constant
    defined = (kk > (1e-12 * k.abs().max()) ** 2) & (ll > (1e-12 * l.abs().max()) ** 2)
    return torch.where(defined, hsic(k, l, estimator=estimator) / torch.where(defined, kk * ll, 1.0).sqrt(), 0.0)


def hsic_modulator_cka(
    kx: Tensor, ky: Tensor, kz: Tensor, *, beta: float = 2.0, estimator: str = "approx", silent: float = 1e-8
) -> Tensor:
    """∂[nHSIC(X, Z) − β·nHSIC(Z, Y)]/∂Kz on symmetric Kz, by autograd through
    `normalised_hsic`; zero when C(Kz) vanishes (a silent layer)."""
    kx, ky, kz = (k.to(v.compute_dtype(k.dtype)) for k in (kx, ky, kz))
    m = kz.shape[0]
    if (hsic(kz, kz, estimator=estimator) * m**2).sqrt() < silent:
        return torch.zeros_like(kz)
    with torch.enable_grad():
        base = kz.detach().clone().requires_grad_()
        sym = (base + base.T) / 2
        objective = normalised_hsic(kx, sym, estimator) - beta * normalised_hsic(sym, ky, estimator)
        (grad,) = torch.autograd.grad(objective, base)
    return grad.detach()


def normalised_hsic_cca(k: Tensor, l: Tensor, epsilon: float = 1e-5) -> Tensor:
    """Ma et al.'s normalised HSIC: tr(R_K R_L), R = K̃(K̃ + εmI)⁻¹, K̃ = HKH."""
    m = k.shape[0]
    h = _centring(m, k)

    def r(a):
        centred = h @ a @ h
        return centred @ torch.linalg.inv(centred + epsilon * m * torch.eye(m, dtype=a.dtype, device=a.device))

    return torch.trace(r(k) @ r(l))


def hsic_modulator_cca(kx: Tensor, ky: Tensor, kz: Tensor, *, beta: float = 2.0) -> Tensor:
    """∂[nHSIC(X, Z) − β·nHSIC(Z, Y)]/∂Kz on symmetric Kz for the CCA form, by autograd."""
    kx, ky, kz = (k.to(v.compute_dtype(k.dtype)) for k in (kx, ky, kz))
    with torch.enable_grad():
        base = kz.detach().clone().requires_grad_()
        sym = (base + base.T) / 2
        objective = normalised_hsic_cca(kx, sym) - beta * normalised_hsic_cca(sym, ky)
        (grad,) = torch.autograd.grad(objective, base)
    return grad.detach()


def hsic_loss(z: Tensor, modulator: Tensor, *, sigma: float = 5.0, sigma_scaling: str = "none") -> Tensor:
    v.check_hsic_loss_args(z, modulator, sigma, sigma_scaling)
    kz = kernel_matrix(z, kind="gaussian", sigma=sigma, sigma_scaling=sigma_scaling)
    return (modulator.to(kz.dtype) * kz).sum()


def hsic_loss_grad_(z: Tensor, modulator: Tensor, *, sigma: float = 5.0, sigma_scaling: str = "none") -> Tensor:
    """Reference for `pysnn.ops.hsic_loss_grad_`: autograd's ∂L/∂z, copied over z."""
    v.check_hsic_loss_grad_args(z, modulator, sigma, sigma_scaling)
    with torch.enable_grad():
        leaf = z.detach().clone().requires_grad_()
        loss = hsic_loss(leaf, modulator, sigma=sigma, sigma_scaling=sigma_scaling)
        (grad,) = torch.autograd.grad(loss, leaf)
    with torch.no_grad():
        z.copy_(grad)
    return loss.detach()


def hsic_post_signal(
    post_grad: Tensor, rates: Tensor, modulator: Tensor, *, sigma: float = 5.0, sigma_scaling: str = "none"
) -> Tuple[Tensor, Tensor]:
    v.check_three_factor_args("hsic_post_signal", post_grad, rates, modulator, sigma, sigma_scaling)
    with torch.enable_grad():
        z = rates.detach().to(v.compute_dtype(rates.dtype)).requires_grad_()
        loss = hsic_loss(z, modulator.detach(), sigma=sigma, sigma_scaling=sigma_scaling)
        (grad_rates,) = torch.autograd.grad(loss, z)
    delta = post_grad.to(grad_rates.dtype) * grad_rates / post_grad.shape[0]
    return delta, loss.detach()


def hsic_update(
    pre: Tensor, post_grad: Tensor, rates: Tensor, modulator: Tensor, *, sigma: float = 5.0, sigma_scaling: str = "none"
) -> Tuple[Tensor, Tensor, Tensor]:
    v.check_three_factor_args("hsic_update", post_grad, rates, modulator, sigma, sigma_scaling, pre=pre)
    delta, loss = hsic_post_signal(post_grad, rates, modulator, sigma=sigma, sigma_scaling=sigma_scaling)
    grad_weight = torch.einsum("tmo,tmi->oi", delta, pre.to(delta.dtype))
    return grad_weight, delta.sum((0, 1)), loss
