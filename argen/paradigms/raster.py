"""Raster ids (LlamaGen): a VQ tokenizer's grid of ids, generated token by token in raster
order by the Llama, optionally with speculative decoding (a draft model or draft head, standard
or relaxed acceptance)."""

from __future__ import annotations

import torch

from argen.checkpoint import CheckpointError
from argen.models.draft_head import DraftHead
from argen.paradigms.base import Paradigm, SamplingExtras
from argen.paradigms.options import SPECULATIVE, SpeculationOptions
from argen.sampling.next_token import NextTokenOptions, sample_next_token
from argen.sampling.speculative import Speculation, SpeculativeConfig
from argen.tokenizers.layout import GridLayout
from argen.tokenizers.protocols import GridTokenizer


def check_draft(draft, target, keys: tuple[str, ...], draft_dir) -> None:
    """Refuse a draft that does not read and write the target's tokens and conditions."""
    if any(getattr(draft.config, k) != getattr(target.config, k) for k in keys):
        raise CheckpointError(f"draft {draft_dir} does not share the target's {', '.join(keys)}")


class RasterIds(Paradigm):
    name = "raster"
    layout = GridLayout
    default = True
    sample_options = (SPECULATIVE,)

    def sample(self, model, tokenizer, condition, config, generator, extras: SamplingExtras, given=None):
        if extras.grid_sampler is not None:
            return extras.grid_sampler(model, condition, config, generator)
        return sample_next_token(
            model, condition, config, generator, NextTokenOptions(compile=extras.compile)
        )  # (B, h*w)

    def decode(self, tokenizer: GridTokenizer, ids: torch.Tensor):
        layout = tokenizer.layout
        return super().decode(tokenizer, ids.view(-1, layout.height, layout.width))  # (B, C, H, W)

    def speculation(
        self, target, tokenizer: GridTokenizer, draft, options: SpeculationOptions, config
    ) -> Speculation:
        check_draft(draft, target, ("vocab_size", "grid_size", "condition", "num_classes"), options.source)
        if isinstance(draft, DraftHead) and not torch.equal(draft.output.weight, target.output.weight):
            raise CheckpointError(
                f"draft head {options.source} was trained on another target (or the target's other weights: "
                "heads are trained on its ema weights when it has them)"
            )
        spec = SpeculativeConfig(
            options.draft_length,
            options.relaxed_k,
            options.relaxed_delta,
            options.relaxed_lambda,
            options.relaxed_residual,
            options.relaxed_space,
        )
        quantize = tokenizer.quantize
        vectors = quantize.embedding.weight if spec.relaxed_space == "embedding" else quantize.codebook()
        return Speculation(draft, spec, vectors.detach() if spec.relaxed else None)
