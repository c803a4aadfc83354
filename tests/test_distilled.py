"""Distilled Decoding: the noise-to-token flow, the teacher's deterministic sampler, students
that start as their teachers, and the pipeline through train.py and sample.py."""

import json
import shutil

import numpy as np
import pytest
import torch

from argen import models, tokenizers
from argen.checkpoint import weights_of
from argen.cli import sample as sample_cli
from argen.models.distilled import TeacherSampling
from argen.models.llama import Llama, LlamaConfig
from argen.models.next_scale import split_scales
from argen.paradigms.base import SamplingExtras
from argen.paradigms.distilled import DistilledRaster, DistilledScales, StudentPlan
from argen.sampling import SamplingConfig
from argen.sampling.logits import RandomTokens
from argen.sampling.next_token import NextTokenOptions, sample_next_token
from argen.sampling.token_flow import NoiseTokens, noise_to_token, standardised_codes
from argen.text import TextFeatures
from argen.tokenizers import VQConfig, VQModel
from argen.training.recipes import recipe_from_dict
from argen.training.teacher_pairs import PairDataset, PairPlan, draw_pairs, prepare_pairs
from argen.training.trainer import train
from tests.conftest import TRAIN, gpt_recipe, vq_recipe
from tests.test_next_scale import tiny_generator, tiny_tokenizer


def total_variation(ids: torch.Tensor, probs: torch.Tensor) -> float:
    counts = torch.bincount(ids, minlength=len(probs)).double() / len(ids)
    return 0.5 * (counts - probs.double()).abs().sum().item()


def test_noise_to_token_follows_the_distribution_and_is_deterministic():
    g = torch.Generator().manual_seed(0)
    codes = standardised_codes(torch.randn(8, 8, generator=g))  # (V, d)
    probs = torch.tensor([0.3, 0.2, 0.15, 0.12, 0.1, 0.08, 0.05, 0.0])
    noise = torch.randn(10_000, 8, generator=g)
    ids = noise_to_token(probs.expand(10_000, -1), codes, noise)
    # sampling noise alone gives about 0.01 at 1e4 draws; a map that ignored p or the noise fails
    assert total_variation(ids, probs) < 0.03
    assert (ids != 7).all()  # a code of probability 0 is never reached
    assert torch.equal(ids, noise_to_token(probs.expand(10_000, -1), codes, noise))
    one_hot = torch.zeros(8).index_fill_(0, torch.tensor([2]), 1.0)
    assert (noise_to_token(one_hot.expand(100, -1), codes, noise[:100]) == 2).all()
    with pytest.raises(ValueError, match="steps"):
        noise_to_token(probs[None], codes, noise[:1], steps=0)


def tiny_raster_teacher() -> Llama:
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=32, grid_size=(3, 3), num_classes=4, dim=32, n_layer=2, n_head=2))
    torch.nn.init.normal_(model.output.weight, std=0.5)  # not the zero init: distinct distributions
    return model.eval()


def tiny_vq() -> VQModel:
    torch.manual_seed(0)
    shape = dict(resolution=12, base_channels=8, channel_mult=(1, 1, 2), num_res_blocks=1, z_channels=8)
    return VQModel(VQConfig(**shape, norm_groups=4, codebook_size=32, codebook_dim=4)).eval()


def test_teacher_sampler_is_a_function_of_the_noise():
    teacher, vq, labels = tiny_raster_teacher(), tiny_vq(), torch.tensor([0, 1, 2, 3])
    config = SamplingConfig(cfg_scale=2.0)
    paradigm = DistilledRaster()
    noise = torch.randn(4, 9, 4, generator=torch.Generator().manual_seed(0))
    first = paradigm.teacher_tokens(teacher, vq, labels, noise, config, 16)
    assert first.shape == (4, 9)
    assert torch.equal(first, paradigm.teacher_tokens(teacher, vq, labels, noise, config, 16))
    assert not torch.equal(first, paradigm.teacher_tokens(teacher, vq, labels, noise.flip(0), config, 16))
    # the deterministic draw and the usual one see the same guided distributions: with one
    # likely token per position (temperature near 0) both give the same ids
    cold = SamplingConfig(cfg_scale=2.0, temperature=1e-4)
    greedy = sample_next_token(teacher, labels, SamplingConfig(cfg_scale=2.0, temperature=0))
    assert torch.equal(paradigm.teacher_tokens(teacher, vq, labels, noise, cold, 16), greedy)


