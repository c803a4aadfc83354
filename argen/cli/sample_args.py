"""``sample.py``'s command line: what to sample, how, with which extras, and where to write."""

from __future__ import annotations

import argparse

from argen import paradigms
from argen.cli import HelpFormatter
from argen.sampling import SamplingConfig
from argen.sampling.config import FLOWAR_CFG_NOISE_INTERVAL

# options that do not change the samples drawn
DISPLAY_ONLY = {
    "out",
    "fid",
    "fid_features",
    "inception_weights",
    "i3d_weights",
    "classifier",
    "compile",
    "fps",
    "overwrite",
    "plugin",
    "allow_other_tokenizer",
    "threads",
}


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ckpt",
        required=True,
        help="generator run or model directory, LlamaGen / VAR file, or Hub reference",
    )
    p.add_argument(
        "--tokenizer",
        help="tokenizer directory, LlamaGen / VAR file or Hub reference (default: <ckpt>/tokenizer)",
    )
    p.add_argument(
        "--allow-other-tokenizer",
        action="store_true",
        help="sample with a --tokenizer whose weights differ from the run's tokenizer/ copy",
    )
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE_OR_FILE",
        help="import a module or .py file first (it registers a paradigm defined outside argen); repeatable",
    )
    p.add_argument("--image-size", type=int, help="LlamaGen .pt files: default from the file name, else 256")
    p.add_argument("--weights", choices=["ema", "model"], help="default: ema when the run has it")
    p.add_argument("--precision", choices=["fp32", "bf16"], help="generator weights (default: bf16 on GPU)")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads (0: auto, OMP_NUM_THREADS or the cores of the launch)",
    )
    p.add_argument("--classes", help='class models: "all" (default) or comma-separated class ids')
    p.add_argument("--prompt", action="append", help="text models: a prompt (repeatable)")
    p.add_argument("--prompts-file", help="text models: a UTF-8 file with one prompt per line")
    p.add_argument("--text-encoder", help="text models: override the encoder named in the checkpoint")


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--num-samples", type=int, default=100, help="samples to draw, cycling over the conditions"
    )
    p.add_argument("--batch-size", type=int, default=100, help="samples per batch (and per seed)")
    p.add_argument("--cfg-scale", type=float, default=1.0, help="classifier-free guidance scale (1: none)")
    p.add_argument(
        "--cfg-interval",
        type=float,
        nargs=2,
        default=(0.0, 1.0),
        metavar=("START", "END"),
        help="the fraction of the sequence that is guided",
    )
    p.add_argument(
        "--cfg-schedule",
        choices=["constant", "linear"],
        default="constant",
        help="linear: the scale ramps from 1 to --cfg-scale over tokens or scales",
    )
    p.add_argument("--temperature", type=float, default=1.0, help="0 draws the likeliest token")
    p.add_argument("--top-k", type=int, default=0, help="keep the k likeliest tokens (0: all)")
    p.add_argument("--top-p", type=float, default=1.0, help="keep the nucleus of this mass (1: all)")
    p.add_argument("--flow-steps", type=int, default=25, help="continuous tokens: ODE steps of the head")
    p.add_argument(
        "--flow-solver",
        choices=["euler", "heun", "sde"],
        default="euler",
        help="continuous tokens: the head's ODE solver, or the SDE of the same marginals",
    )
    p.add_argument("--flow-noise", type=float, default=1.0, help="continuous tokens, sde: diffusion scale")
    p.add_argument(
        "--cfg-noise-interval",
        nargs="+",
        default=(0.0, 1.0),
        metavar="LO HI | flowar",
        help="continuous tokens: guide only while the noise level t (1 = noise) lies in [LO, HI]; "
        "flowar: FlowAR's interval (0.1, 1)",
    )
    p.add_argument("--seed", type=int, default=0, help="batch b is drawn with a seed made of this and b")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the decode step (next-scale: one graph per scale)",
    )


def add_extra_args(p: argparse.ArgumentParser) -> None:
    """The flags of the options paradigms offer (speculative decoding, refiners, editing, ...)."""
    for option in paradigms.sample_options():
        option.add_arguments(p)


def add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fps", type=int, default=8, help="video: frame rate of the mp4 files")
    p.add_argument("--resize", type=int, help="bicubic resize of the samples, e.g. 384 -> 256 for FID")
    p.add_argument(
        "--out",
        help="output directory, holding this run only (default: <ckpt>/samples-cfg<S>-seed<N>-n<count>-<hash "
        "of the settings>)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace what --out holds (another run's results)"
    )
    p.add_argument("--fid", metavar="REF", help="reference: an .npz, an image folder or an embedded dataset")
    p.add_argument(
        "--fid-features",
        choices=["inception", "i3d", "classifier"],
        help="default: inception for images, i3d (FVD) for video",
    )
    p.add_argument("--inception-weights", help="local copy of the Inception weights for FID")
    p.add_argument("--i3d-weights", help="video: local i3d_torchscript.pt for FVD")
    p.add_argument("--classifier", help="classifier directory: class-consistency (and its FID features)")


NOISE_INTERVALS = {"flowar": FLOWAR_CFG_NOISE_INTERVAL}


def noise_interval(words: list) -> tuple[float, float]:
    """``--cfg-noise-interval``'s words, LO HI or a reference's name -> the noise levels
    (LO, HI) that guidance acts on."""
    if len(words) == 1 and words[0] in NOISE_INTERVALS:
        return NOISE_INTERVALS[words[0]]
    try:
        lo, hi = map(float, words)
    except ValueError:
        given = " ".join(map(str, words))
        raise ValueError(
            f"--cfg-noise-interval takes LO HI or one of {sorted(NOISE_INTERVALS)}, got {given}"
        ) from None
    return lo, hi


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    for add in (add_model_args, add_sampling_args, add_extra_args, add_output_args):
        add(p)
    return p


def parse_args(argv: list[str] | None, description: str | None = None) -> argparse.Namespace:
    """The command line, after importing its ``--plugin`` modules (whose paradigms may offer
    options of their own)."""
    plugins = argparse.ArgumentParser(add_help=False)
    plugins.add_argument("--plugin", action="append", default=[])
    paradigms.load_plugins(plugins.parse_known_args(argv)[0].plugin)
    return build_parser(description).parse_args(argv)


def sampling_config(args: argparse.Namespace) -> SamplingConfig:
    return SamplingConfig(
        cfg_scale=args.cfg_scale,
        cfg_interval=tuple(args.cfg_interval),
        cfg_schedule=args.cfg_schedule,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        flow_steps=args.flow_steps,
        flow_solver=args.flow_solver,
        flow_noise=args.flow_noise,
        cfg_noise_interval=noise_interval(args.cfg_noise_interval),
    )
