import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from argen.checkpoint import read_config
from argen.training.recipes import recipe_from_dict
from argen.training.tasks.generator import GeneratorTask
from argen.training.trainer import TrainingError, train
from tests.conftest import gpt_recipe, vq_recipe, write_yaml

ROOT = Path(__file__).resolve().parents[1]


def weights(directory: Path, name: str = "model.safetensors") -> dict[str, torch.Tensor]:
    return load_file(str(directory / name))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def test_training_writes_model_ema_tokenizer_and_state(trained):
    gpt = trained["gpt"]
    for sub in ("model", "ema", "tokenizer", "checkpoint"):
        assert (gpt / sub).is_dir(), sub
    config = read_config(gpt / "model")
    assert config["_class_name"] == "Llama" and config["grid_size"] == [4, 4]
    assert config["vocab_size"] == 32 and config["num_classes"] == 10
    assert not torch.equal(weights(gpt / "model")["output.weight"], weights(gpt / "ema")["output.weight"])
    assert any((trained["vq"] / "logs").glob("events.out.tfevents.*"))  # tensorboard
    assert json.loads((trained["classifier"] / "metrics.json").read_text())["holdout_size"] == 180


def test_refuses_to_overwrite_a_run_and_to_resume_a_different_recipe(trained, tmp_path):
    data = vq_recipe(trained["vq"])
    with pytest.raises(TrainingError, match="--resume"):
        train(recipe_from_dict(data))
    data["model"]["codebook_size"] = 64
    with pytest.raises(TrainingError, match="differs.*model"):
        train(recipe_from_dict(data), resume=True)
    with pytest.raises(TrainingError, match="no checkpoint"):
        train(recipe_from_dict(vq_recipe(tmp_path / "fresh")), resume=True)


def test_resume_after_a_kill_matches_an_uninterrupted_run(trained, tmp_path, monkeypatch):
    tokenizer = trained["vq"] / "model"
    straight = train(recipe_from_dict(gpt_recipe(tmp_path / "straight", tokenizer)))

    recipe = recipe_from_dict(gpt_recipe(tmp_path / "killed", tokenizer))
    original = GeneratorTask.compute_losses

    def killed_at_step_4(self, modules, batch, step):
        if step == 4:
            raise KeyboardInterrupt  # the process dies after the step-3 checkpoint
        return original(self, modules, batch, step)

    monkeypatch.setattr(GeneratorTask, "compute_losses", killed_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train(recipe)
    monkeypatch.setattr(GeneratorTask, "compute_losses", original)
    resumed = train(recipe_from_dict(gpt_recipe(tmp_path / "killed", tokenizer)), resume=True)
    assert_same_weights(straight / "model", resumed / "model")
    assert_same_weights(straight / "ema", resumed / "ema")


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(trained, tmp_path, monkeypatch):
    recipe = recipe_from_dict(gpt_recipe(tmp_path / "nan", trained["vq"] / "model"))
    original = GeneratorTask.compute_losses

    def nan_at_step_4(self, modules, batch, step):
        losses, logs = original(self, modules, batch, step)
        if step == 4:
            losses["model"] = losses["model"] * float("nan")
        return losses, logs

    monkeypatch.setattr(GeneratorTask, "compute_losses", nan_at_step_4)
    with pytest.raises(TrainingError, match="non-finite loss.*step 4.*last good checkpoint"):
        train(recipe)
    state = torch.load(tmp_path / "nan" / "checkpoint" / "custom_checkpoint_0.pkl", weights_only=False)
    assert state["step"] == 3
    assert all(torch.isfinite(v).all() for v in weights(tmp_path / "nan" / "model").values())


def test_nan_loss_before_any_checkpoint_says_there_is_none(trained, tmp_path, monkeypatch):
    recipe = recipe_from_dict(gpt_recipe(tmp_path / "nan0", trained["vq"] / "model"))
    original = GeneratorTask.compute_losses

    def always_nan(self, modules, batch, step):
        losses, logs = original(self, modules, batch, step)
        return {"model": losses["model"] * float("nan")}, logs

    monkeypatch.setattr(GeneratorTask, "compute_losses", always_nan)
    with pytest.raises(TrainingError, match="No checkpoint was saved before it"):
        train(recipe)
    assert not (tmp_path / "nan0" / "checkpoint").exists()


def test_tokenizer_with_patchgan_trains(tmp_path):
    runs = {}
    for steps in (1, 3):  # the discriminator starts at step 1: the 1-step run never steps it
        data = vq_recipe(tmp_path / f"gan{steps}", max_steps=steps, save_every=steps, log_every=1)
        data["loss"] = dict(
            disc_weight=0.5, disc_start=1, disc_layers=1, disc_channels=8, reconstruction="l1"
        )
        runs[steps] = train(recipe_from_dict(data))
    logged = [json.loads(line) for line in (runs[3] / "log.jsonl").read_text().splitlines()]
    assert "d_loss" not in logged[0] and all("d_loss" in x and "g_loss" in x for x in logged[1:])
    before, after = (weights(runs[n] / "checkpoint", "model_1.safetensors") for n in (1, 3))
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)


