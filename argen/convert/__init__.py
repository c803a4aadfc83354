"""Loaders for official checkpoints of other systems."""

from argen.convert.llamagen import gpt_from_llamagen, gpt_to_llamagen, load_official_state, vq_from_llamagen

__all__ = ["gpt_from_llamagen", "gpt_to_llamagen", "load_official_state", "vq_from_llamagen"]
