"""Turning logits into tokens: logits processors (guidance, masks of ids that may not come
next), then temperature, top-k, top-p and seeded multinomial draws."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from argen.sampling.config import SamplingConfig
from argen.sampling.guidance import guide

# guided logits (B, n, V) of sequence positions start.. -> ids (B, n)
TokenPick = Callable[[torch.Tensor, int], torch.Tensor]
# the logits (B', V) predicting token ``index`` -> processed logits (guided: B rows)
LogitsProcessor = Callable[[torch.Tensor, int], torch.Tensor]


class Guidance:
    """Classifier-free guidance: [conditional; unconditional] rows (2B, V) -> (B, V), weighted
    by the config's schedule at each token of a sequence of ``length``."""

    def __init__(self, config: SamplingConfig, length: int):
        self.config, self.length = config, length

    def __call__(self, logits: torch.Tensor, index: int) -> torch.Tensor:
        return guide(logits, self.config.scale_at(index, self.length))


class NeverDrawn:
    """An id that is never drawn (byte streams' padding: it is only filled in after the stop)."""

    def __init__(self, token: int):
        self.token = token

    def __call__(self, logits: torch.Tensor, index: int) -> torch.Tensor:
        logits[:, self.token] = float("-inf")
        return logits


class AllowedIds:
    """A syntax constraint's rows (:class:`~argen.sampling.next_token.ConstrainedRows`): only
    the ids that keep each row valid, with the tokens left before a sequence of ``length``
    ends."""

    def __init__(self, rows, length: int):
        self.rows, self.length = rows, length

    def __call__(self, logits: torch.Tensor, index: int) -> torch.Tensor:
        allowed = self.rows.allowed(self.length - index - 1, logits.device)  # (B, V)
        return logits.masked_fill(~allowed, float("-inf"))


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set logits outside the top-k / nucleus top-p set to -inf. logits: (..., V)."""
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (..., 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        # drop a token once the tokens before it hold more than top_p (LlamaGen's rule: ties at
        # exactly top_p are kept), so the token that crosses top_p stays
        remove = F.pad(cum[..., :-1] > top_p, (1, 0), value=False)
        logits = logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
    return logits


def sample_logits(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one id per row of ``logits`` (B, V) -> (B,). Temperature 0 means greedy."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = filter_logits(logits / temperature, top_k, top_p).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


class RandomTokens:
    """The usual :data:`TokenPick`: temperature, top-k, top-p and a seeded multinomial draw."""

    def __init__(self, config: SamplingConfig, generator: torch.Generator | None = None):
        self.config, self.generator = config, generator

    def __call__(self, logits: torch.Tensor, start: int) -> torch.Tensor:
        c = self.config
        ids = sample_logits(logits.flatten(0, 1), c.temperature, c.top_k, c.top_p, self.generator)
        return ids.view(logits.shape[:2])  # (B, n)


class GroupedTokens(RandomTokens):
    """The :data:`TokenPick` of tokens of several ids (bit groups, the tokens of one shuffled
    window): guided logits (B, n, groups * classes) -> ids (B, n, groups), each group drawn
    from its own softmax with the run's temperature, top-k and top-p."""

    def __init__(self, config: SamplingConfig, generator: torch.Generator | None, groups: int):
        super().__init__(config, generator)
        self.groups = groups

    def __call__(self, logits: torch.Tensor, start: int) -> torch.Tensor:
        b, n, _ = logits.shape
        per_group = logits.view(b, n * self.groups, -1)  # (B, n * groups, classes)
        return super().__call__(per_group, start).view(b, n, self.groups)
