"""Coarse-to-fine labels (CTF): k-means clusters of a trained VQ codebook.

Every fine id (a code) belongs to one cluster; its coarse label is the cluster's index. A
generator predicts the coarse labels autoregressively and a bidirectional model
(:class:`argen.models.refiner.FineLabelTransformer`) then predicts every fine id at once,
restricted to the members of its cluster. The tokenizer itself is the VQ's: ``encode`` gives
fine ids and ``decode`` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from argen.tokenizers.layout import CoarseToFineLayout
from argen.tokenizers.vq import VQConfig, VQModel


def kmeans(
    vectors: torch.Tensor, clusters: int, iterations: int = 100, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with k-means++ seeding, in float64 on the CPU (the same labels on every
    machine). vectors (N, D) -> (labels (N,) with every cluster non-empty, centres (K, D))."""
    points = vectors.detach().double().cpu()
    if not 1 <= clusters <= len(torch.unique(points, dim=0)):
        raise ValueError(f"cannot make {clusters} non-empty clusters of {len(points)} vectors")
    generator = torch.Generator().manual_seed(seed)
    centres = points[torch.randint(len(points), (1,), generator=generator)]
    for _ in range(clusters - 1):  # k-means++: far points are likelier next centres
        gap = torch.cdist(points, centres).min(1).values.pow(2)  # (N,)
        centres = torch.cat([centres, points[torch.multinomial(gap, 1, generator=generator)]])
    labels = torch.cdist(points, centres).argmin(1)
    for _ in range(iterations):
        counts = torch.bincount(labels, minlength=clusters)
        sums = torch.zeros_like(centres).index_add_(0, labels, points)
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
        distance = torch.cdist(points, centres)  # (N, K)
        new = distance.argmin(1)
        for empty in torch.nonzero(torch.bincount(new, minlength=clusters) == 0)[:, 0].tolist():
            sizes = torch.bincount(new, minlength=clusters)
            own = distance.gather(1, new[:, None])[:, 0].masked_fill(sizes[new] < 2, -1)
            far = int(own.argmax())  # the worst-fitting point of a cluster that can spare it
            new[far], centres[empty] = empty, points[far]
        if torch.equal(new, labels):
            break
        labels = new
    return labels, centres.float()


@dataclass
class CoarseToFineConfig(VQConfig):
    num_clusters: int = 512  # CTF's default for a 16,384-code codebook


class CoarseToFineVQModel(VQModel):
    """A VQ autoencoder and the coarse label of each of its codes."""

    Config = CoarseToFineConfig

    def __init__(self, config: CoarseToFineConfig):
        super().__init__(config)
        if not 1 <= config.num_clusters <= config.codebook_size:
            raise ValueError(f"num_clusters must lie in [1, {config.codebook_size}]")
        self.register_buffer("coarse_labels", torch.zeros(config.codebook_size, dtype=torch.long))

    @classmethod
    def from_vq(cls, vq: VQModel, num_clusters: int, seed: int = 0) -> CoarseToFineVQModel:
        """Cluster ``vq``'s codebook (as used for lookup) into ``num_clusters`` coarse labels."""
        if type(vq) is not VQModel:
            raise ValueError(
                f"coarse-to-fine labels need a single-scale VQ tokenizer, not {type(vq).__name__}"
            )
        model = cls(CoarseToFineConfig(**vars(vq.config), num_clusters=num_clusters))
        labels, _ = kmeans(vq.quantize.codebook(), num_clusters, seed=seed)
        model.load_state_dict(vq.state_dict() | {"coarse_labels": labels})
        return model.to(vq.quantize.embedding.weight.device)

    @property
    def layout(self) -> CoarseToFineLayout:
        grid = super().layout
        return CoarseToFineLayout(
            grid.height, grid.width, self.config.num_clusters, self.config.codebook_size
        )

    def coarse(self, ids: torch.Tensor) -> torch.Tensor:
        """Fine ids (any shape) -> their coarse labels."""
        return self.coarse_labels.to(ids.device)[ids]
