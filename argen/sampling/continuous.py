"""Sampling continuous tokens: each token (next-token) or each scale (next-scale) is drawn by
integrating the generator's flow head from noise, with guidance on the head's velocity."""

from __future__ import annotations

import torch

from argen.models.heads import sample_flow
from argen.models.llama import Condition
from argen.sampling.next_scale import scale_weight
from argen.sampling.next_token import SamplingConfig


def draw_tokens(
    model: torch.nn.Module, z: torch.Tensor, weight: float, config: SamplingConfig, generator
) -> torch.Tensor:
    """z (B', n, D) of [conditional; unconditional] rows when guided -> tokens (B, n, d)."""
    if config.guided and weight == 1.0:
        z = z[: z.shape[0] // 2]  # guidance off here: the conditional rows alone
    return sample_flow(
        model.head,
        z,
        model.config.token_dim,
        config.flow_steps,
        config.flow_solver,
        config.temperature,
        weight,
        config.cfg_noise_interval,
        generator,
        config.flow_noise,
    )


@torch.no_grad()
def sample_continuous_next_token(
    model: torch.nn.Module,
    condition: Condition,
    config: SamplingConfig,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Condition rows -> tokens (B, L, d), one token per cached forward (MAR's raster order)."""
    num_tokens = model.config.num_tokens
    rows = model.with_null(condition) if config.guided else condition
    x = model.embed_condition(rows)  # (B', prefix, D)
    out = []
    model.setup_cache(rows)
    try:
        pos = torch.arange(x.shape[1], device=x.device)
        for i in range(num_tokens):
            z = model.forward_cached(x, pos)[:, -1:]  # (B', 1, D)
            weight = config.scale_at(i, num_tokens) if config.guided else 1.0
            token = draw_tokens(model, z, weight, config, generator)  # (B, 1, d)
            out.append(token)
            x = model.embed_tokens(torch.cat([token, token]) if config.guided else token)
            pos = pos[-1:] + 1
    finally:
        model.clear_cache()
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
    patch_nums = model.config.patch_nums
    rows = model.with_null(labels) if config.guided else labels
    x = model.embed_start(rows)  # (B', pn_0**2, D)
    model.setup_cache(rows)
    try:
        for k, (start, end) in enumerate(model.config.scale_bounds):
            z = model.forward_cached(x, torch.arange(start, end, device=x.device))  # (B', n, D)
            weight = scale_weight(config, k, len(patch_nums)) if config.guided else 1.0
            tokens = draw_tokens(model, z, weight, config, generator)  # (B, pn_k**2, d)
            if k + 1 < len(patch_nums):
                features = tokenizer.next_input(tokens, k)  # (B, pn_{k+1}**2, d)
                x = model.embed_inputs(torch.cat([features, features]) if config.guided else features, end)
    finally:
        model.clear_cache()
    return tokens
