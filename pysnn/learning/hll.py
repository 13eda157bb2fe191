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
        self.layer_optimizers = []
        shape = tuple(input_shape)
        for block in model.blocks:
            out_shape = block.output_shape(shape)
            objective = LayerObjective(config.loss, out_shape, shape, classes, config.dim_in_decoder)
            self.aux.append(objective)
            self.layer_optimizers.append(
                self.add_optimizer(list(block.parameters()) + list(objective.parameters())))
            shape = out_shape

    def step(self, images, labels):
        h = self.model.encode(images)
        for block, objective, optimizer in zip(self.model.blocks, self.aux, self.layer_optimizers):
            inputs = h.detach()
            spikes = block.pooled(block.fire(block.integrate(inputs)))
            loss = objective(spikes, inputs, labels, self.config.update)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            h = block.drop(spikes.detach())
        return self.train_head(h, labels)
