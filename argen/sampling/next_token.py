"""Next-token sampling over a raster grid: batched, KV-cached, classifier-free guidance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from argen.models.llama import Condition
from argen.sampling.logits import sample_logits


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


class GridSampler(Protocol):
    """A replacement for :func:`sample_next_token` on raster grids (speculative decoding,
    coarse-to-fine): condition rows -> ids (B, L)."""

    def __call__(
        self, model: torch.nn.Module, condition: Condition, config: SamplingConfig, generator: torch.Generator
    ) -> torch.Tensor: ...


def guide(logits: torch.Tensor, scale: float) -> torch.Tensor:
    """Combine stacked [conditional; unconditional] rows (2B, ...) -> (B, ...)."""
    cond, uncond = logits.chunk(2)
    return uncond + scale * (cond - uncond)


def compiled_step(model: torch.nn.Module, cuda: bool):
    """``model.forward_cached`` compiled for one-token inputs."""
    mode = "reduce-overhead" if cuda else "default"
    return torch.compile(model.forward_cached, mode=mode, fullgraph=True, dynamic=False)


@torch.no_grad()
def sample_next_token(
    model: torch.nn.Module,
    condition: Condition,
    config: SamplingConfig,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    compile: bool = False,
    stop_token: int | None = None,
    pad_token: int = 0,
    given: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generate ``model.config.num_tokens`` ids per condition row (class ids (B,) or a
    :class:`Caption`) -> (B, L).

    With guidance the conditional and unconditional rows run as one batch of 2B. Without
    ``use_cache`` every step recomputes the whole prefix (the reference for tests and
    benchmarks). ``compile`` runs the one-token step through ``torch.compile`` (static shapes;
    CUDA graphs on GPU, gpt-fast style). With ``stop_token`` (byte streams' EOS) ``pad_token``
    is never drawn, a row that has emitted the stop token continues with padding, and the
    loop ends once every row has; else it never waits on the device. ``given`` (B, G) ids are
    kept as the first G tokens (frame prediction: the tokens of real frames) and only the rest
    is drawn.
    """
    num_tokens = model.config.num_tokens
    rows = model.with_null(condition) if config.guided else condition
    x = model.embed_condition(rows)  # (B', prefix, D)
    out = torch.full((len(condition), num_tokens), pad_token, dtype=torch.long, device=x.device)
    done = torch.zeros(len(condition), dtype=torch.bool, device=x.device)
    first = 0
    if given is not None:
        first = check_given(given, len(condition), num_tokens)
        out[:, :first] = given
        x = torch.cat([x, model.embed_tokens(given.repeat(2, 1) if config.guided else given)], dim=1)
    if use_cache:
        model.setup_cache(rows)
    step = compiled_step(model, x.is_cuda) if compile else model.forward_cached
    try:
        pos = torch.arange(x.shape[1], device=x.device)
        for i in range(first, num_tokens):
            if use_cache:
                forward = model.forward_cached if i == first else step  # prefill runs eagerly
                logits = forward(x, pos)[:, -1]  # (B', V)
            else:
                padded = torch.cat([out[:, :i], out.new_zeros(out.shape[0], num_tokens - i)], 1)
                logits = model(padded.repeat(2, 1) if config.guided else padded, rows)[:, i]
            if config.guided:
                logits = guide(logits, config.scale_at(i, num_tokens))
            if stop_token is not None:
                logits[:, pad_token] = float("-inf")  # padding is never drawn, only filled in
            token = sample_logits(logits, config.temperature, config.top_k, config.top_p, generator)
            if stop_token is not None:
                token = token.masked_fill(done, pad_token)
                done |= token == stop_token
            out[:, i] = token
            if stop_token is not None and bool(done.all()):
                break
            x = model.embed_tokens(token.repeat(2) if config.guided else token)[:, None]
            pos = pos[-1:] + 1
    finally:
        if use_cache:
            model.clear_cache()
    return out


def check_given(given: torch.Tensor, rows: int, num_tokens: int) -> int:
    """The number of given tokens, after checking their shape (rows, G) with G < num_tokens."""
    if given.ndim != 2 or len(given) != rows or not 0 < given.shape[1] < num_tokens:
        raise ValueError(
            f"given tokens must be ({rows}, G) with 0 < G < {num_tokens}, got {tuple(given.shape)}"
        )
    return given.shape[1]
