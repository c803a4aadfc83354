"""Next-frame sampling (FAR-style): every token of a frame drawn at once, frame after frame,
with a KV cache and classifier-free guidance."""

from __future__ import annotations

import torch

from argen.models.llama import Condition
from argen.models.next_frame import NextFrameLlama
from argen.sampling.config import SamplingConfig
from argen.sampling.decode import Block, GuidedRows, cached_decode
from argen.sampling.guidance import guide
from argen.sampling.logits import sample_logits
from argen.sampling.next_token import check_given


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
    rows = GuidedRows(model, condition, config)
    x = model.embed_condition(rows.rows)  # (B', prefix, D)
    x = torch.cat([x, model.start_inputs(len(rows.rows)).to(x.dtype)], dim=1)  # block 0
    out = torch.zeros(len(condition), frames * frame_len, dtype=torch.long, device=x.device)
    first = 0
    if given is not None:
        if check_given(given, len(condition), out.shape[1]) % frame_len:
            raise ValueError(f"given tokens must be whole frames of {frame_len} tokens")
        first = given.shape[1] // frame_len
        out[:, : given.shape[1]] = given
        x = torch.cat([x, model.embed_tokens(rows.double(given))], dim=1)

    def draw(logits: torch.Tensor, weight: float, k: int) -> torch.Tensor:
        logits = guide(logits, weight) if config.guided else logits  # (B, h*w, V): frame first + k
        flat = sample_logits(logits.flatten(0, 1), config.temperature, config.top_k, config.top_p, generator)
        tokens = flat.view(len(condition), frame_len)
        out[:, (first + k) * frame_len : (first + k + 1) * frame_len] = tokens
        return tokens

    def blocks():
        end = x.shape[1]
        for k in range(first, frames):
            start = 0 if k == first else end - frame_len  # the prefill reads everything so far
            yield Block(torch.arange(start, end, device=x.device), frame_len, config.scale_at(k, frames))
            end += frame_len

    with rows:
        cached_decode(rows, x, blocks(), draw, lambda tokens, k: model.embed_tokens(rows.double(tokens)))
    return out
