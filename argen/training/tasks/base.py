"""What every task shares."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from argen.checkpoint import CONFIG_NAME, WEIGHTS_NAME
from argen.data.token_cache import file_digest
from argen.training.lora import merged_weights


def model_digest(directory: Path) -> str:
    """sha256 of a model directory's config and weights."""
    return file_digest(directory / CONFIG_NAME, directory / WEIGHTS_NAME)


class Task:
    """``model`` is trained and exported; ``extra_modules`` are trained alongside it;
    ``checkpointed`` objects (``state_dict`` / ``load_state_dict``) are saved with the training
    state."""

    model: nn.Module
    model_records: dict[str, str] = {}  # written into the exported config.json (e.g. _paradigm)
    dataset: torch.utils.data.Dataset
    extra_modules: dict[str, nn.Module] = {}
    joint_modules: tuple[str, ...] = ()  # extra modules trained through the model's loss
    checkpointed: list = []

    def __init__(self, recipe) -> None:
        self.recipe = recipe

    def lr(self, name: str) -> float:
        return self.recipe.train.lr

    def compute_losses(
        self, modules: dict[str, nn.Module], batch: list[torch.Tensor], step: int
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """Losses per trained module name, and scalars to log."""
        raise NotImplementedError

    def after_step(self, step: int, accelerator) -> dict[str, float]:
        """Work after optimizer step ``step`` (1-based), on every process -> scalars to log."""
        return {}

    def exported_weights(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The trained model's state dict as the run exports it (model/, ema/): LoRA adapters
        merged."""
        lora = getattr(self.recipe, "lora", None)
        return merged_weights(state, lora) if lora is not None else state

    def export(self, out: Path) -> None:
        """Write anything besides the weights that the run's output needs."""


def random_flip(images: torch.Tensor) -> torch.Tensor:
    """Mirror each image (B, C, H, W) or clip (B, T, C, H, W) with probability 1/2 (global RNG:
    resumable)."""
    flip = torch.rand(images.shape[0], device=images.device) < 0.5
    return torch.where(flip.view(-1, *[1] * (images.ndim - 1)), images.flip(-1), images)
