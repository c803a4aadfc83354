"""FSDP2 (``fully_shard``) on CPU processes with gloo: sharded training equals one process on
the same global batch, a sharded checkpoint resumes exactly, the consolidated export loads in
one process, and argen's EMA works on the shards. Accelerate turns FSDP on only for accelerator
devices (its ``MULTI_CPU`` state never becomes ``FSDP``), so these runs use torch's launcher
and ``tests/fsdp2_worker.py``; ``configs/accelerate/fsdp2_full_shard.yaml`` runs the same
sharding on GPUs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from timm.utils.model_ema import ModelEmaV3

from argen import models
from argen.models.llama import Llama, LlamaConfig
from argen.training.ema import Ema
from tests.test_train import ROOT, weights

pytestmark = pytest.mark.slow  # multi-process: outside the fast subset

WORKER = str(ROOT / "tests" / "fsdp2_worker.py")


def launch(procs: int, out: Path, *args: str) -> list[float]:
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)]
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [*command, WORKER, str(out), *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "losses.json").read_text())


def test_fsdp2_matches_one_process_resumes_exactly_and_exports_full_weights(tmp_path):
    one = launch(1, tmp_path / "one", "6", "--plain")
    two = launch(2, tmp_path / "two", "6")
    torch.testing.assert_close(torch.tensor(two), torch.tensor(one), rtol=1e-4, atol=1e-5)
    for part in ("model", "ema"):
        a, b = weights(tmp_path / "one" / part), weights(tmp_path / "two" / part)
        for key in a:
            torch.testing.assert_close(b[key], a[key], atol=1e-4, rtol=1e-4)
    launch(2, tmp_path / "stopped", "3", "--save-at", "3")
    resumed = launch(2, tmp_path / "stopped", "6", "--resume-from", str(tmp_path / "stopped" / "checkpoint"))
    assert resumed == two[3:]
    for part in ("model", "ema"):
        a, b = weights(tmp_path / "two" / part), weights(tmp_path / "stopped" / part)
        assert all(torch.equal(a[k], b[k]) for k in a), part
    model = models.load(tmp_path / "two" / "model")  # consolidated: loads in one process
    assert isinstance(model, Llama) and model.layers[0].attention.wo.weight.shape == (32, 32)


def test_ema_follows_timms_model_ema_v3_exactly():
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=16, grid_size=(2, 2), num_classes=2, dim=16, n_layer=1, n_head=2))
    ours, timms = Ema(model, decay=0.99), ModelEmaV3(model, decay=0.99, use_warmup=True)
    for step in range(1, 6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ours.update(model, step)
        timms.update(model, step)
    assert all(torch.equal(ours.weights()[k], v) for k, v in timms.module.state_dict().items())
    restored = Ema(model, decay=0.99)
    restored.load_state_dict(timms.state_dict())  # checkpoints of either load into the other
    assert all(torch.equal(restored.weights()[k], v) for k, v in ours.weights().items())


FLOW_WORKER = str(ROOT / "tests" / "fsdp2_flow_worker.py")


def test_fsdp2_trains_a_paradigm_loss_that_runs_the_head_outside_forward(tmp_path):
    """The continuous paradigms' flow-matching loss calls the generator's head after its forward:
    sharded (1 and 2 processes, every process on the same rows) it trains as the plain model."""
    runs = {}
    for name, procs, flags in [("plain", 1, ["--plain"]), ("one", 1, []), ("two", 2, [])]:
        out = tmp_path / name
        out.mkdir()
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(procs),
        ]
        env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
        done = subprocess.run(
            [*command, FLOW_WORKER, str(out), "3", *flags],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        runs[name] = json.loads((out / "losses.json").read_text())
    for name in ("one", "two"):
        torch.testing.assert_close(
            torch.tensor(runs[name]), torch.tensor(runs["plain"]), rtol=1e-4, atol=1e-5
        )
        a, b = weights(tmp_path / "plain" / "model"), weights(tmp_path / name / "model")
        for key in a:
            torch.testing.assert_close(b[key], a[key], atol=1e-4, rtol=1e-4)
