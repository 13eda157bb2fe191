"""Input encoders: an image batch [B, ...] (or event frames [B, T, ...]) to a time-first input [T, B, ...]."""

from __future__ import annotations

import torch


def direct(images: torch.Tensor, timesteps: int) -> torch.Tensor:
    """The thesis' coding: the same image at every step (a stride-0 view, no copy)."""
    return images.unsqueeze(0).expand(timesteps, *images.shape)


def poisson(images: torch.Tensor, timesteps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rate coding: a spike with probability equal to the pixel value, at every step."""
    probs = images.clamp(0, 1).unsqueeze(0).expand(timesteps, *images.shape)
    return torch.bernoulli(probs, generator=generator)


def events(frames: torch.Tensor, timesteps: int) -> torch.Tensor:
    """Event data, already spikes: frames [B, T, ...] (one bin per step) to [T, B, ...]."""
    if frames.dim() < 3 or frames.shape[1] != timesteps:
        raise ValueError(
            f"events encoder: expected frames [B, {timesteps}, ...] (one per time step), got shape {list(frames.shape)}"
        )
    return frames.transpose(0, 1).float()


ENCODERS = {"direct": direct, "poisson": poisson, "events": events}
