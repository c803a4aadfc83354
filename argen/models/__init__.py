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

MODELS: dict[str, type[nn.Module]] = {
    "Llama": Llama,
    "NextScaleLlama": NextScaleLlama,
    "NextFrameLlama": NextFrameLlama,
    "VARTransformer": VARTransformer,
    "FineLabelTransformer": FineLabelTransformer,
    "ContinuousLlama": ContinuousLlama,
    "ContinuousNextScaleLlama": ContinuousNextScaleLlama,
    "DraftHead": DraftHead,
    "DistilledLlama": DistilledLlama,
    "DistilledNextScale": DistilledNextScale,
    "ControlledLlama": ControlledLlama,
}


def load(path: str | Path) -> nn.Module:
    """Load a generator checkpoint directory (config.json + model.safetensors); official
    LlamaGen / VAR files load with :func:`argen.convert.load_generator`."""
    if Path(path).is_file():
        raise CheckpointError(f"{path} is a file: official checkpoints load with convert.load_generator")
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
]
