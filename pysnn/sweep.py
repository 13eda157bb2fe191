"""`pysnn sweep --beta 1 2 4 8 32 [training flags]`: the accuracy-robustness
trade-off of the normalised HSIC bottleneck. Trains SNN-HBH with the thesis'
term normalised (--hsic-term input --hsic-norm cka) once per β, plus BPTT and
HBH with HSIC(Z, Z) on the same network and data, then writes beside the runs:
  information_plane.png  per hidden layer, nHSIC(X, Z) against nHSIC(Z, Y) at
                         the end of training, one point per β and baseline
  robustness.png         clean accuracy against accuracy under the strongest
                         level of each --noise-sweep
  sweep.json, sweep.txt  every number behind them."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import List

import torch

from .config import TrainConfig
from .evaluate import noisy_accuracy, parse_sweep
from .models import load_trained


def runs_of(base: TrainConfig, betas: List[float], out: Path) -> dict:
    runs = {
        f"beta-{b:g}": dataclasses.replace(
            base, rule="hbh", hsic_term="input", hsic_norm="cka", beta=b, out=str(out / f"beta-{b:g}")
        )
        for b in betas
    }
    runs["bptt"] = dataclasses.replace(base, rule="bptt", out=str(out / "bptt"))
    runs["hbh-self"] = dataclasses.replace(
        base, rule="hbh", hsic_term="self", hsic_norm="none", out=str(out / "hbh-self")
    )
    return runs


def measure(run_dir: str, sweeps: List[str], space: str, device: str) -> dict:
    from .analysis import layer_hsic_normalised

    config, model, dataset, _, _ = load_trained(run_dir, device)
    with torch.no_grad():
        images, labels = dataset.test.take(slice(0, 512)).to(device), dataset.test.labels[:512].to(device)
        layers = layer_hsic_normalised(model, images, labels, dataset.classes, config.sigma, config.sigma_scaling)
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    noise = {
        spec: noisy_accuracy(model, config, dataset, spec, device, space=space)
        for sweep in sweeps
        for spec in parse_sweep(sweep)
    }
    return {"clean_acc": metrics["test_acc"], "layers": layers, "noise": noise}


def _labelled_points(ax, points: dict) -> None:
    """One labelled point per run: circles for the betas, squares for the baselines."""
    for name, (x, y) in points.items():
        ax.scatter(x, y, marker="o" if name.startswith("beta") else "s")
        ax.annotate(name.replace("beta-", "β="), (x, y), fontsize=8)


def plot(results: dict, sweeps: List[str], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_layers = len(next(iter(results.values()))["layers"])
    fig, axes = plt.subplots(1, n_layers, figsize=(4.5 * n_layers, 4), squeeze=False)
    for layer, ax in enumerate(axes[0]):
        _labelled_points(
            ax, {name: (r["layers"][layer]["nhsic_xz"], r["layers"][layer]["nhsic_zy"]) for name, r in results.items()}
        )
        ax.set_xlabel("nHSIC(X, Z)")
        ax.set_ylabel("nHSIC(Z, Y)")
        ax.set_title(f"hidden layer {layer + 1}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(folder / "information_plane.png", dpi=120)
    plt.close(fig)
    strongest = [parse_sweep(s)[-1] for s in sweeps]
    fig, axes = plt.subplots(1, len(strongest), figsize=(4.5 * len(strongest), 4), squeeze=False)
    for spec, ax in zip(strongest, axes[0]):
        _labelled_points(ax, {name: (100 * r["clean_acc"], 100 * r["noise"][spec]) for name, r in results.items()})
        ax.set_xlabel("clean test accuracy (%)")
        ax.set_ylabel(f"accuracy under {spec} (%)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(folder / "robustness.png", dpi=120)
    plt.close(fig)


def sweep(base: TrainConfig, betas: List[float], sweeps: List[str], out: Path, space: str = "pixel", log=print) -> dict:
    from .train import train

    if not betas or any(not b > 0 for b in betas):
        raise ValueError(f"--beta needs one or more values > 0, got {betas}")
    for spec in sweeps:
        parse_sweep(spec)
    runs = runs_of(base, betas, out)
    for config in runs.values():
        config.validate()
    results = {}
    for name, config in runs.items():
        if (
            not (Path(config.out) / "metrics.json").is_file()
            or len(json.loads((Path(config.out) / "metrics.json").read_text())["epochs"]) < config.epochs
        ):
            log(f"== sweep: training {name}")
            train(config, log=log)
        results[name] = measure(config.out, sweeps, space, config.device)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(results, indent=2))
    lines = [
        f"{'run':12} {'clean':>7} "
        + " ".join(f"{s:>18}" for s in results[next(iter(results))]["noise"])
        + "  nHSIC(X,Z)/nHSIC(Z,Y) per layer"
    ]
    for name, r in results.items():
        lines.append(
            f"{name:12} {100 * r['clean_acc']:7.2f} "
            + " ".join(f"{100 * a:18.2f}" for a in r["noise"].values())
            + "  "
            + "  ".join(f"{l['nhsic_xz']:.3f}/{l['nhsic_zy']:.3f}" for l in r["layers"])
        )
    (out / "sweep.txt").write_text("\n".join(lines) + "\n")
    plot(results, sweeps, out)
    log("\n".join(lines))
    log(
        f"written: {out / 'sweep.txt'}, {out / 'sweep.json'}, {out / 'information_plane.png'}, {out / 'robustness.png'}"
    )
    return results


def main(args: argparse.Namespace, base: TrainConfig) -> None:
    sweeps = args.noise_sweep or ["gaussian:0,0.2,0.4", "salt-pepper:0,0.1,0.2"]
    sweep(base, args.beta, sweeps, Path(args.out or "runs/sweep"), args.noise_space)
