"""What every paradigm (one way of generating) provides, and the defaults most of them share.

A paradigm owns, for one kind of token layout: building its generator from a recipe, its
training loss, its sampler (one signature for all), its compatibility checks and the way its
tokens become pixels. ``train.py``, ``sample.py`` and the training task look paradigms up
(:mod:`argen.paradigms`) instead of branching on kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from argen.checkpoint import CheckpointError
from argen.models.llama import Condition, Llama
from argen.sampling.config import SamplingConfig
from argen.sampling.next_token import GridSampler, TokenConstraint


@dataclass
class SamplingExtras:
    """What a sampling run adds to plain sampling: a compiled step, a sampler that replaces
    next-token sampling on grids (speculative decoding, coarse-to-fine refinement), an edit
    source (next-scale), given frames (video), control maps or a syntax constraint (byte
    streams)."""

    compile: bool = False
    grid_sampler: GridSampler | None = None
    edit: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None
    frames: Any = None  # FramePrompts of video paradigms
    constraint: TokenConstraint | None = None  # byte streams: the codec's syntax
    steps: int | None = None  # distilled students: passes per sample
    control: Any = None  # ControlInputs of controlled paradigms

    def given(self, indices: range) -> torch.Tensor | None:
        """What samples ``indices`` are given besides their condition: the first frames' ids
        (frame prediction) or control maps (spatial control)."""
        if self.frames is not None:
            return self.frames.tokens(indices)
        return self.control.maps(indices) if self.control is not None else None


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


def cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, ignore: int = -100
) -> tuple[torch.Tensor, dict]:
    """Next-token loss: logits (B, L, V), targets (B, L) -> (loss, its log line)."""
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=ignore)
    return loss, {"loss": loss.item()}


def refuse_head(recipe) -> None:
    if recipe.head is not None:
        raise ValueError("head: is for continuous tokenizers")


def recipe_model_args(recipe) -> dict:
    """The recipe's model section as constructor arguments."""
    return {f.name: getattr(recipe.model, f.name) for f in fields(recipe.model)}


class Paradigm:
    """The protocol, with the defaults of next-token generation over ids (the Llama over a
    grid); each paradigm overrides what differs."""

    name: ClassVar[str]  # for messages
    layout: ClassVar[type]  # the token layout it generates
    generators: ClassVar[tuple[type, ...]] = (Llama,)  # the generator classes it samples with
    variant: ClassVar[str] = "generator"  # what a recipe asks for: see ``requested_variant``
    requirement: ClassVar[str] = ""  # for errors: the tokenizer this variant needs
    tokenizer_in_loss: ClassVar[bool] = False  # the loss runs the tokenizer (on the device)
    checks_validity: ClassVar[bool] = False  # samples may be invalid (byte streams)

    def serves(self, layout) -> bool:
        return type(layout) is self.layout

    # --- building and training ----------------------------------------------------------
    def sizes(self, layout) -> dict:
        """The generator's arguments that come from the tokenizer's layout."""
        return dict(vocab_size=layout.vocab_size, grid_size=(layout.height, layout.width))

    def build(self, recipe, tokenizer: torch.nn.Module, sizes: dict) -> torch.nn.Module:
        """The generator for ``tokenizer``, shaped by the recipe and ``sizes`` (layout,
        conditioning)."""
        refuse_head(recipe)
        return Llama(replace(recipe.model, **sizes))  # the recipe itself stays as written

    def loss(self, model, tokenizer, tokens: torch.Tensor, condition: Condition) -> tuple[torch.Tensor, dict]:
        """Training loss on a batch of cached tokens -> (loss, scalars to log)."""
        tokens = tokens.flatten(1)  # (B, L)
        return cross_entropy(model(tokens, condition), tokens)

    # --- sampling -----------------------------------------------------------------------
    def check_pair(self, model, layout, model_dir: Path, tokenizer_dir: Path) -> None:
        """Refuse a tokenizer whose tokens the generator was not trained on."""
        c = model.config
        if (layout.vocab_size, (layout.height, layout.width)) != (c.vocab_size, tuple(c.grid_size)):
            raise CheckpointError(
                f"tokenizer {tokenizer_dir} ({layout}) does not match generator {model_dir} "
                f"(vocab {c.vocab_size}, grid {c.grid_size})"
            )

    def check_extras(self, extras: SamplingExtras) -> None:
        """Refuse a sampling run that lacks what this paradigm needs."""

    def sample(
        self,
        model: torch.nn.Module,
        tokenizer: torch.nn.Module,
        condition: Condition,
        config: SamplingConfig,
        generator: torch.Generator,
        extras: SamplingExtras,
        given: torch.Tensor | None = None,
    ) -> Any:
        """Condition rows -> tokens, as the tokenizer decodes them."""
        raise NotImplementedError

    def decode(self, tokenizer: torch.nn.Module, tokens: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens -> (pixels in [-1, 1], whether each sample is valid (B,) bool)."""
        images = tokenizer.decode(tokens)
        return images, torch.ones(len(images), dtype=torch.bool)

    def grid_images(self, images: np.ndarray, extras: SamplingExtras, columns: int) -> tuple[np.ndarray, int]:
        """The images of ``grid.png`` and its columns (one per condition)."""
        return images, columns

    # --- options of sample.py (refused unless a paradigm offers them) --------------------
    def speculation(self, target, tokenizer, draft, options: SpeculationOptions, config: SamplingConfig):
        raise ValueError(
            f"--speculative needs a next-token generator over ids or continuous tokens, not {self.name}"
        )

    def refinement(self, model, tokenizer, refiner, fine_temperature: float, compile: bool):
        raise ValueError(
            f"--refiner needs a coarse-to-fine generator (trained with coarse_clusters > 0), not {self.name}"
        )

    def edit_source(self, tokenizer, image: str, mask: str, device: torch.device):
        raise ValueError(f"--edit needs a next-scale (multi-scale tokenizer) generator, not {self.name}")

    def syntax_constraint(self, tokenizer, requested: bool | None) -> TokenConstraint | None:
        """The constraint ``--constrained`` asks for (None: the paradigm's default)."""
        if requested:
            raise ValueError(f"--constrained is for byte-stream generators (JPEG-LM), not {self.name}")
        return None

    def sampling_steps(self, model, requested: int | None, config: SamplingConfig) -> int | None:
        """The passes ``--steps`` asks for, checked against what the model was trained for."""
        if requested is not None:
            raise ValueError(f"--steps is for distilled students (task: distill), not {self.name}")
        return None

    def control_inputs(self, model, path: str, kind: str | None, device: torch.device):
        raise ValueError(
            f"--control is for generators trained with spatial control (task: control), not {self.name}"
        )

    def frame_prompts(self, model, tokenizer, dataset: str, given_frames: int, device: torch.device):
        raise ValueError(
            f"--given-frames is for video generators (frame-wise or causal video VQ), not {self.name}"
        )
