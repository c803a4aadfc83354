"""Speculative decoding: a small draft model proposes ``draft_length`` tokens one by one, the
target scores all of them in one forward pass, and each row keeps the longest accepted prefix
plus one token drawn by the target. Rows accept different lengths; every row keeps its own
position in both KV caches.

Standard acceptance (``relaxed_delta = 0``) draws exactly from the target's distribution:
accept a drafted x with probability min(1, p(x)/q(x)), else draw from max(p - q, 0)
renormalised.

Relaxed acceptance (LANTERN) adds to p(x) the target mass of x's nearest codes in the
tokenizer's latent space (``relaxed_space``: the raw code embeddings, as LANTERN measures them,
or the vectors the quantiser looks up): the longest nearest-first run of the ``relaxed_k``
nearest codes whose mass is at most ``relaxed_delta``, or with ``relaxed_lambda`` set
(LANTERN++) at most (lambda - 1) p(x), delta then playing no part. Moving that run's mass onto
x gives a distribution p~ with TV(p, p~) <= delta for each drafted token; the accepted tokens
follow neither p nor p~ exactly, and the output can be much further than delta from p (a
uniform p against a draft that covers half the codes ends at TV 0.5 with delta = 0.05).
After a rejection in which neighbours were absorbed, LANTERN's residual (``relaxed_residual:
lantern``) zeroes the draft's q at the k + 1 nearest codes of the rejected token before taking
max(p - q, 0); ``standard`` keeps the plain residual. Greedy decoding (temperature 0) accepts x
when its aggregated mass reaches the target's top probability.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from argen.models.draft_head import DraftHead
from argen.models.llama import Condition
from argen.sampling.config import SamplingConfig
from argen.sampling.decode import GuidedRows
from argen.sampling.draft_masks import RoundMasks
from argen.sampling.guidance import guide
from argen.sampling.logits import filter_logits
from argen.sampling.next_token import TokenConstraint

Generators = torch.Generator | list[torch.Generator]  # one for the batch, or one per row


@dataclass
class SpeculativeConfig:
    draft_length: int = 4
    relaxed_k: int = 0  # latent neighbours per code considered by relaxed acceptance
    relaxed_delta: float = 0.0  # mass a neighbour run may add; 0 (and no lambda) is standard sampling
    relaxed_lambda: float | None = None  # LANTERN++: the run adds at most (lambda - 1) p(x); replaces delta
    relaxed_residual: Literal["lantern", "standard"] = "lantern"  # after a relaxed rejection
    relaxed_space: Literal["embedding", "lookup"] = "embedding"  # where neighbours are measured

    def __post_init__(self) -> None:
        if self.draft_length < 1:
            raise ValueError(f"draft_length must be >= 1, got {self.draft_length}")
        if self.relaxed_k < 0 or not 0 <= self.relaxed_delta <= 1:
            raise ValueError("relaxed_k must be >= 0 and relaxed_delta in [0, 1]")
        if self.relaxed_lambda is not None and self.relaxed_lambda < 1:
            raise ValueError(f"relaxed_lambda must be >= 1, got {self.relaxed_lambda}")
        if self.relaxed_residual not in ("lantern", "standard") or self.relaxed_space not in (
            "embedding",
            "lookup",
        ):
            raise ValueError("relaxed_residual is lantern or standard, relaxed_space embedding or lookup")

    @property
    def relaxed(self) -> bool:
        return self.relaxed_k > 0 and (self.relaxed_delta > 0 or self.relaxed_lambda is not None)


def code_neighbours(codebook: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """Code vectors (V, D) -> ids (V, k) of each code's k nearest other codes, nearest first.

    Pass the raw code embeddings (LANTERN's space) or the vectors the quantiser compares
    (l2-normalised ones for an l2 codebook)."""
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


def neighbour_run(
    p: torch.Tensor, x: torch.Tensor, neighbours: torch.Tensor | None, delta: float, lam: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """p(x) plus the mass of x's longest nearest-first neighbour run within the budget (``delta``,
    or (lam - 1) p(x) when ``lam`` is set), and whether the run absorbed any neighbour.

    p (N, V), x (N,), neighbours (V, K) -> (mass (N,), absorbed (N,) bool)."""
    px = p.gather(1, x[:, None])[:, 0]
    if neighbours is None or (delta <= 0 and lam is None):
        return px, torch.zeros_like(px, dtype=torch.bool)
    budget = (lam - 1) * px if lam is not None else torch.full_like(px, delta)
    run = p.gather(1, neighbours[x]).cumsum(1)  # (N, K): mass of the first j+1 neighbours
    within = run <= budget[:, None]
    return px + torch.where(within, run, torch.zeros_like(run)).amax(1), within.any(1)


def relaxed_mass(
    p: torch.Tensor, x: torch.Tensor, neighbours: torch.Tensor | None, delta: float, lam: float | None
) -> torch.Tensor:
    """The aggregated mass of :func:`neighbour_run`, p (N, V), x (N,) -> (N,)."""
    return neighbour_run(p, x, neighbours, delta, lam)[0]


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


def guided_by_index(outputs: torch.Tensor, scales: torch.Tensor, index: torch.Tensor, guided: bool):
    """[cond; uncond] outputs (2B, Lq, ...) predicting token indices ``index`` (B, Lq) -> guided
    (B, Lq, ...) with each token's scale; unguided outputs are returned as they are."""
    if not guided:
        return outputs
    weight = scales[index].view(*index.shape, *[1] * (outputs.ndim - 2))  # (B, Lq, 1...)
    return guide(outputs, weight)


