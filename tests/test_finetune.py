"""Fine-tuning a trained or official generator on other data: another number of classes (the
class table resized), another grid, a tokenizer from another run; the end-to-end path from an
official LlamaGen file to samples of each class of an image folder."""

import numpy as np
import pytest
import torch
from PIL import Image

import argen
from argen import models
from argen.checkpoint import save_model
from argen.cli import sample as sample_cli
from argen.models.llama import Llama, LlamaConfig
from argen.tokenizers.vq import VQConfig, VQModel
from argen.training.init_from import resized_class_table, start_from
from argen.training.recipes import recipe_from_dict
from argen.training.trainer import train
from tests.conftest import TRAIN, gpt_recipe
from tests.test_convert_llamagen import official_gpt_state


def test_the_class_table_keeps_its_first_rows_and_moves_the_null_row():
    trained, fresh = torch.arange(11.0)[:, None].expand(11, 2), torch.full((4, 2), -1.0)  # 10 -> 3 classes
    kept = resized_class_table(trained, fresh, "keep")
    torch.testing.assert_close(kept[:, 0], torch.tensor([0.0, 1.0, 2.0, 10.0]))
    torch.testing.assert_close(
        resized_class_table(trained, fresh, "new")[:, 0], torch.tensor([-1.0, -1, -1, 10])
    )
    grown = resized_class_table(trained[:4], torch.full((6, 2), -1.0), "keep")  # 3 -> 5 classes
    torch.testing.assert_close(grown[:, 0], torch.tensor([0.0, 1, 2, -1, -1, 3]))


def saved_llama(tmp_path, **config) -> Llama:
    torch.manual_seed(0)
    model = Llama(
        LlamaConfig(
            **{
                "vocab_size": 32,
                "grid_size": (2, 2),
                "num_classes": 10,
                "dim": 32,
                "n_layer": 1,
                "n_head": 2,
                **config,
            }
        )
    )
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    save_model(model, tmp_path / "trained")
    return model


def test_a_generator_starts_from_another_class_count_and_grid_but_not_another_width(tmp_path):
    trained = saved_llama(tmp_path)
    model = Llama(
        LlamaConfig(vocab_size=32, grid_size=(3, 3), num_classes=3, dim=32, n_layer=1, n_head=2, dropout=0.1)
    )
    assert start_from(model, str(tmp_path / "trained")) is True
    torch.testing.assert_close(model.layers[0].attention.wqkv.weight, trained.layers[0].attention.wqkv.weight)
    torch.testing.assert_close(model.class_emb.weight[:3], trained.class_emb.weight[:3])
    torch.testing.assert_close(model.class_emb.weight[3], trained.class_emb.weight[10])  # the null class
    assert model.null_class == 3
    wider = Llama(LlamaConfig(vocab_size=32, grid_size=(2, 2), num_classes=10, dim=64, n_layer=1, n_head=2))
    with pytest.raises(ValueError, match=r"differs .* in \['dim'\]"):
        start_from(wider, str(tmp_path / "trained"))


def three_class_folder(root, size=128):
    for k, color in enumerate([(220, 30, 30), (30, 220, 30), (30, 30, 220)]):
        (root / f"class{k}").mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (size, size), tuple(min(255, c + 8 * i) for c in color)).save(
                root / f"class{k}" / f"{i}.png"
            )
    return root


def test_an_official_llamagen_file_fine_tunes_on_three_classes_and_samples_each(tmp_path):
    """The path the README gives: convert, point init_from at it, train on a folder, sample."""
    torch.save({"model": official_gpt_state()}, tmp_path / "c2i_B_128.pt")  # 7 classes, 64 ids of 64 codes
    torch.manual_seed(0)
    vq = VQModel(
        VQConfig(
            resolution=128,
            base_channels=32,
            channel_mult=(1, 1, 1, 1, 1),
            num_res_blocks=1,
            z_channels=8,
            codebook_size=64,
            codebook_dim=8,
        )
    )
    torch.save({"model": vq.state_dict()}, tmp_path / "vq_ds16_c2i_128.pt")  # its size in its name
    folder = three_class_folder(tmp_path / "folder")
    recipe = gpt_recipe(tmp_path / "tuned", tmp_path / "vq_ds16_c2i_128.pt")  # official files for both
    recipe["data"] = dict(
        dataset=str(folder), resolution=128, batch_size=4, token_cache=str(tmp_path / "tokens")
    )
    recipe["model"] = dict(dim=768, n_layer=2, n_head=12, rope_condition="zero", dropout=0.0)
    recipe.update(
        init_from=str(tmp_path / "c2i_B_128.pt"),
        lora=dict(rank=2, alpha=2, target_modules=["wo"]),
        train={**TRAIN, "max_steps": 2, "ema_decay": 0.0},
    )
    run = train(recipe_from_dict(recipe))
    tuned, official = models.load(run / "model"), argen.load(tmp_path / "c2i_B_128.pt")
    assert tuned.config.num_classes == 3 and tuned.class_emb.weight.shape[0] == 4
    # LoRA: frozen layers stay, adapted ones merge; the resized class table trains beside them
    torch.testing.assert_close(
        tuned.layers[0].attention.wqkv.weight, official.layers[0].attention.wqkv.weight
    )
    assert not torch.allclose(tuned.class_emb.weight[:3], official.class_emb.weight[:3])
    out = tmp_path / "samples"
    assert (
        sample_cli.main(["--ckpt", str(run), "--classes", "0,1,2", "--num-samples", "3", "--out", str(out)])
        == 0
    )
    samples = np.load(out / "samples.npz")
    assert samples["arr_0"].shape == (3, 128, 128, 3)
