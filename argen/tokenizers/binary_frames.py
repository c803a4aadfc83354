"""Frame-wise binary video tokens: the BSQ / LFQ autoencoder applied to every frame of a clip;
tokens are d bits per cell, laid out frames x grid (B, T, h, w, d)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from argen.tokenizers.binary import BinaryAutoencoder, BinaryConfig
from argen.tokenizers.frames import FramesField, PerFrame
from argen.tokenizers.protocols import Tokenizer, register_family
from argen.tokenizers.registry import register_tokenizer


@dataclass(frozen=True)
class VideoBitLayout:
    """Frames x a raster grid of d-bit tokens, ``bits`` (B, T, h, w, d) in {0, 1}."""

    frames: int
    height: int
    width: int
    bits: int

    @property
    def num_tokens(self) -> int:
        return self.frames * self.height * self.width


@runtime_checkable
class VideoBitTokenizer(Tokenizer, Protocol):
    """Clips <-> bits (B, T, h, w, d) (:class:`VideoBitLayout`)."""

    def latent_frames(self, frames: int) -> int:
        """How many latent frames ``frames`` pixel frames become."""
        ...

    def token_statistics(self, tokens: list[torch.Tensor]) -> dict[str, float]: ...


register_family(VideoBitLayout, VideoBitTokenizer)


@dataclass
class FrameBinaryConfig(FramesField, BinaryConfig):
    """The image tokenizer's config and the frames of a clip."""


class FrameBinary(PerFrame, BinaryAutoencoder):
    """Clips (B, T, C, H, W) <-> bits (B, T, h, w, d), one image pass per frame."""

    Config = FrameBinaryConfig

    @property
    def layout(self) -> VideoBitLayout:
        grid = super().layout
        return VideoBitLayout(self.config.frames, grid.height, grid.width, grid.bits)


register_tokenizer(FrameBinary, "frame_binary")
