"""Several processes on one CPU (gloo): DDP equivalence, resume, FSDP, sharded sampling."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from argen.cli import sample as sample_cli
from argen.models.llama import LlamaBlock
from tests.conftest import gpt_recipe, write_yaml
from tests.test_train import LAUNCH, ROOT, run_cli, weights

pytestmark = pytest.mark.slow  # multi-process or every recipe: outside the fast subset

CPU = {"ACCELERATE_USE_CPU": "1"}


def deterministic_gpt(out: Path, tokenizer: Path, batch_size: int, **train) -> dict:
    """No dropout of any kind: processes draw different random numbers by design."""
    data = gpt_recipe(out, tokenizer, **train)
    data["data"]["batch_size"] = batch_size
    data["model"].update(dropout=0.0, class_dropout=0.0)
    data["train"].update(ema_decay=0.0, log_every=1)
    return data


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines()]


def launch_train(config: Path, procs: int = 2, extra=()):
    launcher = [*LAUNCH[:5], str(procs), *LAUNCH[6:]] if procs > 1 else [sys.executable]
    args = [*launcher, "train.py", "--config", str(config), *extra]
    done = run_cli(args, env=CPU)
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_process_ddp_matches_one_process_with_the_same_global_batch(trained, tmp_path):
    tok = trained["vq"] / "model"
    single = write_yaml(tmp_path / "a.yaml", deterministic_gpt(tmp_path / "one", tok, 8, max_steps=5))
    double = write_yaml(tmp_path / "b.yaml", deterministic_gpt(tmp_path / "two", tok, 4, max_steps=5))
    launch_train(single, procs=1)
    launch_train(double, procs=2)
    np.testing.assert_allclose(losses(tmp_path / "one"), losses(tmp_path / "two"), rtol=1e-4)
    a, b = weights(tmp_path / "one" / "model"), weights(tmp_path / "two" / "model")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)


def test_two_process_resume_matches_an_uninterrupted_run(trained, tmp_path):
    tok = trained["vq"] / "model"
    constant_lr = dict(warmup_steps=0, min_lr_ratio=1.0, save_every=3)
    straight = deterministic_gpt(tmp_path / "straight", tok, 4, max_steps=6, **constant_lr)
    launch_train(write_yaml(tmp_path / "s.yaml", straight))
    # the same run stopped after its step-3 checkpoint, then resumed by a fresh launch
    stopped = deterministic_gpt(tmp_path / "stopped", tok, 4, max_steps=3, **constant_lr)
    launch_train(write_yaml(tmp_path / "r.yaml", stopped))
    stopped["train"]["max_steps"] = 6
    launch_train(write_yaml(tmp_path / "r.yaml", stopped), extra=["--resume"])
    a, b = weights(tmp_path / "straight" / "model"), weights(tmp_path / "stopped" / "model")
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_fsdp_configs_parse_and_name_the_llama_block():
    for name in ("fsdp_full_shard.yaml", "fsdp_hybrid_shard.yaml", "fsdp2_full_shard.yaml"):
        config = yaml.safe_load((ROOT / "configs" / "accelerate" / name).read_text())
        assert config["distributed_type"] == "FSDP" and config["mixed_precision"] == "bf16"
        fsdp = config["fsdp_config"]
        assert fsdp["fsdp_transformer_layer_cls_to_wrap"] == LlamaBlock.__name__
        assert fsdp.get("fsdp_sharding_strategy", "FULL_SHARD") in ("FULL_SHARD", "HYBRID_SHARD")


def test_sampling_resumes_after_an_interruption(trained, tmp_path, monkeypatch):
    monkeypatch.setattr(sample_cli, "PART_IMAGES", 2)  # a part per batch
    args = ["--ckpt", str(trained["gpt"]), "--num-samples", "8", "--batch-size", "2", "--seed", "3"]
    assert sample_cli.main([*args, "--out", str(tmp_path / "full")]) == 0
    calls = []
    original = sample_cli.generate_batch

    def interrupted_after_two(*a, **kw):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return original(*a, **kw)

    monkeypatch.setattr(sample_cli, "generate_batch", interrupted_after_two)
    assert sample_cli.main([*args, "--out", str(tmp_path / "resumed")]) == 130  # Ctrl-C
    assert len(list((tmp_path / "resumed" / ".parts").glob("part-*.npz"))) == 2
    calls.clear()
    monkeypatch.setattr(sample_cli, "generate_batch", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    assert sample_cli.main([*args, "--out", str(tmp_path / "resumed")]) == 0
    assert len(calls) == 2  # only the two missing batches were drawn
    full = np.load(tmp_path / "full" / "samples.npz")["arr_0"]
    assert np.array_equal(full, np.load(tmp_path / "resumed" / "samples.npz")["arr_0"])
    assert not (tmp_path / "resumed" / ".parts").exists()


def test_parts_group_small_batches_and_change_no_sample(trained, tmp_path, monkeypatch):
    args = ["--ckpt", str(trained["gpt"]), "--num-samples", "10", "--batch-size", "2", "--seed", "3"]
    assert sample_cli.main([*args, "--out", str(tmp_path / "one_part")]) == 0  # 10 < PART_IMAGES
    monkeypatch.setattr(sample_cli, "PART_IMAGES", 4)  # two batches a part: 3 parts
    writes = []
    put = sample_cli.BatchStore.put
    monkeypatch.setattr(
        sample_cli.BatchStore, "put", lambda self, i, *a: writes.append(i) or put(self, i, *a)
    )
    assert sample_cli.main([*args, "--out", str(tmp_path / "three_parts")]) == 0
    assert writes == [0, 1, 2]
    one, three = (np.load(tmp_path / d / "samples.npz") for d in ("one_part", "three_parts"))
    assert np.array_equal(one["arr_0"], three["arr_0"]) and np.array_equal(one["labels"], three["labels"])


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="Accelerate's FSDP plugin needs an accelerator device: on CPU it stops with "
    "'There are currently no available devices found'",
)
@pytest.mark.parametrize("config,ema", [("fsdp_full_shard.yaml", 0.0), ("fsdp2_full_shard.yaml", 0.9)])
def test_fsdp_step_on_one_gpu(trained, tmp_path, config, ema):
    data = deterministic_gpt(tmp_path / "fsdp", trained["vq"] / "model", 4, max_steps=2, save_every=2)
    data["train"]["ema_decay"] = ema
    config = write_yaml(tmp_path / "f.yaml", data)
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "configs" / "accelerate" / config),
        "--num_processes",
        "1",
    ]
    done = run_cli([*launch, "train.py", "--config", str(config)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "fsdp" / "model" / "model.safetensors").is_file()
    assert (tmp_path / "fsdp" / "ema" / "model.safetensors").is_file() == (ema > 0)


def test_gradient_accumulation_matches_the_full_batch(trained, tmp_path):
    tok = trained["vq"] / "model"
    full = deterministic_gpt(tmp_path / "full", tok, 8, max_steps=3)
    accumulated = deterministic_gpt(tmp_path / "accum", tok, 4, max_steps=3, grad_accum=2)
    launch_train(write_yaml(tmp_path / "f.yaml", full), procs=1)
    launch_train(write_yaml(tmp_path / "a.yaml", accumulated), procs=1)
    a, b = weights(tmp_path / "full" / "model"), weights(tmp_path / "accum" / "model")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
