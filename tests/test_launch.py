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
