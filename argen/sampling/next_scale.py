"""Next-scale sampling (VAR): all tokens of a scale at once, scale by scale, with a KV cache.

After each scale the tokenizer adds the sampled ids to ``f_hat`` and area-downsamples it to
the next scale, which becomes the generator's next input. With ``cfg_schedule="linear"`` the
guidance weight ramps from 1 at the first scale to ``cfg_scale`` at the last (VAR's ramp:
VAR's ``cfg=c`` is ``cfg_scale = 1 + c`` here); ``"constant"`` keeps ``cfg_scale``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from argen.sampling.config import SamplingConfig
from argen.sampling.decode import Block, GuidedRows
from argen.sampling.guidance import guide
from argen.sampling.logits import RandomTokens, TokenPick
from argen.tokenizers.protocols import ScaleTokenizer


def keep_masks(regenerate: torch.Tensor, patch_nums: tuple[int, ...]) -> list[torch.Tensor]:
    """A pixel mask (H, W) in [0, 1], 1 where the image is regenerated -> per scale a boolean
    map (pn, pn), True where the source tokens are kept (area-downsampled mask below 0.5)."""
    mask = regenerate.float()[None, None]
    return [F.interpolate(mask, size=(pn, pn), mode="area")[0, 0] < 0.5 for pn in patch_nums]


def scale_blocks(model: torch.nn.Module, config: SamplingConfig, device) -> list[Block]:
    """One block per scale: its positions, all of them predicting, and its guidance weight."""
    scales = len(model.config.patch_nums)
    return [
        Block(torch.arange(start, end, device=device), end - start, config.scale_weight(k, scales))
        for k, (start, end) in enumerate(model.config.scale_bounds)
    ]


@dataclass
class NextScaleOptions:
    """What a next-scale call adds to its :class:`SamplingConfig`.

    ``edit`` = (source ids per scale, keep masks per scale from :func:`keep_masks`) edits an
    image zero-shot (in-/out-painting, class-conditional editing): at every scale the kept
    positions take the source's tokens, teacher-forced like VAR's demo. ``pick`` turns guided
    logits into ids (default: :class:`RandomTokens`). ``compile`` runs the scale steps after the
    first through ``torch.compile`` with static shapes (one graph per scale)."""

    edit: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None
    pick: TokenPick | None = None
    compile: bool = False


@torch.no_grad()
def sample_next_scale(
    model: torch.nn.Module,
    tokenizer: ScaleTokenizer,
    labels: torch.Tensor,
    config: SamplingConfig,
    generator: torch.Generator | None = None,
    options: NextScaleOptions | None = None,
) -> list[torch.Tensor]:
    """Class ids (B,) -> sampled ids per scale [(B, pn, pn), ...] (or whatever ``pick`` makes
    of a token: (B, pn, pn, d) bits): the prefill reads the class, then each step draws one
    scale and feeds the tokenizer's next input back."""
    o = options or NextScaleOptions()
    patch_nums, batch, bounds = model.config.patch_nums, len(labels), model.config.scale_bounds
    rows = GuidedRows(model, labels, config, compile=o.compile)
    pick = o.pick or RandomTokens(config, generator)
    x = model.embed_start(rows.rows)  # (B', pn_0**2, D)
    f_hat, ids = tokenizer.empty_f_hat(batch), []
    with rows:
        for k, block in enumerate(scale_blocks(model, config, x.device)):
            forward = model.forward_cached if k == 0 else rows.step
            logits = forward(x, block.positions)[:, -block.outputs :]  # (B', pn**2, V)
            logits = guide(logits, block.weight) if config.guided else logits  # (B, pn**2, V)
            scale = pick(logits, bounds[k][0]).unflatten(1, (patch_nums[k],) * 2)  # (B, pn, pn, ...)
            if o.edit is not None:
                source, keep = o.edit
                scale = torch.where(keep[k].to(scale.device), source[k].to(scale.device), scale)
            ids.append(scale)
            if k + 1 < len(patch_nums):
                f_hat, features = tokenizer.next_input(f_hat, scale, k)  # (B, pn_{k+1}**2, C)
                x = model.embed_inputs(rows.double(features), bounds[k][1])
    return ids
