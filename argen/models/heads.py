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
from collections.abc import Callable
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


Velocity = Callable[[torch.Tensor, float], torch.Tensor]


def flow_velocity(
    head: FlowHead,
    z: torch.Tensor,
    guided: bool,
    cfg_scale: float | torch.Tensor = 1.0,
    cfg_interval: tuple[float, float] = (0.0, 1.0),
) -> Velocity:
    """The head's velocity field v(x, t) for tokens x (B, n, d) given z (B, n, D), or with
    ``guided`` the stacked [conditional; unconditional] rows of z (2B, n, D): v_u + s (v_c -
    v_u) while t lies in ``cfg_interval`` (s a float or per token (B, n)), v_c elsewhere."""
    lo, hi = cfg_interval
    scale = cfg_scale[..., None] if torch.is_tensor(cfg_scale) else cfg_scale

    def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
        times = torch.full(z.shape[:2], t, device=z.device)
        if not guided:
            return head(x, times, z).float()
        cond, uncond = head(torch.cat([x, x]), times, z).float().chunk(2)
        return uncond + scale * (cond - uncond) if lo <= t <= hi else cond

    return velocity


def flow_times(steps: int) -> list[float]:
    """The integration grid from t = 1 (noise) to t = 0 (data)."""
    return torch.linspace(1, 0, steps + 1).tolist()


def sde_step(
    v: torch.Tensor, x: torch.Tensor, t: float, s: float, noise: float
) -> tuple[torch.Tensor, float]:
    """One Euler-Maruyama step from t to s < t of the reverse SDE with diffusion g(t)^2 =
    2 * noise * t, which has the ODE's marginals: x_s ~ N(mean, std^2) with the score taken
    from the velocity (E[eps | x_t] = x_t + (1 - t) v). Returns (mean, std)."""
    eps = x + (1 - t) * v
    return x - (t - s) * (v + noise * eps), sde_std(t, s, noise)


def sde_std(t: float, s: float, noise: float) -> float:
    """The standard deviation of an SDE step from t to s."""
    return math.sqrt(2 * noise * t * (t - s))


@torch.no_grad()
def sample_sde_path(
    velocity: Velocity, x: torch.Tensor, steps: int, noise: float, normal: Callable[[], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate the SDE from x at t = 1 with Gaussian draws ``normal()`` (shaped like x) ->
    (the path (steps + 1, *x.shape), ending at the sample; the step means (steps, *x.shape))."""
    path, means = [x], []
    grid = flow_times(steps)
    for t, s in zip(grid[:-1], grid[1:]):
        mean, std = sde_step(velocity(x, t), x, t, s, noise)
        x = mean + std * normal()
        path.append(x)
        means.append(mean)
    return torch.stack(path), torch.stack(means)


@torch.no_grad()
def path_log_density(velocity: Velocity, path: torch.Tensor, noise: float, means: torch.Tensor | None = None):
    """Log density (B, n) of an SDE path (steps + 1, B, n, d) under ``velocity``'s Gaussian
    transitions, up to a constant that every velocity field shares (the start and the
    normalisers); ``means`` given: the transitions' means, already computed."""
    grid = flow_times(len(path) - 1)
    total = 0.0
    for k, (t, s) in enumerate(zip(grid[:-1], grid[1:])):
        mean = means[k] if means is not None else sde_step(velocity(path[k], t), path[k], t, s, noise)[0]
        total = total - (path[k + 1] - mean).square().sum(-1) / (2 * sde_std(t, s, noise) ** 2)
    return total


@torch.no_grad()
def sample_flow(
    head: FlowHead,
    z: torch.Tensor,
    token_dim: int,
    steps: int,
    solver: Literal["euler", "heun", "sde"] = "euler",
    temperature: float = 1.0,
    cfg_scale: float = 1.0,
    cfg_interval: tuple[float, float] = (0.0, 1.0),
    generator: torch.Generator | None = None,
    noise: float = 1.0,
) -> torch.Tensor:
    """Integrate the head's ODE (``euler``, ``heun``) or SDE (``sde``, diffusion scaled by
    ``noise``) from noise (t = 1) to data (t = 0) -> tokens (B, n, d).

    ``z`` is (B, n, D), or with guidance (``cfg_scale != 1``) the stacked [conditional;
    unconditional] rows (2B, n, D); see :func:`flow_velocity`. The start noise is scaled by
    ``temperature``."""
    guided = cfg_scale != 1.0
    rows = z.shape[0] // 2 if guided else z.shape[0]
    shape = (rows, z.shape[1], token_dim)
    x = torch.randn(shape, generator=generator, device=z.device) * temperature
    velocity = flow_velocity(head, z, guided, cfg_scale, cfg_interval)
    if solver == "sde":
        normal = lambda: torch.randn(shape, generator=generator, device=z.device)  # noqa: E731
        return sample_sde_path(velocity, x, steps, noise, normal)[0][-1]
    grid = flow_times(steps)
    for t, t_next in zip(grid[:-1], grid[1:]):
        h = t - t_next
        v = velocity(x, t)
        if solver == "heun":
            v = (v + velocity(x - h * v, t_next)) / 2
        x = x - h * v
    return x
