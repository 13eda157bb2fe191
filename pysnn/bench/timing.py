"""Side-by-side timing: candidates run interleaved, round after round, so a
noisy machine slows them alike and the ratios stay meaningful."""
from __future__ import annotations

import statistics
import time
from typing import Callable, Dict

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare(candidates: Dict[str, Callable[[], object]], device: torch.device,
            rounds: int = 7, warmup: int = 2) -> Dict[str, float]:
    """Median seconds per call of each candidate, measured interleaved."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    samples: Dict[str, list] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def format_table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.rjust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).rjust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)