class ModelDrafter:
    """Drafts with a small generator of its own (it re-reads the last two tokens each round)."""

    def __init__(self, draft, condition: Condition, sampling: SamplingConfig, extra: int):
        self.rows = GuidedRows(draft, condition, sampling, extra)
        self.scales = guidance_scales(sampling, draft.config.num_tokens, extra, draft.output.weight.device)

    def __enter__(self) -> ModelDrafter:
        self.rows.__enter__()
        self.rows.prefill()
        return self

    def __exit__(self, *exc) -> None:
        self.rows.__exit__(*exc)

    def propose(self, out, features, n, k, pick, sampling, masks) -> tuple[torch.Tensor, torch.Tensor]:
        """k drafts (B, k) after the first n tokens of each row of ``out``, and their
        distributions (B, k, V), restricted by ``masks`` (:class:`RoundMasks`)."""
        index = n[:, None] + torch.arange(-2, 0, device=n.device)  # (B, 2)
        tokens = out.gather(1, index)
        drafted, q = [], []
        for _ in range(k):
            logits = self.rows.advance(tokens, index)[0]
            logits = guided_by_index(logits, self.scales, index + 1, self.rows.guided)
            q.append(probabilities(masks(logits[:, -1]), sampling))  # (B, V)
            drafted.append(pick(q[-1]))
            masks.advance(drafted[-1])
            tokens, index = drafted[-1][:, None], index[:, -1:] + 1
        return torch.stack(drafted, 1), torch.stack(q, 1)


class HeadDrafter:
    """Drafts with a :class:`~argen.models.draft_head.DraftHead` on the target's features: each
    round re-reads the last k+1 tokens with the target's features (the accepted ones replace
    the head's own predictions), then feeds its predicted features forward."""

    def __init__(self, head, condition: Condition, sampling: SamplingConfig, extra: int):
        self.head, self.sampling, self.batch, self.extra = head, sampling, len(condition), extra
        self.scales = guidance_scales(sampling, head.config.num_tokens, extra, head.fc.weight.device)

    def __enter__(self) -> HeadDrafter:
        rows = 2 * self.batch if self.sampling.guided else self.batch
        self.head.setup_cache(rows, self.head.config.num_tokens + self.extra)
        return self

    def __exit__(self, *exc) -> None:
        self.head.clear_cache()

    def double(self, t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t, t]) if self.sampling.guided else t

    def propose(self, out, features, n, k, pick, sampling, masks) -> tuple[torch.Tensor, torch.Tensor]:
        index = (n[:, None] - k - 1 + torch.arange(k + 1, device=n.device)).clamp_min(0)  # (B, k+1)
        rows = self.double(index)
        feats = features.gather(1, rows[..., None].expand(-1, -1, features.shape[-1]))  # (B', k+1, D)
        tokens = self.double(out.gather(1, index))
        drafted, q = [], []
        for _ in range(k):
            predicted, logits = self.head.forward_cached(feats, tokens, rows)
            logits = guided_by_index(logits[:, -1:], self.scales, index[:, -1:] + 1, sampling.guided)
            q.append(probabilities(masks(logits[:, 0]), sampling))  # (B, V)
            drafted.append(pick(q[-1]))
            masks.advance(drafted[-1])
            index = index[:, -1:] + 1
            feats, tokens, rows = predicted[:, -1:], self.double(drafted[-1][:, None]), self.double(index)
        return torch.stack(drafted, 1), torch.stack(q, 1)


