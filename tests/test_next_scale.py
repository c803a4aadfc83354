"""Next-scale prediction: the multi-scale residual VQ, the block-causal generator, the
next-scale sampler and the whole pipeline through train.py and sample.py."""

import numpy as np
import pytest
import torch

from argen.cli import sample as sample_cli
from argen.models.next_scale import NextScaleConfig, NextScaleLlama, split_scales
from argen.sampling import SamplingConfig, guide
from argen.sampling.next_scale import NextScaleOptions, keep_masks, sample_next_scale
from argen.tokenizers import MultiScaleVQConfig, MultiScaleVQModel, ScaleLayout
from argen.training.recipes import recipe_from_dict
from argen.training.trainer import train
from tests.conftest import gpt_recipe, vq_recipe

SCALES = (1, 2, 3, 4)


def tiny_tokenizer(**kw) -> MultiScaleVQModel:
    torch.manual_seed(0)
    shape = dict(resolution=16, base_channels=8, channel_mult=(1, 1, 2), num_res_blocks=1, z_channels=8)
    config = MultiScaleVQConfig(
        **shape, norm_groups=4, codebook_size=32, codebook_dim=4, patch_nums=SCALES, **kw
    )
    return MultiScaleVQModel(config).eval()


def tiny_generator() -> NextScaleLlama:
    torch.manual_seed(0)
    config = NextScaleConfig(
        vocab_size=32,
        grid_size=(4, 4),
        num_classes=5,
        dim=32,
        n_layer=2,
        n_head=4,
        patch_nums=SCALES,
        token_dim=4,
    )
    model = NextScaleLlama(config).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return model


def test_scale_pyramid_shapes_and_schedules():
    vq = tiny_tokenizer(phi_count=2)
    ids = vq.encode(torch.rand(3, 3, 16, 16) * 2 - 1)
    assert [tuple(x.shape) for x in ids] == [(3, pn, pn) for pn in SCALES]
    assert vq.layout == ScaleLayout(SCALES, 32) and vq.layout.num_tokens == 30 and vq.layout.height == 4
    assert MultiScaleVQConfig.doubling(16, resolution=256).patch_nums == (1, 2, 4, 8, 16)
    with pytest.raises(ValueError, match="end at the latent size 4"):
        MultiScaleVQConfig(resolution=16, channel_mult=(1, 1, 2), patch_nums=(1, 2, 3))
    ten = MultiScaleVQConfig(resolution=256, channel_mult=(1, 1, 2, 2, 4), phi_count=4)
    assert ten.patch_nums == (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
    ticks = MultiScaleVQModel.__new__(MultiScaleVQModel)
    ticks.config = ten
    assert [ticks.phi_index(k) for k in range(10)] == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]  # VAR's partial sharing


def test_encode_decode_round_trip_matches_the_forward_pass():
    vq = tiny_tokenizer()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    ids = vq.encode(x)
    recon, stats = vq(x)
    torch.testing.assert_close(vq.decode(ids), recon.clamp(-1, 1))
    assert stats["codebook_loss"] > 0
    with pytest.raises(ValueError, match="expected 4 scales"):
        vq.decode(ids[:3])
    # teacher inputs: f_hat after scale k, area-downsampled to scale k+1
    inputs = vq.teacher_inputs(ids)
    assert inputs.shape == (2, 30 - 1, 4)
    f_hat = vq.scale_code(ids[0], 0) + vq.scale_code(ids[1], 1)
    expected = torch.nn.functional.interpolate(f_hat, size=(3, 3), mode="area").flatten(2).transpose(1, 2)
    torch.testing.assert_close(inputs[:, 4:13], expected)


def test_block_causal_mask_and_dependence():
    model = tiny_generator()
    mask = model.attention_mask(None, 30)[0, 0]
    levels = torch.tensor(sum(([k] * pn * pn for k, pn in enumerate(SCALES)), []))
    assert torch.equal(mask, levels[:, None] >= levels[None, :])
    inputs, labels = torch.randn(2, 29, 4), torch.tensor([1, 3])
    changed = inputs.clone()
    changed[:, 4:13] += 1.0  # the inputs of scale 2 (positions 5..13)
    a, b = model(inputs, labels), model(changed, labels)
    torch.testing.assert_close(a[:, :5], b[:, :5])  # scales 0 and 1 never see scale 2
    assert not torch.allclose(a[:, 5:14], b[:, 5:14]) and not torch.allclose(a[:, 14:], b[:, 14:])


