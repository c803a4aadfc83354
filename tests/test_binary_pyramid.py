"""Multi-scale binary tokens and bitwise next-scale generation: the pyramid's bits and sums
against Infinity's multi-scale BSQ (scratch copy), round trips, the loss by hand, cached
greedy sampling against a full forward, and the errors."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from argen import paradigms
from argen.models.llama import LlamaConfig
from argen.paradigms.bitwise import to_bits, to_groups
from argen.paradigms.bitwise_next_scale import (
    BitwiseNextScale,
    BitwiseScaleConfig,
    BitwiseScaleLlama,
    split_bit_scales,
)
from argen.paradigms.registry import default_for
from argen.sampling.config import SamplingConfig
from argen.tokenizers.binary import BitGridLayout
from argen.tokenizers.binary_pyramid import BinaryPyramid, BinaryPyramidConfig, BitScaleLayout
from tests.test_binary import TINY, infinity_bsq

SCALES = (1, 2, 3, 4)


def tiny_pyramid(bits: int = 6) -> BinaryPyramid:
    torch.manual_seed(0)
    return BinaryPyramid(BinaryPyramidConfig(**TINY, bits=bits, patch_nums=SCALES)).eval()


def tiny_generator(bits: int = 6, group_bits: int = 1) -> BitwiseScaleLlama:
    torch.manual_seed(0)
    groups = bits // group_bits
    config = BitwiseScaleConfig(
        vocab_size=groups * 2**group_bits,
        grid_size=(4, 4),
        num_classes=5,
        dim=32,
        n_layer=2,
        n_head=2,
        bits=bits,
        group_bits=group_bits,
        patch_nums=SCALES,
        token_dim=bits,
    )
    model = BitwiseScaleLlama(config).eval()
    for p in model.parameters():  # weights that give the head something to say
        torch.nn.init.normal_(p, std=0.3)
    return model


def test_pyramid_bits_and_sums_equal_infinitys_multiscale_bsq():
    reference = infinity_bsq()
    d = 6
    infinity = reference.MultiScaleBSQ(dim=d, codebook_size=2**d, new_quant=True).eval()
    pyramid = tiny_pyramid(d)
    torch.manual_seed(1)
    z = torch.randn(3, d, 4, 4)
    f_hat, bits, _ = pyramid.quantise(z)
    schedule = [(1, pn, pn) for pn in SCALES]
    out, _, expected_bits, *_ = infinity(z, scale_schedule=schedule)
    for ours, theirs in zip(bits, expected_bits):
        assert torch.equal(ours, theirs[:, 0].long())  # (B, 1, pn, pn, d) -> (B, pn, pn, d)
    torch.testing.assert_close(f_hat, out)


class SeededTorch:
    """``torch`` for Infinity's self-correction module, its ``rand`` drawn from ``generator``."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def __getattr__(self, name):
        return getattr(torch, name)

    def rand(self, *shape):
        return torch.rand(shape, generator=self.generator)


