"""Spatial control by conditional decoding (ControlAR): a small convolutional encoder turns a
control map (edges, depth, segmentation) into one feature per image token, and the feature of
token i is added to the input that predicts token i (the last prefix position for token 0, the
embedding of token i-1 otherwise), like a positional encoding, before the first block and
optionally before later ones. The sequence is as long as without control, so the KV cache,
classifier-free guidance (the control stays in both rows; the null condition drops the class or
caption only) and speculative verification work unchanged. The projections into the model start
at zero: a controlled model starts as its base model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from argen.models.caption import Caption
from argen.models.llama import Llama, LlamaConfig


@dataclass
class Controlled:
    """A condition (class ids (B,) or a Caption) with its control maps (B, C, H, W) in [0, 1]."""

    base: torch.Tensor | Caption
    maps: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.maps) != len(self.base):
            raise ValueError(f"{len(self.maps)} control maps for {len(self.base)} conditions")

    def __len__(self) -> int:
        return len(self.base)

    def to(self, device: torch.device | str) -> Controlled:
        return Controlled(self.base.to(device), self.maps.to(device))


@dataclass
class ControlledConfig(LlamaConfig):
    control_channels: int = 1  # channels of the control map
    control_resolution: int = 256  # pixels per side of the control map (the images')
    control_width: int = 64  # channels of the encoder's convolutions
    control_layers: tuple[int, ...] = (0,)  # blocks whose input adds the control (0: the token inputs)
    control_kind: str = "canny"  # what the maps were made with: canny, or a folder's maps
    control_thresholds: tuple[float, float] = (0.1, 0.2)  # canny: the detector's low and high thresholds

    def __post_init__(self) -> None:
        super().__post_init__()
        factor = self.control_resolution // self.grid_size[0]
        if self.control_resolution != factor * self.grid_size[0] or factor & (factor - 1):
            raise ValueError(
                f"control_resolution {self.control_resolution} must be the token grid's side "
                f"{self.grid_size[0]} times a power of two"
            )
        if not self.control_layers or any(not 0 <= k < self.n_layer for k in self.control_layers):
            raise ValueError(
                f"control_layers must be block indices in [0, {self.n_layer}), got {self.control_layers}"
            )


class ControlEncoder(nn.Module):
    """Control map (B, C, R, R) -> one feature per token and fused layer (F, B, h*w, D):
    3x3 convolutions with a stride of 2 until the token grid, then a zero-initialised linear
    projection per fused layer."""

    def __init__(self, c: ControlledConfig):
        super().__init__()
        downsamples = int(math.log2(c.control_resolution // c.grid_size[0]))
        convs = [nn.Conv2d(c.control_channels, c.control_width, 3, padding=1), nn.SiLU()]
        for _ in range(downsamples):
            convs += [nn.Conv2d(c.control_width, c.control_width, 3, stride=2, padding=1), nn.SiLU()]
        convs += [nn.Conv2d(c.control_width, c.control_width, 3, padding=1), nn.SiLU()]
        self.convs = nn.Sequential(*convs)
        self.projections = nn.ModuleList(nn.Linear(c.control_width, c.dim) for _ in c.control_layers)
        for projection in self.projections:
            nn.init.zeros_(projection.weight)
            nn.init.zeros_(projection.bias)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        features = self.convs(maps).flatten(2).transpose(1, 2)  # (B, h*w, W): raster order
        return torch.stack([projection(features) for projection in self.projections])  # (F, B, h*w, D)


class ControlledLlama(Llama):
    """A :class:`Llama` whose conditions are :class:`Controlled`: the control feature of token i
    joins the input at the position that predicts it, in the blocks of ``control_layers``."""

    Config = ControlledConfig

    def __init__(self, config: ControlledConfig):
        super().__init__(config)
        self.control_encoder = ControlEncoder(config)
        self.fused = {layer: i for i, layer in enumerate(config.control_layers)}

    def check_control(self, condition) -> Controlled:
        if not isinstance(condition, Controlled):
            raise ValueError("this generator is controlled: it needs control maps (sample.py --control)")
        c, maps = self.config, condition.maps
        expected = (c.control_channels, c.control_resolution, c.control_resolution)
        if tuple(maps.shape[1:]) != expected:
            raise ValueError(
                f"control maps must be (B, {', '.join(map(str, expected))}), got {tuple(maps.shape)}"
            )
        return condition

    def sequence_control(self, maps: torch.Tensor, length: int) -> torch.Tensor:
        """Control maps (B, C, R, R) -> the additions (F, B, length, D) at every sequence position:
        token i's feature at position prefix_len - 1 + i, zero elsewhere."""
        features = self.control_encoder(maps.to(self.output.weight.dtype))  # (F, B, L, D)
        start = self.prefix_len - 1
        out = features.new_zeros(*features.shape[:2], length, features.shape[-1])
        end = min(length, start + features.shape[2])
        out[:, :, start:end] = features[:, :, : end - start]
        return out

    def embed_condition(self, condition: Controlled) -> torch.Tensor:
        return super().embed_condition(self.check_control(condition).base)

    def with_null(self, condition: Controlled) -> Controlled:
        """[condition; null condition], both rows with the control."""
        return Controlled(super().with_null(condition.base), condition.maps.repeat(2, 1, 1, 1))

    def attention_mask(self, condition: Controlled, length: int) -> torch.Tensor:
        return super().attention_mask(condition.base, length)

    def layer_additions(self, condition: Controlled, length: int) -> dict[int, torch.Tensor]:
        """The control features (B, length, D) joining the input of the blocks in
        ``control_layers``."""
        control = self.sequence_control(self.check_control(condition).maps, length)  # (F, B, S, D)
        return {layer: control[i] for layer, i in self.fused.items()}
