"""What a teacher's pairs are conditioned on: its classes, or prompts (the captions it was
trained on, or a prompts file) encoded once by its text encoder. A pair stores the condition's
index; ``condition(ids)`` turns indices into what the teacher and its student read."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from argen.data.token_cache import META_NAME, cache_matches, read_meta
from argen.models.llama import Condition
from argen.text import TextEncoder, TextFeatures, build_text_features, read_prompts_file, text_feature_key
from argen.training.tasks.generator import text_cache_dir


class ClassConditions:
    """Class ids: pair ``i``'s condition is a class drawn uniformly."""

    def __init__(self, teacher: torch.nn.Module, teacher_run: Path, recipe, accelerator) -> None:
        self.count = teacher.config.num_classes
        self.key: dict = {}

    def condition(self, ids: torch.Tensor, device: torch.device) -> Condition:
        return ids.to(device)


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


class PromptConditions:
    """Prompts: pair ``i``'s condition is one of the prompts, encoded once into
    ``<output_dir>/text_features`` by the teacher's text encoder."""

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


TEACHER_CONDITIONS = {"class": ClassConditions, "text": PromptConditions}  # by the teacher's condition
