"""Visual tokenizers: ``encode(pixels) -> tokens`` and ``decode(tokens) -> pixels``."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from argen.checkpoint import load_model
from argen.tokenizers.layout import GridLayout
from argen.tokenizers.vq import VQConfig, VQModel

TOKENIZERS: dict[str, type[nn.Module]] = {"VQModel": VQModel}


def load(path: str | Path) -> nn.Module:
    """Load any saved tokenizer checkpoint directory (config.json + model.safetensors)."""
    return load_model(path, TOKENIZERS)


__all__ = ["GridLayout", "TOKENIZERS", "VQConfig", "VQModel", "load"]
