"""Checkpoints of a training run: everything needed to continue it exactly
(model, every optimiser and schedule, auxiliary heads, RNG states, epoch,
metrics), written atomically so a kill at any moment leaves the previous one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

import torch

FORMAT = "pysnn-checkpoint-1"
FILENAME = "checkpoint.pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupt or from another setup."""


def save(
    run_dir: Path,
    *,
    model,
    trainer,
    epoch: int,
    metrics: dict,
    generator: torch.Generator,
    extra: Optional[dict] = None,
) -> Path:
    """`extra`: what a distributed run adds (its world size and layout, each
    rank's random streams); any layout resumes from any other's checkpoint."""
    payload = {
        "format": FORMAT,
        "epoch": epoch,
        "config": metrics["config"],
        "metrics": metrics,
        "model": model.state_dict(),
        "trainer": trainer.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "data": generator.get_state()},
        "world_size": 1,
        "parallel": "none",
        **(extra or {}),
    }
    path = Path(run_dir) / FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{FILENAME}.")
    with os.fdopen(fd, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load(run_dir: Path) -> dict:
    path = Path(run_dir) / FILENAME
    if not path.is_file():
        raise CheckpointError(f"no checkpoint in {run_dir} (expected {path})")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # truncated or not a torch file at all
        raise CheckpointError(f"{path} is corrupt or unreadable ({type(error).__name__}: {error})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint")
    return payload


def restore(payload: dict, *, model, trainer, generator: torch.Generator) -> None:
    try:
        model.load_state_dict(payload["model"])
        trainer.load_state_dict(payload["trainer"])
    except (RuntimeError, ValueError, KeyError) as error:
        raise CheckpointError(f"checkpoint does not fit this model or trainer: {error}") from None
    torch.set_rng_state(payload["rng"]["torch"])
    generator.set_state(payload["rng"]["data"])
