"""Keeping freed large CPU blocks for reuse instead of returning them to the system.

glibc's malloc serves every block above 32 MiB (and, with its adaptive
threshold, many smaller ones) with a fresh mmap and unmaps it on free, so
each new full-size activation, spike or gradient tensor pays a page fault
for every 4 KiB page it touches: on a 2-core machine writing a fresh 40 MB
tensor takes ~17 ms where rewriting a reused one takes ~4 ms. pysnn keeps
a cache of freed blocks of 1 MiB or more (csrc/memory/cpu_block_cache.cpp),
by size, up to a limit (the least recently freed go first), and hands each
to the next request of that size, as PyTorch's caching allocator does on
the GPU. Three settings, `apply(mode)`:

* `ops` (what `import pysnn` sets up): pysnn's own CPU ops (`pysnn.ops.lif`
  and its backward) take their large outputs from the cache; every other
  tensor uses PyTorch's allocator as it is.
* `keep` (`pysnn train`'s default, `keep_freed_memory()`): the cache also
  becomes PyTorch's CPU allocator, for every tensor of the process; it
  stays installed.
* `release` (`release_freed_memory()`): nothing is kept; held blocks go
  back to the system now.

The price of keeping: up to the limit of freed memory stays with the
process (`empty_cache()` returns it). Measurements: BENCHMARKS.md.
"""

from __future__ import annotations

from typing import Optional

import torch

from ._extension import MAX_DEFAULT_LIMIT, default_limit  # noqa: F401  (part of this module's API)
from ._extension import load as _load_kernels
from .config import CPU_MEMORY_MODES


def _limit_or_default(limit_bytes: Optional[int], caller: str) -> int:
    limit = default_limit() if limit_bytes is None else int(limit_bytes)
    if limit < 0:
        raise ValueError(f"{caller}: limit_bytes must be >= 0, got {limit}")
    return limit


def keep_op_outputs(limit_bytes: Optional[int] = None) -> bool:
    """pysnn's CPU ops take their outputs of 1 MiB or more from the cache, which
    keeps up to `limit_bytes` (default `default_limit()`) of them once freed.
    Done when pysnn loads its kernels."""
    _load_kernels()

    torch.ops.pysnn._set_cpu_block_limit(_limit_or_default(limit_bytes, "keep_op_outputs"))
    return True


def keep_freed_memory(limit_bytes: Optional[int] = None) -> bool:
    """From now on, keep freed CPU blocks of 1 MiB or more of every tensor (up
    to `limit_bytes` in all, default `default_limit()`) for the next request
    of the same size: the cache becomes PyTorch's CPU allocator."""
    _load_kernels()

    torch.ops.pysnn._keep_cpu_blocks(_limit_or_default(limit_bytes, "keep_freed_memory"))
    return True


def release_freed_memory() -> bool:
    """Keep nothing from now on (limit 0), and return the held blocks now."""
    _load_kernels()

    torch.ops.pysnn._set_cpu_block_limit(0)
    return True


def empty_cache() -> None:
    """Return the blocks held for reuse to the system; the setting stays."""
    limit = cache_stats()["limit_bytes"]
    torch.ops.pysnn._set_cpu_block_limit(0)
    torch.ops.pysnn._set_cpu_block_limit(limit)


def cache_stats() -> dict:
    """Bytes held for reuse now, how many large requests were served from the
    cache or not, the limit, and whether the cache is PyTorch's CPU allocator."""
    _load_kernels()

    cached, hits, misses, limit, installed = torch.ops.pysnn._cpu_block_cache_stats()
    return {"cached_bytes": cached, "hits": hits, "misses": misses, "limit_bytes": limit, "installed": bool(installed)}


SETTINGS = {"keep": keep_freed_memory, "ops": keep_op_outputs, "release": release_freed_memory}


def apply(mode: str) -> bool:
    """`keep`, `ops` or `release` (see the module's docstring)."""
    if mode not in CPU_MEMORY_MODES:
        raise ValueError(f"--cpu-memory must be one of {', '.join(CPU_MEMORY_MODES)}, got '{mode}'")
    return SETTINGS[mode]()
