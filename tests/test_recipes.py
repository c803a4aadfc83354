from dataclasses import dataclass
from pathlib import Path

import pytest

from argen import paradigms
from argen.config import ConfigError, load_yaml
from argen.tokenizers import VQConfig, VQModel, register_tokenizer, tokenizer_kinds
from argen.tokenizers import registry as tokenizer_registry
from argen.training.recipes import CodecTokenizerRecipe, load_recipe, recipe_from_dict

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_recipe_loads(path):
    recipe = load_recipe(path)
    assert recipe.output_dir.startswith("runs/")


TOKENIZER_CONFIGS = [p for p in CONFIGS if load_yaml(p).get("task") == "tokenizer"]


@pytest.mark.parametrize("path", TOKENIZER_CONFIGS, ids=[p.name for p in TOKENIZER_CONFIGS])
def test_tokenizer_recipes_resolve_to_their_kind(path):
    recipe = load_recipe(path)
    kind = tokenizer_kinds()[recipe.tokenizer]
    assert type(recipe.model) is kind.Config  # e.g. tokenizer: avc -> an AVCConfig
    assert isinstance(recipe, CodecTokenizerRecipe) == (recipe.tokenizer in ("jpeg", "avc"))


def test_codec_configs_are_among_them():
    kinds = {load_recipe(p).tokenizer for p in TOKENIZER_CONFIGS}
    assert {"jpeg", "avc", "vq", "multiscale"} <= kinds


GENERATOR_CONFIGS = [p for p in CONFIGS if load_yaml(p).get("task") in ("generator", "refiner")]


@pytest.mark.parametrize("path", GENERATOR_CONFIGS, ids=[p.name for p in GENERATOR_CONFIGS])
def test_generator_recipes_name_registered_paradigms_with_valid_options(path):
    recipe = load_recipe(path)
    if recipe.paradigm is not None:
        paradigm = paradigms.get(recipe.paradigm)
        assert paradigm.task == recipe.task
        paradigm.parse_options(recipe.options)  # raises on an unknown option
    else:
        assert not recipe.options, "options without a paradigm"


def test_generator_keys_of_earlier_versions_become_a_paradigm_and_its_options(tmp_path):
    base = {"task": "generator", "output_dir": "runs/x", "tokenizer": "t"}
    head = {"width": 8}
    cases = [
        ({"coarse_clusters": 32}, "coarse_labels", {"clusters": 32}),
        (
            {"token_scales": [1, 2], "token_resample": "flowar", "head": head},
            "continuous_scales",
            {"scales": [1, 2], "resample": "flowar", "head": head},
        ),
        ({"head": head}, None, {"head": head}),
        ({"next_frame": True}, "next_frame", {}),
        ({"next_frame": False, "coarse_clusters": 0, "token_resample": "flowar"}, None, {}),
    ]
    for legacy, paradigm, options in cases:
        recipe = recipe_from_dict(base | legacy)
        assert (recipe.paradigm, recipe.options) == (paradigm, options), legacy
    with pytest.raises(ConfigError, match="disagree"):
        recipe_from_dict(base | {"coarse_clusters": 8, "paradigm": "raster"})
    with pytest.raises(ConfigError, match="disagree"):
        recipe_from_dict(base | {"coarse_clusters": 8, "next_frame": True})


def test_unknown_paradigm_options_name_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['cluster'\]; valid keys: \['clusters'\]"):
        paradigms.get("coarse_labels").parse_options({"cluster": 8})
    with pytest.raises(ConfigError, match="unknown key"):
        paradigms.get("raster").parse_options({"head": {}})


@dataclass
class TinyConfig(VQConfig):
    tiny: int = 1


class TinyTokenizer(VQModel):
    Config = TinyConfig


def test_a_registered_tokenizer_kind_gets_its_recipe_and_a_taken_one_is_refused(monkeypatch):
    monkeypatch.setattr(tokenizer_registry, "_KINDS", dict(tokenizer_registry._KINDS))
    monkeypatch.setattr(tokenizer_registry, "_CLASSES", dict(tokenizer_registry._CLASSES))
    base = {"task": "tokenizer", "output_dir": "runs/x"}
    with pytest.raises(ConfigError, match=r"'tokenizer' must be one of \[.*'vq'.*\], got 'tiny'"):
        recipe_from_dict(base | {"tokenizer": "tiny"})
    register_tokenizer(TinyTokenizer, "tiny")
    recipe = recipe_from_dict(base | {"tokenizer": "tiny", "model": {"tiny": 3}})
    assert type(recipe.model) is TinyConfig and recipe.model.tiny == 3
    with pytest.raises(ValueError, match="kind 'tiny' is taken by TinyTokenizer"):
        register_tokenizer(VQModel, "tiny")
    with pytest.raises(ValueError, match="kind 'vq' is taken"):
        register_tokenizer(TinyTokenizer, "vq")
