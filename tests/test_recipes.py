from pathlib import Path

import pytest

from argen.config import load_yaml
from argen.training.recipes import TOKENIZER_RECIPES, TokenizerRecipe, load_recipe

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_recipe_loads(path):
    recipe = load_recipe(path)
    assert recipe.output_dir.startswith("runs/")


TOKENIZER_CONFIGS = [p for p in CONFIGS if load_yaml(p).get("task") == "tokenizer"]


@pytest.mark.parametrize("path", TOKENIZER_CONFIGS, ids=[p.name for p in TOKENIZER_CONFIGS])
def test_tokenizer_recipes_resolve_to_their_kind(path):
    recipe = load_recipe(path)
    expected = TOKENIZER_RECIPES.get(recipe.tokenizer, TokenizerRecipe)
    assert type(recipe) is expected  # e.g. tokenizer: avc -> AVCTokenizerRecipe with an AVCConfig
    assert type(recipe.model) is type(expected(output_dir="x").model)


def test_codec_configs_are_among_them():
    kinds = {load_recipe(p).tokenizer for p in TOKENIZER_CONFIGS}
    assert {"jpeg", "avc", "vq", "multiscale"} <= kinds
