"""Caption features computed once, so that generator training never runs the text encoder.

A feature directory holds safetensors shards of ``features`` (N, T, C) in bfloat16 (T5
activations can overflow float16) and ``mask`` (N, T), one row per distinct caption, plus
``meta.json`` naming the encoder, the length and the captions it was built from.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from argen.checkpoint import replace_directory
from argen.data.token_cache import META_NAME, read_meta
from argen.models.caption import Caption
from argen.text.encoder import TextEncoder


def text_feature_key(text_encoder: str, caption_len: int, captions: list[str]) -> dict:
    """What a feature directory was built from; it is reused only when this matches."""
    digest = hashlib.sha256(json.dumps(captions).encode()).hexdigest()
    return {"text_encoder": text_encoder, "caption_len": caption_len, "captions_sha256": digest}


def build_text_features(
    encoder: TextEncoder, captions: list[str], out_dir: str | Path, key: dict, shard_size: int = 50_000
) -> Path:
    """Encode ``captions`` into ``out_dir`` (written to a temporary folder, then renamed)."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}-tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for start in range(0, len(captions), shard_size):
        caption = encoder(captions[start : start + shard_size])
        shard = {"features": caption.features.to(torch.bfloat16).cpu(), "mask": caption.mask.cpu()}
        save_file(shard, str(tmp / f"shard-{start:09d}.safetensors"))
    meta = {**key, "num_captions": len(captions), "dim": encoder.dim, "captions": captions}
    (tmp / META_NAME).write_text(json.dumps(meta, indent=1) + "\n")
    replace_directory(tmp, out_dir)
    return out_dir


class TextFeatures:
    """A feature directory in memory; ``features[ids]`` -> :class:`Caption` (float32)."""

    def __init__(self, directory: str | Path):
        directory = Path(directory)
        self.meta = read_meta(directory)
        parts = [load_file(str(s)) for s in sorted(directory.glob("shard-*.safetensors"))]
        if not parts:
            raise FileNotFoundError(f"no caption feature shards in {directory}")
        self.features = torch.cat([p["features"] for p in parts])  # (N, T, C) bfloat16
        self.mask = torch.cat([p["mask"] for p in parts])  # (N, T) bool

    def __len__(self) -> int:
        return len(self.mask)

    @property
    def dim(self) -> int:
        return self.features.shape[-1]

    def __getitem__(self, ids) -> Caption:
        return Caption(self.features[ids].float(), self.mask[ids])
