"""Video files: uint8 frames (T, H, W, C) to an H.264 mp4 (PyAV) and back."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from argen.checkpoint import atomic_file
from argen.tokenizers.avc import resolve_codec


def write_mp4(path: str | Path, frames: np.ndarray, fps: int = 8, crf: int = 17) -> None:
    """Write uint8 frames (T, H, W, 3) as a yuv420p mp4 (libx264 at ``crf``, else MPEG-4 at
    high quality), atomically. Height and width must be even (4:2:0 chroma)."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"mp4 (yuv420p) needs an even height and width, got {frames.shape[1:3]}")
    codec = resolve_codec("auto")

    def write(tmp: Path) -> None:
        with av.open(str(tmp), mode="w") as container:
            stream = container.add_stream(codec, rate=fps)
            stream.height, stream.width = frames.shape[1:3]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf)} if codec == "libx264" else {"qscale": "2"}
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())

    atomic_file(path, write, suffix=".mp4")


def read_frames(path: str | Path) -> np.ndarray:
    """Every frame of a video file as uint8 (T, H, W, 3)."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
