"""Spatial control (ControlAR) and LoRA fine-tuning: control maps, the controlled model, the
merge of adapters, and the pipeline through train.py and sample.py."""

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from argen import models, tokenizers
from argen.cli import sample as sample_cli
from argen.data.control import (
    ControlCache,
    ControlConfig,
    build_control_cache,
    canny_edges,
    read_control_inputs,
)
from argen.data.images import ImageFolderDataset
from argen.eval import load_classifier
from argen.images import to_uint8
from argen.models.control import Controlled, controlar_layers
from argen.models.llama import Llama, LlamaConfig
from argen.paradigms.control import ControlledRaster
from argen.sampling import SamplingConfig
from argen.sampling.next_token import recompute_next_token, sample_next_token
from argen.training.lora import LoraConfig, add_lora, merged_weights
from argen.training.recipes import recipe_from_dict
from argen.training.tasks.control import ControlledTokens
from argen.training.trainer import train
from tests.conftest import TRAIN, gpt_recipe


def square_image(size: int = 16) -> torch.Tensor:
    image = -torch.ones(1, 3, size, size)
    image[..., 4:12, 4:12] = 1.0  # a white square on black
    return image


def test_canny_edges_outline_a_square():
    edges = canny_edges(square_image())
    assert edges.shape == (1, 1, 16, 16) and set(edges.unique().tolist()) <= {0.0, 1.0}
    assert edges[0, 0, 8, 2:6].sum() >= 1 and edges[0, 0, 8, 10:14].sum() >= 1  # left and right sides
    assert edges[0, 0, 7:9, 7:9].sum() == 0 and edges[0, 0, :2].sum() == 0  # not inside, not far away


def test_opencv_detector_is_controlars_canny_call():
    import cv2

    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    images[:, :, 8:24, 8:24] = 1.0  # a square besides the noise
    config = ControlConfig(detector="opencv")
    assert (config.low_threshold, config.high_threshold) == (100, 200)
    edges = canny_edges(images, config.low_threshold, config.high_threshold, "opencv")
    rgb = to_uint8(images)  # (N, H, W, 3) uint8, as ControlAR reads its images
    expected = np.stack([cv2.Canny(image, 100, 200) for image in rgb]) > 0  # ControlAR's own call
    assert edges.shape == (3, 1, 32, 32) and np.array_equal(edges[:, 0].numpy() > 0, expected)
    assert expected.any() and not expected.all()
    assert (ControlConfig().low_threshold, ControlConfig().high_threshold) == (0.1, 0.2)
    with pytest.raises(ValueError, match="control.detector must be one of"):
        ControlConfig(detector="sobel")


def save_png(path, array: np.ndarray):
    Image.fromarray(array).save(path)
    return path


