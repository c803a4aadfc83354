"""Images from a generator and its tokenizer, in seeded batches that any number of
processes can share without duplicates."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from tqdm import tqdm

from argen.eval.npz import to_uint8
from argen.sampling.next_token import SamplingConfig, sample_next_token


def batch_seed(seed: int, batch_index: int) -> int:
    """The seed of one batch: the same whichever process draws it."""
    return seed * 1_000_003 + batch_index


@torch.no_grad()
def generate_images(
    model: torch.nn.Module,
    tokenizer: torch.nn.Module,
    labels: torch.Tensor,
    config: SamplingConfig,
    batch_size: int,
    seed: int,
    batch_indices: Iterable[int] | None = None,
    progress: bool = True,
) -> dict[int, np.ndarray]:
    """Sample images for ``labels`` (N,): returns {batch index: uint8 (b, H, W, C)}.

    ``batch_indices`` picks which batches of ``batch_size`` to draw (default: all).
    """
    device = next(model.parameters()).device
    layout = tokenizer.layout
    num_batches = -(-len(labels) // batch_size)
    chosen = list(range(num_batches) if batch_indices is None else batch_indices)
    out = {}
    for b in tqdm(chosen, desc="sampling", disable=not progress):
        rows = labels[b * batch_size : (b + 1) * batch_size].to(device)
        generator = torch.Generator(device=device).manual_seed(batch_seed(seed, b))
        ids = sample_next_token(model, rows, config, generator)  # (b, h*w)
        pixels = tokenizer.decode(ids.view(-1, layout.height, layout.width))
        out[b] = to_uint8(pixels)
    return out
