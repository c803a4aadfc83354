"""Evaluation: Fréchet distances on named features, class-consistency, ADM-format npz."""

from argen.eval.classifier import Classifier, ClassifierConfig, load_classifier
from argen.eval.fid import (
    FeaturesUnavailable,
    class_consistency,
    classifier_features,
    frechet_distance,
    inception_features,
)
from argen.images import from_uint8, load_npz, save_npz, to_uint8

__all__ = [
    "Classifier",
    "ClassifierConfig",
    "FeaturesUnavailable",
    "class_consistency",
    "classifier_features",
    "frechet_distance",
    "from_uint8",
    "inception_features",
    "load_classifier",
    "load_npz",
    "save_npz",
    "to_uint8",
]
