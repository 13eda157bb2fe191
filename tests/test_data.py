"""Dataset loaders on files written here in the real formats."""

import gzip
import pickle

import numpy as np
import pytest
import torch

from pysnn import data


def _write_idx_set(folder, n_train=12, n_test=5, size=28, compress=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if compress else ""
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        data.write_idx(folder / (name + suffix), array)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_from_idx_files(tmp_path, compress):
    arrays = _write_idx_set(tmp_path / "fashion-mnist", compress=compress)
    ds = data.load_dataset("fashion-mnist", data_dir=str(tmp_path))
    assert ds.train.images.shape == (12, 1, 28, 28) and ds.test.images.shape == (5, 1, 28, 28)
    assert ds.train.images.dtype == torch.float32 and 0 <= ds.train.images.min() and ds.train.images.max() <= 1
    np.testing.assert_array_equal(ds.train.labels.numpy(), arrays["train-labels-idx1-ubyte"])
    np.testing.assert_allclose(ds.test.images[:, 0].numpy() * 255, arrays["t10k-images-idx3-ubyte"], atol=1e-4)


def test_mnist_in_torchvision_layout(tmp_path):
    _write_idx_set(tmp_path / "MNIST" / "raw")
    assert len(data.load_dataset("mnist", data_dir=str(tmp_path)).train) == 12


def test_cifar10_python_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump(
                {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, 4))}, f
            )
    ds = data.load_dataset("cifar10", data_dir=str(tmp_path))
    assert ds.train.images.shape == (20, 3, 32, 32) and ds.test.images.shape == (4, 3, 32, 32)
    out = data.augment_cifar(ds.train.images, torch.Generator().manual_seed(0))
    assert out.shape == ds.train.images.shape


def test_digits_split_is_fixed_and_subset_works():
    a, b = data.load_dataset("digits"), data.load_dataset("digits")
    assert torch.equal(a.test.labels, b.test.labels)
    assert len(a.train) + len(a.test) == 1797 and a.image_shape == (1, 8, 8)
    small = data.load_dataset("digits", subset=100)
    assert len(small.train) == 100 and len(small.test) == 100


def test_missing_dataset_says_where_it_looked(tmp_path):
    with pytest.raises(data.DatasetNotFound, match="Looked in") as info:
        data.load_mnist(str(tmp_path / "nothing"))
    assert str(tmp_path / "nothing") in str(info.value)


def test_truncated_idx_file_is_an_error(tmp_path):
    path = tmp_path / "x-idx3-ubyte.gz"
    data.write_idx(path, np.zeros((4, 5, 5), dtype=np.uint8))
    raw = gzip.decompress(path.read_bytes())[:-10]
    path.write_bytes(gzip.compress(raw))
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(path)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load_dataset("imagenet")
