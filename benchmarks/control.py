"""Control fidelity of spatially controlled generators, in one run: for each held-out image of a
control run's dataset (every ``holdout_every``-th, never trained on), its canny edges and class
are the condition; the controlled model and its base (the same class, no control) sample with
the same seeds. For each: the canny edges of the samples against the control edges (F1 at a
1-pixel tolerance and exact, SSIM of the edge maps) and class-consistency under a classifier. The
tokenizer's reconstructions of the held-out images give the ceiling of edge fidelity.

    python -m benchmarks.control --runs runs/digits/control_canny
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from argen import models, tokenizers
from argen.checkpoint import weights_of
from argen.data import build_dataset
from argen.data.control import canny_edges
from argen.eval import class_consistency, from_uint8, load_classifier
from argen.eval.edges import edge_f1, edge_ssim
from argen.images import to_uint8
from argen.paradigms import for_generator
from argen.paradigms.generate import Generation, batch_seed, generate_batch
from argen.sampling import SamplingConfig
from benchmarks._common import quality_parser


def held_out(recipe: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out images (N, C, H, W) in [-1, 1] and their classes (N,)."""
    data = recipe["data"]
    dataset = build_dataset(data["dataset"], data["resolution"])
    every = data["holdout_every"]
    indices = range(0, len(dataset), every)
    images, labels = zip(*(dataset[i] for i in indices))
    return torch.stack(images), torch.tensor(labels)


@torch.no_grad()
def draw(model, tokenizer, labels, maps, config: SamplingConfig, batch: int) -> np.ndarray:
    """Samples (N, H, W, C) for ``labels``, following ``maps`` when given, in seeded batches."""
    paradigm = for_generator(model, tokenizer.layout)
    parts = []
    for b in range(0, len(labels), batch):
        given = None if maps is None else maps[b : b + batch]
        rows, seed = labels[b : b + batch], batch_seed(0, b // batch)
        parts.append(generate_batch(Generation(paradigm, model, tokenizer, config), rows, seed, given)[0])
    return np.concatenate(parts)


def scores(images: np.ndarray, control: torch.Tensor, labels, classifier, recipe: dict) -> list[float]:
    pixels = from_uint8(images)  # (N, C, H, W) in [-1, 1]
    c = recipe["control"]
    edges = canny_edges(pixels, c["low_threshold"], c["high_threshold"], c.get("detector", "kornia"))
    at_1px = edge_f1(edges, control, tolerance=1)
    return [
        at_1px["precision"],
        at_1px["recall"],
        at_1px["f1"],
        edge_f1(edges, control, tolerance=0)["f1"],
        edge_ssim(edges, control),
        class_consistency(classifier, pixels, labels)["overall"],
    ]


def main() -> None:
    p = quality_parser(__doc__, num_samples=0)
    p.add_argument("--cfg-scale", type=float, default=2.0)
    args = p.parse_args()
    classifier = load_classifier(args.classifier)
    heads = ("P@1px", "R@1px", "F1@1px", "F1@0px", "SSIM", "class-cons")
    print(f"{'run':28s} {'sampler':14s} " + " ".join(f"{h:>10s}" for h in heads))
    for run in map(Path, args.runs):
        recipe = json.loads((run / "recipe.json").read_text())
        if recipe.get("task") != "control":
            raise SystemExit(f"{run} is not a control run (task: control)")
        controlled = models.load(weights_of(run, None)).eval()
        base = models.load(weights_of(Path(recipe["base"]), None)).eval()
        tokenizer = tokenizers.load(run / "tokenizer").eval()
        images, labels = held_out(recipe)
        if args.num_samples:
            images, labels = images[: args.num_samples], labels[: args.num_samples]
        c = recipe["control"]
        control = canny_edges(images, c["low_threshold"], c["high_threshold"], c.get("detector", "kornia"))
        config = SamplingConfig(cfg_scale=args.cfg_scale)
        rows = {
            "controlled": draw(controlled, tokenizer, labels, control, config, args.batch_size),
            "base, no ctrl": draw(base, tokenizer, labels, None, config, args.batch_size),
            "reconstructed": to_uint8(tokenizer.decode(tokenizer.encode(images))),
        }
        for name, samples in rows.items():
            values = scores(samples, control, labels, classifier, recipe)
            print(f"{str(run):28s} {name:14s} " + " ".join(f"{v:10.3f}" for v in values))
    print(
        f"held-out images: every holdout_every-th of the dataset; cfg-scale {args.cfg_scale}; edges: canny "
        "with the run's thresholds; F1 of edge pixels matched within 1 pixel and exactly; "
        "reconstructed: the tokenizer's ceiling"
    )


if __name__ == "__main__":
    main()
