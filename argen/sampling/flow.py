"""Drawing continuous tokens with a flow head: integrate its velocity field from noise (t = 1)
to data (t = 0) with an ODE solver (Euler, Heun) or an SDE with the same marginals, whose
Gaussian steps give every sampling path a density (continuous speculative decoding)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from argen.models.heads import FlowHead
from argen.sampling.guidance import guide

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
        stacked = head(torch.cat([x, x]), times, z).float()  # (2B, n, d): [cond; uncond]
        return guide(stacked, scale) if lo <= t <= hi else stacked[: len(x)]

    return velocity


def flow_times(steps: int) -> list[float]:
    """The ODE grid: ``steps`` equal steps from t = 1 (noise) to t = 0 (data)."""
    return torch.linspace(1, 0, steps + 1).tolist()


SDE_LAST_STEP = 0.04  # FlowAR / SiT: the SDE's last step, from t = 0.04 to 0


def sde_times(steps: int) -> list[float]:
    """The SDE grid of FlowAR / SiT for ``steps`` steps: ``steps - 1`` equal steps from t = 1
    to ``SDE_LAST_STEP``, then one step to 0 (one step: from 1 straight to 0)."""
    if steps == 1:
        return [1.0, 0.0]
    return [*torch.linspace(1, SDE_LAST_STEP, steps).tolist(), 0.0]


def sde_step(
    v: torch.Tensor, x: torch.Tensor, t: float, s: float, noise: float, temperature: float = 1.0
) -> tuple[torch.Tensor, float]:
    """One Euler-Maruyama step from t to s < t of the reverse SDE with diffusion g(t)^2 =
    2 * noise * t, which has the ODE's marginals: x_s ~ N(mean, std^2) with the score taken
    from the velocity (E[eps | x_t] = x_t + (1 - t) v). Returns (mean, std), the std scaled by
    ``temperature`` (MAR's temperature: every stochastic step's noise)."""
    eps = x + (1 - t) * v
    return x - (t - s) * (v + noise * eps), sde_std(t, s, noise, temperature)


def sde_std(t: float, s: float, noise: float, temperature: float = 1.0) -> float:
    """The standard deviation of an SDE step from t to s."""
    return temperature * math.sqrt(2 * noise * t * (t - s))


@torch.no_grad()
def sample_sde_path(
    velocity: Velocity,
    x: torch.Tensor,
    steps: int,
    noise: float,
    normal: Callable[[], torch.Tensor],
    temperature: float = 1.0,
    last_mean: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate the SDE from x at t = 1 with Gaussian draws ``normal()`` (shaped like x), each
    step's noise scaled by ``temperature`` -> (the path (steps + 1, *x.shape), ending at the
    sample; the step means (steps, *x.shape)). ``last_mean`` ends at the last step's mean, as
    FlowAR / SiT do, instead of adding its noise."""
    path, means = [x], []
    grid = sde_times(steps)
    for k, (t, s) in enumerate(zip(grid[:-1], grid[1:])):
        mean, std = sde_step(velocity(x, t), x, t, s, noise, temperature)
        x = mean if last_mean and k == steps - 1 else mean + std * normal()
        path.append(x)
        means.append(mean)
    return torch.stack(path), torch.stack(means)


@torch.no_grad()
def path_log_density(
    velocity: Velocity,
    path: torch.Tensor,
    noise: float,
    means: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Log density (B, n) of an SDE path (steps + 1, B, n, d) under ``velocity``'s Gaussian
    transitions (their noise scaled by ``temperature`` > 0, as the path was drawn), up to a
    constant that every velocity field shares (the start and the normalisers); ``means``
    given: the transitions' means, already computed."""
    grid = sde_times(len(path) - 1)
    total = 0.0
    for k, (t, s) in enumerate(zip(grid[:-1], grid[1:])):
        mean = means[k] if means is not None else sde_step(velocity(path[k], t), path[k], t, s, noise)[0]
        std = sde_std(t, s, noise, temperature)
        total = total - (path[k + 1] - mean).square().sum(-1) / (2 * std**2)
    return total


@dataclass
class FlowSettings:
    """How :func:`sample_flow` integrates: ``steps`` of ``solver`` (``euler``, ``heun``, or
    ``sde`` with diffusion scaled by ``noise``); ``temperature`` scales every SDE step's noise
    but not the start (MAR's temperature), and for the ODE solvers, which have no other noise,
    the start (argen's choice); guidance ``cfg_scale`` applies while t lies in ``cfg_interval``."""

    steps: int
    solver: Literal["euler", "heun", "sde"] = "euler"
    temperature: float = 1.0
    cfg_scale: float = 1.0
    cfg_interval: tuple[float, float] = (0.0, 1.0)
    noise: float = 1.0


def start_scale(solver: str, temperature: float) -> float:
    """The scale of the start noise: 1 for the SDE (MAR scales only its steps' noise), the
    temperature for an ODE solver (its only noise)."""
    return 1.0 if solver == "sde" else temperature


@torch.no_grad()
def sample_flow(
    head: FlowHead,
    z: torch.Tensor,
    token_dim: int,
    settings: FlowSettings,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Integrate the head's ODE or SDE from noise (t = 1) to data (t = 0) -> tokens (B, n, d).

    ``z`` is (B, n, D), or with guidance (``cfg_scale != 1``) the stacked [conditional;
    unconditional] rows (2B, n, D); see :func:`flow_velocity`. The SDE ends at its last step's
    mean."""
    s = settings
    steps, solver, temperature, noise = s.steps, s.solver, s.temperature, s.noise
    cfg_scale, cfg_interval = s.cfg_scale, s.cfg_interval
    guided = cfg_scale != 1.0
    rows = z.shape[0] // 2 if guided else z.shape[0]
    shape = (rows, z.shape[1], token_dim)
    x = torch.randn(shape, generator=generator, device=z.device) * start_scale(solver, temperature)
    velocity = flow_velocity(head, z, guided, cfg_scale, cfg_interval)
    if solver == "sde":
        normal = lambda: torch.randn(shape, generator=generator, device=z.device)  # noqa: E731
        return sample_sde_path(velocity, x, steps, noise, normal, temperature, last_mean=True)[0][-1]
    grid = flow_times(steps)
    for t, t_next in zip(grid[:-1], grid[1:]):
        h = t - t_next
        v = velocity(x, t)
        if solver == "heun":
            v = (v + velocity(x - h * v, t_next)) / 2
        x = x - h * v
    return x
