"""Bitwise video generation: frame-wise binary tokens (B, T, h, w, d) generated token by token,
frame-causal, with the bitwise head of :mod:`argen.paradigms.bitwise` and a 3-D RoPE."""

from __future__ import annotations

import torch

from argen.checkpoint import CheckpointError
from argen.paradigms.bitwise import BitwiseRaster
from argen.paradigms.registry import register_paradigm
from argen.tokenizers.binary_frames import VideoBitLayout, VideoBitTokenizer


class BitwiseVideo(BitwiseRaster):
    name = "bitwise_video"
    layout = VideoBitLayout
    default = True
    requirement = "bitwise_video needs a frame-wise binary tokenizer (tokenizer: frame_binary)"

    def sizes(self, layout: VideoBitLayout) -> dict:
        grid = dict(grid_size=(layout.height, layout.width), bits=layout.bits)
        return grid | {"rope": "3d", "frames": layout.frames}

    def loss(self, model, tokenizer: VideoBitTokenizer, tokens, condition):
        return super().loss(model, tokenizer, tokens.flatten(1, 2), condition)  # (B, T*h, w, d)

    def check_pair(self, model, layout: VideoBitLayout, model_dir, tokenizer_dir):
        c = model.config
        if (layout.bits, layout.frames, (layout.height, layout.width)) != (
            c.bits,
            c.frames,
            tuple(c.grid_size),
        ):
            raise CheckpointError(
                f"tokenizer {tokenizer_dir} ({layout}) does not match generator {model_dir} "
                f"(bits {c.bits}, frames {c.frames}, grid {c.grid_size})"
            )

    def decode(self, tokenizer: VideoBitTokenizer, bits: torch.Tensor):
        layout = tokenizer.layout
        clips = tokenizer.decode(bits.view(-1, layout.frames, layout.height, layout.width, layout.bits))
        return clips, torch.ones(len(clips), dtype=torch.bool)


register_paradigm(BitwiseVideo())
