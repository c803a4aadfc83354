from pathlib import Path

import pytest

from argen.training.recipes import load_recipe

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_recipe_loads(path):
    recipe = load_recipe(path)
    assert recipe.output_dir.startswith("runs/")
