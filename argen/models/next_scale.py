"""Next-scale prediction (VAR) with argen's Llama blocks.

The sequence holds every scale's tokens, coarse to fine (e.g. 1+4+9+16 for scales 1..4). The
first scale's positions read the class embedding; scale k+1's positions read the tokenizer's
``f_hat`` after scale k, area-downsampled to that scale and projected. A block-causal mask
lets a token see every token of its own and earlier scales and none of later ones; each
position predicts its own token. Positions are learned (absolute + scale embedding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from argen.models.llama import Llama, LlamaConfig
from argen.models.parts import Parts, ScaleCausal


@dataclass
class ScaleFields:
    """The settings of a sequence of scales, mixed into a Llama config: the scales (tokens per
    side, coarse to fine) and the width of the tokenizer's code vectors."""

    patch_nums: tuple[int, ...] = (1, 2, 3, 4)
    token_dim: int = 8  # width of the tokenizer's code vectors

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.condition != "class":
            raise ValueError("next-scale generators are class-conditional")
        if tuple(self.grid_size) != (self.patch_nums[-1],) * 2:
            raise ValueError(
                f"grid_size {self.grid_size} must be the last scale {self.patch_nums[-1]} squared"
            )

    @property
    def num_tokens(self) -> int:
        return sum(pn * pn for pn in self.patch_nums)

    @property
    def prefix_len(self) -> int:
        return self.patch_nums[0] ** 2

    @property
    def scale_bounds(self) -> list[tuple[int, int]]:
        """(start, end) of every scale in the sequence."""
        ends = torch.tensor([pn * pn for pn in self.patch_nums]).cumsum(0).tolist()
        return list(zip([0, *ends[:-1]], ends))


@dataclass
class NextScaleConfig(ScaleFields, LlamaConfig):
    pass


def scale_parts(config: NextScaleConfig, outputs: int) -> Parts:
    """A next-scale generator's parts: no id embedding (inputs are the tokenizer's features,
    ``word_embed``), a head of ``outputs`` values per token, no rotation (learned positions)
    and the block-causal scale pattern."""
    head = nn.Linear(config.dim, outputs, bias=False)
    return Parts(None, head, ScaleCausal(tuple(config.patch_nums)), rotary=False)


class ScaleSequence:
    """What a next-scale generator adds to the Llama blocks, mixed in before :class:`Llama`
    (built with :func:`scale_parts`): learned absolute and scale embeddings and the projection
    of the tokenizer's features. ``add_scale_inputs`` builds them after the Llama's own
    modules."""

    def add_scale_inputs(self, c: NextScaleConfig) -> None:
        self.word_embed = nn.Linear(c.token_dim, c.dim)
        self.pos_emb = nn.Parameter(torch.randn(c.num_tokens, c.dim) * c.init_std)
        self.level_emb = nn.Embedding(len(c.patch_nums), c.dim)
        nn.init.normal_(self.word_embed.weight, std=c.init_std)
        nn.init.zeros_(self.word_embed.bias)
        nn.init.normal_(self.level_emb.weight, std=c.init_std)
        levels = torch.cat([torch.full((pn * pn,), k) for k, pn in enumerate(c.patch_nums)])
        self.register_buffer("levels", levels, persistent=False)

    def embed_start(self, labels: torch.Tensor) -> torch.Tensor:
        """Class ids (B,) -> the first scale's inputs (B, pn_0**2, D)."""
        n = self.prefix_len
        return (
            self.embed_condition(labels).expand(-1, n, -1)
            + self.pos_emb[:n]
            + self.level_emb(self.levels[:n])
        )

    def embed_inputs(self, features: torch.Tensor, start: int) -> torch.Tensor:
        """f_hat features (B, n, token_dim) for sequence positions start.. -> (B, n, D)."""
        end = start + features.shape[1]
        x = self.word_embed(features.to(self.word_embed.weight.dtype))
        return x + self.pos_emb[start:end] + self.level_emb(self.levels[start:end])

    def scale_outputs(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: inputs of scales 1.. (B, L - pn_0**2, token_dim) and class ids (B,)
        -> the output layer's values (B, L, V or D) for every scale's tokens, float32."""
        if inputs.shape[1] != self.max_len - self.prefix_len:
            raise ValueError(
                f"expected {self.max_len - self.prefix_len} input positions, got {inputs.shape[1]}"
            )
        x = torch.cat([self.embed_start(labels), self.embed_inputs(inputs, self.prefix_len)], 1)
        x = self.run_layers(x, self.rope, self.attention_mask(labels, self.max_len))
        return self.output(self.norm(x)).float()


class NextScaleLlama(ScaleSequence, Llama):
    Config = NextScaleConfig

    def __init__(self, config: NextScaleConfig):
        super().__init__(config, scale_parts(config, config.vocab_size))
        self.add_scale_inputs(config)

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Teacher forcing -> logits (B, L, V) for every scale's tokens (see ``scale_outputs``)."""
        return self.scale_outputs(inputs, labels)


def split_scales(tokens: torch.Tensor, patch_nums: tuple[int, ...]) -> list[torch.Tensor]:
    """Flat ids (B, L) -> per-scale maps [(B, pn, pn), ...]."""
    parts = tokens.split([pn * pn for pn in patch_nums], dim=1)
    return [p.reshape(-1, pn, pn) for p, pn in zip(parts, patch_nums)]
