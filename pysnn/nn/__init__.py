"""Spiking layers built on the fused ops."""

from .blocks import NeuronConfig, SpikingBlock
from .encoders import ENCODERS
from .lif import LIF

__all__ = ["ENCODERS", "LIF", "NeuronConfig", "SpikingBlock"]
