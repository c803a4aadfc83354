"""The Fréchet distance between two feature sets: FID and FVD both end here."""

from __future__ import annotations

import torch


def frechet_from_features(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to features a (N, D) and b (M, D), float64:
    |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^1/2)."""
    for name, x in (("reference", a), ("sample", b)):
        if len(x) < 2:
            raise ValueError(f"the {name} set needs at least 2 samples, got {len(x)}")
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    # tr(sqrt(S_a S_b)) = sum of the square roots of the eigenvalues of S_a S_b (real, >= 0)
    root_trace = torch.linalg.eigvals(cov_a @ cov_b).sqrt().real.sum()
    return float((mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * root_trace)