def infinity_self_correction(generator: torch.Generator):
    """Infinity's ``BitwiseSelfCorrection`` from the scratch copy, its random draws (numpy's
    share, torch's flips) taken from ``generator`` in the order it makes them."""
    infinity_bsq()  # skips without a copy
    path = Path(os.environ["ARGEN_INFINITY_SRC"]) / "infinity" / "models" / "bitwise_self_correction.py"
    spec = importlib.util.spec_from_file_location("infinity_bsc_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    draw_share = lambda low, high: int(torch.randint(low, int(high), (), generator=generator))  # noqa: E731
    module.np = SimpleNamespace(random=SimpleNamespace(randint=draw_share))
    module.torch = SeededTorch(generator)
    return module.BitwiseSelfCorrection


@pytest.mark.parametrize("layers", [0, 2, 4])
def test_self_correction_equals_infinitys_flip_and_requantise(layers):
    d, strength = 6, 0.3
    quantizer = infinity_bsq().MultiScaleBSQ(dim=d, codebook_size=2**d, new_quant=True).eval()
    correction = infinity_self_correction(torch.Generator().manual_seed(5))(
        SimpleNamespace(quantizer=quantizer, codebook_dim=d),
        SimpleNamespace(
            noise_apply_layers=layers,
            noise_apply_requant=1,
            noise_apply_strength=strength,
            apply_spatial_patchify=0,
            debug_bsc=0,
        ),
    )
    torch.manual_seed(1)
    z = torch.randn(3, d, 4, 4)
    inputs, targets = correction.flip_requant([(1, pn, pn) for pn in SCALES], None, z, "cpu")
    ours, our_inputs = tiny_pyramid(d).self_corrected(z, layers, strength, torch.Generator().manual_seed(5))
    for mine, theirs in zip(ours, targets):
        assert torch.equal(mine.flatten(1, 2), theirs.long())  # (B, pn**2, d)
    torch.testing.assert_close(our_inputs, inputs)


def test_self_correction_without_flips_is_teacher_forcing_and_flips_change_the_later_targets():
    pyramid = tiny_pyramid()
    z = torch.randn(2, 6, 4, 4)
    plain = pyramid.quantise(z)[1]
    targets, inputs = pyramid.self_corrected(z, 0, 0.3)
    assert all(torch.equal(a, b) for a, b in zip(targets, plain))
    torch.testing.assert_close(inputs, pyramid.teacher_inputs(plain))
    flipped, _ = pyramid.self_corrected(z, 3, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(flipped[0], plain[0]) and not torch.equal(flipped[-1], plain[-1])


def test_encode_decode_round_trip_matches_the_forward_pass():
    pyramid = tiny_pyramid()
    pixels = torch.rand(2, 3, 16, 16) * 2 - 1
    bits = pyramid.encode(pixels)
    assert [tuple(b.shape) for b in bits] == [(2, pn, pn, 6) for pn in SCALES]
    reconstruction, _ = pyramid(pixels)
    torch.testing.assert_close(pyramid.decode(bits), reconstruction.clamp(-1, 1))
    assert {"commit_loss", "quantizer_loss", "bit_entropy"} <= set(pyramid.train()(pixels)[1])
    assert pyramid.layout == BitScaleLayout(SCALES, 6) and pyramid.layout.num_tokens == 30
    stored = torch.cat([b.flatten(1) for b in bits], 1)  # as the token cache keeps them
    assert all(torch.equal(a, b) for a, b in zip(split_bit_scales(stored, pyramid.layout), bits))
    stats = pyramid.token_statistics([bits])
    assert 0 <= stats["bit_usage"] <= 1
    assert pyramid.token_statistics(bits) == stats  # the scales, as the reconstruction protocol lists them
    assert (
        pyramid.encoding_to("latent").token_statistics([pyramid.encoding_to("latent").encode(pixels)])
        == stats
    )


def test_loss_is_the_cross_entropy_of_every_group_at_every_scale():
    model, pyramid = tiny_generator(6, 2), tiny_pyramid(6)
    bits = pyramid.encode(torch.rand(2, 3, 16, 16) * 2 - 1)
    stored = torch.cat([b.flatten(1) for b in bits], 1)
    labels = torch.tensor([0, 4])
    loss, logs = BitwiseNextScale().loss(model, pyramid, stored, labels)
    ids = to_groups(torch.cat([b.flatten(1, 2) for b in bits], 1), 2)  # (B, 30, 3)
    logits = model(pyramid.teacher_inputs(bits), labels).view(2, 30, 3, 4)
    by_hand = -logits.log_softmax(-1).gather(-1, ids[..., None]).mean()
    torch.testing.assert_close(loss, by_hand)
    assert logs["bits_loss"] == pytest.approx(loss.item() / 2)


@pytest.mark.parametrize("group_bits", [1, 3])
def test_greedy_cached_sampling_equals_a_full_forward(group_bits):
    model, pyramid = tiny_generator(6, group_bits), tiny_pyramid(6)
    labels = torch.tensor([1, 3])
    config = SamplingConfig(temperature=0.0, cfg_scale=2.0, cfg_schedule="linear")
    bits = BitwiseNextScale().sample(model, pyramid, labels, config, None, paradigms.SamplingExtras())
    assert [tuple(b.shape) for b in bits] == [(2, pn, pn, 6) for pn in SCALES]
    logits = model(pyramid.teacher_inputs(bits).repeat(2, 1, 1), model.with_null(labels))
    weights = torch.cat([torch.full((pn * pn,), config.scale_weight(k, 4)) for k, pn in enumerate(SCALES)])
    cond, uncond = logits.view(4, 30, 6 // group_bits, -1).chunk(2)
    expected = (uncond + weights[None, :, None, None] * (cond - uncond)).argmax(-1)
    assert torch.equal(torch.cat([b.flatten(1, 2) for b in bits], 1), to_bits(expected, group_bits))
    assert pyramid.decode(bits).shape == (2, 3, 16, 16)


def test_sampling_is_seeded():
    model, pyramid = tiny_generator(), tiny_pyramid()
    config = SamplingConfig(temperature=1.0, cfg_scale=1.5)

    def draw(seed):
        generator = torch.Generator().manual_seed(seed)
        bits = BitwiseNextScale().sample(
            model, pyramid, torch.tensor([0, 1]), config, generator, paradigms.SamplingExtras()
        )
        return torch.cat([b.flatten(1) for b in bits], 1)

    assert torch.equal(draw(0), draw(0)) and not torch.equal(draw(0), draw(1))


def test_paradigm_is_the_default_for_bit_pyramids_and_refuses_other_tokens():
    layout = BitScaleLayout(SCALES, 6)
    assert default_for("generator", layout).name == "bitwise_next_scale"
    with pytest.raises(ValueError, match="needs a multi-scale binary tokenizer"):
        paradigms.get("bitwise_next_scale").require_serves(BitGridLayout(4, 4, 6), "runs/bsq")
    with pytest.raises(ValueError, match="patch_nums must increase strictly and end at the latent size 4"):
        BinaryPyramidConfig(**TINY, bits=6, patch_nums=(1, 2, 3))
    with pytest.raises(ValueError, match="integer bits"):
        tiny_pyramid().decode([torch.zeros(1, pn, pn, 6) for pn in SCALES])


def test_self_correcting_runs_cache_latents_and_train_on_them():
    paradigm, pyramid = paradigms.get("bitwise_next_scale"), tiny_pyramid()
    options = paradigm.parse_options({"self_correction_layers": 2})
    latent = paradigm.prepare_tokenizer(pyramid, options, 0)
    assert pyramid.config.encode_to == "bits" and latent.config.encode_to == "latent"
    pixels = torch.rand(2, 3, 16, 16) * 2 - 1
    f = latent.encode(pixels)  # (B, h, w, d)
    assert f.shape == (2, 4, 4, 6) and f.is_floating_point()
    assert all(
        torch.equal(a, b) for a, b in zip(pyramid.quantise(f.permute(0, 3, 1, 2))[1], pyramid.encode(pixels))
    )
    torch.manual_seed(0)
    model = paradigm.build(
        LlamaConfig(dim=32, n_layer=1, n_head=2),
        options,
        latent,
        paradigm.sizes(latent.layout) | {"num_classes": 5},
    )
    assert model.config.self_correction_layers == 2
    loss, _ = paradigm.loss(model, latent, f, torch.tensor([0, 1]))
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="holds bits, this generator trains on latents"):
        paradigm.loss(
            model, latent, torch.cat([b.flatten(1) for b in pyramid.encode(pixels)], 1), torch.tensor([0, 1])
        )
