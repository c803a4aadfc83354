"""Next-token sampling over a raster grid: batched, KV-cached, classifier-free guidance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from argen.models.llama import Condition
from argen.sampling.config import SamplingConfig
from argen.sampling.decode import GuidedRows, model_device, token_blocks
from argen.sampling.guidance import guide
from argen.sampling.logits import AllowedIds, Guidance, NeverDrawn, RandomTokens, TokenPick, sample_logits


class ConstrainedRows(Protocol):
    """Per-row syntax states of one sampling call (byte streams): which ids may come next."""

    def allowed(self, remaining: int | torch.Tensor, device: torch.device | None = None) -> torch.Tensor: ...

    def advance(self, tokens: torch.Tensor) -> None: ...  # each row past its id (B,)

    def fork(self) -> ConstrainedRows: ...  # a copy that moves on independently

    def walk(self, tokens: torch.Tensor, counts: torch.Tensor) -> None: ...  # past counts (B,) of (B, T)


class TokenConstraint(Protocol):
    def begin(self, rows: int) -> ConstrainedRows: ...


class GridSampler(Protocol):
    """A replacement for :func:`sample_next_token` on raster grids (speculative decoding,
    coarse-to-fine): condition rows -> ids (B, L)."""

    def __call__(
        self, model: torch.nn.Module, condition: Condition, config: SamplingConfig, generator: torch.Generator
    ) -> torch.Tensor: ...


@dataclass
class NextTokenOptions:
    """What a next-token call adds to its :class:`SamplingConfig`.

    ``use_cache=False`` recomputes the whole prefix at every step (the reference). ``compile``
    runs the one-token step through ``torch.compile`` (static shapes; CUDA graphs on GPU). With
    ``stop_token`` (byte streams' EOS) ``pad_token`` is never drawn, a row that has emitted the
    stop token continues with padding, and the loop ends once every row has. ``given`` (B, G)
    ids are kept as the first G tokens (frame prediction) and only the rest is drawn. A
    ``constraint`` (a codec's syntax) removes the ids it does not allow after guidance; ``pick``
    (default :class:`RandomTokens`) turns the guided logits into ids. A token of several ids
    (bit groups, sub-tokens) has ``token_shape``: ``pick`` then returns (B, n, *token_shape) and
    the generator embeds ids of that shape. ``until`` ends the draw before that position (the
    rest stays ``pad_token``)."""

    given: torch.Tensor | None = None
    stop_token: int | None = None
    pad_token: int = 0
    constraint: TokenConstraint | None = None
    pick: TokenPick | None = None
    compile: bool = False
    use_cache: bool = True
    token_shape: tuple[int, ...] = ()
    until: int | None = None


@torch.no_grad()
def sample_next_token(
    model: torch.nn.Module,
    condition: Condition,
    config: SamplingConfig,
    generator: torch.Generator | None = None,
    options: NextTokenOptions | None = None,
) -> torch.Tensor:
    """Generate ``model.config.num_tokens`` ids per condition row (class ids (B,) or a
    :class:`Caption`) -> (B, L, *token_shape). With guidance the conditional and unconditional rows run as
    one batch of 2B; ``options`` (:class:`NextTokenOptions`) add given tokens, a stop token, a
    syntax constraint, a compiled step."""
    o = options or NextTokenOptions()
    num_tokens, batch = model.config.num_tokens, len(condition)
    if not o.use_cache:
        return recompute_next_token(model, condition, config, generator)
    out = torch.full(
        (batch, num_tokens, *o.token_shape), o.pad_token, dtype=torch.long, device=model_device(model)
    )
    done = torch.zeros(batch, dtype=torch.bool, device=out.device)  # rows past their stop token
    syntax = o.constraint.begin(batch) if o.constraint is not None else None
    rows = GuidedRows(model, condition, config, compile=o.compile)
    pick = o.pick or RandomTokens(config, generator)
    processors = token_processors(config, o, syntax, num_tokens)
    x = model.embed_condition(rows.rows)  # (B', prefix, D)
    first = 0
    if o.given is not None:
        first = check_given(o.given, batch, num_tokens)
        out[:, :first] = o.given
        x = torch.cat([x, model.embed_tokens(rows.double(o.given))], dim=1)
    with rows:
        for i, block in enumerate(token_blocks(config, x.shape[1], first, num_tokens, x.device), first):
            forward = model.forward_cached if i == first else rows.step  # prefill, then steps
            logits = forward(x, block.positions)[:, -1]  # (B', V)
            for process in processors:
                logits = process(logits, i)  # (B, V)
            token = pick(logits[:, None], i)[:, 0]  # (B, *token_shape)
            if syntax is not None:
                syntax.advance(token)
            if o.stop_token is not None:
                token = token.masked_fill(done, o.pad_token)
                done.logical_or_(token == o.stop_token)
            out[:, i] = token
            if i + 1 == (o.until or num_tokens) or (o.stop_token is not None and bool(done.all())):
                break
            x = model.embed_tokens(rows.double(token))[:, None]  # (B', 1, D)
    return out


def token_processors(config: SamplingConfig, o: NextTokenOptions, syntax, length: int) -> list:
    """What the logits of each token pass through before the pick: guidance, padding never
    drawn (with a stop token), the syntax's allowed ids."""
    processors = [Guidance(config, length)] if config.guided else []
    if o.stop_token is not None:
        processors.append(NeverDrawn(o.pad_token))
    if syntax is not None:
        processors.append(AllowedIds(syntax, length))
    return processors


def recompute_next_token(
    model: torch.nn.Module, condition: Condition, config: SamplingConfig, generator: torch.Generator | None
) -> torch.Tensor:
    """:func:`sample_next_token` without a cache: every step reruns the whole sequence (the
    reference for tests and benchmarks)."""
    num_tokens = model.config.num_tokens
    rows = model.with_null(condition) if config.guided else condition
    out = torch.zeros(len(condition), num_tokens, dtype=torch.long, device=model_device(model))
    for i in range(num_tokens):
        padded = torch.cat([out[:, :i], out.new_zeros(out.shape[0], num_tokens - i)], 1)
        logits = model(padded.repeat(2, 1) if config.guided else padded, rows)[:, i]
        if config.guided:
            logits = guide(logits, config.scale_at(i, num_tokens))
        out[:, i] = sample_logits(logits, config.temperature, config.top_k, config.top_p, generator)
    return out


def pad_after_stop(ids: torch.Tensor, stop_token: int, pad_token: int) -> torch.Tensor:
    """ids (B, L) with every id after a row's first ``stop_token`` replaced by ``pad_token``."""
    stops = (ids == stop_token).long()
    return ids.masked_fill(stops.cumsum(1) - stops > 0, pad_token)


def check_given(given: torch.Tensor, rows: int, num_tokens: int) -> int:
    """The number of given tokens, after checking their shape (rows, G) with G < num_tokens."""
    if given.ndim != 2 or len(given) != rows or not 0 < given.shape[1] < num_tokens:
        raise ValueError(
            f"given tokens must be ({rows}, G) with 0 < G < {num_tokens}, got {tuple(given.shape)}"
        )
    return given.shape[1]
