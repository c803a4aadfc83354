"""JPEG-LM with and without the scan-syntax mask, in one run: the same runs sample the same
classes with the same seeds, once freely and once constrained to valid scans
(``sample.py --constrained``); for each: the share of valid streams, classifier-feature FID
against the dataset, class-consistency and sampling wall time. The first constrained pass
starts with empty automaton tables and fills them; a second pass (same seeds) reuses them,
as a long run (an FID run of 50,000 samples) mostly does. With ``--draft`` (a smaller byte
model over the same tokenizer) a last pass samples speculatively under the same mask, and
reports target tokens per pass and its time against the warm constrained pass.

    python -m benchmarks.constrained_streams --runs runs/digits/jpeg_lm --draft runs/digits/jpeg_lm_draft
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from argen import models, tokenizers
from argen.checkpoint import weights_of
from argen.eval import class_consistency, classifier_features, frechet_distance, from_uint8, load_classifier
from argen.eval.evaluation import reference_images
from argen.paradigms import SamplingExtras
from argen.sampling import SamplingConfig
from argen.sampling.speculative import Speculation, SpeculativeConfig
from benchmarks._common import quality_parser
from benchmarks.orderings import draw


def main() -> None:
    p = quality_parser(__doc__)
    p.add_argument("--cfg-scale", type=float, default=2.0)
    p.add_argument("--draft", help="a draft run for a speculative pass under the mask")
    p.add_argument("--draft-length", type=int, default=4)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()

    classifier = load_classifier(args.classifier).to(args.device)
    metric, device = classifier_features(classifier), torch.device(args.device)
    config = SamplingConfig(cfg_scale=args.cfg_scale)
    print(f"samples={args.num_samples} batch={args.batch_size} cfg={args.cfg_scale} device={args.device}")
    print(f"{'run':28s} {'mask':>8s} {'valid':>6s} {'fid_clf':>8s} {'class-cons':>10s} {'seconds':>8s}")
    for run in args.runs:
        model = models.load(weights_of(Path(run), None)).to(device).eval()
        tokenizer = tokenizers.load(Path(run) / "tokenizer").to(device).eval()
        real = reference_images(args.reference, tokenizer.config.resolution)
        labels = torch.arange(args.num_samples) % model.config.num_classes
        draw(model, tokenizer, labels[: args.batch_size], config, args.batch_size)  # warm-up
        times, syntax = {}, tokenizer.syntax()
        passes = [("off", None, None), ("on", syntax, None), ("on, warm", syntax, None)]
        if args.draft:
            draft = models.load(weights_of(Path(args.draft), None)).to(device).eval()
            speculation = Speculation(draft, SpeculativeConfig(args.draft_length))
            passes.append(("on, spec", syntax, speculation))
        for name, constraint, sampler in passes:
            start = time.perf_counter()
            images, valid = draw(
                model,
                tokenizer,
                labels,
                config,
                args.batch_size,
                SamplingExtras(grid_sampler=sampler, constraint=constraint),
            )
            times[name] = time.perf_counter() - start
            fid = frechet_distance(metric, real, images, device=device)
            consistency = class_consistency(classifier, from_uint8(images).to(device), labels.to(device))
            print(
                f"{run:28s} {name:>8s} {valid.mean():6.1%} {fid:8.3f} {consistency['overall']:10.3f} "
                f"{times[name]:8.2f}"
            )
        print(
            f"{run:28s} constrained / free sampling time: {times['on'] / times['off']:.2f}x with empty "
            f"tables, {times['on, warm'] / times['off']:.2f}x with the tables of the first pass"
        )
        if args.draft:
            print(
                f"{run:28s} speculative (draft length {args.draft_length}) under the mask: "
                f"{speculation.tokens_per_call:.2f} target tokens per pass, "
                f"{times['on, warm'] / times['on, spec']:.2f}x the speed of the warm constrained pass"
            )


if __name__ == "__main__":
    main()
