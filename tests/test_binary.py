"""Binary tokens: the BSQ / LFQ quantiser and its entropy terms against a brute-force count over
all 2^d codes, the autoencoder's bits, bitwise raster generation (groups, sampling, errors)."""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import math
import os
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from argen import paradigms
from argen.paradigms.bitwise import BitwiseConfig, BitwiseLlama, BitwiseRaster, to_bits, to_groups
from argen.paradigms.registry import default_for
from argen.sampling.config import SamplingConfig
from argen.tokenizers import VQConfig, VQModel
from argen.tokenizers.binary import BinaryAutoencoder, BinaryConfig, BitGridLayout, bit_entropies
from argen.tokenizers.protocols import family

TINY = dict(
    resolution=16, base_channels=16, channel_mult=(1, 2, 4), num_res_blocks=1, z_channels=32, norm_groups=8
)


def all_codes(d: int) -> torch.Tensor:
    """Every code of d bits, (2^d, d) in {0, 1}."""
    return torch.tensor(list(itertools.product((0, 1), repeat=d)), dtype=torch.float32)


def brute_force_entropies(u: torch.Tensor, scale: float, inv_temperature: float):
    """The same terms from a softmax over all 2^d codes: the mean per-token entropy, and the
    sum over bits of the entropy of each bit's marginal under the average distribution."""
    codes = (2 * all_codes(u.shape[1]) - 1) * scale  # (2^d, d)
    probs = (-inv_temperature * torch.cdist(u, codes) ** 2).softmax(-1)  # (N, 2^d)
    per_token = -(probs * torch.log(probs + 1e-8)).sum(-1).mean()
    marginal = probs.mean(0) @ all_codes(u.shape[1])  # (d,) P(bit = 1) under the average
    h = -(marginal * torch.log(marginal + 1e-8) + (1 - marginal) * torch.log(1 - marginal + 1e-8))
    return per_token, h.sum()