def test_next_scale_teacher_picks_per_scale_codebooks():
    teacher, msvq = tiny_generator(), tiny_tokenizer()
    torch.nn.init.normal_(teacher.output.weight, std=0.5)
    paradigm = DistilledScales()
    assert paradigm.scale_of(teacher).tolist() == [0] + [1] * 4 + [2] * 9 + [3] * 16
    noise = torch.randn(2, 30, 4, generator=torch.Generator().manual_seed(1))
    config = SamplingConfig(cfg_scale=1.5)
    tokens = paradigm.teacher_tokens(teacher, msvq, torch.tensor([0, 3]), noise, config, 8)
    assert tokens.shape == (2, 30)
    assert torch.equal(tokens, paradigm.teacher_tokens(teacher, msvq, torch.tensor([0, 3]), noise, config, 8))
    pick = paradigm.teacher_pick(teacher, msvq, noise, config, 8)
    assert isinstance(pick, NoiseTokens) and pick.codes.shape == (4, 32, 4)


def test_students_start_as_their_teachers():
    teacher, vq = tiny_raster_teacher(), tiny_vq()
    student = DistilledRaster().build_student(teacher, vq, (1, 2), 0.5)
    tokens, labels = torch.randint(32, (2, 9)), torch.tensor([1, 2])
    noise = torch.randn(2, 9, 4)
    with torch.no_grad():  # every token known: the teacher's next-token logits exactly
        assert torch.allclose(student(tokens, noise, 9, labels), teacher(tokens, labels), atol=1e-5)
    assert student.config.second_step_from == 4 and student.config.class_dropout == 0
    ns_teacher, msvq = tiny_generator(), tiny_tokenizer()
    ns_student = DistilledScales().build_student(ns_teacher, msvq, (1, 2), 0.5)
    assert ns_student.config.second_step_from == 14  # the scale boundary nearest 15 of 30
    ids = torch.randint(32, (2, 30))
    inputs = msvq.teacher_inputs(split_scales(ids, (1, 2, 3, 4)))
    with torch.no_grad():
        expected = ns_teacher(inputs, labels)
        assert torch.allclose(ns_student(inputs, torch.randn(2, 30, 4), 30, labels), expected, atol=1e-5)
        noise = torch.randn(2, 30, 4)  # nothing known: the shortcut that skips the tokenizer agrees
        shortcut = DistilledScales().student_logits(ns_student, msvq, ids, noise, 0, labels)
        assert torch.allclose(shortcut, ns_student(inputs, noise, 0, labels), atol=1e-6)
    with pytest.raises(ValueError, match="class-conditional or text-conditional Llama, not a NextScaleLlama"):
        DistilledRaster().build_student(ns_teacher, vq, (1,), 0.5)
    with pytest.raises(ValueError, match="subset"):
        DistilledRaster().build_student(teacher, vq, (3,), 0.5)


def test_student_reads_the_noise_only_where_tokens_are_unknown():
    teacher, vq = tiny_raster_teacher(), tiny_vq()
    student = DistilledRaster().build_student(teacher, vq, (1, 2), 0.5)
    torch.nn.init.normal_(student.noise_reader.proj.weight)
    tokens, labels, noise = torch.randint(32, (1, 9)), torch.tensor([0]), torch.randn(1, 9, 4)
    changed = noise.clone()
    changed[:, :4] += 1  # noise of the known positions
    with torch.no_grad():
        assert torch.equal(student(tokens, noise, 4, labels), student(tokens, changed, 4, labels))
        other = tokens.clone()
        other[:, 5:] = (other[:, 5:] + 1) % 32  # tokens after the known ones are never read
        assert torch.equal(student(tokens, noise, 4, labels), student(other, noise, 4, labels))
        assert not torch.equal(student(tokens, noise, 4, labels), student(tokens, noise, 3, labels))


