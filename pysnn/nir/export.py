"""`to_nir`: a trained SpikingNetwork as a NIR graph; `write`: to a file, atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..models import SpikingNetwork
from ..nn.blocks import SpikingBlock
from .convention import DEFAULT_DT, PRODUCER, SOFT_RESET_KEY, SOFT_RESET_VALUE, NIRError, require_nir, to_continuous

NEURON_FORMS = ("exact", "lif")
CODING = {
    "direct": "direct: the same input at every step",
    "poisson": "poisson: at every step, a spike with probability equal to the input value",
    "events": "events: the sample's event counts binned into one frame per step",
}


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _folded(block: SpikingBlock) -> Tuple[np.ndarray, np.ndarray]:
    """The layer's weight and bias with an (eval-mode) batch norm folded in."""
    layer = block.layer
    weight = layer.weight.detach()
    bias = layer.bias.detach() if layer.bias is not None else torch.zeros(weight.shape[0], dtype=weight.dtype)
    norm = block.norm
    if norm is not None:
        if not isinstance(norm, (nn.BatchNorm1d, nn.BatchNorm2d)) or norm.running_mean is None:
            raise NIRError(f"{type(norm).__name__} without running statistics cannot be folded into a NIR layer")
        scale = torch.rsqrt(norm.running_var.to(weight.dtype) + norm.eps)
        if norm.affine:
            scale = scale * norm.weight.detach()
        shift = -norm.running_mean.to(weight.dtype) * scale
        if norm.affine:
            shift = shift + norm.bias.detach()
        weight = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
        bias = bias * scale + shift
    return _array(weight), _array(bias)


def _pool_spec(pool: nn.Module) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    def pair(v):
        return (v, v) if isinstance(v, int) else tuple(v)

    if (
        not isinstance(pool, nn.MaxPool2d)
        or pool.ceil_mode
        or pair(pool.dilation) != (1, 1)
        or pair(pool.padding) != (0, 0)
    ):
        raise NIRError(f"{pool} has no NIR form (only MaxPool2d without padding, dilation or ceil_mode)")
    return pair(pool.kernel_size), pair(pool.stride or pool.kernel_size)


class _GraphBuilder:
    def __init__(self, nir) -> None:
        self.nir = nir
        self.nodes: Dict[str, object] = {}
        self.edges: List[Tuple[str, str]] = []
        self.tail: Optional[str] = None

    def chain(self, name: str, node) -> str:
        self.nodes[name] = node
        if self.tail is not None:
            self.edges.append((self.tail, name))
        self.tail = name
        return name

    def neuron(self, prefix: str, shape: Tuple[int, ...], decay: float, threshold: float, dt: float, form: str) -> None:
        nir = self.nir
        tau, r = to_continuous(decay, dt)
        full = lambda v: np.full(shape, v, dtype=np.float64)  # noqa: E731
        if form == "lif":
            self.chain(
                f"{prefix}.lif",
                nir.LIF(
                    tau=full(tau),
                    r=full(r),
                    v_leak=full(0.0),
                    v_threshold=full(threshold),
                    v_reset=full(0.0),
                    metadata={SOFT_RESET_KEY: SOFT_RESET_VALUE},
                ),
            )
            return
        # Exact: a leaky integrator, a threshold, and the reset as the threshold's
        # spikes fed back (one step later) with weight −λ·v_th.
        membrane = self.chain(f"{prefix}.membrane", nir.LI(tau=full(tau), r=full(r), v_leak=full(0.0)))
        spike = self.chain(f"{prefix}.spike", nir.Threshold(threshold=full(threshold)))
        self.nodes[f"{prefix}.reset"] = nir.Scale(scale=full(-decay * threshold))
        self.edges += [(spike, f"{prefix}.reset"), (f"{prefix}.reset", membrane)]


