"""Convolutional building blocks of the VQ autoencoders (encoder, decoder, PatchGAN)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, groups: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(in_ch, groups)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = group_norm(out_ch, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all spatial positions."""

    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.norm = group_norm(ch, groups)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=1)
        q, k, v = (rearrange(t, "b c h w -> b 1 (h w) c") for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v)  # (B, 1, h*w, C)
        return x + self.proj(rearrange(y, "b 1 (h w) c -> b c h w", h=h, w=w))


def mid_block(ch: int, groups: int, attention: bool, dropout: float) -> nn.Sequential:
    layers = [ResBlock(ch, ch, groups, dropout)]
    if attention:
        layers.append(AttnBlock(ch, groups))
    layers.append(ResBlock(ch, ch, groups, dropout))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """pixels (B, C, H, W) -> features (B, z_channels, H/f, W/f), f = 2**(len(channel_mult)-1)."""

    def __init__(
        self,
        in_channels: int,
        base_channels: int,
        channel_mult: tuple[int, ...],
        num_res_blocks: int,
        z_channels: int,
        groups: int,
        mid_attention: bool,
        dropout: float,
    ):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        layers: list[nn.Module] = []
        ch = base_channels
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers.append(ResBlock(ch, base_channels * mult, groups, dropout))
                ch = base_channels * mult
            if level < len(channel_mult) - 1:
                layers.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.down = nn.Sequential(*layers)
        self.mid = mid_block(ch, groups, mid_attention, dropout)
        self.norm_out = group_norm(ch, groups)
        self.conv_out = nn.Conv2d(ch, z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.down(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Decoder(nn.Module):
    """features (B, z_channels, h, w) -> pixels (B, C, h*f, w*f); mirrors :class:`Encoder`."""

    def __init__(
        self,
        out_channels: int,
        base_channels: int,
        channel_mult: tuple[int, ...],
        num_res_blocks: int,
        z_channels: int,
        groups: int,
        mid_attention: bool,
        dropout: float,
    ):
        super().__init__()
        ch = base_channels * channel_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, ch, 3, padding=1)
        self.mid = mid_block(ch, groups, mid_attention, dropout)
        layers: list[nn.Module] = []
        for level, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(num_res_blocks + 1):
                layers.append(ResBlock(ch, base_channels * mult, groups, dropout))
                ch = base_channels * mult
            if level > 0:
                layers.append(Upsample(ch))
        self.up = nn.Sequential(*layers)
        self.norm_out = group_norm(ch, groups)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.up(self.mid(self.conv_in(z)))
        return self.conv_out(F.silu(self.norm_out(h)))


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator: (B, C, H, W) -> patch logits (B, 1, h, w).

    GroupNorm replaces the original BatchNorm so real and fake batches, and processes
    under DDP, never share batch statistics.
    """

    def __init__(self, in_channels: int = 3, channels: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, channels, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        ]
        ch = channels
        for i in range(1, n_layers + 1):
            out = channels * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [
                nn.Conv2d(ch, out, 4, stride=stride, padding=1, bias=False),
                group_norm(out, 32),
                nn.LeakyReLU(0.2),
            ]
            ch = out
        layers.append(nn.Conv2d(ch, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
