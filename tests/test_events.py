"""Event data sets (N-MNIST, DVS Gesture, SHD) read through Tonic from small
synthetic files in their real on-disk layout, binned to frames, and trained on."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from event_files import write_dvs_gesture, write_nmnist, write_shd

pytest.importorskip("tonic", reason="event data sets are read through Tonic (pip install --no-deps tonic ...)")

from pysnn import data  # noqa: E402
from pysnn.events import EventDataError, EventDataNotFound  # noqa: E402

WRITERS = {"nmnist": write_nmnist, "dvs-gesture": write_dvs_gesture, "shd": write_shd}
SHAPES = {"nmnist": (2, 34, 34), "dvs-gesture": (2, 32, 32), "shd": (1, 700)}


@pytest.fixture(scope="module")
def event_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("events")
    for write in WRITERS.values():
        write(root)
    return root


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_loads_and_bins_from_the_original_layout(name, event_root):
    dataset = data.load_dataset(name, str(event_root), timesteps=7, progress=False)
    assert dataset.frames and dataset.image_shape == SHAPES[name]
    for split in (dataset.train, dataset.test):
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (7, *SHAPES[name])
        assert split.images.sum() > 0 and split.take(slice(0, 2)).dtype == torch.float32
    assert set(dataset.train.labels.tolist()) == set(range(dataset.classes))
    again = data.load_dataset(name, str(event_root), timesteps=7, progress=False)  # from the cache
    assert torch.equal(again.train.images, dataset.train.images)
    assert list((event_root / ".pysnn-cache").glob(f"{name}-train-T7-*.pt"))


def test_nmnist_frames_count_the_events(event_root):
    """Every event of a file lands in one bin of its pixel and polarity."""
    from tonic.io import read_mnist_file

    dataset = data.load_dataset("nmnist", str(event_root), timesteps=5, subset=4, progress=False)
    files = sorted((event_root / "NMNIST" / "Train").rglob("*.bin"))
    index = np.sort(np.random.default_rng(0).choice(len(files), 4, replace=False))
    events = read_mnist_file(str(files[index[0]]), dtype=np.dtype([("x", int), ("y", int), ("t", int), ("p", int)]))
    frames = dataset.train.images[0].sum(0)  # [2, 34, 34] counts over all bins
    expected = np.zeros((2, 34, 34), np.int64)
    np.add.at(expected, (events["p"], events["y"], events["x"]), 1)
    # Tonic's ToFrame leaves out events exactly at the last bin edge
    assert (frames.numpy() <= expected).all() and frames.sum() >= expected.sum() - 1


@pytest.mark.parametrize(
    "name, rule, model",
    [
        ("nmnist", "hll", "mlp"),
        ("nmnist", "bptt", "vgg8"),
        ("dvs-gesture", "hbh", "cnn"),
        ("dvs-gesture", "hll", "cnn"),
        ("shd", "bptt", "mlp"),
        ("shd", "hbh", "mlp"),
    ],
)
def test_rules_train_on_event_data(name, rule, model, event_root, tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pysnn",
            "train",
            "--no-progress",
            "--dataset",
            name,
            "--data-dir",
            str(event_root),
            "--rule",
            rule,
            "--model",
            model,
            "--hidden",
            "32",
            "--width-mult",
            "0.0625",
            "--timesteps",
            "4",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["encoder"] == "events"
    assert all(np.isfinite(e["train_loss"]) for e in metrics["epochs"])


def test_event_run_exports_to_nir_and_back(event_root, tmp_path):
    pytest.importorskip("nir")
    from pysnn.nir import from_nir, read

    out = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pysnn",
            "train",
            "--no-progress",
            "--dataset",
            "nmnist",
            "--data-dir",
            str(event_root),
            "--model",
            "cnn",
            "--rule",
            "bptt",
            "--timesteps",
            "4",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "pysnn", "export", str(out), "--nir", str(tmp_path / "m.nir")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    graph = read(tmp_path / "m.nir")
    assert tuple(graph.nodes["input"].input_type["input"]) == (2, 34, 34)
    model = from_nir(graph)
    assert model.encoder == "events" and model.timesteps == 4
    frames = data.load_dataset("nmnist", str(event_root), timesteps=4, progress=False).test.take(slice(0, 4))
    assert model(frames).shape == (4, 10)


def test_bptt_learns_the_synthetic_classes(event_root):
    from pysnn.config import TrainConfig
    from pysnn.train import train

    config = TrainConfig(
        dataset="shd",
        data_dir=str(event_root),
        rule="bptt",
        hidden=[64],
        timesteps=4,
        epochs=8,
        batch_size=8,
        progress=False,
        out=str(event_root / "runs" / "shd-bptt"),
    )
    result = train(config, log=lambda *a, **k: None)
    assert result["test_acc"] >= 0.5  # 20 classes: chance is 0.05


def test_missing_data_names_the_expected_layout(tmp_path):
    with pytest.raises(EventDataNotFound, match=r"NMNIST/Train/<digit>/\*\.bin"):
        data.load_dataset("nmnist", str(tmp_path), progress=False)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pysnn",
            "train",
            "--dataset",
            "shd",
            "--data-dir",
            str(tmp_path),
            "--no-progress",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "SHD/shd_train.h5" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_wrong_layout_is_one_clear_error(tmp_path):
    folder = tmp_path / "NMNIST" / "Train" / "3"
    folder.mkdir(parents=True)
    (folder / "00000.bin").write_bytes(b"\x01\x02\x03")  # not a multiple of 5 bytes
    (tmp_path / "NMNIST" / "Test" / "3").mkdir(parents=True)
    (tmp_path / "NMNIST" / "Test" / "3" / "00000.bin").write_bytes(bytes(10))
    with pytest.raises(EventDataError, match="00000.bin is not in the expected format"):
        data.load_dataset("nmnist", str(tmp_path), progress=False)
    (tmp_path / "SHD").mkdir()
    (tmp_path / "SHD" / "shd_train.h5").write_bytes(b"garbage")
    (tmp_path / "SHD" / "shd_test.h5").write_bytes(b"garbage")
    with pytest.raises(EventDataError, match="do not have the expected layout"):
        data.load_dataset("shd", str(tmp_path), progress=False)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--dataset", "nmnist", "--encoder", "poisson"], "already spikes"),
        (["--dataset", "shd", "--model", "cnn"], "use --model mlp"),
        (["--dataset", "digits", "--encoder", "events"], "needs an event data set"),
    ],
)
def test_bad_event_flags_exit_2(flags, message, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pysnn", "train", "--no-progress", *flags, "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "run").exists()
