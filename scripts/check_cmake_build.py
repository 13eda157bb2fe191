"""Loads the pysnn._C module that CMake built and checks that its LIF op
registered and agrees with a plain loop.

    python scripts/check_cmake_build.py BUILD_DIR
"""

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

import torch


def main(build_dir: str) -> None:
    (module_path,) = Path(build_dir).glob("_C*.so")
    loader = importlib.machinery.ExtensionFileLoader("_C", str(module_path))
    spec = importlib.util.spec_from_file_location("_C", module_path, loader=loader)
    loader.exec_module(importlib.util.module_from_spec(spec))

    x = torch.rand(8, 1000, dtype=torch.float64)
    spikes, _, state = torch.ops.pysnn.lif_forward(x, 0.8, 0.45, "sigmoid", 4.0, "bptt", None, False)
    v = torch.zeros(1000, dtype=torch.float64)
    for t in range(8):
        u = 0.8 * v + x[t]
        s = (u >= 0.45).double()
        assert torch.equal(spikes[t], s), f"step {t} differs"
        v = u - 0.45 * s
    torch.testing.assert_close(state, v)
    print(f"cmake build OK: {module_path.name} registers pysnn::lif_forward and matches the loop")


if __name__ == "__main__":
    main(sys.argv[1])
