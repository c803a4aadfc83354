"""VAR's released transformer (``var_d16.pth`` ... ``var_d30.pth``), to run official weights.

Not Llama-style: LayerNorm without affine parameters modulated by AdaLN from the class
embedding (six chunks: gamma1, gamma2, scale1, scale2, shift1, shift2), q/k l2-normalised
with a learned per-head scale, GELU-tanh MLP, learned absolute and scale embeddings. The
parameter and buffer names are VAR's, so official state dicts load as they are. argen's own
next-scale generator is :class:`~argen.models.next_scale.NextScaleLlama`; this class shares
its sampling interface, so ``sample.py`` runs both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from argen.models.llama import KVCache, LlamaConfig
from argen.models.next_scale import ScaleFields


@dataclass
class VARConfig(ScaleFields, LlamaConfig):
    """VAR-d{depth}: dim = 64 * depth, n_head = depth, ffn_dim = 4 * dim, norm_eps 1e-6."""

    attn_l2_norm: bool = True
    shared_aln: bool = False

    @classmethod
    def for_depth(cls, depth: int, **kwargs) -> VARConfig:
        dim = 64 * depth
        return cls(dim=dim, n_layer=depth, n_head=depth, ffn_dim=4 * dim, norm_eps=1e-6, **kwargs)


class SelfAttention(nn.Module):
    def __init__(self, c: VARConfig):
        super().__init__()
        self.num_heads, self.head_dim = c.n_head, c.dim // c.n_head
        self.attn_l2_norm = c.attn_l2_norm
        if c.attn_l2_norm:
            self.scale = 1.0
            self.scale_mul_1H11 = nn.Parameter(torch.full((1, c.n_head, 1, 1), 4.0).log())
            self.max_scale_mul = math.log(100)
        else:
            self.scale = 0.25 / math.sqrt(self.head_dim)
        self.mat_qkv = nn.Linear(c.dim, 3 * c.dim, bias=False)
        self.q_bias, self.v_bias = nn.Parameter(torch.zeros(c.dim)), nn.Parameter(torch.zeros(c.dim))
        self.register_buffer("zero_k_bias", torch.zeros(c.dim))
        self.proj = nn.Linear(c.dim, c.dim)
        self.cache: KVCache | None = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        b, l, c = x.shape
        bias = torch.cat([self.q_bias, self.zero_k_bias, self.v_bias])
        qkv = F.linear(x, self.mat_qkv.weight, bias).view(b, l, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, L, Dh)
        if self.attn_l2_norm:
            q = F.normalize(q, dim=-1) * self.scale_mul_1H11.clamp_max(self.max_scale_mul).exp()
            k = F.normalize(k, dim=-1)
        if self.cache is not None:
            k, v = self.cache.update(pos, k, v)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)  # (B, H, L, Dh)
        return self.proj(y.transpose(1, 2).reshape(b, l, c))


class FFN(nn.Module):
    def __init__(self, c: VARConfig):
        super().__init__()
        self.fc1 = nn.Linear(c.dim, c.hidden_dim)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(c.hidden_dim, c.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class AdaLNSelfAttn(nn.Module):
    def __init__(self, c: VARConfig):
        super().__init__()
        self.dim = c.dim
        self.attn = SelfAttention(c)
        self.ffn = FFN(c)
        self.ln_wo_grad = nn.LayerNorm(c.dim, eps=c.norm_eps, elementwise_affine=False)
        if c.shared_aln:
            self.ada_gss = nn.Parameter(torch.randn(1, 1, 6, c.dim) / c.dim**0.5)
        else:
            self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(c.dim, 6 * c.dim))

    def forward(self, x, cond, mask, pos=None):
        """cond: (B, D), or with shared AdaLN the shared projection (B, 1, 6, C)."""
        if hasattr(self, "ada_gss"):
            chunks = (self.ada_gss + cond).unbind(2)
        else:
            chunks = self.ada_lin(cond).view(-1, 1, 6, self.dim).unbind(2)
        gamma1, gamma2, scale1, scale2, shift1, shift2 = chunks  # each (B, 1, C)
        x = x + self.attn(self.ln_wo_grad(x) * (scale1 + 1) + shift1, mask, pos) * gamma1
        return x + self.ffn(self.ln_wo_grad(x) * (scale2 + 1) + shift2) * gamma2


class AdaLNBeforeHead(nn.Module):
    def __init__(self, c: VARConfig):
        super().__init__()
        self.dim = c.dim
        self.ln_wo_grad = nn.LayerNorm(c.dim, eps=c.norm_eps, elementwise_affine=False)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(c.dim, 2 * c.dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.ada_lin(cond).view(-1, 1, 2, self.dim).unbind(2)
        return self.ln_wo_grad(x) * (scale + 1) + shift


class SharedAdaLin(nn.Linear):
    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        return super().forward(cond).view(-1, 1, 6, self.weight.shape[0] // 6)  # (B, 1, 6, C)


class VARTransformer(nn.Module):
    """VAR's class-conditional next-scale transformer with VAR's parameter names."""

    Config = VARConfig

    def __init__(self, config: VARConfig):
        super().__init__()
        self.config = c = config
        self.prefix_len = c.prefix_len
        self.null_class = c.num_classes
        self.word_embed = nn.Linear(c.token_dim, c.dim)
        self.class_emb = nn.Embedding(c.num_classes + 1, c.dim)
        self.pos_start = nn.Parameter(torch.zeros(1, c.prefix_len, c.dim))
        self.pos_1LC = nn.Parameter(torch.zeros(1, c.num_tokens, c.dim))
        self.lvl_embed = nn.Embedding(len(c.patch_nums), c.dim)
        self.shared_ada_lin = (
            nn.Sequential(nn.SiLU(), SharedAdaLin(c.dim, 6 * c.dim)) if c.shared_aln else nn.Identity()
        )
        self.blocks = nn.ModuleList(AdaLNSelfAttn(c) for _ in range(c.n_layer))
        self.head_nm = AdaLNBeforeHead(c)
        self.head = nn.Linear(c.dim, c.vocab_size)
        levels = torch.cat([torch.full((pn * pn,), k) for k, pn in enumerate(c.patch_nums)])
        self.register_buffer("lvl_1L", levels[None])
        bias = torch.where(levels[:, None] >= levels[None, :], 0.0, -torch.inf)
        self.register_buffer("attn_bias_for_masking", bias.reshape(1, 1, c.num_tokens, c.num_tokens))
        self.cond: torch.Tensor | None = None  # the class embeddings of the cached rows

    @property
    def max_len(self) -> int:
        return self.config.num_tokens

    def with_null(self, labels: torch.Tensor) -> torch.Tensor:
        return torch.cat([labels, torch.full_like(labels, self.null_class)])

    def _level_pos(self, start: int, end: int) -> torch.Tensor:
        return self.lvl_embed(self.lvl_1L[0, start:end]) + self.pos_1LC[0, start:end]  # (n, D)

    def embed_start(self, labels: torch.Tensor) -> torch.Tensor:
        """Class ids (B,) -> the first scale's inputs (B, pn_0**2, D)."""
        n = self.prefix_len
        return self.class_emb(labels)[:, None].expand(-1, n, -1) + self.pos_start + self._level_pos(0, n)

    def embed_inputs(self, features: torch.Tensor, start: int) -> torch.Tensor:
        """f_hat features (B, n, token_dim) for sequence positions start.. -> (B, n, D)."""
        return self.word_embed(features) + self._level_pos(start, start + features.shape[1])

    def _run(self, x, cond, mask, pos=None) -> torch.Tensor:
        shared = self.shared_ada_lin(cond)
        for block in self.blocks:
            x = block(x, shared, mask, pos)
        return self.head(self.head_nm(x.float(), cond).float()).float()

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Teacher forcing, as VAR's ``forward``: inputs of scales 1.. (B, L - pn_0**2,
        token_dim), class ids (B,) -> logits (B, L, V). Labels are dropped with
        ``class_dropout`` in training."""
        if self.training and self.config.class_dropout > 0:
            drop = torch.rand(labels.shape, device=labels.device) < self.config.class_dropout
            labels = torch.where(drop, torch.full_like(labels, self.null_class), labels)
        x = torch.cat([self.embed_start(labels), self.embed_inputs(inputs, self.prefix_len)], 1)
        return self._run(x, self.class_emb(labels), self.attn_bias_for_masking.isfinite())

    def setup_cache(self, labels: torch.Tensor, extra: int = 0) -> None:
        """A KV cache for the rows of ``labels`` and the whole sequence (no scratch positions)."""
        if extra:
            raise ValueError("next-scale caches hold exactly the sequence (no extra positions)")
        c, like = self.config, self.head.weight
        for block in self.blocks:
            block.attn.cache = KVCache(len(labels), c.n_head, self.max_len, c.dim // c.n_head, like)
        self.cond = self.class_emb(labels)

    def clear_cache(self) -> None:
        for block in self.blocks:
            block.attn.cache = None
        self.cond = None

    def forward_cached(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Inputs x (B, Lq, D) at positions ``pos`` (Lq,) -> logits (B, Lq, V), using the cache."""
        mask = self.attn_bias_for_masking[:, :, pos].isfinite()  # (1, 1, Lq, L)
        return self._run(x, self.cond, mask, pos)
