"""The options of ``sample.py`` that paradigms offer, each a small object: its flags, how it is
built into the run's :class:`~argen.paradigms.base.SamplingExtras`, and what it adds to
``metrics.json``.

A paradigm lists what it offers (``Paradigm.sample_options``); every offered option is built
for every run (it may do nothing unless asked), and an option the run asks for that its
paradigm does not offer is refused with the option's own sentence (``needs``). Options read no
files: ``sample.py`` hands them models and tensors through :class:`RunInputs`. A paradigm
outside the package may declare options of its own; their flags join ``sample.py``'s.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from argen.sampling.config import SamplingConfig


class RunInputs(Protocol):
    """What ``sample.py`` reads for an option (implemented by the CLI): files and datasets in,
    models and tensors out."""

    device: torch.device

    def second_model(self, path: str) -> torch.nn.Module:
        """A draft or refiner: a run directory (its chosen weights) or a model directory."""
        ...

    def edit_inputs(self, image: str, mask: str, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The image (1, 3, R, R) in [-1, 1] and the mask (R, R) in [0, 1], 1 where regenerated."""
        ...

    def control_maps(
        self, path: str, kind: str, channels: int, resolution: int, thresholds, detector: str
    ) -> torch.Tensor:
        """Control maps (M, C, R, R) in [0, 1] of one image or a folder (canny edges by
        ``detector`` with ``thresholds``, or ready maps)."""
        ...

    def clips(self, dataset: str, resolution: int, frames: int) -> Any:
        """A video dataset (``clips[i] -> (clip, label)``, ``label(i)``, ``classes``)."""
        ...


@dataclass
class OptionRun:
    """What an option is built against: the run's paradigm, models, sampling and inputs."""

    paradigm: Any
    model: torch.nn.Module
    tokenizer: torch.nn.Module
    config: SamplingConfig
    inputs: RunInputs


class SampleOption:
    """One option of ``sample.py``."""

    needs: str = ""  # the refusal when a paradigm does not offer it: "--edit needs ..."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        raise NotImplementedError

    def requested(self, args: argparse.Namespace) -> bool:
        """Whether the run asks for it (flags that only go together are checked here)."""
        raise NotImplementedError

    def build(self, args: argparse.Namespace, run: OptionRun, extras) -> None:
        """Fill this option's part of ``extras`` (asked for or, where it has one, by default)."""
        raise NotImplementedError

    def metrics(self, args: argparse.Namespace, extras) -> dict:
        """What it adds to metrics.json (nothing: no metrics.json on its account)."""
        return {}


def refuse_unoffered(paradigm, args: argparse.Namespace, options: list[SampleOption]) -> None:
    """Refuse the first option of ``options`` the run asks for that ``paradigm`` does not offer."""
    for option in options:
        if option.requested(args) and option not in paradigm.sample_options:
            raise ValueError(f"{option.needs}, not {paradigm.name}")


@dataclass
class SpeculationOptions:
    """The draft's settings (``sample.py --speculative``); ``source`` names it in messages."""

    source: str = ""
    draft_length: int = 4
    relaxed_k: int = 0
    relaxed_delta: float = 0.0
    relaxed_lambda: float | None = None
    residual_tries: int = 32
    relaxed_residual: str = "lantern"
    relaxed_space: str = "embedding"


class Speculative(SampleOption):
    needs = "--speculative needs a next-token generator over ids or continuous tokens"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--speculative", metavar="DRAFT", help="draft generator (run or model directory)")
        p.add_argument("--draft-length", type=int, default=3, help="speculative: tokens drafted per round")
        p.add_argument(
            "--relaxed-k", type=int, default=0, help="speculative: latent neighbours per code (LANTERN)"
        )
        p.add_argument(
            "--relaxed-delta",
            type=float,
            default=0.0,
            help="speculative: mass a neighbour run may add (LANTERN)",
        )
        p.add_argument(
            "--relaxed-lambda",
            type=float,
            help="speculative: the run adds at most (lambda - 1) p(x) (LANTERN++)",
        )
        p.add_argument(
            "--relaxed-residual",
            choices=["lantern", "standard"],
            default="lantern",
            help="speculative, relaxed: after a rejection, drop the rejected code's neighbours from q "
            "(LANTERN)",
        )
        p.add_argument(
            "--relaxed-space",
            choices=["embedding", "lookup"],
            default="embedding",
            help="speculative, relaxed: neighbours on the raw code embeddings (LANTERN) or the lookup "
            "vectors",
        )
        p.add_argument(
            "--residual-tries", type=int, default=32, help="continuous speculative: residual proposals"
        )

    def requested(self, args) -> bool:
        return bool(args.speculative)

    def build(self, args, run: OptionRun, extras) -> None:
        if not self.requested(args):
            return
        options = SpeculationOptions(
            args.speculative,
            args.draft_length,
            args.relaxed_k,
            args.relaxed_delta,
            args.relaxed_lambda,
            args.residual_tries,
            args.relaxed_residual,
            args.relaxed_space,
        )
        draft = run.inputs.second_model(args.speculative)
        extras.grid_sampler = run.paradigm.speculation(run.model, run.tokenizer, draft, options, run.config)

    def metrics(self, args, extras) -> dict:
        if not self.requested(args):
            return {}
        speculation = extras.grid_sampler
        return {
            "speculative": vars(speculation.config)
            | {
                "tokens_per_target_call": speculation.tokens_per_call,  # main process's batches
                "residual_fallbacks": speculation.totals.get("fallbacks", 0),
                "draft": args.speculative,
            }
        }


