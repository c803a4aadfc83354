"""What every entry point checks about how it was launched."""

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from argen.launch import RunError, check_world


def test_a_gpu_launch_without_a_gpu_says_so(monkeypatch, caplog):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    check_world(SimpleNamespace(num_processes=1, device=torch.device("cpu")))
    assert "none is available: running on the CPU" in caplog.text


def test_processes_that_accelerate_did_not_join_are_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RunError, match="ACCELERATE_USE_CPU=1"):
        check_world(SimpleNamespace(num_processes=1, device=torch.device("cpu")))


def test_entry_points_import_heavy_libraries_only_when_used():
    """``sample.py --help`` and class-conditional sampling start without diffusers, torchmetrics,
    transformers or torchvision (each costs up to seconds to import)."""
    code = (
        "import sys, argen.cli.sample; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'diffusers', 'torchmetrics', 'transformers', 'torchvision', 'torch_fidelity'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_several_processes_asked_of_the_single_process_launcher_are_refused(tmp_path):
    """`accelerate launch --num_processes 2` without --multi_gpu starts one process: say so."""
    from tests.conftest import vq_recipe, write_yaml
    from tests.test_train import run_cli

    config = write_yaml(tmp_path / "vq.yaml", vq_recipe(tmp_path / "vq", max_steps=2))
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
    ]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no", "train.py", "--config", str(config)]
    done = run_cli(launch)  # train.py exits 2 with one line; the launcher then reports its exit status
    assert done.returncode != 0 and "error: accelerate launch was asked for several processes" in done.stderr
    assert not (tmp_path / "vq" / "model").exists()
