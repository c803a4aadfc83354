"""Spatio-temporal video VQ with a causal 3-D convolutional encoder and decoder.

Every 3-D convolution pads time on the left only (with copies of the first frame), so an
output frame never sees a later input frame. The first frame is kept separate, as in causal
video VAEs: a clip of ``1 + s*k`` frames (``s`` = 2 ** temporal_downsample) becomes ``1 + k``
latent frames, the first a function of frame 0 alone, each later one of ``s`` new frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from argen.tokenizers.blocks import group_norm
from argen.tokenizers.layout import VideoLayout
from argen.tokenizers.quantizer import VectorQuantizer


@dataclass
class CausalVideoVQConfig:
    resolution: int = 64
    frames: int = 17  # 1 + a multiple of 2 ** temporal_downsample
    in_channels: int = 3
    base_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 4)  # one level per entry; all but the last halve H, W
    temporal_downsample: int = 2  # the first levels that also halve time
    num_res_blocks: int = 1
    z_channels: int = 128
    norm_groups: int = 32
    codebook_size: int = 1024
    codebook_dim: int = 8
    l2_norm: bool = True
    commit_beta: float = 0.25

    def __post_init__(self) -> None:
        spatial = 2 ** (len(self.channel_mult) - 1)
        if self.resolution % spatial:
            raise ValueError(f"resolution {self.resolution} is not divisible by the stride {spatial}")
        if not 0 <= self.temporal_downsample < len(self.channel_mult):
            raise ValueError(
                f"temporal_downsample must lie in [0, {len(self.channel_mult) - 1}], "
                f"got {self.temporal_downsample}"
            )
        if (self.frames - 1) % self.time_stride:
            raise ValueError(
                f"frames must be 1 + a multiple of {self.time_stride} (the first frame is kept "
                f"separate), got {self.frames}"
            )

    @property
    def time_stride(self) -> int:
        return 2**self.temporal_downsample

    @property
    def latent_frames(self) -> int:
        return 1 + (self.frames - 1) // self.time_stride


class CausalConv3d(nn.Module):
    """3-D convolution, causal in time: (B, C, T, H, W) -> (B, C', T', H/s, W/s)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, time_stride: int = 1, space_stride: int = 1):
        super().__init__()
        self.time_pad = kernel - 1
        self.conv = nn.Conv3d(
            in_ch,
            out_ch,
            kernel,
            stride=(time_stride, space_stride, space_stride),
            padding=(0, kernel // 2, kernel // 2),
        )
        # start as a per-frame 2-D convolution (earlier frames' taps at zero): a full 3-D
        # initialisation left training stuck at the blank-canvas reconstruction here
        with torch.no_grad():
            self.conv.weight[:, :, :-1].zero_()
            nn.init.kaiming_uniform_(self.conv.weight[:, :, -1], a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)  # repeated first frame
        return self.conv(torch.cat([first, x], dim=2))


class FrameGroupNorm(nn.Module):
    """Group norm over each frame on its own (statistics across time would leak the future)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = group_norm(channels, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t = x.shape[:3]
        frames = self.norm(x.transpose(1, 2).flatten(0, 1))  # (B*T, C, H, W)
        return frames.view(b, t, *frames.shape[1:]).transpose(1, 2)


class CausalResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = FrameGroupNorm(in_ch, groups), CausalConv3d(in_ch, out_ch)
        self.norm2, self.conv2 = FrameGroupNorm(out_ch, groups), CausalConv3d(out_ch, out_ch)
        self.shortcut = nn.Conv3d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return self.shortcut(x) + self.conv2(F.silu(self.norm2(h)))


class CausalUpsample(nn.Module):
    """Doubles H, W (and time, the first frame excepted), then a causal convolution."""

    def __init__(self, ch: int, time: bool):
        super().__init__()
        self.time = time
        self.conv = CausalConv3d(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time:  # (B, C, 1 + k, H, W) -> (B, C, 1 + 2k, H, W)
            x = torch.cat([x[:, :, :1], x[:, :, 1:].repeat_interleave(2, dim=2)], dim=2)
        x = F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest")
        return self.conv(x)


class CausalEncoder(nn.Module):
    def __init__(self, c: CausalVideoVQConfig):
        super().__init__()
        chans = [c.base_channels * m for m in c.channel_mult]
        self.conv_in = CausalConv3d(c.in_channels, chans[0])
        layers: list[nn.Module] = []
        ch = chans[0]
        for level, out in enumerate(chans):
            layers += [
                CausalResBlock(ch if i == 0 else out, out, c.norm_groups) for i in range(c.num_res_blocks)
            ]
            ch = out
            if level < len(chans) - 1:
                time = 2 if level < c.temporal_downsample else 1
                layers.append(CausalConv3d(ch, ch, time_stride=time, space_stride=2))
        self.body = nn.Sequential(*layers)
        self.norm_out = FrameGroupNorm(ch, c.norm_groups)
        self.conv_out = CausalConv3d(ch, c.z_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.norm_out(self.body(self.conv_in(x)))))


class CausalDecoder(nn.Module):
    def __init__(self, c: CausalVideoVQConfig):
        super().__init__()
        chans = [c.base_channels * m for m in reversed(c.channel_mult)]
        self.conv_in = CausalConv3d(c.z_channels, chans[0])
        layers: list[nn.Module] = []
        ch = chans[0]
        levels = len(chans)
        for level, out in enumerate(chans):
            layers += [
                CausalResBlock(ch if i == 0 else out, out, c.norm_groups) for i in range(c.num_res_blocks)
            ]
            ch = out
            if level < levels - 1:  # mirrors the encoder: its last downsampling levels halve time
                layers.append(CausalUpsample(ch, time=levels - 2 - level < c.temporal_downsample))
        self.body = nn.Sequential(*layers)
        self.norm_out = FrameGroupNorm(ch, c.norm_groups)
        self.conv_out = CausalConv3d(ch, c.in_channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.norm_out(self.body(self.conv_in(z)))))


class CausalVideoVQModel(nn.Module):
    """clips (B, T, C, H, W) <-> ids (B, 1 + (T-1)/s, h, w)."""

    Config = CausalVideoVQConfig

    def __init__(self, config: CausalVideoVQConfig):
        super().__init__()
        self.config = c = config
        self.encoder = CausalEncoder(c)
        self.quant_conv = nn.Conv3d(c.z_channels, c.codebook_dim, 1)
        self.quantize = VectorQuantizer(c.codebook_size, c.codebook_dim, c.commit_beta, c.l2_norm)
        self.post_quant_conv = nn.Conv3d(c.codebook_dim, c.z_channels, 1)
        self.decoder = CausalDecoder(c)

    @property
    def layout(self) -> VideoLayout:
        side = self.config.resolution // 2 ** (len(self.config.channel_mult) - 1)
        return VideoLayout(self.config.latent_frames, side, side, self.config.codebook_size)

    def latent_frames(self, frames: int) -> int:
        """Latent frames holding exactly the first ``frames`` frames of a clip (1 + s*k of them:
        causal encoding makes those latents independent of later frames)."""
        c = self.config
        if not 0 < frames <= c.frames or (frames - 1) % c.time_stride:
            raise ValueError(
                f"the first frames of a clip map to whole latent frames for 1 + {c.time_stride}*k "
                f"frames (at most {c.frames}), got {frames}"
            )
        return 1 + (frames - 1) // c.time_stride

    def quantized(self, clips: torch.Tensor):
        """clips (B, T, C, H, W) -> (code vectors (B, D, t, h, w), ids (B, t, h, w), stats)."""
        self._check_clips(clips)
        z = self.quant_conv(self.encoder(clips.transpose(1, 2)))  # (B, D, t, h, w)
        b, _, t = z.shape[:3]
        z_q, ids, stats = self.quantize(z.transpose(1, 2).flatten(0, 1))  # per latent frame (B*t, D, h, w)
        z_q = z_q.view(b, t, *z_q.shape[1:]).transpose(1, 2)
        return z_q, ids.view(b, t, *ids.shape[1:]), stats

    def decode_codes(self, z_q: torch.Tensor) -> torch.Tensor:
        """Code vectors (B, D, t, h, w) -> clips (B, T, C, H, W)."""
        return self.decoder(self.post_quant_conv(z_q)).transpose(1, 2)

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Reconstruct ``clips``; returns (reconstruction, quantiser stats)."""
        z_q, _, stats = self.quantized(clips)
        return self.decode_codes(z_q), stats

    @torch.no_grad()
    def encode(self, clips: torch.Tensor) -> torch.Tensor:
        """clips in [-1, 1] (B, T, C, H, W) -> ids (B, t, h, w)."""
        return self.quantized(clips)[1]

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, t, h, w) -> clips (B, T, C, H, W) in [-1, 1]."""
        z_q = self.quantize.lookup(ids.flatten(0, 1))  # (B*t, D, h, w)
        z_q = z_q.view(*ids.shape[:2], *z_q.shape[1:]).transpose(1, 2)  # (B, D, t, h, w)
        return self.decode_codes(z_q).clamp(-1, 1)

    def _check_clips(self, clips: torch.Tensor) -> None:
        c = self.config
        expected = (c.frames, c.in_channels, c.resolution, c.resolution)
        if clips.ndim != 5 or tuple(clips.shape[1:]) != expected:
            raise ValueError(f"expected clips (B, {', '.join(map(str, expected))}), got {tuple(clips.shape)}")
