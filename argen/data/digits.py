"""The embedded default dataset: scikit-learn's 1,797 real 8x8 handwritten digits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


class DigitsDataset(Dataset):
    """Digits upsampled (bilinear) to ``resolution`` px, as RGB in [-1, 1]; labels 0-9."""

    classes = DIGIT_NAMES
    caption_template = "a handwritten digit {}"

    def __init__(self, resolution: int = 16):
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0  # (N, 1, 8, 8)
        images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)
        self.images = (images.clamp(0, 1) * 2 - 1).expand(-1, 3, -1, -1).contiguous()  # (N, 3, R, R)
        self.labels = torch.tensor(digits.target, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])
