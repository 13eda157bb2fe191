"""Side-by-side timing: candidates run interleaved, round after round, so a
noisy machine slows them alike and the ratios stay meaningful."""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, Optional

import torch

from ..config import CPU_MEMORY_MODES


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare(
    candidates: Dict[str, Callable[[], object]],
    device: torch.device,
    rounds: int = 7,
    warmup: int = 2,
    min_sample_s: float = 0.01,
) -> Dict[str, float]:
    """Median seconds per call of each candidate, measured interleaved. A
    sample repeats a fast candidate until it lasts about `min_sample_s`, so
    sub-millisecond calls are not lost in the timer's and the scheduler's noise."""
    repeats: Dict[str, int] = {}
    for name, fn in candidates.items():
        for _ in range(max(warmup, 1)):
            fn()
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        repeats[name] = max(1, int(min_sample_s / max(time.perf_counter() - start, 1e-9)))
    samples: Dict[str, list] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            _sync(device)
            start = time.perf_counter()
            for _ in range(repeats[name]):
                fn()
            _sync(device)
            samples[name].append((time.perf_counter() - start) / repeats[name])
    return {name: statistics.median(times) for name, times in samples.items()}


def add_cpu_memory_argument(parser) -> None:
    """--cpu-memory; the benchmark applies it (`cpu_memory.apply`) before measuring anything."""
    parser.add_argument(
        "--cpu-memory",
        default="ops",
        choices=CPU_MEMORY_MODES,
        help="as after `import pysnn` (ops, the default: pysnn's ops reuse their freed large "
        "outputs, PyTorch's allocator is left as it is), with pysnn train's cache of every "
        "freed large block (keep), or nothing kept (release)",
    )


def format_table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.rjust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).rjust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


class JsonRows:
    """Benchmark rows written to a JSON file after every row (atomically), so a
    run that is cut short, by a timeout say, keeps every row it measured."""

    def __init__(self, path: Optional[str]) -> None:
        self.path = Path(path) if path else None
        self.rows: list[dict] = []

    def __call__(self, row: dict) -> None:
        self.rows.append(row)
        self.write()

    def write(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.rows, indent=2))
        os.replace(tmp, self.path)
