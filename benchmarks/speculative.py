"""Plain next-token sampling vs. standard and relaxed (LANTERN) speculative decoding, in one run:
tokens per target pass, wall-time speed-up over plain sampling, and sample quality
(classifier-feature FID against the dataset, class-consistency) for each.

    python -m benchmarks.speculative --target runs/digits/gpt --draft runs/digits/draft \\
        runs/digits/draft_head --classifier runs/digits/classifier/model --deltas 0.05 0.1 0.2

Every method draws the same batches with the same seeds; each draft (a small generator or a
draft head) gets standard and relaxed rows; "vs std" compares with the first draft's
standard speculative decoding. Train the pair first (README demo, then ``python train.py
--config configs/digits_gpt_draft.yaml`` or ``configs/digits_draft_head.yaml``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from argen import models, tokenizers
from argen.checkpoint import weights_of
from argen.eval import class_consistency, classifier_features, frechet_distance, from_uint8, load_classifier
from argen.eval.evaluation import reference_images
from argen.paradigms import SamplingExtras, SpeculationOptions, for_generator
from argen.paradigms.generate import Generation, generate_batch
from argen.sampling import SamplingConfig
from argen.sampling.speculative import Speculation
from benchmarks.orderings import draw


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="runs/digits/gpt")
    p.add_argument("--draft", nargs="+", default=["runs/digits/draft"], help="draft runs")
    p.add_argument("--classifier", default="runs/digits/classifier/model")
    p.add_argument("--reference", default="digits")
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--cfg-scale", type=float, default=2.0)
    p.add_argument("--draft-length", type=int, default=3)
    p.add_argument("--relaxed-k", type=int, default=50)
    p.add_argument("--deltas", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    p.add_argument("--relaxed-lambda", type=float, help="LANTERN++: also a relaxed run with this lambda")
    p.add_argument("--relaxed-residual", choices=["lantern", "standard"], default="lantern")
    p.add_argument("--relaxed-space", choices=["embedding", "lookup"], default="embedding")
    p.add_argument("--repeats", type=int, default=2, help="timed passes per method (best is kept)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()

    target_run = Path(args.target)
    target = models.load(weights_of(target_run, None)).to(args.device).eval()
    tokenizer = tokenizers.load(target_run / "tokenizer").to(args.device).eval()
    classifier = load_classifier(args.classifier).to(args.device)
    metric = classifier_features(classifier)
    real = reference_images(args.reference, tokenizer.config.resolution)
    config = SamplingConfig(cfg_scale=args.cfg_scale)
    paradigm = for_generator(target, tokenizer.layout)
    labels = torch.arange(args.num_samples) % target.config.num_classes

    methods: dict[str, Speculation | None] = {"plain": None}
    relaxed = {f"relaxed d={d}": dict(relaxed_delta=d) for d in args.deltas}
    if args.relaxed_lambda is not None:
        relaxed[f"relaxed l={args.relaxed_lambda}"] = dict(relaxed_lambda=args.relaxed_lambda)
    for index, path in enumerate(args.draft):
        draft = models.load(weights_of(Path(path), None)).to(args.device).eval()
        tag = f" [{index}]" if len(args.draft) > 1 else ""
        for name, settings in {"speculative": {}, **relaxed}.items():
            options = SpeculationOptions(
                path,
                args.draft_length,
                relaxed_k=args.relaxed_k if settings else 0,
                relaxed_residual=args.relaxed_residual,
                relaxed_space=args.relaxed_space,
                **settings,
            )
            methods[f"{name}{tag}"] = paradigm.speculation(target, tokenizer, draft, options, config)
    print(
        f"target={args.target} draft={args.draft} samples={args.num_samples} batch={args.batch_size} "
        f"cfg={args.cfg_scale} draft_length={args.draft_length} relaxed_k={args.relaxed_k} "
        f"residual={args.relaxed_residual} space={args.relaxed_space} device={args.device}"
    )
    results = {}
    for name, speculation in methods.items():
        warm_up = SamplingExtras(grid_sampler=speculation)
        paradigm = for_generator(target, tokenizer.layout)
        generate_batch(Generation(paradigm, target, tokenizer, config, warm_up), labels[: args.batch_size], 0)
        seconds = float("inf")
        for _ in range(args.repeats):
            if speculation is not None:
                speculation.totals = dict.fromkeys(speculation.totals, 0)
            start = time.perf_counter()
            images, _ = draw(
                target, tokenizer, labels, config, args.batch_size, SamplingExtras(grid_sampler=speculation)
            )
            seconds = min(seconds, time.perf_counter() - start)
        fid = frechet_distance(metric, real, images, device=torch.device(args.device))
        pixels = from_uint8(images).to(args.device)
        consistency = class_consistency(classifier, pixels, labels.to(args.device))["overall"]
        per_call = speculation.tokens_per_call if speculation is not None else 1.0
        results[name] = (seconds, per_call, fid, consistency)

    plain = results["plain"][0]
    standard = plain / results[next(name for name in results if name.startswith("speculative"))][0]
    print(
        f"{'method':22s} {'tokens/pass':>11s} {'seconds':>8s} {'speed-up':>8s} {'vs std':>7s} "
        f"{'fid_clf':>8s} {'class-cons':>10s}"
    )
    for name, (seconds, per_call, fid, consistency) in results.items():
        print(
            f"{name:22s} {per_call:11.2f} {seconds:8.2f} {plain / seconds:7.2f}x "
            f"{plain / seconds / standard:6.2f}x "
            f"{fid:8.3f} {consistency:10.3f}"
        )
    print("speed-up: plain seconds / method seconds; vs std: speed-up / standard speculative speed-up")
    for index, path in enumerate(args.draft):
        print(f"[{index}] {path}")


if __name__ == "__main__":
    main()
