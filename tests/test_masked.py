"""Masked parallel decoding: MAR's mask-ratio law against scipy's truncated normal, random
masks, MaskGIT's schedule, bidirectional attention, the loss on masked ids only, sampling."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from argen import paradigms
from argen.models.heads import FlowHeadConfig, flow_matching_loss
from argen.paradigms.masked import (
    MASKED_DECODING,
    MaskedConfig,
    MaskedFlowConfig,
    MaskedFlowLlama,
    MaskedIds,
    MaskedLlama,
    MaskSchedule,
    masked_next,
    random_mask,
    sample_masked,
    sample_masked_flow,
    truncated_normal,
    with_mask_channel,
)
from argen.sampling.config import SamplingConfig


def tiny_masked(**kw) -> MaskedLlama:
    torch.manual_seed(0)
    config = MaskedConfig(vocab_size=10, grid_size=(3, 3), num_classes=3, dim=32, n_layer=2, n_head=2, **kw)
    model = MaskedLlama(config).eval()
    for p in model.parameters():  # weights that give the head something to say
        torch.nn.init.normal_(p, std=0.3)
    return model


def test_mask_ratio_follows_mars_truncated_normal():
    draws = truncated_normal(20000, 0.7, torch.Generator().manual_seed(0)).numpy()
    law = stats.truncnorm((0.7 - 1.0) / 0.25, 0, loc=1.0, scale=0.25)  # MAR's mask_ratio_generator
    assert draws.min() >= 0.7 and draws.max() <= 1.0
    assert stats.kstest(draws, law.cdf).statistic < 0.015


def test_random_masks_hide_ceil_share_in_a_random_order():
    masks = random_mask(torch.tensor([0.7, 0.7, 0.01, 1.0]), 10, torch.Generator().manual_seed(0))
    assert masks.sum(1).tolist() == [7, 7, 1, 10]
    assert not torch.equal(masks[0], masks[1])


def test_schedule_is_maskgits_cosine():
    length, steps, unknown, kept = 256, 8, 256, []
    for step in range(steps):
        keep = masked_next(step, steps, length, unknown)
        if step < steps - 1:  # MAR / MaskGIT: floor(L cos(pi/2 (t+1)/T)), at least 1, below the unknown
            expected = max(
                1, min(unknown - 1, int(np.floor(length * np.cos(math.pi / 2 * (step + 1) / steps))))
            )
            assert keep == expected
        kept.append(keep)
        unknown = keep
    assert kept[-1] == 0 and kept == sorted(kept, reverse=True) and len(set(kept)) == steps


def test_attention_is_bidirectional():
    model = tiny_masked()
    ids, labels = torch.randint(0, 10, (1, 9)), torch.tensor([1])
    later = ids.clone()
    later[0, -1] = (later[0, -1] + 1) % 10
    assert not torch.allclose(model(ids, labels)[0, 0], model(later, labels)[0, 0])


@pytest.mark.parametrize("law", ["truncnorm", "cosine"])
def test_loss_is_the_cross_entropy_of_the_masked_ids(law):
    model = tiny_masked(mask_ratio=law)
    ids, labels = torch.randint(0, 10, (4, 9)), torch.tensor([0, 1, 2, 0])
    torch.manual_seed(3)
    loss, logs = MaskedIds().loss(model, None, ids, labels)
    torch.manual_seed(3)
    if law == "truncnorm":
        shares = truncated_normal(1, 0.7).expand(4)
    else:
        shares = torch.cos(math.pi / 2 * torch.rand(4))
    masked = random_mask(shares, 9)
    logits = model(ids.masked_fill(masked, 10), labels)
    torch.testing.assert_close(loss, F.cross_entropy(logits[masked], ids[masked]))
    assert logs["masked_share"] == pytest.approx(masked.float().mean().item())


def reference_greedy(
    model: MaskedLlama, labels: torch.Tensor, steps: int, scale: float, start: torch.Tensor | None = None
) -> torch.Tensor:
    """MaskGIT without noise, written out: every pass takes the argmax of every masked id and keeps
    the least confident ones masked; ``start`` (9,) holds given ids and 10 where ids are decoded."""
    ids = (torch.full((9,), 10) if start is None else start).repeat(len(labels), 1)
    total = int((ids[0] == 10).sum())
    steps = min(steps, total)
    for step in range(steps):
        logits = torch.lerp(model(ids, torch.full_like(labels, model.null_class)), model(ids, labels), scale)
        drawn = torch.where(ids == 10, logits.argmax(-1), ids)
        confidence = logits.log_softmax(-1).gather(-1, drawn[..., None])[..., 0]
        confidence = confidence.masked_fill(ids != 10, math.inf)
        keep = masked_next(step, steps, total, int((ids[0] == 10).sum()))
        ids = drawn.clone()
        for row in range(len(ids)):
            ids[row, confidence[row].argsort()[:keep]] = 10
    return ids


@pytest.mark.parametrize("steps", [1, 3, 9])
def test_greedy_sampling_reveals_the_most_confident_ids(steps):
    model, labels = tiny_masked(), torch.tensor([0, 2])
    config = SamplingConfig(temperature=0.0, cfg_scale=2.0)
    schedule = MaskSchedule(steps=steps, choice_temperature=0.0)
    ids = sample_masked(model, labels, config, torch.Generator(), schedule)
    assert torch.equal(ids, reference_greedy(model, labels, steps, 2.0))


@pytest.mark.parametrize("steps", [2, 8])
def test_editing_keeps_the_source_ids_and_decodes_the_others_over_their_own_schedule(steps):
    from argen.paradigms.masked import kept_tokens
    from argen.tokenizers.layout import GridLayout

    model, labels = tiny_masked(), torch.tensor([0, 2])
    regenerate = torch.zeros(6, 6)
    regenerate[:, 4:] = 1  # the right column of tokens
    regenerate[0:2, 2:4] = 0.75  # and the middle top token (mean over it above one half)
    kept = kept_tokens(GridLayout(3, 3, 10), regenerate)
    assert kept.view(3, 3).tolist() == [[True, False, False], [True, True, False], [True, True, False]]
    source = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6, 5]])
    config = SamplingConfig(temperature=0.0, cfg_scale=2.0)
    schedule = MaskSchedule(steps=steps, choice_temperature=0.0)
    ids = sample_masked(model, labels, config, torch.Generator(), schedule, (source, kept))
    assert torch.equal(ids[:, kept], source[:, kept].expand(2, -1))
    expected = reference_greedy(model, labels, steps, 2.0, start=source[0].masked_fill(~kept, 10))
    assert torch.equal(ids, expected)
    with pytest.raises(ValueError, match="regenerates no token"):
        kept_tokens(GridLayout(3, 3, 10), torch.zeros(6, 6))


def test_masked_flow_editing_keeps_the_source_tokens():
    model, labels = tiny_masked_flow(), torch.tensor([0, 2])
    source, kept = torch.randn(1, 6, 4), torch.tensor([True, False, True, False, False, True])
    config = SamplingConfig(cfg_scale=2.0, flow_steps=3)
    schedule = MaskSchedule(steps=8)
    tokens = sample_masked_flow(
        model, labels, config, torch.Generator().manual_seed(0), schedule, (source, kept)
    )
    assert torch.equal(tokens[:, kept], source[:, kept].expand(2, -1, -1))
    assert (tokens[:, ~kept] != 0).all() and not torch.equal(tokens[0, ~kept], tokens[1, ~kept])


def test_sampling_is_seeded_complete_and_both_orders_run():
    model, labels = tiny_masked(), torch.tensor([0, 1, 2])
    for order in ("confidence", "random"):
        schedule = MaskSchedule(steps=4, order=order)
        config = SamplingConfig(cfg_scale=1.5, cfg_schedule="linear")

        def draw(seed, config=config, schedule=schedule):
            return sample_masked(model, labels, config, torch.Generator().manual_seed(seed), schedule)

        ids = draw(0)
        assert ids.shape == (3, 9) and int(ids.max()) < 10  # no mask left
        assert torch.equal(ids, draw(0)) and not torch.equal(ids, draw(1))


def test_sample_options_are_the_masked_paradigms():
    args = argparse.Namespace(mask_steps=4, mask_order=None, choice_temperature=None)
    assert MASKED_DECODING.requested(args)
    with pytest.raises(ValueError, match="are for masked generators .*not raster"):
        paradigms.refuse_unoffered(paradigms.get("raster"), args, [MASKED_DECODING])


def tiny_masked_flow(**kw) -> MaskedFlowLlama:
    torch.manual_seed(0)
    config = MaskedFlowConfig(
        grid_size=(2, 3),
        num_classes=3,
        dim=32,
        n_layer=2,
        n_head=2,
        token_dim=4,
        head=FlowHeadConfig(width=16, depth=1),
        **kw,
    )
    model = MaskedFlowLlama(config).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return model


def test_masked_flow_sees_both_ways_and_masked_inputs_are_the_mask_embedding():
    model, labels = tiny_masked_flow(), torch.tensor([1])
    tokens, masked = torch.randn(1, 6, 4), torch.tensor([[False, True, False, False, True, False]])
    inputs = with_mask_channel(tokens, masked)
    assert torch.equal(inputs[0, 1], torch.tensor([0.0, 0, 0, 0, 1]))
    other = with_mask_channel(
        tokens + torch.randn(1, 6, 4) * masked[..., None], masked
    )  # only masked ones move
    torch.testing.assert_close(model(inputs, labels), model(other, labels))
    later = inputs.clone()
    later[0, -1, :4] += 1.0
    assert not torch.allclose(model(inputs, labels)[0, 0], model(later, labels)[0, 0])


def test_masked_flow_loss_is_flow_matching_on_the_masked_tokens():
    model = tiny_masked_flow(mask_ratio="cosine")
    tokens, labels = torch.randn(3, 6, 4), torch.tensor([0, 1, 2])
    torch.manual_seed(4)
    loss, logs = paradigms.get("masked_flow").loss(model, None, tokens, labels)
    torch.manual_seed(4)
    masked = random_mask(torch.cos(math.pi / 2 * torch.rand(3)), 6)
    assert 0 < masked.sum() < masked.numel()
    z = model(with_mask_channel(tokens, masked), labels)
    torch.testing.assert_close(loss, flow_matching_loss(model.head, tokens[masked][None], z[masked][None]))
    assert logs["masked_share"] == pytest.approx(masked.float().mean().item())


@pytest.mark.parametrize("steps", [1, 3, 6])
def test_masked_flow_sampling_fills_every_token_seeded(steps):
    model, labels = tiny_masked_flow(), torch.tensor([0, 2])
    config = SamplingConfig(cfg_scale=2.0, cfg_schedule="linear", flow_steps=3)

    def draw(seed):
        return sample_masked_flow(
            model, labels, config, torch.Generator().manual_seed(seed), MaskSchedule(steps)
        )

    tokens = draw(0)
    assert tokens.shape == (2, 6, 4) and (tokens != 0).all()
    assert torch.equal(tokens, draw(0)) and not torch.equal(tokens, draw(1))


def test_argen_load_finds_generators_defined_in_paradigm_modules(tmp_path):
    import subprocess
    import sys

    from argen.checkpoint import save_model

    save_model(tiny_masked(), tmp_path / "masked")
    code = f"import argen; print(type(argen.load({str(tmp_path / 'masked')!r})).__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)  # a fresh process
    assert done.returncode == 0 and done.stdout.strip() == "MaskedLlama", done.stderr[-2000:]


def test_sample_cli_edits_with_a_masked_generator(trained, tmp_path, monkeypatch):
    from PIL import Image

    from argen import load
    from argen.cli import sample as sample_cli
    from argen.training.recipes import recipe_from_dict
    from argen.training.trainer import train
    from tests.conftest import gpt_recipe

    recipe = gpt_recipe(tmp_path / "masked", trained["vq"] / "model", max_steps=2, save_every=2)
    run = train(recipe_from_dict({**recipe, "paradigm": "masked"}))
    image = (np.random.default_rng(0).random((8, 8, 3)) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "image.png")
    mask = Image.new("L", (8, 8), 0)
    mask.paste(255, (0, 0, 8, 4))  # regenerate the top half: the first two rows of the 4x4 grid
    mask.save(tmp_path / "mask.png")
    decoded = []  # the ids sample.py decodes
    masked = paradigms.get("masked")
    monkeypatch.setattr(
        masked, "decode", lambda tok, ids: decoded.append(ids) or MaskedIds.decode(masked, tok, ids)
    )
    edit = ["--edit", str(tmp_path / "image.png"), "--mask", str(tmp_path / "mask.png")]
    out = tmp_path / "edited"
    assert sample_cli.main(["--ckpt", str(run), "--num-samples", "3", *edit, "--out", str(out)]) == 0
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1
    source = load(trained["vq"] / "model").encode(pixels).flatten(1)  # (1, 16)
    ids = torch.cat(decoded).flatten(1)  # (3, 16)
    assert ids.shape == (3, 16) and torch.equal(ids[:, 8:], source[:, 8:].expand(3, -1))


def test_passes_per_image_are_the_schedules_for_masked_paradigms_only():
    from argen.paradigms import SamplingExtras

    extras = SamplingExtras()
    assert paradigms.get("masked").passes(extras) == paradigms.get("masked_flow").passes(extras) == 8
    extras.by_option["masked"] = MaskSchedule(steps=4)
    assert paradigms.get("masked").passes(extras) == 4 and paradigms.get("raster").passes(extras) is None
    extras.edit = ([torch.zeros(1, 9)], [torch.tensor([True] * 6 + [False] * 3)])  # 3 tokens regenerated
    assert paradigms.get("masked").passes(extras) == 3


def test_a_masked_generator_without_its_run_is_known_by_its_class():
    from argen.tokenizers.layout import GridLayout

    assert paradigms.for_generator(tiny_masked(), GridLayout(3, 3, 10)).name == "masked"
