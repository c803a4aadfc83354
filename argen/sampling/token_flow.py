"""A deterministic map from Gaussian noise to tokens (Distilled Decoding's teacher map).

Put the V codes at vectors c_v in R^d and let a token follow p over them. The straight path
x_t = (1 - t) eps + t c from eps ~ N(0, I) (t = 0) to c ~ sum_v p_v delta(c_v) (t = 1) has the
velocity

    u(x, t) = (sum_v w_v(x, t) c_v - x) / (1 - t),
    w_v(x, t) = softmax_v(log p_v - |x - t c_v|^2 / (2 (1 - t)^2)),

the posterior mean of c given x_t = x, minus x, over the time left. Integrating dx/dt = u from
eps lands on one code, deterministically; with eps ~ N(0, I) the code follows p exactly (the
ODE carries the noise's law to the path's end). Here the ODE runs with ``steps`` Heun steps, and
the token is the code of largest posterior weight at the last step: the law is exact only as
the number of steps grows (at 16 steps the total variation to p stays at the sampling noise of
1e5 draws, about 0.01 for 64 codes; ``tests/test_distilled.py`` checks it).
"""

from __future__ import annotations

import torch

from argen.sampling.config import SamplingConfig
from argen.sampling.logits import filter_logits

FLOW_STEPS = 16


def standardised_codes(codes: torch.Tensor) -> torch.Tensor:
    """Code vectors (..., V, d) centred and scaled to unit variance per codebook, so the map
    works on the noise's scale whatever the tokenizer's. DD flows to the raw (for LlamaGen,
    l2-normalised) code vectors instead: an affine change of the targets changes which noise
    maps to which token, not the tokens' distribution (p either way), so students of either
    map are trained on equally valid teachers, but not on the same pairs."""
    centred = codes - codes.mean(-2, keepdim=True)
    return centred / centred.pow(2).mean((-2, -1), keepdim=True).sqrt().clamp_min(1e-8)


def flow_velocity(
    x: torch.Tensor, t: float, log_p: torch.Tensor, codes: torch.Tensor, half_norms: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """u(x, t) (N, d) and the posterior weights w (N, V) at x (N, d), time t < 1."""
    # -|x - t c|^2 / (2 (1-t)^2) up to terms constant in v
    weights = (log_p + (t * x @ codes.T - t * t * half_norms) / (1 - t) ** 2).softmax(-1)  # (N, V)
    return (weights @ codes - x) / (1 - t), weights


def noise_to_token(
    probs: torch.Tensor, codes: torch.Tensor, noise: torch.Tensor, steps: int = FLOW_STEPS
) -> torch.Tensor:
    """probs (N, V), codes (V, d), noise (N, d) -> ids (N,): the end of the flow from each
    noise vector to its categorical distribution over the codes (Heun steps on a uniform grid,
    in float64; the token is the likeliest code at the last step before t = 1)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    codes = codes.to(torch.float64)
    log_p = probs.to(torch.float64).clamp_min(0).log()  # (N, V); -inf for excluded codes
    half_norms = codes.pow(2).sum(-1) / 2  # (V,)
    x = noise.to(torch.float64)  # (N, d)
    grid = torch.linspace(0, 1, steps + 1, dtype=torch.float64).tolist()
    for t, t_next in zip(grid[:-1], grid[1:]):
        velocity, weights = flow_velocity(x, t, log_p, codes, half_norms)
        if t_next < 1:  # Heun: average with the velocity at the Euler point
            ahead, _ = flow_velocity(x + (t_next - t) * velocity, t_next, log_p, codes, half_norms)
            velocity = (velocity + ahead) / 2
        x = x + (t_next - t) * velocity
    return weights.argmax(-1)


class NoiseTokens:
    """A sampler's token draw that maps fixed noise to tokens: the deterministic teacher of
    Distilled Decoding. ``noise`` (B, L, d) holds one vector per sequence position; ``codes``
    (S, V, d) one codebook per scale (S = 1 for a raster) and ``scale_of`` (L,) the scale of
    every position."""

    def __init__(
        self,
        noise: torch.Tensor,
        codes: torch.Tensor,
        scale_of: torch.Tensor,
        config: SamplingConfig,
        steps: int = FLOW_STEPS,
    ):
        self.noise, self.codes, self.scale_of, self.config, self.steps = noise, codes, scale_of, config, steps

    def __call__(self, logits: torch.Tensor, start: int) -> torch.Tensor:
        """Guided logits (B, n, V) of positions start.. -> ids (B, n)."""
        b, n, _ = logits.shape
        if self.config.temperature == 0:
            return logits.argmax(-1)
        c = self.config
        probs = filter_logits(logits / c.temperature, c.top_k, c.top_p).softmax(-1)
        codes = self.codes[int(self.scale_of[start])].to(logits.device)
        noise = self.noise[:, start : start + n].to(logits.device)  # (B, n, d)
        ids = noise_to_token(probs.flatten(0, 1), codes, noise.flatten(0, 1), self.steps)
        return ids.view(b, n)
