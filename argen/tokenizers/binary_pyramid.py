"""Multi-scale binary tokens (Infinity's multi-scale BSQ): a residual pyramid of d-bit maps.

For each scale ``pn`` of ``patch_nums`` the residual is area-downsampled to pn x pn and
quantised by the binary quantiser (BSQ or LFQ, as :mod:`argen.tokenizers.binary`); its codes
are upsampled bilinearly to the latent size (Infinity's trilinear over one frame), added to
``f_hat`` and subtracted (detached) from the residual. The decoder reads ``f_hat``; the
generator's input for scale k+1 is ``f_hat`` after scale k, resized bilinearly to that scale
(as Infinity's generator reads it). Tokens are bits per scale [(B, pn, pn, d), ...], stored
flat as (B, sum(pn**2) * d). With ``encode_to: latent`` (set by the generator recipe that
trains with bitwise self-correction) ``encode`` gives the latent before quantisation instead,
(B, h, w, d), from which :meth:`BinaryPyramid.self_corrected` draws the bits at every step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from argen.tokenizers.binary import BinaryAutoencoder, BinaryConfig
from argen.tokenizers.protocols import Tokenizer, register_family
from argen.tokenizers.registry import register_tokenizer


@dataclass(frozen=True)
class BitScaleLayout:
    """Residual maps of d-bit tokens, coarse to fine: bits [(B, pn, pn, d), ...]."""

    scales: tuple[int, ...]
    bits: int

    @property
    def num_tokens(self) -> int:
        return sum(pn * pn for pn in self.scales)


@runtime_checkable
class BitScaleTokenizer(Tokenizer, Protocol):
    """Pixels <-> bits per scale (:class:`BitScaleLayout`), with the running sum the generator reads."""

    def empty_f_hat(self, batch: int) -> torch.Tensor:
        """The accumulated latent before the first scale (B, d, h, w)."""
        ...

    def next_input(
        self, f_hat: torch.Tensor, bits: torch.Tensor, scale: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Add scale ``scale``'s bits to ``f_hat`` -> (new f_hat, the next scale's input)."""
        ...

    def teacher_inputs(self, bits: list[torch.Tensor]) -> torch.Tensor:
        """Teacher forcing: every scale's input after the first from the bits before it."""
        ...


register_family(BitScaleLayout, BitScaleTokenizer)


@dataclass
class BinaryPyramidConfig(BinaryConfig):
    """A :class:`BinaryConfig` plus the scales, coarse to fine, ending at the latent size."""

    patch_nums: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)  # Infinity's at 256 px
    encode_to: Literal["bits", "latent"] = "bits"  # latent: for bitwise self-correction

    def __post_init__(self) -> None:
        super().__post_init__()
        side = self.resolution // 2 ** (len(self.channel_mult) - 1)
        if list(self.patch_nums) != sorted(set(self.patch_nums)) or self.patch_nums[-1] != side:
            raise ValueError(f"patch_nums must increase strictly and end at the latent size {side}")


