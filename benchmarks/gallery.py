"""A gallery: one sample grid per paradigm on the digits, from the shipped recipes, written to
``docs/images/<name>.png`` (column j shows class j). Runs that exist are reused; missing ones
are trained first, each recipe after the ones it reads (the demo's VQ for most).

    python -m benchmarks.gallery                      # every entry
    python -m benchmarks.gallery --only raster token_shuffle masked
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml
from PIL import Image

# name -> (recipes to train in order, the last one's run sampled; extra sample.py flags)
ENTRIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "raster": (("digits_vq", "digits_gpt"), ()),
    "next_scale": (("digits_msvq", "digits_var"), ("--cfg-schedule", "linear")),
    "frequency_bands": (("digits_nfig_vq", "digits_nfig"), ()),
    "token_shuffle": (("digits_vq", "digits_shuffle"), ()),
    "masked": (("digits_vq", "digits_maskgit"), ()),
    "bitwise": (("digits_bsq", "digits_bitwise"), ()),
    "continuous_raster": (("digits_kl", "digits_mar"), ()),
    "continuous_scales": (("digits_kl", "digits_flowar"), ()),
    "byte_stream": (("digits_jpeg", "digits_jpeg_lm"), ("--constrained",)),
    "sequence": (("digits_holistic", "digits_sequence"), ()),
}
IMAGES = Path("docs/images")


def output_dir(recipe: str) -> Path:
    return Path(yaml.safe_load(Path(f"configs/{recipe}.yaml").read_text())["output_dir"])


def run(command: list[str]) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def make(name: str) -> Path:
    """Train what is missing, sample 100 images (10 per class) and copy the grid."""
    recipes, flags = ENTRIES[name]
    for recipe in recipes:
        if not (output_dir(recipe) / "model" / "config.json").is_file():
            run([sys.executable, "train.py", "--config", f"configs/{recipe}.yaml"])
    ckpt = output_dir(recipes[-1])
    out = ckpt / "gallery"
    sample = [sys.executable, "sample.py", "--ckpt", str(ckpt), "--num-samples", "100", "--cfg-scale", "2"]
    run([*sample, *flags, "--out", str(out), "--overwrite"])
    IMAGES.mkdir(parents=True, exist_ok=True)
    target = IMAGES / f"{name}.png"
    small_png(out / "grid.png", target)
    return target


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
