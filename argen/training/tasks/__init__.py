"""Training tasks: what ``train.py`` trains, chosen by the recipe's type."""

from __future__ import annotations

from accelerate import Accelerator

from argen.training.recipes import (
    ClassifierRecipe,
    CodecTokenizerRecipe,
    ControlRecipe,
    DistillRecipe,
    DraftHeadRecipe,
    GeneratorRecipe,
    Recipe,
    TokenizerRecipe,
)


def build_task(recipe: Recipe, accelerator: Accelerator):
    """The task of ``recipe``'s type (or of its nearest parent type)."""
    from argen.training.tasks.classifier import ClassifierTask
    from argen.training.tasks.codec import CodecTask
    from argen.training.tasks.control import ControlTask
    from argen.training.tasks.distill import DistillTask
    from argen.training.tasks.draft_head import DraftHeadTask
    from argen.training.tasks.generator import GeneratorTask
    from argen.training.tasks.tokenizer import TokenizerTask

    tasks = {
        TokenizerRecipe: TokenizerTask,
        CodecTokenizerRecipe: CodecTask,  # JPEG, AVC: nothing to optimise
        GeneratorRecipe: GeneratorTask,  # task: generator or refiner
        ClassifierRecipe: ClassifierTask,
        DraftHeadRecipe: DraftHeadTask,
        DistillRecipe: DistillTask,
        ControlRecipe: ControlTask,
    }
    kind = next(cls for cls in type(recipe).__mro__ if cls in tasks)
    return tasks[kind](recipe, accelerator)
