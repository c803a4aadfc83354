"""Binary tokens (BSQ / LFQ): pixels <-> a grid of d-bit tokens, with no codebook table.

The encoder's d-channel latent of each cell is quantised to the sign of every channel. BSQ
(Infinity, BSQ-ViT) l2-normalises the latent first and scales the signs by 1/sqrt(d), so codes
lie on the unit sphere; LFQ (MAGVIT-2, Open-MAGVIT2) keeps codes of +-1. Gradients pass
straight through. A token *is* its d bits (its id would be the d-bit integer, never built).

The entropy loss is Infinity's analytical per-bit form: with ``p`` the probability that a bit
is 1 under a softmax over the two codes at inverse temperature ``inv_temperature``
(``p = sigmoid(4 * scale * inv_temperature * u)``, ``scale`` the code magnitude), it lowers the
bits' entropy per token and raises the entropy of each bit's average use. The per-token term
equals the entropy over all 2^d codes exactly (the softmax factorises over bits); the average
term is the sum of per-bit entropies, an upper bound of the 2^d-code entropy that stays
computable for d up to 64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from argen.tokenizers.blocks import Decoder, Encoder
from argen.tokenizers.protocols import Tokenizer, register_family
from argen.tokenizers.quantizer import code_usage
from argen.tokenizers.registry import register_tokenizer

MAX_BITS = 64
COUNTED_BITS = 20  # code usage is counted over all 2^d codes up to this width


@dataclass(frozen=True)
class BitGridLayout:
    """A raster grid of d-bit tokens, ``bits`` (B, h, w, d) in {0, 1}."""

    height: int
    width: int
    bits: int

    @property
    def num_tokens(self) -> int:
        return self.height * self.width


@runtime_checkable
class BitGridTokenizer(Tokenizer, Protocol):
    """Pixels <-> bits (B, h, w, d) (:class:`BitGridLayout`)."""

    def token_statistics(self, tokens: list[torch.Tensor]) -> dict[str, float]:
        """Bit usage (and code usage where 2^d can be counted) of encoded tokens."""
        ...


register_family(BitGridLayout, BitGridTokenizer)


@dataclass
class BinaryConfig:
    """Constructor arguments of :class:`BinaryAutoencoder`: the VQ autoencoder's convolutional
    encoder and decoder around a binary quantiser of ``bits`` channels."""

    resolution: int = 256
    in_channels: int = 3
    base_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 256
    norm_groups: int = 32
    mid_attention: bool = True
    level_attention: bool = True
    dropout: float = 0.0
    bits: int = 16  # d: bits per token (at most 64)
    spherical: bool = True  # BSQ (codes +-1/sqrt(d) on the unit sphere); False: LFQ (codes +-1)
    inv_temperature: float = 100.0  # of the two-code softmax in the entropy terms
    sample_entropy_weight: float = 1.0  # gamma0: per-token bit entropy (lowered)
    usage_entropy_weight: float = 1.0  # gamma: entropy of each bit's average use (raised)
    entropy_weight: float = 0.01  # of the whole entropy term in the training loss
    commit_beta: float = 0.25

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= MAX_BITS:
            raise ValueError(f"bits must lie in [1, {MAX_BITS}] (a token is its bits), got {self.bits}")
        factor = 2 ** (len(self.channel_mult) - 1)
        if self.resolution % factor:
            raise ValueError(f"resolution {self.resolution} is not divisible by the stride {factor}")


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of Bernoulli(p), elementwise (Infinity's 1e-8 inside the log)."""
    return -(p * torch.log(p + 1e-8) + (1 - p) * torch.log(1 - p + 1e-8))


