"""`--cpu-memory keep`: freed large CPU blocks are reused without page faults
(counted as the process's minor page faults, in a fresh process, since the
cache is process-wide once installed)."""
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


def _faults(mode):
    result = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [int(n) for n in result.stdout.split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts Linux page faults")
def test_keep_reuses_freed_blocks_without_page_faults():
    pages = 40 * 2**20 // 4096
    assert min(_faults("release")) > pages // 2  # the allocator maps each fresh 40 MB block anew
    first, *rest = _faults("keep")
    assert first > pages // 2 and max(rest) < pages // 20  # only the first copy maps its pages


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


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="keep or release"):
        cpu_memory.apply("sometimes")
    with pytest.raises(ValueError, match="limit_bytes must be >= 0"):
        cpu_memory.keep_freed_memory(-1)
    assert torch.ops.pysnn._cpu_block_cache_stats() is not None


def test_default_limit_is_shared_by_the_local_processes(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    alone = cpu_memory.default_limit()
    assert 0 < alone <= cpu_memory.MAX_DEFAULT_LIMIT
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # set by torchrun
    assert cpu_memory.default_limit() == alone // 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "not a number")
    assert cpu_memory.default_limit() == alone
