"""SNN-HLL (docs/learning-rules.md): every hidden layer learns from its own hybrid local
loss with its own optimiser; its input is detached, so no gradient crosses
layers; the output layer learns from its own cross-entropy."""

from __future__ import annotations

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

    def update_layer(self, index, inputs, labels, context):
        block, objective = self.model.blocks[index], self.aux[index]
        spikes = block.pooled(self.fire(index, block.integrate(inputs)))
        # In real-time mode spikes and inputs hold one step: the losses are L[t] (3-4, 3-8).
        objective(spikes, inputs, labels, self.config.update, self.batch).backward()
        return block.drop(spikes.detach())
