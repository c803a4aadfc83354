"""Video generators side by side, in one run: token-by-token (frame-wise or causal video VQ),
next-frame (FAR-style) and AVC-LM byte-stream runs sample the same classes with the same
seeds; for each: tokens per clip, generator passes per clip, sampling wall time, the share of
decodable clips (byte streams), FVD on clip-classifier features against the dataset and
class-consistency.

    python -m benchmarks.video_generation --runs runs/moving_digits/gpt runs/moving_digits/far \\
        runs/moving_digits/avc_lm

Clips longer than the classifier's frames (a causal tokenizer's 1 + 4k) are cut to its first
frames before they are scored.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from argen import models, tokenizers
from argen.checkpoint import weights_of
from argen.eval import class_consistency, from_uint8, load_classifier
from argen.eval.evaluation import reference_images
from argen.eval.fvd import ClipClassifierFeatures, frechet_video_distance
from argen.models.next_frame import NextFrameLlama
from argen.paradigms import for_generator
from argen.sampling import SamplingConfig
from benchmarks._common import quality_parser
from benchmarks.orderings import draw


def main() -> None:
    p = quality_parser(__doc__, "runs/moving_digits/classifier/model", "moving_digits", 200, 50)
    p.add_argument("--cfg-scale", type=float, default=2.0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()

    classifier = load_classifier(args.classifier).to(args.device)
    frames = classifier.config.frames
    features = ClipClassifierFeatures(classifier, args.classifier, args.device)
    real = None
    config = SamplingConfig(cfg_scale=args.cfg_scale)
    print(f"clips={args.num_samples} batch={args.batch_size} cfg={args.cfg_scale} device={args.device}")
    print(
        f"{'run':36s} {'tokens':>7s} {'passes':>7s} {'seconds':>8s} {'valid':>6s} {'fvd_clf':>8s} class-cons"
    )
    for run in args.runs:
        model = models.load(weights_of(Path(run), None)).to(args.device).eval()
        tokenizer = tokenizers.load(Path(run) / "tokenizer").to(args.device).eval()
        layout = tokenizer.layout
        if real is None:
            real = reference_images(args.reference, tokenizer.config.resolution, frames)
        labels = torch.arange(args.num_samples) % model.config.num_classes
        start = time.perf_counter()
        clips, valid = draw(model, tokenizer, labels, config, args.batch_size)
        seconds = time.perf_counter() - start
        clips = clips[:, :frames]  # (N, T, H, W, C)
        fvd = frechet_video_distance(features, real, clips)
        consistency = class_consistency(classifier, from_uint8(clips).to(args.device), labels.to(args.device))
        paradigm = for_generator(model, layout)
        if paradigm.checks_validity:  # byte streams: one pass per byte until EOS
            tokens, passes = f"<={layout.max_len}", "stream"
        else:
            tokens = str(layout.num_tokens)
            passes = str(layout.frames if isinstance(model, NextFrameLlama) else layout.num_tokens)
        print(
            f"{run:36s} {tokens:>7s} {passes:>7s} {seconds:8.1f} {valid.mean():6.1%} {fvd:8.2f} "
            f"{consistency['overall']:10.3f}"
        )
    print("passes: generator forward passes per clip (byte streams: one per byte until EOS)")


if __name__ == "__main__":
    main()
