"""Sampling wall time of next-scale (VAR) vs. next-token (raster) prediction at the same
latent size and model width/depth, in one run (random weights; decoding excluded).

    python -m benchmarks.next_scale_speed --preset small --grid 16 --batch 8

Next-token takes grid**2 sequential steps; next-scale takes one step per scale (VAR's
1,2,3,4,5,6,8,10,13,16 for a 16x16 latent: 10 steps over 680 tokens). The next-scale
sampler is also timed with its compiled static-shape steps (``sample.py --compile``).
"""

from __future__ import annotations

import argparse

import torch

from argen.config import from_dict
from argen.models.next_scale import NextScaleConfig, NextScaleLlama
from argen.sampling import SamplingConfig, sample_next_token
from argen.sampling.next_scale import NextScaleOptions, sample_next_scale
from argen.tokenizers import MultiScaleVQConfig, MultiScaleVQModel
from benchmarks._common import build_llama, timed

VAR_SCALES = {16: (1, 2, 3, 4, 5, 6, 8, 10, 13, 16), 8: (1, 2, 3, 4, 6, 8), 4: (1, 2, 3, 4)}


def tiny_multiscale_vq(grid: int, vocab: int, scales: tuple[int, ...]) -> MultiScaleVQModel:
    """A random multi-scale VQ with ``vocab`` codes over a ``grid`` latent (its decoder is tiny:
    the timing is the generator's)."""
    config = MultiScaleVQConfig(
        resolution=grid,
        base_channels=8,
        channel_mult=(1,),
        num_res_blocks=1,
        z_channels=8,
        norm_groups=4,
        codebook_size=vocab,
        codebook_dim=8,
        patch_nums=scales,
        phi_count=min(4, len(scales)),
    )
    return MultiScaleVQModel(config)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small")
    p.add_argument("--grid", type=int, default=16, choices=sorted(VAR_SCALES))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--cfg-scale", type=float, default=2.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()

    scales = VAR_SCALES[args.grid]
    raster = build_llama(args.preset, args.grid, args.vocab, args.device, torch.float32).eval()
    torch.manual_seed(0)
    config = from_dict(
        NextScaleConfig,
        {
            "preset": args.preset,
            "vocab_size": args.vocab,
            "grid_size": [args.grid] * 2,
            "num_classes": 1000,
            "patch_nums": list(scales),
            "token_dim": 8,
        },
    )
    var = NextScaleLlama(config).to(args.device).eval()
    tokenizer = tiny_multiscale_vq(args.grid, args.vocab, scales).to(args.device).eval()
    labels = torch.arange(args.batch, device=args.device) % 1000
    sampling = SamplingConfig(cfg_scale=args.cfg_scale, top_k=100)
    next_token = timed(lambda: sample_next_token(raster, labels, sampling), args.device, args.repeats)
    next_scale = timed(lambda: sample_next_scale(var, tokenizer, labels, sampling), args.device, args.repeats)
    compiled = timed(  # the first (warm-up) call compiles one graph per scale
        lambda: sample_next_scale(var, tokenizer, labels, sampling, None, NextScaleOptions(compile=True)),
        args.device,
        args.repeats,
    )
    params = sum(p.numel() for p in var.parameters()) / 1e6
    print(
        f"preset={args.preset} ({params:.1f}M) latent={args.grid}x{args.grid} batch={args.batch} "
        f"cfg={args.cfg_scale} device={args.device}"
    )
    print(f"next-token: {args.grid**2} steps, {next_token:.3f} s per batch")
    print(f"next-scale: {len(scales)} steps over {config.num_tokens} tokens, {next_scale:.3f} s per batch")
    print(f"speed-up of next-scale over next-token: {next_token / next_scale:.2f}x")
    print(f"next-scale compiled: {compiled:.3f} s per batch, {next_scale / compiled:.2f}x eager")


if __name__ == "__main__":
    main()
