"""Tokens/s of KV-cached vs. recompute-everything next-token decoding, same model and batch.

    python benchmarks/sampling_speed.py --preset small --grid 16 --batch 8

Prints both throughputs and their ratio, measured in one run (random weights: speed only).
"""

from __future__ import annotations

import argparse
import time

import torch

from argen.config import from_dict
from argen.models.llama import Llama, LlamaConfig
from argen.sampling import SamplingConfig, sample_next_token
from argen.sampling.next_token import NextTokenOptions


def tokens_per_second(model, labels, config, use_cache: bool, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        generator = torch.Generator(device=labels.device).manual_seed(0)
        start = time.perf_counter()
        sample_next_token(model, labels, config, generator, NextTokenOptions(use_cache=use_cache))
        if labels.is_cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return labels.numel() * model.config.num_tokens / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small", choices=sorted(LlamaConfig.PRESETS))
    p.add_argument("--grid", type=int, default=16, help="tokens per side")
    p.add_argument("--vocab", type=int, default=16384)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--cfg-scale", type=float, default=2.0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()

    torch.manual_seed(0)
    config = from_dict(
        LlamaConfig,
        {
            "preset": args.preset,
            "vocab_size": args.vocab,
            "grid_size": [args.grid, args.grid],
            "num_classes": 10,
        },
    )
    model = Llama(config).to(args.device).eval()
    labels = torch.arange(args.batch, device=args.device) % 10
    sampling = SamplingConfig(cfg_scale=args.cfg_scale, top_k=100)
    cached = tokens_per_second(model, labels, sampling, True, args.repeats)
    full = tokens_per_second(model, labels, sampling, False, args.repeats)
    print(
        f"preset={args.preset} grid={args.grid}x{args.grid} batch={args.batch} cfg={args.cfg_scale} "
        f"device={args.device} threads={torch.get_num_threads()}"
    )
    print(f"kv-cached:            {cached:10.1f} tokens/s")
    print(f"recompute-everything: {full:10.1f} tokens/s")
    print(f"ratio cached/recompute: {cached / full:.2f}x")


if __name__ == "__main__":
    main()
