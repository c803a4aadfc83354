"""Text conditioning: the text encoder, prompt validation and precomputed caption features."""

from argen.text.encoder import TextEncoder, TextEncoderError, resolve_text_encoder
from argen.text.features import TextFeatures, build_text_features, text_feature_key
from argen.text.prompts import PromptError, check_prompts, read_prompts_file, warn_truncated

__all__ = [
    "PromptError",
    "TextEncoder",
    "TextEncoderError",
    "TextFeatures",
    "build_text_features",
    "check_prompts",
    "read_prompts_file",
    "resolve_text_encoder",
    "text_feature_key",
    "warn_truncated",
]
