"""Sample batches in the ADM evaluator format: ``arr_0`` uint8 (N, H, W, C), plus the class id
or prompt index of each sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """pixels in [-1, 1] (B, C, H, W) -> uint8 (B, H, W, C)."""
    images = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return images.permute(0, 2, 3, 1).cpu().numpy()


def from_uint8(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, C) -> float pixels in [-1, 1] (B, C, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def save_npz(path: str | Path, images: np.ndarray, **arrays: np.ndarray) -> None:
    """``arr_0`` plus named per-sample arrays (``labels`` for class ids, ``prompt_ids``)."""
    np.savez(path, arr_0=images, **arrays)


def load_npz(path: str | Path) -> np.ndarray:
    with np.load(path) as data:
        if "arr_0" not in data:
            raise ValueError(f"{path} has no 'arr_0' array (expected uint8 N,H,W,C)")
        images = data["arr_0"]
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"{path}: arr_0 must be uint8 (N, H, W, C), got {images.dtype} {images.shape}")
    return images
