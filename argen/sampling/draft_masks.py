"""Syntax masks inside a speculative round (byte streams). Each row's syntax state is forked and
walked along its drafts, so at every drafted position the draft's and the target's logits lose
the same ids; speculative sampling between the two masked distributions then draws exactly
from the masked target, as constrained next-token sampling does."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from argen.sampling.next_token import ConstrainedRows


class RoundMasks:
    """The masks of one round: ``__call__`` masks the logits (B, V) of the next drafted
    position and remembers the mask, ``advance`` moves past the drafted ids (B,),
    ``target`` masks the target's logits (B, k + 1, V) at the drafts and after the last."""

    def __init__(self, rows: ConstrainedRows | None, remaining: torch.Tensor):
        self.fork = rows.fork() if rows is not None else None
        self.remaining = remaining  # (B,) positions left after the next id
        self.masks: list[torch.Tensor] = []

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if self.fork is None:
            return logits
        allowed = self.fork.allowed(self.remaining.clamp_min(0), logits.device)  # (B, V)
        self.masks.append(allowed)
        return logits.masked_fill(~allowed, float("-inf"))

    def advance(self, tokens: torch.Tensor) -> None:
        if self.fork is not None:
            self.fork.advance(tokens)
            self.remaining = self.remaining - 1

    def target(self, logits: torch.Tensor) -> torch.Tensor:
        if self.fork is None:
            return logits
        self(logits[:, -1])  # the mask after the last draft
        return logits.masked_fill(~torch.stack(self.masks, 1), float("-inf"))  # (B, k+1, V)


@dataclass(frozen=True)
class ExcludedIds:
    """A constraint that only removes fixed ids (byte streams' padding) from every row."""

    keep: torch.Tensor  # (V,) bool
    rows: int = 0

    @classmethod
    def of(cls, vocab_size: int, ids: list[int]) -> ExcludedIds:
        keep = torch.ones(vocab_size, dtype=torch.bool)
        keep[ids] = False
        return cls(keep)

    def begin(self, rows: int) -> ExcludedIds:
        return replace(self, rows=rows)

    def allowed(self, remaining, device: torch.device | None = None) -> torch.Tensor:
        return self.keep.to(device).expand(self.rows, -1)  # (B, V)

    def fork(self) -> ExcludedIds:
        return self

    def advance(self, tokens: torch.Tensor) -> None:
        """Nothing to track."""

    def walk(self, tokens: torch.Tensor, counts: torch.Tensor) -> None:
        """Nothing to track."""
