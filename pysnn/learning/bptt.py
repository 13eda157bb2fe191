"""Global surrogate-gradient BPTT (docs/learning-rules.md): one cross-entropy, gradients
through every layer and every step."""

from __future__ import annotations

from torch.nn import functional as F

from ..nn.low_memory import low_memory
from .base import Trainer


class BPTTTrainer(Trainer):
    grad_mode = "bptt"

    def __init__(self, model, config, classes, input_shape=None):  # input_shape: not needed here
        super().__init__(model, config, classes)
        self.optimizer = self.add_optimizer(model.parameters())
        self.forward_model = model  # DistributedDataParallel(model) in a data-parallel run
        self.loss_scale = 1.0  # set per batch by data parallelism for unequal slices

    def step(self, images, labels):
        with low_memory(self.config.uses_low_memory()):  # (pysnn.nn.low_memory)
            logits = self.forward_model(images)
            loss = F.cross_entropy(logits, labels)
            self.optimizer.zero_grad(set_to_none=True)
            (loss * self.loss_scale).backward()
        self.optimizer.step()
        return loss.item(), logits.detach()
