"""Frequency-band residual VQ (NFIG): low frequencies first, higher bands after.

Stage k of ``patch_nums`` carries the band of latent frequencies that a pn_k x pn_k grid holds
exactly and a pn_{k-1} x pn_{k-1} grid does not: the cutoff grows with the stage's side, so
the lowest bands take the fewest tokens. Grids are moved between sizes by ideal (Fourier)
resampling: downsampling crops the spectrum, upsampling zero-pads it, so ``upsample(
downsample(x))`` is the FFT-mask low-pass of x and the bands of x sum back to x exactly.

Encoding quantises band by band, low to high: stage k quantises the residual's low-pass
content at pn_k x pn_k (mostly band k; whatever earlier stages missed is caught again), and
its codes, upsampled, are band-limited to that stage. The generator and the next-scale
sampler treat bands as scales.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch
from torch import nn

from argen.tokenizers.multiscale import PyramidVQConfig, PyramidVQModel
from argen.tokenizers.quantizer import VectorQuantizer


@cache
def fourier_resample_matrix(size_out: int, size_in: int) -> torch.Tensor:
    """The (size_out, size_in) float64 matrix of ideal periodic resampling along one axis.

    Frequencies both grids hold are copied; the smaller grid's Nyquist bin (even sizes) is
    folded from, or split evenly into, the larger grid's +/- Nyquist pair, so the result stays
    real and ``R(n, N) @ R(N, n)`` is the identity. Means are preserved."""
    if size_out == size_in:
        return torch.eye(size_in, dtype=torch.float64)
    spectrum = torch.fft.fft(torch.eye(size_in, dtype=torch.float64), dim=0)  # column j: impulse j
    out = spectrum.new_zeros(size_out, size_in)
    n = min(size_out, size_in)
    half = (n - 1) // 2  # frequencies -half..half are held by both grids
    out[: half + 1] = spectrum[: half + 1]
    if half:
        out[-half:] = spectrum[-half:]
    if n % 2 == 0:  # the smaller grid's Nyquist frequency n/2
        nyquist = n // 2
        if size_out < size_in:
            out[nyquist] = spectrum[nyquist] + spectrum[-nyquist]
        else:
            out[nyquist] = out[-nyquist] = spectrum[nyquist] / 2
    return torch.fft.ifft(out, dim=0).real * size_out / size_in


def fourier_resample(x: torch.Tensor, size: int) -> torch.Tensor:
    """Square maps (..., n, n) -> (..., size, size) by ideal resampling on both axes."""
    matrix = fourier_resample_matrix(size, x.shape[-1]).to(x.device, x.dtype)  # (size, n)
    return matrix @ x @ matrix.T


def low_pass(x: torch.Tensor, size: int) -> torch.Tensor:
    """The part of square maps (..., n, n) that a size x size grid holds, at size n."""
    return fourier_resample(fourier_resample(x, size), x.shape[-1])


def frequency_bands(x: torch.Tensor, sides: tuple[int, ...]) -> list[torch.Tensor]:
    """Square maps (..., n, n) -> their bands for grids ``sides`` (increasing, ending at n),
    each (..., n, n): band k = low_pass(x, sides[k]) - low_pass(x, sides[k-1]). They sum to x."""
    if sides[-1] != x.shape[-1]:
        raise ValueError(f"the last side {sides[-1]} must be the map size {x.shape[-1]}")
    passes = [low_pass(x, s) for s in sides]
    return [p - q for p, q in zip(passes, [torch.zeros_like(x), *passes[:-1]])]


@dataclass
class FrequencyVQConfig(PyramidVQConfig):
    """``band_codebooks``: one codebook per band (every band's ids index its own codebook of
    ``codebook_size`` codes) instead of one shared by all."""

    band_codebooks: bool = False


class FrequencyVQModel(PyramidVQModel):
    Config = FrequencyVQConfig

    def __init__(self, config: FrequencyVQConfig):
        super().__init__(config)
        extra = len(config.patch_nums) - 1 if config.band_codebooks else 0
        self.band_quantize = nn.ModuleList(
            VectorQuantizer(config.codebook_size, config.codebook_dim, config.commit_beta, False)
            for _ in range(extra)
        )  # bands 1..: band 0 uses ``quantize``

    def quantizer(self, scale: int) -> VectorQuantizer:
        if scale and self.config.band_codebooks:
            return self.band_quantize[scale - 1]
        return self.quantize

    def overall_usage(
        self, ids: list[torch.Tensor], per_scale: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """One codebook per band: the mean of the bands' usage and perplexity."""
        if not self.config.band_codebooks:
            return super().overall_usage(ids, per_scale)
        return {key: torch.stack([u[key] for u in per_scale]).mean() for key in per_scale[0]}

    def downsample(self, x: torch.Tensor, size: int) -> torch.Tensor:
        return fourier_resample(x, size)

    def scale_code(self, ids: torch.Tensor, scale: int) -> torch.Tensor:
        """ids (B, pn, pn) of band ``scale`` -> their band-limited contribution (B, D, h, w)."""
        return fourier_resample(self.quantizer(scale).lookup(ids), self.config.patch_nums[-1])
