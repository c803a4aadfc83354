"""Multi-scale binary tokens and bitwise next-scale generation: the pyramid's bits and sums
against Infinity's multi-scale BSQ (scratch copy), round trips, the loss by hand, cached
greedy sampling against a full forward, and the errors."""

from __future__ import annotations

import pytest
import torch

from argen import paradigms
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
    out, _, expected_bits, _, _, var_inputs = infinity(z, scale_schedule=schedule)
    for ours, theirs in zip(bits, expected_bits):
        assert torch.equal(ours, theirs[:, 0].long())  # (B, 1, pn, pn, d) -> (B, pn, pn, d)
    torch.testing.assert_close(f_hat, out)
    expected_inputs = torch.cat([v[:, :, 0].flatten(2).transpose(1, 2) for v in var_inputs], 1)
    torch.testing.assert_close(pyramid.teacher_inputs(bits), expected_inputs)


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
    assert 0 <= pyramid.token_statistics([bits])["bit_usage"] <= 1


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
