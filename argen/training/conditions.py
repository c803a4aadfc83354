"""Conditioning, one object per kind (class ids, text prompts): what the kind means to
generator training (the dataset it attaches beside the token cache), to distillation (the
conditions of a teacher's pairs) and to ``sample.py`` (the conditions a run asks for and how
its samples record them). The generator's side of a kind (embedding, null condition, dropout)
is its condition prefix in :mod:`argen.models`.

``CONDITION_KINDS[model.config.condition]`` is the one lookup; a new kind adds one object here
and its prefix in the model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from argen.data import TokenCacheDataset, build_dataset, captions_of
from argen.data.token_cache import META_NAME, cache_matches, read_meta
from argen.models.caption import Caption
from argen.models.llama import Condition, LlamaConfig
from argen.text import (
    TextEncoder,
    TextFeatures,
    build_text_features,
    check_prompts,
    read_prompts_file,
    text_feature_key,
    warn_truncated,
)


def text_cache_dir(text_cache: str | None, output_dir: str) -> Path:
    """Where a generator run keeps its caption features: ``data.text_cache`` or its own folder."""
    return Path(text_cache or Path(output_dir) / "text_features")


def parse_classes(spec: str | None, num_classes: int) -> list[int]:
    """``--classes``: "all" (or nothing) or comma-separated ids in [0, num_classes)."""
    if spec in (None, "all"):
        return list(range(num_classes))
    try:
        ids = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f'--classes must be "all" or comma-separated integers, got {spec!r}') from None
    bad = [i for i in ids if not 0 <= i < num_classes]
    if bad or not ids:
        raise ValueError(f"class ids must lie in [0, {num_classes}); got {spec!r}")
    return ids


class ClassTeacher:
    """A class-conditional teacher's pairs: pair ``i``'s condition is a class drawn uniformly."""

    def __init__(self, teacher: torch.nn.Module) -> None:
        self.count = teacher.config.num_classes
        self.key: dict = {}

    def condition(self, ids: torch.Tensor, device: torch.device) -> Condition:
        return ids.to(device)


class ClassCondition:
    """Class ids (B,); ``num_classes`` (the last label) is the null class."""

    name = "class"

    # --- generator training: the token cache's labels are the conditions -----------------
    def attach(self, task, cache_dir: Path, accelerator) -> dict:
        return {"num_classes": read_meta(cache_dir)["num_classes"]}

    def unpack(self, batch: list[torch.Tensor]) -> tuple[torch.Tensor, Condition]:
        tokens, labels = batch
        return tokens, labels

    # --- distillation ---------------------------------------------------------------------
    def teacher(self, teacher: torch.nn.Module, teacher_run: Path, recipe, accelerator) -> ClassTeacher:
        return ClassTeacher(teacher)

    # --- sample.py: --classes; samples are saved with their class ids ----------------------
    def resolve(self, args: argparse.Namespace, model, device: torch.device) -> tuple[list, Condition]:
        if args.prompt or args.prompts_file or args.text_encoder:
            raise ValueError("this generator is class-conditional: use --classes, not prompts")
        classes = parse_classes(args.classes, model.config.num_classes)
        return classes, torch.tensor(classes)

    def arrays(self, names: list, labels: torch.Tensor) -> dict[str, np.ndarray]:
        return {"labels": torch.tensor(names)[labels].numpy()}

    def write_names(self, out: Path, names: list) -> None:
        """Class ids need no index file."""


def caption_features(recipe, model: LlamaConfig, accelerator) -> TextFeatures:
    """The dataset's captions encoded once (by the main process) for the text encoder and
    caption length of ``model``, and reused while they match."""
    data = recipe.data
    captions = captions_of(
        build_dataset(data.dataset, data.resolution, data.frames, data.frame_stride),
        data.caption_template,
    )
    directory = text_cache_dir(data.text_cache, recipe.output_dir)
    key = text_feature_key(model.text_encoder, model.caption_len, captions)
    if accelerator.is_main_process and not cache_matches(directory, key):
        encoder = TextEncoder(model.text_encoder, model.caption_len, accelerator.device)
        build_text_features(encoder, captions, directory, key)
    accelerator.wait_for_everyone()
    return TextFeatures(directory)


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


def trained_captions(teacher_run: Path) -> list[str]:
    """The distinct captions the teacher run was trained on (its caption feature cache)."""
    recipe = teacher_run / "recipe.json"
    if recipe.is_file():
        data = json.loads(recipe.read_text())
        cache = text_cache_dir(data["data"]["text_cache"], data["output_dir"])
        if (cache / META_NAME).is_file():
            return read_meta(cache)["captions"]
    raise FileNotFoundError(
        f"cannot find the captions teacher {teacher_run} was trained on (its recipe.json and "
        "caption features); set prompts_file in the recipe"
    )


class PromptTeacher:
    """A text-conditional teacher's pairs: pair ``i``'s condition is one of the prompts (its
    training captions or a prompts file), encoded once into ``<output_dir>/text_features`` by
    the teacher's text encoder."""

    def __init__(self, teacher: torch.nn.Module, teacher_run: Path, recipe, accelerator) -> None:
        c = teacher.config
        prompts = (
            read_prompts_file(recipe.prompts_file) if recipe.prompts_file else trained_captions(teacher_run)
        )
        self.key = text_feature_key(c.text_encoder, c.caption_len, prompts)
        directory = Path(recipe.output_dir) / "text_features"
        if accelerator.is_main_process and not cache_matches(directory, self.key):
            encoder = TextEncoder(c.text_encoder, c.caption_len, accelerator.device)
            build_text_features(encoder, prompts, directory, self.key)
        accelerator.wait_for_everyone()
        self.features = TextFeatures(directory)
        self.count = len(self.features)

    def condition(self, ids: torch.Tensor, device: torch.device) -> Condition:
        return self.features[ids.cpu()].to(device)


