"""What a generator is assembled from besides its decoder stack (blocks, norm, rotary table,
condition prefix): an input embedding, an output head and an attention pattern.

A paradigm composes a generator by passing :class:`Parts` to :class:`argen.models.Llama`;
the decoder never asks a subclass how to embed, project or mask. The patterns here are the
sequence layouts argen's paradigms use; a pattern says which keys each query sees and how
long the sequence of a grid of ``num_tokens`` tokens is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn


class AttentionPattern(Protocol):
    causal: bool  # True: plain causal attention (no mask needed without padded prefix keys)

    def length(self, prefix_len: int, num_tokens: int) -> int:
        """The longest input sequence: the prefix plus the token inputs."""

    def visible(self, length: int, device: torch.device) -> torch.Tensor:
        """Which keys each query sees, before padding: (length, length) bool."""


class Causal:
    """Next-token order: [prefix, t_0, ..., t_{L-2}]; the position before token i predicts it."""

    causal = True

    def length(self, prefix_len: int, num_tokens: int) -> int:
        return prefix_len + num_tokens - 1

    def visible(self, length: int, device: torch.device) -> torch.Tensor:
        return torch.ones(length, length, dtype=torch.bool, device=device).tril()


class Bidirectional:
    """[prefix, t_0, ..., t_{L-1}], every position sees every other; position i of the grid
    gives token i's output (masked decoding, CTF's fine labels)."""

    causal = False

    def length(self, prefix_len: int, num_tokens: int) -> int:
        return prefix_len + num_tokens

    def visible(self, length: int, device: torch.device) -> torch.Tensor:
        return torch.ones(length, length, dtype=torch.bool, device=device)


@dataclass(frozen=True)
class BlockCausal:
    """Blocks of positions after the prefix (video frames of ``block_len`` tokens): causal,
    plus every position of a query's own block."""

    prefix_len: int
    block_len: int
    causal = False

    def length(self, prefix_len: int, num_tokens: int) -> int:
        return prefix_len + num_tokens

    def visible(self, length: int, device: torch.device) -> torch.Tensor:
        pos = torch.arange(length, device=device)
        block = torch.div(pos - self.prefix_len, self.block_len, rounding_mode="floor")  # prefix: -1
        same_block = (block[:, None] == block[None, :]) & (block[:, None] >= 0)
        return (pos[:, None] >= pos[None, :]) | same_block


@dataclass(frozen=True)
class ScaleCausal:
    """Next-scale order: every scale's tokens, coarse to fine (the first scale is the prefix);
    a token sees its own and earlier scales."""

    patch_nums: tuple[int, ...]
    causal = False

    def length(self, prefix_len: int, num_tokens: int) -> int:
        return num_tokens

    def visible(self, length: int, device: torch.device) -> torch.Tensor:
        sizes = torch.tensor([pn * pn for pn in self.patch_nums], device=device)
        if length != int(sizes.sum()):
            raise ValueError("next-scale caches hold exactly the sequence (no extra positions)")
        levels = torch.repeat_interleave(torch.arange(len(sizes), device=device), sizes)  # (L,)
        return levels[:, None] >= levels[None, :]


@dataclass
class Parts:
    """A generator's parts: ``embedding`` maps token inputs to (..., D) (None: the generator
    embeds its inputs itself, e.g. next-scale features), ``head`` maps the final hidden state
    to the output values (zero-initialised by the decoder), ``pattern`` lays out the sequence,
    and ``rotary`` says whether positions rotate (False: learned positions elsewhere)."""

    embedding: nn.Module | None
    head: nn.Module
    pattern: AttentionPattern = Causal()
    rotary: bool = True


def id_parts(vocab_size: int, dim: int, pattern: AttentionPattern | None = None) -> Parts:
    """An id embedding and logits over the same ``vocab_size`` ids."""
    return Parts(nn.Embedding(vocab_size, dim), nn.Linear(dim, vocab_size, bias=False), pattern or Causal())
