"""VAR's VQVAE layout (hand-built here from an argen model): key mapping both ways, shape
inference, and the conversion CLI."""

import pytest
import torch

from argen import tokenizers
from argen.checkpoint import CheckpointError
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
