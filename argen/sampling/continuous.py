"""Sampling continuous tokens: each token (next-token) or each scale (next-scale) is drawn by
integrating the generator's flow head from noise, with guidance on the head's velocity."""

from __future__ import annotations

import torch

from argen.models.llama import Condition
from argen.sampling.config import SamplingConfig
from argen.sampling.decode import GuidedRows, cached_decode, token_blocks
from argen.sampling.flow import FlowSettings, sample_flow
from argen.sampling.next_scale import scale_blocks


def draw_tokens(
    model: torch.nn.Module, z: torch.Tensor, weight: float, config: SamplingConfig, generator
) -> torch.Tensor:
    """z (B', n, D) of [conditional; unconditional] rows when guided -> tokens (B, n, d)."""
    if config.guided and weight == 1.0:
        z = z[: z.shape[0] // 2]  # guidance off here: the conditional rows alone
    settings = FlowSettings(
        config.flow_steps,
        config.flow_solver,
        config.temperature,
        weight,
        config.cfg_noise_interval,
        config.flow_noise,
    )
    return sample_flow(model.head, z, model.config.token_dim, settings, generator)


@torch.no_grad()
def sample_continuous_next_token(
    model: torch.nn.Module,
    condition: Condition,
    config: SamplingConfig,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Condition rows -> tokens (B, L, d), one token per cached forward (MAR's raster order)."""
    rows = GuidedRows(model, condition, config)
    x = model.embed_condition(rows.rows)  # (B', prefix, D)
    out = []

    def draw(z: torch.Tensor, weight: float, k: int) -> torch.Tensor:
        out.append(draw_tokens(model, z, weight, config, generator))  # (B, 1, d)
        return out[-1]

    with rows:
        blocks = token_blocks(config, x.shape[1], 0, model.config.num_tokens, x.device)
        cached_decode(rows, x, blocks, draw, lambda token, k: model.embed_tokens(rows.double(token)))
    return torch.cat(out, 1)


@torch.no_grad()
def sample_continuous_next_scale(
    model: torch.nn.Module,
    tokenizer: torch.nn.Module,
    labels: torch.Tensor,
    config: SamplingConfig,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Class ids (B,) -> the last scale's tokens, the full grid (B, L, d) (FlowAR)."""
    rows = GuidedRows(model, labels, config)
    x = model.embed_start(rows.rows)  # (B', pn_0**2, D)
    out = []

    def draw(z: torch.Tensor, weight: float, k: int) -> torch.Tensor:
        out.append(draw_tokens(model, z, weight if config.guided else 1.0, config, generator))
        return out[-1]  # (B, pn_k**2, d)

    def feed(tokens: torch.Tensor, k: int) -> torch.Tensor:
        features = tokenizer.next_input(tokens, k)  # (B, pn_{k+1}**2, d)
        return model.embed_inputs(rows.double(features), model.config.scale_bounds[k][1])

    with rows:
        cached_decode(rows, x, scale_blocks(model, config, x.device), draw, feed)
    return out[-1]
