"""Generator training on a token cache (and, for text models, precomputed caption features):
cross-entropy on next tokens, next scales, coarse labels (CTF stage 1) or, for the fine-label
model (``task: refiner``, CTF stage 2), on every fine id given all coarse labels."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from argen import tokenizers
from argen.checkpoint import save_model
from argen.data import TokenCacheDataset, build_dataset, build_token_cache, captions_of
from argen.data.token_cache import cache_key, cache_matches, read_meta
from argen.models.caption import Caption
from argen.models.continuous import (
    ContinuousLlama,
    ContinuousLlamaConfig,
    ContinuousNextScaleConfig,
    ContinuousNextScaleLlama,
)
from argen.models.heads import FlowHeadConfig
from argen.models.llama import Llama
from argen.models.next_frame import NextFrameLlama
from argen.models.next_scale import NextScaleConfig, NextScaleLlama, split_scales
from argen.models.refiner import FineLabelConfig, FineLabelTransformer
from argen.text import TextEncoder, TextFeatures, build_text_features, text_feature_key
from argen.tokenizers.coarse_to_fine import CoarseToFineVQModel
from argen.tokenizers.continuous import ContinuousTokenizer
from argen.tokenizers.layout import ByteLayout, CoarseToFineLayout, ContinuousLayout, ScaleLayout, VideoLayout
from argen.training.recipes import GeneratorRecipe
from argen.training.tasks.base import Task

TOKENIZER_DIR = "tokenizer"  # the run keeps a copy, so sampling needs only the run directory


class GeneratorTask(Task):
    def __init__(self, recipe: GeneratorRecipe, accelerator) -> None:
        super().__init__(recipe)
        data = recipe.data
        self.tokenizer = tokenizers.load(recipe.tokenizer)
        if recipe.coarse_clusters:
            if recipe.task == "refiner":
                raise ValueError(
                    "coarse_clusters is for stage 1; a refiner reads the labels of its tokenizer"
                )
            self.tokenizer = CoarseToFineVQModel.from_vq(self.tokenizer, recipe.coarse_clusters, recipe.seed)
        if recipe.token_scales:
            if not isinstance(self.tokenizer, ContinuousTokenizer):
                raise ValueError("token_scales is for continuous tokenizers")
            self.tokenizer.config = replace(self.tokenizer.config, patch_nums=tuple(recipe.token_scales))
        layout = self.tokenizer.layout
        if recipe.task == "refiner" and not isinstance(layout, CoarseToFineLayout):
            raise ValueError(
                f"a refiner needs a coarse-to-fine tokenizer (the tokenizer/ of a run trained with "
                f"coarse_clusters > 0), not {recipe.tokenizer}"
            )
        if self.tokenizer.config.resolution != data.resolution:
            raise ValueError(
                f"data.resolution ({data.resolution}) must equal the tokenizer's resolution "
                f"({self.tokenizer.config.resolution})"
            )
        cache_dir = token_cache(recipe, recipe.tokenizer, self.tokenizer, accelerator)
        self.dataset = TokenCacheDataset(cache_dir)
        sizes = dict(vocab_size=getattr(layout, "vocab_size", 0), grid_size=(layout.height, layout.width))
        if isinstance(layout, ByteLayout):
            sizes["rope"] = "1d"
        if isinstance(layout, VideoLayout):
            sizes.update(rope="3d", frames=layout.frames)
        elif recipe.next_frame:
            raise ValueError("next_frame is for video tokenizers")
        if recipe.model.condition == "text":
            features = self.caption_features(recipe, accelerator)
            self.dataset = CaptionedTokens(self.dataset, features)
            sizes.update(caption_dim=features.dim, num_classes=0)
        else:
            sizes["num_classes"] = read_meta(cache_dir)["num_classes"]
        if isinstance(layout, ScaleLayout) or getattr(layout, "scales", ()):
            self.tokenizer = self.tokenizer.to(accelerator.device).eval()  # it builds the inputs
        self.model = build_generator(recipe, self.tokenizer, sizes)
        if accelerator.is_main_process:
            save_model(self.tokenizer, Path(recipe.output_dir) / TOKENIZER_DIR)

    @staticmethod
    def caption_features(recipe: GeneratorRecipe, accelerator) -> TextFeatures:
        """The dataset's captions encoded once (by the main process) and reused while they match."""
        data, model = recipe.data, recipe.model
        captions = captions_of(
            build_dataset(data.dataset, data.resolution, data.frames, data.frame_stride),
            data.caption_template,
        )
        directory = Path(data.text_cache or Path(recipe.output_dir) / "text_features")
        key = text_feature_key(model.text_encoder, model.caption_len, captions)
        if accelerator.is_main_process and not cache_matches(directory, key):
            encoder = TextEncoder(model.text_encoder, model.caption_len, accelerator.device)
            build_text_features(encoder, captions, directory, key)
        accelerator.wait_for_everyone()
        return TextFeatures(directory)

    def compute_losses(self, modules, batch, step):
        if self.recipe.model.condition == "text":
            tokens, features, mask = batch
            condition = Caption(features, mask)
        else:
            tokens, condition = batch
        if isinstance(self.tokenizer.layout, ContinuousLayout):
            return self.continuous_loss(modules["model"], tokens, condition)
        tokens = tokens.flatten(1)  # (B, L)
        if isinstance(self.model, NextScaleLlama):
            inputs = self.tokenizer.teacher_inputs(split_scales(tokens, self.model.config.patch_nums))
            logits = modules["model"](inputs, condition)  # (B, L, V)
        elif isinstance(self.model, FineLabelTransformer):
            logits = modules["model"](self.tokenizer.coarse(tokens), condition)  # (B, L, V_fine)
        else:
            if isinstance(self.tokenizer.layout, CoarseToFineLayout):
                tokens = self.tokenizer.coarse(tokens)
            logits = modules["model"](tokens, condition)  # (B, L, V)
        layout = self.tokenizer.layout
        ignore = layout.pad if isinstance(layout, ByteLayout) else -100  # padding after EOS: no loss
        loss = F.cross_entropy(logits.flatten(0, 1), tokens.flatten(), ignore_index=ignore)
        return {"model": loss}, {"loss": loss.item()}

    def continuous_loss(self, model, tokens: torch.Tensor, condition):
        """Flow-matching loss on continuous tokens (B, L, d), raster or per scale."""
        if isinstance(self.model, ContinuousNextScaleLlama):
            maps = self.tokenizer.scale_maps(tokens)  # [(B, pn**2, d), ...]
            loss = model(self.tokenizer.teacher_inputs(maps), condition, torch.cat(maps, 1))
        else:
            loss = model(tokens, condition)
        return {"model": loss}, {"flow_loss": loss.item()}


