"""Distilled Decoding side by side, in one run: each teacher (with the guidance its student was
distilled from) and its student at one and two steps sample the same classes with the same
seeds (students by their deterministic map, the default, and by softmax draws; raster
students also with ``--teacher-spans``); for each: generator passes per image, wall time per
image at batch 1 and at ``--batch-size`` (drawing tokens only, and tokens decoded to images),
the speed-ups over the teacher, classifier-feature FID against the dataset and
class-consistency.

    python -m benchmarks.distilled_decoding --runs runs/digits/dd runs/digits/var_dd

Each ``--runs`` entry is a distilled run (``task: distill``); its teacher is the one named
in its ``recipe.json``. A text-conditional run samples its pairs' prompts, prompt i judged as
class i: those must be the dataset's template captions in class order (the default prompts of
a teacher trained on a class-labelled dataset, as ``configs/digits_t2i_dd.yaml``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from argen import models, tokenizers
from argen.checkpoint import weights_of
from argen.eval import class_consistency, classifier_features, frechet_distance, from_uint8, load_classifier
from argen.eval.evaluation import reference_images
from argen.models.llama import Condition
from argen.paradigms import SamplingExtras, for_generator
from argen.paradigms.distilled import StudentPlan
from argen.paradigms.generate import Generation, batch_seed, generate_batch
from argen.sampling import SamplingConfig
from argen.text import TextFeatures
from benchmarks._common import quality_parser


@dataclass
class Sampler:
    """One way of sampling a run: its model, the sampling settings and the extras."""

    name: str
    model: torch.nn.Module
    passes: int
    config: SamplingConfig
    extras: SamplingExtras

    def draw(self, tokenizer, conditions: Condition, batch: int, decode: bool = True) -> np.ndarray | None:
        """Images (N, H, W, C) for ``conditions`` in seeded batches, as ``sample.py`` draws
        them; without ``decode`` only the tokens are drawn (and dropped)."""
        paradigm = for_generator(self.model, tokenizer.layout)
        parts = []
        for b in range(0, len(conditions), batch):
            rows, seed = conditions[b : b + batch], batch_seed(0, b // batch)
            if decode:
                parts.append(
                    generate_batch(
                        Generation(paradigm, self.model, tokenizer, self.config, self.extras), rows, seed
                    )[0]
                )
            else:
                generator = torch.Generator(device=self.model.output.weight.device).manual_seed(seed)
                paradigm.sample(self.model, tokenizer, rows, self.config, generator, self.extras)
        return np.concatenate(parts) if decode else None


def samplers(run: Path, device: str, spans: list[int]) -> tuple[list[Sampler], torch.nn.Module]:
    """The teacher; the student at each of its step counts, by its deterministic map and by
    softmax draws; with two steps, teacher-intermediate sampling at each of ``spans``; and the
    shared tokenizer."""
    recipe = json.loads((run / "recipe.json").read_text())
    teacher = models.load(weights_of(Path(recipe["teacher"]), None)).to(device).eval()
    student = models.load(weights_of(run, None)).to(device).eval()
    tokenizer = tokenizers.load(run / "tokenizer").to(device).eval()
    scales = tuple(getattr(tokenizer.layout, "scales", ()))
    guided = SamplingConfig(
        cfg_scale=recipe["cfg_scale"],
        cfg_schedule=recipe["cfg_schedule"],
        temperature=recipe["temperature"],
        top_k=recipe["top_k"],
        top_p=recipe["top_p"],
    )
    found = [Sampler("teacher", teacher, len(scales) or teacher.config.num_tokens, guided, SamplingExtras())]
    for steps in student.config.sampling_steps:
        for draw in ("map", "sample"):
            extras = SamplingExtras(steps=steps, by_option={"distilled": StudentPlan(draw)})
            found.append(Sampler(f"{steps}-step/{draw}", student, steps, SamplingConfig(), extras))
    if 2 in student.config.sampling_steps and not scales:
        for span in spans:
            extras = SamplingExtras(steps=2, by_option={"distilled": StudentPlan("map", teacher, span)})
            found.append(Sampler(f"2-step+{span}", student, 2 + span, SamplingConfig(), extras))
    return found, tokenizer


def conditions_and_classes(
    run: Path, model: torch.nn.Module, count: int, device: str
) -> tuple[Condition, torch.Tensor]:
    """``count`` conditions cycling over the classes (or the run's prompts) and the class ids
    (N,) they are judged against."""
    if model.config.condition != "text":
        classes = torch.arange(count) % model.config.num_classes
        return classes.to(device), classes
    prompts = TextFeatures(run / "text_features")
    classes = torch.arange(count) % len(prompts)
    return prompts[classes].to(device), classes


@torch.no_grad()
def per_image_seconds(
    sampler: Sampler, tokenizer, conditions: Condition, batch: int, repeats: int, decode: bool
) -> float:
    """Best wall time of drawing ``conditions`` at ``batch``, per image (after a warm-up)."""
    sampler.draw(tokenizer, conditions[:batch], batch, decode)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        sampler.draw(tokenizer, conditions, batch, decode)
        best = min(best, time.perf_counter() - start)
    return best / len(conditions)


def main() -> None:
    p = quality_parser(__doc__)
    p.add_argument("--single", type=int, default=50, help="images timed one at a time (batch 1)")
    p.add_argument("--repeats", type=int, default=2, help="timed passes per sampler (best is kept)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--teacher-spans", type=int, nargs="*", default=[], help="raster students: teacher-intermediate spans"
    )
    args = p.parse_args()

    classifier = load_classifier(args.classifier).to(args.device)
    metric, real = classifier_features(classifier), None
    print(f"samples={args.num_samples} batch={args.batch_size} batch-1 images={args.single}", end=" ")
    print(f"device={args.device}")
    b = args.batch_size
    print(
        f"{'run':24s} {'sampler':13s} {'passes':>6s} {'b1 tokens':>13s} {'b1 images':>13s} "
        f"{f'b{b} tokens':>13s} {f'b{b} images':>13s} {'fid_clf':>8s} class-cons"
    )
    for run in args.runs:
        found, tokenizer = samplers(Path(run), args.device, args.teacher_spans)
        if real is None:
            real = reference_images(args.reference, tokenizer.config.resolution)
        conditions, labels = conditions_and_classes(Path(run), found[0].model, args.num_samples, args.device)
        baseline = None
        for sampler in found:
            times = [  # ms per image: batch 1 (tokens, images), batch b (tokens, images)
                1e3 * per_image_seconds(sampler, tokenizer, rows, batch, args.repeats, decode)
                for rows, batch in ((conditions[: args.single], 1), (conditions, b))
                for decode in (False, True)
            ]
            baseline = baseline or times
            images = sampler.draw(tokenizer, conditions, b)
            fid = frechet_distance(metric, real, images, device=torch.device(args.device))
            consistency = class_consistency(
                classifier, from_uint8(images).to(args.device), labels.to(args.device)
            )["overall"]
            cells = " ".join(f"{t:7.3f} {base / t:4.1f}x" for t, base in zip(times, baseline))
            print(f"{run:24s} {sampler.name:13s} {sampler.passes:6d} {cells} {fid:8.3f} {consistency:10.3f}")
    print(
        "passes: generator forward passes per image; ms per image and speed-up over the teacher of "
        "the same run, drawing tokens only and tokens decoded to images"
    )


if __name__ == "__main__":
    main()
