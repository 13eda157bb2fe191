"""Event-camera and spiking-audio data sets read through Tonic from their
original on-disk layout, binned to T frames per sample.

A sample becomes frames [T, C, H, W] (SHD: [T, 1, 700]) of event counts per
bin (Tonic's ToFrame with n_time_bins = T, counts clipped at 255 and stored
as uint8); the `events` encoder feeds frame t to the network at step t.
Decoded frames are cached next to the data (`.pysnn-cache/`), so only the
first run pays for reading tens of thousands of files.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch


@dataclass(frozen=True)
class EventSpec:
    tonic_class: str
    folder: str  # Tonic's folder under --data-dir (the Tonic class name)
    layout: str  # what the user must have there
    classes: int
    frame_shape: Tuple[int, ...]  # one frame after binning, [C, H, W] or [1, X]
    sensor_size: Tuple[int, int, int]  # Tonic's (x, y, p) after any downsampling
    spatial_factor: float = 1.0
    probe: Tuple[str, str] = ("", "")  # (subfolder, suffix): what shows the layout is there


EVENT_DATASETS: Dict[str, EventSpec] = {
    "nmnist": EventSpec(
        "NMNIST",
        "NMNIST",
        "NMNIST/Train/<digit>/*.bin and NMNIST/Test/<digit>/*.bin (the extracted train.zip and test.zip)",
        10,
        (2, 34, 34),
        (34, 34, 2),
        probe=("Train", ".bin"),
    ),
    # 128x128 is too large for a CPU MLP: Tonic's Downsample to 32x32 (documented in docs/data.md)
    "dvs-gesture": EventSpec(
        "DVSGesture",
        "DVSGesture",
        "DVSGesture/ibmGestureTrain/userNN_<lighting>/<label>.npy "
        "and DVSGesture/ibmGestureTest/... (Tonic's preprocessed npy files)",
        11,
        (2, 32, 32),
        (32, 32, 2),
        spatial_factor=0.25,
        probe=("ibmGestureTrain", ".npy"),
    ),
    "shd": EventSpec(
        "SHD",
        "SHD",
        "SHD/shd_train.h5 and SHD/shd_test.h5 (the unzipped files)",
        20,
        (1, 700),
        (700, 1, 1),
        probe=("", ".h5"),
    ),
}


def is_event_dataset(name: str) -> bool:
    return name in EVENT_DATASETS


class EventDataNotFound(FileNotFoundError):
    """The files are not there; the message gives the expected layout."""


class EventDataError(ValueError):
    """The files are there but not in the data set's format."""


def _tonic_dataset(name: str, root: Path, train: bool):
    """Tonic's class for `name`, told never to download: a missing layout is an error."""
    spec = EVENT_DATASETS[name]
    try:
        import tonic.datasets
    except ImportError:
        raise EventDataNotFound(
            f"{name}: event data sets are read through Tonic: pip install --no-deps tonic "
            f"importRosbag expelliarmus (README, 'Event data')"
        ) from None
    base = getattr(tonic.datasets, spec.tonic_class)
    sub, suffix = spec.probe
    if not train:
        sub = {"Train": "Test", "ibmGestureTrain": "ibmGestureTest"}.get(sub, sub)

    def check_exists(self) -> bool:
        folder = Path(self.location_on_system) / sub
        if suffix == ".h5":
            return (Path(self.location_on_system) / self.data_filename).is_file()
        return folder.is_dir() and next(folder.rglob(f"*{suffix}"), None) is not None

    def refuse_download(self) -> None:
        raise EventDataNotFound(
            f"{name}: {'training' if train else 'test'} files not found under {root}; "
            f"expected {spec.layout}. Nothing is downloaded: put the files there and pass "
            f"--data-dir {root}"
        )

    # The same class name, so Tonic's folder (save_to/<class name>) is unchanged.
    local = type(base.__name__, (base,), {"_check_exists": check_exists, "download": refuse_download})
    try:
        return local(str(root), train=train)
    except EventDataNotFound:
        raise
    except Exception as error:
        raise EventDataError(
            f"{name}: the files under {root / spec.folder} do not have the expected layout "
            f"({spec.layout}): {type(error).__name__}: {error}"
        ) from None


def _bin(name: str, events: np.ndarray, timesteps: int) -> np.ndarray:
    import tonic.transforms as transforms

    spec = EVENT_DATASETS[name]
    if spec.spatial_factor != 1.0:
        events = transforms.Downsample(spatial_factor=spec.spatial_factor)(events)
    frames = transforms.ToFrame(sensor_size=spec.sensor_size, n_time_bins=timesteps)(events)
    if frames.shape[0] != timesteps:  # Tonic returns fewer bins for a sample with no events
        padded = np.zeros((timesteps, *frames.shape[1:]), frames.dtype)
        padded[: frames.shape[0]] = frames
        frames = padded
    return np.clip(frames, 0, 255).astype(np.uint8).reshape(timesteps, *spec.frame_shape)


def _cache_path(root: Path, name: str, train: bool, timesteps: int, files: List[str], index: np.ndarray) -> Path:
    digest = hashlib.sha1()
    for f in files:
        stat = os.stat(f)
        digest.update(f"{f}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    digest.update(index.tobytes())
    split = "train" if train else "test"
    return root / ".pysnn-cache" / f"{name}-{split}-T{timesteps}-{digest.hexdigest()[:12]}.pt"


def load_split(
    name: str,
    root: Path,
    train: bool,
    timesteps: int,
    subset: Optional[int],
    seed: int,
    progress: Callable = lambda it, **kw: it,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(frames [N, T, ...] uint8, labels [N] int64) of one split; `subset` samples drawn before decoding."""
    dataset = _tonic_dataset(name, root, train)
    n = len(dataset)
    if n == 0:
        raise EventDataNotFound(
            f"{name}: no samples under {root / EVENT_DATASETS[name].folder}; expected {EVENT_DATASETS[name].layout}"
        )
    index = np.arange(n)
    if subset is not None and subset < n:
        index = np.sort(np.random.default_rng(seed + (0 if train else 1)).choice(n, subset, replace=False))
    files = (
        list(getattr(dataset, "data", []))
        if name != "shd"
        else [str(Path(dataset.location_on_system) / dataset.data_filename)]
    )
    cache = _cache_path(root, name, train, timesteps, [f for f in files if isinstance(f, str)], index)
    if cache.is_file():
        try:
            frames, labels = torch.load(cache)
            return frames, labels
        except Exception:
            pass  # a damaged cache is rebuilt
    frames = np.zeros((len(index), timesteps, *EVENT_DATASETS[name].frame_shape), np.uint8)
    labels = np.zeros(len(index), np.int64)
    for row, i in enumerate(progress(index, desc=f"{name} {'train' if train else 'test'}: binning events")):
        try:
            events, label = dataset[int(i)]
            frames[row] = _bin(name, events, timesteps)
            labels[row] = int(label)
        except Exception as error:
            where = files[int(i)] if name != "shd" else f"{files[0]}, sample {int(i)}"
            raise EventDataError(
                f"{name}: {where} is not in the expected format ({EVENT_DATASETS[name].layout}): "
                f"{type(error).__name__}: {error}"
            ) from None
    if labels.min() < 0 or labels.max() >= EVENT_DATASETS[name].classes:
        raise EventDataError(f"{name}: labels outside 0..{EVENT_DATASETS[name].classes - 1} under {root}")
    out = torch.from_numpy(frames), torch.from_numpy(labels)
    _save_cache(cache, out)
    return out


def _save_cache(path: Path, value) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            torch.save(value, f)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only data folder: decode again next time
