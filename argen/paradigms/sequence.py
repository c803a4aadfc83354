"""Next-token generation over a 1-D token sequence (holistic tokenizers, LARP / TiTok style): the
Llama with 1-D RoPE over the N ids, class- or text-conditional; images or clips come out of the
tokenizer's decoder."""

from __future__ import annotations

import torch

from argen.checkpoint import CheckpointError
from argen.paradigms.base import Paradigm
from argen.paradigms.raster import RasterIds
from argen.paradigms.registry import register_paradigm
from argen.tokenizers.holistic import SequenceLayout, SequenceTokenizer


class SequenceIds(RasterIds):
    name = "sequence"
    layout = SequenceLayout
    default = True
    sample_options = ()
    requirement = "sequence needs a 1-D tokenizer (tokenizer: holistic)"

    def sizes(self, layout: SequenceLayout) -> dict:
        return dict(vocab_size=layout.vocab_size, grid_size=(1, layout.length), rope="1d")

    def check_pair(self, model, layout: SequenceLayout, model_dir, tokenizer_dir):
        c = model.config
        if (layout.vocab_size, layout.length, c.rope) != (c.vocab_size, c.num_tokens, "1d"):
            raise CheckpointError(
                f"tokenizer {tokenizer_dir} ({layout}) does not match generator {model_dir} "
                f"(vocab {c.vocab_size}, {c.num_tokens} tokens, rope {c.rope})"
            )

    def decode(self, tokenizer: SequenceTokenizer, ids: torch.Tensor):
        return Paradigm.decode(self, tokenizer, ids)  # (B, N) -> images or clips


register_paradigm(SequenceIds())
