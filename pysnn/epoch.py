"""Where an epoch stands and when to checkpoint inside it: what a mid-epoch
checkpoint saves so that a resumed run continues the epoch exactly (the
shuffled order, the batches done, the running sums of the epoch's metrics)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Optional

import torch


@dataclass
class EpochState:
    epoch: int
    order_rng: torch.Tensor  # the data generator's state before the epoch's shuffle
    batch: int = 0  # global batches done
    loss_sum: float = 0.0
    correct: float = 0.0
    seen: float = 0.0
    seconds: float = 0.0  # training time spent before the last resume
    started: float = field(default_factory=time.perf_counter, repr=False)

    def add(self, loss: float, correct: float, seen: float) -> None:
        self.loss_sum += loss * seen
        self.correct += correct
        self.seen += seen

    @property
    def stats(self) -> list:
        return [self.loss_sum, self.correct, self.seen]

    def elapsed(self) -> float:
        return self.seconds + time.perf_counter() - self.started

    def to_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "order_rng": self.order_rng,
            "batch": self.batch,
            "loss_sum": self.loss_sum,
            "correct": self.correct,
            "seen": self.seen,
            "seconds": self.elapsed(),
        }

    @classmethod
    def from_dict(cls, saved: dict) -> "EpochState":
        return cls(**saved)


class DivergedError(ValueError):
    """A loss or weight became NaN or infinite; the message names where."""


def first_nonfinite(model: torch.nn.Module) -> Optional[str]:
    """The name of the first floating-point parameter or buffer holding NaN or Inf."""
    for name, tensor in model.state_dict().items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return name
    return None


def check_finite(loss: float, model: torch.nn.Module, state: EpochState, out) -> None:
    """Stops a diverged run with one line naming the step and the first
    non-finite layer; the last checkpoint (written before) stays as it was."""
    if math.isfinite(loss):
        return
    where = first_nonfinite(model)
    layer = f"; {where} is non-finite" if where else "; every weight is still finite"
    raise DivergedError(
        f"training diverged at epoch {state.epoch}, step {state.batch}: the loss is {loss}{layer}. "
        f"The last checkpoint, if any, in {out} is kept; try a smaller --lr"
    )


class CheckpointSchedule:
    """Mid-epoch checkpoints every `every` batches of an epoch and/or every
    `minutes` of wall clock (0 or None: never)."""

    def __init__(self, every: Optional[int], minutes: float) -> None:
        self.every, self.seconds = every, minutes * 60.0
        self.last = time.monotonic()

    @property
    def timed(self) -> bool:
        return self.seconds > 0

    def due(self, batch: int) -> bool:
        if self.every and batch % self.every == 0:
            return True
        return self.timed and time.monotonic() - self.last >= self.seconds

    def saved(self) -> None:
        self.last = time.monotonic()
