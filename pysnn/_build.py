"""Build settings shared by setup.py (ahead of time) and the JIT fallback.

Plain Python with no torch import at module level: setup.py loads this file
by path before it knows whether torch is importable.
"""

from __future__ import annotations

import os
from pathlib import Path

# -fno-trapping-math lets GCC vectorise the threshold compare; results are unchanged.
# -ffp-contract=off: GCC otherwise fuses a * b + c into one FMA wherever the
# target has one (its AVX-512 clones do), and the LIF membrane decay * v + x
# then differs from eager PyTorch's (product rounded, then the sum) in about
# half the elements, and a spike now and then (tests/test_lif.py). The CUDA
# kernels get the same rounding from __fmul_rn.
CXX_FLAGS = ["-O3", "-fopenmp", "-fno-trapping-math", "-ffp-contract=off"]
LINK_FLAGS = ["-fopenmp"]
NVCC_FLAGS = ["-O3", "-lineinfo"]
DEFAULT_CUDA_ARCH_LIST = "8.0;9.0+PTX"

_PACKAGE_DIR = Path(__file__).resolve().parent


def source_dir() -> Path:
    """The C++/CUDA sources: packaged beside the module, or the checkout's csrc/."""
    for candidate in (_PACKAGE_DIR / "_csrc", _PACKAGE_DIR.parent / "csrc"):
        if (candidate / "library.cpp").is_file():
            return candidate
    raise FileNotFoundError(
        f"pysnn: no C++ sources found in {_PACKAGE_DIR / '_csrc'} or {_PACKAGE_DIR.parent / 'csrc'}"
    )


def sources(root: Path, with_cuda: bool) -> list[str]:
    """Every .cpp of the extension, plus the .cu kernels when building CUDA."""
    files = sorted(p for p in root.rglob("*.cpp"))
    if with_cuda:
        files += sorted(root.rglob("*.cu"))
    return [str(p) for p in files]


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def set_default_cuda_home() -> None:
    """Point torch at the real toolkit; a bare `nvcc` wrapper on PATH misleads it."""
    if "CUDA_HOME" not in os.environ and "CUDA_PATH" not in os.environ:
        if Path("/usr/local/cuda/bin/nvcc").is_file():
            os.environ["CUDA_HOME"] = "/usr/local/cuda"


def cuda_include_dirs() -> list[str]:
    """Headers that a minimal toolkit lacks but pip's nvidia wheels ship."""
    try:
        import nvidia  # type: ignore[import-not-found]
    except ImportError:
        return []
    dirs = []
    for base in getattr(nvidia, "__path__", []):
        dirs += [str(p) for p in sorted(Path(base).glob("*/include")) if p.is_dir()]
    return dirs
