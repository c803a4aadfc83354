"""A gallery: one sample grid per paradigm on the digits (and moving digits' frame strips, and
CIFAR-10's raster generator, which needs CIFAR-10 extracted to data/train), from the shipped
recipes, written to
``docs/images/<name>.png`` (column j shows class j, or prompt j). Runs that exist are reused; missing ones
are trained first, each recipe after the ones it reads (the demo's VQ for most).

    python -m benchmarks.gallery                      # every entry
    python -m benchmarks.gallery --only raster token_shuffle masked
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from PIL import Image

from argen.images import to_uint8
from benchmarks.control import held_out


@dataclass(frozen=True)
class Entry:
    """Recipes to train in order; the run sampled (default: the last recipe's) and its flags."""

    recipes: tuple[str, ...]
    flags: tuple[str, ...] = ()
    sampled: str | None = None
    guided: bool = True  # sample at cfg 2 (distilled students keep their teacher's guidance)
    overrides: tuple[str, ...] = ()  # key=value overrides for training the last recipe
    held_out_controls: bool = False  # sample j follows the edges of a held-out image of class j


ENTRIES: dict[str, Entry] = {
    "raster": Entry(("digits_vq", "digits_gpt")),
    "next_scale": Entry(("digits_msvq", "digits_var"), ("--cfg-schedule", "linear")),
    "frequency_bands": Entry(("digits_nfig_vq", "digits_nfig")),
    "coarse_to_fine": Entry(
        ("digits_vq", "digits_ctf", "digits_ctf_refiner"),
        ("--refiner", "runs/digits/ctf_refiner"),
        sampled="digits_ctf",
    ),
    "token_shuffle": Entry(("digits_vq", "digits_shuffle")),
    "masked": Entry(("digits_vq", "digits_maskgit")),
    "bitwise": Entry(("digits_bsq", "digits_bitwise")),
    "bitwise_next_scale": Entry(("digits_bsq_pyramid", "digits_bitwise_var"), ("--cfg-schedule", "linear")),
    "continuous_raster": Entry(("digits_kl", "digits_mar")),
    "continuous_scales": Entry(("digits_kl", "digits_flowar")),
    "byte_stream": Entry(("digits_jpeg", "digits_jpeg_lm"), ("--constrained",)),
    "sequence": Entry(("digits_holistic", "digits_sequence")),
    "distilled": Entry(("digits_vq", "digits_gpt", "digits_dd"), ("--steps", "1"), guided=False),
    "text": Entry(("digits_vq", "digits_t2i"), ("--prompts-file", "examples/prompts.txt")),
    "control": Entry(("digits_vq", "digits_gpt", "digits_control_canny"), held_out_controls=True),
    "video": Entry(("moving_digits_vq", "moving_digits_gpt")),  # frame strips of the first ten clips
    "cifar10_raster": Entry(
        ("cifar10_vq", "cifar10_gpt"), overrides=("model.preset=tiny", "train.max_steps=600")
    ),
}
IMAGES = Path("docs/images")


def output_dir(recipe: str) -> Path:
    return Path(yaml.safe_load(Path(f"configs/{recipe}.yaml").read_text())["output_dir"])


def run(command: list[str]) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def make(name: str) -> Path:
    """Train what is missing, sample 100 images (10 per class or prompt) and copy the grid."""
    entry = ENTRIES[name]
    for recipe in entry.recipes:
        if not (output_dir(recipe) / "model" / "config.json").is_file():
            overrides = entry.overrides if recipe == entry.recipes[-1] else ()
            run([sys.executable, "train.py", "--config", f"configs/{recipe}.yaml", *overrides])
    ckpt = output_dir(entry.sampled or entry.recipes[-1])
    out = ckpt / "gallery"
    sample = [sys.executable, "sample.py", "--ckpt", str(ckpt), "--num-samples", "100"]
    guidance = ["--cfg-scale", "2"] if entry.guided else []
    flags = list(entry.flags)
    if entry.held_out_controls:
        flags += ["--control", str(write_controls(ckpt, ckpt / "gallery_controls"))]
    run([*sample, *guidance, *flags, "--out", str(out), "--overwrite"])
    IMAGES.mkdir(parents=True, exist_ok=True)
    target = IMAGES / f"{name}.png"
    small_png(out / "grid.png", target)
    return target


def write_controls(run_dir: Path, folder: Path) -> Path:
    """The first held-out image of each class (never trained on) as ``<class>.png``, in class
    order, so that sample i (class i mod 10) follows the edges of an image of its own class."""
    images, labels = held_out(json.loads((run_dir / "recipe.json").read_text()))
    folder.mkdir(parents=True, exist_ok=True)
    for label in labels.unique().tolist():
        first = int((labels == label).nonzero()[0])
        pixels = to_uint8(images[first : first + 1])[0]  # (H, W, C)
        Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).save(
            folder / f"{label:04d}.png"
        )
    return folder


def small_png(source: Path, target: Path) -> None:
    """The grid as a small PNG: grey when every pixel is, and optimised."""
    image = Image.open(source).convert("RGB")
    grey = image.convert("L")
    if grey.convert("RGB").tobytes() == image.tobytes():
        image = grey
    image.save(target, optimize=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=sorted(ENTRIES), help="these entries only")
    args = p.parse_args()
    for name in args.only or ENTRIES:
        print(f"{name}: {make(name)}")


if __name__ == "__main__":
    main()
