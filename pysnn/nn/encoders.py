"""Input encoders: an image batch [B, ...] to a time-first spike input [T, B, ...]."""
from __future__ import annotations

import torch


def direct(images: torch.Tensor, timesteps: int) -> torch.Tensor:
    """The thesis' coding: the same image at every step (a stride-0 view, no copy)."""
    return images.unsqueeze(0).expand(timesteps, *images.shape)


def poisson(images: torch.Tensor, timesteps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rate coding: a spike with probability equal to the pixel value, at every step."""
    probs = images.clamp(0, 1).unsqueeze(0).expand(timesteps, *images.shape)
    return torch.bernoulli(probs, generator=generator)


ENCODERS = {"direct": direct, "poisson": poisson}
