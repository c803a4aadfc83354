"""Continuous speculative decoding: the SDE sampler, path densities, exactness against the
target's own sampler, full acceptance of an identical draft, ragged batches."""

import pytest
import torch

from argen.models.continuous import ContinuousLlama, ContinuousLlamaConfig
from argen.models.heads import FlowHeadConfig
from argen.sampling import SamplingConfig
from argen.sampling.continuous import sample_continuous_next_token
from argen.sampling.continuous_speculative import (
    ContinuousSpeculativeConfig,
    PathSampler,
    draw_residual,
    sample_continuous_speculative,
)
from argen.sampling.flow import path_log_density, sample_sde_path, sde_times

SDE = SamplingConfig(cfg_scale=2.0, flow_steps=4, flow_solver="sde")


def gaussian_velocity(sd: float):
    """The exact velocity field of data N(0, sd^2) under x_t = (1 - t) x + t eps."""

    def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
        return (t - (1 - t) * sd**2) * x / ((1 - t) ** 2 * sd**2 + t**2)

    return velocity


def test_sde_sampler_keeps_the_ode_marginals_and_scores_its_paths():
    g = torch.Generator().manual_seed(0)
    start = torch.randn(100_000, 1, 1, generator=g)
    normal = lambda: torch.randn(100_000, 1, 1, generator=g)  # noqa: E731
    for noise in (0.0, 1.0):
        path, means = sample_sde_path(gaussian_velocity(0.5), start, 50, noise, normal)
        assert path.shape == (51, 100_000, 1, 1) and abs(path[-1].std().item() - 0.5) < 0.015
    # the log density is the sum of the Gaussian steps' log densities (constants dropped)
    path, means = sample_sde_path(
        gaussian_velocity(0.5), start[:5], 3, 1.0, lambda: torch.randn(5, 1, 1, generator=g)
    )
    grid = sde_times(3)  # FlowAR / SiT: [1, 0.52, 0.04, 0]
    expected = sum(
        -((path[k + 1] - means[k]) ** 2).sum(-1) / (4 * grid[k] * (grid[k] - grid[k + 1])) for k in range(3)
    )
    torch.testing.assert_close(path_log_density(gaussian_velocity(0.5), path, 1.0), expected)
    torch.testing.assert_close(path_log_density(None, path, 1.0, means), expected)


def tiny(seed: int, n_layer: int = 2) -> ContinuousLlama:
    torch.manual_seed(seed)
    config = ContinuousLlamaConfig(
        grid_size=(2, 3), num_classes=3, dim=32, n_layer=n_layer, n_head=2, token_dim=2,
        head=FlowHeadConfig(width=16, depth=1),
    )  # fmt: skip
    model = ContinuousLlama(config).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return model


def test_continuous_speculative_sampling_draws_the_target_distribution():
    target, draft = tiny(0), tiny(1, n_layer=1)
    labels = torch.full((3000,), 1)
    reference = sample_continuous_next_token(target, labels, SDE, torch.Generator().manual_seed(1))
    drafted = sample_continuous_next_token(draft, labels, SDE, torch.Generator().manual_seed(2))
    spec, stats = sample_continuous_speculative(
        target, draft, labels, SDE, ContinuousSpeculativeConfig(3), torch.Generator().manual_seed(3)
    )
    gap = lambda x: max(  # noqa: E731
        (x.mean(0) - reference.mean(0)).abs().max().item(), (x.std(0) - reference.std(0)).abs().max().item()
    )
    assert gap(drafted) > 1.0  # the draft alone is far from the target ...
    assert gap(spec) < 0.25  # ... speculative sampling is not (3,000 samples: ~0.1 is sampling noise)
    assert 1.0 < stats["tokens_per_call"] < 2.0 and stats["fallbacks"] == 0


def test_an_identical_draft_is_always_accepted():
    target = tiny(0)
    spec, stats = sample_continuous_speculative(
        target,
        tiny(0),
        torch.arange(3),
        SDE,
        ContinuousSpeculativeConfig(3),
        torch.Generator().manual_seed(0),
    )
    assert spec.shape == (3, 6, 2) and stats["tokens_per_call"] == 4.0  # 2 tokens, then 3 drafts + 1


def test_ragged_batch_equals_rows_one_at_a_time():
    target, draft = tiny(0), tiny(1, n_layer=1)
    labels, spec = torch.tensor([0, 1, 2, 1]), ContinuousSpeculativeConfig(2, max_tries=3)
    seeds = lambda: [torch.Generator().manual_seed(10 + i) for i in range(4)]  # noqa: E731
    batched, stats = sample_continuous_speculative(target, draft, labels, SDE, spec, seeds())
    gens = seeds()
    single = [
        sample_continuous_speculative(target, draft, labels[i : i + 1], SDE, spec, [gens[i]])[0]
        for i in range(4)
    ]
    torch.testing.assert_close(batched, torch.cat(single), atol=1e-4, rtol=1e-4)  # batched float sums


def test_continuous_speculative_needs_the_sde_sampler():
    target = tiny(0)
    with pytest.raises(ValueError, match="flow-solver sde"):
        sample_continuous_speculative(
            target,
            target,
            torch.arange(2),
            SamplingConfig(flow_solver="euler"),
            ContinuousSpeculativeConfig(),
            torch.Generator(),
        )


def test_residual_draw_serves_only_waiting_rows_and_counts_fallbacks():
    model = tiny(0)
    sampling = SamplingConfig(flow_steps=4, flow_solver="sde")
    z, scales = torch.randn(5, 1, 32), torch.ones(5, 1)
    heads = lambda seed: (  # noqa: E731
        PathSampler(model, sampling, torch.Generator().manual_seed(seed), 5),
        PathSampler(model, sampling, torch.Generator().manual_seed(seed), 5),
    )
    # plain rows take the target's first proposal: the same token as drawing it directly
    direct = heads(3)[0].draw(z, scales)[0][-1]
    tokens, failed = draw_residual(*heads(3), z, z, scales, torch.ones(5, dtype=torch.bool), 4)
    torch.testing.assert_close(tokens, direct)
    assert failed == 0
    # identical models leave an empty residual: every row exhausts its tries and falls back
    tokens, failed = draw_residual(*heads(3), z, z, scales, torch.zeros(5, dtype=torch.bool), 2)
    assert failed == 5 and tokens.shape == (5, 1, 2) and bool(tokens.abs().sum(-1).gt(0).all())
