"""What ``sample.py`` samples with: the run's weights and tokenizer and their paradigm, the
conditions (class ids or prompts), and the extras of the run (a draft model, a fine-label model,
an edit source, given frames), each checked before anything is drawn."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from argen import hub
from argen.checkpoint import WEIGHTS_NAME, CheckpointError, is_run, read_weights, weights_of
from argen.convert import load_generator
from argen.data import ImageFolderDataset, build_dataset
from argen.data.control import read_control_inputs
from argen.data.images import load_rgb
from argen.paradigms import OptionRun, SamplingExtras, refuse_unoffered, sample_options


def resolve_dirs(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """The generator's and the tokenizer's paths (local, or downloaded Hub references), and the
    tokenizer copy the run carries (``<ckpt>/tokenizer``, which may not exist)."""
    run = hub.resolve(args.ckpt)
    if not run.exists():
        raise CheckpointError(f"--ckpt {run} does not exist")
    given = hub.resolve(args.tokenizer) if args.tokenizer else None
    carried = run / "tokenizer"  # a run's copy; a converted model may carry one too
    if is_run(run):
        model_dir, tokenizer_dir = weights_of(run, args.weights), given or carried
    else:
        model_dir, tokenizer_dir = run, given or (carried if carried.is_dir() else None)
    if tokenizer_dir is None:
        raise CheckpointError(f"{args.ckpt} is a bare model: pass --tokenizer DIR")
    return model_dir, tokenizer_dir, carried


def check_tokenizer(args: argparse.Namespace, carried: Path, tokenizer: torch.nn.Module) -> None:
    """A ``--tokenizer`` other than the one the run was trained with (its ``carried`` copy)
    decodes its ids into garbage: refused unless ``--allow-other-tokenizer``."""
    trained_with = carried / WEIGHTS_NAME
    if not args.tokenizer or args.allow_other_tokenizer or not trained_with.is_file():
        return
    saved, given = read_weights(trained_with), tokenizer.state_dict()
    same = saved.keys() == given.keys() and all(torch.equal(saved[k], given[k].cpu()) for k in saved)
    if not same:
        raise CheckpointError(
            f"--tokenizer {args.tokenizer} has other weights than the tokenizer {args.ckpt} was trained "
            f"with ({carried}); its samples would be noise. Leave --tokenizer out, or pass "
            f"--allow-other-tokenizer to sample with it anyway"
        )


class CliInputs:
    """What options read from files and datasets, as models and tensors
    (:class:`~argen.paradigms.RunInputs`)."""

    def __init__(self, weights: str | None, device: torch.device, dtype: torch.dtype):
        self.weights, self.device, self.dtype = weights, device, dtype

    def second_model(self, path: str) -> torch.nn.Module:
        """A draft or refiner: a run directory (its ``--weights``) or a model directory."""
        run = hub.resolve(path)
        return load_generator(weights_of(run, self.weights) if is_run(run) else run).to(
            self.device, self.dtype
        )

    def edit_inputs(self, image: str, mask: str, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
        source, regenerate = load_rgb(Path(image)), load_rgb(Path(mask))
        if source is None or regenerate is None:
            raise ValueError(f"cannot read --edit {image} or --mask {mask} as images")
        pixels = ImageFolderDataset.image_transform(resolution)(source)[None]  # (1, 3, R, R)
        gray = np.array(regenerate.convert("L").resize((resolution, resolution)))  # (R, R) uint8
        return pixels, torch.from_numpy(gray).float() / 255

    def control_maps(
        self, path: str, kind: str, channels: int, resolution: int, thresholds, detector: str
    ) -> torch.Tensor:
        return read_control_inputs(path, kind, channels, resolution, *thresholds, detector)

    def clips(self, dataset: str, resolution: int, frames: int):
        return build_dataset(dataset, resolution, frames)


def load_extras(args: argparse.Namespace, run: OptionRun) -> SamplingExtras:
    """The run's extras: every option its paradigm offers, built (and checked); an option asked
    for that the paradigm does not offer is refused."""
    refuse_unoffered(run.paradigm, args, sample_options())
    extras = SamplingExtras(compile=args.compile)
    for option in run.paradigm.sample_options:
        option.build(args, run, extras)
    run.paradigm.check_extras(extras)
    return extras
