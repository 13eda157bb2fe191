"""The two implementations of every op, behind one name each.

`fused` is `pysnn.ops` (compiled kernels); `reference` is `pysnn.reference`
(pure PyTorch). Both expose the same functions with the same signatures, so
layers and trainers take a backend name and never branch on it.
"""

from __future__ import annotations

from types import ModuleType

from . import ops, reference

BACKENDS: dict[str, ModuleType] = {"fused": ops, "reference": reference}


def get_backend(name: str) -> ModuleType:
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got '{name}'") from None
