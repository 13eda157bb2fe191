"""SNN-HLL (docs/learning-rules.md): every hidden layer learns from its own hybrid local
loss with its own optimiser; its input is detached, so no gradient crosses
layers; the output layer learns from its own cross-entropy."""

from __future__ import annotations

from typing import List, Optional

import torch

from .base import LocalTrainer
from .hll_losses import LayerObjective


class HLLTrainer(LocalTrainer):
    grad_mode = "time_local"

    def __init__(self, model, config, classes, input_shape):
        super().__init__(model, config, classes)
        shape = tuple(input_shape)
        for index, block in enumerate(model.blocks):
            out_shape = block.output_shape(shape)
            objective = LayerObjective(config.loss, out_shape, shape, classes, config.dim_in_decoder)
            self.aux.append(objective)
            self.layer_optimizers.append(
                self.add_optimizer(list(block.parameters()) + list(objective.parameters()), block=index)
            )
            shape = out_shape

    def start_sequence(self) -> None:
        super().start_sequence()
        # per layer, real time: (steps seen, Σ output spikes, Σ input) of the
        # window so far, detached: all that the window terms need of the past
        self.window_sums: List[Optional[tuple]] = [None] * len(self.model.blocks)

    def update_layer(self, index, inputs, labels, context):
        block, objective = self.model.blocks[index], self.aux[index]
        spikes = self.drive_pooled(index, inputs)
        # In real-time mode spikes and inputs hold one step: the losses are L[t] (3-4, 3-8).
        loss = objective(spikes, inputs, labels, self.config.update, self.batch)
        if self.config.update == "realtime" and objective.has_window:
            loss = loss + self._window_loss(index, spikes, inputs, labels)
        if loss.requires_grad:  # (a window term alone has nothing to learn before the last step)
            loss.backward()
        return block.drop(spikes.detach())

    def _window_loss(self, index, spikes, inputs, labels):
        """Real time: contrast and recon once, after the window's last step, on
        the rates of running sums; their gradient reaches the layer through the
        last step's spikes only (the time-local gradient, 3-17), the earlier
        steps enter as constants. 0 at every other step."""
        steps, spike_sum, input_sum = self.window_sums[index] or (0, None, None)
        steps += spikes.shape[0]
        if steps < self.config.timesteps:
            # Spikes (and a previous block's undropped spikes) are 0/1: their
            # sums are kept as exact counts in a byte each.
            counts = self.config.timesteps < 256
            input_counts = counts and index > 0 and self.model.blocks[index - 1].dropout is None
            self.window_sums[index] = (
                steps,
                _accumulate(spike_sum, spikes.detach(), counts),
                _accumulate(input_sum, inputs, input_counts),
            )
            return 0.0
        self.window_sums[index] = None
        rates = _plus(spike_sum, spikes.sum(0)) / steps
        input_rates = _plus(input_sum, inputs.sum(0)) / steps
        return self.aux[index].window(rates, input_rates, self.batch.gather(labels), self.batch)


def _accumulate(total: Optional[torch.Tensor], steps: torch.Tensor, counts: bool) -> torch.Tensor:
    """total + the sum of steps [S, ...] over time; as uint8 counts with
    `counts` (steps of 0/1 values, fewer than 256 in all)."""
    step_sum = steps.sum(0)
    if counts:
        step_sum = step_sum.to(torch.uint8)
    return _plus(total, step_sum)


def _plus(total: Optional[torch.Tensor], step_sum: torch.Tensor) -> torch.Tensor:
    """total (None, float sums or uint8 counts, all exact) + step_sum, in step_sum's dtype."""
    return step_sum if total is None else total + step_sum
