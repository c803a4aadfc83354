"""Continuous tokens: the KL tokenizer (scratch and diffusers directories), flow-matching heads,
continuous next-token and next-scale sampling, and the pipeline through train.py and sample.py."""

import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

import argen
from argen import models, paradigms, tokenizers
from argen.checkpoint import CheckpointError, save_model
from argen.cli import sample as sample_cli
from argen.convert.__main__ import main as convert_main
from argen.models.continuous import (
    ContinuousLlama,
    ContinuousLlamaConfig,
    ContinuousNextScaleConfig,
    ContinuousNextScaleLlama,
)
from argen.models.heads import FlowHead, FlowHeadConfig, flow_matching_loss
from argen.sampling import SamplingConfig
from argen.sampling.continuous import sample_continuous_next_scale, sample_continuous_next_token
from argen.sampling.flow import FlowSettings, sample_flow
from argen.tokenizers import ContinuousConfig, ContinuousLayout, ContinuousTokenizer
from argen.training.recipes import recipe_from_dict
from argen.training.trainer import train
from tests.conftest import gpt_recipe, vq_recipe

TINY = dict(
    resolution=16, block_out_channels=(8, 16, 16), layers_per_block=1, latent_channels=2, norm_groups=4
)


def tiny_tokenizer(**kw) -> ContinuousTokenizer:
    torch.manual_seed(0)
    return ContinuousTokenizer(ContinuousConfig(**TINY, **kw)).eval()


def test_tokens_patchify_and_round_trip_the_latent():
    tok = tiny_tokenizer(patch_size=2, scaling_factor=0.5, shift_factor=0.1)
    assert tok.layout == ContinuousLayout(2, 2, 8)  # 4x4 latent of 2 channels in 2x2 patches
    pixels = torch.rand(3, 3, 16, 16) * 2 - 1
    tokens = tok.encode(pixels)
    assert tokens.shape == (3, 4, 8) and tokens.dtype == torch.float32
    latent = tok.vae.encode(pixels).latent_dist.mean
    torch.testing.assert_close(tokens[:, 0].view(3, 2, 2, 2)[:, 0], ((latent - 0.1) * 0.5)[:, 0, :2, :2])
    expected = tok.vae.decode(latent).sample.clamp(-1, 1)
    torch.testing.assert_close(tok.decode(tokens), expected, atol=1e-5, rtol=1e-5)
    auto = tiny_tokenizer(scaling_factor=0.0).train()  # scale by the latents' running std
    auto(pixels)
    std = auto.vae.encode(pixels).latent_dist.mean.std()
    torch.testing.assert_close(auto.latent_std, 0.99 + 0.01 * std)
    auto.latent_std.fill_(2.0)
    torch.testing.assert_close(
        auto.eval().encode(pixels), auto.vae.encode(pixels).latent_dist.mean.flatten(2).transpose(1, 2) / 2
    )


def test_diffusers_directory_loads_with_its_scaling(tmp_path):
    torch.manual_seed(0)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=4,
        scaling_factor=0.2325,
    ).eval()
    vae.save_pretrained(tmp_path / "vae")
    tok = argen.load(tmp_path / "vae", image_size=16)  # sniffed: a diffusers directory
    assert isinstance(tok, ContinuousTokenizer) and tok.config.scaling_factor == 0.2325
    pixels = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        latent = vae.encode(pixels).latent_dist.mean
        torch.testing.assert_close(tok.encode(pixels), (latent * 0.2325).flatten(2).transpose(1, 2))
        torch.testing.assert_close(tok.decode(tok.encode(pixels)), vae.decode(latent).sample.clamp(-1, 1))
    copy = tokenizers.load(save_model(tok, tmp_path / "argen"))
    assert torch.equal(copy.encode(pixels), tok.encode(pixels))
    assert type(argen.load(tmp_path / "argen")) is ContinuousTokenizer  # sniffed: an argen directory
    with pytest.raises(CheckpointError, match="a VAE .*not a generator"):
        argen.load(tmp_path / "vae", "generator")
    args = [str(tmp_path / "vae"), str(tmp_path / "conv"), "--image-size", "16", "--patch-size", "2"]
    assert convert_main(["diffusers-vae", *args, "--patch-nums", "1", "2", "4"]) == 0
    converted = tokenizers.load(tmp_path / "conv")
    assert converted.layout == ContinuousLayout(4, 4, 16, (1, 2, 4))
    assert convert_main(["diffusers-vae", str(tmp_path / "missing"), str(tmp_path / "x")]) == 2


