"""Argument checks shared by the fake kernels and the pure-PyTorch references.

They raise the same error types and messages as the C++ checks in
csrc/ops/*.cpp (ValueError, TypeError, RuntimeError), so a bad argument reads
the same in eager mode, under torch.compile and with the reference backend.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

SURROGATES = ("sigmoid", "atan", "exponential", "rectangular")
GRAD_MODES = ("bptt", "detach_reset", "time_local")


def _choice(op: str, name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        options = ", ".join(f"'{a}'" for a in allowed)
        raise ValueError(f"{op}: {name} must be one of {options}, got '{value}'")


def check_lif_options(decay: float, threshold: float, surrogate: str, alpha: float, grad_mode: str) -> None:
    if not (math.isfinite(decay) and 0.0 <= decay <= 1.0):
        raise ValueError(f"lif: decay must be in [0, 1], got {decay}")
    if not (math.isfinite(threshold) and threshold > 0.0):
        raise ValueError(f"lif: threshold must be finite and > 0, got {threshold}")
    if not (math.isfinite(alpha) and alpha > 0.0):
        raise ValueError(f"lif: alpha must be finite and > 0, got {alpha}")
    _choice("lif", "surrogate", surrogate, SURROGATES)
    _choice("lif", "grad_mode", grad_mode, GRAD_MODES)


def check_time_first(op: str, name: str, t: torch.Tensor) -> None:
    if not t.is_floating_point():
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got {t.dtype}")
    if t.dim() < 2:
        raise ValueError(f"{op}: {name} must be time-first [T, ...] with at least 2 dims, got shape {list(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{op}: {name} has T = 0 time steps")


def check_like(op: str, name: str, t: torch.Tensor, ref: torch.Tensor, shape, ref_name: str) -> None:
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {list(shape)}, got {list(t.shape)}")
    if t.dtype != ref.dtype:
        raise TypeError(f"{op}: {name} must have the dtype of {ref_name} ({ref.dtype}), got {t.dtype}")
    if t.device != ref.device:
        raise RuntimeError(f"{op}: {name} must be on the device of {ref_name} ({ref.device}), got {t.device}")


def check_lif_args(
    x: torch.Tensor,
    decay: float,
    threshold: float,
    surrogate: str,
    alpha: float,
    grad_mode: str,
    u0: Optional[torch.Tensor],
) -> None:
    check_time_first("lif", "x", x)
    if u0 is not None:
        check_like("lif", "u0", u0, x, x.shape[1:], "x")
    check_lif_options(decay, threshold, surrogate, alpha, grad_mode)


def check_steps(steps) -> None:
    if isinstance(steps, bool) or not isinstance(steps, (int, torch.SymInt)) or steps < 1:
        raise ValueError(f"lif: steps must be an int >= 1, got {steps!r}")


def check_repeated_lif_args(x, steps, decay, threshold, surrogate, alpha, grad_mode, u0) -> None:
    """`lif(..., steps=...)`: x is one step's input [...] (at least 1 dim)."""
    if not x.is_floating_point():
        raise TypeError(f"lif: x must be a floating-point tensor, got {x.dtype}")
    if x.dim() < 1:
        raise ValueError("lif: x of a repeated input must have at least 1 dim, got a scalar")
    check_steps(steps)
    if u0 is not None:
        check_like("lif", "u0", u0, x, x.shape, "x")
    check_lif_options(decay, threshold, surrogate, alpha, grad_mode)


def check_lif_pool_args(x, steps, decay, threshold, surrogate, alpha, grad_mode, u0) -> None:
    """`lif_pool_forward`: x is [S, ..., H, W] with S = steps or 1 (one
    repeated step), H and W even (messages as in csrc/ops/lif_pool.cpp)."""
    if not x.is_floating_point():
        raise TypeError(f"lif_max_pool2d: x must be a floating-point tensor, got {x.dtype}")
    if x.dim() < 3:
        raise ValueError(f"lif_max_pool2d: x must be [S, ..., H, W] with at least 3 dims, got shape {list(x.shape)}")
    if isinstance(steps, bool) or not isinstance(steps, (int, torch.SymInt)) or steps < 1:
        raise ValueError(f"lif_max_pool2d: steps must be >= 1, got {steps!r}")
    if x.shape[0] not in (1, steps):
        raise ValueError(f"lif_max_pool2d: x must hold 1 step (repeated) or steps = {steps} steps, got {x.shape[0]}")
    if x.shape[-1] % 2 or x.shape[-2] % 2:
        raise ValueError(f"lif_max_pool2d: H and W must be even for a 2x2 pool, got shape {list(x.shape)}")
    if u0 is not None:
        check_like("lif", "u0", u0, x, x.shape[1:], "x[0]")
    check_lif_options(decay, threshold, surrogate, alpha, grad_mode)


