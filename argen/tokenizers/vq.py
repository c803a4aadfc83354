"""LlamaGen-style VQ autoencoder: pixels <-> a raster grid of codebook ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from argen.tokenizers.blocks import Decoder, Encoder
from argen.tokenizers.layout import GridLayout
from argen.tokenizers.quantizer import VectorQuantizer


@dataclass
class VQConfig:
    """Constructor arguments of :class:`VQModel` (``VQ-16`` is LlamaGen's 256 px tokenizer)."""

    PRESETS: ClassVar[dict[str, dict]] = {
        "VQ-16": dict(channel_mult=(1, 1, 2, 2, 4), base_channels=128, z_channels=256),
        "VQ-8": dict(channel_mult=(1, 2, 2, 4), base_channels=128, z_channels=256),
    }

    resolution: int = 256
    in_channels: int = 3
    base_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 256
    norm_groups: int = 32
    mid_attention: bool = True
    level_attention: bool = True  # attention after every res block of the lowest resolution
    dropout: float = 0.0
    codebook_size: int = 16384
    codebook_dim: int = 8
    l2_norm: bool = True
    commit_beta: float = 0.25
    quant_conv_kernel: int = 1  # VAR's VQVAE uses 3

    def __post_init__(self) -> None:
        factor = 2 ** (len(self.channel_mult) - 1)
        if self.resolution % factor:
            raise ValueError(f"resolution {self.resolution} is not divisible by the stride {factor}")


class VQModel(nn.Module):
    Config = VQConfig

    def __init__(self, config: VQConfig):
        super().__init__()
        self.config = c = config
        self.encoder = Encoder(c)
        k = c.quant_conv_kernel
        self.quant_conv = nn.Conv2d(c.z_channels, c.codebook_dim, k, padding=k // 2)
        self.quantize = VectorQuantizer(c.codebook_size, c.codebook_dim, c.commit_beta, c.l2_norm)
        self.post_quant_conv = nn.Conv2d(c.codebook_dim, c.z_channels, k, padding=k // 2)
        self.decoder = Decoder(c)

    @property
    def layout(self) -> GridLayout:
        side = self.config.resolution // 2 ** (len(self.config.channel_mult) - 1)
        return GridLayout(side, side, self.config.codebook_size)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Reconstruct ``pixels`` (B, C, H, W); returns (reconstruction, quantiser stats)."""
        z_q, _, stats = self.quantize(self.quant_conv(self.encoder(pixels)))
        return self.decoder(self.post_quant_conv(z_q)), stats

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels in [-1, 1], (B, C, H, W) -> ids (B, h, w)."""
        self._check_pixels(pixels)
        _, ids, _ = self.quantize(self.quant_conv(self.encoder(pixels)))
        return ids

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, h, w) -> pixels (B, C, H, W), clamped to [-1, 1]."""
        z_q = self.quantize.lookup(ids)
        return self.decoder(self.post_quant_conv(z_q)).clamp(-1, 1)

    def _check_pixels(self, pixels: torch.Tensor) -> None:
        c = self.config
        if pixels.ndim != 4 or pixels.shape[1] != c.in_channels:
            raise ValueError(f"expected pixels (B, {c.in_channels}, H, W), got {tuple(pixels.shape)}")
        if pixels.shape[-2:] != (c.resolution, c.resolution):
            raise ValueError(
                f"this tokenizer was built for {c.resolution}x{c.resolution} images, got "
                f"{tuple(pixels.shape[-2:])}"
            )
