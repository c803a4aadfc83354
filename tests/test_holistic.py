"""One-dimensional tokens: the holistic tokenizer's round trip (images and clips), LARP's
stochastic quantiser (its law, and parity with the official module from a scratch copy), the AR
prior and its scheduled sampling, and the sequence paradigm."""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from argen import paradigms
from argen.checkpoint import CheckpointError
from argen.models.llama import LlamaConfig
from argen.paradigms.registry import default_for
from argen.tokenizers.holistic import HolisticConfig, HolisticTokenizer, SequenceLayout
from argen.tokenizers.protocols import family

TINY = dict(resolution=8, patch_size=4, tokens=6, dim=32, depth=1, heads=2, codebook_size=16, codebook_dim=4)


def tiny(**kw) -> HolisticTokenizer:
    torch.manual_seed(0)
    return HolisticTokenizer(HolisticConfig(**(TINY | kw)))


@pytest.mark.parametrize("frames", [None, 4])
def test_round_trip_shapes_and_deterministic_encoding(frames):
    model = tiny(frames=frames, temporal_patch_size=2 if frames else 1).train()
    assert isinstance(model, family(model)) and model.layout == SequenceLayout(6, 16)
    pixels = torch.rand(3, *((frames,) if frames else ()), 3, 8, 8) * 2 - 1
    ids = model.encode(pixels)
    assert ids.shape == (3, 6) and ids.dtype == torch.long and int(ids.max()) < 16
    assert torch.equal(ids, model.encode(pixels)) and model.training  # nearest codes, mode kept
    assert model.decode(ids).shape == pixels.shape
    recon, stats = model(pixels)
    assert recon.shape == pixels.shape and {"codebook_loss", "commit_loss"} <= set(stats)
    with pytest.raises(ValueError, match="expected pixels"):
        model.encode(torch.rand(3, 3, 16, 16))


def test_stochastic_codes_follow_the_softmax_of_cosine_similarity():
    quantizer = tiny(stochastic_temperature=0.5).quantize.train()
    z = F.normalize(torch.randn(1, 4), dim=-1)
    expected = (z @ quantizer.codebook().t() / 0.5).softmax(-1)[0]  # (16,)
    torch.manual_seed(1)
    ids = quantizer.nearest(z.expand(20000, -1))
    frequencies = torch.bincount(ids, minlength=16).float() / 20000
    assert (frequencies - expected).abs().max() < 0.015
    assert torch.equal(quantizer.eval().nearest(z), expected.argmax()[None])


def larp_vector_quantizer():
    """LARP's SimpleVectorQuantizer from a scratch copy of the official code (ARGEN_LARP_SRC: the
    repository's folder), its ``models`` package replaced by the registry stub it imports."""
    source = os.environ.get("ARGEN_LARP_SRC")
    if not source:
        pytest.skip("set ARGEN_LARP_SRC to a scratch copy of hywang66/LARP")
    stub = types.ModuleType("models")
    stub.register = lambda name: lambda cls: cls
    saved = sys.modules.get("models")
    sys.modules["models"] = stub
    try:
        spec = importlib.util.spec_from_file_location(
            "larp_bottleneck", Path(source) / "models" / "bottleneck.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop("models")
        if saved is not None:
            sys.modules["models"] = saved
    return module.SimpleVectorQuantizer


def test_parity_with_larps_stochastic_quantizer():
    reference = larp_vector_quantizer()(
        4, 16, l2_normalized=True, stochastic=True, stochastic_temperature=0.25
    )
    ours = tiny(stochastic_temperature=0.25).quantize.train()
    reference.embedding.weight.data.copy_(ours.embedding.weight.data)
    z = torch.randn(2, 6, 4)
    torch.manual_seed(3)
    expected = reference.train()(z)
    torch.manual_seed(3)
    codes, ids, stats = ours(z.permute(0, 2, 1)[..., None])  # (B, d, N, 1)
    assert torch.equal(ids[..., 0], expected["bottleneck_rep"])
    torch.testing.assert_close(codes[..., 0].permute(0, 2, 1), expected["regularized_z"])
    torch.testing.assert_close(stats["commit_loss"], 0.25 * expected["loss_commit"])
    torch.testing.assert_close(stats["codebook_loss"], expected["loss_codebook"])


def test_prior_loss_is_teacher_forced_cross_entropy_before_scheduled_sampling():
    model = tiny(prior_weight=0.1, prior_rounds=1).train()
    codes = F.normalize(torch.randn(2, 6, 4), dim=-1)
    ids = torch.randint(0, 16, (2, 6))
    loss, accuracy = model.prior_loss(codes, ids)
    logits = model.prior(codes) @ model.quantize.codebook().t()  # (B, 5, K)
    torch.testing.assert_close(loss, F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten()))
    assert accuracy == (logits.argmax(-1) == ids[:, 1:]).float().mean()
    two_rounds = tiny(prior_weight=0.1, prior_rounds=2)
    two_rounds.load_state_dict(model.state_dict())
    torch.testing.assert_close(two_rounds.prior_loss(codes, ids)[0], loss)  # share 0 at step 0: same inputs
    two_rounds.steps_seen.fill_(10**6)  # past the peak: half the inputs drawn from round 1
    assert not torch.allclose(two_rounds.prior_loss(codes, ids)[0], loss)


def test_prior_trains_the_encoder_and_counts_its_steps():
    model = tiny(prior_weight=1.0).train()
    pixels = torch.rand(2, 3, 8, 8) * 2 - 1
    _, stats = model(pixels)
    stats["quantizer_loss"].backward()  # the prior's loss alone
    assert model.to_code.weight.grad.abs().sum() > 0 and model.prior.out.weight.grad.abs().sum() > 0
    assert int(model.steps_seen) == 1 and "steps_seen" in model.state_dict()


def test_sequence_paradigm_is_the_default_and_checks_its_pair():
    layout = SequenceLayout(6, 16)
    paradigm = default_for("generator", layout)
    assert paradigm.name == "sequence" and paradigm.sizes(layout)["rope"] == "1d"
    model = paradigm.build(LlamaConfig(dim=32, n_layer=1, n_head=2), None, None, paradigm.sizes(layout))
    assert model.config.num_tokens == 6
    paradigm.check_pair(model, layout, "gen", "tok")
    with pytest.raises(CheckpointError, match="does not match"):
        paradigm.check_pair(model, SequenceLayout(8, 16), "gen", "tok")
    with pytest.raises(ValueError, match="needs a 1-D tokenizer"):
        paradigms.get("sequence").require_serves(paradigms.get("raster").layout(4, 4, 16), "runs/vq")