def pooled_shape(steps: int, x_shape) -> tuple:
    """The shape of lif_max_pool2d's output for x [S, ..., H, W]."""
    return (steps, *x_shape[1:-2], x_shape[-2] // 2, x_shape[-1] // 2)


# ---- HSIC family (messages as in csrc/ops/hsic.cpp) ----

KERNELS = ("gaussian", "laplacian", "cosine", "sigmoid", "linear")
ESTIMATORS = ("approx", "biased", "unbiased")
SIGMA_SCALINGS = ("none", "dim")


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half/bfloat16 (the ops accumulate in float32), else dtype."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _floating(op: str, t: torch.Tensor, name: str) -> None:
    if not t.is_floating_point():
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got {t.dtype}")


def _same(op: str, t: torch.Tensor, name: str, ref: torch.Tensor, ref_name: str) -> None:
    _floating(op, t, name)
    if t.device != ref.device:
        raise RuntimeError(f"{op}: {name} is on {t.device} but {ref_name} is on {ref.device}")
    if t.dtype != ref.dtype:
        raise TypeError(f"{op}: {name} has dtype {t.dtype} but {ref_name} has {ref.dtype}")


def _square(op: str, k: torch.Tensor, name: str) -> int:
    _floating(op, k, name)
    if k.dim() != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"{op}: {name} must be a square [m, m] matrix, got shape {list(k.shape)}")
    if k.shape[0] < 2:
        raise ValueError(f"{op}: HSIC needs at least 2 samples, got m = {k.shape[0]}")
    return k.shape[0]


def check_sigma(op: str, sigma: float, sigma_scaling: str) -> None:
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"{op}: sigma must be finite and > 0, got {sigma}")
    if sigma_scaling not in SIGMA_SCALINGS:
        raise ValueError(f"{op}: sigma_scaling must be 'none' or 'dim', got '{sigma_scaling}'")


def check_estimator(estimator: str, m: int) -> None:
    _choice("hsic", "estimator", estimator, ESTIMATORS)
    if estimator == "unbiased" and m < 4:
        raise ValueError(f"hsic: the unbiased estimator needs at least 4 samples, got m = {m}")


def check_kernel_matrix_args(z, kind, sigma, sigma_scaling, c1, c0) -> None:
    _floating("kernel_matrix", z, "z")
    if z.dim() < 1 or z.shape[0] < 2:
        raise ValueError(f"kernel_matrix: z must be [m, ...] with m >= 2 samples, got shape {list(z.shape)}")
    _choice("kernel_matrix", "kind", kind, KERNELS)
    check_sigma("kernel_matrix", sigma, sigma_scaling)
    for name, value in (("c1", c1), ("c0", c0)):
        if not math.isfinite(value):
            raise ValueError(f"kernel_matrix: {name} must be finite, got {value}")


def check_hsic_args(k, l, estimator) -> None:
    m = _square("hsic", k, "k")
    _same("hsic", l, "l", k, "k")
    if l.shape != k.shape:
        raise ValueError(f"hsic: k and l must have the same shape, got {list(k.shape)} and {list(l.shape)}")
    check_estimator(estimator, m)


def check_modulator_args(kx, ky, beta, estimator) -> None:
    m = _square("hsic_modulator", kx, "kx")
    _same("hsic_modulator", ky, "ky", kx, "kx")
    if ky.shape != kx.shape:
        raise ValueError(
            "hsic_modulator: kx and ky must both be [m, m] with the same batch size, "
            f"got {list(kx.shape)} and {list(ky.shape)}"
        )
    if not math.isfinite(beta):
        raise ValueError(f"hsic_modulator: beta must be finite, got {beta}")
    check_estimator(estimator, m)