def bit_entropies(u: torch.Tensor, scale: float, inv_temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents u (N, d) as quantised (l2-normalised for BSQ) -> (mean per-token entropy of the
    bits, sum over bits of the entropy of their average), both in nats."""
    p = torch.sigmoid(4 * scale * inv_temperature * u)  # P(bit = 1), (N, d)
    return binary_entropy(p).sum(-1).mean(), binary_entropy(p.mean(0)).sum()


class BinaryQuantizer(nn.Module):
    """Latents (B, d, h, w) -> codes of the latents' signs (straight-through), bits, losses."""

    def __init__(self, c: BinaryConfig):
        super().__init__()
        self.c = c
        self.scale = 1 / math.sqrt(c.bits) if c.spherical else 1.0

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        u = rearrange(z, "b d h w -> b h w d").float()
        if self.c.spherical:
            u = F.normalize(u, dim=-1)
        bits = (u > 0).long()  # (B, h, w, d)
        codes = self.codes(bits)
        stats = {"commit_loss": self.c.commit_beta * F.mse_loss(u, codes)}
        if self.training:
            per_token, usage = bit_entropies(u.flatten(0, 2), self.scale, self.c.inv_temperature)
            penalty = self.c.sample_entropy_weight * per_token - self.c.usage_entropy_weight * usage
            stats |= {"quantizer_loss": self.c.entropy_weight * penalty, "bit_entropy": usage / self.c.bits}
        codes = u + (codes - u).detach()
        return rearrange(codes, "b h w d -> b d h w").to(z.dtype), bits, stats

    def codes(self, bits: torch.Tensor) -> torch.Tensor:
        """Bits (..., d) in {0, 1} -> code vectors (..., d) of +-scale."""
        return (2 * bits.float() - 1) * self.scale


class BinaryAutoencoder(nn.Module):
    """BSQ / LFQ autoencoder: pixels <-> bits (B, h, w, d)."""

    Config = BinaryConfig

    def __init__(self, config: BinaryConfig):
        super().__init__()
        self.config = c = config
        self.encoder = Encoder(c)
        self.quant_conv = nn.Conv2d(c.z_channels, c.bits, 1)
        self.quantize = BinaryQuantizer(c)
        self.post_quant_conv = nn.Conv2d(c.bits, c.z_channels, 1)
        self.decoder = Decoder(c)

    @property
    def layout(self) -> BitGridLayout:
        side = self.config.resolution // 2 ** (len(self.config.channel_mult) - 1)
        return BitGridLayout(side, side, self.config.bits)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Reconstruct ``pixels`` (B, C, H, W); returns (reconstruction, quantiser losses)."""
        codes, _, stats = self.quantize(self.quant_conv(self.encoder(pixels)))
        return self.decoder(self.post_quant_conv(codes)), stats

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1], (B, C, H, W) -> bits (B, h, w, d) in {0, 1}."""
        c = self.config
        if pixels.ndim != 4 or pixels.shape[1:] != (c.in_channels, c.resolution, c.resolution):
            shape = (c.in_channels, c.resolution, c.resolution)
            raise ValueError(f"expected pixels (B, *{shape}), got {tuple(pixels.shape)}")
        return self.quantize(self.quant_conv(self.encoder(pixels)))[1]

    @torch.no_grad()
    def decode(self, bits: torch.Tensor) -> torch.Tensor:
        """Bits (B, h, w, d) -> pixels (B, C, H, W), clamped to [-1, 1]."""
        layout = self.layout
        if bits.shape[1:] != (layout.height, layout.width, layout.bits) or bits.dtype.is_floating_point:
            raise ValueError(f"expected integer bits (B, {layout.height}, {layout.width}, {layout.bits})")
        if bits.numel() and (int(bits.min()) < 0 or int(bits.max()) > 1):
            raise ValueError("bits must be 0 or 1")
        codes = rearrange(self.quantize.codes(bits), "b h w d -> b d h w")
        return self.decoder(self.post_quant_conv(codes.to(self.post_quant_conv.weight.dtype))).clamp(-1, 1)

    def token_statistics(self, tokens: list[torch.Tensor]) -> dict[str, float]:
        """Bit usage: the share of bits whose mean lies in (0.05, 0.95); with d up to
        ``COUNTED_BITS``, code usage and perplexity over all 2^d codes too."""
        bits = torch.cat([t.reshape(-1, self.config.bits) for t in tokens])  # (N, d)
        means = bits.float().mean(0)
        stats = {"bit_usage": float(((means > 0.05) & (means < 0.95)).float().mean())}
        if self.config.bits <= COUNTED_BITS:
            ids = (bits << torch.arange(self.config.bits - 1, -1, -1)).sum(-1)  # (N,) the d-bit integers
            usage = code_usage(ids, 2**self.config.bits)
            stats |= {
                "code_usage": float(usage["codebook_usage"]),
                "code_perplexity": float(usage["perplexity"]),
            }
        return stats


register_tokenizer(BinaryAutoencoder, "binary")
