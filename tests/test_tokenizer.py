import pytest
import torch

from argen import tokenizers
from argen.checkpoint import CheckpointError, save_model
from argen.tokenizers.vq import VQConfig, VQModel


def tiny_vq() -> VQModel:
    torch.manual_seed(0)
    config = VQConfig(
        resolution=16,
        base_channels=8,
        channel_mult=(1, 2, 2),
        num_res_blocks=1,
        z_channels=8,
        norm_groups=4,
        codebook_size=64,
        codebook_dim=4,
    )
    return VQModel(config).eval()


def test_encode_decode_shapes_and_layout():
    vq = tiny_vq()
    pixels = torch.rand(3, 3, 16, 16) * 2 - 1
    ids = vq.encode(pixels)
    assert ids.shape == (3, 4, 4) and ids.dtype == torch.int64
    assert 0 <= ids.min() and ids.max() < 64
    assert (vq.layout.height, vq.layout.width, vq.layout.vocab_size) == (4, 4, 64)
    out = vq.decode(ids)
    assert out.shape == pixels.shape and out.min() >= -1 and out.max() <= 1


def test_ids_are_the_nearest_l2_normalised_codes_and_decode_looks_them_up():
    vq = tiny_vq()
    pixels = torch.rand(2, 3, 16, 16) * 2 - 1
    z = torch.nn.functional.normalize(vq.quant_conv(vq.encoder(pixels)), dim=1)  # (B, D, h, w)
    codebook = torch.nn.functional.normalize(vq.quantize.embedding.weight, dim=1)
    sims = torch.einsum("bdhw,kd->bhwk", z, codebook)
    assert torch.equal(vq.encode(pixels), sims.argmax(-1))  # unit vectors: nearest = most similar
    ids = vq.encode(pixels)
    expected = vq.decoder(vq.post_quant_conv(codebook[ids].permute(0, 3, 1, 2))).clamp(-1, 1)
    torch.testing.assert_close(vq.decode(ids), expected)
    recon, _ = vq(pixels)  # the training forward decodes the same codes
    torch.testing.assert_close(recon.clamp(-1, 1), expected, atol=1e-5, rtol=1e-5)


def test_quantizer_statistics():
    vq = tiny_vq()
    z = torch.randn(4, 4, 8, 8)
    _, ids, stats = vq.quantize(z)
    used = ids.unique().numel()
    assert stats["codebook_usage"].item() == pytest.approx(used / 64)
    assert 1.0 <= stats["perplexity"].item() <= used + 1e-4
    # both losses are the mean squared distance of each l2-normalised vector to its code
    unit = torch.nn.functional.normalize(z.permute(0, 2, 3, 1), dim=-1)  # (B, h, w, D)
    distance = (unit - vq.quantize.codebook()[ids]).pow(2).mean()
    assert stats["codebook_loss"].item() == pytest.approx(distance.item(), rel=1e-5)
    assert stats["commit_loss"].item() == pytest.approx(vq.quantize.beta * distance.item(), rel=1e-5)


def test_bad_inputs_raise_clear_errors():
    vq = tiny_vq()
    with pytest.raises(ValueError, match="token ids must lie in"):
        vq.decode(torch.full((1, 4, 4), 64))
    with pytest.raises(ValueError, match="16x16"):
        vq.encode(torch.zeros(1, 3, 32, 32))


def test_save_load_roundtrip(tmp_path):
    vq = tiny_vq()
    save_model(vq, tmp_path / "vq")
    loaded = tokenizers.load(tmp_path / "vq")
    pixels = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(loaded.encode(pixels), vq.encode(pixels))
    for key, value in vq.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_missing_or_mismatched_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        tokenizers.load(tmp_path)
    save_model(tiny_vq(), tmp_path / "vq")
    config = (
        (tmp_path / "vq" / "config.json").read_text().replace('"codebook_size": 64', '"codebook_size": 65')
    )
    (tmp_path / "vq" / "config.json").write_text(config)
    with pytest.raises(CheckpointError, match="does not match"):
        tokenizers.load(tmp_path / "vq")
