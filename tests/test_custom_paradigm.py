"""A paradigm defined outside the package (examples/custom_paradigm/) trains with train.py,
samples with sample.py and generates its grid in column-major order, through the registration
API alone: the README's "Adding a paradigm" walks through exactly these steps."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from argen import models, paradigms, plugins, tokenizers
from argen.cli import sample as sample_cli
from argen.cli import train as train_cli
from argen.images import to_uint8
from argen.paradigms.generate import batch_seed
from argen.sampling import SamplingConfig
from argen.sampling.next_token import sample_next_token
from tests.conftest import TRAIN, gpt_recipe, write_yaml

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_paradigm"
PLUGIN = str(EXAMPLE / "column_raster.py")


@pytest.fixture(scope="module")
def column_run(trained, tmp_path_factory) -> Path:
    """The example's recipe shape on the tiny tokenizer, trained through train.py."""
    out = tmp_path_factory.mktemp("column") / "run"
    recipe = gpt_recipe(out, trained["vq"] / "model", max_steps=4, save_every=4)
    recipe |= {"plugins": [PLUGIN], "paradigm": "column_raster"}
    assert train_cli.main(["--config", str(write_yaml(out.parent / "column.yaml", recipe))]) == 0
    return out


def test_the_run_records_its_paradigm(column_run):
    for weights in ("model", "ema"):
        config = json.loads((column_run / weights / "config.json").read_text())
        assert config[paradigms.PARADIGM_KEY] == "column_raster"


def forget_plugin(monkeypatch) -> None:
    """This process as a fresh one: the fixture's training imported the plugin."""
    paradigms.unregister_paradigm("column_raster")
    for name in [m for m in sys.modules if m.startswith("argen_plugin_column_raster")]:
        monkeypatch.delitem(sys.modules, name)


def test_sample_py_finds_the_plugin_paradigm_and_draws_columns(column_run, tmp_path, capsys, monkeypatch):
    forget_plugin(monkeypatch)
    args = ["--ckpt", str(column_run), "--num-samples", "3", "--seed", "5", "--cfg-scale", "1"]
    assert sample_cli.main([*args, "--out", str(tmp_path / "no_plugin")]) == 2
    err = capsys.readouterr().err
    assert "paradigm 'column_raster'" in err and "not registered" in err and "--plugin" in err
    assert sample_cli.main([*args, "--plugin", PLUGIN, "--out", str(tmp_path / "s")]) == 0
    images = np.load(tmp_path / "s" / "samples.npz")["arr_0"]  # (3, H, W, C)

    # the same draw by hand: the ids in generation order, then read back column by column
    model = models.load(column_run / "ema")
    tokenizer = tokenizers.load(column_run / "tokenizer")
    h, w = tokenizer.layout.height, tokenizer.layout.width
    generator = torch.Generator().manual_seed(batch_seed(5, 0))
    config = SamplingConfig(cfg_scale=1.0)
    ids = sample_next_token(model, torch.arange(3), config, generator)  # (3, h*w) in drawing order
    columns = ids.view(3, w, h).transpose(1, 2)  # position i is cell (i % h, i // h)
    rows = ids.view(3, h, w)
    assert np.array_equal(images, to_uint8(tokenizer.decode(columns)))
    assert not np.array_equal(images, to_uint8(tokenizer.decode(rows)))


def test_the_loss_reads_the_grid_column_by_column(column_run):
    paradigms.load_plugins([PLUGIN])
    plugin = paradigms.get("column_raster")
    model = models.load(column_run / "model")
    tokenizer = tokenizers.load(column_run / "tokenizer")
    grid = torch.randint(0, tokenizer.layout.vocab_size, (2, 4, 4))
    labels = torch.tensor([1, 2])
    loss, _ = plugin.loss(model, tokenizer, grid, labels)
    by_columns, _ = paradigms.get("raster").loss(model, tokenizer, grid.transpose(1, 2), labels)
    by_rows, _ = paradigms.get("raster").loss(model, tokenizer, grid, labels)
    assert torch.allclose(loss, by_columns) and not torch.allclose(loss, by_rows)


def test_an_installed_plugin_registers_through_its_entry_point(tmp_path, monkeypatch):
    """What ``pip install -e examples/custom_paradigm`` leaves behind: a dist-info folder whose
    entry point names the module, found on the path."""
    info = tmp_path / "argen_column_raster-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: argen-column-raster\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[argen.plugins]\ncolumn_raster = column_raster\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    forget_plugin(monkeypatch)
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    try:
        assert paradigms.registered()["column_raster"].name == "column_raster"
        assert sys.modules["column_raster"].ColumnRaster is type(paradigms.get("column_raster"))
    finally:
        paradigms.unregister_paradigm("column_raster")
        monkeypatch.delitem(sys.modules, "column_raster", raising=False)


def test_a_broken_entry_point_is_named(tmp_path, monkeypatch):
    info = tmp_path / "broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[argen.plugins]\nbroken = no_such_module_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    with pytest.raises(ImportError, match="entry point broken = no_such_module_here"):
        paradigms.registered()


def test_train_py_names_a_plugin_that_cannot_be_found(trained, tmp_path, capsys):
    recipe = gpt_recipe(tmp_path / "run", trained["vq"] / "model", **TRAIN)
    recipe |= {"plugins": [str(tmp_path / "missing.py")], "paradigm": "column_raster"}
    assert train_cli.main(["--config", str(write_yaml(tmp_path / "r.yaml", recipe))]) == 2
    assert "missing.py: no such file" in capsys.readouterr().err


def test_plugin_files_of_one_name_in_two_folders_both_load(tmp_path):
    for folder, name in (("a", "one"), ("b", "two")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "plugin.py").write_text(
            "from argen.paradigms import register_paradigm\n"
            "from argen.paradigms.raster import RasterIds\n"
            f"class P(RasterIds):\n    name = {name!r}\n    default = False\n"
            "register_paradigm(P())\n"
        )
    try:
        paradigms.load_plugins([str(tmp_path / "a" / "plugin.py"), str(tmp_path / "b" / "plugin.py")])
        assert {"one", "two"} <= set(paradigms.registered())
    finally:
        paradigms.unregister_paradigm("one")
        paradigms.unregister_paradigm("two")
