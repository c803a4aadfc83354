"""Next-scale sampling (VAR): all tokens of a scale at once, scale by scale, with a KV cache.

After each scale the tokenizer adds the sampled ids to ``f_hat`` and area-downsamples it to
the next scale, which becomes the generator's next input. With ``cfg_schedule="linear"`` the
guidance weight ramps from 1 at the first scale to ``cfg_scale`` at the last (VAR's ramp:
VAR's ``cfg=c`` is ``cfg_scale = 1 + c`` here); ``"constant"`` keeps ``cfg_scale``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from argen.sampling.logits import sample_logits
from argen.sampling.next_token import SamplingConfig, guide


def keep_masks(regenerate: torch.Tensor, patch_nums: tuple[int, ...]) -> list[torch.Tensor]:
    """A pixel mask (H, W) in [0, 1], 1 where the image is regenerated -> per scale a boolean
    map (pn, pn), True where the source tokens are kept (area-downsampled mask below 0.5)."""
    mask = regenerate.float()[None, None]
    return [F.interpolate(mask, size=(pn, pn), mode="area")[0, 0] < 0.5 for pn in patch_nums]


def scale_weight(config: SamplingConfig, scale: int, num_scales: int) -> float:
    """Guidance weight at ``scale`` of ``num_scales``."""
    if config.cfg_schedule == "linear":
        return 1.0 + (config.cfg_scale - 1.0) * scale / max(num_scales - 1, 1)
    return config.cfg_scale


@torch.no_grad()
def sample_next_scale(
    model: torch.nn.Module,
    tokenizer: torch.nn.Module,
    labels: torch.Tensor,
    config: SamplingConfig,
    generator: torch.Generator | None = None,
    edit: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None,
) -> list[torch.Tensor]:
    """Class ids (B,) -> sampled ids per scale [(B, pn, pn), ...].

    ``edit`` = (source ids per scale, keep masks per scale from :func:`keep_masks`) edits an
    image zero-shot (in-/out-painting, class-conditional editing): at every scale the kept
    positions take the source's tokens, teacher-forced like VAR's demo."""
    patch_nums = model.config.patch_nums
    rows = model.with_null(labels) if config.guided else labels
    batch = len(labels)
    x = model.embed_start(rows)  # (B', pn_0**2, D)
    f_hat = tokenizer.empty_f_hat(batch)
    model.setup_cache(rows)
    ids = []
    try:
        for k, (start, end) in enumerate(model.config.scale_bounds):
            logits = model.forward_cached(x, torch.arange(start, end, device=x.device))  # (B', n, V)
            if config.guided:
                logits = guide(logits, scale_weight(config, k, len(patch_nums)))
            flat = sample_logits(
                logits.flatten(0, 1), config.temperature, config.top_k, config.top_p, generator
            )
            ids.append(flat.view(batch, patch_nums[k], patch_nums[k]))
            if edit is not None:
                source, keep = edit
                ids[-1] = torch.where(keep[k].to(flat.device), source[k].to(flat.device), ids[-1])
            if k + 1 < len(patch_nums):
                f_hat, features = tokenizer.next_input(f_hat, ids[-1], k)  # (B, pn_{k+1}**2, C)
                features = torch.cat([features, features]) if config.guided else features
                x = model.embed_inputs(features, end)
    finally:
        model.clear_cache()
    return ids