class BinaryPyramid(BinaryAutoencoder):
    """The BSQ / LFQ autoencoder with a residual pyramid of bit maps (Infinity's tokenizer)."""

    Config = BinaryPyramidConfig

    @property
    def layout(self) -> BitScaleLayout:
        return BitScaleLayout(tuple(self.config.patch_nums), self.config.bits)

    def encoding_to(self, target: Literal["bits", "latent"]) -> BinaryPyramid:
        """A copy whose ``encode`` gives ``target`` (this tokenizer is left as it is)."""
        copy = type(self)(replace(self.config, encode_to=target))
        copy.load_state_dict(self.state_dict())
        return copy.train(self.training)

    def upsample(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, d, pn, pn) -> their contribution at the latent size (B, d, h, w)."""
        side = self.config.patch_nums[-1]
        return codes if codes.shape[-1] == side else F.interpolate(codes, size=(side, side), mode="bilinear")

    def quantise(self, f: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, torch.Tensor]]:
        """Latent f (B, d, h, w) -> (f_hat, bits per scale, the scales' mean losses)."""
        rest, f_hat, bits, stats = f, torch.zeros_like(f), [], []
        for pn in self.config.patch_nums:
            down = rest if pn == rest.shape[-1] else F.interpolate(rest, size=(pn, pn), mode="area")
            codes, scale_bits, scale_stats = self.quantize(down)
            up = self.upsample(codes)
            f_hat, rest = f_hat + up, rest - up.detach()
            bits.append(scale_bits)
            stats.append(scale_stats)
        mean = {key: torch.stack([s[key] for s in stats]).mean() for key in stats[0]}
        return f_hat, bits, mean

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Reconstruct ``pixels`` (B, C, H, W); returns (reconstruction, quantiser losses)."""
        f_hat, _, stats = self.quantise(self.quant_conv(self.encoder(pixels)))
        return self.decoder(self.post_quant_conv(f_hat)), stats

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        """Pixels in [-1, 1], (B, C, H, W) -> bits per scale [(B, pn, pn, d), ...] (with
        ``encode_to: latent``, the latent (B, h, w, d))."""
        c = self.config
        if pixels.ndim != 4 or pixels.shape[1:] != (c.in_channels, c.resolution, c.resolution):
            shape = (c.in_channels, c.resolution, c.resolution)
            raise ValueError(f"expected pixels (B, *{shape}), got {tuple(pixels.shape)}")
        f = self.quant_conv(self.encoder(pixels))
        return f.permute(0, 2, 3, 1) if c.encode_to == "latent" else self.quantise(f)[1]

    def scale_code(self, bits: torch.Tensor) -> torch.Tensor:
        """Bits (B, pn, pn, d) of one scale -> their contribution to f_hat (B, d, h, w)."""
        if bits.dtype.is_floating_point or bits.shape[-1] != self.config.bits:
            raise ValueError(f"expected integer bits (B, pn, pn, {self.config.bits})")
        if bits.numel() and (int(bits.min()) < 0 or int(bits.max()) > 1):
            raise ValueError("bits must be 0 or 1")
        codes = self.quantize.codes(bits).permute(0, 3, 1, 2)  # (B, pn, pn, d) -> (B, d, pn, pn)
        return self.upsample(codes.to(self.post_quant_conv.weight.dtype))

    @torch.no_grad()
    def decode(self, bits: list[torch.Tensor]) -> torch.Tensor:
        """Bits per scale -> pixels (B, C, H, W), clamped to [-1, 1]."""
        scales = self.config.patch_nums
        if len(bits) != len(scales) or any(b.shape[1:3] != (pn, pn) for b, pn in zip(bits, scales)):
            raise ValueError(f"expected bits of the scales {tuple(scales)}")
        f_hat = sum(self.scale_code(b) for b in bits)
        return self.decoder(self.post_quant_conv(f_hat)).clamp(-1, 1)

    def empty_f_hat(self, batch: int) -> torch.Tensor:
        side, weight = self.config.patch_nums[-1], self.post_quant_conv.weight
        return weight.new_zeros(batch, self.config.bits, side, side)

    def scale_input(self, f_hat: torch.Tensor, scale: int) -> torch.Tensor:
        """The generator's input for scale ``scale``: f_hat resized to it (B, pn**2, d)."""
        side = self.config.patch_nums[scale]
        return F.interpolate(f_hat, size=(side, side), mode="bilinear").flatten(2).transpose(1, 2)

    @torch.no_grad()
    def next_input(
        self, f_hat: torch.Tensor, bits: torch.Tensor, scale: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(f_hat + scale ``scale``'s codes, the generator's input for the next scale)."""
        f_hat = f_hat + self.scale_code(bits)
        return f_hat, self.scale_input(f_hat, scale + 1)

    @torch.no_grad()
    def self_corrected(
        self, f: torch.Tensor, layers: int, strength: float, generator: torch.Generator | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Infinity's bitwise self-correction: latents f (B, d, h, w) -> (target bits per scale,
        generator inputs for scales 1..). On each of the first ``layers`` scales a share of the
        bits drawn uniformly from {0, 0.01, ..., ``strength``} is flipped; the later inputs
        follow the flipped codes and the later targets quantise what the flipped codes left of
        f, so the generator learns to correct its own mistakes. ``layers=0``: teacher forcing."""
        f_hat, targets, inputs = torch.zeros_like(f), [], []
        for k, pn in enumerate(self.config.patch_nums):
            rest = f - f_hat
            down = rest if pn == rest.shape[-1] else F.interpolate(rest, size=(pn, pn), mode="area")
            bits = self.quantize(down)[1]  # (B, pn, pn, d)
            targets.append(bits)
            if k < layers:
                share = torch.randint(0, round(100 * strength) + 1, (), generator=generator) * 0.01
                flipped = torch.rand(bits.shape, generator=generator).to(bits.device) < share
                bits = torch.where(flipped, 1 - bits, bits)
            f_hat = f_hat + self.scale_code(bits)
            if k + 1 < len(self.config.patch_nums):
                inputs.append(self.scale_input(f_hat, k + 1))
        return targets, torch.cat(inputs, 1)

    @torch.no_grad()
    def teacher_inputs(self, bits: list[torch.Tensor]) -> torch.Tensor:
        """Bits per scale -> generator inputs for scales 1.. (B, sum(pn**2) - pn_0**2, d)."""
        f_hat, inputs = self.empty_f_hat(len(bits[0])), []
        for k in range(len(bits) - 1):
            f_hat, x = self.next_input(f_hat, bits[k], k)
            inputs.append(x)
        return torch.cat(inputs, 1)

    def token_statistics(self, tokens: list) -> dict[str, float]:
        """Bit usage (and code usage where 2^d can be counted) over every scale's bits."""
        bits = []
        for t in tokens:  # encodings (lists of scales), scales, or latents (encode_to: latent)
            latent = torch.is_tensor(t) and t.is_floating_point()
            bits += self.quantise(t.permute(0, 3, 1, 2))[1] if latent else (t if isinstance(t, list) else [t])
        return super().token_statistics(bits)


register_tokenizer(BinaryPyramid, "binary_pyramid")
