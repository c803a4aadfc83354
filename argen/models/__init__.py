"""Generators: the Llama-style decoder and its pluggable pieces."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from argen.checkpoint import load_model
from argen.models.llama import Llama, LlamaConfig

MODELS: dict[str, type[nn.Module]] = {"Llama": Llama}


def load(path: str | Path) -> nn.Module:
    """Load any saved generator checkpoint directory (config.json + model.safetensors)."""
    return load_model(path, MODELS)


__all__ = ["MODELS", "Llama", "LlamaConfig", "load"]
