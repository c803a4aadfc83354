import json
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from argen.cli import sample as sample_cli
from argen.eval import (
    FeaturesUnavailable,
    class_consistency,
    classifier_features,
    frechet_distance,
    inception_features,
    load_classifier,
)
from argen.eval.evaluation import reference_images
from argen.images import from_uint8, to_uint8
from argen.training.recipes import recipe_from_dict
from argen.training.trainer import train
from tests.test_train import LAUNCH, run_cli


def sample(trained, out, *extra, env=None, launch=()):
    args = [*launch, "sample.py", "--ckpt", str(trained["gpt"]), "--out", str(out), *extra]
    return run_cli(args if launch else [sys.executable, *args], env=env)


def test_sample_cli_writes_grid_npz_and_metrics(trained, tmp_path):
    clf = trained["classifier"] / "model"
    done = sample(
        trained,
        tmp_path / "s",
        "--classes",
        "1,3",
        "--num-samples",
        "7",
        "--batch-size",
        "3",
        "--cfg-scale",
        "2",
        "--top-k",
        "10",
        "--fid",
        "digits",
        "--fid-features",
        "classifier",
        "--classifier",
        str(clf),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(tmp_path / "s" / "samples.npz") as data:
        images, labels = data["arr_0"], data["labels"]
    assert images.shape == (7, 8, 8, 3) and images.dtype == np.uint8
    assert labels.tolist() == [1, 3, 1, 3, 1, 3, 1]
    assert Image.open(tmp_path / "s" / "grid.png").size[0] == 2 * 9 + 1  # 2 columns of 8 px + padding
    metrics = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert "fid" not in metrics
    # the recorded FID is the classifier-feature distance of these samples to the digits
    classifier = load_classifier(clf)
    real = reference_images("digits", 8)
    expected = frechet_distance(classifier_features(classifier), real, images, device=torch.device("cpu"))
    assert metrics["fid_classifier"] == pytest.approx(expected, rel=1e-4)
    assert metrics["features"].startswith("classifier") and metrics["reference_size"] == 1797
    assert set(metrics["class_consistency"]) == {"overall", "1", "3"}


@pytest.mark.slow
def test_sampling_is_seeded_and_independent_of_the_process_count(trained, tmp_path):
    common = ["--num-samples", "6", "--batch-size", "2", "--seed", "5", "--cfg-scale", "1.5"]
    one_thread = {"OMP_NUM_THREADS": "1"}  # as launched workers run: thread counts change float sums
    assert sample(trained, tmp_path / "a", *common, env=one_thread).returncode == 0
    assert sample(trained, tmp_path / "b", *common, env=one_thread).returncode == 0
    two = sample(
        trained, tmp_path / "c", *common, env={"ACCELERATE_USE_CPU": "1", **one_thread}, launch=LAUNCH
    )
    assert two.returncode == 0, two.stderr[-2000:]
    a, b, c = (np.load(tmp_path / d / "samples.npz")["arr_0"] for d in "abc")
    assert np.array_equal(a, b) and np.array_equal(a, c)
    other = sample(trained, tmp_path / "d", *common[:-4], "--seed", "6", "--cfg-scale", "1.5")
    assert not np.array_equal(a, np.load(tmp_path / "d" / "samples.npz")["arr_0"]), other.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--classes", "12"], "class ids must lie in [0, 10)"),
        (["--classes", "two"], "comma-separated integers"),
        (["--edit", "image.png", "--mask", "mask.png"], "needs a next-scale"),
        (["--edit", "image.png"], "go together"),
        (["--constrained"], "--constrained is for byte-stream generators"),
        (["--fid", "digits", "--inception-weights", "/nonexistent.pth"], "does not exist"),
        (["--fid", "digits", "--fid-features", "classifier"], "needs --classifier"),
        (
            ["--fid", "/nonexistent/ref", "--fid-features", "classifier", "--classifier", "CLF"],
            "neither an embedded dataset",
        ),
    ],
)
def test_sample_cli_bad_input(trained, tmp_path, capsys, args, message):
    args = [str(trained["classifier"] / "model") if a == "CLF" else a for a in args]
    code = sample_cli.main(
        ["--ckpt", str(trained["gpt"]), "--out", str(tmp_path), "--num-samples", "2", *args]
    )
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "samples.npz").exists()  # refused before drawing anything


def test_missing_checkpoint(tmp_path, capsys):
    assert sample_cli.main(["--ckpt", str(tmp_path)]) == 2
    assert "config.json" in capsys.readouterr().err


