"""The paradigm registry: every layout and generator resolves to exactly one paradigm, mismatches
are refused, and the shared mechanisms (guidance, directory swap) behave as documented."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from argen import paradigms
from argen.checkpoint import CheckpointError, atomic_directory, replace_directory
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
    (GridLayout(2, 2, 8), Llama(LlamaConfig(vocab_size=8, grid_size=(2, 2), **TINY)), "raster ids"),
    (
        ByteLayout(6, 259, 256, 258),
        Llama(LlamaConfig(vocab_size=259, grid_size=(1, 6), rope="1d", **TINY)),
        "byte streams",
    ),
    (
        ScaleLayout((1, 2), 8),
        NextScaleLlama(
            NextScaleConfig(vocab_size=8, grid_size=(2, 2), patch_nums=(1, 2), token_dim=4, **TINY)
        ),
        "next-scale ids",
    ),
    (
        CoarseToFineLayout(2, 2, 4, 8),
        Llama(LlamaConfig(vocab_size=4, grid_size=(2, 2), **TINY)),
        "coarse-to-fine labels",
    ),
    (
        CoarseToFineLayout(2, 2, 4, 8),
        FineLabelTransformer(FineLabelConfig(vocab_size=4, grid_size=(2, 2), fine_vocab_size=8, **TINY)),
        "fine labels (refiner)",
    ),
    (
        ContinuousLayout(2, 2, 4),
        ContinuousLlama(
            ContinuousLlamaConfig(grid_size=(2, 2), token_dim=4, head=FlowHeadConfig(width=8), **TINY)
        ),
        "continuous raster tokens",
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
        "continuous scales",
    ),
    (
        VideoLayout(2, 2, 2, 8),
        Llama(LlamaConfig(vocab_size=8, grid_size=(2, 2), frames=2, rope="3d", **TINY)),
        "video tokens",
    ),
    (
        VideoLayout(2, 2, 2, 8),
        NextFrameLlama(LlamaConfig(vocab_size=8, grid_size=(2, 2), frames=2, rope="3d", **TINY)),
        "next-frame video tokens",
    ),
    (
        GridLayout(2, 2, 8),
        DistilledLlama(DistilledConfig(vocab_size=8, grid_size=(2, 2), noise_dim=4, **TINY)),
        "distilled raster ids",
    ),
    (
        ScaleLayout((1, 2), 8),
        DistilledNextScale(
            DistilledNextScaleConfig(vocab_size=8, grid_size=(2, 2), patch_nums=(1, 2), token_dim=4, **TINY)
        ),
        "distilled next-scale ids",
    ),
    (
        GridLayout(2, 2, 8),
        ControlledLlama(ControlledConfig(vocab_size=8, grid_size=(2, 2), control_resolution=8, **TINY)),
        "controlled raster ids",
    ),
]


@pytest.mark.parametrize("layout, model, name", CASES, ids=[c[2] for c in CASES])
def test_every_generator_resolves_to_its_paradigm(layout, model, name):
    assert paradigms.for_generator(model, layout).name == name


def test_each_paradigm_is_registered_once_and_samples():
    names = [p.name for p in paradigms.PARADIGMS]
    assert len(set(names)) == len(names) == len(CASES)
    for paradigm in paradigms.PARADIGMS:  # the base class has no sampler of its own
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
    fields = dict(task="generator", next_frame=False, tokenizer="tok")
    return SimpleNamespace(**fields | kw)


def test_recipes_resolve_by_layout_and_variant():
    assert paradigms.for_recipe(recipe(), GridLayout(2, 2, 8)).name == "raster ids"
    assert paradigms.for_recipe(recipe(), VideoLayout(2, 2, 2, 8)).name == "video tokens"
    assert (
        paradigms.for_recipe(recipe(next_frame=True), VideoLayout(2, 2, 2, 8)).name
        == "next-frame video tokens"
    )
    assert (
        paradigms.for_recipe(recipe(task="refiner"), CoarseToFineLayout(2, 2, 4, 8)).name
        == "fine labels (refiner)"
    )
    with pytest.raises(ValueError, match="next_frame is for video tokenizers"):
        paradigms.for_recipe(recipe(next_frame=True), GridLayout(2, 2, 8))
    with pytest.raises(ValueError, match="coarse-to-fine tokenizer"):
        paradigms.for_recipe(recipe(task="refiner"), GridLayout(2, 2, 8))
    assert (
        paradigms.for_recipe(recipe(task="distill"), ScaleLayout((1, 2), 8)).name
        == "distilled next-scale ids"
    )
    assert paradigms.for_recipe(recipe(task="control"), GridLayout(2, 2, 8)).name == "controlled raster ids"
    with pytest.raises(ValueError, match="spatial control needs a raster generator"):
        paradigms.for_recipe(recipe(task="control"), ScaleLayout((1, 2), 8))
    with pytest.raises(ValueError, match="distillation needs"):
        paradigms.for_recipe(recipe(task="distill"), ContinuousLayout(2, 2, 4))


def test_sample_options_are_offered_only_by_their_paradigms():
    raster = paradigms.for_generator(CASES[0][1], CASES[0][0])
    with pytest.raises(ValueError, match="--edit needs a next-scale"):
        raster.edit_source(None, "a.png", "m.png", torch.device("cpu"))
    with pytest.raises(ValueError, match="--refiner needs a coarse-to-fine"):
        raster.refinement(None, None, None, 1.0, False)
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
