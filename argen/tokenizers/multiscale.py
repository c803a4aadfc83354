"""Residual pyramids of id maps, quantised coarse to fine, and VAR's multi-scale residual VQ.

For each scale ``pn`` of ``patch_nums`` the residual is downsampled to pn x pn and quantised;
the code map's contribution at the latent size is subtracted from the residual. ``f_hat``, the
running sum, is what the decoder reads; the generator's input for scale k+1 is ``f_hat`` after
scale k downsampled to that scale. :class:`PyramidVQModel` holds this loop; subclasses say how
a scale is downsampled and how its codes return to the latent size. VAR's
(:class:`MultiScaleVQModel`): area downsampling; bicubic upsampling refined by a "phi"
convolution (0.5 x + 0.5 conv3x3(x)); one shared codebook.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from argen.tokenizers.layout import ScaleLayout
from argen.tokenizers.quantizer import VectorQuantizer
from argen.tokenizers.vq import VQConfig, VQModel


@dataclass
class PyramidVQConfig(VQConfig):
    """A :class:`VQConfig` plus the scales, coarse to fine, ending at the latent size."""

    patch_nums: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
    l2_norm: bool = False  # residuals need an unnormalised codebook

    def __post_init__(self) -> None:
        super().__post_init__()
        side = self.resolution // 2 ** (len(self.channel_mult) - 1)
        if list(self.patch_nums) != sorted(set(self.patch_nums)) or self.patch_nums[-1] != side:
            raise ValueError(f"patch_nums must increase strictly and end at the latent size {side}")
        if self.l2_norm:
            raise ValueError("residual quantisation needs l2_norm: false")

    @classmethod
    def doubling(cls, latent: int, **kwargs) -> PyramidVQConfig:
        """FlowAR's schedule: each scale double the previous, ending at ``latent``."""
        scales = [latent]
        while scales[-1] % 2 == 0 and scales[-1] > 1:
            scales.append(scales[-1] // 2)
        return cls(patch_nums=tuple(reversed(scales)), **kwargs)


@dataclass
class MultiScaleVQConfig(PyramidVQConfig):
    """``phi_count``: 1 shares one phi, ``len(patch_nums)`` gives one per scale, anything
    between is VAR's partial sharing (scale -> nearest tick)."""

    phi_count: int = 4
    phi_ratio: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.phi_count <= len(self.patch_nums):
            raise ValueError(f"phi_count must lie in [1, {len(self.patch_nums)}]")


class Phi(nn.Module):
    def __init__(self, channels: int, ratio: float):
        super().__init__()
        self.ratio = ratio
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * (1 - self.ratio) + self.conv(h) * self.ratio


class PyramidVQModel(VQModel):
    """The VQ autoencoder with a residual pyramid in place of single-scale quantisation.
    Subclasses define :meth:`downsample` and :meth:`scale_code`."""

    @property
    def layout(self) -> ScaleLayout:
        return ScaleLayout(tuple(self.config.patch_nums), self.config.codebook_size)

    def downsample(self, x: torch.Tensor, size: int) -> torch.Tensor:
        """A latent-size map (B, D, h, w) -> (B, D, size, size)."""
        raise NotImplementedError

    def scale_code(self, ids: torch.Tensor, scale: int) -> torch.Tensor:
        """ids (B, pn, pn) of scale ``scale`` -> their contribution to f_hat (B, D, h, w)."""
        raise NotImplementedError

    def quantizer(self, scale: int) -> VectorQuantizer:
        """The codebook of scale ``scale``: one shared by all scales unless a subclass says."""
        return self.quantize

    def quantise(self, f: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, torch.Tensor]]:
        """Latent f (B, D, h, w) -> (f_hat with straight-through gradient, ids per scale, stats)."""
        rest, f_hat = f.detach(), torch.zeros_like(f)
        ids, loss = [], f.new_zeros(())
        for k, pn in enumerate(self.config.patch_nums):
            down = self.downsample(rest, pn) if pn != rest.shape[-1] else rest
            flat = down.permute(0, 2, 3, 1).reshape(-1, down.shape[1])  # (B*pn*pn, D)
            ids.append(self.quantizer(k).nearest(flat).view(f.shape[0], pn, pn))
            h = self.scale_code(ids[-1], k)
            f_hat, rest = f_hat + h, rest - h.detach()
            loss = (
                loss + F.mse_loss(f_hat, f.detach()) + self.config.commit_beta * F.mse_loss(f_hat.detach(), f)
            )
        stats = {"codebook_loss": loss / len(ids), **self.usage(ids)}
        stats["commit_loss"] = torch.zeros_like(loss)  # folded into codebook_loss, as VAR does
        return f + (f_hat - f).detach(), ids, stats  # straight through to the encoder, as VAR

    def usage(self, ids: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Codebook usage and perplexity of all scales' ids, and of each scale's
        (``scale<k>/codebook_usage``, ``scale<k>/perplexity``)."""
        per_scale = [self.quantizer(k).usage(x) for k, x in enumerate(ids)]
        stats = self.overall_usage(ids, per_scale)
        stats.update({f"scale{k}/{key}": value for k, u in enumerate(per_scale) for key, value in u.items()})
        return stats

    def overall_usage(
        self, ids: list[torch.Tensor], per_scale: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """Usage and perplexity of the shared codebook over all scales' ids."""
        return self.quantize.usage(torch.cat([i.flatten() for i in ids]))

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Reconstruct ``pixels`` (B, C, H, W); returns (reconstruction, quantiser stats)."""
        f_hat, _, stats = self.quantise(self.quant_conv(self.encoder(pixels)))
        return self.decoder(self.post_quant_conv(f_hat)), stats

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """pixels in [-1, 1], (B, C, H, W) -> ids per scale [(B, pn, pn), ...]."""
        self._check_pixels(pixels)
        _, ids, _ = self.quantise(self.quant_conv(self.encoder(pixels)))
        return ids

    @torch.no_grad()
    def decode(self, ids: list[torch.Tensor]) -> torch.Tensor:
        """ids per scale -> pixels (B, C, H, W), clamped to [-1, 1]."""
        if len(ids) != len(self.config.patch_nums):
            raise ValueError(f"expected {len(self.config.patch_nums)} scales of ids, got {len(ids)}")
        f_hat = sum(self.scale_code(x, k) for k, x in enumerate(ids))
        return self.decoder(self.post_quant_conv(f_hat)).clamp(-1, 1)

    @torch.no_grad()
    def next_input(
        self, f_hat: torch.Tensor, ids: torch.Tensor, scale: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Add scale ``scale``'s ids to f_hat (B, D, h, w) -> (new f_hat, the generator's input
        for the next scale (B, pn_next**2, D))."""
        f_hat = f_hat + self.scale_code(ids, scale)
        down = self.downsample(f_hat, self.config.patch_nums[scale + 1])
        return f_hat, down.flatten(2).transpose(1, 2)

    def empty_f_hat(self, batch: int) -> torch.Tensor:
        """The running sum before the first scale: zeros (B, D, h, w)."""
        side, weight = self.config.patch_nums[-1], self.quantize.embedding.weight
        return weight.new_zeros(batch, self.config.codebook_dim, side, side)

    @torch.no_grad()
    def teacher_inputs(self, ids: list[torch.Tensor]) -> torch.Tensor:
        """ids per scale -> generator inputs for scales 1.. (B, sum(pn**2) - pn_0**2, D)."""
        f_hat, inputs = self.empty_f_hat(ids[0].shape[0]), []
        for k in range(len(ids) - 1):
            f_hat, x = self.next_input(f_hat, ids[k], k)
            inputs.append(x)
        return torch.cat(inputs, 1)


class MultiScaleVQModel(PyramidVQModel):
    """VAR's multi-scale residual VQ."""

    Config = MultiScaleVQConfig

    def __init__(self, config: MultiScaleVQConfig):
        super().__init__(config)
        self.phis = nn.ModuleList(Phi(config.codebook_dim, config.phi_ratio) for _ in range(config.phi_count))

    def downsample(self, x: torch.Tensor, size: int) -> torch.Tensor:
        return F.interpolate(x, size=(size, size), mode="area")

    def phi_index(self, scale: int) -> int:
        """Which phi refines scale ``scale``: the nearest of evenly spaced ticks, exactly as VAR
        computes it (numpy float64; its ticks start at 1/3K for K = 4 phis, else at 1/2K)."""
        count, num_scales = self.config.phi_count, len(self.config.patch_nums)
        margin = 1 / 3 / count if count == 4 else 1 / 2 / count
        ticks = np.linspace(margin, 1 - margin, count)
        return int(np.argmin(np.abs(ticks - scale / max(num_scales - 1, 1))))

    def scale_code(self, ids: torch.Tensor, scale: int) -> torch.Tensor:
        """ids (B, pn, pn) of scale ``scale`` -> their contribution to f_hat (B, D, h, w)."""
        h = self.quantize.lookup(ids)  # (B, D, pn, pn)
        side = self.config.patch_nums[-1]
        if h.shape[-1] != side:
            h = F.interpolate(h, size=(side, side), mode="bicubic")
        return self.phis[self.phi_index(scale)](h)
