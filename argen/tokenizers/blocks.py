"""Convolutional building blocks of the VQ autoencoders (encoder, decoder, PatchGAN)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

if TYPE_CHECKING:
    from argen.tokenizers.vq import VQConfig


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
        self.nin_shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all spatial positions."""

    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.norm = group_norm(ch, groups)
        self.q, self.k, self.v = (nn.Conv2d(ch, ch, 1) for _ in range(3))
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        normed = self.norm(x)
        q, k, v = (rearrange(f(normed), "b c h w -> b 1 (h w) c") for f in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v)  # (B, 1, h*w, C)
        return x + self.proj_out(rearrange(y, "b 1 (h w) c -> b c h w", h=h, w=w))


class Downsample(nn.Module):
    """Stride-2 3x3 conv with (0, 1, 0, 1) padding: (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution level: res blocks, each followed by attention when ``attention`` is
    set, then an optional ``resample`` layer (``down`` or ``up``)."""

    def __init__(self, in_ch, out_ch, num_blocks, groups, dropout, attention, resample=None):
        super().__init__()
        self.res = nn.ModuleList(
            ResBlock(in_ch if i == 0 else out_ch, out_ch, groups, dropout) for i in range(num_blocks)
        )
        self.attn = nn.ModuleList(AttnBlock(out_ch, groups) for _ in range(num_blocks if attention else 0))
        if resample == "down":
            self.downsample = Downsample(out_ch)
        if resample == "up":
            self.upsample = Upsample(out_ch)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.res):
            h = block(h)
            if self.attn:
                h = self.attn[i](h)
        for name in ("downsample", "upsample"):
            if hasattr(self, name):
                h = getattr(self, name)(h)
        return h


def mid_block(ch: int, groups: int, attention: bool, dropout: float) -> nn.ModuleList:
    layers = [ResBlock(ch, ch, groups, dropout)]
    if attention:
        layers.append(AttnBlock(ch, groups))
    layers.append(ResBlock(ch, ch, groups, dropout))
    return nn.ModuleList(layers)


class Encoder(nn.Module):
    """pixels (B, C, H, W) -> features (B, z_channels, H/f, W/f), f = 2**(len(channel_mult)-1).

    Parameter names follow LlamaGen's VQ so its official weights load without renaming.
    """

    def __init__(self, c: VQConfig):
        super().__init__()
        self.conv_in = nn.Conv2d(c.in_channels, c.base_channels, 3, padding=1)
        last = len(c.channel_mult) - 1
        chans = [c.base_channels] + [c.base_channels * m for m in c.channel_mult]
        self.conv_blocks = nn.ModuleList(
            Level(
                chans[i],
                chans[i + 1],
                c.num_res_blocks,
                c.norm_groups,
                c.dropout,
                attention=c.level_attention and i == last,
                resample="down" if i < last else None,
            )
            for i in range(len(c.channel_mult))
        )
        self.mid = mid_block(chans[-1], c.norm_groups, c.mid_attention, c.dropout)
        self.norm_out = group_norm(chans[-1], c.norm_groups)
        self.conv_out = nn.Conv2d(chans[-1], c.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.conv_blocks:
            h = level(h)
        for block in self.mid:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """features (B, z_channels, h, w) -> pixels (B, C, h*f, w*f); mirrors :class:`Encoder`."""

    def __init__(self, c: VQConfig):
        super().__init__()
        last = len(c.channel_mult) - 1
        ch = c.base_channels * c.channel_mult[-1]
        self.conv_in = nn.Conv2d(c.z_channels, ch, 3, padding=1)
        self.mid = mid_block(ch, c.norm_groups, c.mid_attention, c.dropout)
        levels = []
        for i in reversed(range(len(c.channel_mult))):
            out = c.base_channels * c.channel_mult[i]
            levels.append(
                Level(
                    ch,
                    out,
                    c.num_res_blocks + 1,
                    c.norm_groups,
                    c.dropout,
                    attention=c.level_attention and i == last,
                    resample="up" if i > 0 else None,
                )
            )
            ch = out
        self.conv_blocks = nn.ModuleList(levels)
        self.norm_out = group_norm(ch, c.norm_groups)
        self.conv_out = nn.Conv2d(ch, c.in_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for block in self.mid:
            h = block(h)
        for level in self.conv_blocks:
            h = level(h)
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
