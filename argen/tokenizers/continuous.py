"""Continuous tokens: a KL autoencoder (``diffusers.AutoencoderKL``) whose scaled latents,
optionally patchified, are the tokens. Trainable from scratch or loaded from a diffusers
directory / hub id (e.g. ``stabilityai/sd-vae-ft-ema``) with its latent scaling.

Tokens are ``(latent - shift) * scale`` cut into ``patch_size`` x ``patch_size``
patches: a grid (B, L, d) with d = channels * patch_size**2. With ``patch_nums`` they are
also read as FlowAR scales: the grid area-downsampled to each side, coarse to fine; the
generator's input for scale k+1 is scale k upsampled (bilinear) to that side.

``scale`` is the config's ``scaling_factor``, or with ``scaling_factor: 0`` one over the
latents' standard deviation, tracked while the tokenizer trains (LDM's scale-by-std), so
tokens have unit variance.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from argen.tokenizers.layout import ContinuousLayout


@dataclass
class ContinuousConfig:
    """Constructor arguments of :class:`ContinuousTokenizer`; the stride is
    2 ** (len(block_out_channels) - 1)."""

    resolution: int = 256
    in_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)  # the SD VAE's
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_groups: int = 32
    mid_attention: bool = True
    scaling_factor: float = 0.18215  # 0: one over the latents' std, measured in training
    shift_factor: float = 0.0
    patch_size: int = 1
    patch_nums: tuple[int, ...] = ()  # FlowAR scales in tokens per side, ending at the grid side
    # how a scale becomes the next scale's input: bilinear up to it, or "flowar": bicubic up to
    # the full grid, then area down to the next scale (FlowAR's)
    scale_resample: Literal["bilinear", "flowar"] = "bilinear"

    def __post_init__(self) -> None:
        stride = 2 ** (len(self.block_out_channels) - 1) * self.patch_size
        if self.resolution % stride:
            raise ValueError(f"resolution {self.resolution} is not divisible by stride x patch size {stride}")
        side = self.resolution // stride
        if self.patch_nums and (
            list(self.patch_nums) != sorted(set(self.patch_nums)) or self.patch_nums[-1] != side
        ):
            raise ValueError(f"patch_nums must increase strictly and end at the token grid side {side}")
        if self.scale_resample not in ("bilinear", "flowar"):
            raise ValueError(f"scale_resample is bilinear or flowar, got {self.scale_resample!r}")

    @property
    def side(self) -> int:
        """Tokens per side of the grid."""
        return self.resolution // (2 ** (len(self.block_out_channels) - 1) * self.patch_size)


class ContinuousTokenizer(nn.Module):
    Config = ContinuousConfig

    def __init__(self, config: ContinuousConfig):
        super().__init__()
        self.config = c = config
        from diffusers import AutoencoderKL  # imported when used: diffusers takes seconds to import

        n = len(c.block_out_channels)
        self.vae = AutoencoderKL(
            in_channels=c.in_channels,
            out_channels=c.in_channels,
            down_block_types=("DownEncoderBlock2D",) * n,
            up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=tuple(c.block_out_channels),
            layers_per_block=c.layers_per_block,
            latent_channels=c.latent_channels,
            norm_num_groups=c.norm_groups,
            sample_size=c.resolution,
            mid_block_add_attention=c.mid_attention,
        )
        self.register_buffer("latent_std", torch.ones(()))  # running std of the latents (training)

    @property
    def scale(self) -> float:
        """The factor that turns latents into tokens."""
        return self.config.scaling_factor or 1.0 / float(self.latent_std)

    @classmethod
    def from_pretrained(
        cls, source: str | Path, resolution: int = 256, patch_size: int = 1, patch_nums: tuple[int, ...] = ()
    ) -> ContinuousTokenizer:
        """A diffusers ``AutoencoderKL`` (local directory or hub id) with its scaling factor."""
        from diffusers import AutoencoderKL

        try:
            vae = AutoencoderKL.from_pretrained(str(source))
        except (OSError, ValueError) as err:
            raise OSError(f"cannot load a diffusers AutoencoderKL from {source}: {err}") from None
        vc = vae.config
        if list(vc.down_block_types) != ["DownEncoderBlock2D"] * len(vc.block_out_channels):
            raise ValueError(f"{source}: unsupported encoder blocks {vc.down_block_types}")
        config = ContinuousConfig(
            resolution=resolution,
            in_channels=vc.in_channels,
            block_out_channels=tuple(vc.block_out_channels),
            layers_per_block=vc.layers_per_block,
            latent_channels=vc.latent_channels,
            norm_groups=vc.norm_num_groups,
            mid_attention=vc.get("mid_block_add_attention", True),
            scaling_factor=vc.scaling_factor,
            shift_factor=vc.shift_factor or 0.0,
            patch_size=patch_size,
            patch_nums=tuple(patch_nums),
        )
        model = cls(config)
        model.vae.load_state_dict(vae.state_dict())
        return model.eval()

    def with_scales(self, patch_nums: tuple[int, ...], resample: str = "bilinear") -> ContinuousTokenizer:
        """A copy that generates these scales (tokens per side, ending at the grid side) instead
        of the grid, each the next one's input through ``resample`` (see
        ``ContinuousConfig.scale_resample``); this tokenizer is left as it is."""
        scaled = copy.deepcopy(self)
        scaled.config = replace(self.config, patch_nums=tuple(patch_nums), scale_resample=resample)
        return scaled

    @property
    def layout(self) -> ContinuousLayout:
        c = self.config
        return ContinuousLayout(c.side, c.side, c.latent_channels * c.patch_size**2, tuple(c.patch_nums))

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Reconstruct ``pixels`` through a posterior sample -> (reconstruction, {"kl_loss"}),
        the KL to N(0, I) summed over latent elements and averaged over images."""
        posterior = self.vae.encode(pixels).latent_dist
        if self.training:
            self.latent_std.lerp_(posterior.mean.detach().float().std(), 0.01)
        recon = self.vae.decode(posterior.sample()).sample
        return recon, {"kl_loss": posterior.kl().mean()}

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels in [-1, 1], (B, C, H, W) -> tokens (B, L, d) from the posterior mean."""
        c = self.config
        if pixels.ndim != 4 or pixels.shape[1:] != (c.in_channels, c.resolution, c.resolution):
            expected = (c.in_channels, c.resolution, c.resolution)
            raise ValueError(f"expected pixels (B, *{expected}), got {tuple(pixels.shape)}")
        latent = self.vae.encode(pixels).latent_dist.mean
        scaled = (latent - c.shift_factor) * self.scale
        p = c.patch_size
        return rearrange(scaled, "b c (h p) (w q) -> b (h w) (c p q)", p=p, q=p)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, L, d) -> pixels (B, C, H, W), clamped to [-1, 1]."""
        c, layout = self.config, self.layout
        if tokens.shape[1:] != (layout.height * layout.width, layout.token_dim):
            raise ValueError(f"expected tokens (B, {layout.height * layout.width}, {layout.token_dim})")
        p = c.patch_size
        scaled = rearrange(tokens, "b (h w) (c p q) -> b c (h p) (w q)", h=c.side, p=p, q=p)
        latent = scaled.to(self.vae.dtype) / self.scale + c.shift_factor
        return self.vae.decode(latent).sample.clamp(-1, 1)

    # --- FlowAR scales ---------------------------------------------------------------------
    def scale_maps(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """The grid (B, L, d) -> every scale's tokens [(B, pn**2, d), ...], area-downsampled."""
        grid = rearrange(tokens, "b (h w) d -> b d h w", h=self.config.side)
        return [
            rearrange(F.interpolate(grid, size=(pn, pn), mode="area"), "b d h w -> b (h w) d")
            for pn in self.config.patch_nums
        ]

    def next_input(self, tokens: torch.Tensor, scale: int) -> torch.Tensor:
        """Scale ``scale``'s tokens (B, pn**2, d) -> the generator's input for the next scale
        (B, pn_next**2, d): upsampled bilinearly, or FlowAR's bicubic to the full grid then
        area-downsampled."""
        c = self.config
        pn, nxt = c.patch_nums[scale], c.patch_nums[scale + 1]
        grid = rearrange(tokens, "b (h w) d -> b d h w", h=pn)
        if c.scale_resample == "flowar":
            full = F.interpolate(grid, size=(c.side, c.side), mode="bicubic", align_corners=False)
            up = F.interpolate(full, size=(nxt, nxt), mode="area")
        else:
            up = F.interpolate(grid, size=(nxt, nxt), mode="bilinear", align_corners=False)
        return rearrange(up, "b d h w -> b (h w) d")

    def teacher_inputs(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """Every scale's tokens -> generator inputs for scales 1.. (B, sum(pn**2) - pn_0**2, d)."""
        return torch.cat([self.next_input(x, k) for k, x in enumerate(maps[:-1])], 1)
