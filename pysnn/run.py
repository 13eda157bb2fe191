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
from .epoch import CheckpointSchedule, EpochState, check_finite
from .learning import make_trainer
from .models import SpikingNetwork, build_model


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write to a temporary file beside `path`, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2)
        os.replace(tmp, path)
    except OSError as error:  # a full disk: the previous file stays
        os.unlink(tmp)
        raise OSError(f"cannot write {path} ({error.strerror}); the previous one is kept") from None


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
    schedule: Optional[CheckpointSchedule] = None
    position: Optional[dict] = None  # where in its epoch the checkpoint resumed from was taken

    @property
    def is_main(self) -> bool:
        return self.dist is None or self.dist.is_main

    def start_epoch(self, epoch: int) -> EpochState:
        """The epoch's state: from the checkpoint's position when the run
        resumes inside this epoch, else fresh (before the epoch's shuffle)."""
        if self.position is not None and self.position["epoch"] == epoch:
            state, self.position = EpochState.from_dict(self.position), None
            return state
        return EpochState(epoch, self.generator.get_state())

    def batches(self, state: EpochState):
        """The epoch's global batches from `state.batch` on (augmented), the
        same on every rank: the shuffle is redrawn from the epoch's starting
        generator state, then the generator continues from where it was."""
        split, size = self.dataset.train, self.config.batch_size
        current = self.generator.get_state()
        self.generator.set_state(state.order_rng)
        order = torch.randperm(len(split), generator=self.generator)
        if state.batch:
            self.generator.set_state(current)
        for images, labels in datasets.batches(split, size, shuffle=True, order=order, first=state.batch):
            if self.augment:
                images = datasets.augment_cifar(images, self.generator)
            yield images, labels

    def progress(self, iterable, epoch: int, total: int, initial: int = 0):
        from tqdm import tqdm

        return tqdm(
            iterable,
            total=total,
            initial=initial,
            desc=f"epoch {epoch}/{self.config.epochs}",
            disable=not (self.config.progress and self.is_main),
            leave=False,
            dynamic_ncols=True,
        )

    def checkpoint_due(self, state: EpochState) -> bool:
        """Whether to checkpoint after `state.batch` batches; every rank of a
        distributed run gets rank 0's answer (the clocks differ)."""
        if state.batch >= self.batches_per_epoch:
            return False  # the epoch's own checkpoint follows
        due = self.schedule.due(state.batch)
        if self.config.parallel == "data" and self.schedule.timed:
            due = self.dist.agree(due)  # (layer parallel: stage 0 alone decides and tells the others)
        return due

    def save_position(self, state: EpochState, extra: Optional[dict] = None) -> None:
        """Rank 0: a mid-epoch checkpoint, after `state.batch` batches."""
        checkpoint.save(
            self.out,
            model=self.model,
            trainer=self.trainer,
            epoch=state.epoch - 1,
            metrics=self.metrics,
            generator=self.generator,
            extra={**(extra or {}), "position": state.to_dict()},
        )
        self.schedule.saved()

    def check_finite(self, loss: float, state: EpochState) -> None:
        check_finite(loss, self.model, state, self.out)

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
            "samples": seen,
            **probe(self.model, self.dataset, self.config, self.device),
        }
        self.metrics["epochs"].append(record)
        self.metrics["test_acc"] = test_acc
        target = self.config.stop_at_accuracy
        if target is not None and test_acc >= target:
            self.metrics["stopped_at"] = {"epoch": epoch, "test_acc": test_acc, "target": target}
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
        self.schedule.saved()
        self.log(
            f"epoch {epoch:3d}/{self.config.epochs}  train loss {record['train_loss']:.4f} "
            f"acc {record['train_acc']:.4f}  test loss {test_loss:.4f} acc {test_acc:.4f}  {seconds:.1f}s"
        )

    def stop_check_due(self, state: EpochState) -> bool:
        """--stop-check-every: whether to evaluate after `state.batch` batches
        (an epoch's last batch is left to the epoch's own evaluation)."""
        every = self.config.stop_check_every
        return bool(every) and state.batch % every == 0 and state.batch < self.batches_per_epoch

    def reached_target_inside(self, state: EpochState) -> bool:
        """Rank 0 evaluates the test set after `state.batch` batches; every rank
        learns whether it reached --stop-at-accuracy. When it did, the metrics
        record where, and the caller saves the position and stops."""
        reached = False
        if self.is_main:
            _, test_acc = evaluate(self.model, self.dataset.test, self.config.batch_size, self.device)
            self.trainer.train()
            reached = test_acc >= self.config.stop_at_accuracy
            if reached:
                self.metrics["test_acc"] = test_acc
                self.metrics["stopped_at"] = {
                    "epoch": state.epoch,
                    "batch": state.batch,
                    "test_acc": test_acc,
                    "target": self.config.stop_at_accuracy,
                }
        return self.dist.agree(reached) if self.dist is not None else reached

    @property
    def reached_target(self) -> bool:
        """--stop-at-accuracy: an epoch reached it (known to rank 0, and to every
        rank of a run resumed after it)."""
        return "stopped_at" in self.metrics

    def stop_now(self) -> bool:
        """After an epoch: whether the run stops there, the same on every rank."""
        if self.dist is None or self.config.stop_at_accuracy is None:
            return self.reached_target
        return self.dist.agree(self.is_main and self.reached_target)

    def finish(self) -> dict:
        if not self.is_main:
            return self.metrics
        try:
            from .plot import plot_run

            if self.metrics["epochs"]:  # (a run stopped inside its first epoch has no curve)
                plot_run(self.out)
        except ImportError:
            self.log("matplotlib is not installed: no plots (pip install matplotlib)")
        if self.reached_target:
            stop = self.metrics["stopped_at"]
            where = f"after epoch {stop['epoch']}"
            if "batch" in stop:
                where = f"in epoch {stop['epoch']} after {stop['batch']} batches"
            self.log(f"stopped {where}: test accuracy {stop['test_acc']:.4f} reached {stop['target']:.4f}")
        self.log(
            f"{run_name(self.config)}: test accuracy {self.metrics['test_acc']:.4f} after "
            f"{len(self.metrics['epochs'])} epochs ({sum(e['seconds'] for e in self.metrics['epochs']):.0f}s "
            f"training); metrics in {self.out / 'metrics.json'}"
        )
        return self.metrics