def test_inception_without_weights_names_the_fix(tmp_path):
    with pytest.raises(FeaturesUnavailable, match="does not exist"):
        inception_features(tmp_path / "missing.pth")


def test_classifier_frechet_distance_is_zero_on_itself_and_grows_with_noise(trained):
    clf = load_classifier(trained["classifier"] / "model")
    from argen.data import DigitsDataset

    real = to_uint8(DigitsDataset(8).images[:400])
    metric = classifier_features(clf)
    same = frechet_distance(metric, real, real)
    pixels = from_uint8(real)
    noisy = [
        frechet_distance(metric, real, to_uint8(pixels + s * torch.randn_like(pixels))) for s in (0.2, 0.6)
    ]
    assert abs(same) < 1e-3 and same < noisy[0] < noisy[1]


def test_class_consistency_per_class():
    class Fixed(torch.nn.Module):
        def forward(self, x):  # predicts class 0 for dark images, 1 otherwise
            return torch.stack([-x.mean((1, 2, 3)), x.mean((1, 2, 3))], -1)

    pixels = torch.cat([-torch.ones(2, 3, 4, 4), torch.ones(3, 3, 4, 4)])
    result = class_consistency(Fixed(), pixels, torch.tensor([0, 0, 0, 1, 1]))
    assert result["0"] == pytest.approx(2 / 3) and result["1"] == pytest.approx(1.0)
    assert result["overall"] == pytest.approx(0.8)


