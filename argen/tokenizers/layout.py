"""Token layouts: what a generator and a sampler need to know about a tokenizer's output."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GridLayout:
    """A raster grid of discrete ids, generated row by row."""

    height: int
    width: int
    vocab_size: int


@dataclass(frozen=True)
class VideoLayout:
    """A ``frames`` x ``height`` x ``width`` block of discrete ids (latent frames of a clip),
    generated frame after frame, each frame in raster order."""

    frames: int
    height: int
    width: int
    vocab_size: int

    @property
    def num_tokens(self) -> int:
        return self.frames * self.height * self.width


@dataclass(frozen=True)
class ScaleLayout:
    """Square id maps of growing size (``scales``), generated coarse to fine."""

    scales: tuple[int, ...]
    vocab_size: int

    @property
    def height(self) -> int:
        return self.scales[-1]

    @property
    def width(self) -> int:
        return self.scales[-1]

    @property
    def num_tokens(self) -> int:
        return sum(pn * pn for pn in self.scales)


@dataclass(frozen=True)
class CoarseToFineLayout(GridLayout):
    """A raster grid generated as coarse labels (``vocab_size`` clusters of the codebook),
    then refined to fine ids (``fine_vocab_size`` codes) all at once."""

    fine_vocab_size: int = 0


@dataclass(frozen=True)
class ContinuousLayout:
    """A raster grid of ``token_dim``-vectors, generated token by token, or with ``scales``
    coarse to fine as downsampled copies of the grid (FlowAR)."""

    height: int
    width: int
    token_dim: int
    scales: tuple[int, ...] = ()

    @property
    def num_tokens(self) -> int:
        return sum(pn * pn for pn in self.scales) if self.scales else self.height * self.width


@dataclass(frozen=True)
class ByteLayout:
    """A 1-D stream of up to ``max_len`` ids (bytes or byte-pair merges, then EOS, then PAD),
    generated token by token until EOS."""

    max_len: int
    vocab_size: int
    eos: int
    pad: int

    @property
    def height(self) -> int:
        return 1

    @property
    def width(self) -> int:
        return self.max_len


def flat_ids(ids: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """A tokenizer's ids as stored: a grid as is, per-scale maps concatenated (B, sum pn**2)."""
    return torch.cat([x.flatten(1) for x in ids], 1) if isinstance(ids, list) else ids
