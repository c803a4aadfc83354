"""Next-frame prediction over video tokens (FAR-style): all tokens of a frame at once.

The sequence is ``[prefix, start, frame_0, ..., frame_{T-2}]``: block k (``h*w`` positions)
holds frame k-1's token embeddings (block 0 learned start embeddings) and predicts frame k,
each position its own spatial token. A block-causal mask lets a block see the prefix, every
earlier block and all of its own positions. Positions use 3-D RoPE (block k at time k).
"""

from __future__ import annotations

import torch
from torch import nn

from argen.models.llama import Condition, Llama, LlamaConfig
from argen.models.parts import BlockCausal, id_parts


class NextFrameLlama(Llama):
    Config = LlamaConfig

    def __init__(self, config: LlamaConfig):
        if config.rope != "3d":
            raise ValueError("next-frame generators are video models (rope: 3d)")
        frame_len = config.grid_size[0] * config.grid_size[1]
        frames = BlockCausal(config.prefix_len, frame_len)  # a frame sees itself and earlier ones
        super().__init__(config, id_parts(config.vocab_size, config.dim, frames))
        self.frame_len = frame_len
        self.start = nn.Parameter(torch.randn(self.frame_len, config.dim) * config.init_std)

    def start_inputs(self, batch: int) -> torch.Tensor:
        """Block 0's inputs (B, h*w, D)."""
        return self.start[None].expand(batch, -1, -1)

    def forward(self, tokens: torch.Tensor, condition: Condition) -> torch.Tensor:
        """Teacher forcing: tokens (B, T*h*w) -> logits (B, T*h*w, V), float32."""
        if tokens.shape[1] != self.config.num_tokens:
            raise ValueError(f"expected {self.config.num_tokens} tokens, got {tokens.shape[1]}")
        prefix = self.embed_condition(condition)
        frames = self.embed_tokens(tokens[:, : -self.frame_len])  # frames 0..T-2, (B, (T-1)*h*w, D)
        x = torch.cat([prefix, self.start_inputs(len(tokens)).to(prefix.dtype), frames], dim=1)
        return self.output(self.norm(self.sequence_features(x, condition))).float()
