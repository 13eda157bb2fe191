"""Keeping freed CPU memory for reuse instead of returning it to the system.

glibc's malloc serves every block above 32 MiB (and, with its default
dynamic threshold, most above 128 KiB) with a fresh mmap and unmaps it on
free, so each new full-size activation, spike or gradient tensor pays a page
fault for every 4 KiB page it touches: on a 2-core machine writing a fresh
40 MB tensor takes ~17 ms where rewriting a reused one takes ~4 ms. A
training step allocates the same shapes every time, so keeping freed blocks
in the heap makes every step after the first reuse them, as PyTorch's CUDA
caching allocator does on the GPU. The price: the process keeps its peak
memory (up to `TRIM_THRESHOLD` of free heap) instead of handing it back.

`pysnn train` turns this on for CPU runs (`--cpu-memory keep`, the default;
`--cpu-memory release` is glibc's behaviour); in your own code call
`keep_freed_memory()` once. Process-wide; a no-op where the C library is not
glibc. Measurements: BENCHMARKS.md, "The CPU allocator".
"""
from __future__ import annotations

import ctypes
import ctypes.util
from typing import Optional

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
TRIM_THRESHOLD = 256 << 20  # free heap above this much at the top is still returned
MODES = ("keep", "release")


def _glibc() -> Optional[ctypes.CDLL]:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # only glibc has it
        return libc
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """From now on, serve large CPU blocks from the heap and keep them when
    freed. Returns False where unsupported (not glibc). It cannot be undone
    within the process: glibc's default adapts its mmap threshold as the
    program runs, and setting any of these parameters turns that off for good
    (so `release` is glibc's default by doing nothing, not by resetting them)."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def apply(mode: str) -> bool:
    """`keep`: keep_freed_memory(); `release`: leave glibc's default alone."""
    if mode not in MODES:
        raise ValueError(f"--cpu-memory must be keep or release, got '{mode}'")
    return keep_freed_memory() if mode == "keep" else True
