"""The thesis' training settings (Tables 3-1 and 4-1) as named presets, each
with the accuracy the thesis reports, so one command reproduces a table row:
    pysnn train --preset thesis-hll-fashion-vgg8 --device cuda
Flags given beside --preset override it."""

from __future__ import annotations

import math
from typing import Dict

HLL = dict(
    rule="hll",
    loss="pred-sim",
    optimizer="adam",
    lr=5e-4,
    batch_size=64,
    timesteps=10,
    decay=math.exp(-1.0),
    threshold=1.0,
)
# The thesis' bottleneck HSIC(X, Z) − β·HSIC(Z, Y) in its normalised (CKA) form,
# gaussian kernels with σ = 5 on X, Z and the labels (normalisation makes the
# label kernel's scale irrelevant), batch norm before the LIF (layer → BN →
# LIF; HSIC on the spikes, before pooling and dropout). σ = 5 unscaled suits an MLP's firing rates; conv maps
# (d ~ 1e5) need σ² scaled by d.
HBH = dict(
    rule="hbh",
    beta=2.0,
    lr=5e-4,
    batch_size=64,
    timesteps=10,
    dropout=0.1,
    epochs=400,
    estimator="approx",
    label_kernel="gaussian",
    sigma=5.0,
    sigma_scaling="none",
    hsic_term="input",
    hsic_norm="cka",
    batch_norm=True,
)

# Each preset: the settings, the thesis' reported test accuracy (None where it
# reports none for this network), and where we depart from the table and why.
PRESETS: Dict[str, dict] = {
    "thesis-hll-mnist-mlp": dict(
        settings=dict(HLL, dataset="mnist", model="mlp", hidden=[1024], dropout=0.1, epochs=100),
        reported=97.72,
        note="",
    ),
    "thesis-hll-fashion-mlp": dict(
        settings=dict(HLL, dataset="fashion-mnist", model="mlp", hidden=[1024], dropout=0.2, epochs=200),
        reported=None,
        note="Table 3-1 settings on the MLP; the thesis reports VGG8 for Fashion-MNIST",
    ),
    "thesis-hll-fashion-vgg8": dict(
        settings=dict(HLL, dataset="fashion-mnist", model="vgg8", dropout=0.2, epochs=200), reported=92.11, note=""
    ),
    "thesis-hll-fashion-vgg8-2x": dict(
        settings=dict(HLL, dataset="fashion-mnist", model="vgg8", width_mult=2.0, dropout=0.2, epochs=200),
        reported=93.46,
        note="",
    ),
    "thesis-hll-cifar10-vgg8": dict(
        settings=dict(
            HLL, dataset="cifar10", model="vgg8", dropout=0.25, epochs=400, augment=True, dim_in_decoder=2048
        ),
        reported=90.77,
        note="",
    ),
    "thesis-hll-cifar10-vgg8-2x": dict(
        settings=dict(
            HLL,
            dataset="cifar10",
            model="vgg8",
            width_mult=2.0,
            dropout=0.25,
            epochs=400,
            augment=True,
            dim_in_decoder=2048,
        ),
        reported=91.44,
        note="",
    ),
    "thesis-hbh-mnist-mlp": dict(
        settings=dict(
            HBH, dataset="mnist", model="mlp", hidden=[1024, 1024, 1024], optimizer="sgd", decay=0.8, threshold=0.45
        ),
        reported=None,
        note="the thesis reports HBH on an MNIST CNN (99.24 %), not on this MLP",
    ),
    "thesis-hbh-fashion-mlp": dict(
        settings=dict(
            HBH,
            dataset="fashion-mnist",
            model="mlp",
            hidden=[1024, 1024, 1024],
            optimizer="sgd",
            decay=0.75,
            threshold=0.6,
        ),
        reported=None,
        note="Pogodin & Latham's non-spiking pHSIC MLP: 86.5-88.6 %",
    ),
    "thesis-hbh-fashion-vgg8": dict(
        settings=dict(
            HBH,
            dataset="fashion-mnist",
            model="vgg8",
            optimizer="adamw",
            decay=0.75,
            threshold=0.6,
            sigma_scaling="dim",
        ),
        reported=89.80,
        note="",
    ),
}
SIGMA_NOTE = (
    "HBH presets optimise the thesis' term normalised (--hsic-norm cka; unnormalised it inflates the "
    "layer's own similarity structure, docs/hsic.md); sigma 5 unscaled on MLP firing rates, sigma^2 "
    "scaled by the feature count on conv maps, where sigma 5 unscaled collapses the kernel"
)


def preset(name: str) -> dict:
    if name not in PRESETS:
        raise ValueError(f"unknown preset '{name}'; `pysnn presets` lists them")
    return dict(PRESETS[name]["settings"])


def listing() -> str:
    lines = [f"{'preset':30} {'thesis':>8}  settings"]
    for name, p in PRESETS.items():
        s = p["settings"]
        reported = f"{p['reported']:.2f} %" if p["reported"] else "-"
        net = s["model"] + (
            f" {s.get('width_mult', 1):g}x" if s["model"] == "vgg8" else " " + "-".join(map(str, s["hidden"]))
        )
        lines.append(
            f"{name:30} {reported:>8}  {s['rule']} {s['dataset']} {net}, {s['optimizer']} lr {s['lr']:g}, "
            f"{s['epochs']} epochs, T {s['timesteps']}, decay {s['decay']:.3g}, threshold {s['threshold']:g}"
            + (f"  ({p['note']})" if p["note"] else "")
        )
    lines.append("Note: " + SIGMA_NOTE)
    return "\n".join(lines)
