"""Two-stage coarse-to-fine sampling (CTF): coarse labels token by token, then every fine id
at once from the fine-label model, each among the codes of its cluster."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from argen.models.llama import Condition
from argen.sampling.config import SamplingConfig
from argen.sampling.guidance import guide
from argen.sampling.logits import sample_logits
from argen.sampling.next_token import NextTokenOptions, sample_next_token


@torch.no_grad()
def sample_coarse_to_fine(
    model: torch.nn.Module,
    refiner: torch.nn.Module,
    condition: Condition,
    config: SamplingConfig,
    fine_temperature: float = 1.0,
    generator: torch.Generator | None = None,
    compile: bool = False,
) -> torch.Tensor:
    """Condition rows (class ids (B,) or a Caption) -> fine ids (B, L).

    Stage 1 is :func:`sample_next_token` over coarse labels with ``config``; stage 2 runs the
    fine-label model once, guided with ``config.cfg_scale`` on the same rows, and draws each
    fine id at ``fine_temperature`` (0: the most likely code of the cluster)."""
    coarse = sample_next_token(
        model, condition, config, generator, NextTokenOptions(compile=compile)
    )  # (B, L)
    if config.guided:
        logits = refiner(coarse.repeat(2, 1), refiner.with_null(condition))  # (2B, L, V)
        outside = ~logits[: len(coarse)].isfinite()  # both halves share the clusters
        logits = guide(logits.nan_to_num(neginf=0.0), config.cfg_scale).masked_fill(outside, float("-inf"))
    else:
        logits = refiner(coarse, condition)
    flat = sample_logits(logits.flatten(0, 1), fine_temperature, 0, 1.0, generator)  # (B*L,)
    return flat.view_as(coarse)


@dataclass
class Refinement:
    """A fine-label model and its settings, sampling batch after batch (a ``GridSampler``)."""

    refiner: torch.nn.Module
    fine_temperature: float = 1.0
    compile: bool = False

    def __call__(
        self, model: torch.nn.Module, condition: Condition, config: SamplingConfig, generator: torch.Generator
    ) -> torch.Tensor:
        return sample_coarse_to_fine(
            model, self.refiner, condition, config, self.fine_temperature, generator, self.compile
        )
