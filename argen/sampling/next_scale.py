"""Next-scale sampling (VAR): all tokens of a scale at once, scale by scale, with a KV cache.

After each scale the tokenizer adds the sampled ids to ``f_hat`` and area-downsamples it to
the next scale, which becomes the generator's next input. With ``cfg_schedule="linear"`` the
guidance weight ramps from 1 at the first scale to ``cfg_scale`` at the last (VAR's ramp:
VAR's ``cfg=c`` is ``cfg_scale = 1 + c`` here); ``"constant"`` keeps ``cfg_scale``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from argen.sampling.config import SamplingConfig
from argen.sampling.decode import Block, GuidedRows, cached_decode
from argen.sampling.guidance import guide
from argen.sampling.logits import RandomTokens, TokenPick


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


@torch.no_grad()
def sample_next_scale(
    model: torch.nn.Module,
    tokenizer: torch.nn.Module,
    labels: torch.Tensor,
    config: SamplingConfig,
    generator: torch.Generator | None = None,
    edit: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None,
    pick: TokenPick | None = None,
    compile: bool = False,
) -> list[torch.Tensor]:
    """Class ids (B,) -> sampled ids per scale [(B, pn, pn), ...].

    ``edit`` = (source ids per scale, keep masks per scale from :func:`keep_masks`) edits an
    image zero-shot (in-/out-painting, class-conditional editing): at every scale the kept
    positions take the source's tokens, teacher-forced like VAR's demo. ``pick`` turns guided
    logits into ids (default: :class:`RandomTokens`). ``compile`` runs the scale steps after
    the first through ``torch.compile`` with static shapes (one graph per scale)."""
    patch_nums, batch = model.config.patch_nums, len(labels)
    rows = GuidedRows(model, labels, config, compile=compile)
    x = model.embed_start(rows.rows)  # (B', pn_0**2, D)
    f_hat = [tokenizer.empty_f_hat(batch)]
    ids = []
    pick = pick or RandomTokens(config, generator)
    bounds = model.config.scale_bounds

    def draw(logits: torch.Tensor, weight: float, k: int) -> torch.Tensor:
        logits = guide(logits, weight) if config.guided else logits  # (B, pn**2, V)
        flat = pick(logits, bounds[k][0])  # (B, pn**2)
        ids.append(flat.view(batch, patch_nums[k], patch_nums[k]))
        if edit is not None:
            source, keep = edit
            ids[-1] = torch.where(keep[k].to(flat.device), source[k].to(flat.device), ids[-1])
        return ids[-1]

    def feed(scale_ids: torch.Tensor, k: int) -> torch.Tensor:
        f_hat[0], features = tokenizer.next_input(f_hat[0], scale_ids, k)  # (B, pn_{k+1}**2, C)
        return model.embed_inputs(rows.double(features), bounds[k][1])

    with rows:
        cached_decode(rows, x, scale_blocks(model, config, x.device), draw, feed)
    return ids
