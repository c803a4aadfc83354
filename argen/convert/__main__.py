"""Convert official checkpoints into argen checkpoint directories.

python -m argen.convert llamagen-gpt c2i_B_256.pt runs/llamagen-b --model GPT-B --image-size 256
python -m argen.convert llamagen-gpt t2i_XL_stage2_512.pt runs/llamagen-t2i --image-size 512
python -m argen.convert llamagen-vq vq_ds16_c2i.pt runs/llamagen-vq16 --image-size 256
python -m argen.convert var-vae vae_ch160v4096z32.pth runs/var-vae
python -m argen.convert var var_d16.pth runs/var-d16 --vae vae_ch160v4096z32.pth   # + runs/var-d16/tokenizer
python -m argen.convert diffusers-vae stabilityai/sd-vae-ft-ema runs/sd-vae --image-size 256 --patch-size 2

Each format is one :class:`Converter` in ``CONVERTERS``; a converted generator records its
paradigm (``_paradigm`` in its config.json) as a trained one does.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from argen.checkpoint import CheckpointError, save_model
from argen.convert.llamagen import (
    GPT_PRESETS,
    LLAMAGEN_TEXT_ENCODER,
    gpt_from_llamagen,
    load_official_state,
    vq_from_llamagen,
)
from argen.convert.var import VAR_PATCH_NUMS, vae_from_var, var_from_official
from argen.tokenizers.continuous import ContinuousTokenizer


@dataclass
class Converted:
    """One model to write: into the output directory, or its ``subdir`` (a bundled tokenizer)."""

    model: nn.Module
    subdir: str = ""
    records: dict[str, str] = field(default_factory=dict)


class Converter:
    """One official format: its command-line arguments and its conversion."""

    name: str
    help: str

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        """Arguments besides ``src``, ``out`` and ``--image-size``."""

    def convert(self, args: argparse.Namespace) -> list[Converted]:
        raise NotImplementedError


class LlamaGenGPT(Converter):
    name, help = "llamagen-gpt", "LlamaGen GPT (c2i_*.pt, t2i_*.pt)"

    def add_arguments(self, p):
        p.add_argument("--model", choices=sorted(GPT_PRESETS), help="default: inferred from the shapes")
        p.add_argument("--downsample", type=int, default=16, help="the tokenizer's stride")
        p.add_argument(
            "--text-encoder",
            default=LLAMAGEN_TEXT_ENCODER,
            help="t2i: the encoder the model reads (a hub id or local directory)",
        )

    def convert(self, args):
        state = load_official_state(args.src)
        model = gpt_from_llamagen(state, args.model, args.image_size, args.downsample, args.text_encoder)
        return [Converted(model, records={"_paradigm": "raster"})]


class LlamaGenVQ(Converter):
    name, help = "llamagen-vq", "LlamaGen VQ tokenizer (vq_ds16_c2i.pt, vq_ds8_c2i.pt)"

    def convert(self, args):
        return [Converted(vq_from_llamagen(load_official_state(args.src), args.image_size))]


class VARVAE(Converter):
    name, help = "var-vae", "VAR multi-scale VQVAE (vae_ch160v4096z32.pth)"

    def add_arguments(self, p):
        p.add_argument("--patch-nums", type=int, nargs="+", default=list(VAR_PATCH_NUMS))

    def convert(self, args):
        state = load_official_state(args.src)
        return [Converted(vae_from_var(state, args.image_size, tuple(args.patch_nums)))]


class VAR(VARVAE):
    name, help = "var", "VAR transformer (var_d16.pth ... var_d30.pth), with its VQVAE"

    def add_arguments(self, p):
        super().add_arguments(p)
        p.add_argument("--vae", required=True, help="the VQVAE file (vae_ch160v4096z32.pth)")

    def convert(self, args):
        patch_nums = tuple(args.patch_nums)
        model = var_from_official(load_official_state(args.src), patch_nums)
        vae = vae_from_var(load_official_state(args.vae), args.image_size, patch_nums)
        # the tokenizer travels inside the model directory
        return [Converted(model, records={"_paradigm": "next_scale"}), Converted(vae, "tokenizer")]


class DiffusersVAE(Converter):
    name, help = "diffusers-vae", "a diffusers AutoencoderKL (local directory or hub id)"

    def add_arguments(self, p):
        p.add_argument("--patch-size", type=int, default=1, help="tokens are patch x patch latent patches")
        p.add_argument(
            "--patch-nums", type=int, nargs="*", default=[], help="FlowAR scales (tokens per side)"
        )

    def convert(self, args):
        model = ContinuousTokenizer.from_pretrained(
            args.src, args.image_size, args.patch_size, tuple(args.patch_nums)
        )
        return [Converted(model)]


CONVERTERS = {c.name: c for c in (LlamaGenGPT(), LlamaGenVQ(), VARVAE(), VAR(), DiffusersVAE())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m argen.convert",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="kind", required=True)
    for converter in CONVERTERS.values():
        parser = sub.add_parser(converter.name, help=converter.help)
        converter.add_arguments(parser)
        parser.add_argument("src")
        parser.add_argument("out")
        parser.add_argument("--image-size", type=int, default=256)
    args = p.parse_args(argv)
    try:
        outputs = CONVERTERS[args.kind].convert(args)
    except (CheckpointError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for converted in outputs:
        out = Path(args.out) / converted.subdir
        print(f"wrote {save_model(converted.model, out, records=converted.records)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