def _modulator_for(op: str, modulator, z, z_name: str) -> None:
    _floating(op, modulator, "modulator")
    if modulator.device != z.device:
        raise RuntimeError(f"{op}: modulator is on {modulator.device} but {z_name} is on {z.device}")
    if modulator.dim() != 2 or modulator.shape[0] != modulator.shape[1]:
        raise ValueError(f"{op}: modulator must be a square [m, m] matrix, got shape {list(modulator.shape)}")
    if modulator.shape[0] != z.shape[0]:
        raise ValueError(
            f"{op}: modulator is for batch size {modulator.shape[0]} but {z_name} has batch size {z.shape[0]}"
        )


def backward_once(ctx, op: str) -> None:
    """For an autograd.Function whose backward writes dL/dx over its saved
    input: raises on a second backward of the same graph (retain_graph)
    instead of reading the overwritten input."""
    if getattr(ctx, "spent", False):
        raise RuntimeError(
            f"{op}: the first backward wrote dL/dx over x, so this graph cannot be run backward again (retain_graph)"
        )
    ctx.spent = True


def is_intermediate(x: torch.Tensor) -> bool:
    """Whether x, and the tensor it views if it is a view, came out of an op
    autograd records (not a leaf such as a parameter or a caller's input):
    what an op may overwrite when its caller gives x up."""
    root = x._base if x._base is not None else x
    return x.grad_fn is not None and root.grad_fn is not None


def check_hsic_loss_args(z, modulator, sigma, sigma_scaling, op: str = "hsic_loss") -> None:
    _floating(op, z, "z")
    if z.dim() < 1 or z.shape[0] < 2:
        raise ValueError(f"{op}: HSIC needs at least 2 samples; z has shape {list(z.shape)}")
    _modulator_for(op, modulator, z, "z")
    check_sigma(op, sigma, sigma_scaling)


def check_hsic_loss_grad_args(z, modulator, sigma, sigma_scaling) -> None:
    """hsic_loss_grad_ writes into z: a contiguous float32/float64 tensor."""
    check_hsic_loss_args(z, modulator, sigma, sigma_scaling, op="hsic_loss_grad_")
    if z.dtype not in (torch.float32, torch.float64) or not z.is_contiguous():
        raise ValueError(
            f"hsic_loss_grad_: z must be a contiguous float32 or float64 tensor (it takes the gradient), got {z.dtype}"
            + ("" if z.is_contiguous() else ", not contiguous")
        )


def check_three_factor_args(op, post_grad, rates, modulator, sigma, sigma_scaling, pre=None) -> None:
    _floating(op, post_grad, "post_grad")
    _same(op, rates, "rates", post_grad, "post_grad")
    if post_grad.dim() != 3:
        raise ValueError(f"{op}: post_grad must be [T, m, n_out], got shape {list(post_grad.shape)}")
    if post_grad.shape[0] < 1:
        raise ValueError(f"{op}: post_grad has T = 0 time steps")
    if rates.dim() != 2:
        raise ValueError(f"{op}: rates must be [m, n_out], got shape {list(rates.shape)}")
    if rates.shape[0] < 2:
        raise ValueError(f"{op}: HSIC needs at least 2 samples, got m = {rates.shape[0]}")
    if post_grad.shape[1] != rates.shape[0]:
        raise ValueError(
            f"{op}: post_grad must have batch size {rates.shape[0]} in dim 1, got shape {list(post_grad.shape)}"
        )
    if post_grad.shape[2] != rates.shape[1]:
        raise ValueError(f"{op}: post_grad has {post_grad.shape[2]} neurons but rates has {rates.shape[1]}")
    _modulator_for(op, modulator, rates, "rates")
    if pre is not None:
        _same(op, pre, "pre", post_grad, "post_grad")
        if pre.dim() != 3:
            raise ValueError(f"{op}: pre must be [T, m, n_in], got shape {list(pre.shape)}")
        if pre.shape[0] != post_grad.shape[0]:
            raise ValueError(f"{op}: pre has T = {pre.shape[0]} time steps but post_grad has T = {post_grad.shape[0]}")
        if pre.shape[1] != rates.shape[0]:
            raise ValueError(f"{op}: pre must have batch size {rates.shape[0]} in dim 1, got shape {list(pre.shape)}")
    check_sigma(op, sigma, sigma_scaling)
