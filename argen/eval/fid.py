"""Fréchet distances between sample sets, on named features.

``inception``: the standard pool3 features of the TF-ported Inception-v3 (torchmetrics'
``NoTrainInceptionV3``, torch-fidelity's weights: the numbers papers report as FID). ``classifier``: the
penultimate features of an :class:`~argen.eval.classifier.Classifier` trained on the dataset;
reported as ``fid_classifier``, never as plain FID. The distance itself is
:func:`argen.eval.frechet.frechet_from_features` (float64), shared with FVD.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from argen.eval.classifier import Classifier
from argen.eval.frechet import frechet_from_features


class FeaturesUnavailable(RuntimeError):
    """The weights of the requested feature extractor cannot be found or downloaded."""


class ClassifierFeatures(nn.Module):
    """uint8 images (B, C, H, W) -> classifier penultimate features (B, D)."""

    def __init__(self, classifier: Classifier):
        super().__init__()
        self.classifier = classifier.eval()
        self.num_features = classifier.num_features

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(images.float() / 127.5 - 1)


def inception_features(weights: str | Path | None = None) -> nn.Module:
    """The standard FID features (Inception-v3 pool3, 2048-d) of uint8 images (B, 3, H, W);
    ``weights`` is a local copy of torch-fidelity's ``URL_INCEPTION_V3``."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3 as INCEPTION_URL
    from torchmetrics.image.fid import (
        NoTrainInceptionV3,
    )  # imported when used: torchmetrics is slow to import

    if weights is not None and not Path(weights).is_file():
        raise FeaturesUnavailable(f"--inception-weights {weights} does not exist")
    try:
        return NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=["2048"],
            feature_extractor_weights_path=None if weights is None else str(weights),
        )
    except Exception as err:  # no network and no cached copy
        raise FeaturesUnavailable(
            f"Inception weights are not available ({type(err).__name__}: {err}). Download "
            f"{INCEPTION_URL} on a machine with network and pass --inception-weights PATH, or put "
            f"it in $TORCH_HOME/hub/checkpoints/; or choose dataset-specific features with "
            f"--fid-features classifier --classifier DIR."
        ) from None


def classifier_features(classifier: Classifier) -> ClassifierFeatures:
    return ClassifierFeatures(classifier)


@torch.no_grad()
def image_features(
    extractor: nn.Module, images: np.ndarray, batch_size: int = 200, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Features (N, D) in float64 of uint8 images (N, H, W, C)."""
    batches = (
        torch.from_numpy(images[i : i + batch_size]).permute(0, 3, 1, 2)
        for i in range(0, len(images), batch_size)
    )
    return torch.cat(
        [extractor(batch.to(device)).double().cpu() for batch in batches]
    )  # (B, C, H, W) uint8 in


def frechet_distance(
    extractor: nn.Module,
    real: np.ndarray,
    fake: np.ndarray,
    batch_size: int = 200,
    device: torch.device | str = "cpu",
) -> float:
    """Fréchet distance between uint8 image sets (N, H, W, C) under ``extractor``'s features."""
    extractor = extractor.to(device).eval()
    return frechet_from_features(*(image_features(extractor, x, batch_size, device) for x in (real, fake)))


@torch.no_grad()
def predict(classifier: Classifier, pixels: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """The classifier's class for each sample (N, C, H, W) in [-1, 1] -> (N,)."""
    return torch.cat(
        [classifier(pixels[i : i + batch_size]).argmax(-1) for i in range(0, len(pixels), batch_size)]
    )


@torch.no_grad()
def class_consistency(
    classifier: Classifier, pixels: torch.Tensor, labels: torch.Tensor, batch_size: int = 500
) -> dict[str, float]:
    """Accuracy of ``classifier`` on samples (N, C, H, W) in [-1, 1] of requested ``labels``:
    overall and per requested class."""
    preds = predict(classifier, pixels, batch_size)
    hits = (preds == labels).float()
    result = {"overall": hits.mean().item()}
    for label in labels.unique().tolist():
        result[str(label)] = hits[labels == label].mean().item()
    return result
