"""Control maps (ControlAR): spatial inputs aligned with the images, in [0, 1], (C, H, W).

Two sources: canny edges computed from the images (kornia's detector on blurred grey, argen's
default, or OpenCV's ``Canny`` on the unblurred RGB bytes, ControlAR's), or a folder of
precomputed maps (depth, segmentation) paired with an ImageFolder's images by relative path
and stem (``<folder>/<class>/<stem>.<any image extension>``). For training, the maps of a whole
dataset are computed once into a cache in the token cache's order (each image, then its mirror
when the cache is flipped); an image whose map is missing or unreadable is marked invalid,
counted and left out of training. For sampling, :func:`read_control_inputs` reads one image or
a folder of them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from argen.checkpoint import atomic_directory
from argen.data.images import IMAGE_EXTENSIONS, DatasetError, load_rgb
from argen.data.token_cache import META_NAME, cache_matches
from argen.images import to_uint8

logger = logging.getLogger(__name__)

CACHE_FILE = "maps.safetensors"


@dataclass
class ControlConfig:
    """Where a recipe's control maps come from."""

    kind: Literal["canny", "folder"] = "canny"
    folder: str | None = None  # kind folder: the precomputed maps, laid out as the image folder
    channels: int = 1  # 1: grey maps (edges, depth); 3: colour maps (segmentation)
    detector: Literal["kornia", "opencv"] = "kornia"  # canny: argen's, or ControlAR's (OpenCV)
    low_threshold: float | None = None  # canny hysteresis thresholds; None: the detector's own
    high_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"control.detector must be one of {sorted(DETECTORS)}, got {self.detector!r}")
        defaults = DETECTORS[self.detector].thresholds
        self.low_threshold = defaults[0] if self.low_threshold is None else self.low_threshold
        self.high_threshold = defaults[1] if self.high_threshold is None else self.high_threshold
        if self.kind == "folder" and not self.folder:
            raise ValueError("control.kind folder needs control.folder (the maps' directory)")
        if self.channels not in (1, 3):
            raise ValueError(f"control.channels must be 1 or 3, got {self.channels}")
        if self.kind == "canny" and self.channels != 1:
            raise ValueError("canny edges have one channel: set control.channels to 1")


