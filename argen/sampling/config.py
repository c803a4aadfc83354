"""The settings every sampler shares, and the guidance schedules they imply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# FlowAR guides from noise until 0.9 of its time (0 = noise, 1 = data): noise levels 0.1..1 here
FLOWAR_CFG_NOISE_INTERVAL = (0.1, 1.0)


@dataclass
class SamplingConfig:
    """Settings shared by the samplers.

    ``cfg_interval`` is the fraction (start, end) of the sequence on which guidance applies;
    ``cfg_schedule="linear"`` ramps the scale from 1 at the first token to ``cfg_scale`` at
    the last. Continuous tokens are drawn by ``flow_steps`` steps of ``flow_solver`` (an ODE
    solver, or ``sde`` with its diffusion scaled by ``flow_noise``) from noise scaled by
    ``temperature``, guided only while the noise level t (1 = noise, 0 = data) lies in
    ``cfg_noise_interval``.
    """

    cfg_scale: float = 1.0
    cfg_interval: tuple[float, float] = (0.0, 1.0)
    cfg_schedule: Literal["constant", "linear"] = "constant"
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    flow_steps: int = 25
    flow_solver: Literal["euler", "heun", "sde"] = "euler"
    flow_noise: float = 1.0  # sde: diffusion g(t)^2 = 2 * flow_noise * t
    cfg_noise_interval: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        for name in ("cfg_interval", "cfg_noise_interval"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi <= 1:
                raise ValueError(f"{name} must satisfy 0 <= start <= end <= 1, got {(lo, hi)}")
        if self.flow_steps < 1 or self.flow_solver not in ("euler", "heun", "sde"):
            raise ValueError("flow_steps must be >= 1 and flow_solver euler, heun or sde")
        if self.flow_noise < 0:
            raise ValueError(f"flow_noise must be >= 0, got {self.flow_noise}")

    @property
    def guided(self) -> bool:
        return self.cfg_scale != 1.0

    def scale_at(self, index: int, length: int) -> float:
        """Guidance scale for token ``index`` of ``length``."""
        lo, hi = self.cfg_interval
        if not lo <= index / length < hi:
            return 1.0
        if self.cfg_schedule == "linear":
            return 1.0 + (self.cfg_scale - 1.0) * (index + 1) / length
        return self.cfg_scale

    def scale_weight(self, scale: int, num_scales: int) -> float:
        """Guidance weight at ``scale`` of ``num_scales`` (next-scale sampling): with the linear
        schedule VAR's ramp from 1 at the first scale to ``cfg_scale`` at the last."""
        if self.cfg_schedule == "linear":
            return 1.0 + (self.cfg_scale - 1.0) * scale / max(num_scales - 1, 1)
        return self.cfg_scale
