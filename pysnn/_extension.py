"""Loads the compiled kernels, registering `torch.ops.pysnn.*`.

The fast path is the ahead-of-time module `pysnn._C`, built by
`pip install --no-build-isolation .`. When it is absent (a plain, isolated
`pip install .`) or was built against another torch, the shipped sources are
compiled once with torch's JIT builder into a cache keyed by the torch build
and the source hash, then reused.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import sysconfig
import warnings
from pathlib import Path

import torch

from . import _build

_loaded_from: str | None = None


def _cache_dir(sources: list[str], with_cuda: bool) -> Path:
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in _build.source_dir().rglob("*") if p.is_file()):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(" ".join(_build.CXX_FLAGS + _build.NVCC_FLAGS).encode())  # flags change results too
    tag = "cu" + str(torch.version.cuda).replace(".", "") if with_cuda else "cpu"
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    root = Path(os.environ.get("PYSNN_EXTENSIONS_DIR", Path.home() / ".cache" / "pysnn"))
    return root / f"torch-{torch.__version__}-{tag}-{py}-{digest.hexdigest()[:12]}"


def _jit_build() -> None:
    from torch.utils import cpp_extension

    _build.set_default_cuda_home()
    with_cuda = (
        not _build.env_flag("PYSNN_CPU_ONLY") and torch.cuda.is_available() and cpp_extension.CUDA_HOME is not None
    )
    root = _build.source_dir()
    sources = _build.sources(root, with_cuda)
    build_dir = _cache_dir(sources, with_cuda)
    build_dir.mkdir(parents=True, exist_ok=True)
    if not any(build_dir.glob("_C*" + (sysconfig.get_config_var("SHLIB_SUFFIX") or ".so"))):
        print(
            f"pysnn: compiling kernels for torch {torch.__version__} into {build_dir} (first import only)",
            file=sys.stderr,
        )
    cpp_extension.load(
        name="_C",
        sources=sources,
        extra_include_paths=[str(root)] + (_build.cuda_include_dirs() if with_cuda else []),
        extra_cflags=_build.CXX_FLAGS,
        extra_cuda_cflags=_build.NVCC_FLAGS,
        extra_ldflags=_build.LINK_FLAGS,
        build_directory=str(build_dir),
        with_cuda=with_cuda,
        is_python_module=True,
    )


MAX_DEFAULT_LIMIT = 8 << 30


def default_limit() -> int:
    """The CPU block cache's limit when the kernels load (pysnn.cpu_memory): a
    quarter of the machine's memory, at most 8 GiB, shared among the processes
    torchrun started on this machine (LOCAL_WORLD_SIZE)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 4 * MAX_DEFAULT_LIMIT
    try:
        local_processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local_processes = 1
    return min(MAX_DEFAULT_LIMIT, total // 4) // local_processes


MIN_TORCH = (2, 4)  # torch.library.register_fake / register_autograd


def check_torch_version(version: str = torch.__version__) -> None:
    """Refuses a torch older than MIN_TORCH with one line that says what to do."""
    try:
        found = tuple(int(part) for part in version.split("+")[0].split(".")[:2])
    except ValueError:
        return  # a development build: let it try
    if found < MIN_TORCH:
        wanted = ".".join(map(str, MIN_TORCH))
        raise ImportError(f"pysnn needs torch >= {wanted}, found {version}; install a newer torch first")


def load() -> str:
    """Registers the ops once; returns "aot" or "jit", the path that loaded them.
    The ops' large CPU outputs are then reused once freed (pysnn.cpu_memory)."""
    global _loaded_from
    if _loaded_from is None:
        check_torch_version()
        _loaded_from = _load()
        torch.ops.pysnn._set_cpu_block_limit(default_limit())
    return _loaded_from


def _load() -> str:
    error = None
    if importlib.util.find_spec(f"{__package__}._C") is not None:
        try:
            importlib.import_module(f"{__package__}._C")
            return "aot"
        except ImportError as exc:  # built against another torch, say
            error = exc
    if _build.env_flag("PYSNN_NO_JIT"):
        raise ImportError(
            "pysnn: the compiled module pysnn._C is missing or does not match this torch; "
            "reinstall with `pip install --no-build-isolation .`"
        ) from error
    if error is not None:
        warnings.warn(
            f"pysnn: pysnn._C failed to load ({error}); compiling the kernels against the installed torch instead",
            RuntimeWarning,
            stacklevel=2,
        )
    _jit_build()
    return "jit"
