"""Checkpoints of a training run: everything needed to continue it exactly
(model, every optimiser and schedule, auxiliary heads, RNG states, epoch,
metrics), written atomically so a kill at any moment leaves the previous one."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Optional

import torch

from . import __version__
from .epoch import DivergedError, first_nonfinite

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
    bad = first_nonfinite(model)
    if bad is not None:  # never replace a good checkpoint with a diverged one
        position = (extra or {}).get("position")
        when = f"epoch {epoch}" if position is None else f"epoch {position['epoch']}, step {position['batch']}"
        kept = "the last good checkpoint in it is kept" if (Path(run_dir) / FILENAME).is_file() else "no checkpoint"
        raise DivergedError(f"training diverged by {when}: {bad} is non-finite. {run_dir}: {kept}; try a smaller --lr")
    payload = {
        "format": FORMAT,
        "version": __version__,
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
    # Serialised in memory first: writing into the file, torch.save's writer
    # reports a full disk as "unexpected pos ..." in some runs; a plain write
    # always fails with the operating system's own reason (ENOSPC).
    serialised = io.BytesIO()
    torch.save(payload, serialised)
    path = Path(run_dir) / FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{FILENAME}.")
    except OSError as error:
        raise OSError(f"cannot write a checkpoint in {run_dir} ({error.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(serialised.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:  # a full disk
        os.unlink(tmp)
        kept = "the previous checkpoint is kept" if path.is_file() else "no checkpoint was written"
        raise OSError(f"cannot write a checkpoint in {run_dir} ({error.strerror}); {kept}") from None
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


def one_line(error: BaseException) -> str:
    """torch's multi-line load_state_dict errors as one line."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())


def check_version(payload: dict, run_dir: Path) -> None:
    """Training continues only with the pysnn that wrote the checkpoint: an
    exact continuation needs the same kernels and defaults."""
    written = payload.get("version", "before 0.1.0")
    if written != __version__:
        raise CheckpointError(
            f"{Path(run_dir) / FILENAME} was written by pysnn {written}, this is pysnn {__version__}: "
            "resume it with that version (pysnn eval and export still read it)"
        )


def restore(payload: dict, *, model, trainer, generator: torch.Generator) -> None:
    try:
        model.load_state_dict(payload["model"])
        trainer.load_state_dict(payload["trainer"])
    except (RuntimeError, ValueError, KeyError) as error:
        raise CheckpointError(f"checkpoint does not fit this model or trainer: {one_line(error)}") from None
    torch.set_rng_state(payload["rng"]["torch"])
    generator.set_state(payload["rng"]["data"])
