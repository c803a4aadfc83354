"""Parity of masked decoding's masks and schedule with MAR's own code (LTH14/mar's
``models/mar.py`` from a scratch copy: ARGEN_MAR_SRC, the repository's folder; skipped without
it). MAR calls ``.cuda()`` on new tensors; the tests make that a no-op on the CPU."""

from __future__ import annotations

import importlib
import os
import sys

import numpy as np
import pytest
import torch

from argen.paradigms.masked import first_in_order, linear_guidance, masked_next, still_masked

SEQ_LEN, ROWS = 16, 3


@pytest.fixture
def mar(monkeypatch):
    source = os.environ.get("ARGEN_MAR_SRC")
    if not source:
        pytest.skip("set ARGEN_MAR_SRC to a scratch copy of LTH14/mar")
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *args, **kwargs: self)
    monkeypatch.syspath_prepend(source)
    names = ("models", "diffusion")  # the copy's top-level packages
    saved = {name: sys.modules.pop(name) for name in list(sys.modules) if name.split(".")[0] in names}
    try:
        yield importlib.import_module("models.mar")
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] in names]:
            del sys.modules[name]
        sys.modules.update(saved)


def random_orders(seed: int) -> torch.Tensor:
    """Generation orders as MAR draws them: a permutation of the positions per row."""
    rng = np.random.default_rng(seed)
    return torch.tensor(np.stack([rng.permutation(SEQ_LEN) for _ in range(ROWS)]))


def test_masks_by_order_equal_mars(mar):
    orders = random_orders(0)
    ranks = orders.argsort(-1)  # each position's place in its row's order
    for count in range(SEQ_LEN + 1):
        reference = mar.mask_by_order(torch.tensor(float(count)), orders, ROWS, SEQ_LEN)
        assert torch.equal(still_masked(ranks.float(), count), reference), count


def test_training_masks_equal_mars_random_masking(mar):
    orders = random_orders(1)
    generator = mar.MAR.__init__.__globals__["stats"].truncnorm((0.7 - 1.0) / 0.25, 0, loc=1.0, scale=0.25)
    np.random.seed(0)
    for rate in [*generator.rvs(200), 0.75, 1.0]:  # MAR's law, and shares at whole counts
        fixed = type("Fixed", (), {"rvs": staticmethod(lambda n, rate=rate: np.array([rate]))})
        owner = type("Owner", (), {"mask_ratio_generator": fixed})()
        reference = mar.MAR.random_masking(owner, torch.zeros(ROWS, SEQ_LEN, 4), orders).bool()
        shares = torch.full((ROWS,), float(rate), dtype=torch.float64)
        assert torch.equal(first_in_order(shares, orders.argsort(-1)), reference), rate


@pytest.mark.parametrize("steps", [1, 4, 10, 16])
def test_schedule_and_linear_guidance_equal_mars_sample_tokens(mar, monkeypatch, steps):
    model = mar.MAR(
        img_size=16,
        vae_stride=4,
        encoder_embed_dim=16,
        encoder_depth=1,
        encoder_num_heads=2,
        decoder_embed_dim=16,
        decoder_depth=1,
        decoder_num_heads=2,
        vae_embed_dim=4,
        class_num=3,
        buffer_size=2,
        diffloss_d=1,
        diffloss_w=16,
        num_sampling_steps="2",
    ).eval()
    kept, scales = [], []  # per pass: tokens masked for the next pass, guidance scale
    by_order = mar.mask_by_order
    monkeypatch.setattr(
        mar, "mask_by_order", lambda length, *rest: kept.append(int(length)) or by_order(length, *rest)
    )
    model.diffloss.sample = lambda z, temperature, cfg: scales.append(float(cfg)) or torch.zeros(len(z), 4)
    with torch.no_grad():
        model.sample_tokens(ROWS, num_iter=steps, cfg=3.0, cfg_schedule="linear", labels=torch.arange(ROWS))
    unknown, ours = SEQ_LEN, []
    for step in range(steps):
        keep = masked_next(step, steps, SEQ_LEN, unknown)
        ours.append((keep, linear_guidance(3.0, SEQ_LEN, keep)))
        unknown = keep
    # MAR computes a next mask at its last pass too (one token) but fills every token there
    assert [k for k, _ in ours[:-1]] == kept[:-1] and ours[-1][0] == 0
    assert [s for _, s in ours] == pytest.approx(scales, abs=1e-6)
