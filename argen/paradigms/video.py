"""Video tokens: latent frames x grid of ids (frame-wise or causal video VQ) with 3-D RoPE,
generated token by token (frame-causal) or frame by frame (``paradigm: next_frame``, FAR-style
block-causal); both continue the first frames of real clips (frame prediction)."""

from __future__ import annotations

from dataclasses import replace

import torch

from argen.checkpoint import CheckpointError
from argen.models.next_frame import NextFrameLlama
from argen.paradigms.base import Paradigm, SamplingExtras
from argen.paradigms.options import GIVEN_FRAMES
from argen.sampling.decode import model_device
from argen.sampling.next_frame import sample_next_frame
from argen.sampling.next_token import NextTokenOptions, sample_next_token
from argen.tokenizers.layout import VideoLayout
from argen.tokenizers.protocols import VideoTokenizer


class FramePrompts:
    """Frame prediction: sample i continues the first ``frames`` frames of clip i (modulo the
    dataset's size) and is conditioned on that clip's class."""

    def __init__(self, dataset, tokenizer: torch.nn.Module, frames: int, device: torch.device):
        self.dataset, self.tokenizer, self.device = dataset, tokenizer, device
        self.latent = tokenizer.latent_frames(frames)

    def labels(self, count: int) -> torch.Tensor:
        return torch.tensor([self.dataset.label(i % len(self.dataset)) for i in range(count)])

    def tokens(self, indices: range) -> torch.Tensor:
        """The given ids (b, n, h, w) of the samples ``indices``: their clips' first latent frames."""
        clips = torch.stack([self.dataset[i % len(self.dataset)][0] for i in indices]).to(self.device)
        return self.tokenizer.encode(clips)[:, : self.latent]


class VideoTokens(Paradigm):
    name = "video_tokens"
    layout = VideoLayout
    default = True
    sample_options = (GIVEN_FRAMES,)

    def sizes(self, layout: VideoLayout) -> dict:
        return super().sizes(layout) | {"rope": "3d", "frames": layout.frames}

    def check_pair(self, model, layout, model_dir, tokenizer_dir):
        super().check_pair(model, layout, model_dir, tokenizer_dir)
        if layout.frames != model.config.frames:
            raise CheckpointError(
                f"tokenizer {tokenizer_dir} ({layout}) and generator {model_dir} ({model.config.frames} "
                "frames) disagree on frames"
            )

    def sample(self, model, tokenizer, condition, config, generator, extras: SamplingExtras, given=None):
        given = None if given is None else given.flatten(1).to(model_device(model))  # (B, n*h*w)
        return sample_next_token(model, condition, config, generator, NextTokenOptions(given=given))

    def decode(self, tokenizer: VideoTokenizer, ids: torch.Tensor):
        layout = tokenizer.layout
        return super().decode(tokenizer, ids.view(-1, layout.frames, layout.height, layout.width))

    def frame_prompts(
        self, model, tokenizer: VideoTokenizer, clips, given_frames: int, dataset: str, device: torch.device
    ) -> FramePrompts:
        """The real ``clips`` (of ``dataset``, named in errors) whose first ``given_frames``
        frames the samples keep."""
        if model.config.condition != "class":
            raise ValueError("frame prediction conditions each sample on its clip's class")
        frames = tokenizer.config.frames
        if not 0 < given_frames < frames:
            raise ValueError(f"--given-frames must lie in [1, {frames - 1}], got {given_frames}")
        if not hasattr(clips, "label"):
            raise ValueError(f"--given-from {dataset} is not a video dataset")
        if len(clips.classes) != model.config.num_classes:
            raise ValueError(
                f"--given-from {dataset} has {len(clips.classes)} classes, "
                f"the generator {model.config.num_classes}"
            )
        return FramePrompts(clips, tokenizer, given_frames, device)


class NextFrame(VideoTokens):
    """All tokens of a frame per pass (``paradigm: next_frame``)."""

    name = "next_frame"
    generators = (NextFrameLlama,)
    default = False
    requirement = "next_frame is for video tokenizers"

    def build(self, model, options, tokenizer: VideoTokenizer, sizes):
        return NextFrameLlama(replace(model, **sizes))

    def sample(self, model, tokenizer, condition, config, generator, extras: SamplingExtras, given=None):
        given = None if given is None else given.flatten(1).to(model_device(model))
        return sample_next_frame(model, condition, config, generator, given=given)
