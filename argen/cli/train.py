"""``train.py --config RECIPE.yaml [key=value ...] [--resume | --print-config]``: train what the
recipe's ``task`` names (tokenizer, generator, refiner, classifier, draft_head, distill,
control). Runs on CPU, one GPU, or under ``accelerate launch`` on many."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from argen.checkpoint import CheckpointError
from argen.cli import HelpFormatter
from argen.config import ConfigError
from argen.config_help import annotated_yaml
from argen.launch import RunError
from argen.training.recipes import load_recipe
from argen.training.trainer import train

NEXT_STEP = {  # task -> the command that uses what it trained
    "tokenizer": "python -m argen.eval.reconstruction --tokenizer {out}/model",
    "generator": "python sample.py --ckpt {out} --num-samples 100 --cfg-scale 2",
    "distill": "python sample.py --ckpt {out} --num-samples 100",
    "classifier": "python sample.py --ckpt RUN --classifier {out}/model  # judges a generator's samples",
}


def interrupted(args: argparse.Namespace, recipe) -> str:
    """One line for Ctrl-C: what was kept and the command that continues."""
    if recipe is None:
        return "interrupted"
    checkpoint = Path(recipe.output_dir) / "checkpoint"
    if not checkpoint.is_dir():
        return f"interrupted before the first checkpoint: nothing in {recipe.output_dir} to resume"
    command = " ".join(["python train.py --config", args.config, *args.overrides, "--resume"])
    return f"interrupted: {checkpoint} (the last saved step) is kept; continue with: {command}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--config", required=True, help="YAML recipe (configs/*.yaml)")
    parser.add_argument("--resume", action="store_true", help="continue from <output_dir>/checkpoint")
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the recipe with every key resolved and its meaning, and stop",
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.lr=3e-4")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    recipe = None
    try:
        recipe = load_recipe(args.config, args.overrides)
        if args.print_config:
            print(annotated_yaml(recipe))
            return 0
        out = train(recipe, resume=args.resume)
    except (ConfigError, CheckpointError, RunError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted(args, recipe), file=sys.stderr)
        return 130
    print(f"done: {out}")
    if recipe.task in NEXT_STEP:
        print("next: " + NEXT_STEP[recipe.task].format(out=out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
