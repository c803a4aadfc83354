"""Flow-matching heads: a small network that turns a transformer's hidden state z into the
value of a continuous token by integrating a learned velocity field.

Paths are linear: x_t = (1 - t) x + t eps (t = 0 data, t = 1 noise) with target velocity
eps - x. ``FlowHead`` with ``attention: false`` is MAR's per-token MLP (residual blocks
modulated by AdaLN from the timestep and z; zero-initialised output); with ``attention:
true`` it is FlowAR's per-scale head, a small bidirectional transformer over the tokens of
one scale with per-position AdaLN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class FlowHeadConfig:
    width: int = 256
    depth: int = 3  # residual blocks
    attention: bool = False  # False: MAR's per-token MLP; True: FlowAR's per-scale transformer
    heads: int = 4  # attention heads (attention: true)
    noise_draws: int = 4  # noise draws per token per training step (MAR uses 4)
    time_sampling: Literal["uniform", "logit_normal"] = "uniform"

    def __post_init__(self) -> None:
        if self.attention and self.width % self.heads:
            raise ValueError(f"head width {self.width} is not divisible by {self.heads} heads")
        if self.noise_draws < 1 or self.depth < 1:
            raise ValueError("noise_draws and depth must be >= 1")


def timestep_features(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of t in [0, 1] (any shape) -> (..., dim), as DiT embeds 1000 t."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = 1000 * t.float()[..., None] * freqs  # (..., half)
    return torch.cat([angles.cos(), angles.sin()], -1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class AdaLNBlock(nn.Module):
    """x + gate * f(modulated LayerNorm(x)), with f an MLP or self-attention + MLP."""

    def __init__(self, width: int, attention: bool, heads: int):
        super().__init__()
        self.heads = heads if attention else 0
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        chunks = 3
        if attention:
            self.attn_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
            self.qkv = nn.Linear(width, 3 * width)
            self.proj = nn.Linear(width, width)
            chunks = 6
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, chunks * width))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x, cond (B, n, W) -> (B, n, W)."""
        mods = self.modulation(cond).chunk(6 if self.heads else 3, -1)
        if self.heads:
            shift, scale, gate = mods[3:]
            b, n, w = x.shape
            qkv = self.qkv(modulate(self.attn_norm(x), shift, scale)).view(
                b, n, 3, self.heads, w // self.heads
            )
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, n, Dh)
            y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, w)
            x = x + gate * self.proj(y)
        shift, scale, gate = mods[:3]
        return x + gate * self.mlp(modulate(self.norm(x), shift, scale))


class FlowHead(nn.Module):
    """velocity(x_t (B, n, d), t (B, n), z (B, n, D)) -> (B, n, d)."""

    def __init__(self, config: FlowHeadConfig, token_dim: int, cond_dim: int):
        super().__init__()
        w = config.width
        self.config = config
        self.input = nn.Linear(token_dim, w)
        self.time = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.cond = nn.Linear(cond_dim, w)
        self.blocks = nn.ModuleList(
            AdaLNBlock(w, config.attention, config.heads) for _ in range(config.depth)
        )
        self.final_norm = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(w, 2 * w))
        self.out = nn.Linear(w, token_dim)
        for layer in (self.final_modulation[1], self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        dtype = self.input.weight.dtype
        cond = self.time(timestep_features(t, self.config.width).to(dtype)) + self.cond(z.to(dtype))
        h = self.input(x.to(dtype))
        for block in self.blocks:
            h = block(h, cond)
        shift, scale = self.final_modulation(cond).chunk(2, -1)
        return self.out(modulate(self.final_norm(h), shift, scale))


def sample_times(shape: tuple[int, ...], kind: str, device: torch.device) -> torch.Tensor:
    """Training times t in (0, 1): uniform, or logit-normal (sigmoid of a standard normal)."""
    if kind == "logit_normal":
        return torch.sigmoid(torch.randn(shape, device=device))
    return torch.rand(shape, device=device)


def flow_matching_loss(head: FlowHead, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Velocity loss of ``head`` on tokens x (B, n, d) given z (B, n, D), averaged over
    ``noise_draws`` draws of (t, eps) per token. MLP heads draw t per token, attention heads
    per row (one noise level for the whole scale)."""
    c = head.config
    x, z = x.repeat(c.noise_draws, 1, 1), z.repeat(c.noise_draws, 1, 1)  # (draws*B, n, ...)
    shape = (x.shape[0], 1 if c.attention else x.shape[1])
    t = sample_times(shape, c.time_sampling, x.device).expand(x.shape[:2])  # (draws*B, n)
    eps = torch.randn_like(x)
    x_t = (1 - t[..., None]) * x + t[..., None] * eps
    return F.mse_loss(head(x_t, t, z).float(), (eps - x).float())
