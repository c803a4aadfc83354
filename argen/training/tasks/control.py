"""Spatial control: a trained raster generator becomes a controlled one (the paradigm builds it
with the base's weights), trained on the base's token cache and the control maps of the same
images, with the base frozen, LoRA-adapted or fully trained."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.data import Dataset

from argen import paradigms
from argen.checkpoint import save_model, write_text_atomic
from argen.data import TokenCacheDataset, build_dataset
from argen.data.control import ControlCache, build_control_cache, control_key
from argen.data.token_cache import cache_matches
from argen.models.control import Controlled, controlar_layers
from argen.training.conditions import CONDITION_KINDS
from argen.training.lora import add_lora
from argen.training.recipes import ControlRecipe
from argen.training.tasks.base import Task, model_digest
from argen.training.tasks.generator import TOKENIZER_DIR, load_run, token_cache

BASE_RECORD = "base.json"  # the base generator a run was trained from


class ControlledTokens(Dataset):
    """Token-cache items (tokens, condition...) with their control map (C, H, W) in [0, 1], over
    the items whose map is valid and whose image is not held out."""

    def __init__(self, items: Dataset, controls: ControlCache, holdout_every: int, copies: int):
        if len(items) != len(controls):
            raise ValueError(f"{len(controls)} control maps for a token cache of {len(items)} items")
        self.items, self.controls = items, controls
        image = torch.arange(len(controls)) // copies  # the dataset index of each cache item
        keep = controls.valid & (image % holdout_every != 0 if holdout_every else True)
        self.indices = keep.nonzero()[:, 0]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        i = int(self.indices[index])
        return *self.items[i], self.controls.map(i)


class ControlTask(Task):
    def __init__(self, recipe: ControlRecipe, accelerator) -> None:
        super().__init__(recipe)
        base_dir, base, self.tokenizer = load_run(recipe.base, "base")
        check_base(Path(recipe.output_dir), base_dir)
        self.paradigm = paradigms.for_recipe(recipe, self.tokenizer.layout)
        self.model_records = {paradigms.PARADIGM_KEY: self.paradigm.name}
        control = recipe.control
        self.model = self.paradigm.build_controlled(
            base,
            control_channels=control.channels,
            control_resolution=recipe.data.resolution,
            control_kind=control.kind,
            control_thresholds=(control.low_threshold, control.high_threshold),
            control_detector=control.detector,
            control_width=recipe.control_width,
            control_layers=tuple(recipe.control_layers or controlar_layers(base.config.n_layer)),
            control_projection=recipe.control_projection,
            null_control=recipe.null_control,
        )
        self.trainable()
        self.conditions, self.text_model = CONDITION_KINDS[base.config.condition], base.config
        cache_dir = token_cache(recipe, Path(recipe.base) / TOKENIZER_DIR, self.tokenizer, accelerator)
        self.dataset = TokenCacheDataset(cache_dir)
        self.conditions.attach(self, cache_dir, accelerator)  # text: caption features beside the tokens
        copies = 2 if recipe.data.flip else 1
        self.dataset = ControlledTokens(
            self.dataset, control_maps(recipe, accelerator), recipe.data.holdout_every, copies
        )
        if accelerator.is_main_process:
            save_model(self.tokenizer, Path(recipe.output_dir) / TOKENIZER_DIR)
            record = {"base": str(base_dir), "sha256": model_digest(base_dir)}
            write_text_atomic(Path(recipe.output_dir) / BASE_RECORD, json.dumps(record, indent=2) + "\n")

    def trainable(self) -> None:
        """Freeze what the recipe keeps: LoRA trains its adapters, ``freeze_base`` nothing else;
        the control encoder always trains."""
        r = self.recipe
        if r.lora is not None:
            add_lora(self.model, r.lora)
        elif r.freeze_base:
            self.model.requires_grad_(False)
        self.model.control_encoder.requires_grad_(True)

    def compute_losses(self, modules, batch, step):
        *items, maps = batch
        tokens, condition = self.conditions.unpack(items)
        loss, logs = self.paradigm.loss(modules["model"], self.tokenizer, tokens, Controlled(condition, maps))
        return {"model": loss}, logs


def check_base(out: Path, base_dir: Path) -> None:
    """Refuse to continue a run (its adapters, its control encoder) on another base generator."""
    record = out / BASE_RECORD
    if record.is_file() and json.loads(record.read_text())["sha256"] != model_digest(base_dir):
        raise ValueError(
            f"{out} was trained on another base generator than {base_dir}; choose another output_dir"
        )


def control_maps(recipe: ControlRecipe, accelerator) -> ControlCache:
    """The control maps of the dataset in the token cache's order, built (by the main process)
    unless the cache matches."""
    data = recipe.data
    directory = Path(recipe.control_cache or Path(recipe.output_dir) / "control_cache")
    key = control_key(recipe.control, data.dataset, data.resolution, data.flip)
    if accelerator.is_main_process and not cache_matches(directory, key):
        dataset = build_dataset(data.dataset, data.resolution, data.frames, data.frame_stride)
        build_control_cache(
            dataset, recipe.control, data.resolution, directory, key, data.flip, accelerator.device
        )
    accelerator.wait_for_everyone()
    return ControlCache(directory, key)
