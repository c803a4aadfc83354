"""Video datasets: clips (T, 3, R, R) in [-1, 1] with a class label.

``MovingDigitsDataset`` is embedded (no download): each of the 1,797 digits bounces across a
black canvas on a trajectory fixed by its index. ``VideoFolderDataset`` reads a folder of
video files (``root/<class>/<video>``, or files directly in ``root``: class 0) with PyAV and
cuts every video into non-overlapping clips of ``frames`` frames taken every ``stride``-th.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from argen.data.digits import DigitsDataset
from argen.data.images import DatasetError

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


class MovingDigitsDataset(Dataset):
    """A digit (half the canvas wide) moving in a straight line and bouncing off the edges."""

    classes = DigitsDataset.classes
    caption_template = "a moving handwritten digit {}"

    def __init__(self, resolution: int = 32, frames: int = 16):
        digits = DigitsDataset(resolution // 2)
        self.sprites, self.labels = digits.images[:, :1], digits.labels  # (N, 1, s, s) in [-1, 1]
        self.resolution, self.frames = resolution, frames

    def __len__(self) -> int:
        return len(self.labels)

    def label(self, index: int) -> int:
        return int(self.labels[index])

    def trajectory(self, index: int) -> list[tuple[int, int]]:
        """Top-left corners (y, x) of the digit in every frame."""
        rng = np.random.default_rng(index)
        room = self.resolution - self.sprites.shape[-1]
        pos = rng.integers(0, room + 1, 2)
        vel = rng.choice([-2, -1, 1, 2], 2)
        corners = []
        for _ in range(self.frames):
            corners.append((int(pos[0]), int(pos[1])))
            pos = pos + vel
            for axis in range(2):  # reflect off the walls
                if not 0 <= pos[axis] <= room:
                    vel[axis] = -vel[axis]
                    pos[axis] = np.clip(2 * np.clip(pos[axis], 0, room) - pos[axis], 0, room)
        return corners

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        side, sprite = self.sprites.shape[-1], self.sprites[index]
        clip = torch.full((self.frames, 1, self.resolution, self.resolution), -1.0)
        for t, (y, x) in enumerate(self.trajectory(index)):
            clip[t, :, y : y + side, x : x + side] = sprite
        return clip.expand(-1, 3, -1, -1).contiguous(), int(self.labels[index])


class VideoFolderDataset(Dataset):
    """Clips of the videos under ``root``, center-cropped square and resized (bilinear)."""

    def __init__(self, root: str | Path, resolution: int, frames: int = 16, stride: int = 1):
        self.root, self.resolution, self.frames, self.stride = Path(root), resolution, frames, stride
        folders = sorted(p for p in self.root.iterdir() if p.is_dir())
        self.classes = [p.name for p in folders] or [self.root.name]
        labelled = [(f, k) for k, d in enumerate(folders or [self.root]) for f in sorted(d.iterdir())]
        self.clips = []  # (file, label, first frame)
        span = (frames - 1) * stride + 1
        for path, label in labelled:
            if path.suffix.lower() not in VIDEO_EXTENSIONS:
                continue
            count = frame_count(path)
            self.clips += [(path, label, start) for start in range(0, count - span + 1, frames * stride)]
        if not self.clips:
            raise DatasetError(f"{self.root} has no video with {span} frames ({sorted(VIDEO_EXTENSIONS)})")

    def __len__(self) -> int:
        return len(self.clips)

    def label(self, index: int) -> int:
        return self.clips[index][1]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label, start = self.clips[index]
        wanted = set(range(start, start + self.frames * self.stride, self.stride))
        with av.open(str(path)) as container:
            frames = [
                torch.from_numpy(f.to_ndarray(format="rgb24"))
                for i, f in enumerate(container.decode(video=0))
                if i in wanted
            ]
        clip = torch.stack(frames).permute(0, 3, 1, 2).float() / 127.5 - 1  # (T, 3, H, W)
        h, w = clip.shape[-2:]
        side = min(h, w)
        clip = clip[..., (h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]
        clip = F.interpolate(clip, size=(self.resolution,) * 2, mode="bilinear", align_corners=False)
        return clip.clamp(-1, 1), label


def frame_count(path: Path) -> int:
    """Frames in a video file (decoded and counted: container metadata is often missing)."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def is_video_folder(root: str | Path) -> bool:
    root = Path(root)
    return root.is_dir() and any(p.suffix.lower() in VIDEO_EXTENSIONS for p in root.rglob("*"))
