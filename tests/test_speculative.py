"""Speculative decoding: exactness, relaxed (LANTERN) acceptance, ragged batches, greedy; with a
small draft model and with a draft head on the target's features."""

import itertools

import pytest
import torch

from argen.models.draft_head import DraftHead
from argen.sampling import SamplingConfig, guide, sample_next_token
from argen.sampling.speculative import (
    DraftRules,
    SpeculativeConfig,
    code_neighbours,
    relaxed_mass,
    sample_speculative,
)
from tests.test_llama import tiny_llama


def pair(head: bool = False, **kw):
    """A target and a cheaper, different draft over the same vocabulary and grid: a one-layer
    Llama, or with ``head`` a draft head on the target's features (random trained parts)."""
    target = tiny_llama(**kw)
    draft = DraftHead.from_target(target).eval() if head else tiny_llama(n_layer=1, **kw)
    with torch.no_grad():
        for p in draft.parameters() if not head else [*draft.fc.parameters(), *draft.layers.parameters()]:
            p.add_(0.2 * torch.randn_like(p))
    return target, draft


def exact_joint(model, label: int, cfg_scale: float) -> torch.Tensor:
    """The model's probability of every sequence over its vocabulary and grid (V**L,)."""
    c = model.config
    seqs = torch.tensor(list(itertools.product(range(c.vocab_size), repeat=c.num_tokens)))
    labels = torch.full((len(seqs),), label)
    with torch.no_grad():
        logits = model(seqs.repeat(2, 1), torch.cat([labels, torch.full_like(labels, model.null_class)]))
    logp = guide(logits, cfg_scale).log_softmax(-1).gather(2, seqs[..., None])[..., 0]
    return logp.sum(1).exp()


def empirical(tokens: torch.Tensor, vocab: int) -> torch.Tensor:
    codes = (tokens * vocab ** torch.arange(tokens.shape[1] - 1, -1, -1)).sum(1)
    return torch.bincount(codes, minlength=vocab ** tokens.shape[1]).float() / len(tokens)


@pytest.mark.parametrize("head", [False, True])
def test_standard_speculative_sampling_draws_the_target_distribution(head):
    target, draft = pair(head, vocab_size=4, grid_size=(1, 3))
    labels, n, cfg = torch.full((6000,), 2), 6000, SamplingConfig(cfg_scale=2.0)
    exact = exact_joint(target, 2, 2.0)
    spec, stats = sample_speculative(
        target, draft, labels, cfg, SpeculativeConfig(2), torch.Generator().manual_seed(0)
    )
    ar = sample_next_token(target, labels, cfg, torch.Generator().manual_seed(1))
    tv = lambda tokens: 0.5 * (empirical(tokens, 4) - exact).abs().sum().item()  # noqa: E731
    if not head:
        drafted = sample_next_token(draft, labels, cfg, torch.Generator().manual_seed(2))
        assert tv(drafted) > 0.15  # the draft alone is far from the target ...
    assert stats["tokens_per_call"] < 2.5  # ... and rejects often ...
    assert tv(spec) < 0.05 and tv(spec) < 2 * tv(ar) + 0.01  # ... speculative sampling is not
    assert stats["target_calls"] >= 1 and len(spec) == n


def test_relaxed_mass_respects_the_tvd_bound():
    torch.manual_seed(0)
    p = torch.rand(200, 30).softmax(-1) ** 2
    p = p / p.sum(-1, keepdim=True)
    x = torch.randint(0, 30, (200,))
    neighbours = torch.stack([torch.randperm(30)[:10] for _ in range(30)])
    neighbours = torch.where(neighbours == torch.arange(30)[:, None], (neighbours + 1) % 30, neighbours)
    for delta in (0.0, 0.02, 0.1, 0.3):
        mass = relaxed_mass(p, x, neighbours, delta, None)
        px = p[torch.arange(200), x]
        assert torch.all(mass - px <= delta + 1e-7)
        for i in range(200):  # the longest nearest-first run within delta, exactly
            run = p[i, neighbours[x[i]]].cumsum(0)
            expected = run[run <= delta].max().item() if (run <= delta).any() else 0.0
            assert mass[i] - px[i] == pytest.approx(expected, abs=1e-6)
    capped = relaxed_mass(p, x, neighbours, 0.3, 1.5)
    assert torch.all(capped <= 1.5 * p[torch.arange(200), x] + 1e-7)


def test_zero_delta_equals_standard_and_relaxing_accepts_more():
    target, draft = pair()
    labels = torch.arange(5).repeat(8)
    neighbours = code_neighbours(torch.randn(50, 4), 20)
    runs = {}
    for name, spec in {
        "standard": SpeculativeConfig(3),
        "zero": SpeculativeConfig(3, relaxed_k=20, relaxed_delta=0.0),
        "relaxed": SpeculativeConfig(3, relaxed_k=20, relaxed_delta=0.5),
    }.items():
        g = torch.Generator().manual_seed(0)
        runs[name] = sample_speculative(
            target, draft, labels, SamplingConfig(), spec, g, DraftRules(neighbours)
        )
    assert torch.equal(runs["standard"][0], runs["zero"][0])
    assert runs["relaxed"][1]["tokens_per_call"] > runs["standard"][1]["tokens_per_call"]


@pytest.mark.parametrize("head", [False, True])
def test_ragged_batch_equals_rows_one_at_a_time(head):
    target, draft = pair(head)
    labels = torch.tensor([0, 1, 2, 3, 4, 1])
    cfg, spec = SamplingConfig(cfg_scale=1.5, top_k=20), SpeculativeConfig(3)
    seeds = lambda: [torch.Generator().manual_seed(10 + i) for i in range(len(labels))]  # noqa: E731
    batched, _ = sample_speculative(target, draft, labels, cfg, spec, seeds())
    gens = seeds()
    single = [sample_speculative(target, draft, labels[i : i + 1], cfg, spec, [gens[i]])[0] for i in range(6)]
    assert torch.equal(batched, torch.cat(single))


@pytest.mark.parametrize("cfg_scale,head", [(1.0, False), (3.0, False), (3.0, True)])
def test_greedy_speculative_equals_greedy_autoregressive(cfg_scale, head):
    target, draft = pair(head)
    labels = torch.arange(5)
    cfg = SamplingConfig(cfg_scale=cfg_scale, temperature=0)
    spec, _ = sample_speculative(target, draft, labels, cfg, SpeculativeConfig(4), torch.Generator())
    assert torch.equal(spec, sample_next_token(target, labels, cfg))


def test_code_neighbours_are_the_nearest_other_codes():
    codes = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert code_neighbours(codes, 2, chunk=3).tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]
    with pytest.raises(ValueError, match="codebook size"):
        code_neighbours(codes, 4)


def test_draft_head_cached_drafting_equals_teacher_forcing():
    target, head = pair(head=True)
    tokens, labels = torch.randint(0, 50, (3, 12)), torch.tensor([0, 2, 4])
    features = target.token_features(tokens, labels)  # (B, L, D)
    predicted, logits = head(features, tokens)
    head.setup_cache(3, 20)
    try:
        index = torch.arange(11).expand(3, -1)
        first = head.forward_cached(features[:, :6], tokens[:, :6], index[:, :6])  # a prefix, then the rest
        rest = head.forward_cached(features[:, 6:11], tokens[:, 6:11], index[:, 6:])
    finally:
        head.clear_cache()
    torch.testing.assert_close(torch.cat([first[0], rest[0]], 1), predicted, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.cat([first[1], rest[1]], 1), logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(head.logits(features), target(tokens, labels), atol=1e-5, rtol=1e-4)
