"""Generator training on a token cache: next-token cross-entropy."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch.nn.functional as F

from argen import tokenizers
from argen.checkpoint import save_model
from argen.data import TokenCacheDataset, build_dataset, build_token_cache
from argen.data.token_cache import cache_key, cache_matches, read_meta
from argen.models.llama import Llama
from argen.training.recipes import GeneratorRecipe
from argen.training.tasks.base import Task

TOKENIZER_DIR = "tokenizer"  # the run keeps a copy, so sampling needs only the run directory


class GeneratorTask(Task):
    def __init__(self, recipe: GeneratorRecipe, accelerator) -> None:
        super().__init__(recipe)
        data = recipe.data
        self.tokenizer = tokenizers.load(recipe.tokenizer)
        layout = self.tokenizer.layout
        if self.tokenizer.config.resolution != data.resolution:
            raise ValueError(
                f"data.resolution ({data.resolution}) must equal the tokenizer's resolution "
                f"({self.tokenizer.config.resolution})"
            )
        cache_dir = Path(data.token_cache or Path(recipe.output_dir) / "token_cache")
        key = cache_key(recipe.tokenizer, data.dataset, data.resolution, data.flip)
        if not cache_matches(cache_dir, key):
            if cache_dir.exists():
                raise ValueError(
                    f"token cache {cache_dir} was built from another tokenizer or dataset; delete it "
                    f"or point data.token_cache elsewhere"
                )
            build_token_cache(
                self.tokenizer,
                build_dataset(data.dataset, data.resolution),
                cache_dir,
                key,
                data.flip,
                device=accelerator.device,
                rank=accelerator.process_index,
                world_size=accelerator.num_processes,
                barrier=accelerator.wait_for_everyone,
            )
        self.dataset = TokenCacheDataset(cache_dir)
        num_classes = read_meta(cache_dir)["num_classes"]
        config = replace(  # the recipe stays as written; the model takes its sizes from the data
            recipe.model,
            vocab_size=layout.vocab_size,
            grid_size=(layout.height, layout.width),
            num_classes=num_classes,
        )
        self.model = Llama(config)
        if accelerator.is_main_process:
            save_model(self.tokenizer, Path(recipe.output_dir) / TOKENIZER_DIR)

    def compute_losses(self, modules, batch, step):
        tokens, labels = batch
        tokens = tokens.flatten(1)  # (B, h*w)
        logits = modules["model"](tokens, labels)  # (B, L, V)
        loss = F.cross_entropy(logits.flatten(0, 1), tokens.flatten())
        return {"model": loss}, {"loss": loss.item()}
