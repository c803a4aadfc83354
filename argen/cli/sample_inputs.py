"""What ``sample.py`` samples with: the run's weights and tokenizer and their paradigm, the
conditions (class ids or prompts), and the extras of the run (a draft model, a fine-label model,
an edit source, given frames), each checked before anything is drawn."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from argen.checkpoint import CheckpointError, is_run, weights_of
from argen.convert import load_generator
from argen.models.llama import Condition
from argen.paradigms import Paradigm, SamplingExtras, SpeculationOptions
from argen.text import TextEncoder, check_prompts, read_prompts_file, warn_truncated


def resolve_dirs(args: argparse.Namespace) -> tuple[Path, Path]:
    run = Path(args.ckpt)
    if not run.exists():
        raise CheckpointError(f"--ckpt {run} does not exist")
    if is_run(run):
        model_dir, tokenizer_dir = weights_of(run, args.weights), args.tokenizer or run / "tokenizer"
    else:
        bundled = run / "tokenizer"  # a converted model may carry its tokenizer
        model_dir, tokenizer_dir = run, args.tokenizer or (bundled if bundled.is_dir() else None)
    if tokenizer_dir is None:
        raise CheckpointError(f"{run} is a bare model: pass --tokenizer DIR")
    return model_dir, Path(tokenizer_dir)


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


class ClassConditions:
    """Class-conditional generators: ``--classes``; samples are saved with their class ids."""

    def resolve(self, args: argparse.Namespace, model, device: torch.device) -> tuple[list, Condition]:
        if args.prompt or args.prompts_file or args.text_encoder:
            raise ValueError("this generator is class-conditional: use --classes, not prompts")
        classes = parse_classes(args.classes, model.config.num_classes)
        return classes, torch.tensor(classes)

    def arrays(self, names: list, labels: torch.Tensor) -> dict[str, np.ndarray]:
        return {"labels": torch.tensor(names)[labels].numpy()}

    def write_names(self, out: Path, names: list) -> None:
        """Class ids need no index file."""


class PromptConditions:
    """Text-conditional generators: ``--prompt`` / ``--prompts-file``, encoded once; samples are
    saved with their prompt's index into ``prompts.json``."""

    def resolve(self, args: argparse.Namespace, model, device: torch.device) -> tuple[list, Condition]:
        if args.classes is not None:
            raise ValueError(
                "this generator is text-conditional: use --prompt or --prompts-file, not --classes"
            )
        given = list(args.prompt or []) + (read_prompts_file(args.prompts_file) if args.prompts_file else [])
        prompts = check_prompts(given)
        c = model.config
        encoder = TextEncoder(args.text_encoder or c.text_encoder, c.caption_len, device)
        if encoder.dim != c.caption_dim:
            raise ValueError(
                f"text encoder width {encoder.dim} != the generator's caption_dim {c.caption_dim}"
            )
        warn_truncated(prompts, encoder.token_counts(prompts), c.caption_len)
        return prompts, encoder(prompts)

    def arrays(self, names: list, labels: torch.Tensor) -> dict[str, np.ndarray]:
        return {"prompt_ids": labels.numpy()}

    def write_names(self, out: Path, names: list) -> None:
        (out / "prompts.json").write_text(json.dumps(names, indent=1, ensure_ascii=False) + "\n")


CONDITIONS = {"class": ClassConditions(), "text": PromptConditions()}


def load_weights(path: str, weights: str | None, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """A second model of the run (draft, refiner): a run directory (its ``weights``) or a model."""
    run = Path(path)
    return load_generator(weights_of(run, weights) if is_run(run) else run).to(device, dtype)


def load_extras(
    args: argparse.Namespace, paradigm: Paradigm, model, tokenizer, sampling, device, dtype
) -> SamplingExtras:
    """The run's extras, each built (and checked) by the paradigm that offers it."""
    extras = SamplingExtras(compile=args.compile)
    extras.constraint = paradigm.syntax_constraint(tokenizer, args.constrained)
    extras.steps = paradigm.sampling_steps(model, args.steps, sampling)
    if args.speculative:
        options = SpeculationOptions(
            args.speculative,
            args.draft_length,
            args.relaxed_k,
            args.relaxed_delta,
            args.relaxed_lambda,
            args.residual_tries,
            args.relaxed_residual,
            args.relaxed_space,
        )
        draft = load_weights(args.speculative, args.weights, device, dtype)
        extras.grid_sampler = paradigm.speculation(model, tokenizer, draft, options, sampling)
    if args.refiner:
        refiner = load_weights(args.refiner, args.weights, device, dtype)
        extras.grid_sampler = paradigm.refinement(
            model, tokenizer, refiner, args.fine_temperature, args.compile
        )
    if args.edit or args.mask:
        if not (args.edit and args.mask):
            raise ValueError("--edit and --mask go together")
        extras.edit = paradigm.edit_source(tokenizer, args.edit, args.mask, device)
    if args.control_kind and not args.control:
        raise ValueError("--control-kind goes with --control")
    if args.control:
        extras.control = paradigm.control_inputs(model, args.control, args.control_kind, device)
    if args.given_frames or args.given_from:
        if not (args.given_from and args.given_frames):
            raise ValueError("frame prediction needs both --given-from DATASET and --given-frames N")
        if args.classes is not None:
            raise ValueError("frame prediction conditions each sample on its clip's class: drop --classes")
        extras.frames = paradigm.frame_prompts(model, tokenizer, args.given_from, args.given_frames, device)
    paradigm.check_extras(extras)
    return extras