class Refiner(SampleOption):
    needs = "--refiner needs a coarse-to-fine generator (paradigm coarse_labels)"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--refiner", metavar="RUN", help="coarse-to-fine models: the fine-label run (task: refiner)"
        )
        p.add_argument(
            "--fine-temperature", type=float, default=1.0, help="coarse-to-fine: 0 takes the likeliest code"
        )

    def requested(self, args) -> bool:
        return bool(args.refiner)

    def build(self, args, run: OptionRun, extras) -> None:
        if self.requested(args):
            refiner = run.inputs.second_model(args.refiner)
            extras.grid_sampler = run.paradigm.refinement(
                run.model, run.tokenizer, refiner, args.fine_temperature, args.compile
            )

    def metrics(self, args, extras) -> dict:
        if not self.requested(args):
            return {}
        return {"coarse_to_fine": {"refiner": args.refiner, "fine_temperature": args.fine_temperature}}


class Edit(SampleOption):
    needs = "--edit needs a next-scale (multi-scale tokenizer) or masked generator"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--edit", metavar="IMAGE", help="next-scale and masked models: edit this image (needs --mask)"
        )
        p.add_argument(
            "--mask", metavar="MASK", help="--edit: a grayscale image, white where it is regenerated"
        )

    def requested(self, args) -> bool:
        if bool(args.edit) != bool(args.mask):
            raise ValueError("--edit and --mask go together")
        return bool(args.edit)

    def build(self, args, run: OptionRun, extras) -> None:
        if self.requested(args):
            image, mask = run.inputs.edit_inputs(args.edit, args.mask, run.tokenizer.config.resolution)
            extras.edit = run.paradigm.edit_source(run.tokenizer, image.to(run.inputs.device), mask)


class Control(SampleOption):
    needs = "--control is for generators trained with spatial control (task: control)"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--control",
            metavar="IMAGE_OR_FOLDER",
            help="controlled generators: the control input of each sample, in turn (one image or a folder)",
        )
        p.add_argument(
            "--control-kind",
            choices=["canny", "map"],
            help="--control: photos whose canny edges control, or ready control maps (default: the "
            "model's kind)",
        )

    def requested(self, args) -> bool:
        if args.control_kind and not args.control:
            raise ValueError("--control-kind goes with --control")
        return bool(args.control)

    def build(self, args, run: OptionRun, extras) -> None:
        if self.requested(args):
            c = run.model.config
            kind = run.paradigm.control_kind(run.model, args.control_kind)
            maps = run.inputs.control_maps(
                args.control,
                kind,
                c.control_channels,
                c.control_resolution,
                c.control_thresholds,
                c.control_detector,
            )
            extras.control = run.paradigm.control_inputs(maps, run.inputs.device)


class GivenFrames(SampleOption):
    needs = "--given-frames is for video generators (frame-wise or causal video VQ)"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--given-frames", type=int, help="video: keep the first N frames of real clips")
        p.add_argument("--given-from", metavar="DATASET", help="video: the clips --given-frames come from")

    def requested(self, args) -> bool:
        if not (args.given_frames or args.given_from):
            return False
        if not (args.given_from and args.given_frames):
            raise ValueError("frame prediction needs both --given-from DATASET and --given-frames N")
        if args.classes is not None:
            raise ValueError("frame prediction conditions each sample on its clip's class: drop --classes")
        return True

    def build(self, args, run: OptionRun, extras) -> None:
        if self.requested(args):
            config = run.tokenizer.config
            clips = run.inputs.clips(args.given_from, config.resolution, config.frames)
            extras.frames = run.paradigm.frame_prompts(
                run.model, run.tokenizer, clips, args.given_frames, args.given_from, run.inputs.device
            )

    def metrics(self, args, extras) -> dict:
        if extras.frames is None:
            return {}
        return {"frame_prediction": {"given_frames": args.given_frames, "given_from": args.given_from}}


class Constrained(SampleOption):
    needs = "--constrained is for byte-stream generators (JPEG-LM)"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--constrained",
            action=argparse.BooleanOptionalAction,
            help="byte streams: draw only ids that keep the stream valid codec syntax (default: on where "
            "the tokenizer models its syntax: JPEG)",
        )

    def requested(self, args) -> bool:
        return bool(args.constrained)

    def build(self, args, run: OptionRun, extras) -> None:  # on by default where the codec has one
        extras.constraint = run.paradigm.syntax_constraint(run.tokenizer, args.constrained)


class Steps(SampleOption):
    needs = "--steps is for distilled students (task: distill)"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--steps", type=int, help="distilled students: passes per sample (default: the fewest trained)"
        )

    def requested(self, args) -> bool:
        return args.steps is not None

    def build(self, args, run: OptionRun, extras) -> None:  # the fewest trained steps by default
        extras.steps = run.paradigm.sampling_steps(run.model, args.steps, run.config)


SPECULATIVE, REFINER, EDIT, CONTROL = Speculative(), Refiner(), Edit(), Control()
GIVEN_FRAMES, CONSTRAINED, STEPS = GivenFrames(), Constrained(), Steps()
