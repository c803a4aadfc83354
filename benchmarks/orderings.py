"""Token orderings side by side, in one run: raster next-token, next-scale (VAR pyramid or
NFIG frequency bands), coarse-to-fine (CTF) and continuous (MAR-style raster, FlowAR-style
scales) runs sample the same classes with the same seeds; for each: tokens per image,
generator passes per image, sampling wall time, classifier-feature FID against the dataset
and class-consistency.

    python -m benchmarks.orderings --runs runs/digits/gpt runs/digits/var runs/digits/nfig \\
        runs/digits/ctf+runs/digits/ctf_refiner

A coarse-to-fine run is written ``STAGE1_RUN+REFINER_RUN``. ``--cfg-schedule auto`` ramps
guidance linearly on next-scale runs (VAR's schedule) and keeps it constant on the others.
Any other flag is a ``sample.py`` option, applied to the runs whose paradigm offers it:

    python -m benchmarks.orderings --runs runs/digits/gpt runs/digits/maskgit --mask-steps 4 --single 100
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from argen import models, tokenizers
from argen.checkpoint import weights_of
from argen.eval import class_consistency, classifier_features, frechet_distance, from_uint8, load_classifier
from argen.eval.evaluation import reference_images
from argen.eval.reconstruction import tokens_per_image
from argen.paradigms import OptionRun, SamplingExtras, for_generator, sample_options
from argen.paradigms.generate import Generation, batch_seed, generate_batch
from argen.sampling import SamplingConfig
from argen.sampling.coarse_to_fine import Refinement
from benchmarks._common import quality_parser


def draw(
    model,
    tokenizer,
    labels: torch.Tensor,
    config: SamplingConfig,
    batch: int,
    extras: SamplingExtras | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """All images (or clips) for ``labels`` and their validity flags, in seeded batches, as
    ``sample.py`` draws them with ``extras`` (a refiner, a byte stream's syntax, options)."""
    paradigm = for_generator(model, tokenizer.layout)
    extras = extras or SamplingExtras()
    parts = [
        generate_batch(
            Generation(paradigm, model, tokenizer, config, extras),
            labels[b : b + batch],
            batch_seed(0, b // batch),
        )
        for b in range(0, len(labels), batch)
    ]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class NoFiles:
    """The :class:`~argen.paradigms.RunInputs` of this benchmark: options that read files
    (drafts, refiners, edits, control maps, clips) are for ``sample.py``."""

    def __init__(self, device: str):
        self.device = torch.device(device)

    def __getattr__(self, name: str):
        raise ValueError("benchmarks.orderings takes sample.py options that read no files; use sample.py")


def option_extras(argv: list[str], model, tokenizer, config: SamplingConfig, device: str) -> SamplingExtras:
    """The ``sample.py`` options in ``argv`` that the run's paradigm offers, built as sample.py
    builds them (options of other paradigms are left to their runs)."""
    paradigm = for_generator(model, tokenizer.layout)
    parser = argparse.ArgumentParser(add_help=False)
    for option in paradigm.sample_options:
        option.add_arguments(parser)
    args, _ = parser.parse_known_args(argv)
    extras = SamplingExtras()
    run = OptionRun(paradigm, model, tokenizer, config, NoFiles(device))
    for option in paradigm.sample_options:
        option.build(args, run, extras)
    return extras


def checked_sample_flags(argv: list[str]) -> list[str]:
    """``argv``, refused unless every flag is a registered paradigm's ``sample.py`` option."""
    parser = argparse.ArgumentParser(prog="benchmarks.orderings: sample.py options")
    for option in sample_options():
        option.add_arguments(parser)
    parser.parse_args(argv)
    return argv


def parse() -> tuple[argparse.Namespace, list[str]]:
    p = quality_parser(__doc__)
    p.add_argument("--cfg-scale", type=float, default=2.0)
    p.add_argument("--cfg-schedule", choices=["auto", "constant", "linear"], default="auto")
    p.add_argument("--flow-steps", type=int, default=25, help="continuous runs: ODE steps per token / scale")
    p.add_argument("--flow-solver", choices=["euler", "heun"], default="euler")
    p.add_argument("--repeats", type=int, default=2, help="timed passes per run (best is kept)")
    p.add_argument("--single", type=int, default=0, help="also time this many images one at a time")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args, rest = p.parse_known_args()
    return args, checked_sample_flags(rest)


def load_run(spec: str, args: argparse.Namespace, options: list[str]):
    """``RUN`` or ``STAGE1_RUN+REFINER_RUN`` -> (model, tokenizer, config, extras, passes per image)."""
    run, _, refiner_run = spec.partition("+")
    model = models.load(weights_of(Path(run), None)).to(args.device).eval()
    tokenizer = tokenizers.load(Path(run) / "tokenizer").to(args.device).eval()
    scales = tuple(getattr(tokenizer.layout, "scales", ()))
    schedule = args.cfg_schedule if args.cfg_schedule != "auto" else ("linear" if scales else "constant")
    flow = dict(flow_steps=args.flow_steps, flow_solver=args.flow_solver)
    config = SamplingConfig(cfg_scale=args.cfg_scale, cfg_schedule=schedule, **flow)
    extras = option_extras(options, model, tokenizer, config, args.device)
    if refiner_run:
        refiner = models.load(weights_of(Path(refiner_run), None)).to(args.device).eval()
        extras.grid_sampler = Refinement(refiner)
    steps = model.config.num_tokens  # one per token, or per window of tokens (Token-Shuffle)
    passes = for_generator(model, tokenizer.layout).passes(extras) or (
        len(scales) if scales else steps + (1 if refiner_run else 0)
    )
    return model, tokenizer, config, extras, passes


def measure(model, tokenizer, labels, config, batch: int, extras, repeats: int) -> tuple[float, np.ndarray]:
    """The best wall seconds of ``repeats`` draws of ``labels`` (after a one-batch warm-up) and
    the images drawn; no labels take no time."""
    if not len(labels):
        return 0.0, np.zeros(0)
    draw(model, tokenizer, labels[:batch], config, batch, extras)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        images, _ = draw(model, tokenizer, labels, config, batch, extras)
        best = min(best, time.perf_counter() - start)
    return best, images


def main() -> None:
    args, options = parse()
    classifier = load_classifier(args.classifier).to(args.device)
    metric, real = classifier_features(classifier), None
    print(f"samples={args.num_samples} batch={args.batch_size} cfg={args.cfg_scale} device={args.device}")
    print(f"batch-1 images={args.single} sample.py options: {' '.join(options) or 'none'}")
    print(
        f"{'run':44s} {'tokens':>7s} {'passes':>7s} {'ms/img b1':>9s} {'ms/img':>7s} {'img/s':>7s} "
        f"{'fid_clf':>7s} class-cons"
    )
    for spec in args.runs:
        model, tokenizer, config, extras, passes = load_run(spec, args, options)
        if real is None:
            real = reference_images(args.reference, tokenizer.config.resolution)
        labels = torch.arange(args.num_samples) % model.config.num_classes
        single, _ = measure(model, tokenizer, labels[: args.single], config, 1, extras, args.repeats)
        at_batch, images = measure(model, tokenizer, labels, config, args.batch_size, extras, args.repeats)
        fid = frechet_distance(metric, real, images, device=torch.device(args.device))
        pixels = from_uint8(images).to(args.device)  # (N, C, H, W) in [-1, 1]
        consistency = class_consistency(classifier, pixels, labels.to(args.device))
        b1 = 1000 * single / args.single if args.single else float("nan")
        print(
            f"{spec:44s} {tokens_per_image(tokenizer.layout):7d} {passes:7d} {b1:9.1f} "
            f"{1000 * at_batch / args.num_samples:7.2f} {args.num_samples / at_batch:7.1f} "
            f"{fid:7.3f} {consistency['overall']:10.3f}"
        )
    print(
        "passes: generator forward passes per image (next-scale: one per scale; Token-Shuffle: one per "
        "window; CTF: + 1 refiner pass); continuous runs add flow-steps head evaluations (x2 with heun) "
        "per pass"
    )


if __name__ == "__main__":
    main()
