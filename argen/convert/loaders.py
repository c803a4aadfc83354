"""One loader for every checkpoint format: :func:`load` asks each registered :class:`Format`
in turn whether it recognises a path, and the first that does builds the model.

Formats: argen checkpoint directories (``config.json`` + ``model.safetensors``), diffusers
``AutoencoderKL`` directories, and official LlamaGen / VAR ``.pt`` / ``.pth`` files (a GPT or
VAR transformer as a generator, a VQ or VQVAE as a tokenizer). Any of them may be named by a
Hugging Face Hub reference (:mod:`argen.hub`). A new format registers with
:func:`register_format`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torch import nn

from argen import hub, models, paradigms, tokenizers
from argen.checkpoint import CONFIG_NAME, CheckpointError, save_model
from argen.convert import OFFICIAL_SUFFIXES, is_official_file

Role = Literal["generator", "tokenizer"]
# official files from the Hub, converted once, by content
CONVERTED = Path(os.environ.get("ARGEN_CACHE", "~/.cache/argen")).expanduser() / "converted"


@dataclass
class Request:
    """What is being loaded: the path, the role it plays (None: whatever it holds) and, for
    formats that do not record it, the image size."""

    path: str | Path
    role: Role | None = None
    image_size: int | None = None


class Format:
    """One checkpoint format: whether it recognises a request, and how it loads one."""

    name: str

    def recognises(self, request: Request) -> bool:
        raise NotImplementedError

    def load(self, request: Request) -> nn.Module:
        raise NotImplementedError


def config_class_name(path: str | Path) -> str | None:
    """The ``_class_name`` a directory's config.json records (None: no readable config)."""
    config = Path(path) / CONFIG_NAME
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text()).get("_class_name")
    except json.JSONDecodeError:
        return None


class ArgenDirectory(Format):
    name = "argen checkpoint directory"

    def recognises(self, request):
        return Path(request.path).is_dir() and config_class_name(request.path) != "AutoencoderKL"

    def load(self, request):
        paradigms.registered()  # paradigm modules (and plugins) register the generators they define
        name = config_class_name(request.path)
        if request.role == "generator" or (request.role is None and name in models.MODELS):
            return models.load(request.path)
        return tokenizers.load(request.path)


class DiffusersVAE(Format):
    """A diffusers ``AutoencoderKL`` directory (local, or a Hub repository's snapshot) as a
    continuous tokenizer (image size default 256)."""

    name = "diffusers AutoencoderKL"

    def recognises(self, request):
        return config_class_name(request.path) == "AutoencoderKL"

    def load(self, request):
        if request.role == "generator":
            raise CheckpointError(f"{request.path} is a VAE (a tokenizer), not a generator")
        return tokenizers.ContinuousTokenizer.from_pretrained(request.path, request.image_size or 256)


class OfficialFile(Format):
    """An official LlamaGen or VAR file; a GPT's size and image size come from its name
    (``c2i_B_384.pt``) where the weights leave them open."""

    name = "official LlamaGen / VAR file"

    def recognises(self, request):
        return is_official_file(request.path)

    def load(self, request):
        blob = hub.cached_blob(request.path)
        if blob is None:
            return self.convert(request)
        converted = CONVERTED / f"{blob}-{request.role or 'any'}-{request.image_size or 'named'}"
        if not converted.is_dir():  # a Hub file converts once; later loads read the copy
            save_model(self.convert(request), converted)
        return ArgenDirectory().load(Request(converted, request.role))

    def convert(self, request: Request) -> nn.Module:
        from argen.convert import load_official_generator, load_official_state, load_official_tokenizer

        role = request.role
        if role is None:  # tokenizers have an encoder; generators do not
            state = load_official_state(request.path)
            role = "tokenizer" if any(k.startswith("encoder.") for k in state) else "generator"
        load = load_official_generator if role == "generator" else load_official_tokenizer
        return load(request.path, request.image_size)


FORMATS: list[Format] = [ArgenDirectory(), DiffusersVAE(), OfficialFile()]


def register_format(fmt: Format) -> Format:
    """Add a format, asked before the built-in ones (so it may refine them)."""
    FORMATS.insert(0, fmt)
    return fmt


def load(path: str | Path, role: Role | None = None, image_size: int | None = None) -> nn.Module:
    """The generator or tokenizer at ``path`` (or a Hub reference, :mod:`argen.hub`), whatever
    its format (see :data:`FORMATS`)."""
    path = hub.resolve(path)
    request = Request(path, role, image_size)
    for fmt in FORMATS:
        if fmt.recognises(request):
            return fmt.load(request)
    if not Path(path).exists():
        raise CheckpointError(
            f"{path} does not exist (a checkpoint is a directory with {CONFIG_NAME} and "
            f"model.safetensors, or an official {' / '.join(OFFICIAL_SUFFIXES)} file)"
        )
    raise CheckpointError(
        f"{path}: not a checkpoint this version reads ({', '.join(f.name for f in FORMATS)})"
    )
