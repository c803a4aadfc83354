"""Samplers: turn a generator, a tokenizer layout and conditions into tokens."""

from argen.sampling.config import SamplingConfig
from argen.sampling.guidance import guide
from argen.sampling.logits import filter_logits, sample_logits
from argen.sampling.next_token import sample_next_token

__all__ = ["SamplingConfig", "filter_logits", "guide", "sample_logits", "sample_next_token"]