def toy_mixture(n: int) -> torch.Tensor:
    """Two Gaussians at (-2, 0) and (2, 0), std 0.3: mean 0, variance (4.09, 0.09)."""
    centres = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
    return centres[torch.randint(2, (n,))] + 0.3 * torch.randn(n, 2)


def test_flow_head_learns_a_two_dimensional_mixture():
    torch.manual_seed(0)
    head = FlowHead(FlowHeadConfig(width=64, depth=2, noise_draws=2), token_dim=2, cond_dim=4)
    z = torch.ones(256, 1, 4)
    optimizer = torch.optim.Adam(head.parameters(), lr=2e-3)
    losses = []
    for _ in range(600):
        loss = flow_matching_loss(head, toy_mixture(256)[:, None], z)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-50:]) < 0.8 * np.mean(losses[:50])
    samples = sample_flow(
        head.eval(), torch.ones(4000, 1, 4), 2, FlowSettings(25, "heun"), torch.Generator().manual_seed(0)
    )
    samples = samples[:, 0]
    assert samples.mean(0).abs().max() < 0.25
    assert abs(samples[:, 0].var().item() - 4.09) < 0.6 and samples[:, 1].var().item() < 0.3
    assert (samples[:, 0].abs() < 1).float().mean() < 0.15  # two modes, little mass between them


def test_one_euler_step_and_guidance_match_the_formula():
    torch.manual_seed(0)
    head = FlowHead(FlowHeadConfig(width=16, depth=1), token_dim=3, cond_dim=4).eval()
    for p in head.parameters():
        torch.nn.init.normal_(p, std=0.3)
    z_c, z_u = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    eps = torch.randn((2, 5, 3), generator=torch.Generator().manual_seed(7)) * 0.8
    ones = torch.ones(2, 5)
    one = sample_flow(head, z_c, 3, FlowSettings(1, temperature=0.8), torch.Generator().manual_seed(7))
    torch.testing.assert_close(one, eps - head(eps, ones, z_c))
    guided = sample_flow(
        head,
        torch.cat([z_c, z_u]),
        3,
        FlowSettings(1, temperature=0.8, cfg_scale=3.0),
        torch.Generator().manual_seed(7),
    )
    v_c, v_u = head(eps, ones, z_c), head(eps, ones, z_u)
    torch.testing.assert_close(guided, eps - (v_u + 3.0 * (v_c - v_u)))
    off = sample_flow(  # guidance outside its noise interval is the conditional velocity
        head,
        torch.cat([z_c, z_u]),
        3,
        FlowSettings(1, temperature=1.0, cfg_scale=3.0, cfg_interval=(0.0, 0.5)),
        torch.Generator().manual_seed(7),
    )
    plain = sample_flow(head, z_c, 3, FlowSettings(1), torch.Generator().manual_seed(7))
    torch.testing.assert_close(off, plain)


def tiny_continuous_llama() -> ContinuousLlama:
    torch.manual_seed(0)
    config = ContinuousLlamaConfig(
        grid_size=(2, 2),
        num_classes=3,
        dim=32,
        n_layer=2,
        n_head=2,
        token_dim=8,
        head=FlowHeadConfig(width=16, depth=1),
    )
    model = ContinuousLlama(config).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return model


