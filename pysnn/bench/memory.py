"""Peak memory of one call. CUDA: the caching allocator's peak, in process.
CPU: the rise of the resident-set high-water mark in a fresh subprocess that
builds the inputs and runs the call once (large tensors are mmapped and
returned on free, so the high-water mark follows the live tensors)."""

from __future__ import annotations

import importlib
import json
import os
import resource
import subprocess
import sys
from typing import Callable

import torch


def _current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _max_rss() -> int:
    # VmHWM belongs to this address space; getrusage's ru_maxrss would carry
    # the parent's high-water mark across fork and exec.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def cuda_peak(fn: Callable[[], object], device: torch.device) -> int:
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def cpu_peak(factory: str, warmup: bool = False, **kwargs) -> int:
    """Peak extra bytes of `factory(**kwargs)()`; factory is "module:function".
    With `warmup`, the call runs once first and the second call is measured
    (a training step's steady state: optimiser state and caches exist)."""
    # A fixed mmap threshold (glibc raises it after each large free otherwise)
    # and no heap trimming delay, so every large tensor is mapped and unmapped.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    out = subprocess.run(
        [sys.executable, "-m", __name__, factory, json.dumps(kwargs), "warmup" if warmup else "once"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return int(out.stdout.strip().splitlines()[-1])


def _reset_peak() -> None:
    """Sets this process's VmHWM to its current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _measure(factory: str, kwargs: str, warmup: bool = False) -> int:
    module, name = factory.split(":")
    fn = getattr(importlib.import_module(module), name)(**json.loads(kwargs))
    if warmup:
        # Freed blocks go back to the system at once (no pysnn block cache), so
        # the second call's high-water mark follows its live tensors.
        from .. import cpu_memory

        cpu_memory.release_freed_memory()
        fn()
        _reset_peak()
    baseline = max(_current_rss(), _max_rss())
    fn()
    return max(0, _max_rss() - baseline)


if __name__ == "__main__":
    print(_measure(sys.argv[1], sys.argv[2], len(sys.argv) > 3 and sys.argv[3] == "warmup"))