def distill_recipe(out, teacher, **kw) -> dict:
    return (
        dict(
            task="distill",
            output_dir=str(out),
            teacher=str(teacher),
            num_pairs=96,
            flow_steps=4,
            data=dict(batch_size=16),
            train={**TRAIN, "max_steps": 4, "save_every": 2},
        )
        | kw
    )


def test_distill_pipeline_through_train_and_sample(trained, tmp_path):
    run = train(recipe_from_dict(distill_recipe(tmp_path / "dd", trained["gpt"])))
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["_class_name"] == "DistilledLlama" and config["sampling_steps"] == [1, 2]
    pairs = sorted(p.name for p in (run / "pairs").iterdir())
    assert pairs == ["meta.json", "pairs-000000.safetensors"]
    for steps in ("1", "2"):
        out = tmp_path / f"s{steps}"
        assert (
            sample_cli.main(["--ckpt", str(run), "--num-samples", "6", "--steps", steps, "--out", str(out)])
            == 0
        )
        assert np.load(out / "samples.npz")["arr_0"].shape == (6, 8, 8, 3)
    again = tmp_path / "s1_again"
    assert (
        sample_cli.main(["--ckpt", str(run), "--num-samples", "6", "--steps", "1", "--out", str(again)]) == 0
    )
    one, two, repeated = (
        np.load(d / "samples.npz")["arr_0"] for d in (tmp_path / "s1", tmp_path / "s2", again)
    )
    assert np.array_equal(one, repeated)  # the same command draws the same samples
    assert not np.array_equal(one, two)  # the second pass changes the later tokens
    span = tmp_path / "span"
    args = ["--ckpt", str(run), "--num-samples", "6", "--steps", "2", "--teacher-span", "2"]
    assert sample_cli.main([*args, "--teacher", str(trained["gpt"]), "--out", str(span)]) == 0
    assert json.loads((span / "metrics.json").read_text())["teacher_span"] == 2


def tiny_student(steps=(1, 2)):
    teacher, vq = tiny_raster_teacher(), tiny_vq()
    sampling = TeacherSampling(cfg_scale=2.0, flow_steps=4)
    student = DistilledRaster().build_student(teacher, vq, steps, 0.5, sampling).eval()
    torch.manual_seed(1)
    torch.nn.init.normal_(student.noise_reader.proj.weight)  # a student that reads its noise
    return teacher, vq, student


def test_students_sample_the_deterministic_map_by_default():
    _, vq, student = tiny_student()
    paradigm, labels = DistilledRaster(), torch.tensor([0, 1, 2, 3] * 4)
    noise = torch.randn(16, 9, 4, generator=torch.Generator().manual_seed(5))
    plan = StudentPlan()
    maps = [
        paradigm.from_noise(
            student, vq, labels, noise, 2, RandomTokens(SamplingConfig(temperature=0), g), plan
        )
        for g in (torch.Generator().manual_seed(1), torch.Generator().manual_seed(2))
    ]
    assert torch.equal(*maps)  # a function of the noise, whatever the sampling RNG
    draws = [
        paradigm.from_noise(student, vq, labels, noise, 2, RandomTokens(SamplingConfig(), g), plan)
        for g in (torch.Generator().manual_seed(1), torch.Generator().manual_seed(2))
    ]
    assert not torch.equal(*draws)  # --student-draw sample depends on it
    sampled = paradigm.sample(
        student, vq, labels, SamplingConfig(), torch.Generator().manual_seed(5), SamplingExtras(steps=2)
    )
    assert torch.equal(sampled.flatten(1), maps[0])  # the default is the map of the same noise


