"""Visual tokenizers: ``encode(pixels) -> tokens`` and ``decode(tokens) -> pixels``."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from argen.checkpoint import load_model
from argen.tokenizers.coarse_to_fine import CoarseToFineConfig, CoarseToFineVQModel
from argen.tokenizers.frequency import FrequencyVQConfig, FrequencyVQModel
from argen.tokenizers.layout import CoarseToFineLayout, GridLayout, ScaleLayout
from argen.tokenizers.multiscale import MultiScaleVQConfig, MultiScaleVQModel, PyramidVQModel
from argen.tokenizers.vq import VQConfig, VQModel

TOKENIZERS: dict[str, type[nn.Module]] = {
    "VQModel": VQModel,
    "MultiScaleVQModel": MultiScaleVQModel,
    "FrequencyVQModel": FrequencyVQModel,
    "CoarseToFineVQModel": CoarseToFineVQModel,
}


def load(path: str | Path, image_size: int | None = None) -> nn.Module:
    """Load a tokenizer checkpoint directory (config.json + model.safetensors), or an official
    LlamaGen VQ / VAR VQVAE file (``.pt``, ``.pth``; ``image_size`` defaults to the one in its
    name, else 256)."""
    from argen.convert import is_official_file, load_official_tokenizer

    if is_official_file(path):
        return load_official_tokenizer(path, image_size)
    return load_model(path, TOKENIZERS)


__all__ = [
    "CoarseToFineConfig",
    "CoarseToFineLayout",
    "CoarseToFineVQModel",
    "FrequencyVQConfig",
    "FrequencyVQModel",
    "GridLayout",
    "MultiScaleVQConfig",
    "MultiScaleVQModel",
    "PyramidVQModel",
    "ScaleLayout",
    "TOKENIZERS",
    "VQConfig",
    "VQModel",
    "load",
]
