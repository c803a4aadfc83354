"""Byte streams (JPEG-LM, AVC-LM): a codec's bytes (or byte-pair merges) as a 1-D sequence,
generated token by token until EOS with 1-D RoPE, or speculatively with a smaller byte model
as the draft; a stream that does not decode is rendered best-effort and counted as invalid.
Where the tokenizer models its codec's syntax (JPEG's scan automaton) sampling is constrained to
valid streams by default, drafts and target alike."""

from __future__ import annotations

import warnings

import torch

from argen.paradigms.base import Paradigm, SamplingExtras, cross_entropy
from argen.paradigms.options import CONSTRAINED, SPECULATIVE, SpeculationOptions
from argen.paradigms.raster import check_draft
from argen.sampling.draft_masks import ExcludedIds
from argen.sampling.next_token import NextTokenOptions, pad_after_stop, sample_next_token
from argen.sampling.speculative import Speculation, SpeculativeConfig
from argen.tokenizers.layout import ByteLayout
from argen.tokenizers.protocols import ByteStreamTokenizer


class ByteStreams(Paradigm):
    name = "byte_stream"
    layout = ByteLayout
    default = True
    sample_options = (SPECULATIVE, CONSTRAINED)
    checks_validity = True

    def sizes(self, layout: ByteLayout) -> dict:
        return super().sizes(layout) | {"rope": "1d"}

    def loss(self, model, tokenizer: ByteStreamTokenizer, tokens, condition):
        tokens = tokens.flatten(1)  # (B, L)
        return cross_entropy(
            model(tokens, condition), tokens, ignore=tokenizer.layout.pad
        )  # no loss on padding

    def sample(self, model, tokenizer, condition, config, generator, extras: SamplingExtras, given=None):
        layout = tokenizer.layout
        if extras.grid_sampler is not None:  # speculative decoding; padding is never drawn
            syntax = extras.constraint or ExcludedIds.of(layout.vocab_size, [layout.pad])
            ids = extras.grid_sampler(model, condition, config, generator, syntax, layout.eos)
            return pad_after_stop(ids, layout.eos, layout.pad)
        return sample_next_token(
            model,
            condition,
            config,
            generator,
            NextTokenOptions(
                compile=extras.compile,
                stop_token=layout.eos,
                pad_token=layout.pad,
                constraint=extras.constraint,
            ),
        )

    def speculation(
        self, target, tokenizer: ByteStreamTokenizer, draft, options: SpeculationOptions, config
    ) -> Speculation:
        check_draft(draft, target, ("vocab_size", "grid_size", "condition", "num_classes"), options.source)
        if options.relaxed_k > 0:
            raise ValueError("relaxed acceptance measures code neighbours; byte streams have no codebook")
        return Speculation(draft, SpeculativeConfig(options.draft_length))

    def syntax_constraint(self, tokenizer: ByteStreamTokenizer, requested: bool | None):
        """On by default where the tokenizer models its codec's syntax (JPEG)."""
        constraint = tokenizer.syntax() if requested is not False else None
        if requested and constraint is None:
            raise ValueError(
                f"--constrained: {type(tokenizer).__name__} has no syntax automaton (JPEG has one)"
            )
        return constraint

    def decode(self, tokenizer: ByteStreamTokenizer, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        layout = tokenizer.layout
        unfinished = int((~(ids == layout.eos).any(1)).sum())
        if unfinished:
            warnings.warn(
                f"{unfinished} of {len(ids)} streams reached max_len ({layout.max_len}) without EOS; "
                "they are decoded as they are",
                stacklevel=2,
            )
        return tokenizer.decode_checked(ids)
