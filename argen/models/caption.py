"""Text conditioning of the generator: a batch of encoded prompts and the MLP that turns them
into prefix tokens, with a null caption for classifier-free guidance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Caption:
    """Text-encoder features of a batch of prompts, padded on the left to one length.

    Left padding (as in LlamaGen) puts a real token in the last prefix slot, the position
    whose output predicts the first image token.
    """

    features: torch.Tensor  # (B, T, C)
    mask: torch.Tensor  # (B, T) bool, True on real tokens

    def __post_init__(self) -> None:
        if self.features.shape[:-1] != self.mask.shape:
            shapes = f"{tuple(self.features.shape)} and {tuple(self.mask.shape)}"
            raise ValueError(f"caption features and mask do not match: {shapes}")
        if not bool(self.mask[..., -1].all()):
            raise ValueError("captions must be padded on the left (their last position a real token)")

    @staticmethod
    def from_right_padded(features: torch.Tensor, mask: torch.Tensor) -> Caption:
        """Move each row's real tokens (B, T, C) from the front to the end."""
        length = features.shape[1]
        count = mask.sum(1, keepdim=True)  # (B, 1)
        source = (torch.arange(length, device=mask.device)[None] + count) % length  # (B, T)
        features = features.gather(1, source[..., None].expand_as(features))
        return Caption(features, mask.gather(1, source))

    def __len__(self) -> int:
        return self.features.shape[0]

    def __getitem__(self, index) -> Caption:
        return Caption(self.features[index], self.mask[index])

    def to(self, device: torch.device | str) -> Caption:
        return Caption(self.features.to(device), self.mask.to(device))

    @staticmethod
    def cat(captions: Sequence[Caption]) -> Caption:
        return Caption(torch.cat([c.features for c in captions]), torch.cat([c.mask for c in captions]))


class CaptionMLP(nn.Module):
    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, dim, bias=False)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ClassPrefix(nn.Embedding):
    """The prefix of class-conditional generators: class ids (B,) -> one token (B, 1, D). The
    last row (``null_class`` = the number of classes) stands in for dropped labels in training
    and for the unconditional rows of guidance."""

    attribute = "class_emb"  # the name it is registered under (the checkpoints' keys)
    padded = False  # every prefix position is real: plain causal attention

    def __init__(self, num_classes: int, dim: int):
        super().__init__(num_classes + 1, dim)
        self.null_class = num_classes

    def embed(self, labels: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        if drop is not None:
            labels = torch.where(drop, torch.full_like(labels, self.null_class), labels)
        return self(labels)[:, None]  # (B, 1, D)

    def with_null(self, labels: torch.Tensor) -> torch.Tensor:
        return torch.cat([labels, torch.full_like(labels, self.null_class)])

    def keys(self, labels: torch.Tensor, length: int, device: torch.device) -> None:
        """Which keys of a sequence of ``length`` are real: all of them (None)."""
        return None


class CaptionEmbedder(nn.Module):
    """The prefix of text-conditional generators: caption features (B, T, C) -> prefix tokens
    (B, T, D). ``null_caption`` (T, C) stands in for dropped captions in training and for the
    unconditional rows of guidance."""

    attribute = "caption_emb"  # the name it is registered under (the checkpoints' keys)
    padded = True  # padded caption positions are hidden by the attention mask

    def __init__(self, caption_dim: int, dim: int, caption_len: int):
        super().__init__()
        self.caption_len = caption_len
        self.cap_proj = CaptionMLP(caption_dim, dim)
        self.null_caption = nn.Parameter(torch.randn(caption_len, caption_dim) / caption_dim**0.5)

    def null(self, like: Caption) -> Caption:
        """Null captions for the rows of ``like``, keeping its padding mask (as LlamaGen does)."""
        return Caption(self.null_caption.expand(len(like), -1, -1), like.mask)

    def embed(self, caption: Caption, drop: torch.Tensor | None = None) -> torch.Tensor:
        return self(caption, drop)

    def with_null(self, caption: Caption) -> Caption:
        return Caption.cat([caption, self.null(caption)])

    def keys(self, caption: Caption, length: int, device: torch.device) -> torch.Tensor:
        """Which keys of a sequence of ``length`` are real (B, length): padded caption
        positions are not."""
        return F.pad(caption.mask.to(device), (0, length - self.caption_len), value=True)

    def forward(self, caption: Caption, drop: torch.Tensor | None = None) -> torch.Tensor:
        if caption.features.shape[1:] != self.null_caption.shape:
            raise ValueError(
                f"caption features {tuple(caption.features.shape[1:])} do not fit this generator "
                f"(caption_len, caption_dim) = {tuple(self.null_caption.shape)}"
            )
        features = caption.features.to(self.null_caption.dtype)
        if drop is not None:
            features = torch.where(drop[:, None, None], self.null_caption, features)
        return self.cap_proj(features)
