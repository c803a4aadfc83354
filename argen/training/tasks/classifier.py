"""Classifier training (the features of dataset-specific FID and class-consistency)."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from torch.utils.data import Subset

from argen.data import build_dataset
from argen.eval.classifier import Classifier
from argen.training.recipes import ClassifierRecipe
from argen.training.tasks.base import Task, random_flip


class ClassifierTask(Task):
    def __init__(self, recipe: ClassifierRecipe, accelerator) -> None:
        super().__init__(recipe)
        data = recipe.data
        full = build_dataset(data.dataset, data.resolution, data.frames, data.frame_stride)
        every = recipe.data.holdout_every
        indices = range(len(full))
        self.dataset = Subset(full, [i for i in indices if i % every])
        self.holdout = Subset(full, [i for i in indices if i % every == 0])
        num_classes = len(full.classes)
        if recipe.model.num_classes != num_classes or recipe.model.resolution != recipe.data.resolution:
            raise ValueError(
                f"model.num_classes / model.resolution must match the dataset "
                f"({num_classes} classes, {recipe.data.resolution} px)"
            )
        self.model = Classifier(recipe.model)

    def compute_losses(self, modules, batch, step):
        images, labels = batch
        if self.recipe.data.flip:
            images = random_flip(images)
        # small random translations make the classifier robust to generated samples
        shift = torch.randint(-1, 2, (2,)).tolist()
        images = torch.roll(images, shifts=shift, dims=(-2, -1))
        logits = modules["model"](images)
        loss = F.cross_entropy(logits, labels)
        return {"model": loss}, {
            "loss": loss.item(),
            "acc": (logits.argmax(-1) == labels).float().mean().item(),
        }

    @torch.no_grad()
    def export(self, out) -> None:
        model = self.model.eval()
        images = torch.stack([self.holdout[i][0] for i in range(len(self.holdout))])
        labels = torch.tensor([self.holdout[i][1] for i in range(len(self.holdout))])
        device = next(model.parameters()).device
        preds = model(images.to(device)).argmax(-1).cpu()
        accuracy = (preds == labels).float().mean().item()
        (out / "metrics.json").write_text(
            json.dumps({"holdout_accuracy": accuracy, "holdout_size": len(labels)}, indent=2) + "\n"
        )
