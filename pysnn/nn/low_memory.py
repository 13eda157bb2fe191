"""Whether this thread's training step trades time for memory (`--low-memory`;
TrainConfig.uses_low_memory says when it is the default). Inside `low_memory()`:

* 2-d convolutions run a few samples at a time on the CPU (pysnn.nn.conv);
* a conv block's batch norm and LIF over a whole sequence form batch norm's
  output a few samples at a time instead of keeping it
  (pysnn.nn.norm_lif_pool_sequence, pysnn.nn.norm_lif_signal).

Trainers enter it around each step (`LocalTrainer.layer_step`, the BPTT step).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

_state = threading.local()


@contextlib.contextmanager
def low_memory(enabled: bool = True) -> Iterator[None]:
    """Inside, the memory-saving passes are taken where they apply (in this thread)."""
    previous = low_memory_enabled()
    _state.enabled = enabled
    try:
        yield
    finally:
        _state.enabled = previous


def low_memory_enabled() -> bool:
    return getattr(_state, "enabled", False)
