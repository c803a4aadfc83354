"""Loaders for official checkpoints of other systems (LlamaGen, VAR), as files or converted, and
:func:`load_generator` / :func:`load_tokenizer`, which take either those files or argen's own
checkpoint directories."""

from __future__ import annotations

from pathlib import Path

import torch

from argen.convert.llamagen import (
    gpt_from_llamagen,
    gpt_to_llamagen,
    image_size_of,
    load_official_state,
    model_of,
    vq_from_llamagen,
)
from argen.convert.var import vae_from_var, var_from_official

OFFICIAL_SUFFIXES = (".pt", ".pth")


def is_official_file(path: str | Path) -> bool:
    return Path(path).is_file() and Path(path).suffix in OFFICIAL_SUFFIXES


def load_official_generator(path: str | Path, image_size: int | None = None) -> torch.nn.Module:
    """An official LlamaGen GPT or VAR transformer file as an argen model; a GPT's size and
    image size are read from its name (``c2i_B_384.pt``) where the weights leave them open."""
    state = load_official_state(path)
    if "word_embed.weight" in state:  # a VAR transformer
        return var_from_official(state)
    return gpt_from_llamagen(state, model_of(path), image_size=image_size or image_size_of(path))


def load_official_tokenizer(path: str | Path, image_size: int | None = None) -> torch.nn.Module:
    """An official LlamaGen VQ or VAR VQVAE file as an argen tokenizer (image size as for
    :func:`load_official_generator`)."""
    state, size = load_official_state(path), image_size or image_size_of(path)
    if any(k.startswith("encoder.down.") for k in state):
        return vae_from_var(state, size)
    return vq_from_llamagen(state, image_size=size)


def load_generator(path: str | Path, image_size: int | None = None) -> torch.nn.Module:
    """A generator in any format :func:`~argen.convert.loaders.load` reads."""
    from argen.convert.loaders import load

    return load(path, "generator", image_size)


def load_tokenizer(path: str | Path, image_size: int | None = None) -> torch.nn.Module:
    """A tokenizer in any format :func:`~argen.convert.loaders.load` reads."""
    from argen.convert.loaders import load

    return load(path, "tokenizer", image_size)


__all__ = [
    "load_generator",
    "load_tokenizer",
    "gpt_from_llamagen",
    "gpt_to_llamagen",
    "is_official_file",
    "load_official_generator",
    "load_official_state",
    "load_official_tokenizer",
    "vae_from_var",
    "var_from_official",
    "vq_from_llamagen",
]
