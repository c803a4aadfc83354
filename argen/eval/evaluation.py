"""The metrics a sampling run asks for: FID (Inception or classifier features) or, for video,
FVD (I3D or clip-classifier features) against a reference set, and class-consistency."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from argen.data import build_dataset
from argen.eval.classifier import load_classifier
from argen.eval.fid import (
    class_consistency,
    classifier_features,
    frechet_distance,
    inception_features,
    predict,
)
from argen.eval.fvd import (
    DEFAULT_REFERENCE_SIZE,
    ClipClassifierFeatures,
    I3DFeatures,
    frechet_video_distance,
)
from argen.eval.judge import collapse_warnings, record_warnings
from argen.images import from_uint8, load_npz, to_uint8


def reference_images(spec: str, resolution: int, frames: int | None = None) -> np.ndarray:
    """A reference set as uint8 (N, H, W, C): an .npz or every image of a dataset; with
    ``frames``, clips (N, T, H, W, C): an .npz or the first 2,048 clips of a video dataset."""
    if spec.endswith(".npz") and not Path(spec).is_file():
        raise ValueError(f"reference {spec} does not exist")
    if spec.endswith(".npz"):
        return load_npz(spec, video=frames is not None)
    if Path(spec).is_file():
        raise ValueError(
            f"reference {spec} is a file: give an .npz, an image or video folder, or an embedded dataset"
        )
    if frames is None:
        dataset = build_dataset(spec, resolution)
        count = len(dataset)
    else:
        dataset = build_dataset(spec, resolution, frames)
        count = min(len(dataset), DEFAULT_REFERENCE_SIZE)
    if dataset[0][0].ndim != (3 if frames is None else 4):
        raise ValueError(
            f"reference {spec} holds {'clips' if frames is None else 'images'}, not samples like these"
        )
    return np.concatenate([to_uint8(dataset[i][0][None]) for i in range(count)])


@dataclass
class EvaluationConfig:
    """What a sampling run is judged by: a reference set (an .npz, an image or video folder, or
    an embedded dataset) on named features (``inception``, ``i3d`` or ``classifier``; default
    inception for images, i3d for video), and class-consistency under ``classifier``."""

    reference: str | None = None
    features: str | None = None
    inception_weights: str | None = None
    i3d_weights: str | None = None
    classifier: str | None = None


class Evaluation:
    """The metrics a run asked for, set up before sampling so that a missing reference,
    classifier or Inception weights fail in seconds, not after the samples are drawn."""

    def __init__(
        self, config: EvaluationConfig, resolution: int, device: torch.device, frames: int | None = None
    ):
        self.config, self.device = config, device
        self.classifier = load_classifier(config.classifier).to(device) if config.classifier else None
        self.warnings = []  # about the judge, recorded with the metrics
        if self.classifier is not None:
            self.warnings = record_warnings(config.classifier, self.classifier.config.num_classes)
        self.extractor = self.real = self.video_features = None
        if config.reference and config.features == "classifier" and self.classifier is None:
            raise ValueError("--fid-features classifier needs --classifier DIR")
        if self.classifier is not None and self.classifier.config.frames != (frames or 1):
            raise ValueError(
                f"classifier {config.classifier} reads {self.classifier.config.frames} frame(s) per sample; "
                f"these samples have {frames or 1}"
            )
        if config.reference:
            self.set_up_video() if frames is not None else self.set_up_images()
            self.real = reference_images(config.reference, resolution, frames)

    def set_up_video(self) -> None:
        """FVD on I3D or clip-classifier features."""
        c = self.config
        if c.features == "classifier":
            self.video_features = ClipClassifierFeatures(self.classifier, c.classifier, self.device)
            self.key = "fvd_classifier"
        elif c.features in (None, "i3d"):
            self.video_features, self.key = I3DFeatures(c.i3d_weights, self.device), "fvd"
        else:
            raise ValueError("video samples: --fid-features is i3d or classifier")
        self.description = self.video_features.description

    def set_up_images(self) -> None:
        """FID on Inception or classifier features."""
        c = self.config
        if c.features == "i3d":
            raise ValueError("--fid-features i3d is for video samples")
        if c.features in (None, "inception"):
            self.extractor, self.key = inception_features(c.inception_weights), "fid"
            self.description = "inception-v3 pool3 (2048-d, torch-fidelity weights)"
        else:
            self.extractor, self.key = classifier_features(self.classifier), "fid_classifier"
            self.description = f"classifier {c.classifier} penultimate ({self.classifier.num_features}-d)"

    @property
    def wanted(self) -> bool:
        return self.real is not None or self.classifier is not None

    def __call__(self, images: np.ndarray, labels: np.ndarray | None) -> dict:
        metrics: dict = {}
        if self.video_features is not None:
            metrics[self.key] = frechet_video_distance(self.video_features, self.real, images)
        elif self.extractor is not None:
            metrics[self.key] = frechet_distance(self.extractor, self.real, images, device=self.device)
        if self.real is not None:
            metrics.update(
                features=self.description, reference=self.config.reference, reference_size=len(self.real)
            )
        warnings = list(self.warnings)
        if self.classifier is not None and labels is not None:
            pixels, requested = from_uint8(images).to(self.device), torch.from_numpy(labels).to(self.device)
            metrics["class_consistency"] = class_consistency(self.classifier, pixels, requested)
            warnings += collapse_warnings(predict(self.classifier, pixels), requested)
        if warnings:
            metrics["warnings"] = warnings
        return metrics
