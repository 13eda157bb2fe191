"""`pysnn.nn.LIF`: the multi-step LIF neuron as a module with explicit state."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn

from .._validation import check_lif_options
from ..backends import get_backend


class LIF(nn.Module):
    """Multi-step LIF with soft reset over time-first input ``[T, B, ...]``.

    The module keeps no state between calls: ``forward(x, state)`` takes the
    post-reset membrane to start from (zeros when None) and returns
    ``(spikes, final_state)``, so one batch never leaks into the next.
    """

    def __init__(
        self,
        decay: float = math.exp(-1.0),
        threshold: float = 1.0,
        *,
        surrogate: str = "sigmoid",
        alpha: float = 4.0,
        grad_mode: str = "bptt",
        backend: str = "fused",
    ) -> None:
        super().__init__()
        check_lif_options(decay, threshold, surrogate, alpha, grad_mode)
        self.decay, self.threshold = float(decay), float(threshold)
        self.surrogate, self.alpha, self.grad_mode = surrogate, float(alpha), grad_mode
        self.backend = backend
        self._lif = get_backend(backend).lif

    def forward(self, x: torch.Tensor, state: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        return self._lif(
            x,
            self.decay,
            self.threshold,
            surrogate=self.surrogate,
            alpha=self.alpha,
            grad_mode=self.grad_mode,
            u0=state,
            return_state=True,
        )

    def extra_repr(self) -> str:
        return (
            f"decay={self.decay:.4g}, threshold={self.threshold:.4g}, "
            f"surrogate={self.surrogate}, alpha={self.alpha:g}, grad_mode={self.grad_mode}, "
            f"backend={self.backend}"
        )
