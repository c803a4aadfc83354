"""Spatial control by conditional decoding (ControlAR): a small convolutional encoder turns a
control map (edges, depth, segmentation) into one feature per image token, and the feature of
token i is added to the input that predicts token i (the last prefix position for token 0, the
embedding of token i-1 otherwise), like a positional encoding, before the first block and
optionally before later ones (ControlAR: blocks 0, n/3 and 2n/3, each through its own two-layer
MLP). The sequence is as long as without control, so the KV cache, classifier-free guidance and
speculative verification work unchanged. The projections into the model start at zero: a
controlled model starts as its base model.

Guidance follows ControlAR by default (``null_control: zero``): training drops the control
together with the class (or caption), and the unconditional rows of guidance see no control, so
guidance also strengthens adherence to the control. ``null_control: kept`` keeps the control in
every row and never drops it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from argen.models.caption import Caption
from argen.models.llama import Llama, LlamaConfig


@dataclass
class Controlled:
    """A condition (class ids (B,) or a Caption) with its control maps (B, C, H, W) in [0, 1];
    ``null`` (B,) bool marks the rows whose condition is the null one (dropped in training, the
    unconditional rows of guidance)."""

    base: torch.Tensor | Caption
    maps: torch.Tensor
    null: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if len(self.maps) != len(self.base):
            raise ValueError(f"{len(self.maps)} control maps for {len(self.base)} conditions")

    def __len__(self) -> int:
        return len(self.base)

    def to(self, device: torch.device | str) -> Controlled:
        null = None if self.null is None else self.null.to(device)
        return Controlled(self.base.to(device), self.maps.to(device), null)


@dataclass
class ControlledConfig(LlamaConfig):
    control_channels: int = 1  # channels of the control map
    control_resolution: int = 256  # pixels per side of the control map (the images')
    control_width: int = 64  # channels of the encoder's convolutions
    control_layers: tuple[int, ...] = (0,)  # blocks whose input adds the control (0: the token inputs)
    control_kind: str = "canny"  # what the maps were made with: canny, or a folder's maps
    control_thresholds: tuple[float, float] = (0.1, 0.2)  # canny: the detector's low and high thresholds
    control_detector: str = "kornia"  # canny: kornia (argen's) or opencv (ControlAR's)
    control_projection: Literal["linear", "mlp"] = "linear"  # per fused block; mlp: ControlAR's two layers
    null_control: Literal["zero", "kept"] = "zero"  # the null condition's control (see the module)

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


def projection(c: ControlledConfig) -> nn.Module:
    """Encoder features -> one fused block's addition, its last layer zero-initialised: a linear
    layer, or ControlAR's two-layer MLP."""
    if c.control_projection == "mlp":
        layers = [nn.Linear(c.control_width, c.dim), nn.GELU(), nn.Linear(c.dim, c.dim)]
    else:
        layers = [nn.Linear(c.control_width, c.dim)]
    nn.init.zeros_(layers[-1].weight)
    nn.init.zeros_(layers[-1].bias)
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


def controlar_layers(n_layer: int) -> tuple[int, ...]:
    """ControlAR's fused blocks: 0, n/3 and 2n/3 (distinct)."""
    return tuple(sorted({0, n_layer // 3, 2 * n_layer // 3}))


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
        self.projections = nn.ModuleList(projection(c) for _ in c.control_layers)

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

    def forward(self, tokens: torch.Tensor, condition: Controlled) -> torch.Tensor:
        """Teacher forcing (see :class:`Llama`); in training the rows of ``class_dropout`` take
        the null condition (and, by default, lose their control)."""
        condition = self.check_control(condition)
        if self.training and self.config.class_dropout > 0 and condition.null is None:
            null = torch.rand(len(condition), device=condition.maps.device) < self.config.class_dropout
            condition = Controlled(condition.base, condition.maps, null)
        return super().forward(tokens, condition)

    def embed_condition(self, condition: Controlled) -> torch.Tensor:
        condition = self.check_control(condition)
        if condition.null is None:
            return super().embed_condition(condition.base)
        return self.prefix.embed(condition.base, condition.null)

    def with_null(self, condition: Controlled) -> Controlled:
        """[condition; null condition], both rows with the control maps (whether the null rows
        see them is ``null_control``'s)."""
        null = torch.arange(2 * len(condition), device=condition.maps.device) >= len(condition)
        return Controlled(super().with_null(condition.base), condition.maps.repeat(2, 1, 1, 1), null)

    def attention_mask(self, condition: Controlled, length: int) -> torch.Tensor:
        return super().attention_mask(condition.base, length)

    def layer_additions(self, condition: Controlled, length: int) -> dict[int, torch.Tensor]:
        """The control features (B, length, D) joining the input of the blocks in
        ``control_layers``."""
        condition = self.check_control(condition)
        control = self.sequence_control(condition.maps, length)  # (F, B, S, D)
        if condition.null is not None and self.config.null_control == "zero":
            control = control * ~condition.null[None, :, None, None]  # null rows: no control
        return {layer: control[i] for layer, i in self.fused.items()}
