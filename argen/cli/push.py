"""Publish a generator run on the Hugging Face Hub, in the layout ``sample.py --ckpt OWNER/NAME``
and ``argen.load`` read back.

python -m argen.cli.push runs/digits/gpt me/digits-gpt --metrics runs/digits/samples/metrics.json

Uploads the run's weights (``model/``, ``ema/``), its ``tokenizer/``, its ``recipe.json`` and a
generated model card (README.md: what it is, the recipe, the metrics of a sampling run, the
commands to sample it); never its resumable checkpoint, logs or caches. ``--stage DIR`` writes
the folder that would be uploaded and uploads nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from argen.checkpoint import CONFIG_NAME, CheckpointError, is_run

PUBLISHED = ("model", "ema", "tokenizer", "recipe.json")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m argen.cli.push", description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a generator run directory (model/, tokenizer/, recipe.json)")
    p.add_argument("repo", help="the Hub repository, owner/name (created if missing)")
    p.add_argument(
        "--metrics",
        type=Path,
        help="a sampling run's metrics.json for the card (default: the newest in the run)",
    )
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--branch", default=None, help="the branch to commit to (default: main)")
    p.add_argument("--stage", type=Path, help="write the folder to DIR and upload nothing")
    return p.parse_args(argv)


def check_run(run: Path) -> None:
    if not run.is_dir() or not is_run(run) or not (run / "model" / CONFIG_NAME).is_file():
        raise CheckpointError(f"{run} is not a generator run (it needs model/{CONFIG_NAME})")
    if not (run / "tokenizer" / CONFIG_NAME).is_file():
        raise CheckpointError(f"{run} has no tokenizer/: it cannot be sampled from the Hub")


def newest_metrics(run: Path) -> Path | None:
    found = sorted(run.glob("*/metrics.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def model_card(run: Path, repo: str, metrics: dict | None) -> str:
    """The README.md of the published run."""
    config = json.loads((run / "model" / CONFIG_NAME).read_text())
    recipe = json.loads((run / "recipe.json").read_text()) if (run / "recipe.json").is_file() else {}
    paradigm = config.get("_paradigm", "the default for its tokenizer")
    lines = [
        "---",
        "library_name: argen",
        "tags: [argen, autoregressive, image-generation]",
        "---",
        f"# {repo}",
        "",
        f"An argen generator (`{config.get('_class_name')}`, paradigm `{paradigm}`) with its tokenizer: "
        f"{config.get('dim')} wide, {config.get('n_layer')} blocks, "
        f"a {config.get('condition', 'class')} condition.",
        "",
        "## Sample it",
        "",
        "With argen installed (`pip install -e .` in its repository):",
        "",
        "```bash",
        f"python sample.py --ckpt {repo} --num-samples 100 --cfg-scale 2",
        "```",
        "",
        f'In Python: `argen.load("{repo}:model")` (the generator) and `argen.load("{repo}:tokenizer")`.',
    ]
    if metrics is not None:
        lines += ["", "## Metrics of a sampling run", "", "```json", json.dumps(metrics, indent=2), "```"]
    if recipe:
        lines += ["", "## Recipe", "", "```json", json.dumps(recipe, indent=2), "```"]
    return "\n".join(lines) + "\n"


def stage(run: Path, repo: str, metrics_file: Path | None, out: Path) -> Path:
    """The folder to upload: the run's published parts and the model card."""
    check_run(run)
    metrics_file = metrics_file or newest_metrics(run)
    if metrics_file is not None and not metrics_file.is_file():
        raise CheckpointError(f"--metrics {metrics_file} does not exist")
    metrics = json.loads(metrics_file.read_text()) if metrics_file else None
    out.mkdir(parents=True, exist_ok=True)
    for name in PUBLISHED:
        source = run / name
        if source.is_dir():
            shutil.copytree(source, out / name, dirs_exist_ok=True)
        elif source.is_file():
            shutil.copy2(source, out / name)
    (out / "README.md").write_text(model_card(run, repo, metrics))
    return out


def upload(folder: Path, repo: str, private: bool, branch: str | None) -> str:
    """Create the repository if needed and commit the folder -> the commit's URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    try:
        api.create_repo(repo, private=private, exist_ok=True)
        if branch:
            api.create_branch(repo, branch=branch, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo, folder_path=folder, revision=branch, commit_message="argen run"
        )
    except HfHubHTTPError as err:  # no token, no write access, no network
        raise CheckpointError(
            f"{repo}: the Hub refused the upload ({err}); log in with `hf auth login`"
        ) from None
    return str(info)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.stage:
            stage(args.run, args.repo, args.metrics, args.stage)
            print(f"staged {args.run} for {args.repo} in {args.stage}")
            return 0
        with tempfile.TemporaryDirectory() as tmp:
            folder = stage(args.run, args.repo, args.metrics, Path(tmp) / "run")
            print(f"pushed {args.run} to {args.repo}: {upload(folder, args.repo, args.private, args.branch)}")
        print(f"sample it: python sample.py --ckpt {args.repo}")
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
