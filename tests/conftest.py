"""Tiny configs shared by the tests: 8x8 digits, a 4x4 token grid, a 2-layer generator."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

from argen.training.recipes import recipe_from_dict
from argen.training.trainer import train

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config: pytest.Config) -> None:
    """Under ``pytest -n N`` the N worker processes share the cores: one thread each (and in
    the processes they start), else 2 workers x 2 threads on 2 cores run several times slower."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


TRAIN = dict(max_steps=6, lr=1e-3, warmup_steps=2, save_every=3, log_every=2)


def vq_recipe(out: Path, **train) -> dict:
    return dict(
        task="tokenizer",
        output_dir=str(out),
        data=dict(dataset="digits", resolution=8, batch_size=16),
        model=dict(
            resolution=8,
            base_channels=8,
            channel_mult=[1, 2],
            num_res_blocks=1,
            z_channels=8,
            norm_groups=4,
            codebook_size=32,
            codebook_dim=4,
        ),
        train={**TRAIN, **train},
    )


def gpt_recipe(out: Path, tokenizer: Path, **train) -> dict:
    return dict(
        task="generator",
        output_dir=str(out),
        tokenizer=str(tokenizer),
        data=dict(dataset="digits", resolution=8, batch_size=16, token_cache=str(out.parent / "tokens")),
        model=dict(dim=32, n_layer=2, n_head=2, dropout=0.1),
        train={**TRAIN, "ema_decay": 0.9, **train},
    )


def t2i_recipe(out: Path, tokenizer: Path, **train) -> dict:
    recipe = gpt_recipe(out, tokenizer, **train)
    recipe["data"]["text_cache"] = str(out.parent / "text_features")
    recipe["model"].update(condition="text", caption_len=8)
    return recipe


def classifier_recipe(out: Path) -> dict:
    return dict(
        task="classifier",
        output_dir=str(out),
        data=dict(dataset="digits", resolution=8, batch_size=32),
        model=dict(num_classes=10, resolution=8, channels=[8, 16], feature_dim=16),
        train={**TRAIN, "max_steps": 30, "save_every": 30},
    )


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A tiny tokenizer, generator and classifier trained once for the whole session."""
    root = tmp_path_factory.mktemp("runs")
    vq = train(recipe_from_dict(vq_recipe(root / "vq")))
    gpt = train(recipe_from_dict(gpt_recipe(root / "gpt", vq / "model")))
    clf = train(recipe_from_dict(classifier_recipe(root / "classifier")))
    return {"vq": vq, "gpt": gpt, "classifier": clf, "root": root}


@pytest.fixture(scope="session")
def trained_t2i(trained) -> Path:
    """A tiny text-conditional generator on the digits' template captions."""
    return train(recipe_from_dict(t2i_recipe(trained["root"] / "t2i", trained["vq"] / "model")))
