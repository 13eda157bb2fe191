"""`read`: a NIR file, checked; `from_nir`: a pysnn SpikingNetwork from a NIR graph.

Accepted: a chain Input → [Flatten] → layer (Affine, Linear, Conv2d) → neuron
→ [SumPool2d → Threshold(1/2): max pooling of spikes] → ... → Affine head →
Output, where a neuron is either pysnn's exact form (LI → Threshold with a
Scale fed back into the LI) or a nir.LIF. A nir.LIF resets to v_reset (hard
reset): it is refused unless it carries pysnn's soft-reset metadata or the
caller passes `lif_reset="soft"`, which loads it as pysnn's neuron (other
dynamics; meant for fine-tuning imported weights with local rules). A graph
ending in neurons (no head) gets an identity head: the logits are then the
output layer's firing rates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ..models import SpikingNetwork
from ..nn.blocks import NeuronConfig, SpikingBlock
from ..nn.encoders import ENCODERS
from .convention import DEFAULT_DT, SOFT_RESET_KEY, SOFT_RESET_VALUE, NIRError, require_nir, text, to_discrete, uniform

LIF_RESETS = ("refuse", "soft")


def read(path):
    """A NIR graph from `path`; one clear NIRError for a missing, foreign or malformed file."""
    nir = require_nir()
    path = Path(path)
    if not path.is_file():
        raise NIRError(f"{path}: no such file")
    try:
        from nir.serialization import read_version

        version = text(read_version(str(path)))
    except Exception as error:
        raise NIRError(f"{path}: not a NIR file ({type(error).__name__}: {error})") from None
    if version.split(".")[0] != nir.version.split(".")[0]:
        raise NIRError(
            f"{path}: written by NIR {version}; this reader is NIR {nir.version} (major versions must match)"
        )
    try:
        return nir.read(str(path))
    except Exception as error:
        raise NIRError(f"{path}: malformed NIR graph ({type(error).__name__}: {error})") from None


class _Chain:
    """Walks a graph from its Input along forward edges (a neuron's reset loop aside)."""

    def __init__(self, graph) -> None:
        self.graph = graph
        self.successors: Dict[str, List[str]] = {name: [] for name in graph.nodes}
        for src, dst in graph.edges:
            if src not in graph.nodes or dst not in graph.nodes:
                raise NIRError(f"edge ({src!r}, {dst!r}) names a node the graph does not have")
            self.successors[src].append(dst)

    def node(self, name: str):
        return self.graph.nodes[name]

    def next(self, name: str, skip: Tuple[str, ...] = ()) -> str:
        following = [n for n in self.successors[name] if n not in skip]
        if len(following) != 1:
            raise NIRError(
                f"node '{name}' ({type(self.node(name)).__name__}) feeds {len(following)} nodes "
                f"({', '.join(following) or 'none'}); pysnn networks are chains"
            )
        return following[0]


def _neuron(nir, chain: _Chain, name: str, dt: float, lif_reset: str):
    """(decay, threshold, input scale, name of the neuron's last node) or None if `name` is no neuron."""
    node = chain.node(name)
    if isinstance(node, nir.LI):
        spike = chain.next(name)
        threshold_node = chain.node(spike)
        resets = [
            n for n in chain.successors[spike] if name in chain.successors[n] and isinstance(chain.node(n), nir.Scale)
        ]
        if not isinstance(threshold_node, nir.Threshold) or len(resets) != 1:
            raise NIRError(
                f"node '{name}' (LI) is not followed by a Threshold whose spikes feed back through a "
                f"Scale node: a leaky integrator without a spike has no pysnn form"
            )
        decay, scale = to_discrete(name, node.tau, node.r, dt)
        if uniform(name, "v_leak", node.v_leak) != 0.0:
            raise NIRError(f"node '{name}': v_leak must be 0 (pysnn's membrane rests at 0)")
        threshold = uniform(spike, "threshold", threshold_node.threshold)
        reset = uniform(resets[0], "scale", chain.node(resets[0]).scale) * scale
        if not np.isclose(reset, -decay * threshold, rtol=1e-9, atol=1e-12):
            raise NIRError(
                f"node '{resets[0]}': the fed-back reset weight is {reset:g} (after the input scale), "
                f"pysnn's soft reset needs -decay*threshold = {-decay * threshold:g}"
            )
        chain.successors[spike] = [n for n in chain.successors[spike] if n != resets[0]]
        return decay, threshold, scale, spike
    if isinstance(node, nir.LIF):
        soft = text(node.metadata.get(SOFT_RESET_KEY, "")) == SOFT_RESET_VALUE
        if not soft and lif_reset != "soft":
            raise NIRError(
                f"node '{name}' (LIF) resets to v_reset (a hard reset); pysnn's neuron subtracts the "
                f"threshold. Pass lif_reset='soft' to load it as pysnn's neuron "
                f"anyway (different dynamics, for fine-tuning)"
            )
        decay, scale = to_discrete(name, node.tau, node.r, dt)
        if uniform(name, "v_leak", node.v_leak) != 0.0:
            raise NIRError(f"node '{name}': v_leak must be 0 (pysnn's membrane rests at 0)")
        return decay, uniform(name, "v_threshold", node.v_threshold), scale, name
    return None


def _layer(nir, name: str, node, shape: Tuple[int, ...], dtype: torch.dtype) -> Tuple[nn.Module, Tuple[int, ...]]:
    def tensor(a):
        return torch.as_tensor(np.asarray(a), dtype=dtype)

    if isinstance(node, (nir.Affine, nir.Linear)):
        weight = tensor(node.weight)
        if weight.dim() != 2 or weight.shape[1] != int(np.prod(shape)):
            raise NIRError(
                f"node '{name}': weight of shape {list(weight.shape)} does not take the "
                f"{int(np.prod(shape))} inputs it receives"
            )
        layer = nn.Linear(weight.shape[1], weight.shape[0], dtype=dtype)
        layer.weight.data.copy_(weight)
        bias = getattr(node, "bias", None)
        layer.bias.data.copy_(tensor(bias) if bias is not None else torch.zeros(weight.shape[0]))
        return layer, (weight.shape[0],)
    if isinstance(node, nir.Conv2d):
        weight = tensor(node.weight)
        if len(shape) != 3 or weight.shape[1] * node.groups != shape[0]:
            raise NIRError(
                f"node '{name}': a Conv2d with {weight.shape[1] * node.groups} input channels "
                f"receives shape {list(shape)}"
            )
        if isinstance(node.padding, str):
            raise NIRError(f"node '{name}': padding '{node.padding}' (only numeric padding is supported)")
        layer = nn.Conv2d(
            shape[0],
            weight.shape[0],
            tuple(weight.shape[2:]),
            stride=_pair(node.stride),
            padding=_pair(node.padding),
            dilation=_pair(node.dilation),
            groups=int(node.groups),
            dtype=dtype,
        )
        layer.weight.data.copy_(weight)
        layer.bias.data.copy_(tensor(node.bias))
        with torch.no_grad():
            out = layer(torch.zeros(1, *shape, dtype=dtype)).shape[1:]
        return layer, tuple(out)
    raise NIRError(
        f"node '{name}' ({type(node).__name__}) cannot be represented in a pysnn network "
        f"(supported: Affine, Linear, Conv2d, LI+Threshold, LIF, SumPool2d+Threshold, Flatten)"
    )


def _pair(value) -> Tuple[int, int]:
    array = np.atleast_1d(np.asarray(value)).astype(int)
    return (int(array[0]),) * 2 if array.size == 1 else (int(array[0]), int(array[1]))


def from_nir(
    graph,
    *,
    timesteps: Optional[int] = None,
    dt: Optional[float] = None,
    lif_reset: str = "refuse",
    dtype: torch.dtype = torch.float32,
    backend: str = "fused",
) -> SpikingNetwork:
    """A SpikingNetwork computing what `graph` does; NIRError naming the node otherwise.

    `timesteps` and `dt` default to the graph's metadata (pysnn's exports
    record both), else dt = 1e-4 and timesteps is required."""
    nir = require_nir()
    if lif_reset not in LIF_RESETS:
        raise NIRError(f"lif_reset must be one of {', '.join(LIF_RESETS)}, got '{lif_reset}'")
    if not isinstance(graph, nir.NIRGraph):
        raise NIRError(f"from_nir takes a nir.NIRGraph, got {type(graph).__name__}")
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    dt = float(meta.get("dt", DEFAULT_DT)) if dt is None else float(dt)
    timesteps = int(meta["timesteps"]) if timesteps is None and "timesteps" in meta else timesteps
    if timesteps is None:
        raise NIRError("the graph does not record its number of time steps: pass timesteps=")
    surrogate = text(meta.get("surrogate", "sigmoid"))
    alpha = float(meta.get("alpha", 4.0))
    inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    if len(inputs) != 1:
        raise NIRError(f"the graph has {len(inputs)} Input nodes; pysnn networks have one")
    chain = _Chain(graph)
    shape = tuple(int(s) for s in np.asarray(graph.nodes[inputs[0]].input_type["input"]).ravel())
    blocks: List[SpikingBlock] = []
    pending: Optional[Tuple[nn.Module, str]] = None  # a layer waiting for its neuron (or the head)
    name = chain.next(inputs[0])
    while True:
        node = chain.node(name)
        if isinstance(node, nir.Output):
            break
        if isinstance(node, nir.Flatten):
            if pending is not None:
                raise NIRError(f"node '{name}' (Flatten) between a layer and its neuron")
            shape = (int(np.prod(shape)),)
        elif isinstance(node, nir.SumPool2d):
            if not blocks or pending is not None or blocks[-1].pool is not None:
                raise NIRError(f"node '{name}' (SumPool2d) must follow a layer's spikes")
            spike = chain.next(name)
            if (
                not isinstance(chain.node(spike), nir.Threshold)
                or not 0.0 <= uniform(spike, "threshold", chain.node(spike).threshold) < 1.0
                or np.any(np.asarray(node.padding) != 0)
            ):
                raise NIRError(
                    f"node '{name}' (SumPool2d) is not followed by a Threshold in [0, 1) or is padded: "
                    f"only max pooling of spikes (sum pooling, then spike if any) has a pysnn form"
                )
            blocks[-1].pool = nn.MaxPool2d(_pair(node.kernel_size), stride=_pair(node.stride))
            with torch.no_grad():
                shape = tuple(blocks[-1].pool(torch.zeros(1, *shape)).shape[1:])
            name = spike
        else:
            neuron = _neuron(nir, chain, name, dt, lif_reset)
            if neuron is None:
                layer, next_shape = _layer(nir, name, node, shape, dtype)  # refuses unknown node types
                if pending is not None:
                    raise NIRError(
                        f"node '{pending[1]}' is followed by layer '{name}' ({type(node).__name__}) "
                        f"with no neuron between them"
                    )
                pending, shape = (layer, name), next_shape
            else:
                if pending is None:
                    raise NIRError(f"node '{name}' ({type(node).__name__}) is a neuron without a layer before it")
                decay, threshold, scale, name = neuron
                layer = pending[0]
                with torch.no_grad():  # NIR's input scale R·dt/τ, folded into the weights
                    layer.weight.mul_(scale)
                    layer.bias.mul_(scale)
                config = NeuronConfig(
                    decay=decay, threshold=threshold, surrogate=surrogate, alpha=alpha, backend=backend
                )
                blocks.append(SpikingBlock(layer, config))
                pending = None
        name = chain.next(name)
    if pending is not None:
        head = pending[0]
        if not isinstance(head, nn.Linear):
            raise NIRError(f"node '{pending[1]}': the readout before Output must be Affine or Linear")
    else:
        if not blocks:
            raise NIRError("the graph has no layer")
        width = int(np.prod(shape))
        head = nn.Linear(width, width, dtype=dtype)  # the output layer's spikes: logits = firing rates
        with torch.no_grad():
            head.weight.copy_(torch.eye(width, dtype=dtype))
            head.bias.zero_()
    encoder = text(meta.get("encoder", "direct"))
    return SpikingNetwork(blocks, head, timesteps, encoder if encoder in ENCODERS else "direct")