def drafter_for(draft: torch.nn.Module, condition: Condition, sampling: SamplingConfig, extra: int):
    """The drafter of a draft model (its own KV cache) or of a draft head (the target's features)."""
    kind = HeadDrafter if isinstance(draft, DraftHead) else ModelDrafter
    return kind(draft, condition, sampling, extra)


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


def speculate(out: torch.Tensor, length: int, k: int, round: Callable, stop_token: int | None = None) -> dict:
    """The rounds both speculative samplers share. ``out`` (B, length + extra, ...) holds each
    row's first two tokens; ``round(n)`` drafts after the first n (B,) tokens of each row,
    verifies and returns (accepted drafts m (B,), the k + 1 new tokens (B, k + 1, ...) whose
    first m + 1 are kept). Rows advance by different amounts until every row is full, or
    has kept ``stop_token``.
    -> stats: ``target_calls`` (verification passes), ``row_calls`` (passes summed over
    unfinished rows), ``tokens`` and ``tokens_per_call`` (mean tokens a row gains per pass)."""
    batch, device = out.shape[0], out.device
    rows, steps = torch.arange(batch, device=device)[:, None], torch.arange(k + 1, device=device)
    n = torch.full((batch,), min(length, 2), device=device)
    stats = {"target_calls": 0, "row_calls": 0, "tokens": 0}
    while bool((n < length).any()) and not stopped(out[:, :length], n, stop_token):
        m, new = round(n)
        out[rows, n[:, None] + steps] = new
        n, active, gained = advance(n, m, length)
        for key, value in zip(stats, (1, active, gained)):
            stats[key] += value
    return stats | {"tokens_per_call": stats["tokens"] / max(stats["row_calls"], 1)}


def stopped(out: torch.Tensor, n: torch.Tensor, stop_token: int | None) -> bool:
    """Whether every row has kept ``stop_token`` among its first n (B,) ids of ``out`` (B, L)."""
    if stop_token is None:
        return False
    kept = torch.arange(out.shape[1], device=out.device) < n[:, None]  # (B, L)
    return bool(((out == stop_token) & kept).any(1).all())


def target_token(
    p: torch.Tensor,
    q: torch.Tensor,
    m: torch.Tensor,
    k: int,
    pick,
    greedy: bool,
    unseen: torch.Tensor | None = None,
):
    """The target's own token after m (B,) accepted drafts: from p (B, k+1, V) after k accepts,
    else from the residual max(p - q, 0) at the first rejection (greedy: p's top token), with q
    zeroed where ``unseen`` (B, V) is set (LANTERN's residual). A residual of zero mass (p <= q
    everywhere, which a relaxed rejection can reach) falls back to p, where LANTERN falls back to
    the uniform distribution: argen never draws a token the target gives no mass."""
    rows = torch.arange(len(m), device=m.device)
    p_m, q_m = p[rows, m], q[rows, m.clamp(max=k - 1)]
    if unseen is not None:
        q_m = q_m.masked_fill(unseen, 0.0)
    residual = (p_m - q_m).clamp_min(0)
    norm = residual.sum(-1, keepdim=True)
    residual = torch.where(norm > 0, residual / norm.clamp_min(1e-30), p_m)
    return pick(p_m if greedy else torch.where((m == k)[:, None], p_m, residual))