def test_control_inputs_resize_refuse_and_read_folders(tmp_path, caplog):
    photo = ((square_image(32)[0].permute(1, 2, 0) + 1) * 127.5).byte().numpy()
    save_png(tmp_path / "big.png", photo)
    with caplog.at_level(logging.WARNING):
        edges = read_control_inputs(tmp_path / "big.png", "canny", 1, 16, 0.1, 0.2)
    assert edges.shape == (1, 1, 16, 16) and edges.sum() > 0 and "resized to 16x16" in caplog.text
    save_png(tmp_path / "wide.png", np.zeros((16, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="32x16: expected a square map"):
        read_control_inputs(tmp_path / "wide.png", "map", 1, 16, 0.1, 0.2)
    folder = tmp_path / "maps"
    folder.mkdir()
    for i in range(3):
        save_png(folder / f"{i}.png", np.full((16, 16), 80 * i, np.uint8))
    maps = read_control_inputs(folder, "map", 1, 16, 0.1, 0.2)
    assert maps.shape == (3, 1, 16, 16) and torch.allclose(maps[:, 0, 0, 0], torch.tensor([0, 80, 160]) / 255)
    (folder / "3.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read"):
        read_control_inputs(folder, "map", 1, 16, 0.1, 0.2)


def test_control_folder_pairs_by_name_and_counts_the_missing(tmp_path):
    images, maps = tmp_path / "images", tmp_path / "maps"
    for name in ("a", "b", "c"):
        (images / "cls").mkdir(parents=True, exist_ok=True)
        save_png(images / "cls" / f"{name}.png", np.zeros((8, 8, 3), np.uint8))
    (maps / "cls").mkdir(parents=True)
    save_png(maps / "cls" / "a.png", np.full((8, 8), 255, np.uint8))
    (maps / "cls" / "b.png").write_bytes(b"broken")  # c has no map at all
    config = ControlConfig(kind="folder", folder=str(maps))
    out = build_control_cache(
        ImageFolderDataset(images, 8), config, 8, tmp_path / "cache", {"k": 1}, flip=True
    )
    cache = ControlCache(out, {"k": 1})
    assert cache.valid.tolist() == [True, True, False, False, False, False]
    assert json.loads((out / "meta.json").read_text())["num_skipped"] == 4
    assert torch.equal(cache.map(0), torch.ones(1, 8, 8))
    with pytest.raises(ValueError, match="other settings"):
        ControlCache(out, {"k": 2})


def test_training_items_leave_out_held_out_and_invalid_maps(tmp_path):
    items = [(torch.tensor([i]), i) for i in range(8)]  # 4 images, each with its mirror
    cache = ControlCache.__new__(ControlCache)
    cache.maps, cache.valid = (
        torch.zeros(8, 1, 2, 2, dtype=torch.uint8),
        torch.tensor([1, 1, 1, 1, 0, 0, 1, 1]).bool(),
    )
    kept = ControlledTokens(items, cache, holdout_every=3, copies=2)  # image 0 and 3 are held out
    assert [int(kept[i][0]) for i in range(len(kept))] == [2, 3]  # image 2 has no valid map


def tiny_controlled(layers=(0, 1)):
    torch.manual_seed(0)
    base = Llama(LlamaConfig(vocab_size=32, grid_size=(4, 4), num_classes=4, dim=32, n_layer=2, n_head=2))
    torch.nn.init.normal_(base.output.weight, std=0.5)
    model = ControlledRaster().build_controlled(base.eval(), control_resolution=16, control_layers=layers)
    return base, model.eval()


def test_controlled_model_starts_as_its_base_and_reads_the_control():
    base, model = tiny_controlled()
    tokens, labels, maps = torch.randint(0, 32, (3, 16)), torch.tensor([0, 1, 2]), torch.rand(3, 1, 16, 16)
    assert torch.equal(model(tokens, Controlled(labels, maps)), base(tokens, labels))
    for projection in model.control_encoder.projections:
        torch.nn.init.normal_(projection.weight, std=0.5)
    other = model(tokens, Controlled(labels, torch.rand(3, 1, 16, 16)))
    logits = model(tokens, Controlled(labels, maps))
    assert not torch.allclose(logits, other)
    # the control of token i joins the input that predicts token i: a change in the last row
    # of the map (tokens 12..15, and their neighbours through the convolutions) never reaches
    # the predictions of the first row
    changed = maps.clone()
    changed[:, :, 12:] = 0.5
    moved = (model(tokens, Controlled(labels, changed)) - logits).abs().amax((0, 2))  # (L,)
    assert moved[:4].max() == 0 and moved[12:].min() > 0
    with pytest.raises(ValueError, match="needs control maps"):
        model(tokens, labels)
    with pytest.raises(ValueError, match="control maps must be"):
        model(tokens, Controlled(labels, torch.rand(3, 1, 8, 8)))


def test_cached_sampling_with_guidance_matches_recomputation():
    _, model = tiny_controlled()
    for projection in model.control_encoder.projections:
        torch.nn.init.normal_(projection.weight, std=0.5)
    condition = Controlled(torch.tensor([0, 3]), torch.rand(2, 1, 16, 16))
    config = SamplingConfig(cfg_scale=2.0)
    cached = sample_next_token(model, condition, config, torch.Generator().manual_seed(0))
    reference = recompute_next_token(model, condition, config, torch.Generator().manual_seed(0))
    assert torch.equal(cached, reference)
    rows = model.with_null(condition)
    assert torch.equal(rows.maps[:2], rows.maps[2:]) and rows.base.tolist() == [0, 3, 4, 4]
    assert rows.null.tolist() == [False, False, True, True]


def controlled_with_rule(rule: str, projection: str = "linear"):
    torch.manual_seed(0)
    base = Llama(LlamaConfig(vocab_size=32, grid_size=(4, 4), num_classes=4, dim=32, n_layer=3, n_head=2))
    torch.nn.init.normal_(base.output.weight, std=0.5)
    model = ControlledRaster().build_controlled(
        base.eval(),
        control_resolution=16,
        control_layers=(0, 2),
        null_control=rule,
        control_projection=projection,
    )
    for param in model.control_encoder.projections.parameters():
        torch.nn.init.normal_(param, std=0.5)
    return base, model.eval()


def test_null_rows_of_guidance_see_no_control_by_default():
    condition = Controlled(torch.tensor([0, 3]), torch.rand(2, 1, 16, 16))
    for rule in ("zero", "kept"):
        _, model = controlled_with_rule(rule)
        additions = model.layer_additions(model.with_null(condition), 17)  # block -> (2B, S, D)
        for added in additions.values():
            assert added[:2].abs().sum() > 0
            if rule == "zero":  # ControlAR: the unconditional rows have no control
                assert added[2:].abs().sum() == 0
            else:  # the control stays in both rows
                torch.testing.assert_close(added[2:], added[:2])


def test_training_drops_the_control_with_the_class():
    tokens, labels, maps = torch.randint(0, 32, (3, 16)), torch.tensor([0, 1, 2]), torch.rand(3, 1, 16, 16)
    for rule in ("zero", "kept"):
        base, model = controlled_with_rule(rule)
        model.config.class_dropout = 1.0  # every row dropped
        logits = model.train()(tokens, Controlled(labels, maps))
        unconditional = base(tokens, torch.full((3,), 4))  # the null class, no control
        assert torch.allclose(logits, unconditional, atol=1e-5) == (rule == "zero")


def test_controlar_fusion_layout_starts_as_the_base():
    assert controlar_layers(12) == (0, 4, 8) and controlar_layers(3) == (0, 1, 2)
    base, model = controlled_with_rule("zero", "mlp")
    for projection in model.control_encoder.projections:
        assert isinstance(projection, torch.nn.Sequential) and len(projection) == 3  # two layers
        torch.nn.init.zeros_(projection[-1].weight)
        torch.nn.init.zeros_(projection[-1].bias)
    tokens, labels, maps = torch.randint(0, 32, (2, 16)), torch.tensor([0, 1]), torch.rand(2, 1, 16, 16)
    assert torch.equal(model(tokens, Controlled(labels, maps)), base(tokens, labels))


def test_lora_merge_matches_peft():
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    base, _ = tiny_controlled()
    lora = LoraConfig(rank=4, alpha=8.0, target_modules=("wqkv", "w2"))
    add_lora(base, lora)
    assert {n for n, p in base.named_parameters() if p.requires_grad} and all(
        ".lora_" in n for n, p in base.named_parameters() if p.requires_grad
    )
    for name, param in base.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.3)  # B starts at zero: make the adapter count
    state = merged_weights(base.state_dict(), lora)
    plain = Llama(base.config)
    plain.load_state_dict(state)  # plain keys, strict
    tokens, labels = torch.randint(0, 32, (2, 16)), torch.tensor([0, 1])
    assert torch.allclose(plain.eval()(tokens, labels), base.eval()(tokens, labels), atol=1e-5)
    peft_model = get_peft_model(
        Llama(base.config), PeftLoraConfig(r=4, lora_alpha=8, target_modules=["wqkv", "w2"])
    )
    peft_model.base_model.model.load_state_dict(base.state_dict())
    merged = peft_model.merge_and_unload().state_dict()
    assert all(torch.allclose(merged[k], state[k], atol=1e-6) for k in state)


def control_recipe(out, base, **changes) -> dict:
    recipe = dict(
        task="control",
        output_dir=str(out),
        base=str(base),
        control_cache=str(out.parent / "control_cache"),
        control_width=8,
        lora=dict(rank=2, alpha=4),
        data=dict(dataset="digits", resolution=8, batch_size=16, token_cache=str(base.parent / "tokens")),
        train={**TRAIN, "ema_decay": 0.9},
    )
    return recipe | changes


def test_control_pipeline_through_train_and_sample(trained, tmp_path, capsys):
    run = train(recipe_from_dict(control_recipe(tmp_path / "control", trained["gpt"])))
    model = models.load(run / "ema")
    assert type(model).__name__ == "ControlledLlama" and model.config.control_resolution == 8
    c = model.config  # a new recipe gets ControlAR's layout and guidance
    assert (tuple(c.control_layers), c.control_projection, c.null_control) == (
        (0, 1),
        "mlp",
        "zero",
    )  # n/3 of 2 blocks is 0
    assert not any(".lora_" in k or "base_layer" in k for k in model.state_dict())  # merged on export
    photo = tmp_path / "photo.png"
    save_png(photo, ((square_image(8)[0].permute(1, 2, 0) + 1) * 127.5).byte().numpy())
    out = tmp_path / "samples"
    args = ["--ckpt", str(run), "--num-samples", "4", "--classes", "1,2", "--control", str(photo)]
    assert sample_cli.main([*args, "--out", str(out)]) == 0
    assert np.load(out / "samples.npz")["arr_0"].shape == (4, 8, 8, 3)
    grid = np.asarray(Image.open(out / "grid.png"))
    assert grid.shape[1] == 1 + 4 * 9  # control | sample for each of the 2 classes
    assert sample_cli.main(["--ckpt", str(run), "--out", str(tmp_path / "x")]) == 2
    assert "trained with spatial control: pass --control" in capsys.readouterr().err
    assert (
        sample_cli.main(
            ["--ckpt", str(trained["gpt"]), "--control", str(photo), "--out", str(tmp_path / "y")]
        )
        == 2
    )
    assert "--control is for generators trained with spatial control" in capsys.readouterr().err
    draft = ["--speculative", str(trained["gpt"]), "--out", str(tmp_path / "z")]
    assert sample_cli.main([*args, *draft]) == 2
    assert "is not controlled" in capsys.readouterr().err
    # a controlled draft (here the model itself) drafts under the same control; greedy
    # speculative decoding gives exactly the greedy samples
    greedy = [*args, "--temperature", "0", "--cfg-scale", "2"]
    assert sample_cli.main([*greedy, "--out", str(tmp_path / "g")]) == 0
    assert sample_cli.main([*greedy, "--speculative", str(run), "--out", str(tmp_path / "gs")]) == 0
    a, b = (np.load(tmp_path / name / "samples.npz")["arr_0"] for name in ("g", "gs"))
    assert np.array_equal(a, b)
    metrics = json.loads((tmp_path / "gs" / "metrics.json").read_text())
    assert metrics["speculative"]["tokens_per_target_call"] == pytest.approx(14 / 4)  # every draft accepted


def test_text_conditional_control(trained, trained_t2i, tmp_path):
    recipe = control_recipe(tmp_path / "control", trained_t2i)
    recipe["data"].update(token_cache=str(trained_t2i.parent / "tokens"), text_cache=str(tmp_path / "text"))
    run = train(recipe_from_dict(recipe))
    assert models.load(run / "ema").config.condition == "text"
    maps = tmp_path / "maps"
    maps.mkdir()
    save_png(maps / "a.png", np.zeros((8, 8), np.uint8))
    save_png(maps / "b.png", np.full((8, 8), 255, np.uint8))
    args = ["--ckpt", str(run), "--num-samples", "4", "--prompt", "a 3", "--control", str(maps)]
    assert (
        sample_cli.main([*args, "--control-kind", "map", "--cfg-scale", "2", "--out", str(tmp_path / "s")])
        == 0
    )
    assert np.load(tmp_path / "s" / "samples.npz")["arr_0"].shape == (4, 8, 8, 3)


def test_control_run_refuses_another_base(trained, tmp_path):
    recipe = control_recipe(tmp_path / "control", trained["gpt"], lora=None, control=dict(detector="opencv"))
    run = train(recipe_from_dict(recipe))
    c = models.load(run / "ema").config  # the run's detector is the model's, for sampling
    assert (c.control_detector, tuple(c.control_thresholds)) == ("opencv", (100, 200))
    other = train(recipe_from_dict(gpt_recipe(tmp_path / "gpt2", trained["vq"] / "model", max_steps=2)))
    (tmp_path / "control" / "checkpoint").rename(tmp_path / "moved")  # only the base differs now
    with pytest.raises(ValueError, match="another base generator"):
        train(recipe_from_dict(dict(recipe, base=str(other))))


def test_lora_fine_tuning_of_a_generator_exports_plain_weights(trained, tmp_path):
    recipe = gpt_recipe(tmp_path / "ft", trained["vq"] / "model")
    recipe.update(init_from=str(trained["gpt"]), lora=dict(rank=2, alpha=2, target_modules=["wo"]))
    run = train(recipe_from_dict(recipe))
    tuned, start = models.load(run / "model"), models.load(trained["gpt"] / "ema")
    assert type(tuned) is Llama and set(tuned.state_dict()) == set(start.state_dict())
    changed = {k for k, v in tuned.state_dict().items() if not torch.equal(v, start.state_dict()[k])}
    assert changed and all(k.endswith("attention.wo.weight") for k in changed)  # only the adapted layers
    bad = dict(recipe, output_dir=str(tmp_path / "bad"), model=dict(dim=64, n_layer=2, n_head=2))
    with pytest.raises(ValueError, match="differs from the one this recipe builds"):
        train(recipe_from_dict(bad))


def test_edge_f1_counts_matches_within_the_tolerance():
    from argen.eval.edges import edge_f1, edge_ssim

    target = torch.zeros(1, 1, 8, 8)
    target[..., 2, 1:7] = 1  # a horizontal line of 6 pixels
    shifted = target.roll(1, dims=2)  # one pixel lower
    assert edge_f1(target, target)["f1"] == 1.0 and edge_ssim(target, target) == pytest.approx(1.0)
    assert (
        edge_f1(shifted, target, tolerance=1)["f1"] == 1.0
        and edge_f1(shifted, target, tolerance=0)["f1"] == 0
    )
    half = target.clone()
    half[..., 2, 4:7] = 0  # half the line: every predicted pixel is right, half the target is found
    scores = edge_f1(half, target, tolerance=0)
    assert (scores["precision"], scores["recall"]) == (1.0, 0.5) and scores["f1"] == pytest.approx(2 / 3)
    assert edge_f1(torch.zeros_like(target), target)["f1"] == 0.0


def test_control_benchmark_compares_controlled_base_and_ceiling(trained, tmp_path, monkeypatch, capsys):
    from benchmarks import control

    run = train(recipe_from_dict(control_recipe(tmp_path / "control", trained["gpt"])))
    args = ["--runs", str(run), "--classifier", str(trained["classifier"] / "model"), "--num-samples", "6"]
    monkeypatch.setattr("sys.argv", ["x", *args, "--batch-size", "4"])
    control.main()
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(str(run))]
    assert [r[1] for r in rows] == ["controlled", "base,", "reconstructed"]
    # the ceiling row is the scores of the tokenizer's reconstructions of the held-out images
    recipe = json.loads((run / "recipe.json").read_text())
    tokenizer = tokenizers.load(run / "tokenizer").eval()
    images, labels = control.held_out(recipe)
    images, labels = images[:6], labels[:6]
    edges = canny_edges(images, recipe["control"]["low_threshold"], recipe["control"]["high_threshold"])
    with torch.no_grad():
        reconstructed = to_uint8(tokenizer.decode(tokenizer.encode(images)))
    classifier = load_classifier(trained["classifier"] / "model")
    expected = control.scores(reconstructed, edges, labels, classifier, recipe)
    assert [float(v) for v in rows[2][-6:]] == pytest.approx(expected, abs=1e-3)
    assert float(rows[2][-4]) > float(rows[1][-4])  # reconstructions follow the edges better than no control
