"""Token orderings side by side, in one run: raster next-token, next-scale (VAR pyramid or
NFIG frequency bands), coarse-to-fine (CTF) and continuous (MAR-style raster, FlowAR-style
scales) runs sample the same classes with the same seeds; for each: tokens per image,
generator passes per image, sampling wall time, classifier-feature FID against the dataset
and class-consistency.

    python -m benchmarks.orderings --runs runs/digits/gpt runs/digits/var runs/digits/nfig \\
        runs/digits/ctf+runs/digits/ctf_refiner

A coarse-to-fine run is written ``STAGE1_RUN+REFINER_RUN``. ``--cfg-schedule auto`` ramps
guidance linearly on next-scale runs (VAR's schedule) and keeps it constant on the others.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from argen import models, tokenizers
from argen.checkpoint import weights_of
from argen.eval import class_consistency, classifier_features, frechet_distance, from_uint8, load_classifier
from argen.eval.evaluation import reference_images
from argen.paradigms import SamplingExtras, for_generator
from argen.paradigms.generate import Generation, batch_seed, generate_batch
from argen.sampling import SamplingConfig
from argen.sampling.coarse_to_fine import Refinement
from benchmarks._common import quality_parser


def draw(
    model, tokenizer, labels: torch.Tensor, config: SamplingConfig, sampler, batch: int, constraint=None
) -> tuple[np.ndarray, np.ndarray]:
    """All images (or clips) for ``labels`` and their validity flags, in seeded batches, as
    ``sample.py`` draws them (``constraint``: a byte stream's syntax, as ``--constrained``)."""
    paradigm = for_generator(model, tokenizer.layout)
    extras = SamplingExtras(grid_sampler=sampler, constraint=constraint)
    parts = [
        generate_batch(
            Generation(paradigm, model, tokenizer, config, extras),
            labels[b : b + batch],
            batch_seed(0, b // batch),
        )
        for b in range(0, len(labels), batch)
    ]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def main() -> None:
    p = quality_parser(__doc__)
    p.add_argument("--cfg-scale", type=float, default=2.0)
    p.add_argument("--cfg-schedule", choices=["auto", "constant", "linear"], default="auto")
    p.add_argument("--flow-steps", type=int, default=25, help="continuous runs: ODE steps per token / scale")
    p.add_argument("--flow-solver", choices=["euler", "heun"], default="euler")
    p.add_argument("--repeats", type=int, default=2, help="timed passes per run (best is kept)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()

    classifier = load_classifier(args.classifier).to(args.device)
    metric, real = classifier_features(classifier), None
    print(f"samples={args.num_samples} batch={args.batch_size} cfg={args.cfg_scale} device={args.device}")
    print(
        f"{'run':44s} {'tokens':>7s} {'passes':>7s} {'seconds':>7s} {'img/s':>7s} {'fid_clf':>7s} class-cons"
    )
    for spec in args.runs:
        run, _, refiner_run = spec.partition("+")
        model = models.load(weights_of(Path(run), None)).to(args.device).eval()
        tokenizer = tokenizers.load(Path(run) / "tokenizer").to(args.device).eval()
        layout, sampler = tokenizer.layout, None
        if refiner_run:
            sampler = Refinement(models.load(weights_of(Path(refiner_run), None)).to(args.device).eval())
        scales = tuple(getattr(layout, "scales", ()))
        schedule = args.cfg_schedule if args.cfg_schedule != "auto" else ("linear" if scales else "constant")
        config = SamplingConfig(
            cfg_scale=args.cfg_scale,
            cfg_schedule=schedule,
            flow_steps=args.flow_steps,
            flow_solver=args.flow_solver,
        )
        tokens = sum(pn * pn for pn in scales) if scales else layout.height * layout.width
        passes = for_generator(model, layout).passes(SamplingExtras()) or (
            len(scales) if scales else tokens + (1 if refiner_run else 0)
        )
        if real is None:
            real = reference_images(args.reference, tokenizer.config.resolution)
        labels = torch.arange(args.num_samples) % model.config.num_classes
        draw(model, tokenizer, labels[: args.batch_size], config, sampler, args.batch_size)  # warm-up
        seconds = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            images, _ = draw(model, tokenizer, labels, config, sampler, args.batch_size)
            seconds = min(seconds, time.perf_counter() - start)
        fid = frechet_distance(metric, real, images, device=torch.device(args.device))
        consistency = class_consistency(
            classifier, from_uint8(images).to(args.device), labels.to(args.device)
        )
        print(
            f"{spec:44s} {tokens:7d} {passes:7d} {seconds:7.2f} {args.num_samples / seconds:7.1f} "
            f"{fid:7.3f} {consistency['overall']:10.3f}"
        )
    print(
        "passes: generator forward passes per image (next-scale: one per scale; CTF: + 1 refiner pass); "
        "continuous runs add flow-steps head evaluations (x2 with heun) per pass"
    )


if __name__ == "__main__":
    main()
