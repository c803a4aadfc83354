"""Datasets: image folders, the embedded digits, token caches, and the batch order."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from argen.data.batches import ShardedBatches
from argen.data.captions import CaptionFolderDataset, captions_of, is_caption_folder
from argen.data.digits import DigitsDataset
from argen.data.images import DatasetError, ImageFolderDataset
from argen.data.samples import SamplesDataset
from argen.data.token_cache import TokenCacheDataset, build_token_cache
from argen.data.videos import MovingDigitsDataset, VideoFolderDataset, is_video_folder

EMBEDDED = {"digits": DigitsDataset}
EMBEDDED_VIDEOS = {"moving_digits": MovingDigitsDataset}


def build_dataset(spec: str, resolution: int, frames: int = 16, frame_stride: int = 1) -> Dataset:
    """``spec`` is an embedded dataset name (``digits``, or the video set ``moving_digits``), a
    ``samples.npz`` of generated images, a caption folder, a folder of videos (clips of
    ``frames`` frames, every ``frame_stride``-th) or an ImageFolder directory."""
    if spec in EMBEDDED:
        return EMBEDDED[spec](resolution)
    if spec in EMBEDDED_VIDEOS:
        return EMBEDDED_VIDEOS[spec](resolution, frames)
    if spec.endswith(".npz") and Path(spec).is_file():
        return SamplesDataset(spec, resolution)
    if not Path(spec).exists():
        raise DatasetError(
            f"dataset {spec!r} is neither an embedded dataset {sorted(EMBEDDED | EMBEDDED_VIDEOS)} "
            "nor an existing folder"
        )
    if is_caption_folder(spec):
        return CaptionFolderDataset(spec, resolution)
    if is_video_folder(spec):
        return VideoFolderDataset(spec, resolution, frames, frame_stride)
    return ImageFolderDataset(spec, resolution)


__all__ = [
    "CaptionFolderDataset",
    "DatasetError",
    "DigitsDataset",
    "ImageFolderDataset",
    "MovingDigitsDataset",
    "VideoFolderDataset",
    "SamplesDataset",
    "ShardedBatches",
    "TokenCacheDataset",
    "build_dataset",
    "build_token_cache",
    "captions_of",
]
