"""What ``sample.py`` writes: ``samples.npz``, ``grid.png``, an mp4 per video sample, and
``metrics.json`` when the run is evaluated or has statistics of its own."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from argen.data.video_io import write_mp4
from argen.images import save_npz


def tile(images: np.ndarray, columns: int, padding: int) -> np.ndarray:
    """uint8 images (N, H, W, C) -> one grid (H', W', C) of ``columns`` per row, black
    ``padding`` between and around them (torchvision's ``make_grid`` layout)."""
    n, h, w, c = images.shape
    rows, columns = -(-n // columns), min(columns, n)
    grid = np.zeros((rows * (h + padding) + padding, columns * (w + padding) + padding, c), np.uint8)
    for i, image in enumerate(images):
        y, x = (i // columns) * (h + padding) + padding, (i % columns) * (w + padding) + padding
        grid[y : y + h, x : x + w] = image
    return grid


def sample_grid(images: np.ndarray, columns: int) -> np.ndarray:
    """uint8 samples -> one PNG-ready grid (H, W, C): ten rows of ``columns`` images, or for
    clips (N, T, H, W, C) one row of frames per sample, ten samples."""
    if images.ndim == 5:
        first = images[:10]
        return tile(first.reshape(-1, *first.shape[2:]), first.shape[1], padding=2)  # (10*T, H, W, C)
    return tile(images[: columns * 10], columns, padding=1)


def write_samples(
    run, out: Path, images: np.ndarray, valid: np.ndarray, arrays: dict[str, np.ndarray]
) -> None:
    """samples.npz (with validity flags where samples can be invalid), grid.png, videos/*.mp4."""
    extra = {"valid": valid} if run.paradigm.checks_validity else {}
    save_npz(out / "samples.npz", images, **arrays, **extra)
    run.conditions.write_names(out, run.names)
    if images.ndim == 5:  # videos: an mp4 each
        (out / "videos").mkdir(exist_ok=True)
        for i, clip in enumerate(images):
            write_mp4(out / "videos" / f"{i:06d}.mp4", clip, fps=run.args.fps)
    grid, columns = run.paradigm.grid_images(images, run.extras, len(run.names))
    Image.fromarray(sample_grid(grid, columns)).save(out / "grid.png")


def write_metrics(
    run, out: Path, images: np.ndarray, valid: np.ndarray, class_ids: np.ndarray | None, seconds: float
) -> None:
    """metrics.json: the asked-for metrics, stream validity, and the extras' statistics."""
    args, extras = run.args, run.extras
    reported = {}  # what the run's options add (speculation statistics, given frames, ...)
    for option in run.paradigm.sample_options:
        reported |= option.metrics(args, extras)
    if not (run.evaluation.wanted or reported or run.paradigm.checks_validity):
        return
    metrics = run.evaluation(images, class_ids) if run.evaluation.wanted else {}
    if run.paradigm.checks_validity:  # how many generated samples were well formed
        metrics["streams"] = {"valid": int(valid.sum()), "invalid": int((~valid).sum())}
    metrics.update(
        num_samples=len(images),
        sampling=vars(run.config) | {"seed": args.seed, "weights": str(run.model_dir)},
        sampling_seconds=seconds,  # this invocation's share (main process)
    )
    metrics.update(reported)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    for warning in metrics.get("warnings", []):
        print(f"WARNING: {warning}", file=sys.stderr)
    print(json.dumps({k: v for k, v in metrics.items() if k != "sampling"}, indent=2))