def build_generator(recipe: GeneratorRecipe, tokenizer: torch.nn.Module, sizes: dict) -> torch.nn.Module:
    """The generator for ``tokenizer``'s layout: Llama over ids or coarse labels (or video
    tokens), the next-frame model, the fine-label model (``task: refiner``), next-scale over id
    maps, or their continuous twins."""
    layout = tokenizer.layout
    base = {f.name: getattr(recipe.model, f.name) for f in fields(recipe.model)} | sizes
    if isinstance(layout, ContinuousLayout):
        base["token_dim"] = layout.token_dim
        if layout.scales:
            head = recipe.head or FlowHeadConfig(attention=True)
            return ContinuousNextScaleLlama(
                ContinuousNextScaleConfig(**base, patch_nums=layout.scales, head=head)
            )
        return ContinuousLlama(ContinuousLlamaConfig(**base, head=recipe.head or FlowHeadConfig()))
    if recipe.head is not None:
        raise ValueError("head: is for continuous tokenizers")
    if isinstance(layout, ScaleLayout):
        return NextScaleLlama(
            NextScaleConfig(**base, patch_nums=layout.scales, token_dim=tokenizer.config.codebook_dim)
        )
    if recipe.next_frame:
        return NextFrameLlama(replace(recipe.model, **sizes))
    if recipe.task == "refiner":
        model = FineLabelTransformer(FineLabelConfig(**base, fine_vocab_size=layout.fine_vocab_size))
        model.coarse_labels.copy_(tokenizer.coarse_labels)
        return model
    return Llama(replace(recipe.model, **sizes))  # the recipe itself stays as written


def token_cache(recipe, tokenizer_dir: str | Path, tokenizer: torch.nn.Module, accelerator) -> Path:
    """The recipe's token cache directory, built (by every process) unless it matches."""
    data = recipe.data
    cache_dir = Path(data.token_cache or Path(recipe.output_dir) / "token_cache")
    key = cache_key(tokenizer_dir, data.dataset, data.resolution, data.flip)
    if not cache_matches(cache_dir, key):
        if cache_dir.exists():
            raise ValueError(
                f"token cache {cache_dir} was built from another tokenizer or dataset; delete it "
                f"or point data.token_cache elsewhere"
            )
        build_token_cache(
            tokenizer,
            build_dataset(data.dataset, data.resolution, data.frames, data.frame_stride),
            cache_dir,
            key,
            data.flip,
            device=accelerator.device,
            rank=accelerator.process_index,
            world_size=accelerator.num_processes,
            barrier=accelerator.wait_for_everyone,
        )
    return cache_dir


class CaptionedTokens(Dataset):
    """Token-cache items with their caption features: (tokens, features (T, C), mask (T,))."""

    def __init__(self, tokens: TokenCacheDataset, features: TextFeatures):
        if int(tokens.labels.max()) >= len(features):
            raise ValueError("the token cache refers to more captions than the caption features hold")
        self.tokens, self.features = tokens, features

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int):
        tokens, caption_id = self.tokens[index]
        caption = self.features[caption_id]
        return tokens, caption.features, caption.mask
