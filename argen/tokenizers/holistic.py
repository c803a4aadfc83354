"""One-dimensional (holistic) tokens, LARP-style: N learned queries read the patches of an image
or a clip through a ViT, a stochastic vector quantiser picks their codes, and a ViT decoder
turns the N codes back into patches. The tokens form one sequence, not a grid.

The quantiser compares l2-normalised queries with an l2-normalised codebook; in training it
draws each code from the softmax of the cosine similarities at ``stochastic_temperature``
(LARP's SVQ), and it takes the nearest code in evaluation (encoding). It is an argen
:class:`~argen.tokenizers.quantizer.VectorQuantizer`, so the codebook restarts of tokenizer
training apply.

With ``prior_weight > 0`` a small causal transformer (the AR prior) is trained with the
tokenizer: from the quantised codes of tokens < i it predicts code i, its logits the cosine of
its l2-normalised output with the (detached) codebook over ``prior_temperature``; the
cross-entropy flows back into the encoder, so the token sequence becomes easy to model left to
right. ``prior_rounds`` rounds run with scheduled sampling as LARP: from round 2 a share of the
inputs are codes drawn from the previous round's predictions, the share growing linearly to
``ss_max_ratio`` at step ``ss_peak_step`` of training (LARP: 30% of the run), counted by the
tokenizer itself.

Deviations from LARP: learned position embeddings (LARP: fixed sin-cos for patches and
latents), timm ViT blocks in place of its transformer, pixel L1/L2 (and the trainer's
optional LPIPS and PatchGAN) in place of its loss set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from argen.tokenizers.protocols import Tokenizer, register_family
from argen.tokenizers.quantizer import VectorQuantizer
from argen.tokenizers.registry import register_tokenizer


@dataclass(frozen=True)
class SequenceLayout:
    """A 1-D sequence of ``length`` ids from ``vocab_size`` codes, generated left to right."""

    length: int
    vocab_size: int

    @property
    def num_tokens(self) -> int:
        return self.length


@runtime_checkable
class SequenceTokenizer(Tokenizer, Protocol):
    """Pixels <-> ids (B, N) (:class:`SequenceLayout`)."""

    quantize: VectorQuantizer


register_family(SequenceLayout, SequenceTokenizer)


@dataclass
class HolisticConfig:
    """Constructor arguments of :class:`HolisticTokenizer` (images, or clips with ``frames``)."""

    resolution: int = 32
    in_channels: int = 3
    frames: int | None = None  # None: images (B, C, H, W); T: clips (B, T, C, H, W)
    patch_size: int = 4
    temporal_patch_size: int = 1  # clips: frames per patch
    tokens: int = 32  # N, the length of the token sequence
    dim: int = 256
    depth: int = 4  # blocks of the encoder and of the decoder
    heads: int = 4
    codebook_size: int = 1024
    codebook_dim: int = 16
    stochastic: bool = True  # LARP's SVQ in training; False: nearest code
    stochastic_temperature: float = 0.03
    commit_beta: float = 0.25
    prior_weight: float = 0.0  # the AR prior's loss weight (LARP: 0.06); 0: no prior
    prior_dim: int = 128
    prior_depth: int = 2
    prior_heads: int = 4
    prior_rounds: int = 2
    prior_temperature: float = 1.0
    ss_max_ratio: float = 0.5
    ss_peak_step: int = 300

    def __post_init__(self) -> None:
        if self.resolution % self.patch_size:
            raise ValueError(f"resolution {self.resolution} is not divisible by patch_size {self.patch_size}")
        if (self.frames or 1) % self.temporal_patch_size:
            raise ValueError(f"frames {self.frames} are not divisible by temporal_patch_size")
        if self.tokens < 1 or self.prior_rounds < 1:
            raise ValueError("tokens and prior_rounds must be >= 1")

    @property
    def patches(self) -> int:
        side = self.resolution // self.patch_size
        return (self.frames or 1) // self.temporal_patch_size * side * side

    @property
    def patch_values(self) -> int:
        return self.temporal_patch_size * self.patch_size**2 * self.in_channels


class StochasticQuantizer(VectorQuantizer):
    """LARP's SVQ: in training each id is drawn from softmax(cos(z, codes) / temperature)."""

    def __init__(self, c: HolisticConfig):
        super().__init__(c.codebook_size, c.codebook_dim, c.commit_beta, l2_norm=True)
        self.stochastic, self.temperature = c.stochastic, c.stochastic_temperature
        nn.init.kaiming_uniform_(self.embedding.weight)  # LARP's codebook initialisation

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.stochastic):
            return super().nearest(flat)
        probs = (flat @ self.codebook().t() / self.temperature).softmax(-1)  # (N, K), flat is normalised
        ids = torch.multinomial(probs, 1)[:, 0]
        if self.observed is not None:
            self.observed.append((flat.detach(), ids))
        return ids


