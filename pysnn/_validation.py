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


def check_lif_options(decay: float, threshold: float, surrogate: str, alpha: float,
                      grad_mode: str) -> None:
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
        raise ValueError(
            f"{op}: {name} must be time-first [T, ...] with at least 2 dims, got shape {list(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{op}: {name} has T = 0 time steps")


def check_like(op: str, name: str, t: torch.Tensor, ref: torch.Tensor, shape, ref_name: str) -> None:
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {list(shape)}, got {list(t.shape)}")
    if t.dtype != ref.dtype:
        raise TypeError(f"{op}: {name} must have the dtype of {ref_name} ({ref.dtype}), got {t.dtype}")
    if t.device != ref.device:
        raise RuntimeError(
            f"{op}: {name} must be on the device of {ref_name} ({ref.device}), got {t.device}")


def check_lif_args(x: torch.Tensor, decay: float, threshold: float, surrogate: str, alpha: float,
                   grad_mode: str, u0: Optional[torch.Tensor]) -> None:
    check_time_first("lif", "x", x)
    if u0 is not None:
        check_like("lif", "u0", u0, x, x.shape[1:], "x")
    check_lif_options(decay, threshold, surrogate, alpha, grad_mode)
