"""Classifier-free guidance: the one place where conditional and unconditional predictions
(logits or velocities) are combined. Samplers run the rows [conditional; unconditional] as one
batch of 2B; the guidance weight of each token comes from :class:`SamplingConfig`'s schedule
(``scale_at`` per token, ``scale_weight`` per scale)."""

from __future__ import annotations

import torch


def guide(rows: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """Stacked [conditional; unconditional] rows (2B, ...) -> uncond + scale * (cond - uncond),
    (B, ...). ``scale`` is a float or a tensor that broadcasts against (B, ...), e.g. one weight
    per token (B, n, 1)."""
    cond, uncond = rows.chunk(2)
    return uncond + scale * (cond - uncond)