def blocks(dim: int, depth: int, heads: int) -> nn.Sequential:
    """timm's ViT blocks (imported here: timm imports torchvision, which argen loads only where used)."""
    from timm.models.vision_transformer import Block

    return nn.Sequential(*(Block(dim, heads, qkv_bias=True) for _ in range(depth)))


class ARPrior(nn.Module):
    """A small causal transformer over code vectors (B, N, d) -> predictions (B, N - 1, d)."""

    def __init__(self, c: HolisticConfig):
        super().__init__()
        self.inp = nn.Linear(c.codebook_dim, c.prior_dim)
        self.pos = nn.Parameter(torch.randn(c.tokens, c.prior_dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            c.prior_dim, c.prior_heads, 4 * c.prior_dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, c.prior_depth, enable_nested_tensor=False)
        self.out = nn.Linear(c.prior_dim, c.codebook_dim)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        x = self.inp(codes[:, :-1]) + self.pos[: codes.shape[1] - 1]  # (B, N - 1, D)
        causal = nn.Transformer.generate_square_subsequent_mask(x.shape[1], device=x.device)
        return F.normalize(self.out(self.blocks(x, mask=causal, is_causal=True)), dim=-1)


class HolisticTokenizer(nn.Module):
    """Pixels <-> a sequence of ``tokens`` ids."""

    Config = HolisticConfig

    def __init__(self, config: HolisticConfig):
        super().__init__()
        self.config = c = config
        self.patch_embed = nn.Linear(c.patch_values, c.dim)
        self.patch_pos = nn.Parameter(torch.randn(c.patches, c.dim) * 0.02)
        self.queries = nn.Parameter(torch.randn(c.tokens, c.dim) * 0.02)
        self.encoder = blocks(c.dim, c.depth, c.heads)
        self.to_code = nn.Linear(c.dim, c.codebook_dim)
        self.quantize = StochasticQuantizer(c)
        self.from_code = nn.Linear(c.codebook_dim, c.dim)
        self.latent_pos = nn.Parameter(torch.randn(c.tokens, c.dim) * 0.02)
        self.patch_queries = nn.Parameter(torch.randn(c.patches, c.dim) * 0.02)
        self.decoder = blocks(c.dim, c.depth, c.heads)
        self.to_pixels = nn.Sequential(nn.LayerNorm(c.dim), nn.Linear(c.dim, c.patch_values))
        self.prior = ARPrior(c) if c.prior_weight > 0 else None
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))  # scheduled sampling's clock

    @property
    def layout(self) -> SequenceLayout:
        return SequenceLayout(self.config.tokens, self.config.codebook_size)

    def patchify(self, pixels: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) or clips (B, T, C, H, W) -> patches (B, P, pt * p * p * C)."""
        c = self.config
        clip = pixels[:, None] if c.frames is None else pixels  # (B, T, C, H, W)
        return rearrange(
            clip,
            "b (t pt) c (h p1) (w p2) -> b (t h w) (pt p1 p2 c)",
            pt=c.temporal_patch_size,
            p1=c.patch_size,
            p2=c.patch_size,
        )

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        c = self.config
        side = c.resolution // c.patch_size
        clip = rearrange(
            patches,
            "b (t h w) (pt p1 p2 c) -> b (t pt) c (h p1) (w p2)",
            h=side,
            w=side,
            pt=c.temporal_patch_size,
            p1=c.patch_size,
            p2=c.patch_size,
        )
        return clip[:, 0] if c.frames is None else clip

    def encode_codes(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Pixels -> (codes (B, N, d) with straight-through gradient, ids (B, N), losses)."""
        x = self.patch_embed(self.patchify(pixels)) + self.patch_pos  # (B, P, D)
        queries = self.queries.expand(len(x), -1, -1)  # (B, N, D)
        z = self.to_code(self.encoder(torch.cat([x, queries], 1))[:, -self.config.tokens :])  # (B, N, d)
        codes, ids, stats = self.quantize(rearrange(z, "b n d -> b d n 1"))  # the quantiser's (B, d, h, w)
        return rearrange(codes, "b d n 1 -> b n d"), ids[..., 0], stats

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        latents = self.from_code(codes) + self.latent_pos  # (B, N, D)
        queries = self.patch_queries.expand(len(codes), -1, -1)  # (B, P, D)
        out = self.decoder(torch.cat([latents, queries], 1))[:, self.config.tokens :]
        return self.unpatchify(self.to_pixels(out))

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Reconstruct ``pixels``; returns (reconstruction, quantiser and prior losses)."""
        codes, ids, stats = self.encode_codes(pixels)
        if self.prior is not None and self.training:
            prior_loss, accuracy = self.prior_loss(codes, ids)
            stats |= {"quantizer_loss": self.config.prior_weight * prior_loss, "prior_accuracy": accuracy}
            self.steps_seen += 1
        return self.decode_codes(codes), stats

    def prior_loss(self, codes: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """LARP's prior loss over ``prior_rounds`` rounds with scheduled sampling -> (the mean
        cross-entropy of codes 1.. over the rounds, the first round's accuracy)."""
        c, book = self.config, self.quantize.codebook().detach()  # (K, d)
        share = min(float(self.steps_seen) / max(c.ss_peak_step, 1), 1.0) * c.ss_max_ratio
        drawn_rows = torch.rand(ids.shape[0], ids.shape[1] - 1, 1, device=ids.device) < share  # (B, N - 1, 1)
        inputs, losses, accuracy = codes, [], None
        for _ in range(c.prior_rounds):
            logits = self.prior(inputs) @ book.t() / c.prior_temperature  # (B, N - 1, K)
            losses.append(F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten()))
            if accuracy is None:
                accuracy = (logits.argmax(-1) == ids[:, 1:]).float().mean()
            drawn = book[torch.multinomial(logits.detach().float().softmax(-1).flatten(0, 1), 1)[:, 0]]
            drawn = drawn.view_as(codes[:, 1:])  # (B, N - 1, d)
            inputs = torch.cat([codes[:, :1], torch.where(drawn_rows, drawn, codes[:, 1:])], 1)
        return torch.stack(losses).mean(), accuracy

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] -> ids (B, N) (the nearest codes: encoding is deterministic)."""
        c = self.config
        frame = (c.in_channels, c.resolution, c.resolution)
        shape = frame if c.frames is None else (c.frames, *frame)
        if tuple(pixels.shape[1:]) != shape:
            raise ValueError(f"expected pixels (B, *{shape}), got {tuple(pixels.shape)}")
        was_training = self.training
        self.eval()
        ids = self.encode_codes(pixels)[1]
        self.train(was_training)
        return ids

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids (B, N) -> pixels (images or clips), clamped to [-1, 1]."""
        if ids.ndim != 2 or ids.shape[1] != self.config.tokens:
            raise ValueError(f"expected ids (B, {self.config.tokens}), got {tuple(ids.shape)}")
        codes = rearrange(self.quantize.lookup(ids[..., None]), "b d n 1 -> b n d")
        return self.decode_codes(codes).clamp(-1, 1)


register_tokenizer(HolisticTokenizer, "holistic")
