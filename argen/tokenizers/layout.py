"""Token layouts: what a generator and a sampler need to know about a tokenizer's output."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GridLayout:
    """A raster grid of discrete ids, generated row by row."""

    height: int
    width: int
    vocab_size: int
