"""Training tasks: what ``train.py`` trains, chosen by the recipe's ``task``."""

from __future__ import annotations

from accelerate import Accelerator

from argen.training.recipes import Recipe


def build_task(recipe: Recipe, accelerator: Accelerator):
    from argen.training.tasks.classifier import ClassifierTask
    from argen.training.tasks.draft_head import DraftHeadTask
    from argen.training.tasks.generator import GeneratorTask
    from argen.training.tasks.tokenizer import TokenizerTask

    kinds = {
        "tokenizer": TokenizerTask,
        "generator": GeneratorTask,
        "refiner": GeneratorTask,
        "classifier": ClassifierTask,
        "draft_head": DraftHeadTask,
    }
    return kinds[recipe.task](recipe, accelerator)
