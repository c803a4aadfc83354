"""Codec tokenizers (JPEG, AVC) have no weights: "training" one writes its checkpoint, fitting
the optional byte-level BPE on a sample of the dataset's streams first."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch

from argen.checkpoint import save_model
from argen.data import build_dataset
from argen.tokenizers import class_for_config
from argen.tokenizers.byte_vocab import train_bpe
from argen.training.tasks.base import Task

logger = logging.getLogger(__name__)


def build_codec_tokenizer(recipe, out: Path) -> Path:
    """Write ``out/model`` for a ``tokenizer: jpeg`` or ``avc`` recipe; logs the stream lengths."""
    config, data = recipe.model, recipe.data
    codec = class_for_config(config)
    if config.resolution != data.resolution:
        raise ValueError(
            f"model.resolution ({config.resolution}) must equal data.resolution ({data.resolution})"
        )
    if getattr(config, "frames", data.frames) != data.frames:  # video codecs
        raise ValueError(f"model.frames ({config.frames}) must equal data.frames ({data.frames})")
    dataset = build_dataset(data.dataset, data.resolution, data.frames, data.frame_stride)
    picks = torch.linspace(0, len(dataset) - 1, min(recipe.bpe_images, len(dataset))).long().tolist()
    pixels = torch.stack([dataset[i][0] for i in picks])
    streams = codec(replace(config, bpe="")).streams(pixels)
    if recipe.bpe_vocab_size:
        config = replace(config, bpe=train_bpe(streams, recipe.bpe_vocab_size))
    tokenizer = codec(config)
    lengths = torch.tensor([len(tokenizer.vocab.encode(s)) + 1 for s in streams]).float()
    logger.info(
        "%d samples: %.1f tokens per sample on average (max %d, EOS included); max_len %d",
        len(streams),
        lengths.mean(),
        lengths.max(),
        config.max_len,
    )
    if lengths.max() > config.max_len:
        raise ValueError(f"streams reach {int(lengths.max())} tokens; raise model.max_len ({config.max_len})")
    return save_model(tokenizer, out / "model")


class CodecTask(Task):
    """A codec tokenizer's run: no model to optimise; its export writes the tokenizer."""

    model = None

    def __init__(self, recipe, accelerator) -> None:
        super().__init__(recipe)

    def export(self, out: Path) -> None:
        build_codec_tokenizer(self.recipe, out)