def test_teacher_span_redraws_the_tokens_before_the_split_with_the_teachers_sampler():
    teacher, vq, student = tiny_student((2,))
    paradigm, labels = DistilledRaster(), torch.tensor([0, 1, 2, 3])
    noise = torch.randn(4, 9, 4, generator=torch.Generator().manual_seed(5))
    cut = student.config.second_step_from  # 4 of 9
    first = paradigm.from_noise(
        student, vq, labels, noise, 1, RandomTokens(SamplingConfig(temperature=0)), StudentPlan()
    )
    whole = StudentPlan(teacher=teacher, teacher_span=cut)
    redrawn = paradigm.teacher_span(whole, student, vq, labels, first, noise)
    teachers = paradigm.teacher_tokens(teacher, vq, labels, noise, SamplingConfig(cfg_scale=2.0), 4)
    assert torch.equal(redrawn[:, :cut], teachers[:, :cut])  # the teacher's own map of the noise
    assert torch.equal(redrawn[:, cut:], first[:, cut:])  # the rest is left to the second pass
    assert not torch.equal(first[:, :cut], teachers[:, :cut])
    part = paradigm.teacher_span(
        StudentPlan(teacher=teacher, teacher_span=1), student, vq, labels, first, noise
    )
    assert torch.equal(part[:, : cut - 1], first[:, : cut - 1])  # kept from the first pass
    given = NextTokenOptions(
        given=first[:, : cut - 1],
        pick=paradigm.teacher_pick(teacher, vq, noise, SamplingConfig(cfg_scale=2.0), 4),
    )
    assert torch.equal(
        part[:, cut - 1],
        sample_next_token(teacher, labels, SamplingConfig(cfg_scale=2.0), None, given)[:, cut - 1],
    )


