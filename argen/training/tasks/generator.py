"""Generator training on a token cache (and, for text models, precomputed caption features);
the paradigm of the tokenizer's layout builds the generator and gives the loss."""

from __future__ import annotations

from pathlib import Path

import torch

from argen import hub, models, paradigms, tokenizers
from argen.checkpoint import save_model, weights_of
from argen.convert import load_tokenizer
from argen.data import TokenCacheDataset, build_dataset, build_token_cache
from argen.data.token_cache import Processes, cache_key, cache_matches
from argen.training.alignment import attach_alignment
from argen.training.conditions import CONDITION_KINDS
from argen.training.init_from import start_from
from argen.training.lora import add_lora
from argen.training.recipes import GeneratorRecipe
from argen.training.tasks.base import Task

TOKENIZER_DIR = "tokenizer"  # the run keeps a copy, so sampling needs only the run directory


def paradigm_and_tokenizer(recipe: GeneratorRecipe) -> tuple[paradigms.Paradigm, torch.nn.Module, object]:
    """The recipe's paradigm, the tokenizer it generates for (derived from the loaded one:
    coarse labels, scales of continuous tokens) and its options."""
    loaded = load_tokenizer(recipe.tokenizer)
    paradigm = paradigms.for_recipe(recipe, loaded.layout)
    options = paradigm.parse_options(recipe.options)
    tokenizer = paradigm.prepare_tokenizer(loaded, options, recipe.seed)
    paradigm.require_serves(tokenizer.layout, recipe.tokenizer)
    if tokenizer.config.resolution != recipe.data.resolution:
        raise ValueError(
            f"data.resolution ({recipe.data.resolution}) must equal the tokenizer's resolution "
            f"({tokenizer.config.resolution})"
        )
    return paradigm, tokenizer, options


class GeneratorTask(Task):
    """Any paradigm's generator on a token cache: the paradigm (looked up from the tokenizer's
    layout and the recipe) builds the model and computes the loss."""

    def __init__(self, recipe: GeneratorRecipe, accelerator) -> None:
        super().__init__(recipe)
        self.paradigm, self.tokenizer, options = paradigm_and_tokenizer(recipe)
        self.model_records = {paradigms.PARADIGM_KEY: self.paradigm.name}
        self.conditions = CONDITION_KINDS[recipe.model.condition]
        self.text_model = recipe.model  # its text encoder and caption length
        cache_dir = token_cache(recipe, hub.resolve(recipe.tokenizer), self.tokenizer, accelerator)
        self.dataset = TokenCacheDataset(cache_dir)
        sizes = self.paradigm.sizes(self.tokenizer.layout) | self.conditions.attach(
            self, cache_dir, accelerator
        )
        if self.paradigm.tokenizer_in_loss:
            self.tokenizer = self.tokenizer.to(accelerator.device).eval()
        self.model = self.paradigm.build(recipe.model, options, self.tokenizer, sizes)
        resized = recipe.init_from and start_from(self.model, recipe.init_from, recipe.init_classes)
        if recipe.lora:
            add_lora(self.model, recipe.lora)
            if resized:  # the new classes' rows train beside the adapters
                self.model.prefix.requires_grad_(True)
        self.aligner = attach_alignment(self, recipe, accelerator) if recipe.align else None
        if accelerator.is_main_process:
            save_model(self.tokenizer, Path(recipe.output_dir) / TOKENIZER_DIR)

    def compute_losses(self, modules, batch, step):
        if self.aligner is None:
            tokens, condition = self.conditions.unpack(batch)
            loss, logs = self.paradigm.loss(modules["model"], self.tokenizer, tokens, condition)
            return {"model": loss}, logs
        *batch, target = batch
        tokens, condition = self.conditions.unpack(batch)
        with self.aligner.tap:
            loss, logs = self.paradigm.loss(modules["model"], self.tokenizer, tokens, condition)
        align = self.aligner.loss(modules["align"], target)
        return {"model": loss + self.aligner.weight * align}, logs | {"align_loss": align.item()}


def load_run(run: str, role: str) -> tuple[Path, torch.nn.Module, torch.nn.Module]:
    """A generator run's weights (its ema weights when it has them) and tokenizer, checked to
    fit each other -> (the weights' directory, generator, tokenizer); ``role`` names the run
    in errors."""
    run = Path(run)
    if not (run / TOKENIZER_DIR).is_dir():
        raise ValueError(f"{role} {run} is not a generator run directory (it has no {TOKENIZER_DIR}/)")
    model_dir = weights_of(run, None)
    model, tokenizer = models.load(model_dir), tokenizers.load(run / TOKENIZER_DIR)
    paradigms.for_generator(model, tokenizer.layout, model_dir, run / TOKENIZER_DIR)  # they fit
    return model_dir, model, tokenizer


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
            processes=Processes(
                accelerator.device,
                accelerator.process_index,
                accelerator.num_processes,
                accelerator.wait_for_everyone,
            ),
        )
    return cache_dir
