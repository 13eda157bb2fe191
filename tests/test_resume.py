"""Mid-epoch checkpoints: a run resumed from inside an epoch finishes equal
to the uninterrupted run (weights bitwise, every per-epoch figure), and
`--resume auto` serves the first start and every restart."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pysnn import checkpoint
from pysnn import run as run_module
from pysnn.config import TrainConfig
from pysnn.run import Run
from pysnn.train import train

BASE = dict(dataset="digits", subset=240, hidden=[48, 40], epochs=2, batch_size=30, timesteps=4, progress=False)
RULES = {
    "hll": dict(rule="hll", dropout=0.2),
    "hll-realtime": dict(rule="hll", update="realtime", dropout=0.1),
    "hbh": dict(rule="hbh", batch_norm=True, dropout=0.1),
    "bptt": dict(rule="bptt", dropout=0.2),
    "bptt-poisson": dict(rule="bptt", encoder="poisson"),  # input noise from the global generator
}


def numbers(value):
    """Every number of a metrics record, in a fixed order, timings left out."""
    if isinstance(value, dict):
        return [n for k in sorted(value) if k not in ("seconds", "run_dir", "config") for n in numbers(value[k])]
    if isinstance(value, list):
        return [n for v in value for n in numbers(v)]
    return [value]


def identical(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))


def snapshot_mid_epoch(at: int, copies: int = 1) -> None:
    """Copies a run's `at`-th mid-epoch checkpoint to RUN_DIR-snapshot/ (and
    RUN_DIR-snapshot2/...), as a kill right after it would leave the run directory."""
    original, counts = Run.save_position, {}

    def saving(self, state, extra=None):
        original(self, state, extra)
        counts[self.out] = counts.get(self.out, 0) + 1
        if counts[self.out] == at:
            for copy in range(copies):
                snapshot = Path(f"{self.out}-snapshot{copy + 1 if copy else ''}")
                snapshot.mkdir(exist_ok=True)
                shutil.copy(self.out / checkpoint.FILENAME, snapshot / checkpoint.FILENAME)

    Run.save_position = saving


def _train(out, resume=None, **kwargs):
    return train(TrainConfig(**{**BASE, **kwargs, "out": str(out)}), log=lambda m: None, resume=resume)


@pytest.mark.parametrize("name", sorted(RULES))
def test_resume_inside_an_epoch_equals_the_uninterrupted_run(name, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setattr(Run, "save_position", Run.save_position)  # undone after the test
    kwargs = RULES[name]
    reference = _train(tmp_path / "reference", **kwargs)
    snapshot_mid_epoch(3)  # 8 batches an epoch, a checkpoint every 3: epoch 2 after 3 batches
    checkpointed = _train(tmp_path / "run", checkpoint_every=3, **kwargs)
    taken = checkpoint.load(tmp_path / "run-snapshot")
    assert taken["epoch"] == 1 and taken["position"]["epoch"] == 2 and taken["position"]["batch"] == 3
    resumed = _train(None, resume=str(tmp_path / "run-snapshot"), checkpoint_every=3)
    final = {d: checkpoint.load(tmp_path / d)["model"] for d in ("reference", "run", "run-snapshot")}
    assert identical(final["reference"], final["run"])  # checkpointing does not change the run
    assert identical(final["reference"], final["run-snapshot"])
    assert numbers(resumed) == numbers(reference) == numbers(checkpointed)
    saved = json.loads((tmp_path / "run-snapshot" / "metrics.json").read_text())
    assert numbers(saved) == numbers(reference)


@pytest.mark.parametrize(
    "kwargs, every, expected",
    [  # the loss overflows first; BN's running variance overflows first (the loss still finite)
        (
            dict(batch_norm=False, lr=1e38),
            2,
            r"diverged at epoch 1, step 3: the loss is nan; blocks\.0\.layer\.weight is",
        ),
        (dict(batch_norm=True, lr=1e25), 1, r"diverged by epoch 1, step 2: blocks\.0\.norm\.running_var is non-finite"),
    ],
)
def test_a_diverging_run_names_the_step_and_keeps_the_last_good_checkpoint(kwargs, every, expected, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=expected) as error:
        _train(out, rule="bptt", optimizer="sgd", epochs=3, checkpoint_every=every, **kwargs)
    assert str(out) in str(error.value) and "\n" not in str(error.value)
    kept = checkpoint.load(out)
    assert kept["position"]["batch"] == every  # the checkpoint before the step that diverged
    assert all(torch.isfinite(t).all() for t in kept["model"].values() if t.is_floating_point())


def _pysnn(*args):
    return subprocess.run([sys.executable, "-m", "pysnn", *args], capture_output=True, text=True, timeout=600)


CLI = ["train", "--no-progress", "--subset", "600", "--hidden", "128", "--epochs", "2", "--timesteps", "4"]


def test_a_kill_inside_an_epoch_loses_only_the_batches_since_the_checkpoint(tmp_path):
    reference = _pysnn(*CLI, "--out", str(tmp_path / "reference"))
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "run"
    command = [sys.executable, "-m", "pysnn", *CLI, "--checkpoint-every", "4", "--out", str(out), "--resume", "auto"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / checkpoint.FILENAME).is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    proc.kill()
    assert proc.wait() < 0, "the run finished before it could be killed"
    assert "position" in checkpoint.load(out)  # the first checkpoint is inside epoch 1
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)  # the same command line
    assert again.returncode == 0, again.stderr
    assert "after 4 batches" in again.stdout or "after 8 batches" in again.stdout, again.stdout
    assert identical(checkpoint.load(out)["model"], checkpoint.load(tmp_path / "reference")["model"])
    want = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    assert numbers(json.loads((out / "metrics.json").read_text())) == numbers(want)


def test_resume_auto_starts_a_new_run_and_refuses_another_configuration(tmp_path):
    out = str(tmp_path / "run")
    first = _pysnn(*CLI[:-4], "--epochs", "1", "--timesteps", "2", "--out", out, "--resume", "auto")
    assert first.returncode == 0 and "starting the run" in first.stdout, first.stderr
    other = _pysnn(*CLI[:-4], "--epochs", "1", "--timesteps", "3", "--out", out, "--resume", "auto")
    assert other.returncode == 2
    assert "another configuration (--timesteps 2 there, 3 here)" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    missing = _pysnn(*CLI, "--resume", "auto")
    assert missing.returncode == 2 and "--resume auto needs --out" in missing.stderr


def test_a_checkpoint_of_another_pysnn_version_is_refused(tmp_path):
    _train(tmp_path / "run", epochs=1)
    payload = checkpoint.load(tmp_path / "run")
    payload["version"] = "0.0.1"
    torch.save(payload, tmp_path / "run" / checkpoint.FILENAME)
    result = _pysnn("train", "--resume", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "written by pysnn 0.0.1" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_stop_at_accuracy_ends_the_run_at_the_first_epoch_that_reaches_it(tmp_path):
    # digits, BPTT: about 0.6 after epoch 1 and past 0.8 within a few more
    full = _train(tmp_path / "full", rule="bptt", epochs=6)
    accuracies = [e["test_acc"] for e in full["epochs"]]
    target = accuracies[2]  # reached first after epoch 3 (or earlier, if accuracy fell after)
    first = next(i for i, a in enumerate(accuracies) if a >= target) + 1
    stopped = _train(tmp_path / "stopped", rule="bptt", epochs=6, stop_at_accuracy=target)
    assert len(stopped["epochs"]) == first and stopped["stopped_at"]["epoch"] == first
    assert numbers(stopped["epochs"]) == numbers(full["epochs"][:first])
    kept = checkpoint.load(tmp_path / "stopped")  # the checkpoint of that very epoch
    assert kept["epoch"] == first and kept["metrics"]["stopped_at"]["test_acc"] >= target
    again = _train(None, resume=str(tmp_path / "stopped"))  # resuming a stopped run trains no further
    assert len(again["epochs"]) == first


def test_stop_check_every_stops_inside_an_epoch_at_the_first_check_that_reaches_it(tmp_path, monkeypatch):
    # 8 batches an epoch, checks after batches 3 and 6, then the epoch's own evaluation
    seen, evaluate = [], run_module.evaluate
    monkeypatch.setattr(run_module, "evaluate", lambda *a: seen.append(evaluate(*a)[1]) or (0.0, seen[-1]))
    _train(tmp_path / "full", rule="bptt", epochs=2, stop_at_accuracy=1.0, stop_check_every=3)
    where = [(epoch, batch) for epoch in (1, 2) for batch in (3, 6, 8)]
    assert len(seen) == len(where)
    # the last evaluation inside an epoch that beats every earlier one: the stopped run ends there
    first = max(i for i, (_, batch) in enumerate(where) if batch < 8 and seen[i] > max(seen[:i], default=-1))
    accuracies = list(seen)
    seen.clear()
    stopped = _train(
        tmp_path / "stopped", rule="bptt", epochs=2, stop_at_accuracy=accuracies[first], stop_check_every=3
    )
    epoch, batch = where[first]
    assert stopped["stopped_at"]["epoch"] == epoch and stopped["stopped_at"]["batch"] == batch
    assert len(seen) == first + 1 and len(stopped["epochs"]) == epoch - 1
    kept = checkpoint.load(tmp_path / "stopped")
    assert kept["position"]["epoch"] == epoch and kept["position"]["batch"] == batch
    monkeypatch.setattr(run_module, "evaluate", evaluate)
    from pysnn.evaluate import run as evaluate_run

    assert evaluate_run(str(tmp_path / "stopped"))["clean_acc"] == stopped["test_acc"]  # the network it stopped with
    again = _train(None, resume=str(tmp_path / "stopped"))  # resuming a stopped run trains no further
    assert again["stopped_at"] == stopped["stopped_at"] and len(again["epochs"]) == epoch - 1
