"""`pysnn plot RUN_DIR`: PNGs of a run's metrics.json — accuracy and loss per
epoch, per-layer firing rates, and each layer's path in the information
plane, HSIC(X, Z) against HSIC(Z, Y)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_run(run_dir) -> List[Path]:
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    epochs = metrics["epochs"]
    if not epochs:
        raise ValueError(f"{run_dir}: no finished epoch to plot")
    x = [e["epoch"] for e in epochs]
    title = f"{run_dir.name}: {metrics['config']['rule']} on {metrics['config']['dataset']}"
    written = []

    fig, (acc, loss) = plt.subplots(1, 2, figsize=(10, 4))
    for split in ("train", "test"):
        acc.plot(x, [e[f"{split}_acc"] for e in epochs], marker="o", label=split)
        loss.plot(x, [e[f"{split}_loss"] for e in epochs], marker="o", label=split)
    acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    for ax in (acc, loss):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    written.append(_save(fig, run_dir / "curves.png"))

    if "firing_rate" in epochs[0]:
        fig, ax = plt.subplots(figsize=(6, 4))
        for layer in range(len(epochs[0]["firing_rate"])):
            ax.plot(x, [e["firing_rate"][layer] for e in epochs], marker="o", label=f"layer {layer}")
        ax.set(xlabel="epoch", ylabel="spikes per neuron per step", title=f"firing rates — {title}")
        ax.grid(alpha=0.3)
        ax.legend()
        written.append(_save(fig, run_dir / "firing_rates.png"))

    if "hsic" in epochs[0]:
        fig, ax = plt.subplots(figsize=(6, 5))
        for layer in range(len(epochs[0]["hsic"])):
            xz = [e["hsic"][layer]["hsic_xz"] for e in epochs]
            zy = [e["hsic"][layer]["hsic_zy"] for e in epochs]
            (line,) = ax.plot(xz, zy, marker="o", label=f"layer {layer}")
            ax.annotate(f"{x[-1]}", (xz[-1], zy[-1]), color=line.get_color())
        ax.set(xlabel="HSIC(X, Z)", ylabel="HSIC(Z, Y)", title=f"information plane — {title}")
        ax.grid(alpha=0.3)
        ax.legend()
        written.append(_save(fig, run_dir / "information_plane.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="pysnn plot", description=__doc__)
    parser.add_argument("run_dir")
    args = parser.parse_args(argv)
    for path in plot_run(args.run_dir):
        print(path)
