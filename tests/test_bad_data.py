"""Bad data and bad states: one clear line, exit 2, and nothing of an
existing run overwritten."""

import gzip
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pysnn import checkpoint

TRAIN = [sys.executable, "-m", "pysnn", "train", "--no-progress"]


def _pysnn(*args, timeout=300):
    return subprocess.run([*TRAIN, *args], capture_output=True, text=True, timeout=timeout)


def _files(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.exists() else {}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished run directory whose files must survive every refused command."""
    out = tmp_path_factory.mktemp("finished") / "run"
    result = _pysnn("--subset", "100", "--epochs", "1", "--hidden", "16", "--timesteps", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def _refused(result, *needles):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pysnn: error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _idx_folder(tmp_path, corrupt):
    folder = tmp_path / "fmnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, shape in [("train-images-idx3-ubyte", (20, 28, 28)), ("t10k-images-idx3-ubyte", (10, 28, 28))]:
        from pysnn.data import write_idx

        write_idx(folder / name, rng.integers(0, 255, shape).astype(np.uint8))
    for name, n in [("train-labels-idx1-ubyte", 20), ("t10k-labels-idx1-ubyte", 10)]:
        from pysnn.data import write_idx

        write_idx(folder / name, rng.integers(0, 10, n).astype(np.uint8))
    target = folder / "train-images-idx3-ubyte"
    if corrupt == "truncated":
        target.write_bytes(target.read_bytes()[:1000])
    elif corrupt == "header":
        target.write_bytes(b"\x00\x00\x0d\x03" + target.read_bytes()[4:])  # float, not unsigned byte
    else:  # a gzip stream cut short
        gz = folder / "train-images-idx3-ubyte.gz"
        gz.write_bytes(gzip.compress(target.read_bytes())[:500])
        target.unlink()
    return folder


@pytest.mark.parametrize("corrupt", ["truncated", "header", "gzip"])
def test_a_corrupt_idx_file_is_refused(corrupt, finished_run, tmp_path):
    before = _files(finished_run)
    folder = _idx_folder(tmp_path, corrupt)
    result = _pysnn("--dataset", "fashion-mnist", "--data-dir", str(folder), "--out", str(finished_run))
    _refused(result, "train-images-idx3-ubyte")
    assert _files(finished_run) == before


@pytest.mark.parametrize("name", ["nmnist", "dvs-gesture", "shd"])
def test_a_corrupt_event_file_is_refused(name, finished_run, tmp_path):
    pytest.importorskip("tonic", reason="event data sets are read through Tonic")
    from event_files import write_dvs_gesture, write_nmnist, write_shd

    {"nmnist": write_nmnist, "dvs-gesture": write_dvs_gesture, "shd": write_shd}[name](tmp_path)
    suffix = {"nmnist": ".bin", "dvs-gesture": ".npy", "shd": ".h5"}[name]
    victim = sorted(tmp_path.rglob(f"*{suffix}"))[0]
    victim.write_bytes(victim.read_bytes()[:37])  # cut inside a record
    before = _files(finished_run)
    result = _pysnn("--dataset", name, "--data-dir", str(tmp_path), "--out", str(finished_run), "--epochs", "1")
    _refused(result, victim.name)
    assert _files(finished_run) == before


def test_a_checkpoint_of_another_model_is_refused(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    payload = checkpoint.load(run)
    payload["model"]["blocks.0.layer.weight"] = torch.zeros(3, 3)
    torch.save(payload, run / checkpoint.FILENAME)
    before = _files(run)
    _refused(_pysnn("--resume", str(run)), "does not fit this model")
    assert _files(run) == before


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4M", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        out = disk / "run"
        args = ["--subset", "600", "--hidden", "128", "--epochs", "3", "--timesteps", "4", "--checkpoint-every", "1"]
        proc = subprocess.Popen([*TRAIN, *args, "--out", str(out)], stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while not (out / checkpoint.FILENAME).is_file() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.002)
        filler = disk / "filler"
        with open(filler, "wb") as f:  # fill what is left, so the next checkpoint cannot be written
            try:
                while True:
                    f.write(bytes(65536))
                    f.flush()
            except OSError:
                pass
        stderr = proc.communicate(timeout=120)[1]
        assert proc.returncode == 2, stderr
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and "No space left on device" in lines[0], stderr
        kept = checkpoint.load(out)  # the previous checkpoint, whole
        assert kept["position"]["batch"] >= 1 or kept["epoch"] >= 1
        assert not [p for p in out.iterdir() if p.name.startswith(".")], "a temporary file was left behind"
    finally:
        subprocess.run(["umount", str(disk)])