def kornia_canny(images: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """argen's detector: kornia's canny (a sigma-1 blur) on the [0, 1] grey image; thresholds
    on its gradient."""
    import kornia  # imported when used: kornia is slow to import

    unit = (images.float() + 1) / 2
    grey = kornia.color.rgb_to_grayscale(unit) if unit.shape[1] == 3 else unit  # (B, 1, H, W)
    _, edges = kornia.filters.canny(grey, low_threshold=low, high_threshold=high)
    return edges


def opencv_canny(images: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """ControlAR's detector: OpenCV's ``Canny`` on the unblurred uint8 image (the largest
    gradient of the three channels); thresholds on the 0-255 Sobel gradient."""
    import cv2  # imported when used: only this detector needs OpenCV

    edges = np.stack(
        [cv2.Canny(np.ascontiguousarray(image), low, high) for image in to_uint8(images)]
    )  # (B, H, W)
    return torch.from_numpy(edges > 0)[:, None].to(images.device, torch.float32)


@dataclass(frozen=True)
class EdgeDetector:
    """A canny implementation and its default (low, high) thresholds."""

    edges: Callable[[torch.Tensor, float, float], torch.Tensor]
    thresholds: tuple[float, float]


DETECTORS = {
    "kornia": EdgeDetector(kornia_canny, (0.1, 0.2)),
    "opencv": EdgeDetector(opencv_canny, (100, 200)),
}


def canny_edges(
    images: torch.Tensor, low: float = 0.1, high: float = 0.2, detector: str = "kornia"
) -> torch.Tensor:
    """Images (B, C, H, W) in [-1, 1] -> canny edge maps (B, 1, H, W) in {0, 1} by
    ``detector`` (a key of :data:`DETECTORS`)."""
    if detector not in DETECTORS:
        raise ValueError(f"unknown canny detector {detector!r}: one of {sorted(DETECTORS)}")
    return DETECTORS[detector].edges(images, low, high)


def fit_map(control: torch.Tensor, resolution: int, name: str) -> torch.Tensor:
    """A square map (C, h, w) resized to ``resolution`` with a warning when its size differs;
    a map of another aspect ratio is refused."""
    h, w = control.shape[-2:]
    if h != w:
        raise ValueError(f"control map {name} is {w}x{h}: expected a square map ({resolution}x{resolution})")
    if h == resolution:
        return control
    logger.warning("control map %s is %dx%d: resized to %dx%d", name, w, h, resolution, resolution)
    return F.interpolate(control[None], size=(resolution, resolution), mode="bilinear", antialias=True)[0]


def read_map(path: Path, channels: int) -> torch.Tensor | None:
    """A map file as (channels, H, W) in [0, 1], or None when it cannot be decoded."""
    image = load_rgb(path)
    if image is None:
        return None
    pixels = np.asarray(image.convert("L" if channels == 1 else "RGB")).reshape(
        image.height, image.width, channels
    )
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255  # (C, H, W)


def paired_map(image_path: Path, image_root: Path, folder: Path) -> Path | None:
    """The map of ``image_path``: same relative folder and stem under ``folder``, any image type."""
    relative = image_path.relative_to(image_root)
    candidates = sorted((folder / relative.parent).glob(f"{relative.stem}.*"))
    return next((p for p in candidates if p.suffix.lower() in IMAGE_EXTENSIONS), None)


def folder_maps(
    dataset: Dataset, config: ControlConfig, resolution: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The precomputed maps of an ImageFolder dataset's images -> (maps (N, C, R, R) in [0, 1],
    valid (N,) bool)."""
    samples, root = getattr(dataset, "samples", None), getattr(dataset, "root", None)
    if samples is None or root is None:
        raise DatasetError(
            "control.kind folder pairs maps with image files: the dataset must be an image folder"
        )
    folder = Path(config.folder)
    if not folder.is_dir():
        raise DatasetError(f"control folder {folder} does not exist")
    maps = torch.zeros(len(samples), config.channels, resolution, resolution)
    valid = torch.zeros(len(samples), dtype=torch.bool)
    transform = square_transform(resolution)
    for i, (path, _) in enumerate(tqdm(samples, desc="reading control maps")):
        found = paired_map(path, root, folder)
        control = read_map(found, config.channels) if found is not None else None
        if control is not None:
            maps[i], valid[i] = transform(control), True
    return maps, valid


def square_transform(resolution: int):
    """A map (C, H, W) resized (shorter side) and centre-cropped as the images are."""
    from torchvision.transforms import v2  # imported when used: torchvision is slow to import

    return v2.Compose([v2.Resize(resolution, antialias=True), v2.CenterCrop(resolution)])


@torch.no_grad()
def dataset_edges(dataset: Dataset, config: ControlConfig, device: torch.device) -> torch.Tensor:
    """Canny edges of every image of ``dataset`` (N, 1, H, W)."""
    loader = DataLoader(dataset, batch_size=256, generator=torch.Generator())  # global RNG untouched
    parts = [
        canny_edges(images.to(device), config.low_threshold, config.high_threshold, config.detector).cpu()
        for images, _ in tqdm(loader, desc="canny edges")
    ]
    return torch.cat(parts)


def control_key(config: ControlConfig, dataset: str, resolution: int, flip: bool) -> dict:
    """What a control cache was built from; it is only reused when this matches."""
    return {"control": vars(config), "dataset": dataset, "resolution": resolution, "flip": flip}


def build_control_cache(
    dataset: Dataset,
    config: ControlConfig,
    resolution: int,
    out_dir: str | Path,
    key: dict,
    flip: bool,
    device: torch.device | str = "cpu",
) -> Path:
    """The control maps of every image (and of its mirror after it when ``flip``) as uint8,
    with a validity flag each, written atomically (main process)."""
    out_dir = Path(out_dir)
    if config.kind == "canny":
        maps = dataset_edges(dataset, config, torch.device(device))
        valid = torch.ones(len(maps), dtype=torch.bool)
    else:
        maps, valid = folder_maps(dataset, config, resolution)
    if flip:
        maps = torch.stack([maps, maps.flip(-1)], 1).flatten(0, 1)  # (2N, C, H, W)
        valid = valid.repeat_interleave(2)
    skipped = int((~valid).sum())
    if skipped:
        logger.warning("%d image(s) have no readable control map: left out of training", skipped)
    stored = (maps * 255).round().to(torch.uint8).contiguous()
    meta = {**key, "num_items": len(maps), "num_skipped": skipped}

    def write(tmp: Path) -> None:
        save_file({"maps": stored, "valid": valid.to(torch.uint8)}, str(tmp / CACHE_FILE))
        (tmp / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")

    return atomic_directory(out_dir, write)


class ControlCache:
    """A control cache in memory: maps (N, C, H, W) uint8 and valid (N,) bool."""

    def __init__(self, directory: str | Path, key: dict | None = None):
        directory = Path(directory)
        if key is not None and not cache_matches(directory, key):
            raise DatasetError(f"control cache {directory} was built from other settings or data")
        stored = load_file(str(directory / CACHE_FILE))
        self.maps, self.valid = stored["maps"], stored["valid"].bool()

    def __len__(self) -> int:
        return len(self.maps)

    def map(self, index: int) -> torch.Tensor:
        """Map ``index`` as float (C, H, W) in [0, 1]."""
        return self.maps[index].float() / 255


def read_control_inputs(
    path: str | Path,
    kind: Literal["canny", "map"],
    channels: int,
    resolution: int,
    low: float,
    high: float,
    detector: str = "kornia",
) -> torch.Tensor:
    """``sample.py --control``: one image or a folder of them (sorted by name) -> control maps
    (M, channels, R, R) in [0, 1]. ``canny`` reads photos and computes their edges; ``map``
    reads ready maps (``detector``, ``low`` and ``high``: the canny's). A file that cannot be
    read is an error that names it."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    elif path.is_file():
        files = [path]
    else:
        raise ValueError(f"--control {path} does not exist")
    if not files:
        raise ValueError(f"--control {path} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    maps = []
    for file in files:
        pixels = read_map(file, 3 if kind == "canny" else channels)
        if pixels is None:
            raise ValueError(f"--control: cannot read {file}")
        pixels = fit_map(pixels, resolution, str(file))
        if kind == "canny":
            pixels = canny_edges(pixels[None] * 2 - 1, low, high, detector)[0]  # (1, R, R)
        maps.append(pixels)
    return torch.stack(maps)
