"""The Llama-style decoder every discrete tokenizer feeds: RMSNorm, 2-D RoPE, SwiGLU,
grouped-query SDPA attention, no biases, a static pre-allocated KV cache, and a condition
prefix (a class token, or caption tokens with a padding mask) with a null condition for
classifier-free guidance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from argen.models.caption import Caption, CaptionEmbedder, ClassPrefix
from argen.models.parts import Parts, id_parts
from argen.models.rope import apply_rope, rope_1d, rope_2d, rope_3d

Condition = torch.Tensor | Caption  # class ids (B,) or encoded prompts


@dataclass
class LlamaConfig:
    """Constructor arguments of :class:`Llama`. Presets B..3B are LlamaGen's shapes."""

    PRESETS: ClassVar[dict[str, dict]] = {
        "tiny": dict(dim=128, n_layer=4, n_head=4),
        "small": dict(dim=256, n_layer=6, n_head=8),
        "B": dict(dim=768, n_layer=12, n_head=12),
        "L": dict(dim=1024, n_layer=24, n_head=16),
        "XL": dict(dim=1280, n_layer=36, n_head=20),
        "XXL": dict(dim=1536, n_layer=48, n_head=24),
        "3B": dict(dim=3200, n_layer=24, n_head=32),
    }

    vocab_size: int = 16384
    grid_size: tuple[int, int] = (16, 16)
    num_classes: int = 1000
    dim: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_kv_head: int | None = None
    ffn_dim: int | None = None
    norm_eps: float = 1e-5
    rope_base: float = 10000.0
    rope_condition: Literal["identity", "zero"] = "identity"  # "zero": LlamaGen's official models
    rope: Literal["2d", "1d", "3d"] = "2d"  # 1d: byte streams; 3d: video (frame, row, column)
    frames: int = 1  # video: latent frames, each a grid_size grid
    condition: Literal["class", "text"] = "class"
    caption_dim: int = 384  # text: width of the text encoder's features
    caption_len: int = 120  # text: prefix length; prompts are padded or truncated to it
    text_encoder: str = "minilm"  # text: the encoder whose features the model reads
    class_dropout: float = 0.1  # also the caption dropout of text models
    dropout: float = 0.0
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.dim % self.n_head:
            raise ValueError(f"dim {self.dim} is not divisible by n_head {self.n_head}")
        if self.n_head % self.kv_heads:
            raise ValueError(f"n_head {self.n_head} is not divisible by n_kv_head {self.kv_heads}")
        if self.frames < 1 or (self.frames > 1 and self.rope != "3d"):
            raise ValueError(
                f"video models (frames > 1) use rope: 3d, got frames {self.frames}, rope {self.rope}"
            )

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def hidden_dim(self) -> int:
        """SwiGLU width: 2/3 of 4*dim rounded up to a multiple of 256 unless given."""
        if self.ffn_dim:
            return self.ffn_dim
        return -(-int(2 * 4 * self.dim / 3) // 256) * 256

    @property
    def num_tokens(self) -> int:
        return self.frames * self.grid_size[0] * self.grid_size[1]

    @property
    def prefix_len(self) -> int:
        return self.caption_len if self.condition == "text" else 1


def at_positions(values: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Per-position values (B, S, D) at positions ``pos`` (Lq,) for every row or (B, Lq) per
    row -> (B, Lq, D)."""
    if pos.dim() == 1:
        return values[:, pos]
    return values.gather(1, pos[..., None].expand(-1, -1, values.shape[-1]))


PREFIXES = {  # condition kind -> its prefix module
    "class": lambda c: ClassPrefix(c.num_classes, c.dim),
    "text": lambda c: CaptionEmbedder(c.caption_dim, c.dim, c.caption_len),
}


def rope_table(c: LlamaConfig) -> torch.Tensor:
    """The rotation table (prefix_len + num_tokens, Dh/2, 2) of ``c``'s positions."""
    head_dim = c.dim // c.n_head
    if c.rope == "1d":
        return rope_1d(c.num_tokens, head_dim, c.rope_base, c.prefix_len)
    if c.rope == "3d":
        return rope_3d(c.frames, *c.grid_size, head_dim, c.rope_base, c.prefix_len)
    return rope_2d(*c.grid_size, head_dim, c.rope_base, c.prefix_len, c.rope_condition == "zero")


def no_rotation(c: LlamaConfig) -> torch.Tensor:
    """The identity rotation (num_tokens, Dh/2, 2), cos 1 and sin 0, for learned positions."""
    half = (c.num_tokens, c.dim // c.n_head // 2)
    return torch.stack([torch.ones(half), torch.zeros(half)], -1)


def move_saved_keys(model: nn.Module, state: dict, prefix: str, *args) -> None:
    """A load_state_dict pre-hook: weights saved under an earlier layout of ``model`` (its
    ``moved_keys``, old key prefix -> new) load into the current one."""
    for old, new in model.moved_keys.items():
        for key in [k for k in state if k.startswith(prefix + old)]:
            state[prefix + new + key[len(prefix + old) :]] = state.pop(key)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class KVCache(nn.Module):
    """Static cache (B, H_kv, max_len, Dh) written in place at the given positions: shared by
    all rows (Lq,) or per row (B, Lq)."""

    def __init__(self, batch: int, heads: int, max_len: int, head_dim: int, like: torch.Tensor):
        super().__init__()
        shape = (batch, heads, max_len, head_dim)
        self.register_buffer("k", like.new_zeros(shape), persistent=False)
        self.register_buffer("v", like.new_zeros(shape), persistent=False)

    def update(self, pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        if pos.dim() == 1:
            self.k.index_copy_(2, pos, k)
            self.v.index_copy_(2, pos, v)
        else:
            index = pos[:, None, :, None].expand_as(k)  # (B, H_kv, Lq, Dh)
            self.k.scatter_(2, index, k)
            self.v.scatter_(2, index, v)
        return self.k, self.v


class Attention(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.n_head, self.n_kv, self.head_dim = c.n_head, c.kv_heads, c.dim // c.n_head
        self.wqkv = nn.Linear(c.dim, (self.n_head + 2 * self.n_kv) * self.head_dim, bias=False)
        self.wo = nn.Linear(c.dim, c.dim, bias=False)
        self.dropout = c.dropout
        self.cache: KVCache | None = None

    def forward(self, x, rope, mask=None, pos=None):
        b, l, _ = x.shape
        q, k, v = self.wqkv(x).split(
            [self.n_head * self.head_dim, self.n_kv * self.head_dim, self.n_kv * self.head_dim], -1
        )
        q = apply_rope(q.view(b, l, self.n_head, self.head_dim), rope).transpose(1, 2)
        k = apply_rope(k.view(b, l, self.n_kv, self.head_dim), rope).transpose(1, 2)
        v = v.view(b, l, self.n_kv, self.head_dim).transpose(1, 2)  # (B, H_kv, L, Dh)
        if self.cache is not None:
            k, v = self.cache.update(pos, k, v)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=mask is None,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.n_kv != self.n_head,
        )  # (B, H, L, Dh)
        return self.wo(y.transpose(1, 2).reshape(b, l, -1))


class FeedForward(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.w1 = nn.Linear(c.dim, c.hidden_dim, bias=False)
        self.w3 = nn.Linear(c.dim, c.hidden_dim, bias=False)
        self.w2 = nn.Linear(c.hidden_dim, c.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class LlamaBlock(nn.Module):
    """Pre-norm attention + SwiGLU; the FSDP wrap unit."""

    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.attention_norm = RMSNorm(c.dim, c.norm_eps)
        self.attention = Attention(c)
        self.ffn_norm = RMSNorm(c.dim, c.norm_eps)
        self.feed_forward = FeedForward(c)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x, rope, mask=None, pos=None):
        x = x + self.dropout(self.attention(self.attention_norm(x), rope, mask, pos))
        return x + self.dropout(self.feed_forward(self.ffn_norm(x)))


class Llama(nn.Module):
    """The decoder stack every generator is built on: a condition prefix (one class token or
    ``caption_len`` caption tokens, padded ones hidden by the attention mask), the blocks, the
    final norm and the rotary table, assembled with the :class:`Parts` a paradigm composes
    (input embedding, output head, attention pattern). The default parts are a raster
    next-token model: ids in, logits out, ``[prefix, t_0, ..., t_{L-2}]`` causal, the last
    prefix position predicting t_0.
    """

    Config = LlamaConfig
    activation_checkpointing = False  # a training option, set by the trainer
    moved_keys: ClassVar[dict[str, str]] = {}  # saved key prefix -> where it lives now

    def __init__(self, config: LlamaConfig, parts: Parts | None = None):
        super().__init__()
        self.config = c = config
        parts = parts or id_parts(c.vocab_size, c.dim)
        self.prefix_len = c.prefix_len
        self.pattern = parts.pattern
        self.max_len = parts.pattern.length(c.prefix_len, c.num_tokens)
        prefix = PREFIXES[c.condition](c)
        self.prefix_attribute = prefix.attribute
        setattr(self, prefix.attribute, prefix)  # registered under the name checkpoints use
        self.tok_emb = parts.embedding
        self.layers = nn.ModuleList(LlamaBlock(c) for _ in range(c.n_layer))
        self.norm = RMSNorm(c.dim, c.norm_eps)
        self.output = parts.head
        rope = rope_table(c) if parts.rotary else no_rotation(c)
        self.register_buffer("rope", rope, persistent=False)
        self.cache_additions: dict[int, torch.Tensor] = {}  # set while a cache is set up
        self.apply(self._init_weights)
        nn.init.zeros_(self.output.weight)
        if self.moved_keys:
            self.register_load_state_dict_pre_hook(move_saved_keys)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.init_std)

    @property
    def prefix(self) -> ClassPrefix | CaptionEmbedder:
        """The condition prefix: class ids or captions -> prefix tokens, null rows, real keys."""
        return getattr(self, self.prefix_attribute)

    @property
    def null_class(self) -> int:
        """Class-conditional generators: the label of the unconditional rows."""
        return self.prefix.null_class

    def embed_condition(self, condition: Condition) -> torch.Tensor:
        """Class ids (B,) or a :class:`Caption` -> prefix (B, prefix_len, D). In training,
        conditions are dropped (replaced by the null condition) with ``class_dropout``."""
        drop = None
        if self.training and self.config.class_dropout > 0:
            drop = torch.rand(len(condition), device=self.output.weight.device) < self.config.class_dropout
        return self.prefix.embed(condition, drop)

    def with_null(self, condition: Condition) -> Condition:
        """The rows [condition; unconditional] (2B) for classifier-free guidance."""
        return self.prefix.with_null(condition)

    def attention_mask(self, condition: Condition, length: int) -> torch.Tensor:
        """Boolean (B or 1, 1, length, length): the pattern's, with padded caption keys hidden
        from every query (a padded query still sees itself, so no row is empty)."""
        device = self.output.weight.device
        visible = self.pattern.visible(length, device)
        keys = self.prefix.keys(condition, length, device)  # (B, length), None: all real
        if keys is None:
            return visible[None, None]
        eye = torch.eye(length, dtype=torch.bool, device=device)
        return ((visible & keys[:, None, :]) | eye)[:, None]

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.tok_emb(ids)

    def forward(self, tokens: torch.Tensor, condition: Condition) -> torch.Tensor:
        """Teacher forcing: tokens (B, L, ...) and a condition -> the head's values (B, L, ...),
        float32 (logits for ids)."""
        return self.output(self.norm(self.token_features(tokens, condition))).float()

    def token_features(self, tokens: torch.Tensor, condition: Condition) -> torch.Tensor:
        """Teacher forcing: the last block's output (before the final norm) at the positions
        that give each token, (B, L, D). The causal pattern reads all tokens but the last."""
        if tokens.shape[1] != self.config.num_tokens:
            raise ValueError(f"expected {self.config.num_tokens} tokens, got {tokens.shape[1]}")
        inputs = tokens[:, : self.max_len - self.prefix_len]
        x = torch.cat([self.embed_condition(condition), self.embed_tokens(inputs)], dim=1)
        return self.sequence_features(x, condition)

    def sequence_features(self, x: torch.Tensor, condition: Condition) -> torch.Tensor:
        """Input embeddings (B, max_len, D) -> the last block's output at the positions that
        give each token, the last ``num_tokens`` ones (B, L, D)."""
        rope = self.rope[: x.shape[1]]
        needs_mask = self.prefix.padded or not self.pattern.causal  # None: causal
        mask = self.attention_mask(condition, x.shape[1]) if needs_mask else None
        x = self.run_layers(x, rope, mask, self.layer_additions(condition, self.max_len))
        return x[:, -self.config.num_tokens :]

    def run_layers(
        self,
        x: torch.Tensor,
        rope: torch.Tensor,
        mask: torch.Tensor | None,
        additions: dict[int, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """All blocks over a whole sequence (teacher forcing), each block's ``additions``
        (B, S, D) joining its input; recomputed in the backward pass when
        ``activation_checkpointing`` is set."""
        for index, layer in enumerate(self.layers):
            if additions and index in additions:
                x = x + additions[index][:, : x.shape[1]]
            if self.activation_checkpointing and self.training:
                x = checkpoint(layer, x, rope, mask, use_reentrant=False)
            else:
                x = layer(x, rope, mask)
        return x

    def layer_additions(self, condition: Condition, length: int) -> dict[int, torch.Tensor]:
        """What joins the input of some blocks, by block index, at every position of a sequence
        of ``length`` (B, length, D): nothing here; spatial control adds its features."""
        return {}

    # --- cached decoding -------------------------------------------------------------------
    def setup_cache(self, condition: Condition, extra: int = 0) -> None:
        """Allocate a static KV cache for the rows of ``condition`` and ``max_len + extra``
        positions (the ``extra`` ones, past the grid, are scratch space for speculative drafts)."""
        c = self.config
        like, length = self.output.weight, self.max_len + extra
        for layer in self.layers:
            layer.attention.cache = KVCache(len(condition), c.kv_heads, length, c.dim // c.n_head, like)
        self.register_buffer("cache_mask", self.attention_mask(condition, length), persistent=False)
        self.register_buffer("cache_rope", F.pad(self.rope, (0, 0, 0, 0, 0, extra)), persistent=False)
        self.cache_additions = self.layer_additions(condition, length)  # block -> (B, length, D)

    def clear_cache(self) -> None:
        for layer in self.layers:
            layer.attention.cache = None
        self.cache_mask = self.cache_rope = None
        self.cache_additions = {}

    def forward_cached(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Embeddings x (B, Lq, D) at positions ``pos`` -> logits (B, Lq, V), using the cache.

        ``pos`` is (Lq,) for all rows or (B, Lq) per row (rows at different lengths)."""
        return self.output(self.norm(self.features_cached(x, pos))).float()

    def features_cached(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """:meth:`forward_cached` up to the last block's output (before the final norm)."""
        rope = self.cache_rope[pos]  # (Lq, Dh/2, 2) or (B, Lq, Dh/2, 2)
        if pos.dim() == 1:
            mask = self.cache_mask[:, :, pos]  # (B|1, 1, Lq, L)
        else:
            rows = self.cache_mask[:, 0].expand(x.shape[0], -1, -1)  # (B, L, L)
            mask = rows.gather(1, pos[..., None].expand(-1, -1, rows.shape[-1]))[:, None]  # (B, 1, Lq, L)
        for index, layer in enumerate(self.layers):
            if index in self.cache_additions:
                x = x + at_positions(self.cache_additions[index], pos)
            x = layer(x, rope, mask, pos)
        return x
