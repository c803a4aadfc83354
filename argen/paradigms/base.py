"""What every paradigm (one way of generating) provides, and the defaults most of them share.

A paradigm owns, for one kind of token layout: its section of the recipe (``Options``), what it
derives from the tokenizer (``prepare_tokenizer``, returning a new one), building its generator,
its training loss, its sampler (one signature for all), its compatibility checks and the way its
tokens become pixels. ``train.py``, ``sample.py`` and the training task look paradigms up by
name (:mod:`argen.paradigms.registry`) instead of branching on kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from argen.checkpoint import CheckpointError
from argen.config import from_dict
from argen.models.llama import Condition, Llama, LlamaConfig
from argen.sampling.config import SamplingConfig
from argen.sampling.next_token import GridSampler, TokenConstraint
from argen.tokenizers.protocols import Tokenizer

if TYPE_CHECKING:
    from argen.paradigms.control import ControlInputs
    from argen.paradigms.options import SampleOption
    from argen.paradigms.video import FramePrompts


@dataclass
class SamplingExtras:
    """What a sampling run adds to plain sampling: a compiled step, a sampler that replaces
    next-token sampling on grids (speculative decoding, coarse-to-fine refinement), an edit
    source (next-scale), given frames (video), control maps or a syntax constraint (byte
    streams). An option declared in a paradigm's own module keeps what it builds in
    ``by_option`` under its name."""

    compile: bool = False
    grid_sampler: GridSampler | None = None
    edit: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None
    frames: FramePrompts | None = None  # video: the given first frames (frame prediction)
    constraint: TokenConstraint | None = None  # byte streams: the codec's syntax
    steps: int | None = None  # distilled students: passes per sample
    control: ControlInputs | None = None  # spatial control: the control maps
    by_option: dict[str, Any] = field(default_factory=dict)  # options declared beside their paradigm

    def given(self, indices: range) -> torch.Tensor | None:
        """What samples ``indices`` are given besides their condition: the first frames' ids
        (frame prediction) or control maps (spatial control)."""
        if self.frames is not None:
            return self.frames.tokens(indices)
        return self.control.maps(indices) if self.control is not None else None


def cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, ignore: int = -100
) -> tuple[torch.Tensor, dict]:
    """Next-token loss: logits (B, L, V), targets (B, L) -> (loss, its log line)."""
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=ignore)
    return loss, {"loss": loss.item()}


def unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The generator a paradigm's ``loss`` receives as training wrapped it (DDP / FSDP keep it
    as ``.module``): its head and config."""
    return getattr(model, "module", model)


def model_args(model: LlamaConfig) -> dict:
    """A recipe's model section as constructor arguments."""
    return {f.name: getattr(model, f.name) for f in fields(model)}


@dataclass
class NoOptions:
    """A paradigm without a section of its own in the recipe."""


class Paradigm:
    """The protocol, with the defaults of next-token generation over ids (the Llama over a
    grid); each paradigm overrides what differs."""

    name: ClassVar[str]  # its registry name: recipes (paradigm:) and saved generators use it
    layout: ClassVar[type]  # the token layout it generates
    task: ClassVar[str] = "generator"  # the recipe task that trains it
    default: ClassVar[bool] = False  # the task's paradigm for ``layout`` when a recipe names none
    Options: ClassVar[type] = NoOptions  # its section of the recipe (``options:``)
    generators: ClassVar[tuple[type, ...]] = (Llama,)  # the generator classes it samples with
    requirement: ClassVar[str] = ""  # for errors: the tokenizer it needs
    sample_options: ClassVar[tuple[SampleOption, ...]] = ()  # the sample.py options it offers
    tokenizer_in_loss: ClassVar[bool] = False  # the loss runs the tokenizer (on the device)
    checks_validity: ClassVar[bool] = False  # samples may be invalid (byte streams)

    def serves(self, layout) -> bool:
        return type(layout) is self.layout

    def require_serves(self, layout, source: object) -> None:
        """Refuse tokens of another layout; ``source`` names the tokenizer in the error."""
        if not self.serves(layout):
            needs = self.requirement or f"paradigm {self.name!r} generates {self.layout.__name__} tokens"
            raise ValueError(f"{needs}, not the tokenizer {source} ({layout})")

    # --- building and training ----------------------------------------------------------
    def parse_options(self, options: dict) -> Any:
        """The recipe's ``options:`` section as this paradigm's ``Options`` (unknown keys are
        an error that names the valid ones)."""
        return from_dict(self.Options, options or {}, "options.")

    def prepare_tokenizer(self, tokenizer: torch.nn.Module, options: Any, seed: int) -> torch.nn.Module:
        """The tokenizer this paradigm generates for, derived from the loaded one (a new object:
        the loaded tokenizer is never changed); the run saves it as its ``tokenizer/``."""
        return tokenizer

    def sizes(self, layout) -> dict:
        """The generator's arguments that come from the tokenizer's layout."""
        return dict(vocab_size=layout.vocab_size, grid_size=(layout.height, layout.width))

    def build(
        self, model: LlamaConfig, options: Any, tokenizer: torch.nn.Module, sizes: dict
    ) -> torch.nn.Module:
        """The generator for ``tokenizer``, shaped by the recipe's ``model`` section, this
        paradigm's ``options`` and ``sizes`` (layout, conditioning)."""
        return Llama(replace(model, **sizes))  # the recipe itself stays as written

    def loss(
        self, model, tokenizer: Tokenizer, tokens: torch.Tensor, condition: Condition
    ) -> tuple[torch.Tensor, dict]:
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

    def passes(self, extras: SamplingExtras) -> int | None:
        """Generator passes per image when sampling with ``extras``, where the paradigm sets
        them itself (masked decoding); None: one per token, or per scale."""
        return None

    def grid_images(self, images: np.ndarray, extras: SamplingExtras, columns: int) -> tuple[np.ndarray, int]:
        """The images of ``grid.png`` and its columns (one per condition)."""
        return images, columns
