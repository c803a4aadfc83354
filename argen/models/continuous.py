"""Generators over continuous tokens: the Llama (next-token, MAR-style per-token head) and the
next-scale Llama (FlowAR-style), with a linear input projection in place of the id embedding
and a flow-matching head in place of the logits.

The last layer projects the final hidden state to z, the head's condition. ``forward``
returns the flow-matching loss, so the head trains inside the wrapped module (DDP / FSDP);
``hidden`` gives z.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from argen.models.heads import FlowHead, FlowHeadConfig, flow_matching_loss
from argen.models.llama import Condition, Llama, LlamaConfig
from argen.models.next_scale import ScaleFields, ScaleSequence


@dataclass
class ContinuousLlamaConfig(LlamaConfig):
    vocab_size: int = 0  # no ids
    token_dim: int = 16
    head: FlowHeadConfig = field(default_factory=FlowHeadConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.head.attention:
            raise ValueError(
                "head.attention is for next-scale generators (paradigm continuous_scales): a raster "
                "model's head would attend to later tokens in training and sees one token at a time "
                "in sampling"
            )


class ContinuousLlama(Llama):
    """Next-token generation of continuous tokens (B, L, token_dim)."""

    Config = ContinuousLlamaConfig

    def __init__(self, config: ContinuousLlamaConfig):
        super().__init__(config)
        self.head = FlowHead(config.head, config.token_dim, config.dim)

    def token_embedding(self) -> nn.Linear:
        return nn.Linear(self.config.token_dim, self.config.dim)

    def output_head(self) -> nn.Linear:
        """Final hidden state -> z, the head's condition."""
        return nn.Linear(self.config.dim, self.config.dim, bias=False)

    def hidden(self, tokens: torch.Tensor, condition: Condition) -> torch.Tensor:
        """Teacher forcing: tokens (B, L, d) -> z (B, L, D); z_i conditions token i."""
        return super().forward(tokens, condition)

    def forward(self, tokens: torch.Tensor, condition: Condition) -> torch.Tensor:
        """The flow-matching loss of every token given the ones before it."""
        return flow_matching_loss(self.head, tokens, self.hidden(tokens, condition))


@dataclass
class ContinuousNextScaleConfig(ScaleFields, LlamaConfig):
    vocab_size: int = 0  # no ids
    head: FlowHeadConfig = field(default_factory=lambda: FlowHeadConfig(attention=True))


class ContinuousNextScaleLlama(ScaleSequence, Llama):
    """Next-scale generation of continuous scales (FlowAR): one head call per scale."""

    Config = ContinuousNextScaleConfig

    def __init__(self, config: ContinuousNextScaleConfig):
        Llama.__init__(self, config)
        self.add_scale_inputs(config)
        self.head = FlowHead(config.head, config.token_dim, config.dim)

    def output_head(self) -> nn.Linear:
        return nn.Linear(self.config.dim, self.config.dim, bias=False)

    def hidden(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: inputs of scales 1.. (B, L - pn_0**2, d) -> z (B, L, D)."""
        return self.scale_outputs(inputs, labels)

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Flow-matching loss of every scale's tokens ``targets`` (B, L, d), per token."""
        z = self.hidden(inputs, labels)
        losses = [
            flow_matching_loss(self.head, targets[:, s:e], z[:, s:e]) * (e - s)
            for s, e in self.config.scale_bounds
        ]
        return sum(losses) / self.config.num_tokens
