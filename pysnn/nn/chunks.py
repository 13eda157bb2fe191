"""How the passes that trade time for memory split their work: a few
samples at a time, about `CHUNK_ELEMENTS` elements of a row's output per
chunk, so each pass's temporaries stay small beside the layer's buffers.
128 Ki elements: at 64 Ki a real-time CNN step spent about a third more
time in these passes, at 256 Ki it held about 1 MB more (BENCHMARKS.md)."""

from __future__ import annotations

from typing import List, Optional

import torch

CHUNK_ELEMENTS = 1 << 17
# The whole-sequence passes (norm_lif_pool_sequence, norm_lif_signal) take
# chunks this many times larger: a CNN step at T = 10 (one sample per chunk at
# 128 Ki) ran 20-25 % slower than the ops without them, at 4x 9-13 % slower
# for 4-5 MB more at its peak (8x: 6 MB more again).
SEQUENCE_CHUNK_FACTOR = 4


def rows_per_chunk(elements_per_row: int, multiple: int = 1, factor: int = 1) -> int:
    """How many rows of `elements_per_row` elements make a chunk of about
    `factor` · CHUNK_ELEMENTS: at least one, and a multiple of `multiple`
    (at least `multiple`)."""
    rows = max(1, factor * CHUNK_ELEMENTS // max(1, elements_per_row))
    return max(multiple, rows - rows % multiple)


def row_chunks(t: torch.Tensor, like: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
    """t [B, ...] as views of a few rows each (as many as `like`'s chunks)."""
    like = t if like is None else like
    return list(t.split(rows_per_chunk(like[0].numel())))
