"""Fine-tuning to other classes, in one run: the demo generator (10 digit classes) fine-tuned on
an image folder of three digits (0, 1, 2) against the same recipe from scratch, at the same step
budget and seed. Both sample 100 images per class from their trained weights (``model/``: an EMA
of a few hundred steps from scratch would still be mostly its initialisation); the judge (the
demo's classifier) gives class-consistency, and classifier-feature FID is against the folder.

    python -m benchmarks.finetune_classes --base runs/digits --steps 300
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from argen.data import build_dataset
from argen.images import to_uint8
from argen.training.recipes import load_recipe
from argen.training.trainer import train

DIGITS = (0, 1, 2)


def digits_folder(root: Path, resolution: int) -> Path:
    """The embedded digits of ``DIGITS`` as an image folder (root/<digit>/<index>.png)."""
    dataset = build_dataset("digits", resolution)
    for index in range(len(dataset)):
        image, label = dataset[index]
        if label in DIGITS:
            (root / str(label)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(to_uint8(image[None])[0]).save(root / str(label) / f"{index}.png")
    return root


def train_and_judge(args, name: str, folder: Path, init_from: str | None) -> dict:
    out = Path(args.out) / name
    overrides = [
        f"output_dir={out}",
        f"tokenizer={args.base}/vq/model",
        f"data.dataset={folder}",
        f"data.token_cache={Path(args.out) / 'tokens'}",
        f"train.max_steps={args.steps}",
        f"train.save_every={args.steps}",
    ]
    if init_from:
        overrides.append(f"init_from={init_from}")
    train(load_recipe("configs/digits_gpt.yaml", overrides))
    samples = out / "samples"
    judge = [
        "--fid",
        str(folder),
        "--fid-features",
        "classifier",
        "--classifier",
        f"{args.base}/classifier/model",
    ]
    count = str(100 * len(DIGITS))
    settings = ["--num-samples", count, "--cfg-scale", "2", "--weights", "model", "--overwrite"]
    command = [sys.executable, "sample.py", "--ckpt", str(out), *settings, "--out", str(samples), *judge]
    subprocess.run(command, check=True)
    metrics = json.loads((samples / "metrics.json").read_text())
    return {"fid": metrics["fid_classifier"], "classes": metrics["class_consistency"]["overall"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default="runs/digits", help="the demo's runs: vq/, gpt/, classifier/")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--out", default="runs/digits/finetune_classes")
    args = p.parse_args()
    folder = digits_folder(Path(args.out) / "folder", 16)
    rows = {
        "from scratch": train_and_judge(args, "scratch", folder, None),
        "fine-tuned from the demo generator": train_and_judge(args, "finetuned", folder, f"{args.base}/gpt"),
    }
    print(f"digits {DIGITS} as an image folder, {args.steps} steps each, 300 samples of model/, cfg 2")
    for name, row in rows.items():
        print(f"{name:36s} fid_classifier {row['fid']:.3f}  class-consistency {row['classes']:.1%}")


if __name__ == "__main__":
    main()
