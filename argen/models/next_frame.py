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


class NextFrameLlama(Llama):
    Config = LlamaConfig

    def __init__(self, config: LlamaConfig):
        super().__init__(config)
        if config.rope != "3d":
            raise ValueError("next-frame generators are video models (rope: 3d)")
        self.frame_len = config.grid_size[0] * config.grid_size[1]
        self.start = nn.Parameter(torch.randn(self.frame_len, config.dim) * config.init_std)

    @property
    def max_len(self) -> int:
        return self.prefix_len + self.config.num_tokens

    def visible(self, length: int, device: torch.device) -> torch.Tensor:
        """Block-causal (length, length): causal, plus every position of a query's own frame."""
        pos = torch.arange(length, device=device)
        block = torch.div(pos - self.prefix_len, self.frame_len, rounding_mode="floor")  # prefix: -1
        same_frame = (block[:, None] == block[None, :]) & (block[:, None] >= 0)
        return (pos[:, None] >= pos[None, :]) | same_frame

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
        x = self.run_layers(x, self.rope[: x.shape[1]], self.attention_mask(condition, x.shape[1]))
        return self.output(self.norm(x[:, self.prefix_len :])).float()
