"""Frame-wise video tokenizers: an image tokenizer applied to every frame of a clip."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class FramesField:
    """Mixed into an image tokenizer's config (before it): the frames of a clip."""

    frames: int = 16  # frames per clip

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")


class PerFrame:
    """Mixed in before an image tokenizer (whose config has ``frames``): clips (B, T, C, H, W)
    pass through its ``forward`` / ``encode`` / ``decode`` one frame at a time, tokens are
    laid out frames first (B, T, ...)."""

    def latent_frames(self, frames: int) -> int:
        """Latent frames holding the first ``frames`` frames of a clip (one each)."""
        if not 0 < frames <= self.config.frames:
            raise ValueError(f"frames must lie in [1, {self.config.frames}], got {frames}")
        return frames

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Reconstruct ``clips`` (B, T, C, H, W); returns (reconstruction, quantiser stats)."""
        self._check_clips(clips)
        recon, stats = super().forward(clips.flatten(0, 1))  # (B*T, C, H, W)
        return recon.view_as(clips), stats

    @torch.no_grad()
    def encode(self, clips: torch.Tensor) -> torch.Tensor:
        """Clips in [-1, 1] (B, T, C, H, W) -> tokens (B, T, ...)."""
        self._check_clips(clips)
        tokens = super().encode(clips.flatten(0, 1))  # (B*T, ...)
        return tokens.view(*clips.shape[:2], *tokens.shape[1:])

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, T, ...) -> clips (B, T, C, H, W) in [-1, 1]."""
        if tokens.ndim < 3 or tokens.shape[1] != self.config.frames:
            raise ValueError(f"expected tokens (B, {self.config.frames}, ...), got {tuple(tokens.shape)}")
        pixels = super().decode(tokens.flatten(0, 1))  # (B*T, C, H, W)
        return pixels.view(*tokens.shape[:2], *pixels.shape[1:])

    def _check_clips(self, clips: torch.Tensor) -> None:
        if clips.ndim != 5 or clips.shape[1] != self.config.frames:
            raise ValueError(f"expected clips (B, {self.config.frames}, C, H, W), got {tuple(clips.shape)}")
