"""Visual tokenizers: ``encode(pixels) -> tokens`` and ``decode(tokens) -> pixels``."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from argen.checkpoint import CheckpointError, load_model
from argen.plugins import import_package_modules
from argen.tokenizers.avc import AVCConfig, AVCTokenizer
from argen.tokenizers.causal_video import CausalVideoVQConfig, CausalVideoVQModel
from argen.tokenizers.coarse_to_fine import CoarseToFineConfig, CoarseToFineVQModel
from argen.tokenizers.continuous import ContinuousConfig, ContinuousTokenizer
from argen.tokenizers.frame_vq import FrameVQConfig, FrameVQModel
from argen.tokenizers.frequency import FrequencyVQConfig, FrequencyVQModel
from argen.tokenizers.jpeg import JPEGConfig, JPEGTokenizer
from argen.tokenizers.layout import (
    ByteLayout,
    CoarseToFineLayout,
    ContinuousLayout,
    GridLayout,
    ScaleLayout,
    VideoLayout,
)
from argen.tokenizers.multiscale import MultiScaleVQConfig, MultiScaleVQModel, PyramidVQModel
from argen.tokenizers.registry import class_for_config, register_tokenizer, tokenizer_classes, tokenizer_kinds
from argen.tokenizers.vq import VQConfig, VQModel

for _kind, _cls in (
    ("vq", VQModel),
    ("multiscale", MultiScaleVQModel),  # VAR's residual pyramid
    ("frequency", FrequencyVQModel),  # NFIG's frequency bands
    (None, CoarseToFineVQModel),  # derived from a VQ by the coarse_labels paradigm
    ("continuous", ContinuousTokenizer),  # a KL autoencoder (diffusers AutoencoderKL)
    ("jpeg", JPEGTokenizer),
    ("avc", AVCTokenizer),
    ("frame_vq", FrameVQModel),
    ("causal_video", CausalVideoVQModel),
):
    register_tokenizer(_cls, _kind)
import_package_modules(__name__, __path__)  # a module dropped in here registers its tokenizer
TOKENIZERS = tokenizer_classes()  # the built-in classes by name (see registry for plugins')


def load(path: str | Path, image_size: int | None = None) -> nn.Module:
    """Load an argen tokenizer checkpoint directory (config.json + model.safetensors); every
    other format (diffusers VAEs, official files) loads with :func:`argen.load`."""
    if Path(path).is_file():
        raise CheckpointError(f"{path} is a file: official checkpoints load with argen.load")
    return load_model(path, tokenizer_classes())


__all__ = [
    "AVCConfig",
    "AVCTokenizer",
    "ByteLayout",
    "CausalVideoVQConfig",
    "CausalVideoVQModel",
    "FrameVQConfig",
    "FrameVQModel",
    "JPEGConfig",
    "JPEGTokenizer",
    "ContinuousConfig",
    "ContinuousLayout",
    "ContinuousTokenizer",
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
    "VideoLayout",
    "class_for_config",
    "load",
    "register_tokenizer",
    "tokenizer_classes",
    "tokenizer_kinds",
]
