"""Samplers: turn a generator, a tokenizer layout and conditions into tokens."""

from argen.sampling.logits import filter_logits, sample_logits
from argen.sampling.next_token import SamplingConfig, guide, sample_next_token

__all__ = ["SamplingConfig", "filter_logits", "guide", "sample_logits", "sample_next_token"]
