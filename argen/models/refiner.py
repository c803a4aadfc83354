"""The fine-label model of coarse-to-fine generation (CTF): a bidirectional transformer that
reads the condition and the whole sequence of coarse labels and predicts every token's fine
id at once, among the codes of its coarse label's cluster."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from argen.models.llama import Condition, Llama, LlamaConfig
from argen.models.parts import Bidirectional, Parts


@dataclass
class FineLabelConfig(LlamaConfig):
    """``vocab_size`` counts the coarse labels (the inputs); ``fine_vocab_size`` the codes."""

    fine_vocab_size: int = 16384


class FineLabelTransformer(Llama):
    """Llama blocks without the causal mask: [prefix, c_0, ..., c_{L-1}] -> fine logits for
    positions 0..L-1. ``coarse_labels`` (fine_vocab_size,) maps every code to its cluster."""

    Config = FineLabelConfig

    def __init__(self, config: FineLabelConfig):
        c = config
        head = nn.Linear(c.dim, c.fine_vocab_size, bias=False)
        super().__init__(c, Parts(nn.Embedding(c.vocab_size, c.dim), head, Bidirectional()))
        self.register_buffer("coarse_labels", torch.zeros(c.fine_vocab_size, dtype=torch.long))

    def forward(self, coarse: torch.Tensor, condition: Condition) -> torch.Tensor:
        """coarse labels (B, L) and a condition -> fine logits (B, L, fine_vocab_size), float32,
        -inf outside each token's cluster."""
        logits = super().forward(coarse, condition)  # (B, L, V_fine)
        members = self.coarse_labels[None, None, :] == coarse[..., None]  # (B, L, V_fine)
        return logits.masked_fill(~members, float("-inf"))
