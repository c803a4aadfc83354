"""A lightweight draft head on the target's features (EAGLE-style) for speculative decoding.

The target's last block output H_j (before its final norm) at the position that predicts
token j, joined with the embedding of token j, is projected (``fc``) and run through a few
Llama blocks to predict H_{j+1}; the target's own final norm and output layer (frozen
copies) turn that into a distribution over token j+1. Drafting further tokens feeds the
head's predicted features back in. Input j sits at the target's position of token j, so it
uses the target's RoPE table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from argen.models.llama import KVCache, Llama, LlamaBlock, LlamaConfig, RMSNorm, rope_table


@dataclass
class DraftHeadConfig(LlamaConfig):
    """The target's config; ``n_layer`` counts the head's blocks (EAGLE uses one)."""

    n_layer: int = 1


class DraftHead(nn.Module):
    Config = DraftHeadConfig

    def __init__(self, config: DraftHeadConfig):
        super().__init__()
        self.config = c = config
        if c.rope == "1d":
            raise ValueError("draft heads are for grid and video tokens")
        self.prefix_len = c.prefix_len
        self.fc = nn.Linear(2 * c.dim, c.dim)
        self.layers = nn.ModuleList(LlamaBlock(c) for _ in range(c.n_layer))
        # frozen copies of the target's embedding, final norm and output layer
        self.tok_emb = nn.Embedding(c.vocab_size, c.dim).requires_grad_(False)
        self.norm = RMSNorm(c.dim, c.norm_eps).requires_grad_(False)
        self.output = nn.Linear(c.dim, c.vocab_size, bias=False).requires_grad_(False)
        self.register_buffer("rope", rope_table(c)[self.prefix_len :], persistent=False)  # by token index
        for module in (self.fc, self.layers):
            module.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=self.config.init_std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    @classmethod
    def from_target(cls, target: Llama, n_layer: int = 1) -> DraftHead:
        """A new head for ``target`` (a next-token Llama over ids), with its frozen parts copied."""
        if type(target) is not Llama:
            raise ValueError(f"draft heads serve next-token Llama targets, not {type(target).__name__}")
        if target.config.condition != "class":
            raise ValueError("draft heads are trained for class-conditional targets")
        head = cls(DraftHeadConfig(**{**asdict(target.config), "n_layer": n_layer}))
        for name in ("tok_emb", "norm", "output"):
            getattr(head, name).load_state_dict(getattr(target, name).state_dict())
        return head

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.output(self.norm(features)).float()

    def forward(self, features: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing on the target's features H (B, L, D) and tokens (B, L) -> predicted
        H_1..H_{L-1} (B, L-1, D) and logits for tokens 1..L-1 (B, L-1, V)."""
        x = self.fc(torch.cat([features[:, :-1], self.tok_emb(tokens[:, :-1])], dim=-1))  # (B, L-1, D)
        rope = self.rope[: x.shape[1]]
        for layer in self.layers:
            x = layer(x, rope)  # causal
        return x, self.logits(x)

    # --- cached drafting -------------------------------------------------------------------
    def setup_cache(self, rows: int, length: int) -> None:
        """A KV cache for ``rows`` rows and token indices [0, length)."""
        c = self.config
        for layer in self.layers:
            layer.attention.cache = KVCache(rows, c.kv_heads, length, c.dim // c.n_head, self.fc.weight)
        causal = torch.ones(length, length, dtype=torch.bool, device=self.fc.weight.device).tril()
        self.register_buffer("cache_mask", causal, persistent=False)
        extra = length - self.rope.shape[0]
        self.register_buffer(
            "cache_rope", nn.functional.pad(self.rope, (0, 0, 0, 0, 0, max(extra, 0))), persistent=False
        )

    def clear_cache(self) -> None:
        for layer in self.layers:
            layer.attention.cache = None
        self.cache_mask = self.cache_rope = None

    def forward_cached(
        self, features: torch.Tensor, tokens: torch.Tensor, index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (B, Lq, D) and tokens (B, Lq) at token indices ``index`` (B, Lq) ->
        (predicted features of the next tokens (B, Lq, D), their logits (B, Lq, V))."""
        x = self.fc(torch.cat([features, self.tok_emb(tokens)], dim=-1))
        rope = self.cache_rope[index]  # (B, Lq, Dh/2, 2)
        rows = self.cache_mask[None].expand(len(x), -1, -1)  # (B, L, L)
        mask = rows.gather(1, index[..., None].expand(-1, -1, rows.shape[-1]))[:, None]  # (B, 1, Lq, L)
        for layer in self.layers:
            x = layer(x, rope, mask, index)
        return x, self.logits(x)
