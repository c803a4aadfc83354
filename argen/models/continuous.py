"""Generators over continuous tokens: the Llama (next-token, MAR-style per-token head) and the
next-scale Llama (FlowAR-style), with a linear input projection in place of the id embedding
and a flow-matching head in place of the logits.

The last layer projects the final hidden state to z, the head's condition: ``forward`` has the
contract of every generator (teacher forcing -> the output layer's values, here z), and the
flow-matching loss on the head is the paradigm's (:mod:`argen.paradigms.continuous`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from argen.models.heads import FlowHead, FlowHeadConfig
from argen.models.llama import Llama, LlamaConfig
from argen.models.next_scale import ScaleFields, ScaleSequence, scale_parts
from argen.models.parts import Parts


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
    """Next-token generation of continuous tokens (B, L, token_dim); ``forward`` (the Llama's)
    gives z (B, L, D), z_i conditioning token i."""

    Config = ContinuousLlamaConfig

    def __init__(self, config: ContinuousLlamaConfig):
        c = config
        head = nn.Linear(c.dim, c.dim, bias=False)  # final hidden state -> z, the head's condition
        super().__init__(c, Parts(nn.Linear(c.token_dim, c.dim), head))
        self.head = FlowHead(c.head, c.token_dim, c.dim)


@dataclass
class ContinuousNextScaleConfig(ScaleFields, LlamaConfig):
    vocab_size: int = 0  # no ids
    head: FlowHeadConfig = field(default_factory=lambda: FlowHeadConfig(attention=True))


class ContinuousNextScaleLlama(ScaleSequence, Llama):
    """Next-scale generation of continuous scales (FlowAR): one head call per scale."""

    Config = ContinuousNextScaleConfig

    def __init__(self, config: ContinuousNextScaleConfig):
        super().__init__(config, scale_parts(config, config.dim))  # head: hidden -> z
        self.add_scale_inputs(config)
        self.head = FlowHead(config.head, config.token_dim, config.dim)

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: inputs of scales 1.. (B, L - pn_0**2, d) -> z (B, L, D)."""
        return self.scale_outputs(inputs, labels)
