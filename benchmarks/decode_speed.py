"""Decode tokens/s, eager vs. torch.compile'd static-cache step, at several batch sizes.

    python benchmarks/decode_speed.py --preset B --grid 16 --batches 1 8 32

On a GPU it also prints the memory-bandwidth roofline: every decode step reads all
weights once, so tokens/s <= batch * bandwidth / model bytes.
"""

from __future__ import annotations

import argparse

import torch

from argen.sampling import SamplingConfig, sample_next_token
from argen.sampling.next_token import NextTokenOptions
from benchmarks._common import build_llama, memory_bandwidth, timed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small")
    p.add_argument("--grid", type=int, default=8)
    p.add_argument("--vocab", type=int, default=16384)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="bfloat16" if torch.cuda.is_available() else "float32")
    args = p.parse_args()

    dtype = getattr(torch, args.dtype)
    model = build_llama(args.preset, args.grid, args.vocab, args.device, dtype).eval()
    model_bytes = sum(t.numel() * t.element_size() for t in model.parameters())
    cuda = args.device.startswith("cuda")
    bandwidth = memory_bandwidth(args.device) if cuda else None
    config = SamplingConfig(cfg_scale=1.0, top_k=100)  # one row per sample: a pure decode
    print(f"preset={args.preset} grid={args.grid}x{args.grid} dtype={args.dtype} device={args.device}")
    print(
        f"params={sum(t.numel() for t in model.parameters()) / 1e6:.1f}M bytes={model_bytes / 2**20:.0f}MiB"
    )
    if bandwidth:
        print(f"measured copy bandwidth: {bandwidth / 1e9:.0f} GB/s")
    for batch in args.batches:
        labels = torch.arange(batch, device=args.device) % 1000
        tokens = batch * model.config.num_tokens
        speeds = {}
        for compiled in (False, True):

            def run(compiled=compiled, labels=labels):
                generator = torch.Generator(device=args.device).manual_seed(0)
                sample_next_token(model, labels, config, generator, NextTokenOptions(compile=compiled))

            speeds[compiled] = tokens / timed(run, args.device, args.repeats)
        line = (
            f"batch {batch:4d}: eager {speeds[False]:9.1f} tok/s  compiled {speeds[True]:9.1f} tok/s  "
            f"ratio {speeds[True] / speeds[False]:.2f}x"
        )
        if bandwidth:
            roofline = batch * bandwidth / model_bytes
            line += f"  roofline {roofline:9.1f} tok/s ({speeds[True] / roofline:.0%} of it)"
        print(line)


if __name__ == "__main__":
    main()
