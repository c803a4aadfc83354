"""The metrics a sampling run asks for: FID (Inception or classifier features) against a
reference set and class-consistency."""

from __future__ import annotations

import argparse

import numpy as np
import torch

from argen.data import build_dataset
from argen.eval.classifier import load_classifier
from argen.eval.fid import class_consistency, classifier_metric, frechet_distance, inception_metric
from argen.eval.npz import from_uint8, load_npz, to_uint8


def reference_images(spec: str, resolution: int) -> np.ndarray:
    if spec.endswith(".npz"):
        return load_npz(spec)
    dataset = build_dataset(spec, resolution)
    return np.concatenate([to_uint8(dataset[i][0][None]) for i in range(len(dataset))])


class Evaluation:
    """The metrics a run asked for, set up before sampling so that a missing reference,
    classifier or Inception weights fail in seconds, not after the samples are drawn."""

    def __init__(self, args: argparse.Namespace, resolution: int, device: torch.device):
        self.device = device
        self.classifier = load_classifier(args.classifier).to(device) if args.classifier else None
        self.metric = self.real = None
        if args.fid:
            if args.fid_features == "inception":
                self.metric, self.key = inception_metric(args.inception_weights), "fid"
                self.features = "inception-v3 pool3 (2048-d, torch-fidelity weights)"
            else:
                if self.classifier is None:
                    raise ValueError("--fid-features classifier needs --classifier DIR")
                self.metric, self.key = classifier_metric(self.classifier), "fid_classifier"
                self.features = f"classifier {args.classifier} penultimate ({self.classifier.num_features}-d)"
            self.real = reference_images(args.fid, resolution)
            self.reference = args.fid

    @property
    def wanted(self) -> bool:
        return self.metric is not None or self.classifier is not None

    def __call__(self, images: np.ndarray, labels: np.ndarray | None) -> dict:
        metrics: dict = {}
        if self.metric is not None:
            metrics[self.key] = frechet_distance(self.metric, self.real, images, device=self.device)
            metrics.update(features=self.features, reference=self.reference, reference_size=len(self.real))
        if self.classifier is not None and labels is not None:
            pixels = from_uint8(images).to(self.device)
            metrics["class_consistency"] = class_consistency(
                self.classifier, pixels, torch.from_numpy(labels).to(self.device)
            )
        return metrics
