"""Fréchet video distance (FVD) between clip sets, on named features.

``i3d``: the standard features: the TorchScript I3D (Kinetics-400) that StyleGAN-V
distributes as ``i3d_torchscript.pt``, read on the first 16 frames of each clip, each frame
resized to 224x224 (bilinear) and scaled to [-1, 1], 400-d pre-softmax outputs. The weights
come from a local path. ``classifier``: the penultimate features of a clip classifier trained
on the dataset (:class:`~argen.eval.classifier.Classifier` with ``frames`` > 1), reported as
``fvd_classifier``, never as plain FVD. Statistics and the distance are computed in float64.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from argen.eval.classifier import Classifier
from argen.eval.fid import FeaturesUnavailable
from argen.eval.frechet import frechet_from_features
from argen.images import from_uint8

I3D_URL = "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt"
I3D_FRAMES, I3D_SIZE = 16, 224
DEFAULT_REFERENCE_SIZE = 2048  # clips: the usual FVD sample count


class I3DFeatures:
    """uint8 clips (B, T, H, W, C), T >= 16 -> I3D features (B, 400)."""

    name = "i3d"

    def __init__(self, weights: str | Path | None, device: torch.device | str = "cpu"):
        if weights is None or not Path(weights).is_file():
            where = "no --i3d-weights given" if weights is None else f"{weights} does not exist"
            raise FeaturesUnavailable(
                f"FVD needs the I3D TorchScript weights ({where}). Download {I3D_URL} on a machine "
                f"with network and pass --i3d-weights PATH, or choose dataset-specific features "
                f"with --fid-features classifier --classifier DIR (a clip classifier)."
            )
        self.device = device
        with warnings.catch_warnings():  # the standard weights are TorchScript, deprecated or not
            warnings.simplefilter("ignore", FutureWarning)
            self.model = torch.jit.load(str(weights), map_location=device).eval()
        self.description = f"i3d {weights} (Kinetics-400, 400-d pre-softmax, 16 frames at 224 px)"

    @torch.no_grad()
    def __call__(self, clips: np.ndarray) -> torch.Tensor:
        if clips.shape[1] < I3D_FRAMES:
            raise ValueError(f"I3D features need clips of at least {I3D_FRAMES} frames, got {clips.shape[1]}")
        pixels = from_uint8(clips[:, :I3D_FRAMES]).to(self.device)  # (B, T, C, H, W) in [-1, 1]
        frames = F.interpolate(
            pixels.flatten(0, 1), size=(I3D_SIZE, I3D_SIZE), mode="bilinear", align_corners=False
        )
        video = frames.view(*pixels.shape[:3], I3D_SIZE, I3D_SIZE).transpose(1, 2)  # (B, C, T, 224, 224)
        return self.model(video.contiguous(), rescale=False, resize=False, return_features=True)


class ClipClassifierFeatures:
    """uint8 clips (B, T, H, W, C) -> a clip classifier's penultimate features (B, D)."""

    name = "classifier"

    def __init__(self, classifier: Classifier, path: str | Path, device: torch.device | str = "cpu"):
        if classifier.config.frames < 2:
            raise ValueError(
                f"{path} is an image classifier; FVD features need a clip classifier (frames > 1)"
            )
        self.classifier, self.device = classifier.eval(), device
        self.description = (
            f"classifier {path} penultimate ({classifier.num_features}-d, {classifier.config.frames} frames)"
        )

    @torch.no_grad()
    def __call__(self, clips: np.ndarray) -> torch.Tensor:
        return self.classifier.features(from_uint8(clips).to(self.device))


def clip_features(extractor, clips: np.ndarray, batch_size: int = 32) -> torch.Tensor:
    """Features (N, D) in float64 of uint8 clips (N, T, H, W, C)."""
    return torch.cat(
        [extractor(clips[i : i + batch_size]).double().cpu() for i in range(0, len(clips), batch_size)]
    )


def frechet_video_distance(extractor, real: np.ndarray, fake: np.ndarray, batch_size: int = 32) -> float:
    """FVD between uint8 clip sets (N, T, H, W, C) under ``extractor``'s features."""
    return frechet_from_features(
        clip_features(extractor, real, batch_size), clip_features(extractor, fake, batch_size)
    )
