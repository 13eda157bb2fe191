"""What every trainer shares: its optimisers and schedules, the output
layer's own cross-entropy for the local rules, and state for checkpoints."""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from ..config import TrainConfig
from ..models import SpikingNetwork
from .optim import make_optimizer, make_scheduler


class Trainer:
    """Updates a SpikingNetwork from one batch at a time (`step`)."""

    grad_mode = "time_local"

    def __init__(self, model: SpikingNetwork, config: TrainConfig, classes: int) -> None:
        self.model, self.config, self.classes = model, config, classes
        model.set_grad_mode(self.grad_mode)
        self.aux = nn.ModuleList()  # trainable modules outside the model (auxiliary heads)
        self.optimizers: List[torch.optim.Optimizer] = []
        self.schedulers: list = []

    def add_optimizer(self, params) -> torch.optim.Optimizer:
        optimizer = make_optimizer(params, self.config)
        self.optimizers.append(optimizer)
        self.schedulers.append(make_scheduler(optimizer, self.config))
        return optimizer

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> Tuple[float, torch.Tensor]:
        """One update; returns the output layer's loss and the batch's logits."""
        raise NotImplementedError

    def end_epoch(self) -> None:
        for scheduler in self.schedulers:
            scheduler.step()

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)
        self.aux.train(mode)

    def state_dict(self) -> dict:
        return {"aux": self.aux.state_dict(),
                "optimizers": [o.state_dict() for o in self.optimizers],
                "schedulers": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state: dict) -> None:
        self.aux.load_state_dict(state["aux"])
        if len(state["optimizers"]) != len(self.optimizers):
            raise ValueError("checkpoint has a different number of optimisers than this trainer")
        for optimizer, s in zip(self.optimizers, state["optimizers"]):
            optimizer.load_state_dict(s)
        for scheduler, s in zip(self.schedulers, state["schedulers"]):
            scheduler.load_state_dict(s)


class LocalTrainer(Trainer):
    """A trainer whose output layer learns by its own cross-entropy on the
    detached spikes of the last hidden layer."""

    def __init__(self, model: SpikingNetwork, config: TrainConfig, classes: int) -> None:
        super().__init__(model, config, classes)
        self._head_optimizer = self.add_optimizer(self.model.head.parameters())

    def train_head(self, h: torch.Tensor, labels: torch.Tensor) -> Tuple[float, torch.Tensor]:
        logits = self.model.readout(h.detach())
        loss = F.cross_entropy(logits, labels)
        self._head_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._head_optimizer.step()
        return loss.item(), logits.detach()
