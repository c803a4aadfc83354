"""The metrics a sampling run asks for: FID (Inception or classifier features) or, for video,
FVD (I3D or clip-classifier features) against a reference set, and class-consistency."""

from __future__ import annotations

import argparse

import numpy as np
import torch

from argen.data import build_dataset
from argen.eval.classifier import load_classifier
from argen.eval.fid import class_consistency, classifier_metric, frechet_distance, inception_metric
from argen.eval.fvd import (
    DEFAULT_REFERENCE_SIZE,
    ClipClassifierFeatures,
    I3DFeatures,
    frechet_video_distance,
)
from argen.images import from_uint8, load_npz, to_uint8


def reference_images(spec: str, resolution: int, frames: int | None = None) -> np.ndarray:
    """A reference set as uint8 (N, H, W, C): an .npz or every image of a dataset; with
    ``frames``, clips (N, T, H, W, C): an .npz or the first 2,048 clips of a video dataset."""
    if spec.endswith(".npz"):
        return load_npz(spec, video=frames is not None)
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


class Evaluation:
    """The metrics a run asked for, set up before sampling so that a missing reference,
    classifier or Inception weights fail in seconds, not after the samples are drawn."""

    def __init__(
        self, args: argparse.Namespace, resolution: int, device: torch.device, frames: int | None = None
    ):
        self.device = device
        self.classifier = load_classifier(args.classifier).to(device) if args.classifier else None
        self.metric = self.real = self.video_features = None
        if args.fid and args.fid_features == "classifier" and self.classifier is None:
            raise ValueError("--fid-features classifier needs --classifier DIR")
        if self.classifier is not None and self.classifier.config.frames != (frames or 1):
            raise ValueError(
                f"classifier {args.classifier} reads {self.classifier.config.frames} frame(s) per sample; "
                f"these samples have {frames or 1}"
            )
        if args.fid and frames is not None:
            self.real = reference_images(args.fid, resolution, frames)
            self.reference = args.fid
            if args.fid_features == "classifier":
                self.video_features = ClipClassifierFeatures(self.classifier, args.classifier, device)
                self.key = "fvd_classifier"
            elif args.fid_features in (None, "i3d"):
                self.video_features, self.key = I3DFeatures(args.i3d_weights, device), "fvd"
            else:
                raise ValueError("video samples: --fid-features is i3d or classifier")
            self.features = self.video_features.description
        elif args.fid:
            if args.fid_features == "i3d":
                raise ValueError("--fid-features i3d is for video samples")
            if args.fid_features in (None, "inception"):
                self.metric, self.key = inception_metric(args.inception_weights), "fid"
                self.features = "inception-v3 pool3 (2048-d, torch-fidelity weights)"
            else:
                self.metric, self.key = classifier_metric(self.classifier), "fid_classifier"
                self.features = f"classifier {args.classifier} penultimate ({self.classifier.num_features}-d)"
            self.real = reference_images(args.fid, resolution)
            self.reference = args.fid

    @property
    def wanted(self) -> bool:
        return self.real is not None or self.classifier is not None

    def __call__(self, images: np.ndarray, labels: np.ndarray | None) -> dict:
        metrics: dict = {}
        if self.video_features is not None:
            metrics[self.key] = frechet_video_distance(self.video_features, self.real, images)
        elif self.metric is not None:
            metrics[self.key] = frechet_distance(self.metric, self.real, images, device=self.device)
        if self.real is not None:
            metrics.update(features=self.features, reference=self.reference, reference_size=len(self.real))
        if self.classifier is not None and labels is not None:
            pixels = from_uint8(images).to(self.device)
            metrics["class_consistency"] = class_consistency(
                self.classifier, pixels, torch.from_numpy(labels).to(self.device)
            )
        return metrics
