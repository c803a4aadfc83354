import pytest
import torch

from argen.sampling import SamplingConfig, filter_logits, guide, sample_next_token
from argen.sampling.next_token import NextTokenOptions
from tests.test_llama import tiny_llama


def draw(model, labels, seed=0, use_cache=True, **kw):
    generator = torch.Generator().manual_seed(seed)
    return sample_next_token(
        model, labels, SamplingConfig(**kw), generator, NextTokenOptions(use_cache=use_cache)
    )


def test_shapes_and_seeded_determinism():
    model, labels = tiny_llama(), torch.tensor([0, 1, 2, 3])
    a = draw(model, labels, seed=1, cfg_scale=2.0, top_k=10)
    assert a.shape == (4, 12) and a.dtype == torch.int64 and a.max() < 50
    assert torch.equal(a, draw(model, labels, seed=1, cfg_scale=2.0, top_k=10))
    assert not torch.equal(a, draw(model, labels, seed=2, cfg_scale=2.0, top_k=10))


@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
def test_cached_sampling_equals_recompute_everything(cfg_scale):
    model, labels = tiny_llama(n_kv_head=2), torch.tensor([0, 4, 2])
    cached = draw(model, labels, cfg_scale=cfg_scale, top_p=0.9)
    assert torch.equal(cached, draw(model, labels, cfg_scale=cfg_scale, top_p=0.9, use_cache=False))


def test_cfg_scale_one_equals_conditional_sampling():
    model, labels = tiny_llama(), torch.tensor([0, 1, 2])
    tokens = torch.randint(0, 50, (3, 12))
    cond = model(tokens, labels)
    both = model(tokens.repeat(2, 1), torch.cat([labels, torch.full_like(labels, model.null_class)]))
    torch.testing.assert_close(guide(both, 1.0), cond, atol=1e-5, rtol=1e-5)
    # a guided batch (2B rows, every step at scale 1) draws the conditional samples
    interval_off = draw(model, labels, cfg_scale=5.0, cfg_interval=(0.0, 0.0))
    assert torch.equal(interval_off, draw(model, labels, cfg_scale=1.0))


def test_guidance_changes_samples_and_schedule():
    model, labels = tiny_llama(), torch.tensor([0, 1, 2])
    assert not torch.equal(draw(model, labels, cfg_scale=4.0), draw(model, labels, cfg_scale=1.0))
    config = SamplingConfig(cfg_scale=3.0, cfg_schedule="linear", cfg_interval=(0.5, 1.0))
    assert [config.scale_at(i, 4) for i in range(4)] == [1.0, 1.0, 2.5, 3.0]


def test_greedy_and_filters():
    model, labels = tiny_llama(), torch.tensor([0, 1])
    assert torch.equal(draw(model, labels, seed=0, temperature=0), draw(model, labels, seed=9, temperature=0))
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    probs = logits.softmax(-1)[0]  # 0.64, 0.24, 0.09, 0.03
    kept = ~torch.isinf(filter_logits(logits, top_p=float(probs[0] + 0.01)))
    assert kept.tolist() == [[True, True, False, False]]


def test_invalid_settings():
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=0.0)
    with pytest.raises(ValueError, match="cfg_interval"):
        SamplingConfig(cfg_interval=(0.8, 0.2))
