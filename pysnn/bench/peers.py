"""BPTT training steps of pysnn's networks with a peer library's neuron in
place of pysnn's fused LIF: SpikingJelly 2.0's multi-step `LIFNode` (pysnn's
neuron: soft reset inside the decay) and snnTorch's `Leaky` stepped over T in
Python, as their users run them. Everything else is the same modules: the
layers, batch norm, pooling, the first layer run once per image under direct
coding, the readout averaged over T, Adam. What differs is the neuron alone.
The benchmark's cases (networks, data) are built in pysnn.bench.train."""

from __future__ import annotations

from typing import Optional

import torch
from torch.nn import functional as F

PEERS = ("spikingjelly", "snntorch")


def peer_neurons(peer: str, count: int, decay: float, threshold: float, alpha: float) -> Optional[list]:
    """`count` fresh neurons of `peer`, each a function x [T, ...] → spikes
    [T, ...] with surrogate gradients (sigmoid, `alpha`); None if not installed."""
    if peer == "spikingjelly":
        try:
            from spikingjelly.activation_based import neuron, surrogate
        except ImportError:
            return None

        def make():
            node = neuron.LIFNode(
                tau=1.0 / (1.0 - decay),
                decay_input=False,
                v_reset=None,
                v_threshold=threshold,
                surrogate_function=surrogate.Sigmoid(alpha=alpha),
                step_mode="m",
            )

            def fire(x):
                node.reset()
                return node(x)

            return fire

        return [make() for _ in range(count)]
    if peer == "snntorch":
        try:
            import snntorch
            from snntorch import surrogate
        except ImportError:
            return None

        def make():
            node = snntorch.Leaky(
                beta=decay, threshold=threshold, spike_grad=surrogate.sigmoid(slope=alpha), reset_mechanism="subtract"
            )

            def fire(x):
                mem = node.init_leaky()
                spikes = []
                for t in range(x.shape[0]):
                    spike, mem = node(x[t], mem)
                    spikes.append(spike)
                return torch.stack(spikes)

            return fire

        return [make() for _ in range(count)]
    raise ValueError(f"unknown peer '{peer}'; choose {', '.join(PEERS)}")


def bptt_step(net, neurons: list, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor):
    """One BPTT training step of pysnn network `net` with `neurons` (one per
    block, from `peer_neurons`) in place of its fused LIF, as a callable."""

    def step() -> None:
        h = net.encode(images)
        for block, fire in zip(net.blocks, neurons):
            h = block.emit(fire(block.integrate(h)))
        loss = F.cross_entropy(net.readout(h), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    net.train()
    return step
