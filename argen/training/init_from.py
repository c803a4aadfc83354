"""Fine-tuning: a recipe's generator starts from a trained one (``init_from:``: a run or model
directory, an official LlamaGen / VAR file, or a Hub reference of one). The two must be the same
generator except for what fine-tuning on other data changes: the number of classes (the class
table is resized, ``init_classes`` says whether the first classes keep their rows; the null row,
guidance's unconditional embedding, always moves to its new index), the grid (rotary positions
are computed, not learned, so a Llama starts from one trained at another image size) and
settings of training alone (dropout)."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Literal

import torch
from torch import nn

from argen import hub
from argen.checkpoint import is_run, weights_of
from argen.convert import load_generator
from argen.models.caption import ClassPrefix

# what a fine-tuning recipe may change: the data's shape, and settings of training alone
ADAPTABLE = ("num_classes", "grid_size", "class_dropout", "dropout", "init_std")
ClassInit = Literal["keep", "new"]  # the first classes' rows: kept, or fresh


def start_from(model: nn.Module, run: str, classes: ClassInit = "keep") -> bool:
    """Load the generator run ``run`` (its ema weights when it has them) into ``model`` -> whether
    the class table was resized (its rows then need training even under LoRA)."""
    path = hub.resolve(run)
    trained = load_generator(weights_of(path, None) if is_run(path) else path)
    check_compatible(trained, model, run)
    state, key = trained.state_dict(), f"{ClassPrefix.attribute}.weight"
    resized = key in state and state[key].shape != model.state_dict()[key].shape  # text models: no table
    if resized:
        state[key] = resized_class_table(state[key], model.state_dict()[key], classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:  # learned positions (next-scale) do not follow a new grid
        raise ValueError(f"init_from {run}: its weights do not fit this recipe's generator ({err})") from None
    return resized


def check_compatible(trained: nn.Module, model: nn.Module, run: str) -> None:
    if type(trained) is not type(model):
        raise ValueError(
            f"init_from {run}: a {type(trained).__name__}, but this recipe builds a {type(model).__name__}"
        )
    same = {name: getattr(trained.config, name) for name in ADAPTABLE}
    if replace(model.config, **same) != trained.config:
        differ = [
            f.name
            for f in fields(model.config)
            if getattr(model.config, f.name) != getattr(trained.config, f.name) and f.name not in ADAPTABLE
        ]
        raise ValueError(
            f"init_from {run}: its generator differs from the one this recipe builds in {differ} "
            f"(fine-tuning may change only {list(ADAPTABLE)})"
        )


def resized_class_table(
    trained: torch.Tensor, fresh: torch.Tensor, classes: Literal["keep", "new"]
) -> torch.Tensor:
    """A class table of (old classes + 1, D) -> the new one's shape (new classes + 1, D): the
    first classes' rows kept (``keep``) or fresh (``new``), the null row moved to the end."""
    table = fresh.clone()
    if classes == "keep":
        shared = min(trained.shape[0], fresh.shape[0]) - 1
        table[:shared] = trained[:shared]
    table[-1] = trained[-1]  # the null class
    return table
