"""Control fidelity of edge-controlled samples: the edges of each sample against the edges it
was asked to follow, as the F1 score of edge pixels matched within a tolerance, and the SSIM of
the two edge maps.

Precision is the fraction of the samples' edge pixels that lie within ``tolerance`` pixels
(Chebyshev distance) of a control edge pixel; recall the fraction of control edge pixels within
``tolerance`` of a sample edge pixel; F1 = 2PR / (P + R), pooled over all pixels of the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def near(edges: torch.Tensor, tolerance: int) -> torch.Tensor:
    """Binary maps (B, 1, H, W) -> whether each pixel lies within ``tolerance`` of an edge."""
    size = 2 * tolerance + 1
    return F.max_pool2d(edges.float(), size, stride=1, padding=tolerance) > 0


def edge_f1(predicted: torch.Tensor, target: torch.Tensor, tolerance: int = 1) -> dict[str, float]:
    """Binary edge maps (B, 1, H, W) -> precision, recall and F1 within ``tolerance`` pixels."""
    predicted, target = predicted > 0.5, target > 0.5
    precision = (predicted & near(target, tolerance)).sum() / predicted.sum().clamp(min=1)
    recall = (target & near(predicted, tolerance)).sum() / target.sum().clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    return {"precision": precision.item(), "recall": recall.item(), "f1": f1.item()}


def edge_ssim(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """Mean SSIM (torchmetrics, Gaussian window 11 / sigma 1.5) of two edge-map batches
    (B, 1, H, W) in [0, 1]."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(predicted.float(), target.float(), data_range=1.0).item()
