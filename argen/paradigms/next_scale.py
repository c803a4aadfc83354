"""Next scale (VAR, NFIG): id maps of growing size, each scale drawn at once from the
tokenizer's accumulated ``f_hat``; zero-shot editing keeps a source image's tokens under a mask."""

from __future__ import annotations

from pathlib import Path

import torch

from argen.checkpoint import CheckpointError
from argen.models.next_scale import NextScaleConfig, NextScaleLlama, split_scales
from argen.models.var import VARTransformer
from argen.paradigms.base import Paradigm, SamplingExtras, cross_entropy, model_args
from argen.paradigms.options import EDIT
from argen.sampling.next_scale import NextScaleOptions, keep_masks, sample_next_scale
from argen.tokenizers.layout import ScaleLayout
from argen.tokenizers.protocols import ScaleTokenizer


def check_scales(model, layout, model_dir: Path, tokenizer_dir: Path) -> None:
    """Next-scale generators need a multi-scale tokenizer with the same scales."""
    scales = tuple(model.config.patch_nums)
    if scales != tuple(layout.scales):
        raise CheckpointError(
            f"tokenizer {tokenizer_dir} ({layout}) and generator {model_dir} (scales {scales}) "
            "do not fit: next-scale generators need a multi-scale tokenizer with the same scales"
        )


class NextScale(Paradigm):
    name = "next_scale"
    layout = ScaleLayout
    default = True
    sample_options = (EDIT,)
    generators = (NextScaleLlama, VARTransformer)
    tokenizer_in_loss = True

    def build(self, model, options, tokenizer: ScaleTokenizer, sizes):
        args = model_args(model) | sizes
        return NextScaleLlama(
            NextScaleConfig(
                **args, patch_nums=tokenizer.layout.scales, token_dim=tokenizer.config.codebook_dim
            )
        )

    def loss(self, model, tokenizer: ScaleTokenizer, tokens, condition):
        tokens = tokens.flatten(1)  # (B, L)
        inputs = tokenizer.teacher_inputs(split_scales(tokens, tokenizer.layout.scales))
        return cross_entropy(model(inputs, condition), tokens)  # logits (B, L, V)

    def check_pair(self, model, layout, model_dir, tokenizer_dir):
        super().check_pair(model, layout, model_dir, tokenizer_dir)
        check_scales(model, layout, model_dir, tokenizer_dir)

    def sample(self, model, tokenizer, condition, config, generator, extras: SamplingExtras, given=None):
        options = NextScaleOptions(extras.edit, compile=extras.compile)
        return sample_next_scale(model, tokenizer, condition, config, generator, options)

    def edit_source(self, tokenizer: ScaleTokenizer, image: torch.Tensor, regenerate: torch.Tensor):
        """``--edit IMAGE --mask MASK``: the image (1, 3, R, R) in [-1, 1] and where to
        regenerate it (R, R) in [0, 1] -> (source ids per scale, keep masks per scale)."""
        return tokenizer.encode(image), keep_masks(regenerate.float(), tokenizer.layout.scales)
