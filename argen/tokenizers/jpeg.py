"""JPEG-LM's tokenizer: an image's JPEG bytes are its tokens.

Images are encoded by Pillow (baseline, standard Huffman tables, ``quality``, chroma
``subsampling``, optional restart markers every ``restart_interval`` MCUs so that damage
stays local). Everything up to the end of the scan header (SOI, JFIF, quantisation and
Huffman tables, frame and scan headers) is the same for every image of one configuration:
it is stripped from the token stream, as is the final EOI, and restored at decode.

Decoding never raises on model output: ids are cut at EOS, specials dropped, the header and
EOI restored, and whatever a lenient decode renders of the scan is kept, the rest grey (the
whole image when nothing renders). A sample is valid when its scan is exactly the image's
blocks (:mod:`argen.tokenizers.jpeg_scan`), since decoders render damaged scans silently.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageFile

from argen.images import to_uint8
from argen.tokenizers.byte_vocab import ByteStreamTokenizer, split_header
from argen.tokenizers.jpeg_scan import parse_header, scan_is_valid
from argen.tokenizers.jpeg_syntax import ScanAutomaton
from argen.tokenizers.stream_constraint import StreamConstraint

SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}
EOI = b"\xff\xd9"


@dataclass
class JPEGConfig:
    resolution: int = 256
    quality: int = 25  # JPEG-LM's
    subsampling: str = "4:2:0"
    restart_interval: int = 0  # MCUs between restart markers; 0: none
    max_len: int = 1024  # tokens per image, EOS included
    bpe: str = ""  # a byte-level BPE (Hugging Face tokenizers JSON); empty: raw bytes
    in_channels: int = 3

    def __post_init__(self) -> None:
        if self.subsampling not in SUBSAMPLING:
            raise ValueError(f"subsampling must be one of {sorted(SUBSAMPLING)}, got {self.subsampling!r}")
        if not 1 <= self.quality <= 95:
            raise ValueError(f"quality must lie in [1, 95], got {self.quality}")
        if self.in_channels != 3 or self.restart_interval < 0 or self.max_len < 2:
            raise ValueError("JPEG tokens need RGB images, restart_interval >= 0 and max_len >= 2")


class JPEGTokenizer(ByteStreamTokenizer):
    """pixels (B, 3, H, W) <-> JPEG scan bytes as ids."""

    Config = JPEGConfig

    def __init__(self, config: JPEGConfig):
        super().__init__(config)
        blank = self.jpeg_bytes(np.zeros((config.resolution, config.resolution, 3), np.uint8))
        self.header = blank[: scan_start(blank)]
        self.scan_format = parse_header(self.header)
        self.constraint: StreamConstraint | None = None

    def syntax(self) -> StreamConstraint:
        """The scan automaton over this vocabulary (built once, its tables filled as used)."""
        if self.constraint is None:
            automaton = ScanAutomaton(self.scan_format)
            self.constraint = StreamConstraint(automaton, self.vocab, self.config.max_len)
        return self.constraint

    def jpeg_bytes(self, image: np.ndarray) -> bytes:
        """One uint8 image (H, W, 3) -> its whole JPEG file."""
        c, buffer = self.config, io.BytesIO()
        options = {"restart_marker_blocks": c.restart_interval} if c.restart_interval else {}
        Image.fromarray(image).save(
            buffer, "JPEG", quality=c.quality, subsampling=SUBSAMPLING[c.subsampling], **options
        )
        return buffer.getvalue()

    def streams(self, pixels: torch.Tensor) -> list[bytes]:
        """pixels in [-1, 1], (B, 3, H, W) -> each image's scan bytes (header and EOI stripped)."""
        c = self.config
        if pixels.ndim != 4 or pixels.shape[1:] != (3, c.resolution, c.resolution):
            raise ValueError(
                f"expected pixels (B, 3, {c.resolution}, {c.resolution}), got {tuple(pixels.shape)}"
            )
        files = [self.jpeg_bytes(image) for image in to_uint8(pixels)]
        return [split_header(f, self.header, "JPEG").removesuffix(EOI) for f in files]

    def render(self, stream: bytes) -> tuple[np.ndarray, bool]:
        image = render_jpeg(self.header + stream + EOI, self.config.resolution)
        return image, scan_is_valid(stream, self.scan_format)


def render_jpeg(data: bytes, side: int) -> np.ndarray:
    """Whatever a lenient decoder makes of a JPEG file, as uint8 (side, side, 3); grey where
    nothing renders. Never raises."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    canvas = Image.new("RGB", (side, side), (128, 128, 128))
    try:
        with warnings.catch_warnings(), Image.open(io.BytesIO(data)) as image:
            warnings.simplefilter("ignore")
            image.load()
            canvas.paste(image.convert("RGB").crop((0, 0, side, side)))
    except Exception:  # noqa: BLE001 - model output may break the decoder in any way
        pass
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous
    return np.asarray(canvas)


def scan_start(jpeg: bytes) -> int:
    """Offset of the first entropy-coded byte: just past the SOS segment."""
    sos = jpeg.find(b"\xff\xda")
    if sos < 0:
        raise ValueError("no scan (SOS) in the JPEG stream")
    return sos + 2 + int.from_bytes(jpeg[sos + 2 : sos + 4], "big")
