"""Vector quantiser with an optionally l2-normalised codebook (LlamaGen style).

While ``observed`` is a list (a training guard sets it), every lookup appends the vectors it
compared and the ids it chose; the guard reads and clears it (see
:mod:`argen.training.codebook_guard`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class VectorQuantizer(nn.Module):
    def __init__(self, codebook_size: int, dim: int, beta: float = 0.25, l2_norm: bool = True):
        super().__init__()
        self.codebook_size = codebook_size
        self.beta = beta
        self.l2_norm = l2_norm
        self.embedding = nn.Embedding(codebook_size, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)
        self.observed: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def codebook(self) -> torch.Tensor:
        """The code vectors as used for lookup, (K, D)."""
        weight = self.embedding.weight
        return F.normalize(weight, dim=-1) if self.l2_norm else weight

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Quantise ``z`` (B, D, h, w) -> (z_q with straight-through gradient, ids (B, h, w), stats)."""
        z = rearrange(z, "b d h w -> b h w d")
        if self.l2_norm:
            z = F.normalize(z, dim=-1)
        codebook = self.codebook()
        ids = self.nearest(z.reshape(-1, z.shape[-1]))  # (B*h*w,)
        z_q = codebook[ids].view_as(z)
        stats = {
            "codebook_loss": F.mse_loss(z_q, z.detach()),
            "commit_loss": self.beta * F.mse_loss(z, z_q.detach()),
            **self.usage(ids),
        }
        z_q = z + (z_q - z).detach()
        return rearrange(z_q, "b h w d -> b d h w"), ids.view(z.shape[:-1]), stats

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Vectors (N, D) -> ids (N,) of their nearest codes (squared Euclidean distance)."""
        codebook = self.codebook()
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codebook.t() + codebook.pow(2).sum(1)[None, :]
        ids = dist.argmin(dim=1)
        if self.observed is not None and self.training:
            self.observed.append((flat.detach(), ids))
        return ids

    def usage(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Fraction of the codebook used by ``ids`` and the perplexity of their histogram."""
        return code_usage(ids, self.codebook_size)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, h, w) -> code vectors (B, D, h, w)."""
        if ids.dtype.is_floating_point:
            raise TypeError(f"token ids must be integers, got {ids.dtype}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.codebook_size):
            raise ValueError(
                f"token ids must lie in [0, {self.codebook_size}); got [{int(ids.min())}, {int(ids.max())}]"
            )
        return rearrange(self.codebook()[ids], "b h w d -> b d h w")


def code_usage(ids: torch.Tensor, codebook_size: int) -> dict[str, torch.Tensor]:
    """Fraction of ``codebook_size`` codes used by integer ``ids`` (any shape) and the
    perplexity of their histogram."""
    counts = torch.bincount(ids.flatten(), minlength=codebook_size).float()
    probs = counts / counts.sum()
    entropy = -(probs * torch.log(probs.clamp_min(1e-10))).sum()
    return {"codebook_usage": (counts > 0).float().mean(), "perplexity": entropy.exp()}
