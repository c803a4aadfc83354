"""LoRA adapters (with ``peft``) for fine-tuning a trained generator, merged into plain weights
when the run exports them, so the exported model loads and samples as any other.

A LoRA layer computes W x + (alpha / r) B A x; merged, its weight is W + (alpha / r) B A.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

ADAPTER = "default"  # peft's name for the one adapter


@dataclass
class LoraConfig:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("wqkv", "wo", "w1", "w2", "w3")  # the Llama's linear layers

    def __post_init__(self) -> None:
        if self.rank < 1 or not self.target_modules:
            raise ValueError("lora needs rank >= 1 and at least one target module")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def add_lora(model: nn.Module, config: LoraConfig) -> None:
    """Wrap ``model``'s target linear layers with LoRA adapters in place; only the adapters stay
    trainable (unfreeze other modules after this)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import inject_adapter_in_model

    peft_config = PeftLoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
    )
    try:
        inject_adapter_in_model(peft_config, model, adapter_name=ADAPTER)
    except ValueError as err:  # no module matched
        raise ValueError(f"lora.target_modules {config.target_modules}: {err}") from None


def merged_weights(state: dict[str, torch.Tensor], config: LoraConfig) -> dict[str, torch.Tensor]:
    """A state dict with LoRA layers -> the plain model's state dict, each adapted weight merged:
    W + scale * B @ A (computed in float32)."""
    merged = {}
    for name, value in state.items():
        if ".lora_" in name:
            continue
        stem, _, leaf = name.rpartition(".base_layer.")
        if not stem:
            merged[name] = value
            continue
        a, b = state.get(f"{stem}.lora_A.{ADAPTER}.{leaf}"), state.get(f"{stem}.lora_B.{ADAPTER}.{leaf}")
        if leaf == "weight" and a is not None:
            value = (value.float() + config.scale * (b.float() @ a.float())).to(value.dtype)
        merged[f"{stem}.{leaf}"] = value
    return merged