@pytest.mark.parametrize("spherical", [True, False])
def test_entropy_terms_equal_a_count_over_all_codes(spherical):
    torch.manual_seed(0)
    d, tau = 6, 3.0
    u = torch.randn(50, d)
    scale = 1 / math.sqrt(d) if spherical else 1.0
    if spherical:
        u = F.normalize(u, dim=-1)
    per_token, usage = bit_entropies(u, scale, tau)
    expected_token, expected_usage = brute_force_entropies(u, scale, tau)
    torch.testing.assert_close(per_token, expected_token, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(usage, expected_usage, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spherical", [True, False])
def test_bits_are_the_signs_and_codes_requantise_to_them(spherical):
    torch.manual_seed(0)
    model = BinaryAutoencoder(BinaryConfig(**TINY, bits=8, spherical=spherical)).train()
    z = torch.randn(2, 8, 4, 4, requires_grad=True)
    codes, bits, stats = model.quantize(z)
    assert torch.equal(bits, (z.detach().permute(0, 2, 3, 1) > 0).long())
    norms = codes.detach().norm(dim=1)
    torch.testing.assert_close(norms, torch.full_like(norms, 1.0 if spherical else math.sqrt(8)))
    assert torch.equal(model.quantize(codes.detach())[1], bits)  # codes quantise back to their bits
    assert {"commit_loss", "quantizer_loss"} <= set(stats)
    codes.sum().backward()  # straight through: the encoder gets a gradient
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_autoencoder_tokens_layout_and_statistics():
    torch.manual_seed(0)
    model = BinaryAutoencoder(BinaryConfig(**TINY, bits=8)).eval()
    assert isinstance(model, family(model)) and model.layout == BitGridLayout(4, 4, 8)
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    bits = model.encode(images)
    assert bits.shape == (3, 4, 4, 8) and set(bits.unique().tolist()) <= {0, 1}
    assert model.decode(bits).shape == images.shape
    constant = torch.zeros(100, 8, dtype=torch.long)
    constant[::2, :4] = 1  # bits 0-3 used half the time, bits 4-7 never
    stats = model.token_statistics([constant])
    assert stats["bit_usage"] == 0.5 and stats["code_usage"] == 2 / 256
    assert abs(stats["code_perplexity"] - 2.0) < 1e-6


def test_bad_bits_are_refused():
    with pytest.raises(ValueError, match="bits must lie in"):
        BinaryConfig(**TINY, bits=65)
    model = BinaryAutoencoder(BinaryConfig(**TINY, bits=8))
    with pytest.raises(ValueError, match="bits must be 0 or 1"):
        model.decode(torch.full((1, 4, 4, 8), 2))


@pytest.mark.parametrize("group_bits", [1, 2, 4, 8])
def test_groups_and_bits_round_trip(group_bits):
    bits = torch.randint(0, 2, (3, 5, 8))
    ids = to_groups(bits, group_bits)
    assert ids.shape == (3, 5, 8 // group_bits) and int(ids.max()) < 2**group_bits
    assert torch.equal(to_bits(ids, group_bits), bits)
    assert to_groups(torch.tensor([1, 0, 1, 1]), 4).item() == 11  # most significant bit first


def tiny_bitwise(bits: int, group_bits: int) -> BitwiseLlama:
    torch.manual_seed(0)
    groups = bits // group_bits
    config = BitwiseConfig(
        vocab_size=groups * 2**group_bits,
        grid_size=(2, 3),
        num_classes=4,
        dim=32,
        n_layer=2,
        n_head=2,
        bits=bits,
        group_bits=group_bits,
    )
    model = BitwiseLlama(config).eval()
    for p in model.parameters():  # weights that give the head something to say
        torch.nn.init.normal_(p, std=0.3)
    return model


def test_loss_is_the_cross_entropy_of_every_group():
    model = tiny_bitwise(8, 2)
    bits = torch.randint(0, 2, (2, 2, 3, 8))
    loss, logs = BitwiseRaster().loss(model, None, bits, torch.tensor([0, 3]))
    ids = to_groups(bits.flatten(1, 2), 2)  # (B, 6, 4)
    logits = model(ids, torch.tensor([0, 3])).view(2, 6, 4, 4)
    by_hand = -logits.log_softmax(-1).gather(-1, ids[..., None]).mean()
    torch.testing.assert_close(loss, by_hand)
    assert logs["bits_loss"] == pytest.approx(loss.item() / 2)
    swapped = (
        model.embed_tokens(torch.tensor([[1, 0, 0, 0]])),
        model.embed_tokens(torch.tensor([[0, 1, 0, 0]])),
    )
    assert not torch.allclose(*swapped)  # each group has its own embedding rows


@pytest.mark.parametrize("group_bits", [1, 4])
def test_greedy_cached_sampling_equals_recomputing_every_step(group_bits):
    model = tiny_bitwise(8, group_bits)
    labels = torch.tensor([1, 2])
    config = SamplingConfig(temperature=0.0, cfg_scale=2.0)
    bits = BitwiseRaster().sample(
        model, None, labels, config, torch.Generator().manual_seed(0), paradigms.SamplingExtras()
    )
    ids = torch.zeros(2, 6, 8 // group_bits, dtype=torch.long)
    rows = model.with_null(labels)
    for i in range(6):  # the whole sequence again at every step, argmax of each group
        logits = model(ids.repeat(2, 1, 1), rows)[:, i].view(4, -1, 2**group_bits)
        cond, uncond = logits.chunk(2)
        ids[:, i] = (uncond + 2.0 * (cond - uncond)).argmax(-1)
    assert torch.equal(bits, to_bits(ids, group_bits))


def test_sampling_is_seeded_and_never_builds_a_softmax_over_all_codes():
    model = tiny_bitwise(64, 1)  # 2^64 codes: only 64 x 2 logits per step
    assert model.output.out_features == 128
    config = SamplingConfig(temperature=1.0)
    draw = lambda seed: BitwiseRaster().sample(  # noqa: E731
        model,
        None,
        torch.tensor([0, 1]),
        config,
        torch.Generator().manual_seed(seed),
        paradigms.SamplingExtras(),
    )
    bits = draw(0)
    assert bits.shape == (2, 6, 64) and torch.equal(bits, draw(0)) and not torch.equal(bits, draw(1))


def test_paradigm_is_the_default_for_bits_and_refuses_other_tokens():
    layout = BitGridLayout(4, 4, 8)
    assert default_for("generator", layout).name == "bitwise_raster"
    vq = VQModel(VQConfig(**TINY, codebook_size=16, codebook_dim=4))
    with pytest.raises(ValueError, match="needs a binary tokenizer"):
        paradigms.get("bitwise_raster").require_serves(vq.layout, "runs/vq")
    with pytest.raises(ValueError, match="GridLayout tokens, not the tokenizer runs/bsq"):
        paradigms.get("raster").require_serves(layout, "runs/bsq")
    with pytest.raises(ValueError, match="group_bits must divide bits"):
        BitwiseConfig(vocab_size=6, bits=8, group_bits=3)


def infinity_bsq():
    """Infinity's BSQ module from a scratch copy of the official code (ARGEN_INFINITY_SRC: the
    folder holding ``infinity/models/bsq_vae/``), imported as a package of its own."""
    source = os.environ.get("ARGEN_INFINITY_SRC")
    if not source:
        pytest.skip("set ARGEN_INFINITY_SRC to a scratch copy of FoundationVision/Infinity")
    folder = Path(source) / "infinity" / "models" / "bsq_vae"
    package = types.ModuleType("infinity_bsq_reference")
    package.__path__ = [str(folder)]
    sys.modules[package.__name__] = package
    return importlib.import_module(f"{package.__name__}.multiscale_bsq")


def test_parity_with_infinity_bsq():
    reference = infinity_bsq()
    torch.manual_seed(0)
    d, tau = 16, 100.0
    bsq = reference.BSQ(dim=d, codebook_size=2**d, new_quant=True, inv_temperature=tau).eval()
    ours = BinaryAutoencoder(BinaryConfig(**TINY, bits=d, inv_temperature=tau)).quantize.train()
    z = torch.randn(4, d, 5, 5)
    codes, bits, _ = ours(z)
    expected = bsq(z)
    assert torch.equal(bits, expected.bit_indices.long())
    torch.testing.assert_close(codes, expected.quantized)
    u = F.normalize(z.permute(0, 2, 3, 1), dim=-1).flatten(0, 2)
    per_token, usage = bit_entropies(u, 1 / math.sqrt(d), tau)
    expected_token, expected_usage, _ = bsq.soft_entropy_loss(u)
    torch.testing.assert_close(per_token, expected_token)
    torch.testing.assert_close(usage, expected_usage)


def open_magvit2_lfq():
    """Open-MAGVIT2's ``lookup_free_quantize`` module from a scratch copy of the official code
    (ARGEN_MAGVIT2_SRC: the repository's folder)."""
    source = os.environ.get("ARGEN_MAGVIT2_SRC")
    if not source:
        pytest.skip("set ARGEN_MAGVIT2_SRC to a scratch copy of TencentARC/Open-MAGVIT2")
    path = Path(source) / "src" / "Open_MAGVIT2" / "modules" / "vqvae" / "lookup_free_quantize.py"
    spec = importlib.util.spec_from_file_location("open_magvit2_lfq_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parity_with_open_magvit2_lfq():
    reference = open_magvit2_lfq()
    torch.manual_seed(0)
    d, tau = 8, 100.0
    lfq = reference.LFQ(dim=d, codebook_size=2**d).train()
    ours = BinaryAutoencoder(
        BinaryConfig(**TINY, bits=d, spherical=False, inv_temperature=tau)
    ).quantize.train()
    z = torch.randn(4, d, 5, 5) * 0.005  # small enough that the entropy terms are not saturated
    codes, bits, _ = ours(z)
    (quantized, _, indices), breakdown = lfq(z, inv_temperature=tau, return_loss_breakdown=True)
    torch.testing.assert_close(codes, quantized)
    shifts = torch.arange(d)  # its index holds channel i's bit at 2^i
    assert torch.equal(bits.flatten(0, 2), (indices[:, None] >> shifts) & 1)
    u = z.permute(0, 2, 3, 1).flatten(0, 2)
    per_token, usage = bit_entropies(u, 1.0, tau)
    torch.testing.assert_close(per_token, breakdown.per_sample_entropy, rtol=1e-3, atol=1e-4)
    assert usage >= breakdown.codebook_entropy - 1e-4  # the sum over bits bounds the 2^d-code entropy
