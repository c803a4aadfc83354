"""VAR's VQVAE layout (hand-built here from an argen model): key mapping both ways, shape
inference, and the conversion CLI."""

import pytest
import torch

from argen import tokenizers
from argen.checkpoint import CheckpointError
from argen.convert import load_generator, load_tokenizer
from argen.convert.__main__ import main as convert
from argen.convert.var import vae_from_var, vae_to_var
from argen.tokenizers import MultiScaleVQConfig, MultiScaleVQModel


def var_model(phi_count: int) -> MultiScaleVQModel:
    torch.manual_seed(0)
    config = MultiScaleVQConfig(
        resolution=32,
        base_channels=32,
        channel_mult=(1, 1, 2),
        num_res_blocks=2,
        z_channels=8,
        codebook_size=40,
        codebook_dim=8,
        quant_conv_kernel=3,
        patch_nums=(1, 2, 4, 8),
        phi_count=phi_count,
    )
    return MultiScaleVQModel(config).eval()


@pytest.mark.parametrize("phi_count", [1, 2])
def test_var_layout_round_trip_is_lossless(phi_count):
    model = var_model(phi_count)
    state = vae_to_var(model)
    assert "encoder.down.0.block.1.conv1.weight" in state and "decoder.up.2.attn.2.qkv.weight" in state
    assert (
        "encoder.mid.attn_1.qkv.bias" in state and state["encoder.mid.attn_1.qkv.weight"].shape[0] == 3 * 64
    )
    phi = "quantize.quant_resi.qresi.weight" if phi_count == 1 else "quantize.quant_resi.qresi_ls.1.weight"
    assert phi in state and not any(k.startswith(("phis", "encoder.conv_blocks")) for k in state)
    state["quantize.ema_vocab_hit_SV"] = torch.zeros(4, 40)  # a statistics buffer, dropped
    converted = vae_from_var(state, image_size=32, patch_nums=(1, 2, 4, 8))
    assert converted.config == model.config
    back = vae_to_var(converted)
    assert back.keys() == set(state) - {"quantize.ema_vocab_hit_SV"}
    assert all(torch.equal(back[k], state[k]) for k in back)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert all(torch.equal(a, b) for a, b in zip(converted.encode(x), model.encode(x)))


def test_var_cli_and_missing_keys(tmp_path):
    state = vae_to_var(var_model(2))
    torch.save(state, tmp_path / "vae.pth")
    args = ["var-vae", str(tmp_path / "vae.pth"), str(tmp_path / "out"), "--image-size", "32"]
    assert convert(args) == 2  # VAR's default scales end at 16, this latent is 8x8
    assert convert([*args, "--patch-nums", "1", "2", "4", "8"]) == 0
    loaded = tokenizers.load(tmp_path / "out")
    assert isinstance(loaded, MultiScaleVQModel) and loaded.config.phi_count == 2
    assert loaded.config.patch_nums == (1, 2, 4, 8) and loaded.config.quant_conv_kernel == 3
    del state["post_quant_conv.bias"]
    with pytest.raises(CheckpointError, match=r"missing keys \['post_quant_conv.bias'\]"):
        vae_from_var(state, image_size=32, patch_nums=(1, 2, 4, 8))


def test_official_var_files_load_directly(tmp_path):
    torch.manual_seed(0)
    config = MultiScaleVQConfig(  # VAR's default scales: a 16x16 latent at 256 px
        resolution=256,
        base_channels=8,
        channel_mult=(1, 1, 1, 1, 1),
        num_res_blocks=1,
        z_channels=8,
        norm_groups=32,
        codebook_size=40,
        codebook_dim=8,
        quant_conv_kernel=3,
        phi_count=4,
    )
    original = MultiScaleVQModel(config).eval()
    torch.save(vae_to_var(original), tmp_path / "vae_ch8v40z8.pth")
    loaded = load_tokenizer(tmp_path / "vae_ch8v40z8.pth")
    assert isinstance(loaded, MultiScaleVQModel) and loaded.config == config
    state = original.state_dict()
    assert loaded.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())  # every weight, not shapes
    pixels = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(loaded.encode(pixels), original.encode(pixels)))


def tiny_var(shared_aln: bool = False):
    from argen.models.var import VARConfig, VARTransformer

    torch.manual_seed(0)
    config = VARConfig(
        vocab_size=40,
        grid_size=(8, 8),
        num_classes=5,
        dim=32,
        n_layer=2,
        n_head=2,
        ffn_dim=128,
        norm_eps=1e-6,
        patch_nums=(1, 2, 4, 8),
        token_dim=8,
        shared_aln=shared_aln,
    )
    model = VARTransformer(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model


@pytest.mark.parametrize("shared_aln", [False, True])
def test_var_transformer_layout_and_cached_sampling(tmp_path, shared_aln):
    from argen.convert.var import var_from_official
    from argen.sampling import SamplingConfig
    from argen.sampling.next_scale import sample_next_scale

    model = tiny_var(shared_aln)
    state = model.state_dict()
    assert {"lvl_1L", "attn_bias_for_masking", "blocks.1.attn.scale_mul_1H11", "pos_start"} <= state.keys()
    assert ("shared_ada_lin.1.weight" in state) == shared_aln and "blocks.0.attn.zero_k_bias" in state
    converted = var_from_official(state, patch_nums=(1, 2, 4, 8))
    assert converted.config == model.config
    assert all(torch.equal(converted.state_dict()[k], v) for k, v in state.items())
    # greedy cached sampling == argmax of the teacher-forced forward with VAR's CFG ramp
    vq = var_model(2)
    labels = torch.tensor([0, 3])
    config = SamplingConfig(cfg_scale=2.5, cfg_schedule="linear", temperature=0)
    ids = sample_next_scale(model, vq, labels, config)
    logits = model(vq.teacher_inputs(ids).repeat(2, 1, 1), model.with_null(labels))
    cond, uncond = logits.chunk(2)
    t = torch.cat([torch.full((pn * pn,), 1.5 * k / 3) for k, pn in enumerate((1, 2, 4, 8))])[None, :, None]
    expected = ((1 + t) * cond - t * uncond).argmax(-1)  # VAR's formula with cfg 1.5
    assert torch.equal(torch.cat([x.flatten(1) for x in ids], 1), expected)
    torch.save({"model": state}, tmp_path / "var_d2.pth")
    with pytest.raises(CheckpointError, match="positions"):
        load_generator(tmp_path / "var_d2.pth")  # VAR's default scales: 680 positions, this one has 85


def test_var_cli_writes_a_runnable_run(tmp_path):
    from argen import models
    from argen.cli import sample as sample_cli
    from argen.models.var import VARTransformer

    torch.save(tiny_var().state_dict(), tmp_path / "var.pth")
    torch.save(vae_to_var(var_model(2)), tmp_path / "vae.pth")
    args = ["var", str(tmp_path / "var.pth"), str(tmp_path / "run"), "--vae", str(tmp_path / "vae.pth")]
    assert convert([*args, "--image-size", "32", "--patch-nums", "1", "2", "4", "8"]) == 0
    assert isinstance(models.load(tmp_path / "run"), VARTransformer)
    assert isinstance(tokenizers.load(tmp_path / "run" / "tokenizer"), MultiScaleVQModel)
    out = tmp_path / "samples"
    assert sample_cli.main(["--ckpt", str(tmp_path / "run"), "--num-samples", "2", "--out", str(out)]) == 0
