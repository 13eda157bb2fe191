"""Keeping freed large CPU blocks for reuse instead of returning them to the system.

glibc's malloc serves every block above 32 MiB (and, with its adaptive
threshold, many smaller ones) with a fresh mmap and unmaps it on free, so
each new full-size activation, spike or gradient tensor pays a page fault
for every 4 KiB page it touches: on a 2-core machine writing a fresh 40 MB
tensor takes ~17 ms where rewriting a reused one takes ~4 ms. A training
step allocates the same sizes every time, so `keep_freed_memory()` puts a
cache in front of PyTorch's CPU allocator (csrc/ops/cpu_block_cache.cpp):
freed blocks of 1 MiB or more are kept by size, up to a limit, and the next
request of that size reuses one, as PyTorch's caching allocator does on the
GPU. The price: up to the limit of freed memory stays with the process.

`pysnn train` turns it on for CPU runs (`--cpu-memory keep`, the default;
`--cpu-memory release` leaves PyTorch's allocator alone). Process-wide; it
stays on once installed. Measurements: BENCHMARKS.md, "at the memory floor".
"""
from __future__ import annotations

import os
from typing import Optional

import torch

from .config import CPU_MEMORY_MODES

MAX_DEFAULT_LIMIT = 8 << 30


def default_limit() -> int:
    """A quarter of the machine's memory, at most 8 GiB, shared among the
    processes torchrun started on this machine (LOCAL_WORLD_SIZE)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 4 * MAX_DEFAULT_LIMIT
    try:
        local_processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local_processes = 1
    return min(MAX_DEFAULT_LIMIT, total // 4) // local_processes


def keep_freed_memory(limit_bytes: Optional[int] = None) -> bool:
    """From now on, keep freed CPU blocks of 1 MiB or more (up to `limit_bytes`
    in all, default `default_limit()`) for the next request of the same size."""
    from . import ops  # noqa: F401  (loads the extension that defines the op)

    limit = default_limit() if limit_bytes is None else int(limit_bytes)
    if limit < 0:
        raise ValueError(f"keep_freed_memory: limit_bytes must be >= 0, got {limit}")
    torch.ops.pysnn._keep_cpu_blocks(limit)
    return True


def cache_stats() -> dict:
    """Bytes held for reuse now, and how many large requests were served from the cache or not."""
    from . import ops  # noqa: F401

    cached, hits, misses = torch.ops.pysnn._cpu_block_cache_stats()
    return {"cached_bytes": cached, "hits": hits, "misses": misses}


def apply(mode: str) -> bool:
    """`keep`: keep_freed_memory(); `release`: PyTorch's allocator as it is."""
    if mode not in CPU_MEMORY_MODES:
        raise ValueError(f"--cpu-memory must be keep or release, got '{mode}'")
    return keep_freed_memory() if mode == "keep" else True
