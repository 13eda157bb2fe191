"""What a trained spiking network does: per-layer firing rates, synaptic
operations per sample and an energy estimate, HSIC of each layer with the
input and the labels, and accuracy under input noise (thesis Table 4-5)."""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import torch

from . import ops
from .learning.hbh import label_kernel
from .models import SpikingNetwork

# Energy per operation, 45 nm CMOS, 32-bit float (Horowitz, ISSCC 2014):
# a multiply-accumulate 4.6 pJ (3.7 + 0.9), an accumulate 0.9 pJ. An analog
# input (direct coding) costs MACs; a spike costs one accumulate per synapse.
ENERGY_PJ = {"mac": 4.6, "ac": 0.9}


def fan_out(block) -> int:
    """Synapses driven by one input element of `block`."""
    layer = block.layer
    if isinstance(layer, torch.nn.Linear):
        return layer.out_features
    return layer.out_channels * math.prod(layer.kernel_size)


@torch.no_grad()
def activity(model: SpikingNetwork, images: torch.Tensor) -> Dict[str, List[float]]:
    """Per hidden layer: firing rate (spikes per neuron per step); per layer
    including the output layer: synaptic operations per sample and their kind."""
    h = model.encode(images)
    rates, ops_per_sample, kinds = [], [], []
    for i, block in enumerate(model.blocks):
        # Events arriving at this layer: analog values at the input layer, spikes elsewhere.
        events = h.flatten(2).sum(-1).mean(1).sum(0).item() if i else h.flatten(2).shape[-1] * h.shape[0]
        ops_per_sample.append(events * fan_out(block))
        kinds.append("mac" if i == 0 and model.encoder == "direct" else "ac")
        spikes = block.fire(block.integrate(h))
        rates.append(spikes.mean().item())
        h = block.emit(spikes)
    ops_per_sample.append(h.flatten(2).sum(-1).mean(1).sum(0).item() * model.head.out_features)
    kinds.append("ac")  # the output layer, driven by the last layer's spikes
    energy = sum(n * ENERGY_PJ[k] for n, k in zip(ops_per_sample, kinds))
    return {
        "firing_rate": rates,
        "synaptic_ops": ops_per_sample,
        "op_kind": kinds,
        "energy_uJ_per_sample": energy * 1e-6,
    }


@torch.no_grad()
def layer_hsic(
    model: SpikingNetwork,
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: int,
    sigma: float = 0.2,
    sigma_scaling: str = "dim",
) -> List[Dict[str, float]]:
    """HSIC(X, Z) and HSIC(Z, Y) of every hidden layer's rates (the information plane)."""
    return [
        {k: v for k, v in layer.items() if not k.startswith("n")}
        for layer in layer_hsic_normalised(model, images, labels, classes, sigma, sigma_scaling)
    ]


def layer_hsic_normalised(
    model: SpikingNetwork,
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: int,
    sigma: float = 0.2,
    sigma_scaling: str = "dim",
) -> List[Dict[str, float]]:
    """Per hidden layer: HSIC(X, Z), HSIC(Z, Y) and their normalised (CKA)
    forms nHSIC(A, B) = HSIC(A, B)/sqrt(HSIC(A, A)·HSIC(B, B)), which do not
    depend on the kernels' scale (0 for a silent layer)."""
    kx = ops.kernel_matrix(images.flatten(1), sigma=sigma, sigma_scaling=sigma_scaling)
    ky = label_kernel(ops, labels, classes, "cosine")
    hxx, hyy = ops.hsic(kx, kx).item(), ops.hsic(ky, ky).item()
    h, out = model.encode(images), []
    for block in model.blocks:
        h = block(h)
        kz = ops.kernel_matrix(h.mean(0).flatten(1), sigma=sigma, sigma_scaling=sigma_scaling)
        xz, zy, zz = ops.hsic(kx, kz).item(), ops.hsic(kz, ky).item(), ops.hsic(kz, kz).item()
        out.append(
            {
                "hsic_xz": xz,
                "hsic_zy": zy,
                "nhsic_xz": xz / math.sqrt(hxx * zz) if hxx * zz > 0 else 0.0,
                "nhsic_zy": zy / math.sqrt(zz * hyy) if zz * hyy > 0 else 0.0,
            }
        )
    return out


def add_noise(
    images: torch.Tensor,
    spec: str,
    generator: Optional[torch.Generator] = None,
    space: str = "pixel",
    pixel_std: float = 1.0,
) -> torch.Tensor:
    """`gaussian:STD` or `salt-pepper:P` (each pixel set to 0 or 1 with
    probability P). Gaussian noise in `space="pixel"` is added to the [0, 1]
    pixels and clipped; in `space="normalised"` it is added to the
    standardised image (x − mean)/std, i.e. STD·`pixel_std` in pixels,
    unclipped, as in a pipeline that normalises its inputs."""
    if space not in ("pixel", "normalised"):
        raise ValueError(f"--noise-space must be pixel or normalised, got '{space}'")
    try:
        kind, value = spec.split(":")
        level = float(value)
    except ValueError:
        raise ValueError(f"--noise must be gaussian:STD or salt-pepper:P, got '{spec}'") from None
    if kind == "gaussian" and level >= 0 and math.isfinite(level):
        if space == "normalised":
            return images + (torch.randn(images.shape, generator=generator) * (level * pixel_std)).to(images.device)
        noise = torch.randn(images.shape, generator=generator) * level
        return (images + noise.to(images.device)).clamp(0, 1)
    if kind == "salt-pepper" and 0 <= level <= 1:
        u = torch.rand(images.shape, generator=generator).to(images.device)
        out = images.clone()
        out[u < level / 2] = 0.0
        out[(u >= level / 2) & (u < level)] = 1.0
        return out
    raise ValueError(f"--noise must be gaussian:STD (STD >= 0) or salt-pepper:P (0 <= P <= 1), got '{spec}'")