def test_inception_weights_from_a_local_file(tmp_path, monkeypatch):
    """The --inception-weights path end to end, with random weights standing in for the real ones."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    with monkeypatch.context() as patch:  # build once without loading anything, to get the keys
        patch.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        patch.setattr("torch.load", lambda *a, **kw: None)
        module = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], "unused")
    torch.save(module.state_dict(), tmp_path / "inception.pth")
    metric = inception_features(tmp_path / "inception.pth")
    images = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    assert abs(frechet_distance(metric, images, images)) < 1e-2


def test_mismatched_tokenizer_is_refused(trained, tmp_path, capsys):
    from argen.checkpoint import save_model
    from argen.tokenizers.vq import VQConfig, VQModel

    save_model(
        VQModel(
            VQConfig(
                resolution=16,
                base_channels=8,
                channel_mult=(1, 2),
                num_res_blocks=1,
                z_channels=8,
                norm_groups=4,
                codebook_size=32,
                codebook_dim=4,
            )
        ),
        tmp_path / "other_vq",
    )  # same vocabulary, 8x8 grid instead of 4x4
    code = sample_cli.main(
        [
            "--ckpt",
            str(trained["gpt"]),
            "--tokenizer",
            str(tmp_path / "other_vq"),
            "--out",
            str(tmp_path / "s"),
        ]
    )
    assert code == 2 and "does not match generator" in capsys.readouterr().err


@pytest.mark.slow
def test_prompt_cli_writes_grid_npz_and_prompts(trained, trained_t2i, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a handwritten digit three\na handwritten digit eight\n", encoding="utf-8")
    args = ["--ckpt", str(trained_t2i), "--num-samples", "6", "--batch-size", "4", "--cfg-scale", "2"]
    out = tmp_path / "s"
    done = run_cli(
        [
            sys.executable,
            "sample.py",
            *args,
            "--prompt",
            "a handwritten digit one",
            "--prompts-file",
            str(prompts),
            "--out",
            str(out),
        ]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data = np.load(out / "samples.npz")
    assert data["arr_0"].shape == (6, 8, 8, 3) and data["prompt_ids"].tolist() == [0, 1, 2, 0, 1, 2]
    assert json.loads((out / "prompts.json").read_text()) == [
        "a handwritten digit one",
        "a handwritten digit three",
        "a handwritten digit eight",
    ]
    assert Image.open(out / "grid.png").size == (3 * 9 + 1, 2 * 9 + 1)

    def fails(*extra):
        done = run_cli([sys.executable, "sample.py", *args, "--out", str(tmp_path / "x"), *extra])
        assert done.returncode == 2, done.stderr[-2000:]
        return done.stderr

    assert "prompt 0 is empty" in fails("--prompt", " ")
    assert "not --classes" in fails("--prompt", "a digit", "--classes", "1")
    assert "no prompts given" in fails()
    assert "does not exist" in fails("--prompts-file", str(tmp_path / "none.txt"))
    long = run_cli(
        [
            sys.executable,
            "sample.py",
            *args,
            "--out",
            str(tmp_path / "y"),
            "--num-samples",
            "1",
            "--prompt",
            "a handwritten digit seven " * 5,
        ]
    )
    assert long.returncode == 0 and "truncated to 8" in long.stderr
    klass = sample(trained, tmp_path / "z", "--prompt", "a cat")
    assert klass.returncode == 2 and "class-conditional" in klass.stderr


def test_resize_resamples_the_saved_samples(trained, tmp_path):
    done = sample(trained, tmp_path / "s", "--num-samples", "2", "--resize", "12")
    assert done.returncode == 0, done.stderr[-2000:]
    resized = np.load(tmp_path / "s" / "samples.npz")["arr_0"]
    assert resized.shape == (2, 12, 12, 3)
    assert sample(trained, tmp_path / "p", "--num-samples", "2").returncode == 0  # the same draws, 8 px
    plain = from_uint8(np.load(tmp_path / "p" / "samples.npz")["arr_0"])  # (2, 3, 8, 8)
    expected = to_uint8(
        torch.nn.functional.interpolate(plain, size=(12, 12), mode="bicubic", align_corners=False)
    )
    diff = np.abs(resized.astype(int) - expected.astype(int))  # bicubic of the 8 px samples, up to rounding
    assert diff.max() <= 2 and diff.mean() < 0.5


def test_speculative_sampling_cli(trained, tmp_path):
    common = ["--num-samples", "4", "--batch-size", "4", "--cfg-scale", "2", "--temperature", "0"]
    plain = sample(trained, tmp_path / "plain", *common)
    assert plain.returncode == 0, plain.stderr[-2000:]
    args = [
        "--speculative",
        str(trained["gpt"]),
        "--draft-length",
        "3",
        "--relaxed-k",
        "5",
        "--relaxed-delta",
        "0",
    ]
    done = sample(trained, tmp_path / "spec", *common, *args)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "spec" / "metrics.json").read_text())
    # the target drafting for itself has every draft accepted: 2 tokens, then 14 in 4-token passes
    assert metrics["speculative"]["tokens_per_target_call"] == pytest.approx(14 / 4)
    load = lambda d: np.load(tmp_path / d / "samples.npz")["arr_0"]  # noqa: E731
    assert np.array_equal(load("plain"), load("spec"))  # greedy with delta 0 equals greedy plain sampling
    bad = sample(trained, tmp_path / "bad", *common, "--speculative", str(trained["vq"]))
    assert bad.returncode == 2


def test_draft_head_trains_on_the_target_and_drafts_from_the_cli(trained, tmp_path):
    recipe = dict(
        task="draft_head",
        output_dir=str(tmp_path / "head"),
        target=str(trained["gpt"]),
        data=dict(dataset="digits", resolution=8, batch_size=16, token_cache=str(tmp_path / "tokens")),
        train=dict(max_steps=40, lr=3e-3, warmup_steps=2, save_every=40, log_every=10),
    )
    head = train(recipe_from_dict(recipe))
    logs = [json.loads(line) for line in (head / "log.jsonl").read_text().splitlines()]
    losses = [entry["feature_loss"] for entry in logs if "feature_loss" in entry]
    assert losses[-1] < losses[0]  # it learns the target's next features
    common = ["--num-samples", "4", "--batch-size", "4", "--cfg-scale", "2", "--temperature", "0"]
    done = sample(trained, tmp_path / "spec", *common, "--speculative", str(head), "--draft-length", "3")
    assert done.returncode == 0, done.stderr[-2000:]
    assert sample(trained, tmp_path / "plain", *common).returncode == 0
    load = lambda d: np.load(tmp_path / d / "samples.npz")["arr_0"]  # noqa: E731
    assert np.array_equal(load("plain"), load("spec"))  # greedy speculative output is the target's
    other = sample(trained, tmp_path / "other", *common, "--speculative", str(head), "--weights", "model")
    assert other.returncode == 2 and "another target" in other.stderr


def test_an_output_folder_holds_one_run(trained, tmp_path, capsys):
    out, clf = tmp_path / "s", str(trained["classifier"] / "model")
    first = ["--ckpt", str(trained["gpt"]), "--out", str(out), "--num-samples", "4", "--classifier", clf]
    assert sample_cli.main(first) == 0 and (out / "metrics.json").is_file()
    before = np.load(out / "samples.npz")["arr_0"]
    assert sample_cli.main(first) == 0  # the same run again: its results, written again
    assert np.array_equal(np.load(out / "samples.npz")["arr_0"], before)
    second = ["--ckpt", str(trained["gpt"]), "--out", str(out), "--num-samples", "2", "--seed", "5"]
    assert sample_cli.main(second) == 2 and "--overwrite" in capsys.readouterr().err  # refused, kept
    assert np.array_equal(np.load(out / "samples.npz")["arr_0"], before)
    assert sample_cli.main([*second, "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        ".settings.json",
        "grid.png",
        "samples.npz",
    ]  # no metrics.json
    assert len(np.load(out / "samples.npz")["arr_0"]) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no staging or old copies beside it


def test_default_output_folders_tell_runs_apart(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained["gpt"], run)
    for seed in ("1", "2"):
        assert sample_cli.main(["--ckpt", str(run), "--num-samples", "2", "--seed", seed]) == 0
    folders = sorted(p.name for p in run.glob("samples-*"))
    assert len(folders) == 2 and all(f.startswith("samples-cfg1-seed") and "-n2-" in f for f in folders)


def test_every_option_has_help_and_shows_its_default():
    from argen.cli.sample_args import build_parser

    parser = build_parser()
    help_text = " ".join(parser.format_help().split())
    for action in parser._actions:
        assert action.help, action.option_strings
        if action.default not in (None, False, "==SUPPRESS=="):
            assert "default" in action.help or f"(default: {action.default}" in help_text.replace("'", ""), (
                action
            )


def test_a_missing_run_directory_is_named(tmp_path, capsys):
    assert sample_cli.main(["--ckpt", str(tmp_path / "runs" / "digit" / "gpt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_sample_grid_lays_out_images_as_make_grid_does():
    from torchvision.utils import make_grid

    from argen.cli.sample_outputs import sample_grid

    images = np.random.default_rng(0).integers(0, 255, (23, 8, 6, 3), dtype=np.uint8)
    reference = make_grid(torch.from_numpy(images).permute(0, 3, 1, 2), nrow=4, padding=1)
    assert np.array_equal(sample_grid(images, 4), reference.permute(1, 2, 0).numpy())
    clips = np.random.default_rng(1).integers(0, 255, (12, 3, 4, 4, 3), dtype=np.uint8)
    reference = make_grid(torch.from_numpy(clips[:10].reshape(-1, 4, 4, 3)).permute(0, 3, 1, 2), nrow=3)
    assert np.array_equal(sample_grid(clips, 5), reference.permute(1, 2, 0).numpy())  # a row per clip


def test_a_tokenizer_other_than_the_runs_is_refused_unless_allowed(trained, tmp_path, capsys):
    from argen import tokenizers
    from argen.checkpoint import save_model

    out = tmp_path / "samples"
    same = ["--tokenizer", str(trained["vq"] / "model"), "--num-samples", "2", "--out", str(out)]
    assert sample_cli.main(["--ckpt", str(trained["gpt"]), *same]) == 0  # the weights it was trained with
    other = tokenizers.load(trained["vq"] / "model")
    with torch.no_grad():
        other.quantize.embedding.weight.add_(0.5)  # same shapes, other codes: a retrained tokenizer
    save_model(other, tmp_path / "other")
    args = ["--ckpt", str(trained["gpt"]), "--tokenizer", str(tmp_path / "other"), "--num-samples", "2"]
    assert sample_cli.main([*args, "--out", str(tmp_path / "refused")]) == 2
    assert "has other weights than the tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "refused" / "samples.npz").exists()
    assert sample_cli.main([*args, "--out", str(tmp_path / "allowed"), "--allow-other-tokenizer"]) == 0


def test_ctrl_c_in_sampling_says_what_is_kept(trained, tmp_path):
    import signal
    import time

    from tests.test_train import interruptible

    out = tmp_path / "samples"
    command = [sys.executable, "sample.py", "--ckpt", str(trained["gpt"]), "--out", str(out)]
    command += ["--num-samples", "200000", "--batch-size", "2"]
    process = interruptible(command)
    deadline = time.monotonic() + 300
    while not list((out / ".parts").glob("part-*.npz")) and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, err = process.communicate(timeout=300)  # generous: a loaded machine can be very slow
    assert process.returncode == 130, err
    assert "Traceback" not in err and "finished parts are kept" in stdout + err


def test_a_second_sampling_into_a_folder_in_use_is_refused(trained, tmp_path, capsys):
    import fcntl

    out = tmp_path / "samples"
    args = ["--ckpt", str(trained["gpt"]), "--num-samples", "2", "--out", str(out)]
    with open(tmp_path / ".samples.lock", "w") as lock:  # what a running sampling into `out` holds
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert sample_cli.main(args) == 2
        assert "in use by another sampling run" in capsys.readouterr().err
        assert not (out / "samples.npz").exists()
    assert sample_cli.main(args) == 0  # released: it runs
