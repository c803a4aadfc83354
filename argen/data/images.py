"""ImageFolder datasets (``root/<class>/<image>``) at any resolution; unreadable files are
skipped with a warning and counted."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class DatasetError(ValueError):
    """A dataset is missing, empty or unreadable."""


def load_rgb(path: Path) -> Image.Image | None:
    """The image at ``path`` as RGB, or None when it cannot be decoded."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError):
        return None


class ImageFolderDataset(Dataset):
    """Images resized (shorter side) and center-cropped to ``resolution``, in [-1, 1].

    Every file is checked once at construction so a corrupt file never fails a run later;
    ``num_skipped`` counts the files left out.
    """

    caption_template = "a photo of a {}"

    def __init__(self, root: str | Path, resolution: int):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"image folder {self.root} does not exist")
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        if not self.classes:
            raise DatasetError(f"{self.root} has no class sub-folders (expected root/<class>/<image>)")
        candidates = [
            (path, label)
            for label, name in enumerate(self.classes)
            for path in sorted((self.root / name).rglob("*"))
            if path.suffix.lower() in IMAGE_EXTENSIONS
        ]
        self.samples = [(p, y) for p, y in candidates if self.readable(p)]
        self.num_skipped = len(candidates) - len(self.samples)
        if self.num_skipped:
            logger.warning("skipped %d unreadable image(s) under %s", self.num_skipped, self.root)
        if not self.samples:
            raise DatasetError(f"{self.root} holds no readable images")
        self.transform = self.image_transform(resolution)

    @staticmethod
    def image_transform(resolution: int):
        """PIL image -> (3, resolution, resolution) in [-1, 1]: shorter side resized, centre cropped."""
        from torchvision.transforms import v2  # imported when used: torchvision is slow to import

        return v2.Compose(
            [
                v2.PILToTensor(),
                v2.Resize(resolution, antialias=True),
                v2.CenterCrop(resolution),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize([0.5] * 3, [0.5] * 3),
            ]
        )

    @staticmethod
    def readable(path: Path) -> bool:
        try:
            with Image.open(path) as img:
                img.verify()
            return True
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
            return False

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        image = load_rgb(path)
        if image is None:  # damaged after the scan: stand in a neighbour rather than crash
            logger.warning("could not read %s; using the next image instead", path)
            return self[(index + 1) % len(self)]
        return self.transform(image), label
