"""Small synthetic event data sets written in each one's real on-disk format,
so Tonic's own readers parse them (nothing can be downloaded in tests)."""

from pathlib import Path

import numpy as np


def _events(rng, n, width, height, duration_us):
    t = np.sort(rng.integers(0, duration_us, n))
    return rng.integers(0, width, n), rng.integers(0, height, n), t, rng.integers(0, 2, n)


def write_nmnist(root: Path, per_class: int = 3, seed: int = 0) -> None:
    """NMNIST/{Train,Test}/<digit>/<id>.bin: 40-bit events (x, y, polarity bit 7 + 23-bit µs time)."""
    rng = np.random.default_rng(seed)
    for split in ("Train", "Test"):
        for digit in range(10):
            folder = root / "NMNIST" / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                x, y, t, p = _events(rng, 200, 34, 34, 300_000)
                x = (x // 3 + 3 * digit) % 34  # a class-dependent position, so a network can learn it
                raw = np.zeros((len(t), 5), np.uint8)
                raw[:, 0], raw[:, 1] = x, y
                raw[:, 2] = (p << 7) | ((t >> 16) & 0x7F)
                raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
                (folder / f"{k:05d}.bin").write_bytes(raw.tobytes())


def write_dvs_gesture(root: Path, users: int = 2, seed: int = 0) -> None:
    """DVSGesture/ibmGesture{Train,Test}/userNN_<lighting>/<label>.npy: rows (x, y, p, t in ms)."""
    rng = np.random.default_rng(seed)
    for split in ("ibmGestureTrain", "ibmGestureTest"):
        for user in range(1, users + 1):
            folder = root / "DVSGesture" / split / f"user{user:02d}_fluorescent"
            folder.mkdir(parents=True, exist_ok=True)
            for label in range(11):
                x, y, t, p = _events(rng, 500, 128, 128, 2_000)
                x = (x // 11 + 11 * label) % 128
                np.save(folder / f"{label}.npy", np.stack([x, y, p, t], 1).astype(np.int64))


def write_shd(root: Path, per_split: int = 40, seed: int = 0) -> None:
    """SHD/shd_{train,test}.h5: spikes/times (s), spikes/units (0..699), labels, extra/keys, extra/speaker."""
    import h5py

    rng = np.random.default_rng(seed)
    (root / "SHD").mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        with h5py.File(root / "SHD" / f"shd_{split}.h5", "w") as f:
            labels = np.arange(per_split) % 20
            times = f.create_dataset("spikes/times", (per_split,), dtype=h5py.vlen_dtype(np.float32))
            units = f.create_dataset("spikes/units", (per_split,), dtype=h5py.vlen_dtype(np.uint16))
            for i, label in enumerate(labels):
                n = 300
                times[i] = np.sort(rng.uniform(0, 1.0, n)).astype(np.float32)
                units[i] = ((rng.integers(0, 35, n) + 35 * label) % 700).astype(np.uint16)
            f["labels"] = labels.astype(np.uint16)
            f["extra/keys"] = np.array([f"word{k}".encode() for k in range(20)])
            f["extra/speaker"] = np.zeros(per_split, np.uint16)
