"""One training run: data, model, trainer, the epoch loop, metrics on disk."""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Optional, Tuple

import torch
from torch.nn import functional as F

from . import analysis, checkpoint
from . import data as datasets
from .config import TrainConfig
from .learning import make_trainer
from .models import SpikingNetwork, build
from .nn.blocks import NeuronConfig


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write to a temporary file beside `path`, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)


def run_name(config: TrainConfig) -> str:
    detail = config.loss if config.rule == "hll" else config.kernel if config.rule == "hbh" else "ce"
    return f"{config.dataset}-{config.model}-{config.rule}-{detail}-seed{config.seed}"


def build_model(config: TrainConfig, image_shape, classes: int) -> SpikingNetwork:
    """The network `config` describes, for images of `image_shape` ([C, H, W])."""
    neuron = NeuronConfig(decay=config.decay, threshold=config.threshold, surrogate=config.surrogate,
                          alpha=config.alpha, backend=config.backend)
    return build(config.model, image_shape, classes, hidden=config.hidden,
                 width_mult=config.width_mult, neuron=neuron, dropout=config.dropout,
                 batch_norm=config.uses_batch_norm(), timesteps=config.timesteps, encoder=config.encoder)


@torch.no_grad()
def evaluate(model: SpikingNetwork, split: datasets.Split, batch_size: int,
             device: torch.device) -> Tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` on `split`."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for images, labels in datasets.batches(split, batch_size, shuffle=False):
        images, labels = images.to(device), labels.to(device)
        logits = model(images)
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
    return loss_sum / len(split), correct / len(split)


@torch.no_grad()
def probe(model: SpikingNetwork, dataset: datasets.Dataset, config: TrainConfig, device: torch.device) -> dict:
    """Per-layer firing rates and HSIC(X, Z), HSIC(Z, Y) on the first 256 test images."""
    model.eval()
    images = dataset.test.images[:256].to(device)
    labels = dataset.test.labels[:256].to(device)
    return {"firing_rate": analysis.activity(model, images)["firing_rate"],
            "hsic": analysis.layer_hsic(model, images, labels, dataset.classes, config.sigma,
                                        config.sigma_scaling)}


def train(config: TrainConfig, log=print, resume: Optional[str] = None) -> dict:
    """Trains as `config` says, or continues the run in `resume`; returns the
    metrics, also written to RUN_DIR/metrics.json after every epoch, with a
    checkpoint beside them."""
    payload = None
    if resume is not None:
        payload = checkpoint.load(Path(resume))
        config = TrainConfig(**{**payload["config"], "out": str(resume), "progress": config.progress})
    config.validate()
    # Saved resolved, so a run rebuilds the same network whatever the defaults become.
    config = dataclasses.replace(config, batch_norm=config.uses_batch_norm())
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    dataset = datasets.load_dataset(config.dataset, config.data_dir, config.subset, config.download,
                                    config.seed)
    if config.batch_size > len(dataset.train):
        raise ValueError(f"--batch-size {config.batch_size} is larger than the training set "
                         f"({len(dataset.train)} images)")
    model = build_model(config, dataset.image_shape, dataset.classes).to(device)
    trainer = make_trainer(model, config, dataset.classes, dataset.image_shape)
    trainer.aux.to(device)
    out = Path(config.out or Path("runs") / run_name(config))
    augment = config.augment if config.augment is not None else config.dataset == "cifar10"
    generator = torch.Generator().manual_seed(config.seed)
    metrics = {"config": config.to_dict(), "epochs": [], "run_dir": str(out)}
    first_epoch = 1
    if payload is not None:
        checkpoint.restore(payload, model=model, trainer=trainer, generator=generator)
        metrics = payload["metrics"]
        first_epoch = payload["epoch"] + 1
        log(f"resuming {out} after epoch {payload['epoch']}")
    _check_writable(out)
    write_json_atomic(out / "metrics.json", metrics)

    from tqdm import tqdm

    try:
        for epoch in range(first_epoch, config.epochs + 1):
            start = time.perf_counter()
            trainer.train()
            loss_sum = correct = seen = 0
            n_batches = -(-len(dataset.train) // config.batch_size)
            bar = tqdm(datasets.batches(dataset.train, config.batch_size, shuffle=True, generator=generator),
                       total=n_batches, desc=f"epoch {epoch}/{config.epochs}", disable=not config.progress,
                       leave=False, dynamic_ncols=True)
            for images, labels in bar:
                if augment:
                    images = datasets.augment_cifar(images, generator)
                images, labels = images.to(device), labels.to(device)
                loss, logits = trainer.step(images, labels)
                loss_sum += loss * len(labels)
                correct += (logits.argmax(1) == labels).sum().item()
                seen += len(labels)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}")
            trainer.end_epoch()
            train_seconds = time.perf_counter() - start
            test_loss, test_acc = evaluate(model, dataset.test, config.batch_size, device)
            record = {"epoch": epoch, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                      "test_loss": test_loss, "test_acc": test_acc, "seconds": train_seconds,
                      **probe(model, dataset, config, device)}
            metrics["epochs"].append(record)
            metrics["test_acc"] = test_acc
            checkpoint.save(out, model=model, trainer=trainer, epoch=epoch, metrics=metrics, generator=generator)
            write_json_atomic(out / "metrics.json", metrics)
            log(f"epoch {epoch:3d}/{config.epochs}  train loss {record['train_loss']:.4f} "
                f"acc {record['train_acc']:.4f}  test loss {test_loss:.4f} acc {test_acc:.4f}  "
                f"{train_seconds:.1f}s")
    except KeyboardInterrupt:
        done = metrics["epochs"][-1]["epoch"] if metrics["epochs"] else 0
        log(f"interrupted during epoch {done + 1}; the checkpoint after epoch {done} is in {out}. "
            f"Continue with: pysnn train --resume {out}")
        raise
    try:
        from .plot import plot_run

        plot_run(out)
    except ImportError:
        log("matplotlib is not installed: no plots (pip install matplotlib)")
    log(f"{run_name(config)}: test accuracy {metrics['test_acc']:.4f} after {config.epochs} epochs "
        f"({sum(e['seconds'] for e in metrics['epochs']):.0f}s training); metrics in {out / 'metrics.json'}")
    return metrics


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ValueError(f"--out {out} is not writable ({error.strerror})") from None
