"""What ``sample.py`` samples with: the run's weights and tokenizer, checked against each
other, the conditions, and the optional draft model, fine-label model and edit source."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from argen import models
from argen.checkpoint import CheckpointError, is_run, weights_of
from argen.data import ImageFolderDataset, build_dataset
from argen.data.images import load_rgb
from argen.models.continuous import ContinuousLlama, ContinuousNextScaleLlama
from argen.models.draft_head import DraftHead
from argen.models.refiner import FineLabelTransformer
from argen.sampling.coarse_to_fine import Refinement
from argen.sampling.continuous_speculative import ContinuousSpeculation, ContinuousSpeculativeConfig
from argen.sampling.next_scale import keep_masks
from argen.sampling.speculative import Speculation, SpeculativeConfig
from argen.text import TextEncoder, check_prompts, read_prompts_file, warn_truncated
from argen.tokenizers.layout import CoarseToFineLayout, ContinuousLayout, GridLayout, ScaleLayout, VideoLayout


def resolve_dirs(args: argparse.Namespace) -> tuple[Path, Path]:
    run = Path(args.ckpt)
    if is_run(run):
        model_dir, tokenizer_dir = weights_of(run, args.weights), args.tokenizer or run / "tokenizer"
    else:
        bundled = run / "tokenizer"  # a converted model may carry its tokenizer
        model_dir, tokenizer_dir = run, args.tokenizer or (bundled if bundled.is_dir() else None)
    if tokenizer_dir is None:
        raise CheckpointError(f"{run} is a bare model: pass --tokenizer DIR")
    return model_dir, Path(tokenizer_dir)


def check_pair(model: torch.nn.Module, layout, model_dir: Path, tokenizer_dir: Path) -> None:
    """Refuse a tokenizer whose tokens the generator was not trained on."""
    c = model.config
    continuous = isinstance(layout, ContinuousLayout)
    if continuous != isinstance(model, (ContinuousLlama, ContinuousNextScaleLlama)):
        raise CheckpointError(
            f"tokenizer {tokenizer_dir} ({layout}) and generator {model_dir} disagree on continuous tokens"
        )
    size = layout.token_dim if continuous else layout.vocab_size
    if (size, (layout.height, layout.width)) != (
        c.token_dim if continuous else c.vocab_size,
        tuple(c.grid_size),
    ):
        raise CheckpointError(
            f"tokenizer {tokenizer_dir} ({layout}) does not match generator {model_dir} "
            f"(vocab {c.vocab_size}, grid {c.grid_size})"
        )
    if getattr(layout, "frames", 1) != getattr(c, "frames", 1):
        raise CheckpointError(
            f"tokenizer {tokenizer_dir} ({layout}) and generator {model_dir} ({c.frames} frames) "
            "disagree on frames"
        )
    scales = tuple(getattr(c, "patch_nums", ()))
    if scales != tuple(getattr(layout, "scales", ())):
        raise CheckpointError(
            f"tokenizer {tokenizer_dir} ({layout}) and generator {model_dir} (scales {scales or None}) "
            "do not fit: next-scale generators need a multi-scale tokenizer with the same scales"
        )


def parse_classes(spec: str | None, num_classes: int) -> list[int]:
    if spec in (None, "all"):
        return list(range(num_classes))
    try:
        ids = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f'--classes must be "all" or comma-separated integers, got {spec!r}') from None
    bad = [i for i in ids if not 0 <= i < num_classes]
    if bad or not ids:
        raise ValueError(f"class ids must lie in [0, {num_classes}); got {spec!r}")
    return ids


def load_speculation(
    args: argparse.Namespace, model: torch.nn.Module, tokenizer: torch.nn.Module, device, dtype
) -> Speculation | ContinuousSpeculation | None:
    """The draft model and acceptance settings of ``--speculative``, checked against the target."""
    if not args.speculative:
        return None
    layout = tokenizer.layout
    continuous = isinstance(layout, ContinuousLayout) and not layout.scales
    if not (isinstance(layout, GridLayout) or continuous):
        raise ValueError("--speculative needs a next-token generator over ids or continuous tokens")
    run = Path(args.speculative)
    draft_dir = weights_of(run, args.weights) if is_run(run) else run
    draft = models.load(draft_dir).to(device, dtype)
    if continuous:
        if not isinstance(draft, ContinuousLlama) or args.relaxed_delta > 0:
            raise ValueError(
                "continuous targets take a continuous next-token draft and no relaxed acceptance"
            )
        if args.flow_solver != "sde" or args.flow_noise <= 0:
            raise ValueError("continuous speculative decoding needs --flow-solver sde and --flow-noise > 0")
        keys = ("token_dim", "grid_size", "condition", "num_classes")
        if any(getattr(draft.config, k) != getattr(model.config, k) for k in keys):
            raise CheckpointError(f"draft {draft_dir} does not share the target's {', '.join(keys)}")
        return ContinuousSpeculation(
            draft, ContinuousSpeculativeConfig(args.draft_length, args.residual_tries)
        )
    keys = ("vocab_size", "grid_size", "condition", "num_classes")
    if any(getattr(draft.config, k) != getattr(model.config, k) for k in keys):
        raise CheckpointError(f"draft {draft_dir} does not share the target's {', '.join(keys)}")
    if isinstance(draft, DraftHead) and not torch.equal(draft.output.weight, model.output.weight):
        raise CheckpointError(
            f"draft head {draft_dir} was trained on another target (or the target's other weights: "
            "heads are trained on its ema weights when it has them)"
        )
    spec = SpeculativeConfig(args.draft_length, args.relaxed_k, args.relaxed_delta, args.relaxed_lambda)
    codebook = tokenizer.quantize.codebook().detach() if spec.relaxed else None
    return Speculation(draft, spec, codebook)


def load_refinement(
    args: argparse.Namespace, model: torch.nn.Module, tokenizer: torch.nn.Module, device, dtype
) -> Refinement | None:
    """The fine-label model of a coarse-to-fine generator, checked against it and its tokenizer."""
    coarse = isinstance(tokenizer.layout, CoarseToFineLayout)
    if coarse != bool(args.refiner):
        raise ValueError(
            "this generator predicts coarse labels: pass --refiner RUN (its task: refiner run)"
            if coarse
            else "--refiner needs a coarse-to-fine generator (trained with coarse_clusters > 0)"
        )
    if not coarse:
        return None
    if args.speculative:
        raise ValueError("--speculative and --refiner do not combine")
    if args.fine_temperature < 0:
        raise ValueError("--fine-temperature must be >= 0")
    run = Path(args.refiner)
    refiner = models.load(weights_of(run, args.weights) if is_run(run) else run).to(device, dtype)
    keys = ("vocab_size", "grid_size", "condition", "num_classes", "caption_dim")
    if not isinstance(refiner, FineLabelTransformer) or any(
        getattr(refiner.config, k) != getattr(model.config, k) for k in keys
    ):
        raise CheckpointError(f"{run} is not a fine-label model for this generator (same {', '.join(keys)})")
    if not torch.equal(refiner.coarse_labels.cpu(), tokenizer.coarse_labels.cpu()):
        raise CheckpointError(f"{run} was trained on other coarse labels than the tokenizer's")
    return Refinement(refiner, args.fine_temperature, args.compile)


def load_edit(args: argparse.Namespace, tokenizer: torch.nn.Module, device: torch.device):
    """``--edit IMAGE --mask MASK`` -> (source ids per scale, keep masks per scale), or None."""
    if not (args.edit or args.mask):
        return None
    if not (args.edit and args.mask):
        raise ValueError("--edit and --mask go together")
    if not isinstance(tokenizer.layout, ScaleLayout):
        raise ValueError("--edit needs a next-scale (multi-scale tokenizer) generator")
    resolution = tokenizer.config.resolution
    image, mask = load_rgb(Path(args.edit)), load_rgb(Path(args.mask))
    if image is None or mask is None:
        raise ValueError(f"cannot read --edit {args.edit} or --mask {args.mask} as images")
    pixels = ImageFolderDataset.image_transform(resolution)(image)[None].to(device)  # (1, 3, R, R)
    source = tokenizer.encode(pixels)
    gray = torch.from_numpy(np.asarray(mask.convert("L").resize((resolution, resolution)))).float() / 255
    return source, keep_masks(gray, tokenizer.layout.scales)


def conditions_for(args: argparse.Namespace, model: torch.nn.Module, device: torch.device):
    """What to sample: (class ids or prompts, their conditions as class ids (K,) or a Caption)."""
    prompts = list(args.prompt or []) + (read_prompts_file(args.prompts_file) if args.prompts_file else [])
    if model.config.condition != "text":
        if prompts or args.text_encoder:
            raise ValueError("this generator is class-conditional: use --classes, not prompts")
        classes = parse_classes(args.classes, model.config.num_classes)
        return classes, torch.tensor(classes)
    if args.classes is not None:
        raise ValueError("this generator is text-conditional: use --prompt or --prompts-file, not --classes")
    prompts = check_prompts(prompts)
    encoder = TextEncoder(args.text_encoder or model.config.text_encoder, model.config.caption_len, device)
    if encoder.dim != model.config.caption_dim:
        raise ValueError(
            f"text encoder width {encoder.dim} != the generator's caption_dim {model.config.caption_dim}"
        )
    warn_truncated(prompts, encoder.token_counts(prompts), model.config.caption_len)
    return prompts, encoder(prompts)


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


def load_frame_prompts(
    args: argparse.Namespace, model: torch.nn.Module, tokenizer: torch.nn.Module, device: torch.device
) -> FramePrompts | None:
    """The real clips of ``--given-from`` whose first ``--given-frames`` frames the samples keep."""
    if not args.given_from and not args.given_frames:
        return None
    if not (args.given_from and args.given_frames):
        raise ValueError("frame prediction needs both --given-from DATASET and --given-frames N")
    if not isinstance(tokenizer.layout, VideoLayout):
        raise ValueError("--given-frames is for video generators (frame-wise or causal video VQ)")
    if model.config.condition != "class" or args.classes is not None:
        raise ValueError("frame prediction conditions each sample on its clip's class: drop --classes")
    frames = tokenizer.config.frames
    if not 0 < args.given_frames < frames:
        raise ValueError(f"--given-frames must lie in [1, {frames - 1}], got {args.given_frames}")
    dataset = build_dataset(args.given_from, tokenizer.config.resolution, frames)
    if not hasattr(dataset, "label"):
        raise ValueError(f"--given-from {args.given_from} is not a video dataset")
    if len(dataset.classes) != model.config.num_classes:
        raise ValueError(
            f"--given-from {args.given_from} has {len(dataset.classes)} classes, the generator "
            f"{model.config.num_classes}"
        )
    return FramePrompts(dataset, tokenizer, args.given_frames, device)
