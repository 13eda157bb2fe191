"""pysnn's cache of freed large CPU blocks: reused without page faults (counted
as the process's minor page faults, in a fresh process each, since the cache
is process-wide), within its limit."""

import subprocess
import sys

import pytest
import torch

from pysnn import cpu_memory

PROBE = """
import resource, sys, torch
from pysnn import cpu_memory
assert cpu_memory.apply(sys.argv[1])
x = torch.rand(10 * 2**20)  # 40 MB
def faults_of_a_fresh_copy():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    y = torch.empty_like(x).copy_(x)
    assert torch.equal(y, x)
    del y
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(*[faults_of_a_fresh_copy() for _ in range(4)])
"""


LIF_PROBE = """
import resource, sys, torch
import pysnn
from pysnn import cpu_memory
assert cpu_memory.apply(sys.argv[1])
x = torch.rand(10, 2**20)  # 40 MB
def faults_of_a_lif_call():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    spikes = pysnn.ops.lif(x, 0.5, 0.9)
    del spikes
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(*[faults_of_a_lif_call() for _ in range(4)])
"""


def _faults(mode, probe=PROBE):
    result = subprocess.run([sys.executable, "-c", probe, mode], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [int(n) for n in result.stdout.split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts Linux page faults")
def test_keep_reuses_freed_blocks_without_page_faults():
    pages = 40 * 2**20 // 4096
    assert min(_faults("release")) > pages // 2  # the allocator maps each fresh 40 MB block anew
    first, *rest = _faults("keep")
    assert first > pages // 2 and max(rest) < pages // 20  # only the first copy maps its pages
    assert min(_faults("ops")) > pages // 2  # PyTorch's own allocations are left alone


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts Linux page faults")
def test_ops_reuse_their_freed_outputs_by_default():
    pages = 40 * 2**20 // 4096
    assert min(_faults("release", LIF_PROBE)) > pages // 2  # the spikes map 40 MB anew every call
    for mode in ("ops", "keep"):
        first, *rest = _faults(mode, LIF_PROBE)
        assert first > pages // 2 and max(rest) < pages // 20, mode


def test_cache_serves_same_size_requests_and_respects_its_limit():
    script = """
import torch
from pysnn import cpu_memory
cpu_memory.keep_freed_memory(limit_bytes=3 << 20)
for _ in range(3):
    a = torch.empty(2 << 20, dtype=torch.uint8)  # 2 MiB: cached after the first
    del a
big = torch.empty(8 << 20, dtype=torch.uint8)
del big  # over the 3 MiB limit: back to the system
s = cpu_memory.cache_stats()
print(s["hits"], s["misses"], s["cached_bytes"])
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    hits, misses, cached = (int(n) for n in result.stdout.split())
    assert hits >= 2 and cached == 2 << 20


def test_least_recently_freed_blocks_make_room_and_empty_cache_returns_them():
    script = """
import pysnn, torch
from pysnn import cpu_memory
cpu_memory.keep_op_outputs(limit_bytes=3 << 20)
a = pysnn.ops.lif(torch.zeros(4, 1 << 17), 0.5, 1.0)  # 2 MiB of spikes (and a 0.5 MiB state, not cached)
b = pysnn.ops.lif(torch.zeros(3, 1 << 17), 0.5, 1.0)  # 1.5 MiB
del a
first = cpu_memory.cache_stats()["cached_bytes"]
del b  # 2 + 1.5 MiB > 3 MiB: the 2 MiB block (freed first) goes
second = cpu_memory.cache_stats()["cached_bytes"]
c = pysnn.ops.lif(torch.zeros(3, 1 << 17), 0.5, 1.0)  # served by b's block
hits = cpu_memory.cache_stats()["hits"]
del c
cpu_memory.empty_cache()
s = cpu_memory.cache_stats()
print(first, second, hits, s["cached_bytes"], s["limit_bytes"], s["installed"])
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    first, second, hits, cached, limit, installed = result.stdout.split()
    assert (int(first), int(second), int(hits)) == (2 << 20, 3 << 19, 1)
    assert (int(cached), int(limit), installed) == (0, 3 << 20, "False")


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="one of keep, ops, release"):
        cpu_memory.apply("sometimes")
    with pytest.raises(ValueError, match="limit_bytes must be >= 0"):
        cpu_memory.keep_freed_memory(-1)
    with pytest.raises(ValueError, match="limit_bytes must be >= 0"):
        cpu_memory.keep_op_outputs(-1)
    with pytest.raises(RuntimeError, match="limit must be >= 0"):
        torch.ops.pysnn._set_cpu_block_limit(-1)
    assert torch.ops.pysnn._cpu_block_cache_stats() is not None


def test_default_limit_is_shared_by_the_local_processes(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    alone = cpu_memory.default_limit()
    assert 0 < alone <= cpu_memory.MAX_DEFAULT_LIMIT
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # set by torchrun
    assert cpu_memory.default_limit() == alone // 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "not a number")
    assert cpu_memory.default_limit() == alone
