"""Sampling cost of the paradigms that change the number of steps per image, side by side in
one run on random weights of one shape: raster next-token decoding, Token-Shuffle windows
(s = 2, 4), masked decoding (MaskGIT passes) over the same grid, and bitwise generation over
tokens of d = 16, 32 and 64 bits (whose cost must not grow with 2^d).

    python -m benchmarks.steps_per_image --grid 16 --batch 1 100

Prints, per paradigm and batch size: steps (transformer passes) per image, the logits one step
computes per row, milliseconds per image (best of ``--repeats``) and the peak memory one
sampling call adds (MiB; on the CPU the resident set's high-water mark, approximate).
"""

from __future__ import annotations

import argparse
from functools import partial

import torch

from argen.models.llama import LlamaConfig
from argen.paradigms import SamplingExtras, get
from argen.paradigms.bitwise import BitwiseOptions
from argen.paradigms.masked import MaskedOptions, MaskSchedule
from argen.paradigms.token_shuffle import ShuffleOptions
from argen.sampling.config import SamplingConfig
from argen.tokenizers.binary import BitGridLayout
from benchmarks._common import peak_memory_mib, timed


def generators(grid: int, vocab: int, preset: str) -> list[tuple[str, object, object, SamplingExtras]]:
    """(label, paradigm, generator, extras) of every row, on random weights."""
    model = LlamaConfig(**LlamaConfig.PRESETS[preset], num_classes=10)
    sizes = dict(vocab_size=vocab, grid_size=(grid, grid))
    rows = [("raster", get("raster"), None, SamplingExtras())]
    rows += [
        (f"token_shuffle s={s}", get("token_shuffle"), ShuffleOptions(s), SamplingExtras()) for s in (2, 4)
    ]
    steps = 8
    rows.append((f"masked {steps} passes", get("masked"), MaskedOptions(), SamplingExtras()))
    rows[-1][3].by_option["masked"] = MaskSchedule(steps=steps)
    built = []
    for label, paradigm, options, extras in rows:
        torch.manual_seed(0)
        built.append((label, paradigm, paradigm.build(model, options, None, sizes).eval(), extras))
    for bits in (16, 32, 64):
        torch.manual_seed(0)
        paradigm = get("bitwise_raster")
        layout_sizes = paradigm.sizes(BitGridLayout(grid, grid, bits))
        generator = paradigm.build(model, BitwiseOptions(1), None, layout_sizes).eval()
        built.append((f"bitwise d={bits}", paradigm, generator, SamplingExtras()))
    return built


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", type=int, default=16, help="ids per side")
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--preset", default="tiny", choices=sorted(LlamaConfig.PRESETS))
    p.add_argument("--batch", type=int, nargs="+", default=[1, 100])
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    config = SamplingConfig(cfg_scale=2.0)
    print("| paradigm | batch | steps per image | logits per step | ms per image | peak MiB |")
    print("|---|---|---|---|---|---|")
    for label, paradigm, model, extras in generators(args.grid, args.vocab, args.preset):
        for batch in args.batch:
            labels = torch.arange(batch) % 10
            run = partial(paradigm.sample, model, None, labels, config, torch.Generator(), extras)
            seconds = timed(run, "cpu", args.repeats)
            peak = peak_memory_mib(run, "cpu")
            steps = (
                extras.by_option["masked"].steps if "masked" in extras.by_option else model.config.num_tokens
            )
            logits, ms = model.output.out_features, 1000 * seconds / batch
            print(f"| {label} | {batch} | {steps} | {logits} | {ms:.2f} | {peak:.1f} |")


if __name__ == "__main__":
    main()