def _add_block(
    graph: _GraphBuilder, prefix: str, block: SpikingBlock, shape: Tuple[int, ...], dt: float, neuron: str
) -> Tuple[int, ...]:
    """Appends one spiking block (layer, neuron, pooling) to `graph`; returns its output shape."""
    nir = graph.nir
    weight, bias = _folded(block)
    if isinstance(block.layer, nn.Linear):
        if len(shape) > 1:
            graph.chain(
                f"{prefix}.flatten", nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
            )
            shape = (int(np.prod(shape)),)
        graph.chain(f"{prefix}.layer", nir.Affine(weight=weight, bias=bias))
    elif isinstance(block.layer, nn.Conv2d):
        conv = block.layer
        if conv.padding_mode != "zeros":
            raise NIRError(f"{prefix}: padding_mode '{conv.padding_mode}' has no NIR form")
        graph.chain(
            f"{prefix}.layer",
            nir.Conv2d(
                input_shape=tuple(shape[1:]),
                weight=weight,
                stride=conv.stride,
                padding=conv.padding,
                dilation=conv.dilation,
                groups=conv.groups,
                bias=bias,
            ),
        )
    else:
        raise NIRError(f"{prefix}: {type(block.layer).__name__} has no NIR form")
    shape = _layer_output_shape(block, shape)
    graph.neuron(prefix, shape, block.neuron.decay, block.neuron.threshold, dt, neuron)
    if block.pool is not None:
        kernel, stride = _pool_spec(block.pool)
        graph.chain(
            f"{prefix}.pool",
            nir.SumPool2d(kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array((0, 0))),
        )
        shape = _pooled_shape(block, shape)
        # the maximum of binary spikes is 1 exactly when their sum exceeds 1/2
        graph.chain(f"{prefix}.pool_spike", nir.Threshold(threshold=np.full(shape, 0.5)))
    return shape


def to_nir(
    model: SpikingNetwork, input_shape: Optional[Sequence[int]] = None, *, dt: float = DEFAULT_DT, neuron: str = "exact"
):
    """The network as a `nir.NIRGraph` (inference: batch norm folded, dropout dropped).

    `input_shape`: one sample's shape without batch and time, e.g. (1, 28, 28);
    needed for convolutional networks. `neuron="exact"` writes every LIF layer
    as NIR's LI → Threshold with the soft reset fed back through a Scale node,
    which any NIR interpreter runs as pysnn does; `neuron="lif"` writes one
    `nir.LIF` node per layer (what hardware toolchains map directly), whose
    NIR semantics are a hard reset to v_reset = 0: only pysnn, which reads the
    node's metadata, runs it exactly.
    """
    nir = require_nir()
    if neuron not in NEURON_FORMS:
        raise NIRError(f"neuron must be one of {', '.join(NEURON_FORMS)}, got '{neuron}'")
    if not isinstance(dt, (int, float)) or not dt > 0 or not np.isfinite(dt):
        raise NIRError(f"dt must be a finite number > 0, got {dt}")
    if not isinstance(model, SpikingNetwork):
        raise NIRError(f"to_nir takes a pysnn SpikingNetwork, got {type(model).__name__}")
    first = model.blocks[0].layer if len(model.blocks) else model.head
    if input_shape is None:
        if not isinstance(first, nn.Linear):
            raise NIRError("a convolutional network needs input_shape, e.g. (1, 28, 28)")
        input_shape = (first.in_features,)
    shape = tuple(int(s) for s in input_shape)
    graph = _GraphBuilder(nir)
    graph.chain("input", nir.Input(input_type={"input": np.array(shape)}, metadata={"coding": CODING[model.encoder]}))
    for i, block in enumerate(model.blocks):
        shape = _add_block(graph, f"block{i}", block, shape, float(dt), neuron)
    if len(shape) > 1:
        graph.chain("head.flatten", nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1))
    weight = _array(model.head.weight)
    bias = _array(model.head.bias) if model.head.bias is not None else np.zeros(weight.shape[0], weight.dtype)
    graph.chain("head", nir.Affine(weight=weight, bias=bias))
    graph.chain("output", nir.Output(output_type={"output": np.array([weight.shape[0]])}))
    n = model.blocks[0].neuron if len(model.blocks) else None
    metadata = {
        "producer": PRODUCER,
        "producer_version": __version__,
        "dt": float(dt),
        "timesteps": int(model.timesteps),
        "encoder": model.encoder,
        "readout": "logits = the output node's values averaged over the time steps",
        "neuron": "exact: LI + Threshold (fires at v > v_threshold) + reset Scale fed back one step later"
        if neuron == "exact"
        else f"LIF nodes with {SOFT_RESET_KEY}={SOFT_RESET_VALUE}",
    }
    if n is not None:
        metadata.update(surrogate=n.surrogate, alpha=float(n.alpha))
    return nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, metadata=metadata)


def _layer_output_shape(block: SpikingBlock, shape: Tuple[int, ...]) -> Tuple[int, ...]:
    if isinstance(block.layer, nn.Linear):
        return (block.layer.out_features,)
    with torch.no_grad():
        return tuple(block.layer(torch.zeros(1, *shape, dtype=block.layer.weight.dtype)).shape[1:])


def _pooled_shape(block: SpikingBlock, shape: Tuple[int, ...]) -> Tuple[int, ...]:
    with torch.no_grad():
        return tuple(block.pool(torch.zeros(1, *shape)).shape[1:])


def write(graph, path) -> Path:
    """Writes `graph` to `path` atomically: a kill leaves the old file or none, never half of one."""
    nir = require_nir()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        nir.write(tmp, graph)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
