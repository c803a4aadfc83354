"""Paradigms: the ways of generating, one module each, looked up by the tokenizer's layout
(and, for training, the variant a recipe asks for; for sampling, the generator's class).

Adding a family: write its module (a :class:`~argen.paradigms.base.Paradigm` subclass) and add
one line to ``PARADIGMS``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from argen.checkpoint import CheckpointError
from argen.paradigms.base import Paradigm, SamplingExtras, SpeculationOptions
from argen.paradigms.byte_stream import ByteStreams
from argen.paradigms.coarse_to_fine import CoarseLabels, FineLabels
from argen.paradigms.continuous import ContinuousRaster, ContinuousScales
from argen.paradigms.control import ControlledRaster
from argen.paradigms.distilled import DistilledRaster, DistilledScales
from argen.paradigms.next_scale import NextScale
from argen.paradigms.raster import RasterIds
from argen.paradigms.video import FramePrompts, NextFrame, VideoTokens

PARADIGMS: list[Paradigm] = [
    RasterIds(),
    ByteStreams(),
    NextScale(),
    CoarseLabels(),
    FineLabels(),
    ContinuousRaster(),
    ContinuousScales(),
    VideoTokens(),
    NextFrame(),
    DistilledRaster(),
    DistilledScales(),
    ControlledRaster(),
]


def requested_variant(recipe) -> str:
    """What a recipe asks for: its task (``generator``, ``refiner``, ``distill``, ``control``)
    or ``next_frame``."""
    return "next_frame" if getattr(recipe, "next_frame", False) else recipe.task


def for_recipe(recipe, layout) -> Paradigm:
    """The paradigm that trains ``recipe`` on tokens of ``layout``."""
    variant = requested_variant(recipe)
    candidates = [p for p in PARADIGMS if p.variant == variant]
    for paradigm in candidates:
        if paradigm.serves(layout):
            return paradigm
    needs = next((p.requirement for p in candidates if p.requirement), f"no {variant} generates {layout}")
    raise ValueError(f"{needs}, not the tokenizer {recipe.tokenizer} ({layout})")


def for_generator(
    model: torch.nn.Module,
    layout,
    model_dir: str | Path = "generator",
    tokenizer_dir: str | Path = "tokenizer",
) -> Paradigm:
    """The paradigm that samples ``model`` with a tokenizer of ``layout``, after checking that
    the two fit."""
    for paradigm in PARADIGMS:
        if type(model) in paradigm.generators and paradigm.serves(layout):
            paradigm.check_pair(model, layout, Path(model_dir), Path(tokenizer_dir))
            return paradigm
    raise CheckpointError(
        f"tokenizer {tokenizer_dir} ({layout}) and generator {model_dir} ({type(model).__name__}) "
        "do not fit: no paradigm generates these tokens with this model"
    )


__all__ = [
    "PARADIGMS",
    "FramePrompts",
    "Paradigm",
    "SamplingExtras",
    "SpeculationOptions",
    "for_generator",
    "for_recipe",
    "requested_variant",
]
