"""Datasets as in-memory tensors: images float32 in [0, 1], [N, C, H, W];
labels int64. Nothing is downloaded unless `download=True` and a network
exists (torchvision is then used)."""

from __future__ import annotations

import gzip
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import events


class DatasetNotFound(FileNotFoundError):
    """A dataset's files are missing; the message says where we looked and how to get them."""


@dataclass
class Split:
    images: torch.Tensor  # [N, C, H, W] float32 in [0, 1]; event data: frames [N, T, ...] uint8 counts
    labels: torch.Tensor  # [N] int64

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index) -> torch.Tensor:
        """The inputs at `index` as float32 (event counts are stored as uint8)."""
        images = self.images[index]
        return images if images.is_floating_point() else images.float()

    def subset(self, n: int, seed: int) -> "Split":
        index = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return Split(self.images[index], self.labels[index])


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    classes: int
    frames: bool = False  # event data: each sample is T frames, fed one per step

    @property
    def image_shape(self) -> Tuple[int, ...]:
        """One input's shape fed at one time step ([C, H, W], or [1, X] for audio events)."""
        return tuple(self.train.images.shape[2 if self.frames else 1 :])


# ---- file formats ----


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, OSError, zlib.error) as error:  # a gzip stream cut short or corrupt
        raise ValueError(f"{path}: cannot be read ({error})") from None
    if len(data) < 4:
        raise ValueError(f"{path}: {len(data)} bytes, not an IDX file (truncated?)")
    zero, dtype_code, dims = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path}: expected {int(np.prod(shape))} values, found {array.size} (truncated?)")
    return array.reshape(shape)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Writes an unsigned-byte IDX file (gzipped when the name ends in .gz)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _find(name: str, candidates: Sequence[Path], files: Sequence[str]) -> Dict[str, Path]:
    """For each wanted file, the first candidate folder holding it (plain or .gz)."""
    for folder in candidates:
        found = {}
        for stem in files:
            for variant in (stem, stem + ".gz"):
                if (folder / variant).is_file():
                    found[stem] = folder / variant
                    break
        if len(found) == len(files):
            return found
    looked = "\n  ".join(str(c) for c in candidates)
    raise DatasetNotFound(
        f"{name}: files {', '.join(files)} (or .gz) not found. Looked in:\n  {looked}\n" + HOW_TO_GET.get(name, "")
    )


HOW_TO_GET = {
    "fashion-mnist": "Get it with `apt-get install dataset-fashion-mnist` (Debian), pass --data-dir to a "
    "folder with the IDX files, or use --download where a network exists.",
    "mnist": "Pass --data-dir to a folder with the MNIST IDX files (torchvision's MNIST/raw works), "
    "or use --download where a network exists.",
    "cifar10": "Pass --data-dir to the folder holding cifar-10-batches-py (the python version), "
    "or use --download where a network exists.",
}

IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def _idx_dataset(name: str, folders: List[Path]) -> Dataset:
    paths = _find(name, folders, IDX_FILES)
    arrays = [read_idx(paths[f]) for f in IDX_FILES]

    def split(images, labels):
        return Split(
            torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
        )

    return Dataset(name, split(arrays[0], arrays[1]), split(arrays[2], arrays[3]), 10)


def _folders(data_dir: Optional[str], subfolders: Sequence[str], system: Sequence[str] = ()) -> List[Path]:
    bases = [Path(data_dir)] if data_dir else [Path("data")]
    out = []
    for base in bases:
        out += [base] + [base / s for s in subfolders]
    return out + [Path(s) for s in system]


def load_fashion_mnist(data_dir: Optional[str] = None) -> Dataset:
    return _idx_dataset(
        "fashion-mnist",
        _folders(data_dir, ["fashion-mnist", "FashionMNIST/raw"], ["/usr/share/datasets/fashion-mnist"]),
    )


def load_mnist(data_dir: Optional[str] = None) -> Dataset:
    return _idx_dataset("mnist", _folders(data_dir, ["mnist", "MNIST/raw"]))