@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
def test_cached_next_scale_sampling_equals_a_full_forward(cfg_scale):
    model, vq = tiny_generator(), tiny_tokenizer()
    labels = torch.tensor([0, 2, 4])
    config = SamplingConfig(cfg_scale=cfg_scale, cfg_schedule="linear", temperature=0)
    ids = sample_next_scale(model, vq, labels, config)
    assert [tuple(x.shape) for x in ids] == [(3, pn, pn) for pn in SCALES]
    inputs = vq.teacher_inputs(ids)
    logits = model(inputs.repeat(2, 1, 1), torch.cat([labels, torch.full_like(labels, model.null_class)]))
    weights = torch.cat([torch.full((pn * pn,), config.scale_weight(k, 4)) for k, pn in enumerate(SCALES)])
    cond, uncond = logits.chunk(2)
    expected = (uncond + weights[None, :, None] * (cond - uncond)).argmax(-1)
    assert torch.equal(torch.cat([x.flatten(1) for x in ids], 1), expected)
    torch.testing.assert_close(guide(logits, 1.0), cond)


def test_cfg_ramp_and_seeded_sampling():
    ramp = SamplingConfig(cfg_scale=2.5, cfg_schedule="linear")
    assert [ramp.scale_weight(k, 4) for k in range(4)] == [1.0, 1.5, 2.0, 2.5]
    assert SamplingConfig(cfg_scale=2.5).scale_weight(0, 4) == 2.5
    model, vq, labels = tiny_generator(), tiny_tokenizer(), torch.tensor([0, 1])
    draw = lambda seed: sample_next_scale(model, vq, labels, ramp, torch.Generator().manual_seed(seed))  # noqa: E731
    assert all(torch.equal(a, b) for a, b in zip(draw(0), draw(0)))
    assert not all(torch.equal(a, b) for a, b in zip(draw(0), draw(1)))
    assert torch.equal(split_scales(torch.arange(30)[None], SCALES)[2], torch.arange(5, 14).view(1, 3, 3))


def test_next_scale_pipeline_through_train_and_sample(tmp_path, trained):
    recipe = vq_recipe(tmp_path / "msvq")
    recipe["tokenizer"] = "multiscale"
    recipe["model"].update(patch_nums=[1, 2, 4], phi_count=2)
    vq = train(recipe_from_dict(recipe))
    gpt = train(recipe_from_dict(gpt_recipe(tmp_path / "ns", vq / "model")))
    assert (gpt / "model" / "config.json").read_text().count("NextScaleLlama") == 1
    out = tmp_path / "samples"
    assert (
        sample_cli.main(["--ckpt", str(gpt), "--num-samples", "4", "--cfg-scale", "2", "--out", str(out)])
        == 0
    )
    assert np.load(out / "samples.npz")["arr_0"].shape == (4, 8, 8, 3)
    from PIL import Image

    Image.new("RGB", (8, 8), (255, 255, 255)).save(tmp_path / "image.png")
    mask = Image.new("L", (8, 8), 0)
    mask.paste(255, (0, 0, 8, 4))  # regenerate the top half
    mask.save(tmp_path / "mask.png")
    edit = ["--edit", str(tmp_path / "image.png"), "--mask", str(tmp_path / "mask.png")]
    assert (
        sample_cli.main(["--ckpt", str(gpt), "--num-samples", "2", *edit, "--out", str(tmp_path / "e")]) == 0
    )
    assert (
        sample_cli.main(["--ckpt", str(gpt), "--num-samples", "2", edit[0], edit[1], "--out", str(out)]) == 2
    )
    # a raster generator with this multi-scale tokenizer (same grid and vocabulary) is refused
    mixed = ["--ckpt", str(trained["gpt"]), "--tokenizer", str(vq / "model"), "--out", str(tmp_path / "m")]
    assert sample_cli.main(mixed) == 2
    assert sample_cli.main(["--ckpt", str(gpt), "--speculative", str(gpt), "--out", str(tmp_path / "x")]) == 2


def test_editing_keeps_the_source_tokens_under_the_mask():
    model, vq, labels = tiny_generator(), tiny_tokenizer(), torch.tensor([0, 1])
    source = vq.encode(torch.rand(1, 3, 16, 16) * 2 - 1)
    config = SamplingConfig(cfg_scale=2.0)
    regenerate = torch.zeros(16, 16)
    regenerate[:, 8:] = 1  # in-paint the right half
    keep = keep_masks(regenerate, SCALES)
    assert keep[1].tolist() == [[True, False], [True, False]] and not keep[0].any()
    edited = sample_next_scale(
        model, vq, labels, config, torch.Generator().manual_seed(0), NextScaleOptions((source, keep))
    )
    for ids, src, k in zip(edited, source, keep):
        assert torch.equal(ids[:, k], src.expand_as(ids)[:, k])
    everything = keep_masks(torch.zeros(16, 16), SCALES)
    same = sample_next_scale(
        model, vq, labels, config, torch.Generator(), NextScaleOptions((source, everything))
    )
    assert all(torch.equal(a, b.expand_as(a)) for a, b in zip(same, source))
    nothing = keep_masks(torch.ones(16, 16), SCALES)
    free = sample_next_scale(
        model, vq, labels, config, torch.Generator().manual_seed(0), NextScaleOptions((source, nothing))
    )
    plain = sample_next_scale(model, vq, labels, config, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(free, plain))
