"""Captions for text-to-image training.

A caption folder holds images with their captions, either in ``captions.jsonl`` (lines of
``{"file": "<relative path>", "caption": "..."}``) or in a ``<image>.txt`` beside each image.
Its items are (image, caption id) with ids indexing ``dataset.captions`` (the distinct
captions). Class-labelled datasets get template captions, one per class
(``"a handwritten digit seven"``, ``"a photo of a cat"``): there the caption id is the label.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.data import Dataset

from argen.data.images import IMAGE_EXTENSIONS, DatasetError, ImageFolderDataset, load_rgb

CAPTIONS_FILE = "captions.jsonl"


def is_caption_folder(root: str | Path) -> bool:
    root = Path(root)
    return (root / CAPTIONS_FILE).is_file() or any(root.glob("*.txt"))


def read_caption_pairs(root: Path) -> list[tuple[Path, str]]:
    """(image path, caption) for every captioned image under ``root``."""
    if (root / CAPTIONS_FILE).is_file():
        pairs = []
        for n, line in enumerate((root / CAPTIONS_FILE).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                pairs.append((root / entry["file"], str(entry["caption"]).strip()))
            except (json.JSONDecodeError, KeyError, TypeError):
                expected = '{"file": ..., "caption": ...}'
                raise DatasetError(f"{root / CAPTIONS_FILE}, line {n}: expected {expected}") from None
        return pairs
    return [
        (path, path.with_suffix(".txt").read_text(encoding="utf-8").strip())
        for path in sorted(root.rglob("*"))
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.with_suffix(".txt").is_file()
    ]


class CaptionFolderDataset(Dataset):
    """Captioned images, resized and center-cropped to ``resolution``, in [-1, 1]. Images that
    are missing, unreadable or have an empty caption are skipped with a warning."""

    def __init__(self, root: str | Path, resolution: int):
        self.root = Path(root)
        pairs = read_caption_pairs(self.root)
        usable = [(p, c) for p, c in pairs if c and p.is_file() and ImageFolderDataset.readable(p)]
        self.num_skipped = len(pairs) - len(usable)
        if not usable:
            raise DatasetError(f"{self.root} holds no readable captioned images")
        self.captions = sorted({c for _, c in usable})
        index = {c: i for i, c in enumerate(self.captions)}
        self.samples = [(p, index[c]) for p, c in usable]
        self.transform = ImageFolderDataset.image_transform(resolution)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, caption_id = self.samples[index]
        image = load_rgb(path)
        if image is None:
            raise DatasetError(f"{path} became unreadable")
        return self.transform(image), caption_id


def captions_of(dataset: Dataset, template: str | None = None) -> list[str]:
    """The captions that a dataset's labels index: its own, or ``template`` per class name."""
    if isinstance(dataset, CaptionFolderDataset):
        return dataset.captions
    template = template or getattr(dataset, "caption_template", None)
    if template is None or "{}" not in template:
        raise DatasetError(f"caption template must contain '{{}}' for the class name, got {template!r}")
    return [template.format(name.replace("_", " ")) for name in dataset.classes]