def run_cli(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_train_cli_smoke_and_bad_config(tmp_path):
    config = write_yaml(tmp_path / "vq.yaml", vq_recipe(tmp_path / "vq", max_steps=2, save_every=2))
    done = run_cli([sys.executable, "train.py", "--config", str(config)])
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "vq" / "model" / "model.safetensors").is_file()
    bad = run_cli([sys.executable, "train.py", "--config", str(config), "train.steps=3"])
    assert bad.returncode == 2 and "unknown key(s) ['steps']" in bad.stderr


def free_port() -> int:
    """A port no process listens on now: each test process launches on its own, so that
    ``pytest -n N`` can run two launches at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LAUNCH = [
    sys.executable,
    "-m",
    "accelerate.commands.launch",
    "--multi_gpu",
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
    "--main_process_port",
    str(free_port()),
]


@pytest.mark.slow
def test_two_process_accelerate_launch_cpu(trained, tmp_path):
    runs = {}
    for procs, batch in ((2, 8), (1, 16)):  # the same global batch
        data = gpt_recipe(tmp_path / f"p{procs}", trained["vq"] / "model", max_steps=2, save_every=2)
        data["data"]["batch_size"] = batch
        data["model"].update(dropout=0.0, class_dropout=0.0)  # processes draw their own random numbers
        config = write_yaml(tmp_path / f"gpt{procs}.yaml", data)
        launcher = LAUNCH if procs > 1 else [sys.executable]
        done = run_cli([*launcher, "train.py", "--config", str(config)], env={"ACCELERATE_USE_CPU": "1"})
        assert done.returncode == 0, done.stderr[-3000:]
        runs[procs] = tmp_path / f"p{procs}"
    assert (runs[2] / "checkpoint" / "random_states_1.pkl").is_file()  # two processes ran
    for kind in ("model", "ema"):  # the EMA weights too: updated alike on every process
        a, b = weights(runs[1] / kind), weights(runs[2] / kind)
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)


def test_loading_skips_random_init_and_leaves_the_rng_as_it_was(trained, tmp_path):
    from argen import models
    from argen.checkpoint import built_for_loading, save_model
    from argen.models import NextScaleConfig, NextScaleLlama

    normal = torch.nn.init.normal_
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    model = models.load(trained["gpt"] / "model")  # draws no random numbers while it is built
    assert torch.equal(torch.rand(3), expected)
    reference = load_file(str(trained["gpt"] / "model" / "model.safetensors"))
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())
    config = NextScaleConfig(vocab_size=8, grid_size=(2, 2), patch_nums=(1, 2), dim=16, n_head=2)
    save_model(NextScaleLlama(config), tmp_path / "scales")
    torch.manual_seed(0)
    models.load(tmp_path / "scales")  # its constructor calls torch.randn: the RNG is restored after
    assert torch.equal(torch.rand(3), expected)
    with built_for_loading():
        assert torch.equal(torch.nn.init.normal_(torch.zeros(4)), torch.zeros(4))  # skipped inside
    assert torch.nn.init.normal_ is normal  # nothing in torch was patched
    assert not torch.equal(torch.nn.init.normal_(torch.zeros(4)), torch.zeros(4))


def test_a_moved_run_resumes(tmp_path):
    first = train(recipe_from_dict(vq_recipe(tmp_path / "here", max_steps=2, save_every=2)))
    moved = first.rename(tmp_path / "there")
    resumed = train(recipe_from_dict(vq_recipe(moved, max_steps=3, save_every=3)), resume=True)
    assert resumed == moved and json.loads((moved / "recipe.json").read_text())["output_dir"] == str(moved)
    assert (moved / "model" / "model.safetensors").is_file()


def interruptible(command: list[str]) -> subprocess.Popen:
    """``command`` started in the repository with SIGINT at its default, as a terminal's process
    (a background launcher without job control would hand it SIGINT ignored)."""
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def test_ctrl_c_in_training_says_what_is_kept_and_how_to_continue(tmp_path):
    """A real SIGINT once the first checkpoint exists: one line, no traceback, and the command
    it names continues the run."""
    config = write_yaml(tmp_path / "vq.yaml", vq_recipe(tmp_path / "vq", max_steps=100000, save_every=2))
    process = interruptible([sys.executable, "train.py", "--config", str(config)])
    deadline = time.monotonic() + 300
    while not (tmp_path / "vq" / "checkpoint").is_dir() and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)  # generous: a loaded machine can be very slow
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert f"continue with: python train.py --config {config} --resume" in err


def test_training_draws_its_curves(trained, tmp_path):
    from PIL import Image

    from argen.training.curves import PANEL, main, read_log

    series = read_log(trained["vq"] / "log.jsonl")
    assert "rec_loss" in series and "lr" not in series and all(len(p) >= 2 for p in series.values())
    image = Image.open(trained["vq"] / "curves.png")  # written at the end of training
    columns = min(3, len(series))
    assert image.size == (PANEL[0] * columns, PANEL[1] * -(-len(series) // columns))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "log.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.0}\n')
    assert main([str(tmp_path / "run")]) == 0 and (tmp_path / "run" / "curves.png").is_file()
