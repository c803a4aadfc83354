"""Speculative decoding: a small draft model proposes ``draft_length`` tokens one by one, the
target scores all of them in one forward pass, and each row keeps the longest accepted prefix
plus one token drawn by the target. Rows accept different lengths; every row keeps its own
position in both KV caches.

Standard acceptance (``relaxed_delta = 0``) draws exactly from the target's distribution:
accept a drafted x with probability min(1, p(x)/q(x)), else draw from max(p - q, 0)
renormalised. Relaxed acceptance (LANTERN) adds to p(x) the target mass of x's nearest codes
in the tokenizer's latent space, the longest nearest-first run whose mass stays within
``relaxed_delta`` (so the accepted distribution is within that total variation of p), capped
at ``relaxed_lambda * p(x)`` when set (LANTERN++). Greedy decoding (temperature 0) accepts x
when its aggregated mass reaches the target's top probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from argen.models.draft_head import DraftHead
from argen.models.llama import Condition
from argen.sampling.logits import filter_logits
from argen.sampling.next_token import SamplingConfig

Generators = torch.Generator | list[torch.Generator]  # one for the batch, or one per row


@dataclass
class SpeculativeConfig:
    draft_length: int = 4
    relaxed_k: int = 0  # latent neighbours per code considered by relaxed acceptance
    relaxed_delta: float = 0.0  # total-variation budget; 0 is standard speculative sampling
    relaxed_lambda: float | None = None  # LANTERN++ cap on the aggregated mass, as a multiple of p(x)

    def __post_init__(self) -> None:
        if self.draft_length < 1:
            raise ValueError(f"draft_length must be >= 1, got {self.draft_length}")
        if self.relaxed_k < 0 or not 0 <= self.relaxed_delta <= 1:
            raise ValueError("relaxed_k must be >= 0 and relaxed_delta in [0, 1]")
        if self.relaxed_lambda is not None and self.relaxed_lambda < 1:
            raise ValueError(f"relaxed_lambda must be >= 1, got {self.relaxed_lambda}")

    @property
    def relaxed(self) -> bool:
        return self.relaxed_k > 0 and self.relaxed_delta > 0


def code_neighbours(codebook: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """Code vectors (V, D) -> ids (V, k) of each code's k nearest other codes, nearest first.

    Pass the vectors the quantiser compares (l2-normalised ones for an l2 codebook)."""
    size = codebook.shape[0]
    if not 0 < k < size:
        raise ValueError(f"need 0 < k < codebook size {size}, got {k}")
    out = []
    for start in range(0, size, chunk):
        dist = torch.cdist(codebook[start : start + chunk].float(), codebook.float())  # (c, V)
        rows = torch.arange(dist.shape[0], device=dist.device)
        dist[rows, rows + start] = float("inf")  # a code is not its own neighbour
        out.append(dist.topk(k, largest=False).indices)
    return torch.cat(out)


def relaxed_mass(
    p: torch.Tensor, x: torch.Tensor, neighbours: torch.Tensor | None, delta: float, cap: float | None
) -> torch.Tensor:
    """p(x) plus the mass of x's longest nearest-first neighbour run within ``delta``.

    p (N, V), x (N,) -> (N,). Without neighbours or with delta 0 this is p(x)."""
    px = p.gather(1, x[:, None])[:, 0]
    if neighbours is None or delta <= 0:
        return px
    run = p.gather(1, neighbours[x]).cumsum(1)  # (N, K): mass of the first j+1 neighbours
    added = torch.where(run <= delta, run, torch.zeros_like(run)).amax(1)
    return px + added if cap is None else torch.minimum(px + added, cap * px)


def uniform(generators: Generators, rows: int, *shape: int, device: torch.device) -> torch.Tensor:
    """Uniforms (rows, *shape): one stream for the batch, or each row from its own generator."""
    if isinstance(generators, torch.Generator):
        return torch.rand(rows, *shape, generator=generators, device=device)
    return torch.stack([torch.rand(shape, generator=g, device=device) for g in generators])


def draw(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Gumbel-max draw from probs (B, V) with uniforms u (B, V) -> ids (B,)."""
    gumbel = -torch.log(-torch.log(u.clamp_min(1e-20)))
    return (probs.log() + gumbel).argmax(-1)


