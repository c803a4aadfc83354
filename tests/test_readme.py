"""Every file and command the README (and docs/) names exists in the repository or is made by a
README command: recipes, examples, benchmarks, and the runs that later commands read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = {p.relative_to(ROOT): p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))}
COMMANDS = "\n".join(re.findall(r"```bash\n(.*?)```", README, flags=re.S))
REPO_PATH = re.compile(r"(?<![\w/.])((?:configs|examples|benchmarks)/[\w./-]+\.(?:yaml|py|png|txt))")


def test_named_files_exist():
    named = set(REPO_PATH.findall(README))
    named |= {f"benchmarks/{m}.py" for m in re.findall(r"python -m benchmarks\.(\w+)", README)}
    assert named, "the README names no files"
    named = {p for p in named if not re.search(r"/[A-Z]\.", p)}  # placeholders such as configs/X.yaml
    missing = sorted(p for p in named if not (ROOT / p).is_file())
    assert not missing, f"the README names files that do not exist: {missing}"


def made_runs() -> set[str]:
    """Run directories a README command writes: recipes' output_dir (or its override), --out
    targets, converter destinations."""
    made = set()
    for line in COMMANDS.splitlines():
        for config in re.findall(r"--config (\S+\.yaml)", line):
            if "output_dir=" not in line and "RECIPE" not in config:
                made.add(yaml.safe_load((ROOT / config).read_text())["output_dir"])
        made.update(re.findall(r"output_dir=(\S+)", line))
        made.update(re.findall(r"--out (\S+)", line))
        convert = re.search(r"python -m argen\.convert \S+ \S+ (runs/\S+)", line)
        if convert:
            made.add(convert.group(1))
    return made


def test_runs_read_by_commands_are_made_by_commands():
    made = made_runs()
    read = set(re.findall(r"\s(runs/[\w/.-]+)", COMMANDS))
    unmade = sorted(r for r in read if not any(r.startswith(m) or m.startswith(r) for m in made))
    assert not unmade, f"README commands read runs no README command makes: {unmade}"


@pytest.mark.parametrize("doc", sorted(DOCS), ids=str)
def test_files_named_by_the_docs_exist(doc):
    text = DOCS[doc]
    named = set(REPO_PATH.findall(text)) | set(re.findall(r"(?<![\w/.])(argen/[\w/]+\.py)", text))
    assert named, f"{doc} names no files"
    missing = sorted(p for p in named if not (ROOT / p).is_file())
    assert not missing, f"{doc} names files that do not exist: {missing}"


def test_the_docs_are_linked_from_the_readme():
    assert all(str(doc) in README for doc in DOCS), sorted(DOCS)


FLAG = re.compile(r"(?<![\w-])--[a-z][\w-]*")
ALL_TEXT = {"README.md": README, **{str(k): v for k, v in DOCS.items()}}


def flags_after(script: str) -> dict[str, set[str]]:
    """The flags each document passes to ``script`` (on the same line, after its name)."""
    found = {}
    for name, text in ALL_TEXT.items():
        for line in text.splitlines():
            for part in line.split(script)[1:]:
                command = re.split(r"`|#|&&|;|\|", part)[0]  # up to the end of this command
                found.setdefault(name, set()).update(FLAG.findall(command))
    return found


def test_the_flags_the_docs_pass_to_sample_and_train_exist():
    from argen.cli.sample_args import build_parser

    known = {
        "sample.py": set(build_parser()._option_string_actions),
        "train.py": {"--config", "--resume", "--print-config", "--help"},
    }
    for script, options in known.items():
        for doc, flags in flags_after(script).items():
            unknown = sorted(flags - options)
            assert not unknown, f"{doc} passes {script} flags it does not have: {unknown}"


def test_the_modules_the_docs_run_exist():
    import importlib.util

    modules = set()
    for text in ALL_TEXT.values():
        modules |= set(re.findall(r"python -m ((?:argen|benchmarks)[\w.]*)", text))
    assert modules
    missing = sorted(m for m in modules if importlib.util.find_spec(m.rstrip(".")) is None)
    assert not missing, f"the docs run modules that do not exist: {missing}"


def test_the_images_the_docs_show_exist():
    shown = []
    for name, text in ALL_TEXT.items():
        folder = (ROOT / name).parent
        shown += [folder / link for link in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text)]
    missing = sorted(str(p.relative_to(ROOT)) for p in shown if not p.is_file())
    assert not missing, f"the docs show images that do not exist: {missing}"
