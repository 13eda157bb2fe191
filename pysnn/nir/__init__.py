"""NIR (the Neuromorphic Intermediate Representation, the `nir` package 1.0.x):
`to_nir` / `write` export a pysnn network, `read` / `from_nir` build one from a
graph. The mapping of the neuron, the dt convention and what cannot be
represented are in docs/nir.md."""

from .convention import DEFAULT_DT, NIRError
from .export import to_nir, write
from .load import from_nir, read

__all__ = ["DEFAULT_DT", "NIRError", "from_nir", "read", "to_nir", "write"]