def guidance_scales(sampling: SamplingConfig, length: int, extra: int, device) -> torch.Tensor:
    """The guidance scale of every token index, scratch positions included, (length + extra + 1,)."""
    scales = [sampling.scale_at(min(i, length - 1), length) for i in range(length + extra + 1)]
    return torch.tensor(scales, device=device)


def guided(logits: torch.Tensor, scales: torch.Tensor | None) -> torch.Tensor:
    """[cond; uncond] rows (2B, Lq, V) with per-token ``scales`` (B, Lq) -> (B, Lq, V); no
    scales: the rows as they are."""
    if scales is None:
        return logits
    cond, uncond = logits.chunk(2)
    return uncond + scales[..., None] * (cond - uncond)


class GuidedModel:
    """One model's cached forward as guided distributions for B rows (2B inside with CFG)."""

    def __init__(self, model, condition: Condition, sampling: SamplingConfig, extra: int):
        self.model, self.sampling, self.batch = model, sampling, len(condition)
        self.rows = model.with_null(condition) if sampling.guided else condition
        self.scales = guidance_scales(sampling, model.config.num_tokens, extra, model.output.weight.device)
        model.setup_cache(self.rows, extra)

    def double(self, t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t, t]) if self.sampling.guided else t

    def logits(
        self, x: torch.Tensor, pos: torch.Tensor, index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings x (B', Lq, D) at positions pos (B', Lq) predicting token ``index`` (B, Lq)
        -> (guided logits (B, Lq, V), the last block's features (B', Lq, D))."""
        features = self.model.features_cached(x, pos)
        logits = self.model.output(self.model.norm(features)).float()
        return guided(logits, self.scales[index] if self.sampling.guided else None), features

    def prefill(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The condition prefix -> guided logits (B, V) and features (B', D) for token 0."""
        x = self.model.embed_condition(self.rows)
        pos = torch.arange(x.shape[1], device=x.device)
        index = torch.zeros(self.batch, 1, dtype=torch.long, device=x.device)
        logits, features = self.logits(x, pos.expand(x.shape[0], -1), index)
        return logits[:, -1], features[:, -1]

    def step(self, tokens: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens (B, Lq) with token indices ``index`` (B, Lq) -> guided logits (B, Lq, V) and
        features (B', Lq, D) for the tokens that follow each."""
        pos = self.double(index + self.model.prefix_len)
        return self.logits(self.model.embed_tokens(self.double(tokens)), pos, index + 1)


class ModelDrafter:
    """Drafts with a small generator of its own (it re-reads the last two tokens each round)."""

    def __init__(self, draft, condition: Condition, sampling: SamplingConfig, extra: int):
        self.model = GuidedModel(draft, condition, sampling, extra)
        self.model.prefill()

    def propose(self, out, features, n, k, pick, sampling) -> tuple[torch.Tensor, torch.Tensor]:
        """k drafts (B, k) after the first n tokens of each row of ``out``, and their
        distributions (B, k, V)."""
        index = n[:, None] + torch.arange(-2, 0, device=n.device)  # (B, 2)
        tokens = out.gather(1, index)
        drafted, q = [], []
        for _ in range(k):
            probs = probabilities(self.model.step(tokens, index)[0][:, -1], sampling)  # (B, V)
            q.append(probs)
            drafted.append(pick(probs))
            tokens, index = drafted[-1][:, None], index[:, -1:] + 1
        return torch.stack(drafted, 1), torch.stack(q, 1)

    def close(self) -> None:
        self.model.model.clear_cache()


class HeadDrafter:
    """Drafts with a :class:`~argen.models.draft_head.DraftHead` on the target's features: each
    round re-reads the last k+1 tokens with the target's features (the accepted ones replace
    the head's own predictions), then feeds its predicted features forward."""

    def __init__(self, head, batch: int, sampling: SamplingConfig, extra: int):
        self.head, self.sampling = head, sampling
        length = head.config.num_tokens
        head.setup_cache(2 * batch if sampling.guided else batch, length + extra)
        self.scales = guidance_scales(sampling, length, extra, head.fc.weight.device)

    def double(self, t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t, t]) if self.sampling.guided else t

    def propose(self, out, features, n, k, pick, sampling) -> tuple[torch.Tensor, torch.Tensor]:
        index = (n[:, None] - k - 1 + torch.arange(k + 1, device=n.device)).clamp_min(0)  # (B, k+1)
        rows = self.double(index)
        feats = features.gather(1, rows[..., None].expand(-1, -1, features.shape[-1]))  # (B', k+1, D)
        tokens = self.double(out.gather(1, index))
        drafted, q = [], []
        for _ in range(k):
            predicted, logits = self.head.forward_cached(feats, tokens, rows)
            scales = self.scales[index[:, -1:] + 1] if sampling.guided else None
            probs = probabilities(guided(logits[:, -1:], scales)[:, 0], sampling)  # (B, V)
            q.append(probs)
            drafted.append(pick(probs))
            index = index[:, -1:] + 1
            feats, tokens, rows = predicted[:, -1:], self.double(drafted[-1][:, None]), self.double(index)
        return torch.stack(drafted, 1), torch.stack(q, 1)

    def close(self) -> None:
        self.head.clear_cache()


def advance(n: torch.Tensor, m: torch.Tensor, length: int) -> tuple[torch.Tensor, int, int]:
    """Rows at n (B,) tokens that accepted m drafts plus one target token -> (their new n, the
    unfinished rows, the tokens those gained)."""
    active = n < length
    gained = int(torch.where(active, (m + 1).clamp(max=length - n), 0).sum())
    return torch.where(active, n + m + 1, n), int(active.sum()), gained


def probabilities(logits: torch.Tensor, sampling: SamplingConfig) -> torch.Tensor:
    """The distribution tokens are drawn from (temperature 0 keeps temperature 1 here)."""
    temperature = sampling.temperature or 1.0
    return filter_logits(logits / temperature, sampling.top_k, sampling.top_p).softmax(-1)


@torch.no_grad()
def sample_speculative(
    target: torch.nn.Module,
    draft: torch.nn.Module,
    condition: Condition,
    sampling: SamplingConfig,
    spec: SpeculativeConfig,
    generators: Generators,
    neighbours: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """Generate ``target.config.num_tokens`` ids per condition row -> (ids (B, L), stats).

    ``neighbours`` (V, K) from :func:`code_neighbours` enables relaxed acceptance. Stats:
    ``target_calls`` (verification passes), ``row_calls`` (passes summed over unfinished
    rows), ``tokens`` and ``tokens_per_call`` (mean tokens a row gains per pass, accepted
    drafts plus the target's own token)."""
    if (target.config.vocab_size, target.config.num_tokens) != (
        draft.config.vocab_size,
        draft.config.num_tokens,
    ):
        raise ValueError("draft and target must share the tokenizer (vocabulary and grid)")
    k, length, batch = spec.draft_length, target.config.num_tokens, len(condition)
    extra = 2 * k + 1  # scratch positions past the grid for rows that run ahead
    greedy = sampling.temperature == 0
    neighbours = neighbours[:, : spec.relaxed_k] if spec.relaxed and neighbours is not None else None
    device = target.output.weight.device
    rows = torch.arange(batch, device=device)

    def pick(probs: torch.Tensor) -> torch.Tensor:
        u = uniform(generators, batch, probs.shape[-1], device=device)
        return probs.argmax(-1) if greedy else draw(probs, u)

    big = GuidedModel(target, condition, sampling, extra)
    if isinstance(draft, DraftHead):
        drafter = HeadDrafter(draft, batch, sampling, extra)
    else:
        drafter = ModelDrafter(draft, condition, sampling, extra)
    try:
        out = torch.zeros(batch, length + extra, dtype=torch.long, device=device)
        logits, first_features = big.prefill()
        out[:, 0] = pick(probabilities(logits, sampling))
        # the target's features H_j (at the position predicting token j), per guided row
        features = first_features.new_zeros(len(big.rows), length + extra + 1, first_features.shape[-1])
        features[:, 0] = first_features
        if length > 1:  # a second token from the target, so every row has two tokens to feed the draft
            first = out[:, :1]
            logits, step_features = big.step(first, torch.zeros_like(first))
            out[:, 1] = pick(probabilities(logits[:, -1], sampling))
            features[:, 1] = step_features[:, -1]
        n = torch.full((batch,), min(length, 2), device=device)
        calls, row_calls, gained = 0, 0, 0
        while bool((n < length).any()):
            drafted, q = drafter.propose(out, features, n, k, pick, sampling)  # (B, k), (B, k, V)
            # verify: the target reads the last token and the k drafts at once
            verify = torch.cat([out.gather(1, n[:, None] - 1), drafted], 1)  # (B, k+1)
            index = n[:, None] - 1 + torch.arange(k + 1, device=device)
            logits, verified = big.step(verify, index)
            p = probabilities(logits, sampling)  # (B, k+1, V)
            features.scatter_(1, big.double(index + 1)[..., None].expand_as(verified), verified)
            calls += 1
            # accept the longest prefix
            flat_p, flat_x = p[:, :k].flatten(0, 1), drafted.flatten()
            mass = relaxed_mass(flat_p, flat_x, neighbours, spec.relaxed_delta, spec.relaxed_lambda).view(
                batch, k
            )
            u = uniform(generators, batch, k, device=device)
            if greedy:
                accept = mass >= p[:, :k].amax(-1)
            else:
                accept = u * q.gather(2, drafted[..., None])[..., 0] <= mass
            m = accept.long().cumprod(1).sum(1)  # (B,) accepted drafts
            # the target's own token: a bonus draw after k accepts, else from the residual
            p_m, q_m = p[rows, m], q[rows, m.clamp(max=k - 1)]
            residual = (p_m - q_m).clamp_min(0)
            norm = residual.sum(-1, keepdim=True)
            residual = torch.where(norm > 0, residual / norm.clamp_min(1e-30), p_m)
            final = pick(p_m if greedy else torch.where((m == k)[:, None], p_m, residual))
            new = torch.cat([drafted, final[:, None]], 1).scatter(1, m[:, None], final[:, None])  # (B, k+1)
            out.scatter_(1, n[:, None] + torch.arange(k + 1, device=device), new)
            n, rows_active, rows_gained = advance(n, m, length)
            row_calls, gained = row_calls + rows_active, gained + rows_gained
    finally:
        target.clear_cache()
        drafter.close()
    stats = {"target_calls": calls, "row_calls": row_calls, "tokens": gained}
    stats["tokens_per_call"] = gained / max(row_calls, 1)
    return out[:, :length], stats


class SpeculationTotals:
    """The statistics of a speculative sampler, summed over the batches it has drawn."""

    def __init__(self, keys: tuple[str, ...] = ("target_calls", "row_calls", "tokens")):
        self.totals = dict.fromkeys(keys, 0)

    def record(self, stats: dict) -> None:
        for key in self.totals:
            self.totals[key] += stats[key]

    @property
    def tokens_per_call(self) -> float:
        """Mean tokens a row gains per target pass, over all batches drawn."""
        return self.totals["tokens"] / max(self.totals["row_calls"], 1)


class Speculation(SpeculationTotals):
    """A draft model (or draft head) with its settings, ready to sample batch after batch."""

    def __init__(
        self, draft: torch.nn.Module, config: SpeculativeConfig, codebook: torch.Tensor | None = None
    ):
        super().__init__()
        self.draft, self.config = draft, config
        self.neighbours = None
        if config.relaxed:
            if codebook is None:
                raise ValueError("relaxed acceptance needs the tokenizer's codebook")
            self.neighbours = code_neighbours(codebook, min(config.relaxed_k, codebook.shape[0] - 1))

    def __call__(self, target, condition: Condition, sampling: SamplingConfig, generator: Generators):
        ids, stats = sample_speculative(
            target, self.draft, condition, sampling, self.config, generator, self.neighbours
        )
        self.record(stats)
        return ids
