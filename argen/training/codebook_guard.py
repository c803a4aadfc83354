"""Dead-code restarts: a guard against codebook collapse for every vector quantiser of a tokenizer.

Every ``every`` optimizer steps, the codes that no process chose since the last restart are
re-initialised from the encoder outputs of the current step, k-means++ style: each new code is
drawn among those outputs with probability proportional to its squared distance to the nearest
code in use or already placed, so the new codes land where the live ones cover the data worst.
Every process gathers the step's outputs of all processes and draws with the same seeded
generator: all restart the same codes to the same vectors (the weights stay identical under DDP),
and a run on P processes restarts as one process on the same global batch does. The hit counts
since the last restart are the guard's state (checkpointed, so a resumed run restarts exactly as
an uninterrupted one).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from argen.tokenizers.quantizer import VectorQuantizer


def kmeans_plus_plus(
    candidates: torch.Tensor, centres: torch.Tensor, count: int, generator: torch.Generator
) -> torch.Tensor:
    """``count`` rows of ``candidates`` (N, D), each drawn with probability proportional to its
    squared distance to the nearest of ``centres`` (M, D) and of the rows drawn before it."""
    nearest = torch.full((len(candidates),), float("inf"))
    if len(centres):
        nearest = torch.cdist(candidates, centres).pow(2).amin(1)  # (N,)
    chosen = []
    for _ in range(count):
        weights = nearest if torch.isfinite(nearest).all() and nearest.sum() > 0 else torch.ones_like(nearest)
        pick = int(torch.multinomial(weights, 1, generator=generator))
        chosen.append(pick)
        nearest = torch.minimum(nearest, (candidates - candidates[pick]).pow(2).sum(1))
    return candidates[chosen]


def vector_quantizers(model: nn.Module) -> dict[str, VectorQuantizer]:
    """The vector quantisers of ``model`` by module name."""
    return {name or "quantize": m for name, m in model.named_modules() if isinstance(m, VectorQuantizer)}


class CodebookGuard:
    """Restarts the dead codes of every :class:`VectorQuantizer` in ``model``. At each restart it
    logs, per quantiser, the share of codes chosen in the window before it (``<name>/window_usage``,
    all processes) and how many were re-drawn (``<name>/dead_codes``)."""

    def __init__(self, model: nn.Module, every: int, candidates: int, seed: int):
        self.every, self.candidates, self.seed = every, candidates, seed
        self.quantizers = vector_quantizers(model)
        if not self.quantizers:
            raise ValueError(f"{type(model).__name__} has no vector quantiser to guard")
        self.hits = {name: torch.zeros(q.codebook_size) for name, q in self.quantizers.items()}
        for q in self.quantizers.values():
            q.observed = []

    def after_step(self, step: int, accelerator) -> dict[str, float]:
        """Count this step's hits; every ``every`` steps, re-draw the dead codes -> logs."""
        restart = step % self.every == 0
        seen = {}
        for name, q in self.quantizers.items():
            for _, chosen in q.observed:
                self.hits[name] = self.hits[name].to(chosen.device)  # no host sync per step
                self.hits[name] += torch.bincount(chosen, minlength=q.codebook_size)
            seen[name] = torch.cat([flat for flat, _ in q.observed]) if restart and q.observed else None
            q.observed.clear()
        if not restart:
            return {}
        logs, generator = {}, torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        for name, q in self.quantizers.items():
            hits = accelerator.reduce(self.hits[name].to(accelerator.device), "sum").cpu()
            dead = (hits == 0).nonzero()[:, 0]
            logs[f"{name}/window_usage"] = float((hits > 0).float().mean())
            logs[f"{name}/dead_codes"] = float(len(dead))
            if len(dead) and seen[name] is not None:
                self.restart(q, dead, self.pool(seen[name], accelerator, generator), generator)
            self.hits[name].zero_()
        return logs

    def pool(self, vectors: torch.Tensor, accelerator, generator: torch.Generator) -> torch.Tensor:
        """Up to ``candidates`` of this step's vectors of all processes (a seeded choice: the same
        on every process, and the same as one process on the same global batch) -> (n, D), CPU."""
        every = accelerator.gather(vectors.contiguous()).float().cpu()  # (P * N, D), rank order
        return every[torch.randperm(len(every), generator=generator)[: self.candidates]]

    @torch.no_grad()
    def restart(
        self, q: VectorQuantizer, dead: torch.Tensor, pool: torch.Tensor, generator: torch.Generator
    ) -> None:
        """Write k-means++ draws from ``pool`` into the ``dead`` rows of ``q``'s codebook. An
        l2-normalised codebook reads only the rows' directions, but an optimizer's step moves a
        row's direction in inverse proportion to its norm: re-drawn rows get the live rows'
        median norm, so that they move as fast as the live ones."""
        weight = q.embedding.weight
        live = torch.ones(q.codebook_size, dtype=torch.bool)
        live[dead] = False
        new = kmeans_plus_plus(pool, q.codebook().detach().float().cpu()[live], len(dead), generator)
        if q.l2_norm and live.any():
            norm = weight.detach().float().cpu()[live].norm(dim=-1).median()
            new = F.normalize(new, dim=-1) * norm
        weight[dead.to(weight.device)] = new.to(weight)

    def state_dict(self) -> dict:
        return {name: hits.cpu().clone() for name, hits in self.hits.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, hits in state.items():
            self.hits[name] = hits.clone().float()
