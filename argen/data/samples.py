"""Generated samples (``sample.py``'s ``samples.npz``) as a labelled dataset, e.g. to distil a
draft model on its target's own samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from argen.data.images import DatasetError
from argen.images import from_uint8, load_npz


class SamplesDataset(Dataset):
    """``arr_0`` (N, H, W, C) uint8 with ``labels`` (N,) -> (pixels in [-1, 1] at ``resolution``,
    label)."""

    def __init__(self, path: str | Path, resolution: int):
        with np.load(path) as data:
            if "labels" not in data:
                raise DatasetError(f"{path} has no 'labels' array (class-conditional samples are needed)")
            labels = data["labels"]
        images = from_uint8(load_npz(path))  # (N, C, H, W)
        if images.shape[-1] != resolution:
            images = F.interpolate(images, size=(resolution, resolution), mode="bicubic").clamp(-1, 1)
        self.images, self.labels = images, torch.from_numpy(labels).long()
        self.classes = [str(i) for i in range(int(self.labels.max()) + 1)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])
