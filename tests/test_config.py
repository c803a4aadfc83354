import dataclasses
from pathlib import Path

import pytest

from argen import models
from argen.checkpoint import CheckpointError, save_model
from argen.config import ConfigError, from_dict, parse_overrides, to_dict
from argen.models.llama import Llama, LlamaConfig
from argen.training.recipes import load_recipe, recipe_from_dict
from tests.conftest import vq_recipe, write_yaml


def test_unknown_key_names_valid_ones(tmp_path):
    data = vq_recipe(tmp_path / "run")
    data["train"]["learning_rate"] = 1e-3
    with pytest.raises(ConfigError, match="learning_rate.*valid keys.*lr"):
        recipe_from_dict(data)


def test_wrong_type_and_unknown_task(tmp_path):
    data = vq_recipe(tmp_path / "run")
    data["train"]["max_steps"] = "many"
    with pytest.raises(ConfigError, match="max_steps: expected int"):
        recipe_from_dict(data)
    with pytest.raises(ConfigError, match="task"):
        recipe_from_dict({**data, "task": "painting"})


def test_overrides_apply_with_yaml_types(tmp_path):
    path = write_yaml(tmp_path / "r.yaml", vq_recipe(tmp_path / "run"))
    recipe = load_recipe(path, ["train.lr=3e-4", "data.flip=true", "model.channel_mult=[1,2]"])
    assert recipe.train.lr == 3e-4 and recipe.data.flip is True
    assert recipe.model.channel_mult == (1, 2)
    assert parse_overrides(["a.b.c=1"]) == {"a": {"b": {"c": 1}}}
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["train.lr"])


def test_presets_fill_defaults_and_yield_to_explicit_keys():
    config = from_dict(LlamaConfig, {"preset": "XL", "n_layer": 2})
    assert (config.dim, config.n_head, config.n_layer) == (1280, 20, 2)
    assert from_dict(LlamaConfig, {"preset": "B"}).hidden_dim == 2048  # LlamaGen-B's SwiGLU width
    with pytest.raises(ConfigError, match="unknown preset"):
        from_dict(LlamaConfig, {"preset": "huge"})


def test_generator_refuses_keys_derived_from_the_tokenizer(tmp_path):
    with pytest.raises(ConfigError, match="vocab_size"):
        recipe_from_dict(
            {"task": "generator", "output_dir": "x", "tokenizer": "y", "model": {"vocab_size": 9}}
        )


def test_yaml_syntax_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("task: generator\ndata: {batch_size: 8\n")
    with pytest.raises(ConfigError, match=r"bad.yaml line 3, column 1: not valid YAML"):
        load_recipe(path)


@pytest.mark.parametrize("key", ["data.batch_size=0", "train.max_steps=0", "train.max_steps=-5"])
def test_sizes_below_one_are_refused(tmp_path, key):
    path = write_yaml(tmp_path / "r.yaml", vq_recipe(tmp_path / "out"))
    with pytest.raises(ConfigError, match=f"{key.split('=')[0]} must be >= 1"):
        load_recipe(path, [key])


def test_a_damaged_weights_file_is_named(tmp_path):
    model = Llama(LlamaConfig(vocab_size=8, grid_size=(2, 2), dim=16, n_layer=1, n_head=2))
    save_model(model, tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a copy cut short
    with pytest.raises(CheckpointError, match=r"m/model.safetensors is damaged .*copy it again"):
        models.load(tmp_path / "m")


def test_train_help_names_every_task_and_prints_the_resolved_recipe(tmp_path, capsys):
    import yaml

    from argen.cli import train as train_cli
    from argen.training.recipes import RECIPES

    assert all(task in train_cli.__doc__ for task in RECIPES)
    path = write_yaml(tmp_path / "r.yaml", vq_recipe(tmp_path / "out"))
    assert train_cli.main(["--config", str(path), "--print-config", "train.lr=0.003"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["lr"] == 0.003 and recipe_from_dict(printed) == load_recipe(
        path, ["train.lr=0.003"]
    )
    assert not (tmp_path / "out").exists()  # nothing trained


def test_training_ends_with_the_next_command(tmp_path, capsys):
    from argen.cli import train as train_cli

    path = write_yaml(tmp_path / "r.yaml", vq_recipe(tmp_path / "out", max_steps=1, save_every=1))
    assert train_cli.main(["--config", str(path)]) == 0
    assert (
        f"next: python -m argen.eval.reconstruction --tokenizer {tmp_path / 'out'}/model"
        in capsys.readouterr().out
    )


def test_a_generator_recipe_whose_tokenizer_is_missing_is_one_line(tmp_path, capsys):
    from argen.cli import train as train_cli
    from tests.conftest import gpt_recipe

    path = write_yaml(tmp_path / "g.yaml", gpt_recipe(tmp_path / "out", tmp_path / "missing" / "model"))
    assert train_cli.main(["--config", str(path)]) == 2
    assert "missing/model does not exist" in capsys.readouterr().err


def test_every_key_of_every_shipped_recipe_prints_with_its_meaning():
    import dataclasses

    import yaml

    from argen.config_help import annotated_yaml, field_meanings

    def bare_keys(config, where=""):
        meanings = field_meanings(type(config))
        for f in dataclasses.fields(config):
            value = getattr(config, f.name)
            if f.name not in meanings:
                yield where + f.name
            if dataclasses.is_dataclass(value):
                yield from bare_keys(value, f"{where}{f.name}.")

    for path in sorted(Path("configs").glob("*.yaml")):
        recipe = load_recipe(path, [])
        assert list(bare_keys(recipe)) == [], path
        printed = annotated_yaml(recipe)
        assert yaml.safe_load(printed) == to_dict(recipe), path  # the comments change no value
        assert all(" # " in line for line in printed.splitlines()), path


def test_field_meanings_come_from_the_comment_beside_or_above_a_field_and_never_from_a_method():
    from argen.config_help import GLOSSARY, field_meanings

    assert field_meanings(CommentedConfig) == {
        "beside": "said beside",
        "above": "said above it",
        "wrapped": "said inside the wrapped statement",
        "lr": GLOSSARY["lr"],
    }


@dataclasses.dataclass
class CommentedConfig:
    beside: int = 1  # said beside
    # said above it
    above: int = 2
    wrapped: tuple[int, ...] = (
        3,  # said inside the wrapped statement
    )
    bare: int = 4
    lr: float = 0.1

    # about the method, not a field
    def method(self) -> None:
        pass