class TextCondition:
    """Encoded prompts: a :class:`Caption` (features (B, T, C) and a padding mask); the null
    condition is the model's learned null caption."""

    name = "text"

    # --- generator training: caption features computed once, read beside the tokens --------
    def attach(self, task, cache_dir: Path, accelerator) -> dict:
        features = caption_features(task.recipe, task.text_model, accelerator)
        task.dataset = CaptionedTokens(task.dataset, features)
        return {"caption_dim": features.dim, "num_classes": 0}

    def unpack(self, batch: list[torch.Tensor]) -> tuple[torch.Tensor, Condition]:
        tokens, features, mask = batch
        return tokens, Caption(features, mask)

    # --- distillation ---------------------------------------------------------------------
    def teacher(self, teacher: torch.nn.Module, teacher_run: Path, recipe, accelerator) -> PromptTeacher:
        return PromptTeacher(teacher, teacher_run, recipe, accelerator)

    # --- sample.py: --prompt / --prompts-file, encoded once; samples index prompts.json -----
    def resolve(self, args: argparse.Namespace, model, device: torch.device) -> tuple[list, Condition]:
        if args.classes is not None:
            raise ValueError(
                "this generator is text-conditional: use --prompt or --prompts-file, not --classes"
            )
        given = list(args.prompt or []) + (read_prompts_file(args.prompts_file) if args.prompts_file else [])
        prompts = check_prompts(given)
        c = model.config
        encoder = TextEncoder(args.text_encoder or c.text_encoder, c.caption_len, device)
        if encoder.dim != c.caption_dim:
            raise ValueError(
                f"text encoder width {encoder.dim} != the generator's caption_dim {c.caption_dim}"
            )
        warn_truncated(prompts, encoder.token_counts(prompts), c.caption_len)
        return prompts, encoder(prompts)

    def arrays(self, names: list, labels: torch.Tensor) -> dict[str, np.ndarray]:
        return {"prompt_ids": labels.numpy()}

    def write_names(self, out: Path, names: list) -> None:
        (out / "prompts.json").write_text(json.dumps(names, indent=1, ensure_ascii=False) + "\n")


CONDITION_KINDS = {kind.name: kind for kind in (ClassCondition(), TextCondition())}
