"""The fine-label model of coarse-to-fine generation (CTF): a bidirectional transformer that
reads the condition and the whole sequence of coarse labels and predicts every token's fine
id at once, among the codes of its coarse label's cluster."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from argen.models.llama import Condition, Llama, LlamaConfig


@dataclass
class FineLabelConfig(LlamaConfig):
    """``vocab_size`` counts the coarse labels (the inputs); ``fine_vocab_size`` the codes."""

    fine_vocab_size: int = 16384


class FineLabelTransformer(Llama):
    """Llama blocks without the causal mask: [prefix, c_0, ..., c_{L-1}] -> fine logits for
    positions 0..L-1. ``coarse_labels`` (fine_vocab_size,) maps every code to its cluster."""

    Config = FineLabelConfig

    def __init__(self, config: FineLabelConfig):
        super().__init__(config)
        self.register_buffer("coarse_labels", torch.zeros(config.fine_vocab_size, dtype=torch.long))

    def output_head(self) -> nn.Linear:
        return nn.Linear(self.config.dim, self.config.fine_vocab_size, bias=False)

    def visible(self, length: int, device: torch.device) -> torch.Tensor:
        """Bidirectional: every query sees every key (padded caption keys are still hidden)."""
        return torch.ones(length, length, dtype=torch.bool, device=device)

    def forward(self, coarse: torch.Tensor, condition: Condition) -> torch.Tensor:
        """coarse labels (B, L) and a condition -> fine logits (B, L, fine_vocab_size), float32,
        -inf outside each token's cluster."""
        if coarse.shape[1] != self.config.num_tokens:
            raise ValueError(f"expected {self.config.num_tokens} coarse labels, got {coarse.shape[1]}")
        x = torch.cat([self.embed_condition(condition), self.embed_tokens(coarse)], dim=1)
        x = self.run_layers(x, self.rope[: x.shape[1]], self.attention_mask(condition, x.shape[1]))
        logits = self.output(self.norm(x[:, self.prefix_len :])).float()  # (B, L, V_fine)
        members = self.coarse_labels[None, None, :] == coarse[..., None]  # (B, L, V_fine)
        return logits.masked_fill(~members, float("-inf"))
