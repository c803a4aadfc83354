"""Bitwise raster generation over binary tokens (Infinity's bit labels, Open-MAGVIT2's and
ELM's sub-tokens): each d-bit token is d / k groups of k bits, every group predicted by its own
softmax over 2^k classes from one transformer step, so no 2^d softmax is ever built.

``group_bits: 1`` gives d independent binary predictions (Infinity's bitwise head: two logits
per bit); ``group_bits: k`` the factorised sub-tokens of Open-MAGVIT2 / ELM (k heads of 2^k
classes). The input embedding of a token is the sum of its groups' embeddings. Guidance mixes
the logits of every group; temperature, top-k and top-p act per group (per bit with k = 1),
as the references sample.
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
from argen.tokenizers.binary import BitGridLayout, BitGridTokenizer

MAX_GROUP_BITS = 16  # the widest softmax: 2^16 classes


@dataclass
class BitwiseOptions:
    group_bits: int = 1  # bits per predicted group: 1 = a binary prediction per bit (Infinity)

    def __post_init__(self) -> None:
        if not 1 <= self.group_bits <= MAX_GROUP_BITS:
            raise ValueError(f"options.group_bits must lie in [1, {MAX_GROUP_BITS}], got {self.group_bits}")


@dataclass
class BitwiseConfig(LlamaConfig):
    """The Llama over tokens of ``bits`` bits in groups of ``group_bits``: ``vocab_size`` is the
    number of logits per step, ``groups`` x 2^``group_bits``."""

    bits: int = 16
    group_bits: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.group_bits <= MAX_GROUP_BITS or self.bits % self.group_bits:
            raise ValueError(
                f"group_bits must divide bits ({self.bits}) and lie in [1, {MAX_GROUP_BITS}], "
                f"got {self.group_bits}"
            )
        if self.vocab_size != self.groups * self.classes:
            raise ValueError(f"vocab_size must be groups x classes = {self.groups * self.classes}")

    @property
    def groups(self) -> int:
        return self.bits // self.group_bits

    @property
    def classes(self) -> int:
        return 2**self.group_bits


class GroupEmbedding(nn.Embedding):
    """A token of ``groups`` ids, each among ``classes``: one table of groups x classes rows,
    and the sum of the group rows (..., groups) -> (..., D)."""

    def __init__(self, groups: int, classes: int, dim: int):
        super().__init__(groups * classes, dim)
        self.register_buffer("offsets", torch.arange(groups) * classes, persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return super().forward(ids + self.offsets).sum(-2)


class BitwiseLlama(Llama):
    """The Llama whose token is ``groups`` ids: one embedding table and one head of
    ``groups`` x ``classes`` rows, read group by group."""

    Config = BitwiseConfig

    def __init__(self, config: BitwiseConfig):
        c = config
        head = nn.Linear(c.dim, c.groups * c.classes, bias=False)
        super().__init__(c, Parts(GroupEmbedding(c.groups, c.classes, c.dim), head))


register_generator(BitwiseLlama)


def to_groups(bits: torch.Tensor, group_bits: int) -> torch.Tensor:
    """Bits (..., d) -> group ids (..., d / k), most significant bit first."""
    weights = 2 ** torch.arange(group_bits - 1, -1, -1, device=bits.device)
    return (bits.unflatten(-1, (-1, group_bits)) * weights).sum(-1)  # (..., groups, k) -> (..., groups)


def to_bits(ids: torch.Tensor, group_bits: int) -> torch.Tensor:
    """Group ids (..., groups) -> bits (..., groups * k)."""
    shifts = torch.arange(group_bits - 1, -1, -1, device=ids.device)
    return ((ids[..., None] >> shifts) & 1).flatten(-2)


class BitwiseRaster(Paradigm):
    name = "bitwise_raster"
    layout = BitGridLayout
    default = True
    Options = BitwiseOptions
    generators = (BitwiseLlama,)
    requirement = "bitwise_raster needs a binary tokenizer (tokenizer: binary)"

    def sizes(self, layout: BitGridLayout) -> dict:
        return dict(grid_size=(layout.height, layout.width), bits=layout.bits)

    def build(self, model: LlamaConfig, options: BitwiseOptions, tokenizer: BitGridTokenizer, sizes):
        groups = sizes["bits"] // options.group_bits
        args = model_args(model) | sizes | dict(vocab_size=groups * 2**options.group_bits)
        return BitwiseLlama(BitwiseConfig(**args, group_bits=options.group_bits))

    def loss(self, model, tokenizer: BitGridTokenizer, tokens, condition):
        c = unwrapped(model).config
        ids = to_groups(tokens.flatten(1, 2), c.group_bits)  # (B, h, w, d) -> (B, L, groups)
        logits = model(ids, condition).unflatten(-1, (c.groups, c.classes))  # (B, L, groups, classes)
        loss = F.cross_entropy(logits.flatten(0, 2), ids.flatten())
        return loss, {"loss": loss.item(), "bits_loss": loss.item() / c.group_bits}

    def check_pair(self, model, layout: BitGridLayout, model_dir, tokenizer_dir):
        c = model.config
        if (layout.bits, (layout.height, layout.width)) != (c.bits, tuple(c.grid_size)):
            raise CheckpointError(
                f"tokenizer {tokenizer_dir} ({layout}) does not match generator {model_dir} "
                f"(bits {c.bits}, grid {c.grid_size})"
            )

    def sample(self, model, tokenizer, condition, config, generator, extras: SamplingExtras, given=None):
        c = model.config
        options = NextTokenOptions(
            token_shape=(c.groups,), pick=GroupedTokens(config, generator, c.groups), compile=extras.compile
        )
        ids = sample_next_token(model, condition, config, generator, options)  # (B, L, groups)
        return to_bits(ids, c.group_bits)  # (B, L, d)

    def decode(self, tokenizer: BitGridTokenizer, bits: torch.Tensor):
        layout = tokenizer.layout
        return super().decode(tokenizer, bits.view(-1, layout.height, layout.width, layout.bits))


register_paradigm(BitwiseRaster())
