"""Token-Shuffle over raster ids: every s x s window of a VQ grid is one transformer step, so a
grid of h x w ids takes h*w / s^2 steps and attention over s^4 times fewer pairs.

Token shuffle (input): each id's embedding is compressed to D / s^2 channels, the s^2 of one
window are concatenated back to D channels and fused by a residual MLP. Token unshuffle
(output): a residual MLP, then one linear head per position of the window, so the s^2 ids of
a step are drawn together from one hidden state (each from its own head, under the step's
guidance). The 2-D RoPE runs over the grid of windows. With ``window: 1`` the generator is
the plain Llama exactly (no shuffle modules, one head).

Token-Shuffle (Ma et al., 2025) has no released code; this follows the paper's operators. Its
unshuffle MLP maps D to s^2 vectors of D / s^2 and expands each back; here the MLP acts on
the window's hidden state and each head reads all of it, the same function class without the
bottleneck.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from argen.checkpoint import CheckpointError
from argen.models import register_generator
from argen.models.llama import Llama, LlamaConfig
from argen.models.parts import Parts
from argen.paradigms.base import Paradigm, SamplingExtras, model_args, unwrapped
from argen.paradigms.registry import register_paradigm
from argen.sampling.logits import GroupedTokens
from argen.sampling.next_token import NextTokenOptions, sample_next_token
from argen.tokenizers.layout import GridLayout
from argen.tokenizers.protocols import GridTokenizer


@dataclass
class ShuffleOptions:
    window: int = 2  # s: each step emits an s x s window of ids (1: plain raster)

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"options.window must be >= 1, got {self.window}")


@dataclass
class ShuffleConfig(LlamaConfig):
    """The Llama over windows: ``grid_size`` is the grid of windows, ``vocab_size`` the
    tokenizer's ids."""

    window: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.window > 1 and self.dim % self.window**2:
            raise ValueError(f"dim {self.dim} must be divisible by window^2 = {self.window**2}")

    @property
    def per_step(self) -> int:
        return self.window**2


class ResidualMLP(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.up, self.down = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(F.silu(self.up(x)))


class WindowEmbedding(nn.Embedding):
    """Token-Shuffle's input: a window of s^2 ids (..., s^2) -> one embedding (..., D), the
    s^2 embeddings compressed to D / s^2 each, concatenated and fused."""

    def __init__(self, vocab_size: int, dim: int, per_step: int):
        super().__init__(vocab_size, dim)
        self.compress = nn.Linear(dim, dim // per_step)
        self.fuse = ResidualMLP(dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = super().forward(ids)  # (..., s^2, D)
        return self.fuse(self.compress(x).flatten(-2))  # (..., s^2, D / s^2) -> (..., D)


class WindowOfOne(nn.Embedding):
    """Windows of one id (..., 1) -> their embeddings (..., D): the plain raster Llama."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return super().forward(ids[..., 0])


class WindowHead(nn.Linear):
    """Token-Shuffle's output: unshuffle, then one head per position of the window, stacked:
    (..., D) -> (..., s^2 * V)."""

    def __init__(self, vocab_size: int, dim: int, per_step: int):
        super().__init__(dim, per_step * vocab_size, bias=False)
        self.unshuffle = ResidualMLP(dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return super().forward(self.unshuffle(h))


class ShuffledLlama(Llama):
    """The Llama whose token is a window of s^2 ids (token shuffle in, unshuffle out):
    windows (B, L, s^2) -> logits (B, L, s^2 * V)."""

    Config = ShuffleConfig
    moved_keys = {  # saved before shuffle and unshuffle joined the input and output parts
        "compress.": "tok_emb.compress.",
        "fuse.": "tok_emb.fuse.",
        "unshuffle.": "output.unshuffle.",
    }

    def __init__(self, config: ShuffleConfig):
        super().__init__(config, window_parts(config))


def window_parts(c: ShuffleConfig) -> Parts:
    """Windows of one id (s = 1) are plain ids; wider windows shuffle in and unshuffle out."""
    if c.window == 1:
        return Parts(WindowOfOne(c.vocab_size, c.dim), nn.Linear(c.dim, c.vocab_size, bias=False))
    embedding = WindowEmbedding(c.vocab_size, c.dim, c.per_step)
    return Parts(embedding, WindowHead(c.vocab_size, c.dim, c.per_step))


register_generator(ShuffledLlama)


def to_windows(grid: torch.Tensor, s: int) -> torch.Tensor:
    """Ids (B, h, w) -> windows (B, h/s * w/s, s^2) in raster order of windows."""
    b, h, w = grid.shape
    x = grid.view(b, h // s, s, w // s, s).permute(0, 1, 3, 2, 4)  # (B, h/s, w/s, s, s)
    return x.reshape(b, (h // s) * (w // s), s * s)


def from_windows(windows: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Windows (B, L, s^2) -> ids (B, h, w)."""
    b, _, per_step = windows.shape
    s = int(per_step**0.5)
    x = windows.view(b, height // s, width // s, s, s).permute(0, 1, 3, 2, 4)  # (B, h/s, s, w/s, s)
    return x.reshape(b, height, width)


class TokenShuffle(Paradigm):
    name = "token_shuffle"
    layout = GridLayout
    Options = ShuffleOptions
    generators = (ShuffledLlama,)

    def build(self, model: LlamaConfig, options: ShuffleOptions, tokenizer: GridTokenizer, sizes):
        s, (h, w) = options.window, sizes["grid_size"]
        if h % s or w % s:
            raise ValueError(f"options.window {s} must divide the tokenizer's grid {h}x{w}")
        args = model_args(model) | sizes | dict(grid_size=(h // s, w // s))
        return ShuffledLlama(ShuffleConfig(**args, window=s))

    def loss(self, model, tokenizer: GridTokenizer, tokens, condition):
        layout, c = tokenizer.layout, unwrapped(model).config
        windows = to_windows(tokens.view(-1, layout.height, layout.width), c.window)  # (B, L, s^2)
        logits = model(windows, condition).unflatten(-1, (c.per_step, c.vocab_size))  # (B, L, s^2, V)
        loss = F.cross_entropy(logits.flatten(0, 2), windows.flatten())
        return loss, {"loss": loss.item()}

    def check_pair(self, model, layout: GridLayout, model_dir, tokenizer_dir):
        c = model.config
        grid = tuple(side * c.window for side in c.grid_size)
        if (layout.vocab_size, (layout.height, layout.width)) != (c.vocab_size, grid):
            raise CheckpointError(
                f"tokenizer {tokenizer_dir} ({layout}) does not match generator {model_dir} "
                f"(vocab {c.vocab_size}, grid {grid} in windows of {c.window})"
            )

    def sample(self, model, tokenizer, condition, config, generator, extras: SamplingExtras, given=None):
        per_step = model.config.per_step
        options = NextTokenOptions(
            token_shape=(per_step,), pick=GroupedTokens(config, generator, per_step), compile=extras.compile
        )
        return sample_next_token(model, condition, config, generator, options)  # (B, L, s^2)

    def decode(self, tokenizer: GridTokenizer, windows: torch.Tensor):
        layout = tokenizer.layout
        return super().decode(tokenizer, from_windows(windows, layout.height, layout.width))


register_paradigm(TokenShuffle())
