"""`--cpu-memory keep`: freed large CPU blocks are reused without page faults
(checked by counting the process's minor page faults, in a fresh process,
since the setting is process-wide)."""
import subprocess
import sys

import pytest

from pysnn import cpu_memory

pytestmark = pytest.mark.skipif(cpu_memory._glibc() is None, reason="needs glibc")

PROBE = """
import resource, sys, torch
from pysnn import cpu_memory
assert cpu_memory.apply(sys.argv[1])
x = torch.rand(10 * 2**20)  # 40 MB
def faults_of_a_fresh_copy():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    y = torch.empty_like(x).copy_(x)
    del y
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_a_fresh_copy()
print(min(faults_of_a_fresh_copy() for _ in range(3)))
"""


def _faults(mode):
    result = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip())


def test_keep_reuses_freed_blocks_without_page_faults():
    pages = 40 * 2**20 // 4096
    assert _faults("release") > pages // 2  # glibc maps each fresh 40 MB block anew
    assert _faults("keep") < pages // 20


def test_bad_mode_is_refused():
    with pytest.raises(ValueError, match="keep or release"):
        cpu_memory.apply("sometimes")
