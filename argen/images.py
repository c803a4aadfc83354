"""Pixels as uint8 arrays, and sample batches in the ADM evaluator format: ``arr_0`` uint8
(N, H, W, C), plus the class id or prompt index of each sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """pixels in [-1, 1] (B, C, H, W), or clips (B, T, C, H, W) -> uint8 (B, H, W, C) or
    (B, T, H, W, C)."""
    images = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    lead = tuple(range(images.ndim - 3))
    return images.permute(*lead, -2, -1, -3).cpu().numpy()


def from_uint8(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, C) or (B, T, H, W, C) -> float pixels in [-1, 1] (B, C, H, W) or
    (B, T, C, H, W)."""
    lead = tuple(range(images.ndim - 3))
    return torch.from_numpy(np.ascontiguousarray(images)).permute(*lead, -1, -3, -2).float() / 127.5 - 1


def save_npz(path: str | Path, images: np.ndarray, **arrays: np.ndarray) -> None:
    """``arr_0`` plus named per-sample arrays (``labels`` for class ids, ``prompt_ids``)."""
    np.savez(path, arr_0=images, **arrays)


def load_npz(path: str | Path, video: bool = False) -> np.ndarray:
    """``arr_0`` of a samples file: uint8 (N, H, W, C), or with ``video`` (N, T, H, W, C)."""
    shape = "N, T, H, W, C" if video else "N, H, W, C"
    with np.load(path) as data:
        if "arr_0" not in data:
            raise ValueError(f"{path} has no 'arr_0' array (expected uint8 {shape})")
        images = data["arr_0"]
    if images.dtype != np.uint8 or images.ndim != 4 + video:
        raise ValueError(f"{path}: arr_0 must be uint8 ({shape}), got {images.dtype} {images.shape}")
    return images
