"""Dead-code restarts: they undo a collapse, stay deterministic, resume exactly, and restart the
same codes on every process."""

import json

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from argen.tokenizers.quantizer import VectorQuantizer
from argen.training.codebook_guard import CodebookGuard, kmeans_plus_plus
from argen.training.recipes import recipe_from_dict
from argen.training.trainer import train
from tests.conftest import vq_recipe, write_yaml
from tests.test_distributed import launch_train
from tests.test_train import assert_same_weights, weights


def clustered_data(steps: int, batch: int = 256) -> list[torch.Tensor]:
    """Batches (batch, 4) around 16 centres far from the codebook's initial box."""
    g = torch.Generator().manual_seed(0)
    centres = 3 * torch.randn(16, 4, generator=g)
    return [
        centres[torch.randint(0, 16, (batch,), generator=g)] + 0.3 * torch.randn(batch, 4, generator=g)
        for _ in range(steps)
    ]


def final_usage(restart_every: int) -> float:
    """Train a 256-code quantiser on the clustered data; usage of its codebook on new data."""
    torch.manual_seed(0)
    q = VectorQuantizer(256, 4, beta=0.25, l2_norm=False)
    optimizer = torch.optim.Adam(q.parameters(), lr=1e-2)
    guard = CodebookGuard(q, restart_every, candidates=512, seed=0) if restart_every else None
    accelerator = Accelerator(cpu=True)
    for step, batch in enumerate(clustered_data(60), start=1):
        _, _, stats = q(batch.T[None, :, :, None])  # (1, D, N, 1)
        optimizer.zero_grad()
        stats["codebook_loss"].backward()
        optimizer.step()
        if guard is not None:
            guard.after_step(step, accelerator)
    q.eval()
    return float(q.usage(q.nearest(torch.cat(clustered_data(4))))["codebook_usage"])


def test_restarts_undo_a_collapsing_codebook():
    without, with_guard = final_usage(0), final_usage(10)
    assert without < 0.1  # the nearest few codes take every cluster
    assert with_guard > 0.6, (without, with_guard)


def test_kmeans_plus_plus_draws_far_from_the_live_codes():
    candidates = torch.cat([torch.zeros(50, 2), torch.full((50, 2), 10.0)])
    drawn = kmeans_plus_plus(candidates, torch.zeros(1, 2), 5, torch.Generator().manual_seed(0))
    assert drawn.shape == (5, 2) and (drawn == 10.0).all(dim=1).any()
    assert (drawn[0] == 10.0).all()  # the only candidates away from the live code at 0


def angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a, b, dim=-1).clamp(-1, 1).acos()


def test_restarted_rows_of_a_normalised_codebook_move_as_fast_as_the_live_ones():
    torch.manual_seed(0)
    q = VectorQuantizer(64, 8, l2_norm=True)  # rows at norm ~0.01: LlamaGen's +-1/K start
    guard = CodebookGuard(q, 1, candidates=256, seed=0)
    dead = torch.arange(32)
    guard.restart(q, dead, torch.randn(256, 8), torch.Generator().manual_seed(0))
    norms = q.embedding.weight.detach().norm(dim=-1)
    live_median = norms[32:].median()
    assert (norms[:32] < 2 * live_median).all() and (norms[:32] > live_median / 2).all()
    # every row must travel to a direction of its own; Adam moves each coordinate about lr per step
    targets = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
    before = q.embedding.weight.detach().clone()
    optimizer = torch.optim.Adam(q.parameters(), lr=1e-3)
    for _ in range(20):
        loss = -torch.nn.functional.cosine_similarity(q.codebook(), targets, dim=-1).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    moved = angle(before, q.embedding.weight.detach())
    # before: re-drawn rows sat at norm 1 and turned 15-25x less than the live rows
    assert moved[:32].mean() > 0.5 * moved[32:].mean(), (moved[:32].mean(), moved[32:].mean())


def guarded(out, **train_options) -> dict:
    """A tiny VQ run with restarts every 2 steps; a constant learning rate, so a run stopped
    early and resumed follows the same schedule as an uninterrupted one."""
    data = vq_recipe(out, log_every=1, warmup_steps=0, min_lr_ratio=1.0, **train_options)
    data["model"]["codebook_size"] = 256  # more codes than the tiny run can fill: some die
    data["loss"] = dict(codebook_restart_every=2, codebook_restart_candidates=64)
    return data


def restarts(run) -> list[float]:
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [line["quantize/dead_codes"] for line in lines if "quantize/dead_codes" in line]


def test_restarts_are_deterministic_and_resume_exactly(tmp_path, monkeypatch):
    a = train(recipe_from_dict(guarded(tmp_path / "a", max_steps=6, save_every=3)))
    b = train(recipe_from_dict(guarded(tmp_path / "b", max_steps=6, save_every=3)))
    assert len(restarts(a)) == 3 and all(n > 0 for n in restarts(a))
    assert_same_weights(a / "model", b / "model")
    plain = guarded(tmp_path / "plain", max_steps=6, save_every=3)
    plain["loss"] = dict(codebook_restart_every=0)
    unguarded = weights(train(recipe_from_dict(plain)) / "model")["quantize.embedding.weight"]
    assert not torch.equal(unguarded, weights(a / "model")["quantize.embedding.weight"])

    stopped = guarded(tmp_path / "c", max_steps=3, save_every=3)
    train(recipe_from_dict(stopped))  # the step-3 hits are counted towards the step-4 restart
    stopped["train"]["max_steps"] = 6
    resumed = train(recipe_from_dict(stopped), resume=True)
    assert_same_weights(a / "model", resumed / "model")


@pytest.mark.slow
def test_two_processes_restart_as_one_process_on_the_same_global_batch(tmp_path):
    one, two = guarded(tmp_path / "one", max_steps=4), guarded(tmp_path / "two", max_steps=4)
    two["data"]["batch_size"] = 8  # 2 x 8 = the single process's 16
    launch_train(write_yaml(tmp_path / "one.yaml", one), procs=1)
    launch_train(write_yaml(tmp_path / "two.yaml", two), procs=2)
    np.testing.assert_array_equal(restarts(tmp_path / "one"), restarts(tmp_path / "two"))
    a, b = weights(tmp_path / "one" / "model"), weights(tmp_path / "two" / "model")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-4, rtol=1e-3)  # summation order only
