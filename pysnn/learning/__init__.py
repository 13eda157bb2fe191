"""Learning rules: SNN-HLL, SNN-HBH and the global BPTT baseline."""

from .bptt import BPTTTrainer
from .hbh import HBHTrainer
from .hll import HLLTrainer

TRAINERS = {"hll": HLLTrainer, "hbh": HBHTrainer, "bptt": BPTTTrainer}


def make_trainer(model, config, classes, input_shape):
    return TRAINERS[config.rule](model, config, classes, input_shape)


__all__ = ["BPTTTrainer", "HBHTrainer", "HLLTrainer", "TRAINERS", "make_trainer"]
