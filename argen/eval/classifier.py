"""A small CNN classifier trained on a dataset's own images or clips: its penultimate features
give a dataset-specific Fréchet distance where Inception (or I3D) weights are unavailable, and
its predictions measure class-consistency of conditional samples. Clips are read by early
fusion: their ``frames`` frames stacked as channels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from argen.checkpoint import load_model


@dataclass
class ClassifierConfig:
    num_classes: int = 10
    resolution: int = 16
    in_channels: int = 3
    frames: int = 1  # > 1: a clip classifier over this many frames (stacked as channels)
    channels: tuple[int, ...] = (32, 64, 128)
    feature_dim: int = 128
    dropout: float = 0.2


class Classifier(nn.Module):
    Config = ClassifierConfig

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = c = config
        layers: list[nn.Module] = []
        ch = c.in_channels * c.frames
        for out in c.channels:
            layers += [
                nn.Conv2d(ch, out, 3, padding=1),
                nn.GroupNorm(8, out),
                nn.SiLU(),
                nn.Conv2d(out, out, 3, padding=1),
                nn.GroupNorm(8, out),
                nn.SiLU(),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            ch = out
        self.body = nn.Sequential(*layers)
        self.features_proj = nn.Linear(ch, c.feature_dim)
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.feature_dim, c.num_classes)

    @property
    def num_features(self) -> int:
        return self.config.feature_dim

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels in [-1, 1] (B, C, H, W), or clips (B, T, C, H, W) for a clip classifier ->
        penultimate features (B, feature_dim).

        Inputs of another size are resized to the training resolution first."""
        frames = pixels.shape[1] if pixels.ndim == 5 else 1
        if frames != self.config.frames:
            raise ValueError(
                f"this classifier reads {self.config.frames} frame(s) per sample, got {tuple(pixels.shape)}"
            )
        pixels = pixels.flatten(1, 2) if pixels.ndim == 5 else pixels  # (B, T*C, H, W)
        if pixels.shape[-1] != self.config.resolution:
            size = self.config.resolution
            pixels = F.interpolate(pixels, size=size, mode="bilinear", antialias=True)
        h = self.body(pixels).mean(dim=(2, 3))  # (B, C) global average pool
        return F.silu(self.features_proj(h))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels -> class logits (B, num_classes)."""
        return self.head(self.dropout(self.features(pixels)))


def load_classifier(path: str | Path) -> Classifier:
    return load_model(path, {"Classifier": Classifier})
