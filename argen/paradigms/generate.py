"""Images from a generator and its tokenizer, in seeded batches that any number of
processes can share, skip when already drawn, and gather."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from argen.checkpoint import atomic_file
from argen.images import to_uint8
from argen.models.llama import Condition
from argen.paradigms.base import Paradigm, SamplingExtras
from argen.sampling.config import SamplingConfig
from argen.sampling.decode import model_device


def batch_seed(seed: int, batch_index: int) -> int:
    """The seed of one batch: the same whichever process draws it."""
    return seed * 1_000_003 + batch_index


@dataclass
class Generation:
    """What stays fixed across a run's batches: the paradigm with its generator and tokenizer,
    the sampling settings and extras, and ``resize``: a plain bicubic resampling of the decoded
    images (as LlamaGen does before evaluating its 384 px models at 256 px)."""

    paradigm: Paradigm
    model: torch.nn.Module
    tokenizer: torch.nn.Module
    config: SamplingConfig
    extras: SamplingExtras = field(default_factory=SamplingExtras)
    resize: int | None = None


@torch.no_grad()
def generate_batch(
    run: Generation, condition: Condition, seed: int, given: torch.Tensor | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sample one image per condition row (class ids (b,) or a Caption) -> (uint8 (b, H, W, C),
    or (b, T, H, W, C) for video; valid (b,) bool: whether each sample decoded from well-formed
    tokens, always true except for byte streams). ``given`` (video) holds the ids (b, n, h, w) of
    the first n latent frames, kept as they are (frame prediction), or the control maps."""
    device = model_device(run.model)
    generator = torch.Generator(device=device).manual_seed(seed)
    tokens = run.paradigm.sample(
        run.model, run.tokenizer, condition.to(device), run.config, generator, run.extras, given
    )
    images, valid = run.paradigm.decode(run.tokenizer, tokens)  # (b, [T,] C, H, W), (b,)
    if run.resize is not None:
        images = F.interpolate(images, size=(run.resize, run.resize), mode="bicubic", align_corners=False)
    return to_uint8(images), valid.cpu().numpy()


FINISHED = ".settings.json"  # beside a run's results: the settings that drew them
PART_IMAGES = 256  # samples per part file, at least (whole batches)


class BatchStore:
    """Finished parts on disk (``<out>/.parts/part-NNNNNN.npz``: the images and validity flags of
    ``PART_IMAGES`` or more consecutive samples, whole batches), so an interrupted run continues
    where it stopped without one file per batch. An output folder holds one run: anything else in
    it (another run's results, or parts drawn with other settings) is refused unless overwritten."""

    def __init__(self, out: Path, settings: dict):
        self.out, self.dir = out, out / ".parts"
        self.settings = json.loads(json.dumps(settings))  # as it reads back from disk

    @property
    def resumable(self) -> bool:
        """Whether the folder holds parts drawn with these settings."""
        return self.stamped(self.dir / "settings.json")

    def stamped(self, stamp: Path) -> bool:
        return stamp.is_file() and json.loads(stamp.read_text()) == self.settings

    def stamp_results(self, directory: Path) -> None:
        """Record beside a run's results the settings that drew them (``FINISHED``)."""
        (directory / FINISHED).write_text(json.dumps(self.settings, indent=2))

    def check(self, overwrite: bool) -> None:
        """Refuse a folder that holds anything but this run: its parts, or the results of this same
        run drawn before (they are written again). ``overwrite`` replaces whatever it holds."""
        others = (
            [p.name for p in self.out.iterdir() if p.name not in (".parts", FINISHED)]
            if self.out.is_dir()
            else []
        )
        same_run = self.resumable or self.stamped(self.out / FINISHED)
        if not overwrite and (others or self.dir.exists()) and not same_run:
            held = ", ".join(sorted(others)[:5]) or "parts drawn with other settings"
            raise ValueError(
                f"{self.out} already holds another run ({held}); pass --overwrite to replace it "
                "or choose another --out"
            )

    def prepare(self) -> None:
        """Main process only: start the parts folder, or keep it if its settings match."""
        if self.dir.exists() and not self.resumable:
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "settings.json").write_text(json.dumps(self.settings, indent=2))

    def path(self, index: int) -> Path:
        return self.dir / f"part-{index:06d}.npz"

    def has(self, index: int) -> bool:
        return self.path(index).is_file()

    def put(self, index: int, images: np.ndarray, valid: np.ndarray) -> None:
        """Write one part (atomically: a part counts as drawn once its file exists)."""
        atomic_file(self.path(index), lambda tmp: np.savez(tmp, images=images, valid=valid), suffix=".npz")

    def gather(self, num_parts: int) -> tuple[np.ndarray, np.ndarray]:
        """All images (N, H, W, C) and validity flags (N,), in order."""
        parts = [np.load(self.path(p)) for p in range(num_parts)]
        images = np.concatenate([part["images"] for part in parts])
        return images, np.concatenate([part["valid"] for part in parts])
