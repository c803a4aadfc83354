"""Next-frame sampling (FAR-style): every token of a frame drawn at once, frame after frame,
with a KV cache and classifier-free guidance."""

from __future__ import annotations

import torch

from argen.models.llama import Condition
from argen.models.next_frame import NextFrameLlama
from argen.sampling.logits import sample_logits
from argen.sampling.next_token import SamplingConfig, check_given, guide


@torch.no_grad()
def sample_next_frame(
    model: NextFrameLlama,
    condition: Condition,
    config: SamplingConfig,
    generator: torch.Generator | None = None,
    given: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generate ``model.config.frames`` frames of ``h*w`` ids per condition row -> (B, T*h*w).

    ``given`` (B, n*h*w) are the tokens of n real frames kept as the first ones (frame
    prediction); the guidance scale follows ``config.scale_at(frame, T)``."""
    frames, frame_len = model.config.frames, model.frame_len
    rows = model.with_null(condition) if config.guided else condition
    x = model.embed_condition(rows)  # (B', prefix, D)
    x = torch.cat([x, model.start_inputs(len(rows)).to(x.dtype)], dim=1)  # block 0
    out = torch.zeros(len(condition), frames * frame_len, dtype=torch.long, device=x.device)
    first = 0
    if given is not None:
        if check_given(given, len(condition), out.shape[1]) % frame_len:
            raise ValueError(f"given tokens must be whole frames of {frame_len} tokens")
        first = given.shape[1] // frame_len
        out[:, : given.shape[1]] = given
        x = torch.cat([x, model.embed_tokens(given.repeat(2, 1) if config.guided else given)], dim=1)
    model.setup_cache(rows)
    try:
        pos = torch.arange(x.shape[1], device=x.device)
        for k in range(first, frames):
            logits = model.forward_cached(x, pos)[:, -frame_len:]  # (B', h*w, V): frame k
            if config.guided:
                logits = guide(logits, config.scale_at(k, frames))
            tokens = sample_logits(
                logits.flatten(0, 1), config.temperature, config.top_k, config.top_p, generator
            ).view(len(condition), frame_len)
            out[:, k * frame_len : (k + 1) * frame_len] = tokens
            x = model.embed_tokens(tokens.repeat(2, 1) if config.guided else tokens)  # block k+1
            pos = pos[-1] + 1 + torch.arange(frame_len, device=x.device)
    finally:
        model.clear_cache()
    return out
