"""AVC-LM's tokenizer: a video clip's H.264 bytes are its tokens.

Clips (B, T, C, H, W) are encoded in memory by PyAV's libx264 (yuv420p, ``crf`` or ``qp``,
``gop``, ``preset``, no B-frames) as an Annex-B stream. The stream headers that every clip of one
configuration shares (SPS, PPS and the encoder's SEI before the first slice) are stripped,
as are the SPS/PPS repeated before later key frames; decode restores both. Where libx264 is
missing, ``codec: auto`` falls back to ``mpeg4`` (MPEG-4 Part 2, its VOL header stripped)
with a warning.

Decoding never raises on model output: whatever frames the decoder produces are kept, grey
frames fill the rest, and a clip is valid when it decodes to exactly T frames with no
decoder error.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import av
import av.logging
import numpy as np
import torch

from argen.images import to_uint8
from argen.tokenizers.byte_vocab import ByteStreamTokenizer, split_header

FORMATS = {"libx264": "h264", "mpeg4": "m4v"}
FIRST_PICTURE = {  # where the shared header ends: the first slice NAL / the first VOP
    "libx264": re.compile(rb"\x00\x00\x01[\x01\x05\x21\x25\x41\x45\x61\x65]"),
    "mpeg4": re.compile(rb"\x00\x00\x01\xb6"),
}
H264_KEY_SLICE = re.compile(rb"\x00\x00\x01[\x25\x45\x65]")  # IDR slice NAL units


@dataclass
class AVCConfig:
    resolution: int = 64
    frames: int = 16
    fps: int = 8
    crf: int = 30
    qp: int | None = None  # a constant quantiser instead of crf
    gop: int = 16  # frames between key frames
    preset: str = "veryfast"
    codec: str = "auto"  # auto: libx264 where available, else mpeg4 (with a warning)
    max_len: int = 4096  # tokens per clip, EOS included
    bpe: str = ""
    in_channels: int = 3

    def __post_init__(self) -> None:
        if self.resolution % 2:
            raise ValueError(f"yuv420p needs an even resolution, got {self.resolution}")
        if self.codec not in ("auto", *FORMATS):
            raise ValueError(f"codec must be auto, libx264 or mpeg4, got {self.codec!r}")
        if self.frames < 1 or self.gop < 1 or self.in_channels != 3:
            raise ValueError("AVC tokens need RGB clips, frames >= 1 and gop >= 1")


def resolve_codec(name: str) -> str:
    if name != "auto":
        return name
    if "libx264" in av.codecs_available:
        return "libx264"
    warnings.warn("PyAV has no libx264 here: AVC tokens fall back to the mpeg4 encoder", stacklevel=2)
    return "mpeg4"


class AVCTokenizer(ByteStreamTokenizer):
    """clips (B, T, 3, H, W) <-> H.264 (or MPEG-4) bytes as ids."""

    Config = AVCConfig

    def __init__(self, config: AVCConfig):
        super().__init__(config)
        self.codec = resolve_codec(config.codec)
        side = config.resolution
        blank = self.stream_bytes(np.zeros((config.frames, side, side, 3), np.uint8))
        first = FIRST_PICTURE[self.codec].search(blank)
        self.header = blank[: first.start()]
        # SPS + PPS (all before the SEI), which the encoder repeats before every later key frame
        sei = self.header.find(b"\x00\x00\x01\x06")
        self.repeated = b"" if self.codec != "libx264" else self.header[:sei] if sei > 0 else self.header

    def stream_bytes(self, clip: np.ndarray) -> bytes:
        """uint8 frames (T, H, W, 3) -> the encoded elementary stream."""
        c, buffer = self.config, io.BytesIO()
        container = av.open(buffer, mode="w", format=FORMATS[self.codec])
        stream = container.add_stream(self.codec, rate=c.fps)
        stream.width = stream.height = c.resolution
        stream.pix_fmt = "yuv420p"
        if self.codec == "libx264":
            rate = {"qp": str(c.qp)} if c.qp is not None else {"crf": str(c.crf)}
            stream.options = {**rate, "preset": c.preset, "g": str(c.gop), "bf": "0"}
        else:  # MPEG-4 Part 2 has a fixed quantiser scale (2-31)
            scale = c.qp if c.qp is not None else c.crf // 3
            stream.options = {"qscale": str(min(31, max(2, scale))), "g": str(c.gop), "bf": "0"}
        for frame in clip:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
        container.close()
        return buffer.getvalue()

    def streams(self, clips: torch.Tensor) -> list[bytes]:
        """clips in [-1, 1], (B, T, 3, H, W) -> each clip's stream without its shared headers."""
        c = self.config
        if clips.ndim != 5 or clips.shape[1:] != (c.frames, 3, c.resolution, c.resolution):
            raise ValueError(
                f"expected clips (B, {c.frames}, 3, {c.resolution}, {c.resolution}), got {tuple(clips.shape)}"
            )
        frames = to_uint8(clips)  # (B, T, H, W, 3)
        return [self.strip(self.stream_bytes(clip)) for clip in frames]

    def strip(self, data: bytes) -> bytes:
        """An encoded stream -> its body without the shared headers (``restore`` inverts it)."""
        body = split_header(data, self.header, "video")
        return body.replace(self.repeated, b"") if self.repeated else body

    def restore(self, body: bytes) -> bytes:
        """A stripped stream -> a decodable one: the header first, SPS/PPS before later key frames."""
        if self.repeated:
            first = H264_KEY_SLICE.match(body)
            body = H264_KEY_SLICE.sub(
                lambda m: self.repeated + m.group(0), body[first.end() if first else 0 :]
            )
            body = (b"" if first is None else first.group(0)) + body
        return self.header + body

    def render(self, stream: bytes) -> tuple[np.ndarray, bool]:
        """A stripped stream -> (uint8 frames (T, H, W, 3), grey where missing; valid)."""
        c, data = self.config, self.restore(stream)
        frames, errors = [], True
        previous = av.logging.get_level()
        av.logging.set_level(av.logging.ERROR)
        try:
            with (
                av.logging.Capture() as logs,
                av.open(io.BytesIO(data), format=FORMATS[self.codec]) as container,
            ):
                for frame in container.decode(video=0):
                    if (frame.width, frame.height) == (c.resolution, c.resolution) and len(frames) < c.frames:
                        frames.append(frame.to_ndarray(format="rgb24"))
            errors = any(level <= av.logging.ERROR for level, _, _ in logs)
        except Exception:  # noqa: BLE001 - model output may break the decoder in any way
            pass
        finally:
            av.logging.set_level(previous)
        ok = not errors and len(frames) == c.frames
        grey = np.full((c.resolution, c.resolution, 3), 128, np.uint8)
        return np.stack(frames + [grey] * (c.frames - len(frames))), ok