def load_cifar10(data_dir: Optional[str] = None) -> Dataset:
    batches = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    folders = _folders(data_dir, ["cifar-10-batches-py", "cifar10/cifar-10-batches-py"])
    for folder in folders:
        if all((folder / b).is_file() for b in batches):
            break
    else:
        looked = "\n  ".join(str(c) for c in folders)
        raise DatasetNotFound(
            f"cifar10: the python batches ({', '.join(batches)}) not found. "
            f"Looked in:\n  {looked}\n{HOW_TO_GET['cifar10']}"
        )

    def read(names):
        images, labels = [], []
        for b in names:
            with open(folder / b, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels += list(entry["labels"])
        return Split(
            torch.from_numpy(np.concatenate(images).astype(np.float32) / 255.0), torch.tensor(labels, dtype=torch.int64)
        )

    return Dataset("cifar10", read(batches[:5]), read(batches[5:]), 10)


def load_digits(data_dir: Optional[str] = None, seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's 8×8 handwritten digits (1,797 images, shipped in its wheel), a fixed seeded split."""
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError as error:
        raise DatasetNotFound("digits: needs scikit-learn (`pip install scikit-learn`)") from error
    bunch = sk_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * len(labels)))
    test, train = order[:n_test], order[n_test:]
    return Dataset("digits", Split(images[train], labels[train]), Split(images[test], labels[test]), 10)


def _download(name: str, data_dir: Optional[str]) -> None:
    try:
        import torchvision
    except ImportError as error:
        raise DatasetNotFound(f"{name}: --download needs torchvision") from error
    root = data_dir or "data"
    cls = {
        "fashion-mnist": torchvision.datasets.FashionMNIST,
        "mnist": torchvision.datasets.MNIST,
        "cifar10": torchvision.datasets.CIFAR10,
    }[name]
    for train in (True, False):
        cls(root, train=train, download=True)


LOADERS: Dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "fashion-mnist": load_fashion_mnist,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
}


IMAGE_SHAPES = {"digits": (1, 8, 8), "fashion-mnist": (1, 28, 28), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def sample_shape(name: str) -> Tuple[Tuple[int, ...], int]:
    """(one step's input shape, classes) of a data set, without reading it."""
    if events.is_event_dataset(name):
        spec = events.EVENT_DATASETS[name]
        return spec.frame_shape, spec.classes
    if name not in IMAGE_SHAPES:
        raise ValueError(f"unknown dataset '{name}'; choose from {', '.join(DATASETS)}")
    return IMAGE_SHAPES[name], 10


def load_event_dataset(
    name: str, data_dir: Optional[str], subset: Optional[int], seed: int, timesteps: int, progress: bool = True
) -> Dataset:
    root = Path(data_dir or "data")
    bar = _progress if progress else (lambda it, **kw: it)
    train = Split(*events.load_split(name, root, True, timesteps, subset, seed, bar))
    test = Split(*events.load_split(name, root, False, timesteps, subset, seed, bar))
    return Dataset(name, train, test, events.EVENT_DATASETS[name].classes, frames=True)


def _progress(iterable, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc=desc, unit="sample", leave=False, mininterval=1.0)


DATASETS = list(LOADERS) + list(events.EVENT_DATASETS)


def load_dataset(
    name: str,
    data_dir: Optional[str] = None,
    subset: Optional[int] = None,
    download: bool = False,
    seed: int = 0,
    timesteps: int = 10,
    progress: bool = True,
) -> Dataset:
    """Loads `name`; `subset` keeps that many training images (and at most as many test images).
    Event data sets are binned into `timesteps` frames per sample."""
    if subset is not None and subset < 1:
        raise ValueError(f"--subset must be >= 1, got {subset}")
    if events.is_event_dataset(name):
        if download:
            raise ValueError(f"--download: {name} cannot be downloaded here; put its files under --data-dir")
        return load_event_dataset(name, data_dir, subset, seed, timesteps, progress)
    if name not in LOADERS:
        raise ValueError(f"unknown dataset '{name}'; choose from {', '.join(DATASETS)}")
    if download and name != "digits":
        _download(name, data_dir)
    dataset = LOADERS[name](data_dir)
    if subset is not None:
        dataset.train = dataset.train.subset(min(subset, len(dataset.train)), seed)
        dataset.test = dataset.test.subset(min(subset, len(dataset.test)), seed + 1)
    return dataset


def batches(
    split: Split,
    batch_size: int,
    shuffle: bool,
    generator: Optional[torch.Generator] = None,
    drop_last: bool = False,
    order: Optional[torch.Tensor] = None,
    first: int = 0,
):
    """Yields (images, labels) minibatches of an in-memory split, in `order`
    when given (a shuffle drawn by the caller), from batch `first` on."""
    n = len(split)
    if order is None:
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(first * batch_size, stop, batch_size):
        index = order[start : start + batch_size]
        yield split.take(index), split.labels[index]


def augment_cifar(images: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop with zero padding and horizontal flip (the CIFAR-10 recipe)."""
    n, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).tolist()
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).tolist()
    out = torch.stack([padded[i, :, y : y + h, x : x + w] for i, (y, x) in enumerate(zip(dy, dx))])
    flip = torch.rand(n, generator=generator) < 0.5
    out[flip] = out[flip].flip(-1)
    return out
