"""BPTT training steps of pysnn's networks with a peer library's neuron in
place of pysnn's fused LIF: SpikingJelly 2.0's multi-step `LIFNode` (pysnn's
neuron: soft reset inside the decay) and snnTorch's `Leaky` stepped over T in
Python, as their users run them. Everything else is the same modules: the
layers, batch norm, pooling, the first layer run once per image under direct
coding, the readout averaged over T, Adam. What differs is the neuron alone."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch.nn import functional as F

from ..config import TrainConfig
from ..learning.optim import make_optimizer
from ..models import build_model

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


def step_case(
    peer: str,
    model: str = "mlp",
    batch: int = 64,
    timesteps: int = 10,
    hidden: Sequence[int] = (1024,),
    width_mult: float = 1.0,
    device: str = "cpu",
) -> Optional[Callable[[], None]]:
    """One BPTT training step of `model` with `peer`'s neuron on random 28×28
    images, as a callable; None if the peer is not installed."""
    torch.manual_seed(0)
    config = TrainConfig(
        rule="bptt",
        model=model,
        timesteps=timesteps,
        hidden=list(hidden),
        width_mult=width_mult,
        batch_size=batch,
        device=device,
    )
    shape = (1, 28, 28)
    net = build_model(config, shape, 10).to(device)
    neurons = peer_neurons(peer, len(net.blocks), config.decay, config.threshold, config.alpha)
    if neurons is None:
        return None
    optimizer = make_optimizer(net.parameters(), config)
    net.train()
    images = torch.rand(batch, *shape, device=device)
    labels = torch.arange(batch, device=device) % 10

    def step() -> None:
        h = net.encode(images)
        for block, fire in zip(net.blocks, neurons):
            h = block.emit(fire(block.integrate(h)))
        loss = F.cross_entropy(net.readout(h), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step.net = net  # for tests: the network the step trains
    return step
