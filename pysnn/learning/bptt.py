"""Global surrogate-gradient BPTT (docs/learning-rules.md): one cross-entropy, gradients
through every layer and every step."""

from __future__ import annotations

from torch.nn import functional as F

from ..nn.conv import low_memory_convolutions
from .base import Trainer


class BPTTTrainer(Trainer):
    grad_mode = "bptt"

    def __init__(self, model, config, classes, input_shape=None):  # input_shape: not needed here
        super().__init__(model, config, classes)
        self.optimizer = self.add_optimizer(model.parameters())
        self.forward_model = model  # DistributedDataParallel(model) in a data-parallel run
        self.loss_scale = 1.0  # set per batch by data parallelism for unequal slices

    def step(self, images, labels):
        # convolutions in chunks unless --convolutions whole (pysnn.nn.conv)
        with low_memory_convolutions(self.config.convolutions == "chunked"):
            logits = self.forward_model(images)
            loss = F.cross_entropy(logits, labels)
            self.optimizer.zero_grad(set_to_none=True)
            (loss * self.loss_scale).backward()
        self.optimizer.step()
        return loss.item(), logits.detach()
