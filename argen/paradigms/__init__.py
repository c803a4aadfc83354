"""Paradigms: the ways of generating, one module each, registered by name.

A recipe names its paradigm (``paradigm: raster``) or takes its task's default for the
tokenizer's layout; the trained generator records the name and ``sample.py`` reads it. A
paradigm outside the package registers itself with :func:`register_paradigm` (see
``examples/custom_paradigm/``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from argen.checkpoint import CheckpointError, read_config
from argen.paradigms.base import NoOptions, Paradigm, SamplingExtras
from argen.paradigms.byte_stream import ByteStreams
from argen.paradigms.coarse_to_fine import CoarseLabels, FineLabels
from argen.paradigms.continuous import ContinuousRaster, ContinuousScales
from argen.paradigms.control import ControlledRaster
from argen.paradigms.distilled import DistilledRaster, DistilledScales
from argen.paradigms.next_scale import NextScale
from argen.paradigms.options import OptionRun, RunInputs, SampleOption, SpeculationOptions, refuse_unoffered
from argen.paradigms.raster import RasterIds
from argen.paradigms.registry import default_for, get, register_paradigm, registered, unregister_paradigm
from argen.paradigms.video import FramePrompts, NextFrame, VideoTokens
from argen.plugins import ENTRY_POINT_GROUP, import_package_modules, load_plugins

BUILT_IN = tuple(
    register_paradigm(p).name
    for p in (
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
    )
)
PARADIGM_KEY = "_paradigm"  # where a saved generator's config.json records its paradigm


import_package_modules(__name__, __path__)  # a module dropped in here registers its paradigm


def sample_options() -> list[SampleOption]:
    """Every sample.py option a registered paradigm offers, each once, in registration order."""
    options: list[SampleOption] = []
    for paradigm in registered().values():
        options += [o for o in paradigm.sample_options if o not in options]
    return options


def for_recipe(recipe, layout) -> Paradigm:
    """The paradigm that trains ``recipe``: the one it names (``paradigm:``), else its task's
    default for tokens of ``layout``. Whether it serves the tokenizer it prepares is checked by
    the caller (:meth:`Paradigm.require_serves`)."""
    name = getattr(recipe, "paradigm", None)
    if name is None:
        return default_for(recipe.task, layout)
    paradigm = get(name)
    if paradigm.task != recipe.task:
        raise ValueError(f"paradigm {name!r} is trained by task: {paradigm.task}, not task: {recipe.task}")
    return paradigm


def recorded_name(model_dir: str | Path | None) -> str | None:
    """The paradigm name a saved generator records (None: an official file, or a generator saved
    before paradigms were recorded)."""
    if model_dir is None or not (Path(model_dir) / "config.json").is_file():
        return None
    return read_config(model_dir).get(PARADIGM_KEY)


def inferred(model: torch.nn.Module, layout) -> Paradigm | None:
    """The paradigm of a generator whose run is not at hand or records none (official
    checkpoints, runs saved before paradigms were recorded): the built-in one of its class and
    layout, else the only registered paradigm that builds its class for that layout."""
    built_in = [get(name) for name in BUILT_IN]
    found = next((p for p in built_in if type(model) in p.generators and p.serves(layout)), None)
    if found is not None:
        return found
    owners = [p for p in registered().values() if type(model) in p.generators and p.serves(layout)]
    return owners[0] if len(owners) == 1 else None


def for_generator(
    model: torch.nn.Module,
    layout,
    model_dir: str | Path | None = None,
    tokenizer_dir: str | Path | None = None,
) -> Paradigm:
    """The paradigm that samples ``model`` with a tokenizer of ``layout`` (the one its
    ``config.json`` records), after checking that the two fit."""
    name = recorded_name(model_dir)
    paradigm = get(name, Path(model_dir) / "config.json") if name else inferred(model, layout)
    model_name, tokenizer_name = model_dir or "generator", tokenizer_dir or "tokenizer"
    if paradigm is None or type(model) not in paradigm.generators or not paradigm.serves(layout):
        which = f" (paradigm {paradigm.name!r})" if paradigm is not None else ""
        raise CheckpointError(
            f"tokenizer {tokenizer_name} ({layout}) and generator {model_name} ({type(model).__name__}"
            f"{which}) do not fit: no paradigm generates these tokens with this model"
        )
    paradigm.check_pair(model, layout, Path(model_name), Path(tokenizer_name))
    return paradigm


__all__ = [
    "BUILT_IN",
    "ENTRY_POINT_GROUP",
    "FramePrompts",
    "NoOptions",
    "OptionRun",
    "RunInputs",
    "SampleOption",
    "PARADIGM_KEY",
    "Paradigm",
    "SamplingExtras",
    "SpeculationOptions",
    "default_for",
    "for_generator",
    "for_recipe",
    "get",
    "load_plugins",
    "recorded_name",
    "register_paradigm",
    "refuse_unoffered",
    "registered",
    "sample_options",
    "unregister_paradigm",
]
