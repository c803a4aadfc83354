"""Every shipped recipe that runs on embedded data trains a few steps and samples, in the order
its runs depend on each other (tokenizers, judges, generators, then the runs built on those).

The recipes run as written except for their length (2 steps), batch size (at most 8), data
workers (0) and dataset: CIFAR-10 recipes (``data/train``) read the embedded digits at their own
resolution. The ImageNet, UCF-101 and LlamaGen recipes need data or official weights that are
not here; test_recipes.py parses them and checks their paradigms and options.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from argen.cli import sample as sample_cli
from argen.config import load_yaml
from argen.training.recipes import recipe_from_dict
from argen.training.trainer import train

pytestmark = pytest.mark.slow  # multi-process or every recipe: outside the fast subset

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("digits_", "digits64_", "moving_digits_", "cifar10_")
SHIPPED = sorted(p for p in (ROOT / "configs").glob("*.yaml") if p.name.startswith(FAMILIES))
READS = ("tokenizer", "target", "teacher", "base", "init_from")  # keys naming runs a recipe reads


def run_of(path: str) -> str:
    """The run directory a recipe key points into (``runs/x/model`` -> ``runs/x``)."""
    parts = Path(path).parts
    return str(Path(*parts[:3])) if parts[0] == "runs" else path


def reads(data: dict) -> set[str]:
    encoder = (data.get("align") or {}).get("encoder")  # align: reads its encoder's run
    named = [data.get(k) for k in READS] + [encoder]
    return {run_of(p) for p in named if isinstance(p, str) and p.startswith("runs/")}


def in_dependency_order(paths: list[Path]) -> list[Path]:
    """Recipes ordered so that each comes after the recipes whose runs it reads."""
    made = {load_yaml(p)["output_dir"]: p for p in paths}
    ordered: list[Path] = []
    while len(ordered) < len(paths):
        ready = [
            p
            for p in paths
            if p not in ordered and all(made[r] in ordered for r in reads(load_yaml(p)) if r in made)
        ]
        assert ready, "recipes read each other's runs in a cycle"
        ordered += ready
    return ordered


ORDERED = in_dependency_order(SHIPPED)


def shortened(path: Path) -> dict:
    """The recipe as written, two steps long, on a small batch of embedded data."""
    data = load_yaml(path)
    data["train"] = {**data.get("train", {}), "max_steps": 2, "save_every": 2, "log_every": 1}
    data["train"]["warmup_steps"] = 1
    section = data.setdefault("data", {})
    section.update(num_workers=0, batch_size=min(section.get("batch_size", 64), 8))
    if section.get("dataset") == "data/train":
        section["dataset"] = "digits"
    if data["task"] == "distill":
        data["num_pairs"] = 16
    return data


def sample_args(data: dict, out: Path) -> list[str] | None:
    """sample.py's arguments for the run a recipe makes (None: it is not sampled on its own)."""
    run = data["output_dir"]
    args = ["--num-samples", "2", "--batch-size", "2", "--out", str(out)]
    task = data["task"]
    if task == "generator" and data.get("paradigm") == "coarse_labels":
        return None  # sampled with its refiner, below
    if task == "refiner":
        coarse = run_of(data["tokenizer"])
        return ["--ckpt", coarse, "--refiner", run, *args]
    if task == "draft_head":
        return ["--ckpt", data["target"], "--speculative", run, *args]
    if task not in ("generator", "distill", "control"):
        return None
    if task == "control":
        args += ["--control", str(ROOT / "examples" / "digit3.png")]
    if json.loads((Path(run) / "model" / "config.json").read_text()).get("condition") == "text":
        args += ["--prompt", "a handwritten digit three"]
    return ["--ckpt", run, *args]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """Where the recipes' relative runs/ paths land, shared by the recipes that read them."""
    return tmp_path_factory.mktemp("shipped")


@pytest.mark.parametrize("path", ORDERED, ids=[p.stem for p in ORDERED])
def test_shipped_recipe_trains_and_samples(path, workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    data = shortened(path)
    missing = sorted(r for r in reads(data) if not (workdir / r).is_dir())
    assert not missing, f"{path.name} reads runs an earlier recipe failed to make: {missing}"
    out = train(recipe_from_dict(data))
    assert (out / "checkpoint").is_dir() or data.get("tokenizer") in ("jpeg", "avc")
    args = sample_args(data, workdir / "samples" / path.stem)
    if args is not None:
        assert sample_cli.main(args) == 0, f"sample.py {' '.join(args)}"
        assert (workdir / "samples" / path.stem / "samples.npz").is_file()


def test_every_runnable_recipe_is_covered():
    others = sorted(p.name for p in (ROOT / "configs").glob("*.yaml") if p not in SHIPPED)
    assert all(name.startswith(("imagenet_", "ucf101_", "llamagen_")) for name in others), others
