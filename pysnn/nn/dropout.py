"""Dropout with a random stream of its own per layer."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class SeededDropout(nn.Module):
    """Dropout whose masks come from the layer's own generator. A layer then
    draws the same masks whichever process runs it, so layer-parallel training
    stays bit-identical to one process, and the generator's state travels in
    the model's `state_dict`, so a resumed run continues the same stream.

    Kept units are scaled by `scale = 1 / (1 − p)`: binary spikes come out as
    exactly 0 or float(scale), which is how they are sent between stages."""

    def __init__(self, p: float, seed: int) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p, self.seed = p, seed
        self._generator: Optional[torch.Generator] = None
        self._pending_state: Optional[torch.Tensor] = None

    @property
    def scale(self) -> float:
        return 1.0 / (1.0 - self.p)

    def reseed(self, seed: int) -> None:
        self.seed, self._generator, self._pending_state = seed, None, None

    def generator(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
            if self._pending_state is not None:
                self._generator.set_state(self._pending_state)
                self._pending_state = None
        return self._generator

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return h
        keep = torch.rand(h.shape, generator=self.generator(h.device), device=h.device) >= self.p
        return h * (keep.to(h.dtype) * self.scale)

    def get_extra_state(self) -> dict:
        state = self._generator.get_state() if self._generator is not None else self._pending_state
        return {"seed": self.seed, "generator": state}

    def set_extra_state(self, state: dict) -> None:
        self.reseed(int(state["seed"]))
        self._pending_state = state["generator"]

    def extra_repr(self) -> str:
        return f"p={self.p}, seed={self.seed}"
