"""Frame-wise video VQ: the image VQ applied to every frame of a clip; tokens are laid out
frames x grid."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from argen.tokenizers.frames import FramesField, PerFrame
from argen.tokenizers.layout import VideoLayout
from argen.tokenizers.vq import VQConfig, VQModel


@dataclass
class FrameVQConfig(FramesField, VQConfig):
    """The image tokenizer's config and the frames of a clip."""


class FrameVQModel(PerFrame, VQModel):
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
