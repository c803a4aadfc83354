"""Coarse to fine (CTF): stage 1 generates a grid of coarse labels (clusters of the VQ
codebook) token by token; stage 2, the fine-label model (``task: refiner``), reads them all
and picks every code within its cluster at once. Sampling needs both (``--refiner``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from argen.checkpoint import CheckpointError
from argen.models.refiner import FineLabelConfig, FineLabelTransformer
from argen.paradigms.base import Paradigm, SamplingExtras, cross_entropy, model_args
from argen.paradigms.options import REFINER
from argen.paradigms.raster import RasterIds
from argen.sampling.coarse_to_fine import Refinement
from argen.tokenizers.coarse_to_fine import CoarseToFineVQModel
from argen.tokenizers.layout import CoarseToFineLayout
from argen.tokenizers.protocols import CoarseToFineTokenizer

STAGE_TWO = "a fine-label model samples as the --refiner of its coarse-label run"


@dataclass
class CoarseOptions:
    # k-means the VQ codebook into this many coarse labels (CTF stage 1); the run's tokenizer/
    # then carries them. 0: the tokenizer already is a coarse-to-fine run's tokenizer/
    clusters: int = 0


class CoarseLabels(RasterIds):
    """Stage 1: the Llama over coarse labels; decoded through its refiner's fine ids."""

    name = "coarse_labels"
    layout = CoarseToFineLayout
    default = True
    Options = CoarseOptions
    sample_options = (REFINER,)

    def prepare_tokenizer(self, tokenizer: CoarseToFineTokenizer, options: CoarseOptions, seed: int):
        if isinstance(tokenizer, CoarseToFineVQModel):
            if options.clusters:
                raise ValueError("options.clusters: the tokenizer already carries coarse labels")
            return tokenizer
        if not options.clusters:
            raise ValueError("coarse_labels over a VQ tokenizer needs options.clusters > 0")
        return CoarseToFineVQModel.from_vq(tokenizer, options.clusters, seed)

    def loss(self, model, tokenizer: CoarseToFineTokenizer, tokens, condition):
        labels = tokenizer.coarse(tokens.flatten(1))  # (B, L) coarse labels
        return cross_entropy(model(labels, condition), labels)

    def check_extras(self, extras: SamplingExtras) -> None:
        if extras.grid_sampler is None:
            raise ValueError(
                "this generator predicts coarse labels: pass --refiner RUN (its task: refiner run)"
            )

    def refinement(
        self, model, tokenizer: CoarseToFineTokenizer, refiner, fine_temperature: float, compile: bool
    ) -> Refinement:
        if fine_temperature < 0:
            raise ValueError("--fine-temperature must be >= 0")
        keys = ("vocab_size", "grid_size", "condition", "num_classes", "caption_dim")
        if not isinstance(refiner, FineLabelTransformer) or any(
            getattr(refiner.config, k) != getattr(model.config, k) for k in keys
        ):
            raise CheckpointError(
                f"the refiner is not a fine-label model for this generator (same {', '.join(keys)})"
            )
        if not torch.equal(refiner.coarse_labels.cpu(), tokenizer.coarse_labels.cpu()):
            raise CheckpointError("the refiner was trained on other coarse labels than the tokenizer's")
        return Refinement(refiner, fine_temperature, compile)


class FineLabels(Paradigm):
    """Stage 2 (``task: refiner``): every fine id at once given all coarse labels."""

    name = "fine_labels"
    layout = CoarseToFineLayout
    generators = (FineLabelTransformer,)
    task = "refiner"
    default = True
    requirement = "a refiner needs a coarse-to-fine tokenizer (the tokenizer/ of a coarse_labels run)"

    def build(self, model, options, tokenizer: CoarseToFineTokenizer, sizes):
        args = model_args(model) | sizes
        model = FineLabelTransformer(
            FineLabelConfig(**args, fine_vocab_size=tokenizer.layout.fine_vocab_size)
        )
        model.coarse_labels.copy_(tokenizer.coarse_labels)
        return model

    def loss(self, model, tokenizer: CoarseToFineTokenizer, tokens, condition):
        tokens = tokens.flatten(1)  # (B, L) fine ids
        return cross_entropy(model(tokenizer.coarse(tokens), condition), tokens)  # (B, L, V_fine)

    def check_extras(self, extras: SamplingExtras) -> None:
        raise ValueError(STAGE_TWO)

    def sample(
        self, model, tokenizer: CoarseToFineTokenizer, condition, config, generator, extras, given=None
    ):
        raise ValueError(STAGE_TWO)
