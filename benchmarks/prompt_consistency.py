"""Class-consistency of text-to-image samples whose prompts name a class: each sample's prompt
is matched to the class whose template caption it is, and a classifier checks the image.

    python -m benchmarks.prompt_consistency --samples runs/digits/t2i_samples \\
        --classifier runs/digits/classifier/model --dataset digits
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from argen.data import build_dataset, captions_of
from argen.eval import class_consistency, from_uint8, load_classifier


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", default="runs/digits/t2i_samples", help="a sample.py output directory")
    p.add_argument("--classifier", default="runs/digits/classifier/model")
    p.add_argument("--dataset", default="digits", help="whose class names and caption template to use")
    p.add_argument("--template", help="caption template (default: the dataset's)")
    args = p.parse_args()

    out = Path(args.samples)
    data = np.load(out / "samples.npz")
    prompts = json.loads((out / "prompts.json").read_text())
    classifier = load_classifier(args.classifier)
    captions = captions_of(build_dataset(args.dataset, classifier.config.resolution), args.template)
    unknown = sorted(set(prompts) - set(captions))
    if unknown:
        raise SystemExit(f"prompts that are no class caption: {unknown}")
    labels = torch.tensor([captions.index(prompts[i]) for i in data["prompt_ids"]])
    result = class_consistency(classifier, from_uint8(data["arr_0"]), labels)
    print(json.dumps({"samples": str(out), "num_samples": len(labels), **result}, indent=2))


if __name__ == "__main__":
    main()
