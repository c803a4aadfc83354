"""Generators: the Llama-style decoder and its pluggable pieces."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from argen.checkpoint import CheckpointError, load_model
from argen.models.continuous import (
    ContinuousLlama,
    ContinuousLlamaConfig,
    ContinuousNextScaleConfig,
    ContinuousNextScaleLlama,
)
from argen.models.control import ControlledLlama
from argen.models.distilled import DistilledLlama, DistilledNextScale
from argen.models.draft_head import DraftHead, DraftHeadConfig
from argen.models.llama import Llama, LlamaConfig
from argen.models.next_frame import NextFrameLlama
from argen.models.next_scale import NextScaleConfig, NextScaleLlama
from argen.models.refiner import FineLabelConfig, FineLabelTransformer
from argen.models.var import VARConfig, VARTransformer
from argen.plugins import load_entry_points

MODELS: dict[str, type[nn.Module]] = {}  # every generator class by name (how checkpoints name it)


def register_generator(cls: type[nn.Module]) -> type[nn.Module]:
    """Register a generator class (an ``nn.Module`` with a dataclass ``Config``) so that its
    checkpoints load; a paradigm that brings its own generator registers it beside itself. A
    different class under a taken name is an error."""
    if not isinstance(getattr(cls, "Config", None), type):
        raise TypeError(f"{cls.__name__} needs a dataclass Config (its constructor's argument)")
    if MODELS.get(cls.__name__, cls) is not cls:
        raise ValueError(f"a generator class named {cls.__name__} is already registered")
    MODELS[cls.__name__] = cls
    return cls


for _cls in (
    Llama,
    NextScaleLlama,
    NextFrameLlama,
    VARTransformer,
    FineLabelTransformer,
    ContinuousLlama,
    ContinuousNextScaleLlama,
    DraftHead,
    DistilledLlama,
    DistilledNextScale,
    ControlledLlama,
):
    register_generator(_cls)


def load(path: str | Path) -> nn.Module:
    """Load a generator checkpoint directory (config.json + model.safetensors); every other
    format (official LlamaGen / VAR files) loads with :func:`argen.load`."""
    if Path(path).is_file():
        raise CheckpointError(f"{path} is a file: official checkpoints load with argen.load")
    load_entry_points()  # generators of installed plugins
    return load_model(path, MODELS)


__all__ = [
    "ContinuousLlama",
    "ContinuousLlamaConfig",
    "ContinuousNextScaleConfig",
    "ContinuousNextScaleLlama",
    "ControlledLlama",
    "DistilledLlama",
    "DistilledNextScale",
    "DraftHead",
    "DraftHeadConfig",
    "FineLabelConfig",
    "FineLabelTransformer",
    "MODELS",
    "Llama",
    "LlamaConfig",
    "NextFrameLlama",
    "NextScaleConfig",
    "NextScaleLlama",
    "VARConfig",
    "VARTransformer",
    "load",
    "register_generator",
]
