"""Checks on a classifier used as a judge (class-consistency, classifier-feature FID/FVD): a
judge near chance on its own held-out data, or one that sorts the samples into a few classes,
makes those metrics look good or bad for nothing. The checks return warnings, which sampling
runs print and record in ``metrics.json``."""

from __future__ import annotations

import json
from pathlib import Path

import torch

RECORD = "metrics.json"  # written by the classifier's training run: holdout_accuracy
FLOOR = 2.0  # a judge must score at least this many times chance on its held-out data


def recorded_accuracy(classifier_dir: str | Path) -> float | None:
    """The held-out accuracy the classifier's run recorded (in its model or run directory)."""
    directory = Path(classifier_dir)
    for record in (directory / RECORD, directory.parent / RECORD):
        if record.is_file():
            return json.loads(record.read_text()).get("holdout_accuracy")
    return None


def record_warnings(classifier_dir: str | Path, num_classes: int) -> list[str]:
    """A judge with no recorded held-out accuracy, or one too close to chance."""
    accuracy, chance = recorded_accuracy(classifier_dir), 1 / num_classes
    if accuracy is None:
        return [f"classifier {classifier_dir} has no recorded held-out accuracy ({RECORD} of its run)"]
    if accuracy < FLOOR * chance:
        return [
            f"classifier {classifier_dir} scores {accuracy:.1%} on its held-out data, near chance "
            f"({chance:.1%}): metrics on its features or predictions mean little"
        ]
    return []


def collapse_warnings(predictions: torch.Tensor, requested: torch.Tensor) -> list[str]:
    """The judge sorts the samples into at most half of the requested classes."""
    found, wanted = len(predictions.unique()), len(requested.unique())
    if wanted > 1 and found <= wanted // 2:
        return [
            f"the classifier puts the samples into {found} of the {wanted} requested classes: the "
            "samples or the judge collapsed, and its metrics are not comparable"
        ]
    return []
