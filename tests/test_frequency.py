"""Frequency-band residual VQ (NFIG): Fourier resampling, exact band decomposition, band
codebooks, and next-scale generation over bands through train.py and sample.py."""

import numpy as np
import torch

from argen.cli import sample as sample_cli
from argen.sampling import SamplingConfig
from argen.sampling.next_scale import sample_next_scale
from argen.tokenizers import FrequencyVQConfig, FrequencyVQModel, ScaleLayout
from argen.tokenizers.frequency import fourier_resample, fourier_resample_matrix, frequency_bands, low_pass
from argen.training.recipes import recipe_from_dict
from argen.training.trainer import train
from tests.conftest import gpt_recipe, vq_recipe
from tests.test_next_scale import tiny_generator

SIDES = (1, 2, 4, 6, 8)


def tiny_frequency_tokenizer(**kw) -> FrequencyVQModel:
    torch.manual_seed(0)
    shape = dict(resolution=16, base_channels=8, channel_mult=(1, 1, 2), num_res_blocks=1, z_channels=8)
    config = FrequencyVQConfig(
        **shape, norm_groups=4, codebook_size=32, codebook_dim=4, patch_nums=(1, 2, 3, 4), **kw
    )
    return FrequencyVQModel(config).eval()


def test_fourier_resampling_inverts_and_keeps_the_mean():
    for small, large in [(1, 8), (2, 8), (3, 8), (4, 8), (5, 16), (6, 16)]:
        down, up = fourier_resample_matrix(small, large), fourier_resample_matrix(large, small)
        torch.testing.assert_close(down @ up, torch.eye(small, dtype=torch.float64))
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    for side in SIDES:
        torch.testing.assert_close(fourier_resample(x, side).mean((-2, -1)), x.mean((-2, -1)))
    # a band-limited map survives the round trip; a cosine at 3 cycles is lost on a 4x4 grid
    wave = torch.cos(2 * torch.pi * torch.arange(8.0, dtype=torch.float64) * 3 / 8)
    plane = wave[None, :].expand(8, 8)
    torch.testing.assert_close(low_pass(plane, 8), plane)
    assert low_pass(plane, 4).abs().max() < 1e-12 and low_pass(plane, 7).sub(plane).abs().max() < 1e-12


def test_bands_sum_back_exactly_and_are_nested():
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    bands = frequency_bands(x, SIDES)
    torch.testing.assert_close(sum(bands), x, atol=1e-12, rtol=0)
    for k in range(1, len(SIDES)):
        assert low_pass(bands[k], SIDES[k - 1]).abs().max() < 1e-12  # nothing below the previous cutoff
        torch.testing.assert_close(low_pass(bands[k], SIDES[k]), bands[k])  # nothing above its own
    assert bands[0].std((-2, -1)).max() < 1e-12  # the first band of a 1x1 grid is the mean


def test_band_tokenizer_shapes_codes_and_band_codebooks():
    vq = tiny_frequency_tokenizer()
    pixels = torch.rand(3, 3, 16, 16) * 2 - 1
    ids = vq.encode(pixels)
    assert [tuple(x.shape) for x in ids] == [(3, pn, pn) for pn in (1, 2, 3, 4)]
    assert vq.layout == ScaleLayout((1, 2, 3, 4), 32) and vq.layout.num_tokens == 30
    for k, x in enumerate(ids):  # every band's codes are limited to its grid's frequencies
        code = vq.scale_code(x, k)
        torch.testing.assert_close(low_pass(code, (1, 2, 3, 4)[k]), code, atol=1e-5, rtol=0)
    f_hat = sum(vq.scale_code(x, k) for k, x in enumerate(ids))
    torch.testing.assert_close(vq.decode(ids), vq.decoder(vq.post_quant_conv(f_hat)).clamp(-1, 1))
    banded = tiny_frequency_tokenizer(band_codebooks=True)
    assert len(banded.band_quantize) == 3 and banded.quantizer(2) is banded.band_quantize[1]
    torch.testing.assert_close(
        banded.scale_code(ids[2], 2), fourier_resample(banded.band_quantize[1].lookup(ids[2]), 4)
    )
    assert not torch.allclose(banded.scale_code(ids[2], 2), vq.scale_code(ids[2], 2))
    _, stats = banded(pixels)
    assert 0 < float(stats["codebook_usage"]) <= 1


def test_next_scale_sampler_reads_frequency_bands():
    model, vq = tiny_generator(), tiny_frequency_tokenizer()
    config = SamplingConfig(cfg_scale=2.0, cfg_schedule="linear")

    def draw(seed: int) -> list[torch.Tensor]:
        return sample_next_scale(model, vq, torch.tensor([0, 3]), config, torch.Generator().manual_seed(seed))

    ids = draw(0)
    assert [tuple(x.shape) for x in ids] == [(2, pn, pn) for pn in (1, 2, 3, 4)]
    assert all(torch.equal(a, b) for a, b in zip(ids, draw(0)))
    assert vq.decode(ids).shape == (2, 3, 16, 16)


def test_frequency_pipeline_through_train_and_sample(tmp_path):
    recipe = vq_recipe(tmp_path / "nfig_vq")
    recipe["tokenizer"] = "frequency"
    recipe["model"].update(patch_nums=[1, 2, 4], band_codebooks=True)
    vq = train(recipe_from_dict(recipe))
    assert "FrequencyVQModel" in (vq / "model" / "config.json").read_text()
    gpt = train(recipe_from_dict(gpt_recipe(tmp_path / "nfig", vq / "model")))
    out = tmp_path / "samples"
    args = ["--ckpt", str(gpt), "--num-samples", "4", "--cfg-scale", "2", "--cfg-schedule", "linear"]
    assert sample_cli.main([*args, "--out", str(out)]) == 0
    assert np.load(out / "samples.npz")["arr_0"].shape == (4, 8, 8, 3)
