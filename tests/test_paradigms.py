"""The paradigm registry: every layout and generator resolves to exactly one paradigm, mismatches
are refused, and the shared mechanisms (guidance, directory swap) behave as documented."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from argen import models, paradigms
from argen.checkpoint import CheckpointError, atomic_directory, replace_directory, save_model
from argen.cli.sample_args import parse_args
from argen.models import (
    ContinuousLlama,
    ContinuousLlamaConfig,
    ContinuousNextScaleConfig,
    ContinuousNextScaleLlama,
    FineLabelConfig,
    FineLabelTransformer,
    Llama,
    LlamaConfig,
    NextFrameLlama,
    NextScaleConfig,
    NextScaleLlama,
)
from argen.models.control import ControlledConfig, ControlledLlama
from argen.models.distilled import (
    DistilledConfig,
    DistilledLlama,
    DistilledNextScale,
    DistilledNextScaleConfig,
)
from argen.models.heads import FlowHead, FlowHeadConfig
from argen.paradigms.raster import RasterIds
from argen.sampling import guide
from argen.sampling.flow import flow_velocity
from argen.tokenizers.layout import (
    ByteLayout,
    CoarseToFineLayout,
    ContinuousLayout,
    GridLayout,
    ScaleLayout,
    VideoLayout,
)

TINY = dict(dim=16, n_layer=1, n_head=2, num_classes=3)
CASES = [  # (layout, generator, paradigm name)
    (GridLayout(2, 2, 8), Llama(LlamaConfig(vocab_size=8, grid_size=(2, 2), **TINY)), "raster"),
    (
        ByteLayout(6, 259, 256, 258),
        Llama(LlamaConfig(vocab_size=259, grid_size=(1, 6), rope="1d", **TINY)),
        "byte_stream",
    ),
    (
        ScaleLayout((1, 2), 8),
        NextScaleLlama(
            NextScaleConfig(vocab_size=8, grid_size=(2, 2), patch_nums=(1, 2), token_dim=4, **TINY)
        ),
        "next_scale",
    ),
    (
        CoarseToFineLayout(2, 2, 4, 8),
        Llama(LlamaConfig(vocab_size=4, grid_size=(2, 2), **TINY)),
        "coarse_labels",
    ),
    (
        CoarseToFineLayout(2, 2, 4, 8),
        FineLabelTransformer(FineLabelConfig(vocab_size=4, grid_size=(2, 2), fine_vocab_size=8, **TINY)),
        "fine_labels",
    ),
    (
        ContinuousLayout(2, 2, 4),
        ContinuousLlama(
            ContinuousLlamaConfig(grid_size=(2, 2), token_dim=4, head=FlowHeadConfig(width=8), **TINY)
        ),
        "continuous_raster",
    ),
    (
        ContinuousLayout(2, 2, 4, (1, 2)),
        ContinuousNextScaleLlama(
            ContinuousNextScaleConfig(
                grid_size=(2, 2),
                patch_nums=(1, 2),
                token_dim=4,
                head=FlowHeadConfig(width=8, heads=2),
                **TINY,
            )
        ),
        "continuous_scales",
    ),
    (
        VideoLayout(2, 2, 2, 8),
        Llama(LlamaConfig(vocab_size=8, grid_size=(2, 2), frames=2, rope="3d", **TINY)),
        "video_tokens",
    ),
    (
        VideoLayout(2, 2, 2, 8),
        NextFrameLlama(LlamaConfig(vocab_size=8, grid_size=(2, 2), frames=2, rope="3d", **TINY)),
        "next_frame",
    ),
    (
        GridLayout(2, 2, 8),
        DistilledLlama(DistilledConfig(vocab_size=8, grid_size=(2, 2), noise_dim=4, **TINY)),
        "distilled_raster",
    ),
    (
        ScaleLayout((1, 2), 8),
        DistilledNextScale(
            DistilledNextScaleConfig(vocab_size=8, grid_size=(2, 2), patch_nums=(1, 2), token_dim=4, **TINY)
        ),
        "distilled_scales",
    ),
    (
        GridLayout(2, 2, 8),
        ControlledLlama(ControlledConfig(vocab_size=8, grid_size=(2, 2), control_resolution=8, **TINY)),
        "controlled_raster",
    ),
]


@pytest.mark.parametrize("layout, model, name", CASES, ids=[c[2] for c in CASES])
def test_every_generator_resolves_to_its_paradigm(layout, model, name):
    assert paradigms.for_generator(model, layout).name == name


def test_each_paradigm_is_registered_once_and_samples():
    built_in = [paradigms.get(name) for name in paradigms.BUILT_IN]
    assert len(set(paradigms.BUILT_IN)) == len(built_in) == len(CASES)
    assert {name for _, _, name in CASES} == set(paradigms.BUILT_IN)
    for paradigm in built_in:  # the base class has no sampler of its own
        assert type(paradigm).sample is not paradigms.Paradigm.sample, paradigm.name


def test_mismatched_pairs_are_refused():
    grid_model = CASES[0][1]
    with pytest.raises(CheckpointError, match="do not fit"):
        paradigms.for_generator(grid_model, ContinuousLayout(2, 2, 4))  # ids model, continuous tokens
    with pytest.raises(CheckpointError, match="does not match generator"):
        paradigms.for_generator(grid_model, GridLayout(4, 4, 8))  # same vocabulary, other grid
    scale_model = CASES[2][1]
    with pytest.raises(CheckpointError, match="same scales"):
        paradigms.for_generator(scale_model, ScaleLayout((1, 2, 2), 8))


def recipe(**kw):
    fields = dict(task="generator", paradigm=None, tokenizer="tok")
    return SimpleNamespace(**fields | kw)


def resolved(recipe, layout) -> str:
    """The paradigm a recipe trains on ``layout`` (checked to serve it, as the task does)."""
    paradigm = paradigms.for_recipe(recipe, layout)
    paradigm.require_serves(layout, recipe.tokenizer)
    return paradigm.name


def test_recipes_resolve_by_name_or_by_their_tasks_default():
    assert resolved(recipe(), GridLayout(2, 2, 8)) == "raster"
    assert resolved(recipe(), VideoLayout(2, 2, 2, 8)) == "video_tokens"
    assert resolved(recipe(paradigm="next_frame"), VideoLayout(2, 2, 2, 8)) == "next_frame"
    assert resolved(recipe(task="refiner"), CoarseToFineLayout(2, 2, 4, 8)) == "fine_labels"
    assert resolved(recipe(), ContinuousLayout(2, 2, 4)) == "continuous_raster"
    assert resolved(recipe(paradigm="continuous_scales"), ContinuousLayout(2, 2, 4, (1, 2))) == (
        "continuous_scales"
    )
    with pytest.raises(ValueError, match="next_frame is for video tokenizers"):
        resolved(recipe(paradigm="next_frame"), GridLayout(2, 2, 8))
    with pytest.raises(ValueError, match="coarse-to-fine tokenizer"):
        resolved(recipe(task="refiner"), GridLayout(2, 2, 8))
    with pytest.raises(ValueError, match="trained by task: refiner"):
        resolved(recipe(paradigm="fine_labels"), CoarseToFineLayout(2, 2, 4, 8))
    with pytest.raises(ValueError, match="'columns' .*is not registered.*--plugin"):
        resolved(recipe(paradigm="columns"), GridLayout(2, 2, 8))
    assert resolved(recipe(task="distill"), ScaleLayout((1, 2), 8)) == "distilled_scales"
    assert resolved(recipe(task="control"), GridLayout(2, 2, 8)) == "controlled_raster"
    with pytest.raises(ValueError, match="spatial control needs a raster generator"):
        resolved(recipe(task="control"), ScaleLayout((1, 2), 8))
    with pytest.raises(ValueError, match="distillation needs"):
        resolved(recipe(task="distill"), ContinuousLayout(2, 2, 4))


def test_a_taken_name_or_a_second_default_is_refused_at_registration():
    with pytest.raises(ValueError, match="name 'raster' is taken"):
        paradigms.register_paradigm(type("Raster2", (RasterIds,), {"default": False})())
    with pytest.raises(ValueError, match="both claim to be the default generator paradigm for GridLayout"):
        paradigms.register_paradigm(type("Columns", (RasterIds,), {"name": "columns", "default": True})())
    with pytest.raises(ValueError, match="must be an identifier"):
        paradigms.register_paradigm(type("Spaced", (RasterIds,), {"name": "raster ids", "default": False})())
    assert "columns" not in paradigms.registered()  # nothing was half-registered
    columns = paradigms.register_paradigm(
        type("Columns", (RasterIds,), {"name": "columns", "default": False})()
    )
    try:
        assert paradigms.get("columns") is columns
        assert resolved(recipe(), GridLayout(2, 2, 8)) == "raster"  # the default does not move
    finally:
        paradigms.unregister_paradigm("columns")


def test_a_recorded_paradigm_is_used_and_a_missing_one_named(tmp_path):
    layout, model = CASES[0][0], CASES[0][1]
    save_model(model, tmp_path / "m", records={paradigms.PARADIGM_KEY: "controlled_raster"})
    with pytest.raises(CheckpointError, match="'controlled_raster'.*do not fit"):
        paradigms.for_generator(model, layout, tmp_path / "m")  # recorded, not inferred from the class
    save_model(model, tmp_path / "m", records={paradigms.PARADIGM_KEY: "columns"})
    with pytest.raises(ValueError, match=r"'columns' \(recorded in .*config.json\) is not registered"):
        paradigms.for_generator(model, layout, tmp_path / "m")
    save_model(model, tmp_path / "m")  # saved before paradigms were recorded: inferred
    assert paradigms.for_generator(model, layout, tmp_path / "m").name == "raster"
    assert isinstance(models.load(tmp_path / "m"), Llama)  # records never reach the model's config


def test_sample_options_are_offered_only_by_their_paradigms():
    raster = paradigms.for_generator(CASES[0][1], CASES[0][0])
    options = paradigms.sample_options()

    def refused(flags: list[str]) -> None:
        paradigms.refuse_unoffered(raster, parse_args(["--ckpt", "run", *flags]), options)

    with pytest.raises(ValueError, match="--edit needs a next-scale .* or masked generator, not raster"):
        refused(["--edit", "a.png", "--mask", "m.png"])
    with pytest.raises(ValueError, match="--refiner needs a coarse-to-fine"):
        refused(["--refiner", "run"])
    with pytest.raises(ValueError, match="--steps is for distilled students"):
        refused(["--steps", "1"])
    with pytest.raises(ValueError, match="--edit and --mask go together"):
        refused(["--mask", "m.png"])
    refused(["--speculative", "draft"])  # raster offers speculative decoding
    offered = {p.name: {type(o).__name__ for o in p.sample_options} for p in paradigms.registered().values()}
    assert offered["coarse_labels"] == {"Refiner"} and offered["next_scale"] == {"Edit"}
    assert offered["byte_stream"] == {"Speculative", "Constrained"}
    coarse = paradigms.for_generator(CASES[3][1], CASES[3][0])
    with pytest.raises(ValueError, match="pass --refiner"):
        coarse.check_extras(paradigms.SamplingExtras())


def test_velocity_guidance_is_the_shared_combination():
    torch.manual_seed(0)
    head = FlowHead(FlowHeadConfig(width=8), token_dim=3, cond_dim=5)
    for p in head.parameters():  # the output layers start at zero: give them weights
        torch.nn.init.normal_(p, std=0.3)
    z, x = torch.randn(4, 2, 5), torch.randn(2, 2, 3)  # [cond; uncond] rows for 2 samples
    stacked = head(torch.cat([x, x]), torch.full((4, 2), 0.5), z)
    guided = flow_velocity(head, z, True, 2.5, (0.2, 0.8))
    torch.testing.assert_close(guided(x, 0.5), guide(stacked, 2.5))
    outside = head(torch.cat([x, x]), torch.full((4, 2), 0.9), z)[:2]  # the conditional rows alone
    torch.testing.assert_close(guided(x, 0.9), outside)


def test_directory_swap_replaces_and_keeps_the_old_copy_on_failure(tmp_path):
    target = tmp_path / "out"
    atomic_directory(target, lambda d: (d / "a.txt").write_text("old"))

    def crash(d):
        (d / "a.txt").write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_directory(target, crash)
    assert (target / "a.txt").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    new = tmp_path / "new"
    new.mkdir()
    (new / "b.txt").write_text("new")
    replace_directory(new, target)
    assert [p.name for p in target.iterdir()] == ["b.txt"] and sorted(p.name for p in tmp_path.iterdir()) == [
        "out"
    ]


class SeesEverything(Llama):
    """A generator defined outside argen's models (a masked paradigm's, say)."""

    def visible(self, length: int, device: torch.device) -> torch.Tensor:
        return torch.ones(length, length, dtype=torch.bool, device=device)


def test_a_registered_generator_class_saves_and_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "MODELS", dict(models.MODELS))
    model = SeesEverything(LlamaConfig(vocab_size=8, grid_size=(2, 2), **TINY))
    save_model(model, tmp_path / "m")
    with pytest.raises(CheckpointError, match="holds a 'SeesEverything'"):
        models.load(tmp_path / "m")  # not registered yet
    models.register_generator(SeesEverything)
    loaded = models.load(tmp_path / "m")
    assert type(loaded) is SeesEverything
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())
    with pytest.raises(ValueError, match="named SeesEverything is already registered"):
        models.register_generator(type("SeesEverything", (Llama,), {}))
