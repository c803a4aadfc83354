"""Frame-wise video VQ: the image VQ applied to every frame of a clip; tokens are laid out
frames x grid."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from argen.tokenizers.layout import VideoLayout
from argen.tokenizers.vq import VQConfig, VQModel


@dataclass
class FrameVQConfig(VQConfig):
    frames: int = 16  # frames per clip

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")


class FrameVQModel(VQModel):
    """clips (B, T, C, H, W) <-> ids (B, T, h, w), one image VQ pass per frame."""

    Config = FrameVQConfig

    @classmethod
    def from_vq(cls, vq: VQModel, frames: int) -> FrameVQModel:
        """An image VQ's weights as a video tokenizer of ``frames`` frames."""
        model = cls(FrameVQConfig(**asdict(vq.config), frames=frames))
        model.load_state_dict(vq.state_dict())
        return model

    @property
    def layout(self) -> VideoLayout:
        grid = super().layout
        return VideoLayout(self.config.frames, grid.height, grid.width, grid.vocab_size)

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
        """clips in [-1, 1] (B, T, C, H, W) -> ids (B, T, h, w)."""
        self._check_clips(clips)
        ids = super().encode(clips.flatten(0, 1))  # (B*T, h, w)
        return ids.view(*clips.shape[:2], *ids.shape[1:])

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T, h, w) -> clips (B, T, C, H, W) in [-1, 1]."""
        pixels = super().decode(ids.flatten(0, 1))  # (B*T, C, H, W)
        return pixels.view(*ids.shape[:2], *pixels.shape[1:])

    def _check_clips(self, clips: torch.Tensor) -> None:
        if clips.ndim != 5 or clips.shape[1] != self.config.frames:
            raise ValueError(f"expected clips (B, {self.config.frames}, C, H, W), got {tuple(clips.shape)}")