def test_continuous_next_token_sampling_is_seeded_and_cfg_one_is_conditional():
    model, labels = tiny_continuous_llama(), torch.tensor([0, 2])
    config = SamplingConfig(cfg_scale=2.0, flow_steps=4)

    def draw(seed: int, cfg: SamplingConfig = config) -> torch.Tensor:
        return sample_continuous_next_token(model, labels, cfg, torch.Generator().manual_seed(seed))

    tokens = draw(0)
    assert tokens.shape == (2, 4, 8) and torch.equal(tokens, draw(0)) and not torch.equal(tokens, draw(1))
    plain = draw(0, SamplingConfig(flow_steps=4))
    never = draw(0, SamplingConfig(cfg_scale=5.0, flow_steps=4, cfg_noise_interval=(0.0, 0.0)))
    torch.testing.assert_close(never, plain, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(tokens, plain)
    # the cached sampler's z equals teacher forcing on its own output
    z = model(plain, labels)
    loss, logs = paradigms.get("continuous_raster").loss(model, None, plain, labels)
    assert z.shape == (2, 4, 32) and loss.ndim == 0 and loss.requires_grad
    torch.manual_seed(5)
    by_hand = flow_matching_loss(model.head, plain, z)
    torch.manual_seed(5)
    torch.testing.assert_close(
        paradigms.get("continuous_raster").loss(model, None, plain, labels)[0], by_hand
    )


def test_continuous_next_scale_shapes_and_loss():
    tok = tiny_tokenizer(patch_nums=(1, 2, 4))
    torch.manual_seed(0)
    config = ContinuousNextScaleConfig(
        grid_size=(4, 4),
        num_classes=3,
        dim=32,
        n_layer=2,
        n_head=2,
        patch_nums=(1, 2, 4),
        token_dim=2,
        head=FlowHeadConfig(width=16, depth=1, attention=True, heads=2),
    )
    model = ContinuousNextScaleLlama(config).eval()
    tokens = tok.encode(torch.rand(2, 3, 16, 16) * 2 - 1)
    maps = tok.scale_maps(tokens)
    assert [tuple(m.shape) for m in maps] == [(2, 1, 2), (2, 4, 2), (2, 16, 2)]
    torch.testing.assert_close(maps[-1], tokens)
    torch.testing.assert_close(maps[0][:, 0], tokens.mean(1))
    inputs = tok.teacher_inputs(maps)
    labels = torch.tensor([0, 1])
    assert inputs.shape == (2, 20, 2) and model(inputs, labels).shape == (2, 21, 32)
    torch.manual_seed(5)
    loss, _ = paradigms.get("continuous_scales").loss(model, tok, tokens, labels)
    torch.manual_seed(5)
    z = model(inputs, labels)
    parts = [
        flow_matching_loss(model.head, m, z[:, s:e]) * (e - s)
        for m, (s, e) in zip(maps, [(0, 1), (1, 5), (5, 21)])
    ]
    torch.testing.assert_close(loss, sum(parts) / 21)
    out = sample_continuous_next_scale(
        model,
        tok,
        torch.tensor([0, 1, 2]),
        SamplingConfig(cfg_scale=2.0, flow_steps=3),
        torch.Generator().manual_seed(0),
    )
    assert out.shape == (3, 16, 2) and tok.decode(out).shape == (3, 3, 16, 16)


def test_continuous_pipeline_through_train_and_sample(tmp_path):
    recipe = vq_recipe(tmp_path / "kl")
    recipe["tokenizer"] = "continuous"
    recipe["model"] = dict(
        resolution=8, block_out_channels=[8, 16], layers_per_block=1, latent_channels=2, norm_groups=4
    )
    kl = train(recipe_from_dict(recipe))
    assert isinstance(tokenizers.load(kl / "model"), ContinuousTokenizer)
    for name, scales in [("mar", []), ("flowar", [1, 2, 4])]:
        gen = gpt_recipe(tmp_path / name, kl / "model")
        gen["data"]["token_cache"] = str(tmp_path / "kl_tokens")  # one cache for both layouts
        gen["head"] = dict(width=16, depth=1, noise_draws=2, attention=bool(scales), heads=2)
        gen["token_scales"] = scales
        run = train(recipe_from_dict(gen))
        model = models.load(run / "ema")
        assert isinstance(model, ContinuousNextScaleLlama if scales else ContinuousLlama)
        assert tokenizers.load(run / "tokenizer").layout.scales == tuple(scales)
        out = tmp_path / f"{name}_samples"
        args = [
            "--ckpt",
            str(run),
            "--num-samples",
            "4",
            "--cfg-scale",
            "2",
            "--flow-steps",
            "3",
            "--out",
            str(out),
        ]
        assert sample_cli.main([*args, "--flow-solver", "heun"]) == 0
        assert np.load(out / "samples.npz")["arr_0"].shape == (4, 8, 8, 3)
        if not scales:  # continuous speculative decoding, the run drafting for itself
            spec = [*args[:-1], str(tmp_path / "spec"), "--flow-solver", "sde", "--speculative", str(run)]
            assert sample_cli.main([*spec, "--draft-length", "2"]) == 0
            metrics = json.loads((tmp_path / "spec" / "metrics.json").read_text())
            assert metrics["speculative"]["tokens_per_target_call"] == 14 / 5  # 16 tokens: 2, then 3 per pass
            assert metrics["speculative"]["residual_fallbacks"] == 0
            ode = [*args[:-1], str(tmp_path / "ode"), "--speculative", str(run)]
            assert sample_cli.main(ode) == 2  # the ODE sampler has no path densities: refused
