"""Continuous speculative decoding (CSpD-style) for next-token generators with flow heads.

Tokens are drawn with the heads' SDE sampler (``flow_solver: sde``), whose steps are Gaussian
transitions, so a token's whole sampling path has a density under each model. The draft
proposes ``draft_length`` tokens, recording their paths; the target reads them in one
forward pass and scores each path with its own transitions evaluated along the draft's path
(the two models are aligned on one trajectory, as CSpD aligns them). A drafted token is
accepted with probability min(1, P(path) / Q(path)). At the first rejection the token is
redrawn from the residual max(P - Q, 0) by acceptance-rejection: target paths are proposed
and kept with probability 1 - Q/P, at most ``max_tries`` times (a row that exhausts them
keeps the last proposal, counted in ``fallbacks``: the only departure from the target's
distribution). After ``draft_length`` accepts the target draws one more token itself.

Unlike plain SDE sampling, which ends at its last step's mean, the paths here keep the last
step's noise: that step's Gaussian density is what makes the final token's law comparable
between the two models. Temperature scales every step's noise in both models' densities.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from argen.models.llama import Condition
from argen.sampling.config import SamplingConfig
from argen.sampling.decode import GuidedRows
from argen.sampling.flow import flow_velocity, path_log_density, sample_sde_path
from argen.sampling.speculative import Generators, SpeculationTotals, guidance_scales, speculate, uniform


@dataclass
class ContinuousSpeculativeConfig:
    draft_length: int = 4
    max_tries: int = 32  # residual proposals per rejected token

    def __post_init__(self) -> None:
        if self.draft_length < 1 or self.max_tries < 1:
            raise ValueError("draft_length and max_tries must be >= 1")


def gaussian(generators: Generators, rows: int, *shape: int, device: torch.device) -> torch.Tensor:
    """Standard normals (rows, *shape): one stream for the batch, or each row from its own."""
    if isinstance(generators, torch.Generator):
        return torch.randn(rows, *shape, generator=generators, device=device)
    return torch.stack([torch.randn(*shape, generator=g, device=device) for g in generators])


class PathSampler:
    """One model's head: draws tokens with their SDE paths, and scores paths."""

    def __init__(self, model, sampling: SamplingConfig, generators: Generators, batch: int):
        self.model, self.sampling, self.generators, self.batch = model, sampling, generators, batch

    def velocity(self, z: torch.Tensor, scales: torch.Tensor):
        """z (B', n, D) with per-token guidance ``scales`` (B, n)."""
        s = self.sampling
        return flow_velocity(self.model.head, z, s.guided, scales, s.cfg_noise_interval)

    def subset(self, rows: torch.Tensor) -> PathSampler:
        """The same head drawing for ``rows`` (b,) only (their own streams, if per row)."""
        generators = self.generators
        if not isinstance(generators, torch.Generator):
            generators = [generators[i] for i in rows.tolist()]
        return PathSampler(self.model, self.sampling, generators, len(rows))

    def draw(self, z: torch.Tensor, scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens for z (B', n, D) -> (path (K+1, B, n, d) ending at the tokens, means (K, B, n, d))."""
        s, shape = self.sampling, (z.shape[1], self.model.config.token_dim)
        start = gaussian(self.generators, self.batch, *shape, device=z.device)  # MAR: unscaled
        normal = lambda: gaussian(self.generators, self.batch, *shape, device=z.device)  # noqa: E731
        return sample_sde_path(
            self.velocity(z, scales), start, s.flow_steps, s.flow_noise, normal, s.temperature
        )

    def log_density(
        self, path: torch.Tensor, z: torch.Tensor, scales: torch.Tensor, means: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Log density (B, n) of paths (K+1, B, n, d) under this model, up to a shared constant;
        ``means`` (K, B, n, d): this model's step means along the path, when ``draw`` made it."""
        s = self.sampling
        return path_log_density(self.velocity(z, scales), path, s.flow_noise, means, s.temperature)


def draw_residual(
    p_head: PathSampler,
    q_head: PathSampler,
    z_p: torch.Tensor,
    z_q: torch.Tensor,
    scales: torch.Tensor,
    plain: torch.Tensor,
    max_tries: int,
) -> tuple[torch.Tensor, int]:
    """One target token per row from the residual max(P - Q, 0) by acceptance-rejection (or
    from P itself where ``plain`` (B,)), given both models' z (B', 1, D) and ``scales`` (B, 1):
    target paths are proposed to the rows still waiting and kept with probability 1 - Q/P.
    -> (tokens (B, 1, d), rows that kept their last proposal after ``max_tries``)."""
    batch, device = len(plain), z_p.device
    final = torch.zeros(batch, 1, p_head.model.config.token_dim, device=device)
    need = torch.ones(batch, dtype=torch.bool, device=device)
    for attempt in range(max_tries):
        idx = need.nonzero()[:, 0]  # (b,) rows still waiting
        pick = torch.cat([idx, idx + batch]) if p_head.sampling.guided else idx  # (b',)
        p_rows, q_rows = p_head.subset(idx), q_head.subset(idx)
        path, means = p_rows.draw(z_p[pick], scales[idx])  # (K+1, b, 1, d)
        log_q_over_p = q_rows.log_density(path, z_q[pick], scales[idx]) - p_rows.log_density(
            path, z_p[pick], scales[idx], means
        )  # (b, 1)
        u = uniform(p_rows.generators, len(idx), device=device)  # (b,)
        keep = plain[idx] | (
            u.log() <= torch.log1p(-log_q_over_p[:, 0].clamp(max=0).exp().clamp(max=1 - 1e-12))
        )
        if attempt == max_tries - 1:
            final[idx] = path[-1]
            return final, int((~keep).sum())
        final[idx[keep]] = path[-1][keep]
        need[idx[keep]] = False
        if not bool(need.any()):
            break
    return final, 0


class PathVerifier:
    """One continuous speculative round: the draft proposes k tokens with their SDE paths
    (re-reading the last two tokens first), the target reads the last token and the drafts in
    one cached pass and scores the paths, and each row keeps its longest accepted prefix plus
    one target token (from the residual after a rejection)."""

    def __init__(self, big: GuidedRows, small: GuidedRows, p_head: PathSampler, q_head: PathSampler, spec):
        self.big, self.small, self.p_head, self.q_head, self.spec = big, small, p_head, q_head, spec
        self.fallbacks = 0

    def start(self, out: torch.Tensor, length: int, scales: torch.Tensor) -> None:
        """The target's first two tokens (so every row has two tokens to feed the draft)."""
        self.scales = scales
        first = torch.zeros(len(out), 1, dtype=torch.long, device=out.device)
        out[:, :1] = self.p_head.draw(self.big.prefill()[0], scales[first])[0][-1]
        self.small.prefill()
        if length > 1:
            out[:, 1:2] = self.p_head.draw(self.big.advance(out[:, :1], first)[0], scales[first + 1])[0][-1]

    def propose(self, out: torch.Tensor, n: torch.Tensor):
        """k drafts after the first n (B,) tokens -> (the draft's z (B', k, D), paths (K+1, B, k, d),
        its step means along them (K, B, k, d))."""
        index = n[:, None] + torch.arange(-2, 0, device=n.device)  # (B, 2)
        tokens = out[torch.arange(len(n), device=n.device)[:, None], index]  # (B, 2, d)
        z_q, paths, means = [], [], []
        for _ in range(self.spec.draft_length):
            z_q.append(self.small.advance(tokens, index)[0][:, -1:])  # (B', 1, D)
            path, step_means = self.q_head.draw(z_q[-1], self.scales[index[:, -1:] + 1])
            paths.append(path)
            means.append(step_means)
            tokens, index = path[-1], index[:, -1:] + 1
        return torch.cat(z_q, 1), torch.cat(paths, 2), torch.cat(means, 2)

    def __call__(self, out: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, batch, device = self.spec.draft_length, len(n), n.device
        rows = torch.arange(batch, device=device)
        z_q, paths, q_means = self.propose(out, n)
        drafted = paths[-1]  # (B, k, d)
        index = n[:, None] - 1 + torch.arange(k + 1, device=device)  # (B, k+1)
        z_p = self.big.advance(torch.cat([out[rows, n - 1][:, None], drafted], 1), index)[0]  # (B', k+1, D)
        token_scales = self.scales[index + 1]  # (B, k+1): the guidance of each predicted token
        log_ratio = self.p_head.log_density(paths, z_p[:, :k], token_scales[:, :k]) - self.q_head.log_density(
            paths, z_q, token_scales[:, :k], q_means
        )  # (B, k)
        u = uniform(self.p_head.generators, batch, k, device=device)
        m = (u.log() <= log_ratio).long().cumprod(1).sum(1)  # (B,) accepted drafts
        # the target's own token: after k accepts a plain draw, else one from the residual
        m_rows = self.big.double(m)  # (B',) the same position in the [cond; uncond] rows
        every = torch.arange(len(m_rows), device=device)
        z_final, z_draft = z_p[every, m_rows][:, None], z_q[every, m_rows.clamp(max=k - 1)][:, None]
        final_scales = token_scales[rows, m][:, None]  # (B, 1)
        final, failed = draw_residual(
            self.p_head, self.q_head, z_final, z_draft, final_scales, m == k, self.spec.max_tries
        )
        self.fallbacks += failed
        new = torch.cat([drafted, final], 1)  # (B, k+1, d)
        new[rows, m] = final[:, 0]
        return m, new


@torch.no_grad()
def sample_continuous_speculative(
    target: torch.nn.Module,
    draft: torch.nn.Module,
    condition: Condition,
    sampling: SamplingConfig,
    spec: ContinuousSpeculativeConfig,
    generators: Generators,
) -> tuple[torch.Tensor, dict]:
    """Generate ``target.config.num_tokens`` tokens per condition row -> (tokens (B, L, d),
    stats of :func:`~argen.sampling.speculative.speculate` and ``fallbacks``)."""
    if sampling.flow_solver != "sde" or sampling.flow_noise <= 0 or sampling.temperature <= 0:
        raise ValueError(
            "continuous speculative decoding needs --flow-solver sde with --flow-noise > 0 and "
            "--temperature > 0: acceptance compares the densities of the heads' Gaussian sampling steps"
        )
    shape = ("token_dim", "num_tokens")
    if any(getattr(target.config, k) != getattr(draft.config, k) for k in shape):
        raise ValueError("draft and target must share the tokenizer (token width and grid)")
    k, length, batch = spec.draft_length, target.config.num_tokens, len(condition)
    extra = 2 * k + 1  # scratch positions past the grid for rows that run ahead
    device = target.output.weight.device
    big, small = GuidedRows(target, condition, sampling, extra), GuidedRows(draft, condition, sampling, extra)
    p_head = PathSampler(target, sampling, generators, batch)
    q_head = PathSampler(draft, sampling, generators, batch)
    with big, small:
        verifier = PathVerifier(big, small, p_head, q_head, spec)
        out = torch.zeros(batch, length + extra, target.config.token_dim, device=device)
        verifier.start(out, length, guidance_scales(sampling, length, extra, device))
        stats = speculate(out, length, k, lambda n: verifier(out, n))
    return out[:, :length], stats | {"fallbacks": verifier.fallbacks}


class ContinuousSpeculation(SpeculationTotals):
    """A continuous draft model with its settings, ready to sample batch after batch."""

    def __init__(self, draft: torch.nn.Module, config: ContinuousSpeculativeConfig):
        super().__init__(("target_calls", "row_calls", "tokens", "fallbacks"))
        self.draft, self.config = draft, config

    def __call__(self, target, condition: Condition, sampling: SamplingConfig, generator: Generators):
        tokens, stats = sample_continuous_speculative(
            target, self.draft, condition, sampling, self.config, generator
        )
        self.record(stats)
        return tokens