def prepare(config: TrainConfig, log=print, resume: Optional[str] = None) -> Run:
    """Loads the data and builds the model and trainer of `config`, or of the
    run in `resume` (continued from its checkpoint, at an epoch boundary or
    inside an epoch; "auto": config.out's run if it has a checkpoint); joins
    the process group of a distributed run (rank 0 alone logs and writes)."""
    payload = None
    if resume == "auto":
        payload = _auto_resume(config, log)
        resume = config.out if payload is not None else None
    if resume is not None:
        payload = payload or checkpoint.load(Path(resume))
        checkpoint.check_version(payload, Path(resume))
        overrides = {k: getattr(config, k) for k in RUNTIME_FIELDS}
        config = TrainConfig.from_dict({**payload["config"], **overrides, "out": str(resume)})
    config.validate()
    context = distributed.setup(config)
    if context is not None and not context.is_main:
        log = _silent
    # Saved resolved, so a run rebuilds the same network whatever the defaults become.
    config = resolved(config)
    if context is not None:
        context.check_same_config(config.to_dict())
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
    first_epoch, position = 1, None
    if payload is not None:
        checkpoint.restore(payload, model=model, trainer=trainer, generator=generator)
        metrics = payload["metrics"]
        metrics["config"] = config.to_dict()
        first_epoch = payload["epoch"] + 1
        position = payload.get("position")
        if position is not None:
            _check_layout_of_position(payload, config, context)
            log(f"resuming {out} in epoch {first_epoch} after {position['batch']} batches")
        else:
            log(f"resuming {out} after epoch {payload['epoch']}")
    if context is None or context.is_main:
        _check_writable(out)
        write_json_atomic(out / "metrics.json", metrics)
    schedule = CheckpointSchedule(config.checkpoint_every, config.checkpoint_minutes)
    return Run(
        config,
        dataset,
        model,
        trainer,
        device,
        out,
        generator,
        augment,
        metrics,
        first_epoch,
        payload,
        log,
        context,
        schedule,
        position,
    )


def resolved(config: TrainConfig) -> TrainConfig:
    """`config` with the defaults that depend on other settings made explicit."""
    return dataclasses.replace(
        config,
        batch_norm=config.uses_batch_norm(),
        encoder=config.resolved_encoder(),
        low_memory=config.uses_low_memory(),
    )


def _auto_resume(config: TrainConfig, log) -> Optional[dict]:
    """--resume auto: the checkpoint of --out's run when it has one of this very
    configuration (else one line naming the difference), None when it has none."""
    if not config.out:
        raise ValueError("--resume auto needs --out DIR: the run directory to continue, or to start in")
    if not (Path(config.out) / checkpoint.FILENAME).is_file():
        if os.environ.get("RANK", "0") == "0":  # (before the process group: torchrun's rank)
            log(f"no checkpoint in {config.out}: starting the run")
        return None
    payload = checkpoint.load(Path(config.out))
    saved = TrainConfig.from_dict(payload["config"]).to_dict()  # (fields added since: defaults)
    ignored = set(RUNTIME_FIELDS) | {"out"}
    wanted = resolved(config).to_dict()
    differences = [
        f"--{key.replace('_', '-')} {saved.get(key)} there, {wanted[key]} here"
        for key in wanted
        if key not in ignored and saved.get(key) != wanted[key]
    ]
    if differences:
        raise checkpoint.CheckpointError(
            f"--resume auto: {config.out} holds a run of another configuration ({'; '.join(differences)}); "
            "use another --out, or the same settings"
        )
    return payload


def _check_layout_of_position(payload: dict, config: TrainConfig, context: Optional[DistContext]) -> None:
    """A mid-epoch checkpoint of data-parallel ranks holds each rank's share of
    the epoch (its running statistics, its dropout streams): it continues only
    in the same layout. One process and layer-parallel stages resume each other."""
    saved, world = payload.get("parallel", "none"), payload.get("world_size", 1)
    here = context.world if context is not None else 1
    if (saved == "data") != (config.parallel == "data") or (saved == "data" and world != here):
        taken = f"a {world}-process data-parallel run" if saved == "data" else "a run that is not data parallel"
        layout = f"--parallel data with {world} processes" if saved == "data" else "one process or --parallel layer"
        raise checkpoint.CheckpointError(
            f"the checkpoint was taken inside epoch {payload['epoch'] + 1} by {taken}: resume it in {layout}"
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
    "checkpoint_every",
    "checkpoint_minutes",
)


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ValueError(f"--out {out} is not writable ({error.strerror})") from None
