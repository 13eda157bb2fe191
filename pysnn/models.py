"""Spiking MLP and VGG8 (docs/learning-rules.md), time-first, readout by a linear head
averaged over time (the membrane of a non-firing output layer)."""

from __future__ import annotations

from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import nn

from . import checkpoint
from . import data as datasets
from .config import TrainConfig
from .nn.blocks import NeuronConfig, SpikingBlock
from .nn.encoders import ENCODERS


def dropout_seed(seed: int, layer: int, rank: int = 0) -> int:
    """The seed of one layer's dropout stream (and, in data-parallel runs, of one rank's)."""
    return (seed * 1_000_003 + 7919 * (layer + 1) + 104_729 * rank) % (2**63)


class SpikingNetwork(nn.Module):
    """Encoder → spiking blocks → linear head. `blocks` and `head` are exposed
    so local trainers can update each on its own."""

    def __init__(
        self, blocks: Sequence[SpikingBlock], head: nn.Linear, timesteps: int, encoder: str = "direct"
    ) -> None:
        super().__init__()
        if timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {timesteps}")
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {sorted(ENCODERS)}, got '{encoder}'")
        self.blocks = nn.ModuleList(blocks)
        # Each layer's dropout has a stream of its own, derived from the seed the
        # run started with, so no layer's masks depend on another layer's draws.
        for index, block in enumerate(self.blocks):
            if block.dropout is not None:
                block.dropout.reseed(dropout_seed(torch.initial_seed(), index))
        self.head = head
        self.timesteps = timesteps
        self.encoder = encoder

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return ENCODERS[self.encoder](images, self.timesteps)

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """Logits [B, classes]: the head applied at every step, averaged over T."""
        return self.head(h.flatten(2)).mean(0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = self.encode(images)
        for block in self.blocks:
            h = block(h)
        return self.readout(h)

    def set_grad_mode(self, grad_mode: str) -> None:
        for block in self.blocks:
            block.neuron.grad_mode = grad_mode


def mlp(
    in_features: int,
    hidden: Sequence[int] = (1024,),
    classes: int = 10,
    *,
    neuron: Optional[NeuronConfig] = None,
    dropout: float = 0.0,
    batch_norm: bool = False,
    timesteps: int = 10,
    encoder: str = "direct",
) -> SpikingNetwork:
    """Spiking MLP, e.g. 784-1024-10 (hidden=(1024,)) or 784-1024-1024-1024-10."""
    neuron = neuron or NeuronConfig()
    blocks, width = [], in_features
    for n in hidden:
        norm = nn.BatchNorm1d(n) if batch_norm else None
        blocks.append(SpikingBlock(nn.Linear(width, n), neuron, norm=norm, dropout=dropout))
        width = n
    return SpikingNetwork(blocks, nn.Linear(width, classes), timesteps, encoder)


VGG8_CHANNELS: List = [128, 256, "P", 256, 512, "P", 512, "P", 512, "P"]


def vgg8(
    in_channels: int,
    classes: int = 10,
    width_mult: float = 1.0,
    *,
    input_size: int = 28,
    neuron: Optional[NeuronConfig] = None,
    dropout: float = 0.0,
    batch_norm: bool = True,
    timesteps: int = 10,
    encoder: str = "direct",
) -> SpikingNetwork:
    """128C3-256C3-P2-256C3-512C3-P2-512C3-P2-512C3-P2-FC1024-FC10 (channels × width_mult)."""
    neuron = neuron or NeuronConfig()
    blocks: List[SpikingBlock] = []
    channels, shape = in_channels, (in_channels, input_size, input_size)
    for i, item in enumerate(VGG8_CHANNELS):
        if item == "P":
            continue
        out = max(1, int(round(item * width_mult)))
        pool = nn.MaxPool2d(2) if i + 1 < len(VGG8_CHANNELS) and VGG8_CHANNELS[i + 1] == "P" else None
        block = SpikingBlock(
            nn.Conv2d(channels, out, 3, padding=1, bias=not batch_norm),
            neuron,
            norm=nn.BatchNorm2d(out) if batch_norm else None,
            pool=pool,
            dropout=dropout,
        )
        shape = block.output_shape(shape)
        blocks.append(block)
        channels = out
    flat = int(torch.tensor(shape).prod())
    fc = max(1, int(round(1024 * width_mult)))
    blocks.append(SpikingBlock(nn.Linear(flat, fc), neuron, dropout=dropout))
    return SpikingNetwork(blocks, nn.Linear(fc, classes), timesteps, encoder)


def cnn(
    in_channels: int,
    classes: int = 10,
    *,
    input_size: int = 28,
    neuron: Optional[NeuronConfig] = None,
    dropout: float = 0.0,
    batch_norm: bool = True,
    timesteps: int = 10,
    encoder: str = "direct",
    channels: Sequence[int] = (32, 64),
    fc: int = 256,
) -> SpikingNetwork:
    """A spiking CNN small enough to train on a CPU: 32C3-P2-64C3-P2-FC256 and
    the head (3×3 convs, padding 1, 2×2 max pooling), for 28×28 images
    (a convolutional counterpart of the MLP for the noise studies)."""
    neuron = neuron or NeuronConfig()
    blocks: List[SpikingBlock] = []
    shape: Tuple[int, ...] = (in_channels, input_size, input_size)
    for out in channels:
        block = SpikingBlock(
            nn.Conv2d(shape[0], out, 3, padding=1, bias=not batch_norm),
            neuron,
            norm=nn.BatchNorm2d(out) if batch_norm else None,
            pool=nn.MaxPool2d(2),
            dropout=dropout,
        )
        shape = block.output_shape(shape)
        blocks.append(block)
    blocks.append(SpikingBlock(nn.Linear(int(torch.tensor(shape).prod()), fc), neuron, dropout=dropout))
    return SpikingNetwork(blocks, nn.Linear(fc, classes), timesteps, encoder)


MODELS = ("mlp", "cnn", "vgg8")


def build(
    model: str,
    image_shape: Tuple[int, ...],
    classes: int,
    *,
    hidden: Sequence[int] = (1024,),
    width_mult: float = 1.0,
    neuron: Optional[NeuronConfig] = None,
    dropout: float = 0.0,
    batch_norm: Optional[bool] = None,
    timesteps: int = 10,
    encoder: str = "direct",
) -> SpikingNetwork:
    """A model by name for images of `image_shape` ([C, H, W])."""
    if model == "mlp":
        return mlp(
            int(torch.tensor(image_shape).prod()),
            hidden,
            classes,
            neuron=neuron,
            dropout=dropout,
            batch_norm=bool(batch_norm),
            timesteps=timesteps,
            encoder=encoder,
        )
    if model == "vgg8":
        return vgg8(
            image_shape[0],
            classes,
            width_mult,
            input_size=image_shape[-1],
            neuron=neuron,
            dropout=dropout,
            batch_norm=True if batch_norm is None else batch_norm,
            timesteps=timesteps,
            encoder=encoder,
        )
    if model == "cnn":
        return cnn(
            image_shape[0],
            classes,
            input_size=image_shape[-1],
            neuron=neuron,
            dropout=dropout,
            batch_norm=True if batch_norm is None else batch_norm,
            timesteps=timesteps,
            encoder=encoder,
        )
    raise ValueError(f"unknown model '{model}'; choose {', '.join(MODELS)}")


def build_model(config: TrainConfig, image_shape, classes: int) -> SpikingNetwork:
    """The network `config` describes, for images of `image_shape` ([C, H, W])."""
    neuron = NeuronConfig(
        decay=config.decay,
        threshold=config.threshold,
        surrogate=config.surrogate,
        alpha=config.alpha,
        backend=config.backend,
    )
    return build(
        config.model,
        image_shape,
        classes,
        hidden=config.hidden,
        width_mult=config.width_mult,
        neuron=neuron,
        dropout=config.dropout,
        batch_norm=config.uses_batch_norm(),
        timesteps=config.timesteps,
        encoder=config.resolved_encoder(),
    )


class TrainedRun(NamedTuple):
    """A finished (or checkpointed) run, ready for inference."""

    config: TrainConfig
    model: SpikingNetwork  # in eval mode, on the requested device
    dataset: Optional[datasets.Dataset]  # None when loaded with `with_data=False`
    image_shape: Tuple[int, ...]
    classes: int


def load_trained(run_dir: str, device: str = "cpu", with_data: bool = True) -> TrainedRun:
    """The network of RUN_DIR's checkpoint with its weights, and (`with_data`)
    its data set, as `pysnn eval`, `export` and `compare` use it."""
    payload = checkpoint.load(Path(run_dir))
    config = TrainConfig.from_dict(payload["config"])
    dataset = None
    if with_data:
        dataset = datasets.load_dataset(
            config.dataset, config.data_dir, config.subset, False, config.seed, config.timesteps, progress=False
        )
        image_shape, classes = dataset.image_shape, dataset.classes
    else:
        image_shape, classes = datasets.sample_shape(config.dataset)
    model = build_model(config, image_shape, classes)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as error:
        raise checkpoint.CheckpointError(
            f"checkpoint does not fit its own config: {checkpoint.one_line(error)}"
        ) from None
    return TrainedRun(config, model.to(device).eval(), dataset, tuple(image_shape), classes)
