"""Generator training throughput (tokens/s) for a preset, eager vs. torch.compile vs.
activation checkpointing, measured side by side; MFU on a GPU.

    python benchmarks/train_throughput.py --preset B --grid 16 --batch 8

MFU counts 6 * params * tokens + 12 * layers * dim * seq * tokens FLOPs per step (forward
and backward, attention included) against the peak given by --peak-tflops.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from argen.training.optim import build_optimizer
from benchmarks._common import build_llama, timed


def step_fn(model, optimizer, tokens, labels, dtype, device):
    def step():
        with torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32):
            logits = model(tokens, labels)
        F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="B")
    p.add_argument("--grid", type=int, default=16)
    p.add_argument("--vocab", type=int, default=16384)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="bfloat16" if torch.cuda.is_available() else "float32")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="H100 SXM dense bf16")
    args = p.parse_args()

    dtype = getattr(torch, args.dtype)
    results = {}
    for variant in ("eager", "compiled", "checkpointed"):
        model = build_llama(args.preset, args.grid, args.vocab, args.device, torch.float32).train()
        model.activation_checkpointing = variant == "checkpointed"
        if variant == "compiled":
            model.compile()
        optimizer = build_optimizer(model, 1e-4, 0.05, (0.9, 0.95))
        tokens = torch.randint(0, args.vocab, (args.batch, args.grid**2), device=args.device)
        labels = torch.randint(0, 1000, (args.batch,), device=args.device)
        seconds = timed(
            step_fn(model, optimizer, tokens, labels, dtype, args.device), args.device, args.repeats
        )
        results[variant] = tokens.numel() / seconds
    c = model.config
    params = sum(t.numel() for t in model.parameters())
    flops_per_token = 6 * params + 12 * c.n_layer * c.dim * c.num_tokens
    print(
        f"preset={args.preset} params={params / 1e6:.1f}M seq={c.num_tokens} batch={args.batch} "
        f"dtype={args.dtype} device={args.device}"
    )
    for variant, speed in results.items():
        line = f"{variant:13s} {speed:10.1f} tokens/s  ({speed / results['eager']:.2f}x eager)"
        if args.device.startswith("cuda"):
            line += f"  MFU {speed * flops_per_token / (args.peak_tflops * 1e12):.1%}"
        print(line)


if __name__ == "__main__":
    main()
