"""Images from a generator and its tokenizer, in seeded batches that any number of
processes can share, skip when already drawn, and gather."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from argen.images import to_uint8
from argen.models.llama import Condition
from argen.models.next_frame import NextFrameLlama
from argen.sampling.config import SamplingConfig
from argen.sampling.continuous import sample_continuous_next_scale, sample_continuous_next_token
from argen.sampling.next_frame import sample_next_frame
from argen.sampling.next_scale import sample_next_scale
from argen.sampling.next_token import GridSampler, sample_next_token
from argen.tokenizers.layout import ByteLayout, ContinuousLayout, ScaleLayout, VideoLayout


def batch_seed(seed: int, batch_index: int) -> int:
    """The seed of one batch: the same whichever process draws it."""
    return seed * 1_000_003 + batch_index


@torch.no_grad()
def generate_batch(
    model: torch.nn.Module,
    tokenizer: torch.nn.Module,
    condition: Condition,
    config: SamplingConfig,
    seed: int,
    compile: bool = False,
    resize: int | None = None,
    grid_sampler: GridSampler | None = None,
    edit: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None,
    given: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample one image per condition row (class ids (b,) or a Caption) -> (uint8 (b, H, W, C),
    or (b, T, H, W, C) for video tokenizers; valid (b,) bool: whether each byte stream was well
    formed, always true for other tokens).

    ``resize`` resamples the decoded images (plain bicubic, as LlamaGen does before evaluating
    its 384 px models at 256 px). ``grid_sampler`` replaces next-token sampling on raster grids
    (speculative decoding, also of continuous tokens; coarse-to-fine); ``edit`` (next-scale
    only) keeps a source image's tokens where its mask says so; ``given`` (video only) holds
    the ids (b, n, h, w) of the first n latent frames, kept as they are (frame prediction)."""
    device = next(model.parameters()).device
    layout = tokenizer.layout
    generator = torch.Generator(device=device).manual_seed(seed)
    condition = condition.to(device)
    valid = torch.ones(len(condition), dtype=torch.bool)
    if isinstance(layout, ByteLayout):  # byte streams: each row stops at its EOS
        ids = sample_next_token(
            model, condition, config, generator, compile=compile, stop_token=layout.eos, pad_token=layout.pad
        )
        unfinished = int((~(ids == layout.eos).any(1)).sum())
        if unfinished:
            warnings.warn(
                f"{unfinished} of {len(ids)} streams reached max_len ({layout.max_len}) without EOS; "
                "they are decoded as they are",
                stacklevel=3,  # the caller of the no_grad-wrapped generate_batch
            )
        images, valid = tokenizer.decode_checked(ids)
    elif isinstance(layout, ContinuousLayout):
        if layout.scales:
            tokens = sample_continuous_next_scale(model, tokenizer, condition, config, generator)
        elif grid_sampler is not None:  # continuous speculative decoding
            tokens = grid_sampler(model, condition, config, generator)
        else:
            tokens = sample_continuous_next_token(model, condition, config, generator)
        images = tokenizer.decode(tokens)  # (b, C, H, W)
    elif isinstance(layout, VideoLayout):  # frames of ids, token by token or frame by frame
        sampler = sample_next_frame if isinstance(model, NextFrameLlama) else sample_next_token
        ids = sampler(
            model, condition, config, generator, given=None if given is None else given.flatten(1).to(device)
        )
        images = tokenizer.decode(ids.view(-1, layout.frames, layout.height, layout.width))  # (b, T, C, H, W)
    elif isinstance(layout, ScaleLayout):  # next-scale: ids per scale
        images = tokenizer.decode(sample_next_scale(model, tokenizer, condition, config, generator, edit))
    else:
        if grid_sampler is not None:
            ids = grid_sampler(model, condition, config, generator)
        else:
            ids = sample_next_token(model, condition, config, generator, compile=compile)  # (b, h*w)
        images = tokenizer.decode(ids.view(-1, layout.height, layout.width))  # (b, C, H, W)
    if resize is not None:
        images = F.interpolate(images, size=(resize, resize), mode="bicubic", align_corners=False)
    return to_uint8(images), valid.cpu().numpy()  # video clips: (b, T, H, W, C)


class BatchStore:
    """Finished batches on disk (``<out>/.parts/batch-NNNNNN.npy`` and the validity flags in
    ``valid-NNNNNN.npy``), so an interrupted run continues where it stopped. Parts drawn with
    other settings are discarded."""

    def __init__(self, out: Path, settings: dict):
        self.dir = out / ".parts"
        self.settings = json.loads(json.dumps(settings))  # as it reads back from disk

    def prepare(self) -> None:
        """Main process only: start the folder, or keep it if its settings match."""
        stamp = self.dir / "settings.json"
        if self.dir.exists() and (not stamp.is_file() or json.loads(stamp.read_text()) != self.settings):
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps(self.settings, indent=2))

    def path(self, index: int, kind: str = "batch") -> Path:
        return self.dir / f"{kind}-{index:06d}.npy"

    def has(self, index: int) -> bool:
        return self.path(index).is_file()

    def put(self, index: int, images: np.ndarray, valid: np.ndarray) -> None:
        """Write the flags, then the images: a batch counts as drawn once its images exist."""
        for kind, array in (("valid", valid), ("batch", images)):
            tmp = self.dir / f".{kind}-{index:06d}.tmp.npy"
            np.save(tmp, array)
            os.replace(tmp, self.path(index, kind))

    def gather(self, num_batches: int) -> tuple[np.ndarray, np.ndarray]:
        """All images (N, H, W, C) and validity flags (N,), in batch order."""
        images = np.concatenate([np.load(self.path(b)) for b in range(num_batches)])
        return images, np.concatenate([np.load(self.path(b, "valid")) for b in range(num_batches)])

    def clear(self) -> None:
        shutil.rmtree(self.dir)
