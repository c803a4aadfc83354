"""The benchmark scripts' shared measurements."""

import torch

from benchmarks._common import peak_memory_mib


def test_peak_memory_counts_what_a_call_holds_at_its_peak_on_the_cpu():
    def holds_64_mib():
        block = torch.ones(16 * 2**20)  # 64 MiB of float32, written so its pages are resident
        return float(block[-1])

    assert 60 < peak_memory_mib(holds_64_mib, "cpu") < 100
    assert peak_memory_mib(lambda: torch.ones(16), "cpu") < 8


def test_gallery_controls_are_held_out_images_of_each_class_in_class_order(tmp_path):
    import json

    import numpy as np
    from PIL import Image

    from argen.data import build_dataset
    from benchmarks.gallery import write_controls

    data = {"dataset": "digits", "resolution": 16, "holdout_every": 10}
    (tmp_path / "recipe.json").write_text(json.dumps({"data": data}))
    folder = write_controls(tmp_path, tmp_path / "controls")
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == [f"{c:04d}.png" for c in range(10)]
    dataset = build_dataset("digits", 16)
    held_out = [dataset[i] for i in range(0, len(dataset), 10)]
    for label, file in enumerate(files):
        first = next(image for image, y in held_out if y == label)
        expected = ((first.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
        written = np.array(Image.open(file))
        assert np.array_equal(written.reshape(expected.shape), expected)


def test_orderings_builds_each_runs_own_sample_options_and_refuses_unknown_flags():
    from types import SimpleNamespace

    import pytest

    from argen.models.llama import Llama, LlamaConfig
    from argen.paradigms.masked import MaskedConfig, MaskedLlama, MaskSchedule
    from argen.sampling.config import SamplingConfig
    from argen.tokenizers.layout import GridLayout
    from benchmarks.orderings import checked_sample_flags, option_extras

    tokenizer = SimpleNamespace(layout=GridLayout(3, 3, 10))
    sizes = dict(vocab_size=10, grid_size=(3, 3), num_classes=3, dim=32, n_layer=1, n_head=2)
    flags = checked_sample_flags(["--mask-steps", "4", "--mask-order", "random"])
    masked = option_extras(flags, MaskedLlama(MaskedConfig(**sizes)), tokenizer, SamplingConfig(), "cpu")
    assert masked.by_option["masked"] == MaskSchedule(steps=4, order="random")
    raster = option_extras(flags, Llama(LlamaConfig(**sizes)), tokenizer, SamplingConfig(), "cpu")
    assert "masked" not in raster.by_option
    with pytest.raises(SystemExit):
        checked_sample_flags(["--mask-stepz", "4"])
    edit = checked_sample_flags(["--edit", "image.png", "--mask", "mask.png"])
    with pytest.raises(ValueError, match="read no files; use sample.py"):
        option_extras(edit, MaskedLlama(MaskedConfig(**sizes)), tokenizer, SamplingConfig(), "cpu")


def test_loss_curves_find_the_first_step_that_reaches_the_baselines_final_loss(tmp_path):
    import json

    import pytest

    from benchmarks.loss_curves import curve, first_reaching

    lines = [{"step": 50, "loss": 3.0}, {"step": 100, "lr": 1e-3}, {"step": 150, "loss": 2.0}]
    (tmp_path / "log.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    points = curve(tmp_path, "loss")
    assert points == [(50, 3.0), (150, 2.0)]
    assert first_reaching(points, 2.5) == 150 and first_reaching(points, 3.0) == 50
    assert first_reaching(points, 1.0) is None
    with pytest.raises(ValueError, match="logs no 'align_loss'"):
        curve(tmp_path, "align_loss")
