"""The written interfaces of tokenizers: one protocol per layout family, listing exactly the
members that paradigms, samplers, training and evaluation may use.

A tokenizer belongs to the family of its ``layout``'s class (:data:`FAMILIES`); a test checks
every registered tokenizer against its family. A new tokenizer implements its family's protocol
and needs no other change; a new family (a layout class and its protocol, defined beside the
tokenizer) joins with :func:`register_family`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from argen.tokenizers.layout import (
    ByteLayout,
    CoarseToFineLayout,
    ContinuousLayout,
    GridLayout,
    ScaleLayout,
    VideoLayout,
)


@runtime_checkable
class Tokenizer(Protocol):
    """Every tokenizer: pixels in [-1, 1] <-> tokens, and the layout of its tokens. One whose
    tokens are not ids of one codebook may add ``token_statistics(tokens: list) -> dict`` of
    floats, which the reconstruction protocol reports in place of codebook usage."""

    config: Any  # a dataclass with ``resolution`` (pixels per side)

    @property
    def layout(self) -> Any: ...

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training: (reconstruction, losses and statistics by name)."""
        ...

    def encode(self, pixels: torch.Tensor) -> Any: ...

    def decode(self, tokens: Any) -> torch.Tensor: ...


@runtime_checkable
class GridTokenizer(Tokenizer, Protocol):
    """Ids (B, h, w) from one codebook (:class:`GridLayout`)."""

    quantize: Any  # VectorQuantizer: ``embedding.weight`` and ``codebook()`` (LANTERN's neighbours)


@runtime_checkable
class CoarseToFineTokenizer(GridTokenizer, Protocol):
    """A grid whose codes are grouped into coarse labels (:class:`CoarseToFineLayout`)."""

    coarse_labels: torch.Tensor  # (V,) the coarse label of every code

    def coarse(self, ids: torch.Tensor) -> torch.Tensor:
        """Fine ids -> their coarse labels (same shape)."""
        ...


@runtime_checkable
class ScaleTokenizer(Tokenizer, Protocol):
    """Residual id maps of growing size (:class:`ScaleLayout`): VAR's pyramid, NFIG's bands."""

    def quantizer(self, scale: int) -> Any:
        """The vector quantiser of scale ``scale``."""
        ...

    def empty_f_hat(self, batch: int) -> torch.Tensor:
        """The accumulated latent before the first scale (B, C, h, w)."""
        ...

    def next_input(self, f_hat: torch.Tensor, ids: torch.Tensor, scale: int) -> tuple[torch.Tensor, Any]:
        """Add scale ``scale``'s ids to ``f_hat`` -> (new f_hat, the next scale's input)."""
        ...

    def teacher_inputs(self, ids: list[torch.Tensor]) -> torch.Tensor:
        """Teacher forcing: every scale's input from the ids of the scales before it."""
        ...


@runtime_checkable
class ByteStreamTokenizer(Tokenizer, Protocol):
    """A codec's bytes as ids, then EOS and PAD (:class:`ByteLayout`)."""

    def syntax(self) -> Any:
        """A token constraint admitting only valid streams, or None."""
        ...

    def decode_checked(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids -> (pixels, whether each stream was valid); never raises on model output."""
        ...


@runtime_checkable
class ContinuousTokenizer(Tokenizer, Protocol):
    """A grid of vectors (:class:`ContinuousLayout`), optionally generated scale by scale."""

    def with_scales(self, scales: tuple[int, ...], resample: str = "bilinear") -> ContinuousTokenizer:
        """A copy generating these scales (this tokenizer is left as it is)."""
        ...

    def scale_maps(self, tokens: torch.Tensor) -> list[torch.Tensor]: ...

    def next_input(self, tokens: torch.Tensor, scale: int) -> torch.Tensor: ...

    def teacher_inputs(self, maps: list[torch.Tensor]) -> torch.Tensor: ...


@runtime_checkable
class VideoTokenizer(Tokenizer, Protocol):
    """Latent frames x grid of ids (:class:`VideoLayout`)."""

    def latent_frames(self, frames: int) -> int:
        """How many latent frames ``frames`` pixel frames become."""
        ...


FAMILIES: dict[type, type] = {  # layout class -> the protocol its tokenizers implement
    GridLayout: GridTokenizer,
    CoarseToFineLayout: CoarseToFineTokenizer,
    ScaleLayout: ScaleTokenizer,
    ByteLayout: ByteStreamTokenizer,
    ContinuousLayout: ContinuousTokenizer,
    VideoLayout: VideoTokenizer,
}


def register_family(layout: type, protocol: type) -> None:
    """A new layout family: tokens of ``layout``'s class, tokenizers implementing ``protocol``
    (a ``runtime_checkable`` protocol). A layout class that already has a family is an error."""
    if FAMILIES.get(layout, protocol) is not protocol:
        raise ValueError(f"{layout.__name__} already belongs to {FAMILIES[layout].__name__}")
    FAMILIES[layout] = protocol


def family(tokenizer: Any) -> type:
    """The protocol of ``tokenizer``'s layout family."""
    layout = type(tokenizer.layout)
    if layout not in FAMILIES:
        raise TypeError(f"{type(tokenizer).__name__}'s layout {layout.__name__} belongs to no family")
    return FAMILIES[layout]