def test_text_teacher_pairs_use_its_prompts_and_the_student_samples_prompts(trained_t2i, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a handwritten digit one\na handwritten digit seven\n")
    run = train(recipe_from_dict(distill_recipe(tmp_path / "dd", trained_t2i, prompts_file=str(prompts))))
    features = TextFeatures(run / "text_features")
    assert features.meta["captions"] == ["a handwritten digit one", "a handwritten digit seven"]
    pairs = PairDataset(run / "pairs", 1)
    assert set(pairs.conditions.tolist()) == {0, 1}
    # each pair's tokens are the teacher's for that pair's prompt and noise
    teacher = models.load(weights_of(trained_t2i, None))
    tokenizer = tokenizers.load(trained_t2i / "tokenizer")
    ids = pairs.conditions[:6]
    redrawn = DistilledRaster().teacher_tokens(
        teacher.eval(), tokenizer, features[ids], pairs.noise[:6], SamplingConfig(cfg_scale=2.0), 4
    )
    assert torch.equal(redrawn, pairs.tokens[:6])
    out = tmp_path / "s"
    args = ["--ckpt", str(run), "--prompt", "a handwritten digit seven", "--num-samples", "3", "--steps", "1"]
    assert sample_cli.main([*args, "--out", str(out)]) == 0
    assert np.load(out / "samples.npz")["arr_0"].shape == (3, 8, 8, 3)


def test_text_teacher_defaults_to_the_captions_it_was_trained_on(trained_t2i, tmp_path):
    recipe = distill_recipe(tmp_path / "dd", trained_t2i, num_pairs=16)
    recipe["train"]["max_steps"] = 1
    run = train(recipe_from_dict(recipe))
    trained_on = TextFeatures(trained_t2i.parent / "text_features").meta["captions"]
    assert TextFeatures(run / "text_features").meta["captions"] == trained_on
    assert json.loads((run / "pairs" / "meta.json").read_text())["plan"]["num_conditions"] == len(trained_on)
    moved = tmp_path / "moved_teacher"
    shutil.copytree(trained_t2i, moved)
    teacher_recipe = json.loads((moved / "recipe.json").read_text())
    teacher_recipe["data"]["text_cache"] = str(tmp_path / "gone")
    (moved / "recipe.json").write_text(json.dumps(teacher_recipe))
    with pytest.raises(FileNotFoundError, match="set prompts_file"):
        train(recipe_from_dict(distill_recipe(tmp_path / "dd2", moved, num_pairs=16)))


def test_pairs_resume_and_refuse_another_teacher(trained, tmp_path):
    pairs = tmp_path / "pairs"
    first = distill_recipe(tmp_path / "a", trained["gpt"], pairs_dir=str(pairs), num_pairs=1500)
    first["train"]["max_steps"] = 1
    train(recipe_from_dict(first))
    shard = pairs / "pairs-000001.safetensors"
    before = shard.read_bytes()
    shard.unlink()  # an interrupted run: the missing shard is drawn again, identically
    second = dict(first, output_dir=str(tmp_path / "b"))
    train(recipe_from_dict(second))
    assert shard.read_bytes() == before
    other = dict(second, output_dir=str(tmp_path / "c"), cfg_scale=3.0)
    with pytest.raises(ValueError, match="another teacher or other settings"):
        train(recipe_from_dict(other))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--steps", "3"], "trained for 1, 2"),
        (["--cfg-scale", "2"], "without --cfg-scale"),
        (["--temperature", "0.5"], "shape --student-draw sample"),
        (["--teacher-span", "2"], "go together"),
        (["--steps", "1", "--teacher-span", "2", "--teacher", "x"], "needs --steps 2"),
    ],
)
def test_distilled_sampling_bad_input(trained, tmp_path, capsys, args, message):
    run = train(recipe_from_dict(distill_recipe(tmp_path / "dd", trained["gpt"])))
    assert sample_cli.main(["--ckpt", str(run), *args, "--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err


def test_steps_are_refused_for_other_generators(trained, tmp_path, capsys):
    assert sample_cli.main(["--ckpt", str(trained["gpt"]), "--steps", "1", "--out", str(tmp_path / "x")]) == 2
    assert "--steps is for distilled students" in capsys.readouterr().err


def test_next_scale_distillation_through_train_and_sample(tmp_path):
    recipe = vq_recipe(tmp_path / "msvq")
    recipe["tokenizer"] = "multiscale"
    recipe["model"].update(patch_nums=[1, 2, 4], phi_count=2)
    msvq = train(recipe_from_dict(recipe))
    var = train(recipe_from_dict(gpt_recipe(tmp_path / "var", msvq / "model")))
    run = train(recipe_from_dict(distill_recipe(tmp_path / "dd", var)))
    assert json.loads((run / "model" / "config.json").read_text())["second_step_from"] == 5
    out = tmp_path / "s"
    assert sample_cli.main(["--ckpt", str(run), "--num-samples", "4", "--steps", "2", "--out", str(out)]) == 0
    assert np.load(out / "samples.npz")["arr_0"].shape == (4, 8, 8, 3)


def test_pair_shards_are_the_same_whatever_the_process_count(tmp_path):
    plan = PairPlan(
        num_pairs=25, num_conditions=3, num_tokens=4, noise_dim=2, seed=1, shard_size=10, batch_size=4
    )
    teacher_map = lambda labels, noise: (noise.sum(-1) > 0).long() + 2 * labels[:, None]  # noqa: E731
    for world in (1, 2):
        directory = tmp_path / str(world)
        prepare_pairs(directory, {"plan": "p"})
        for rank in range(world):
            draw_pairs(teacher_map, plan, directory, torch.device("cpu"), rank, world)
    one, two = PairDataset(tmp_path / "1", plan.num_shards), PairDataset(tmp_path / "2", plan.num_shards)
    assert len(one) == 25 and torch.equal(one.tokens, two.tokens) and torch.equal(one.noise, two.noise)
    tokens, noise, label = one[3]
    assert (
        tokens.shape == (4,)
        and noise.shape == (4, 2)
        and torch.equal(tokens, teacher_map(torch.tensor([label]), noise[None])[0])
    )
    with pytest.raises(ValueError, match="another teacher"):
        prepare_pairs(tmp_path / "1", {"plan": "q"})


def test_distilled_decoding_benchmark_compares_teacher_and_student(trained, tmp_path, monkeypatch, capsys):
    from benchmarks import distilled_decoding

    run = train(recipe_from_dict(distill_recipe(tmp_path / "dd", trained["gpt"])))
    args = ["--runs", str(run), "--classifier", str(trained["classifier"] / "model"), "--num-samples", "4"]
    timing = ["--batch-size", "2", "--single", "2", "--repeats", "1", "--teacher-spans", "2"]
    monkeypatch.setattr("sys.argv", ["x", *args, *timing])
    distilled_decoding.main()
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(str(run))]
    expected = [("teacher", "16"), ("1-step/map", "1"), ("1-step/sample", "1"), ("2-step/map", "2")]
    assert [(r[1], r[2]) for r in rows] == [*expected, ("2-step/sample", "2"), ("2-step+2", "4")]
