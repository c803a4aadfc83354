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


def test_threads_auto_shares_the_cores_among_launched_processes_and_warns_when_busy(monkeypatch, caplog):
    from argen import launch

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(launch, "DEFAULT_THREADS", 4)
        monkeypatch.setattr(launch, "other_running_processes", lambda: 0)
        assert launch.configure_threads(0) == 4 and torch.get_num_threads() == 4
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        assert launch.configure_threads(0) == 2  # two processes launched on this machine
        assert launch.configure_threads(3) == 3 and "other process" not in caplog.text
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        assert launch.configure_threads(0) == 1  # the environment's choice is kept
        monkeypatch.setattr(launch, "other_running_processes", lambda: 1)
        launch.configure_threads(2)
        assert "1 other process(es) running" in caplog.text and "train.threads=1" in caplog.text
        with pytest.raises(ValueError, match="threads must be >= 0"):
            launch.configure_threads(-1)
    finally:
        torch.set_num_threads(before)


def test_other_running_processes_reads_the_kernel_count():
    from argen.launch import other_running_processes

    assert other_running_processes() >= 0
