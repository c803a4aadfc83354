"""Frame-wise binary video tokens: the BSQ / LFQ autoencoder applied to every frame of a clip;
tokens are d bits per cell, laid out frames x grid (B, T, h, w, d)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from argen.tokenizers.binary import BinaryAutoencoder, BinaryConfig
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
class FrameBinaryConfig(BinaryConfig):
    frames: int = 16  # frames per clip

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")


class FrameBinary(BinaryAutoencoder):
    """Clips (B, T, C, H, W) <-> bits (B, T, h, w, d), one image pass per frame."""

    Config = FrameBinaryConfig

    @property
    def layout(self) -> VideoBitLayout:
        grid = super().layout
        return VideoBitLayout(self.config.frames, grid.height, grid.width, grid.bits)

    def latent_frames(self, frames: int) -> int:
        """Latent frames holding the first ``frames`` frames of a clip (one each)."""
        if not 0 < frames <= self.config.frames:
            raise ValueError(f"frames must lie in [1, {self.config.frames}], got {frames}")
        return frames

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Reconstruct ``clips`` (B, T, C, H, W); returns (reconstruction, quantiser losses)."""
        self._check_clips(clips)
        recon, stats = super().forward(clips.flatten(0, 1))  # (B*T, C, H, W)
        return recon.view_as(clips), stats

    @torch.no_grad()
    def encode(self, clips: torch.Tensor) -> torch.Tensor:
        """Clips in [-1, 1] (B, T, C, H, W) -> bits (B, T, h, w, d)."""
        self._check_clips(clips)
        bits = super().encode(clips.flatten(0, 1))  # (B*T, h, w, d)
        return bits.view(*clips.shape[:2], *bits.shape[1:])

    @torch.no_grad()
    def decode(self, bits: torch.Tensor) -> torch.Tensor:
        """Bits (B, T, h, w, d) -> clips (B, T, C, H, W) in [-1, 1]."""
        if bits.ndim != 5:
            raise ValueError(f"expected bits (B, T, h, w, d), got {tuple(bits.shape)}")
        pixels = super().decode(bits.flatten(0, 1))  # (B*T, C, H, W)
        return pixels.view(*bits.shape[:2], *pixels.shape[1:])

    def _check_clips(self, clips: torch.Tensor) -> None:
        if clips.ndim != 5 or clips.shape[1] != self.config.frames:
            raise ValueError(f"expected clips (B, {self.config.frames}, C, H, W), got {tuple(clips.shape)}")


register_tokenizer(FrameBinary, "frame_binary")