class Verifier:
    """One speculative round on ids: the drafter proposes k tokens, the target reads the last
    token and the drafts in one cached pass, each row keeps its longest accepted prefix plus
    the target's own token. Keeps the target's last-block features per guided row (H_j at the
    position predicting token j) for draft heads."""

    def __init__(self, big: GuidedRows, drafter, spec: SpeculativeConfig, sampling, pick, generators, syntax):
        self.big, self.drafter, self.spec, self.sampling = big, drafter, spec, sampling
        self.pick, self.generators, self.syntax = pick, generators, syntax
        self.neighbours = None  # (V, k + 1) nearest codes of each code, when relaxed
        self.length, extra = big.model.config.num_tokens, 2 * spec.draft_length + 1
        self.scales = guidance_scales(sampling, self.length, extra, pick.device)

    def logits(self, outputs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return guided_by_index(outputs, self.scales, index, self.big.guided)

    def start(self, out: torch.Tensor, length: int) -> None:
        """The target's first two tokens (so every row has two tokens to feed a draft model)."""
        zero = torch.zeros(self.big.batch, 1, dtype=torch.long, device=out.device)
        masks = RoundMasks(self.syntax, torch.full((self.big.batch,), length - 1))
        outputs, first = self.big.prefill()
        out[:, 0] = self.pick(probabilities(masks(self.logits(outputs, zero)[:, -1]), self.sampling))
        masks.advance(out[:, 0])
        self.features = first.new_zeros(len(self.big.rows), out.shape[1] + 1, first.shape[-1])
        self.features[:, 0] = first[:, -1]
        if length > 1:
            outputs, step = self.big.advance(out[:, :1], zero)
            out[:, 1] = self.pick(probabilities(masks(self.logits(outputs, zero + 1)[:, -1]), self.sampling))
            masks.advance(out[:, 1])
            self.features[:, 1] = step[:, -1]
        self.syntax = masks.fork  # the rows' states past their first two tokens

    def __call__(self, out: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, spec, batch = self.spec.draft_length, self.spec, len(n)
        # k drafts (B, k) and their distributions (B, k, V)
        masks = RoundMasks(self.syntax, self.length - n - 1)
        drafted, q = self.drafter.propose(out, self.features, n, k, self.pick, self.sampling, masks)
        verify = torch.cat([out.gather(1, n[:, None] - 1), drafted], 1)  # (B, k+1)
        index = n[:, None] - 1 + torch.arange(k + 1, device=n.device)
        outputs, verified = self.big.advance(verify, index)
        p = probabilities(masks.target(self.logits(outputs, index + 1)), self.sampling)  # (B, k+1, V)
        self.features.scatter_(1, self.big.double(index + 1)[..., None].expand_as(verified), verified)
        flat_p, flat_x = p[:, :k].flatten(0, 1), drafted.flatten()  # (B*k, V), (B*k,)
        near = None if self.neighbours is None else self.neighbours[:, : spec.relaxed_k]
        mass, absorbed = neighbour_run(flat_p, flat_x, near, spec.relaxed_delta, spec.relaxed_lambda)
        mass, absorbed = mass.view(batch, k), absorbed.view(batch, k)
        u = uniform(self.generators, batch, k, device=n.device)
        if self.sampling.temperature == 0:
            accept = mass >= p[:, :k].amax(-1)
        else:
            accept = u * q.gather(2, drafted[..., None])[..., 0] <= mass
        m = accept.long().cumprod(1).sum(1)  # (B,) accepted drafts
        final = target_token(
            p, q, m, k, self.pick, self.sampling.temperature == 0, self.unseen(drafted, absorbed, m)
        )
        new = torch.cat([drafted, final[:, None]], 1).scatter(1, m[:, None], final[:, None])  # (B, k+1)
        if self.syntax is not None:
            self.syntax.walk(new, m + 1)
        return m, new

    def unseen(self, drafted: torch.Tensor, absorbed: torch.Tensor, m: torch.Tensor) -> torch.Tensor | None:
        """LANTERN's residual: where a rejected draft had absorbed neighbours, its k + 1 nearest
        codes (B, V) are taken out of q."""
        if self.neighbours is None or self.spec.relaxed_residual != "lantern":
            return None
        rows, at = torch.arange(len(m), device=m.device), m.clamp(max=self.spec.draft_length - 1)
        codes = self.neighbours[drafted[rows, at]]  # (B, k+1)
        mask = torch.zeros(len(m), self.neighbours.shape[0], dtype=torch.bool, device=m.device)
        return mask.scatter(1, codes, True) & absorbed[rows, at][:, None]


class Picker:
    """Draws one token per row from probabilities (B, V): Gumbel-max with the row's uniforms, or
    the top token when greedy."""

    def __init__(self, generators: Generators, batch: int, greedy: bool, device: torch.device):
        self.generators, self.batch, self.greedy, self.device = generators, batch, greedy, device

    def __call__(self, probs: torch.Tensor) -> torch.Tensor:
        u = uniform(self.generators, self.batch, probs.shape[-1], device=self.device)
        return probs.argmax(-1) if self.greedy else draw(probs, u)


@dataclass
class DraftRules:
    """What bounds a speculative call besides its settings: ``neighbours`` (V, K) from
    :func:`code_neighbours` enable relaxed acceptance (K >= ``relaxed_k`` + 1 for LANTERN's
    residual); a ``syntax`` constraint (byte streams) masks draft and target alike, so the ids
    follow the masked target exactly; rows stop once all have kept ``stop_token``."""

    neighbours: torch.Tensor | None = None
    syntax: TokenConstraint | None = None
    stop_token: int | None = None


@torch.no_grad()
def sample_speculative(
    target: torch.nn.Module,
    draft: torch.nn.Module,
    condition: Condition,
    sampling: SamplingConfig,
    spec: SpeculativeConfig,
    generators: Generators,
    rules: DraftRules | None = None,
) -> tuple[torch.Tensor, dict]:
    """Generate ``target.config.num_tokens`` ids per condition row -> (ids (B, L), stats of
    :func:`speculate`); ``rules`` (:class:`DraftRules`) add relaxed acceptance, a syntax and a
    stop token. What follows a row's stop token is left unspecified."""
    rules = rules or DraftRules()
    neighbours, syntax, stop_token = rules.neighbours, rules.syntax, rules.stop_token
    if (target.config.vocab_size, target.config.num_tokens) != (
        draft.config.vocab_size,
        draft.config.num_tokens,
    ):
        raise ValueError("draft and target must share the tokenizer (vocabulary and grid)")
    k, length, batch = spec.draft_length, target.config.num_tokens, len(condition)
    extra = 2 * k + 1  # scratch positions past the grid for rows that run ahead
    device = target.output.weight.device
    pick = Picker(generators, batch, sampling.temperature == 0, device)
    big = GuidedRows(target, condition, sampling, extra)
    with big, drafter_for(draft, condition, sampling, extra) as drafter:
        rows = syntax.begin(batch) if syntax is not None else None
        verifier = Verifier(big, drafter, spec, sampling, pick, generators, rows)
        if spec.relaxed and neighbours is not None:
            verifier.neighbours = neighbours[:, : spec.relaxed_k + 1]
        out = torch.zeros(batch, length + extra, dtype=torch.long, device=device)
        verifier.start(out, length)
        stats = speculate(out, length, k, lambda n: verifier(out, n), stop_token)
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
            self.neighbours = code_neighbours(codebook, min(config.relaxed_k + 1, codebook.shape[0] - 1))

    def __call__(
        self,
        target,
        condition: Condition,
        sampling: SamplingConfig,
        generator: Generators,
        syntax: TokenConstraint | None = None,
        stop_token: int | None = None,
    ):
        rules = DraftRules(self.neighbours, syntax, stop_token)
        ids, stats = sample_speculative(
            target, self.draft, condition, sampling, self.config, generator, rules
        )
        self.record(stats)
        return ids
