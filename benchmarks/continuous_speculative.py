"""Plain SDE sampling of a continuous (MAR-style) generator vs. continuous speculative decoding
with a small draft, in one run: tokens per target pass, wall-time speed-up, residual
fallbacks and sample quality (classifier-feature FID against the dataset, class-consistency).

    python -m benchmarks.continuous_speculative --target runs/digits/mar --draft runs/digits/mar_draft

Every method draws the same batches with the same seeds, with the heads' SDE sampler
(``--flow-steps``, ``--flow-noise``). Train the pair first (``configs/digits_kl.yaml``,
``configs/digits_mar.yaml``, ``configs/digits_mar_draft.yaml``).
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
from argen.paradigms import SamplingExtras, for_generator
from argen.paradigms.generate import Generation, generate_batch
from argen.sampling import SamplingConfig
from argen.sampling.continuous_speculative import ContinuousSpeculation, ContinuousSpeculativeConfig
from benchmarks.orderings import draw


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="runs/digits/mar")
    p.add_argument("--draft", default="runs/digits/mar_draft")
    p.add_argument("--classifier", default="runs/digits/classifier/model")
    p.add_argument("--reference", default="digits")
    p.add_argument("--num-samples", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--cfg-scale", type=float, default=2.0)
    p.add_argument("--flow-steps", type=int, default=25)
    p.add_argument("--flow-noise", type=float, default=1.0)
    p.add_argument("--draft-lengths", type=int, nargs="+", default=[2, 4])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()

    target_run = Path(args.target)
    target = models.load(weights_of(target_run, None)).to(args.device).eval()
    draft = models.load(weights_of(Path(args.draft), None)).to(args.device).eval()
    tokenizer = tokenizers.load(target_run / "tokenizer").to(args.device).eval()
    classifier = load_classifier(args.classifier).to(args.device)
    metric = classifier_features(classifier)
    real = reference_images(args.reference, tokenizer.config.resolution)
    config = SamplingConfig(
        cfg_scale=args.cfg_scale, flow_steps=args.flow_steps, flow_solver="sde", flow_noise=args.flow_noise
    )
    labels = torch.arange(args.num_samples) % target.config.num_classes
    methods: dict[str, ContinuousSpeculation | None] = {"plain (target)": None}
    methods["plain (draft)"] = None
    for k in args.draft_lengths:
        methods[f"speculative k={k}"] = ContinuousSpeculation(draft, ContinuousSpeculativeConfig(k))
    print(
        f"target={args.target} draft={args.draft} samples={args.num_samples} batch={args.batch_size} "
        f"cfg={args.cfg_scale} sde steps={args.flow_steps} noise={args.flow_noise} device={args.device}"
    )
    print(
        f"{'method':18s} {'tokens/pass':>11s} {'seconds':>8s} {'speed-up':>8s} {'fallbacks':>9s} "
        f"{'fid_clf':>8s} {'class-cons':>10s}"
    )
    plain = None
    for name, speculation in methods.items():
        model = draft if name == "plain (draft)" else target
        paradigm = for_generator(model, tokenizer.layout)
        generate_batch(
            Generation(paradigm, model, tokenizer, config, SamplingExtras(grid_sampler=speculation)),
            labels[:2],
            0,
        )
        if speculation is not None:
            speculation.totals = dict.fromkeys(speculation.totals, 0)
        start = time.perf_counter()
        images, _ = draw(
            model, tokenizer, labels, config, args.batch_size, SamplingExtras(grid_sampler=speculation)
        )
        seconds = time.perf_counter() - start
        plain = plain or seconds
        fid = frechet_distance(metric, real, images, device=torch.device(args.device))
        consistency = class_consistency(
            classifier, from_uint8(images).to(args.device), labels.to(args.device)
        )
        per_call = speculation.tokens_per_call if speculation is not None else 1.0
        fallbacks = speculation.totals["fallbacks"] if speculation is not None else 0
        print(
            f"{name:18s} {per_call:11.2f} {seconds:8.2f} {plain / seconds:7.2f}x {fallbacks:9d} "
            f"{fid:8.3f} {consistency['overall']:10.3f}"
        )
    print("speed-up: plain (target) seconds / method seconds")


if __name__ == "__main__":
    main()
