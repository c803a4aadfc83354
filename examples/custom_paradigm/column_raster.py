"""A paradigm defined outside argen: raster ids generated column by column.

Everything a new way of generating needs is this file. Import it before argen looks the
paradigm up -- ``plugins: [examples/custom_paradigm/column_raster.py]`` in a recipe,
``sample.py --plugin examples/custom_paradigm/column_raster.py``, or install this folder
(``pip install -e examples/custom_paradigm``: its ``argen.plugins`` entry point imports the
module) -- and name it in a recipe: ``paradigm: column_raster``. The trained generator records
the name, so ``sample.py --ckpt RUN`` finds it again.

The generator is argen's Llama over a VQ grid, as for ``paradigm: raster``; only the order
changes: position ``i`` of the sequence is grid cell ``(i % h, i // h)``. The Llama's 2-D RoPE
reads the sequence as a raster of the transposed grid, which is what it then is.
"""

from __future__ import annotations

import torch

from argen.paradigms import register_paradigm
from argen.paradigms.base import cross_entropy
from argen.paradigms.raster import RasterIds


def to_columns(grid: torch.Tensor) -> torch.Tensor:
    """Ids (B, h, w) -> sequences (B, h*w) in column-major order."""
    return grid.transpose(1, 2).flatten(1)  # (B, w, h) -> (B, w*h)


def from_columns(ids: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Column-major sequences (B, h*w) -> ids (B, h, w)."""
    return ids.view(-1, width, height).transpose(1, 2)  # (B, w, h) -> (B, h, w)


class ColumnRaster(RasterIds):
    """Next-token generation over a VQ grid in column-major order."""

    name = "column_raster"
    default = False  # recipes name it; plain raster recipes keep ``raster``

    def loss(self, model, tokenizer, tokens, condition):
        layout = tokenizer.layout
        ids = to_columns(tokens.view(-1, layout.height, layout.width))  # (B, L) column-major
        return cross_entropy(model(ids, condition), ids)

    # sampling draws the sequence exactly as ``raster`` does (RasterIds.sample); only its
    # reading back into the grid differs
    def decode(self, tokenizer, ids: torch.Tensor):
        layout = tokenizer.layout
        grid = from_columns(ids, layout.height, layout.width)  # (B, h, w)
        return super().decode(tokenizer, grid.flatten(1))


register_paradigm(ColumnRaster())
