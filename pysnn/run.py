"""A training run's state and what every layout does per epoch: `prepare`
loads the data and builds the model and trainer (or restores them from a
checkpoint); `Run` holds them and evaluates, probes, checkpoints and writes
metrics.json after each epoch. The epoch loops are in `train.py` (one process,
data parallel) and `distributed/pipeline.py` (layer parallel)."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Optional, Tuple

import torch
from torch.nn import functional as F

from . import analysis, checkpoint, cpu_memory, distributed
from . import data as datasets
from .config import TrainConfig
from .distributed import DistContext
from .learning import make_trainer
from .models import SpikingNetwork, build_model


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


@torch.no_grad()
def evaluate(
    model: SpikingNetwork, split: datasets.Split, batch_size: int, device: torch.device
) -> Tuple[float, float]:
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
    images = dataset.test.take(slice(0, 256)).to(device)
    labels = dataset.test.labels[:256].to(device)
    return {
        "firing_rate": analysis.activity(model, images)["firing_rate"],
        "hsic": analysis.layer_hsic(model, images, labels, dataset.classes, config.sigma, config.sigma_scaling),
    }


@dataclasses.dataclass
class Run:
    """Everything one training run holds, in one process of a distributed run too."""

    config: TrainConfig
    dataset: datasets.Dataset
    model: SpikingNetwork
    trainer: object
    device: torch.device
    out: Path
    generator: torch.Generator
    augment: bool
    metrics: dict
    first_epoch: int
    payload: Optional[dict]  # the checkpoint resumed from
    log: Callable[[str], None]
    dist: Optional[DistContext] = None

    @property
    def is_main(self) -> bool:
        return self.dist is None or self.dist.is_main

    def batches(self):
        """The epoch's global batches (augmented), the same on every rank."""
        for images, labels in datasets.batches(
            self.dataset.train, self.config.batch_size, shuffle=True, generator=self.generator
        ):
            if self.augment:
                images = datasets.augment_cifar(images, self.generator)
            yield images, labels

    def progress(self, iterable, epoch: int, total: int):
        from tqdm import tqdm

        return tqdm(
            iterable,
            total=total,
            desc=f"epoch {epoch}/{self.config.epochs}",
            disable=not (self.config.progress and self.is_main),
            leave=False,
            dynamic_ncols=True,
        )

    @property
    def batches_per_epoch(self) -> int:
        return -(-len(self.dataset.train) // self.config.batch_size)

    def finish_epoch(
        self, epoch: int, loss_sum: float, correct: float, seen: float, seconds: float, extra: Optional[dict] = None
    ) -> None:
        """Rank 0: evaluates, probes, checkpoints and writes metrics.json."""
        test_loss, test_acc = evaluate(self.model, self.dataset.test, self.config.batch_size, self.device)
        record = {
            "epoch": epoch,
            "train_loss": loss_sum / seen,
            "train_acc": correct / seen,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "seconds": seconds,
            **probe(self.model, self.dataset, self.config, self.device),
        }
        self.metrics["epochs"].append(record)
        self.metrics["test_acc"] = test_acc
        checkpoint.save(
            self.out,
            model=self.model,
            trainer=self.trainer,
            epoch=epoch,
            metrics=self.metrics,
            generator=self.generator,
            extra=extra,
        )
        write_json_atomic(self.out / "metrics.json", self.metrics)
        self.log(
            f"epoch {epoch:3d}/{self.config.epochs}  train loss {record['train_loss']:.4f} "
            f"acc {record['train_acc']:.4f}  test loss {test_loss:.4f} acc {test_acc:.4f}  {seconds:.1f}s"
        )

    def finish(self) -> dict:
        if not self.is_main:
            return self.metrics
        try:
            from .plot import plot_run

            plot_run(self.out)
        except ImportError:
            self.log("matplotlib is not installed: no plots (pip install matplotlib)")
        self.log(
            f"{run_name(self.config)}: test accuracy {self.metrics['test_acc']:.4f} after "
            f"{self.config.epochs} epochs ({sum(e['seconds'] for e in self.metrics['epochs']):.0f}s "
            f"training); metrics in {self.out / 'metrics.json'}"
        )
        return self.metrics


def prepare(config: TrainConfig, log=print, resume: Optional[str] = None) -> Run:
    """Loads the data and builds the model and trainer of `config`, or of the
    run in `resume` (continued from its checkpoint); joins the process group
    of a distributed run (rank 0 alone logs and writes)."""
    payload = None
    if resume is not None:
        payload = checkpoint.load(Path(resume))
        overrides = {k: getattr(config, k) for k in RUNTIME_FIELDS}
        config = TrainConfig(**{**payload["config"], **overrides, "out": str(resume)})
    config.validate()
    context = distributed.setup(config)
    if context is not None and not context.is_main:
        log = _silent
    # Saved resolved, so a run rebuilds the same network whatever the defaults become.
    config = dataclasses.replace(config, batch_norm=config.uses_batch_norm(), encoder=config.resolved_encoder())
    torch.manual_seed(config.seed)
    device = context.device if context is not None else torch.device(config.device)
    if device.type == "cpu":
        cpu_memory.apply(config.cpu_memory)
    dataset = datasets.load_dataset(
        config.dataset, config.data_dir, config.subset, config.download, config.seed, config.timesteps, config.progress
    )
    if config.batch_size > len(dataset.train):
        raise ValueError(
            f"--batch-size {config.batch_size} is larger than the training set ({len(dataset.train)} images)"
        )
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
        metrics["config"] = config.to_dict()
        first_epoch = payload["epoch"] + 1
        log(f"resuming {out} after epoch {payload['epoch']}")
    if context is None or context.is_main:
        _check_writable(out)
        write_json_atomic(out / "metrics.json", metrics)
    return Run(
        config, dataset, model, trainer, device, out, generator, augment, metrics, first_epoch, payload, log, context
    )


def _silent(message: str) -> None:
    pass


# Settings of how a run executes, not what it learns: a resumed run takes them
# from the command line (a checkpoint from any layout resumes in any other).
RUNTIME_FIELDS = (
    "progress",
    "cpu_memory",
    "parallel",
    "stages_split",
    "pipeline_depth",
    "dist_timeout",
    "global_kernels",
)


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ValueError(f"--out {out} is not writable ({error.strerror})") from None
