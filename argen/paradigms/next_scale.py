"""Next scale (VAR, NFIG): id maps of growing size, each scale drawn at once from the
tokenizer's accumulated ``f_hat``; zero-shot editing keeps a source image's tokens under a mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from argen.checkpoint import CheckpointError
from argen.data import ImageFolderDataset
from argen.data.images import load_rgb
from argen.models.next_scale import NextScaleConfig, NextScaleLlama, split_scales
from argen.models.var import VARTransformer
from argen.paradigms.base import Paradigm, SamplingExtras, cross_entropy, recipe_model_args, refuse_head
from argen.sampling.next_scale import keep_masks, sample_next_scale
from argen.tokenizers.layout import ScaleLayout


def check_scales(model, layout, model_dir: Path, tokenizer_dir: Path) -> None:
    """Next-scale generators need a multi-scale tokenizer with the same scales."""
    scales = tuple(model.config.patch_nums)
    if scales != tuple(layout.scales):
        raise CheckpointError(
            f"tokenizer {tokenizer_dir} ({layout}) and generator {model_dir} (scales {scales}) "
            "do not fit: next-scale generators need a multi-scale tokenizer with the same scales"
        )


class NextScale(Paradigm):
    name = "next-scale ids"
    layout = ScaleLayout
    generators = (NextScaleLlama, VARTransformer)
    tokenizer_in_loss = True

    def build(self, recipe, tokenizer, sizes):
        refuse_head(recipe)
        args = recipe_model_args(recipe) | sizes
        return NextScaleLlama(
            NextScaleConfig(
                **args, patch_nums=tokenizer.layout.scales, token_dim=tokenizer.config.codebook_dim
            )
        )

    def loss(self, model, tokenizer, tokens, condition):
        tokens = tokens.flatten(1)  # (B, L)
        inputs = tokenizer.teacher_inputs(split_scales(tokens, tokenizer.layout.scales))
        return cross_entropy(model(inputs, condition), tokens)  # logits (B, L, V)

    def check_pair(self, model, layout, model_dir, tokenizer_dir):
        super().check_pair(model, layout, model_dir, tokenizer_dir)
        check_scales(model, layout, model_dir, tokenizer_dir)

    def sample(self, model, tokenizer, condition, config, generator, extras: SamplingExtras, given=None):
        return sample_next_scale(
            model, tokenizer, condition, config, generator, extras.edit, compile=extras.compile
        )

    def edit_source(self, tokenizer, image: str, mask: str, device: torch.device):
        """``--edit IMAGE --mask MASK`` -> (source ids per scale, keep masks per scale)."""
        resolution = tokenizer.config.resolution
        source, regenerate = load_rgb(Path(image)), load_rgb(Path(mask))
        if source is None or regenerate is None:
            raise ValueError(f"cannot read --edit {image} or --mask {mask} as images")
        pixels = ImageFolderDataset.image_transform(resolution)(source)[None].to(device)  # (1, 3, R, R)
        gray = np.array(regenerate.convert("L").resize((resolution, resolution)))  # (R, R) uint8
        return tokenizer.encode(pixels), keep_masks(
            torch.from_numpy(gray).float() / 255, tokenizer.layout.scales
        )
