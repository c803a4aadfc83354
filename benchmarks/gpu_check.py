"""The GPU check, as one command: every measurement a GPU machine is needed for, printed as
one table and written as JSON.

    python -m benchmarks.gpu_check --json gpu_check.json      # one CUDA GPU, a few minutes
    python -m benchmarks.gpu_check --dry-run                  # tiny shapes on the CPU (tested)

Sections (each timed after a warm-up; a failing section is reported and the others still run):
- train: one optimizer step of a GPT-B-shaped generator, fp32 vs bf16 autocast: tokens/s,
  MFU (6 * params + attention FLOPs per token against --peak-tflops) and how far the bf16 loss
  is from the fp32 loss on the same batch;
- decode: KV-cached decoding of GPT-B at batch 1 and 16, eager vs the compiled static-shape
  step (CUDA graphs): tokens/s and the share of the memory-bandwidth roofline
  (batch * bandwidth / weight bytes) reached;
- next_scale: VAR-d16-sized next-scale sampling (10 scales, 680 tokens) vs next-token sampling
  of the 16x16 grid by the same width and depth;
- speculative: a target and a one-layer draft trained here for a few hundred steps on one
  Markov chain of ids; plain vs standard vs relaxed (LANTERN) speculative sampling;
- fsdp: one training step of GPT-B wrapped by FSDP2 (``fully_shard``) in a one-process group.
Peak memory is reported per section on CUDA. Without CUDA and without ``--dry-run`` it says
so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import traceback

import torch
import torch.nn.functional as F

from argen.config import from_dict
from argen.models.llama import Llama, LlamaConfig
from argen.models.next_scale import NextScaleConfig, NextScaleLlama
from argen.sampling import SamplingConfig, sample_next_token
from argen.sampling.next_scale import sample_next_scale
from argen.sampling.next_token import NextTokenOptions
from argen.sampling.speculative import DraftRules, SpeculativeConfig, code_neighbours, sample_speculative
from argen.training.optim import build_optimizer
from benchmarks._common import memory_bandwidth, timed
from benchmarks.next_scale_speed import VAR_SCALES, tiny_multiscale_vq
from benchmarks.train_throughput import step_fn

SHAPES = {  # full: the GPU check; dry: tiny shapes that run in seconds on a CPU
    "full": dict(dim=768, n_layer=12, n_head=12, grid=16, vocab=16384, train_batch=16,
                 decode_batches=(1, 16), var=dict(dim=1024, n_layer=16, n_head=16), var_batch=16,
                 pair_steps=400, pair_batch=64, repeats=3),
    "dry": dict(dim=32, n_layer=2, n_head=2, grid=4, vocab=64, train_batch=2, decode_batches=(1, 2),
                var=dict(dim=32, n_layer=2, n_head=2), var_batch=2, pair_steps=20, pair_batch=8, repeats=1),
}  # fmt: skip


def llama(shape: dict, device: str, dtype=torch.float32, **overrides) -> Llama:
    torch.manual_seed(0)
    sizes = {k: shape[k] for k in ("dim", "n_layer", "n_head")} | overrides
    config = LlamaConfig(vocab_size=shape["vocab"], grid_size=(shape["grid"],) * 2, num_classes=1000, **sizes)
    return Llama(config).to(device, dtype)


class Peak:
    """Peak CUDA memory allocated inside the block, in GiB (None on the CPU)."""

    def __init__(self, device: str):
        self.cuda, self.gib = device.startswith("cuda"), None

    def __enter__(self) -> Peak:
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            self.gib = round(torch.cuda.max_memory_allocated() / 2**30, 2)


def batch_of(shape: dict, batch: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, shape["vocab"], (batch, shape["grid"] ** 2), generator=generator)
    return tokens.to(device), (torch.arange(batch) % 1000).to(device)


def train_section(shape: dict, device: str, args) -> list[dict]:
    rows, tokens, labels = [], *batch_of(shape, shape["train_batch"], device)
    losses = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model = llama(shape, device).train()
        with (
            torch.no_grad(),
            torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32),
        ):
            losses[name] = F.cross_entropy(
                model(tokens, labels).flatten(0, 1).float(), tokens.flatten()
            ).item()
        optimizer = build_optimizer(model, 1e-4, 0.05, (0.9, 0.95))
        with Peak(device) as peak:
            seconds = timed(
                step_fn(model, optimizer, tokens, labels, dtype, device), device, shape["repeats"]
            )
        params = sum(p.numel() for p in model.parameters())
        flops = 6 * params + 12 * shape["n_layer"] * shape["dim"] * tokens.shape[1]
        speed = tokens.numel() / seconds
        mfu = round(speed * flops / (args.peak_tflops * 1e12), 4)
        rows.append(
            dict(section="train", variant=name, tokens_per_s=round(speed, 1), mfu=mfu, peak_gib=peak.gib)
        )
    rows[1]["loss_vs_fp32"] = round(abs(losses["bf16"] - losses["fp32"]), 5)
    return rows


def decode_section(shape: dict, device: str, args) -> list[dict]:
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = llama(shape, device, dtype).eval()
    weight_bytes = sum(t.numel() * t.element_size() for t in model.parameters())
    bandwidth = memory_bandwidth(device) if device.startswith("cuda") else None
    config, rows = SamplingConfig(cfg_scale=1.0, top_k=100), []
    for batch in shape["decode_batches"]:
        labels = torch.arange(batch, device=device) % 1000
        for compiled in (False, True):
            with Peak(device) as peak:
                run = lambda labels=labels, compiled=compiled: sample_next_token(  # noqa: E731
                    model, labels, config, None, NextTokenOptions(compile=compiled)
                )
                speed = batch * model.config.num_tokens / timed(run, device, shape["repeats"])
            row = dict(section="decode", variant=f"batch {batch} {'compiled' if compiled else 'eager'}",
                       tokens_per_s=round(speed, 1), peak_gib=peak.gib)  # fmt: skip
            if bandwidth:
                row["roofline_share"] = round(speed / (batch * bandwidth / weight_bytes), 3)
            rows.append(row)
    return rows


def next_scale_section(shape: dict, device: str, args) -> list[dict]:
    grid, scales = shape["grid"], VAR_SCALES[shape["grid"]]
    raster = llama(shape, device, **shape["var"]).eval()
    torch.manual_seed(0)
    config = from_dict(NextScaleConfig, {"vocab_size": shape["vocab"], "grid_size": [grid] * 2,
                                         "num_classes": 1000, "patch_nums": list(scales), "token_dim": 8,
                                         **shape["var"]})  # fmt: skip
    var = NextScaleLlama(config).to(device).eval()
    tokenizer = tiny_multiscale_vq(grid, shape["vocab"], scales).to(device).eval()
    labels = torch.arange(shape["var_batch"], device=device) % 1000
    sampling, rows = SamplingConfig(cfg_scale=2.0, top_k=900, top_p=0.96), []
    for name, run in (
        (f"next-token, {grid * grid} passes", lambda: sample_next_token(raster, labels, sampling)),
        (f"next-scale, {len(scales)} passes", lambda: sample_next_scale(var, tokenizer, labels, sampling)),
    ):
        with Peak(device) as peak:
            seconds = timed(run, device, shape["repeats"])
        rows.append(dict(section="next_scale", variant=name, images_per_s=round(len(labels) / seconds, 2),
                         peak_gib=peak.gib))  # fmt: skip
    return rows


def markov_pair(shape: dict, device: str) -> tuple[Llama, Llama]:
    """A target (the shape) and a one-layer draft, both trained on one sparse Markov chain of ids."""
    generator = torch.Generator().manual_seed(0)
    vocab, length = shape["vocab"], shape["grid"] ** 2
    successors = torch.randint(0, vocab, (vocab, 4), generator=generator)  # 4 likely next ids per id
    models = (llama(shape, device), llama(shape, device, n_layer=1))
    for model in models:
        optimizer = build_optimizer(model.train(), 1e-3, 0.0, (0.9, 0.95))
        for _ in range(shape["pair_steps"]):
            ids = torch.randint(0, vocab, (shape["pair_batch"], 1), generator=generator)
            for _ in range(length - 1):
                choice = torch.randint(0, 4, (len(ids),), generator=generator)
                ids = torch.cat([ids, successors[ids[:, -1], choice][:, None]], 1)  # (B, t + 1)
            ids, labels = ids.to(device), torch.zeros(len(ids), dtype=torch.long, device=device)
            F.cross_entropy(model(ids, labels).flatten(0, 1), ids.flatten()).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        model.eval()
    return models


def speculative_section(shape: dict, device: str, args) -> list[dict]:
    target, draft = markov_pair(shape, device)
    labels = torch.zeros(shape["decode_batches"][-1], dtype=torch.long, device=device)
    sampling = SamplingConfig(cfg_scale=1.0)
    neighbours = code_neighbours(target.tok_emb.weight.detach(), 11)
    variants = {"plain": None, "standard": SpeculativeConfig(draft_length=4),
                "relaxed": SpeculativeConfig(draft_length=4, relaxed_k=10, relaxed_delta=0.1)}  # fmt: skip
    rows, times = [], {}
    for name, spec in variants.items():
        stats = {}

        def run(spec=spec, stats=stats):
            generator = torch.Generator(device).manual_seed(0)
            if spec is None:
                return sample_next_token(target, labels, sampling, generator)
            stats.update(
                sample_speculative(target, draft, labels, sampling, spec, generator, DraftRules(neighbours))[
                    1
                ]
            )

        with Peak(device) as peak:
            times[name] = timed(run, device, shape["repeats"])
        per_pass = stats["tokens"] / max(stats["row_calls"], 1) if stats else 1.0
        rows.append(dict(section="speculative", variant=name, tokens_per_pass=round(per_pass, 2),
                         speedup=round(times["plain"] / times[name], 2), peak_gib=peak.gib))  # fmt: skip
    return rows


def fsdp_section(shape: dict, device: str, args) -> list[dict]:
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", rank=0, world_size=1)
    try:
        model = llama(shape, device).train()
        for layer in model.layers:
            fully_shard(layer)
        fully_shard(model)
        optimizer = build_optimizer(model, 1e-4, 0.05, (0.9, 0.95))
        tokens, labels = batch_of(shape, shape["train_batch"], device)
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        with Peak(device) as peak:
            seconds = timed(
                step_fn(model, optimizer, tokens, labels, dtype, device), device, shape["repeats"]
            )
    finally:
        dist.destroy_process_group()
    return [dict(section="fsdp", variant="FSDP2, 1 process", tokens_per_s=round(tokens.numel() / seconds, 1),
                 peak_gib=peak.gib)]  # fmt: skip


SECTIONS = {
    "train": train_section,
    "decode": decode_section,
    "next_scale": next_scale_section,
    "speculative": speculative_section,
    "fsdp": fsdp_section,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU")
    p.add_argument("--sections", nargs="+", choices=sorted(SECTIONS), default=list(SECTIONS))
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100 SXM: 989)")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: the GPU check is skipped (--dry-run runs it on the CPU with tiny shapes)")
        return 0
    device, shape = ("cpu", SHAPES["dry"]) if args.dry_run else ("cuda", SHAPES["full"])
    rows, start = [], time.perf_counter()
    for name in args.sections:
        began = time.perf_counter()
        try:
            found = SECTIONS[name](shape, device, args)
        except Exception as err:  # noqa: BLE001 - one broken section must not cost the others
            traceback.print_exc()
            found = [dict(section=name, error=f"{type(err).__name__}: {err}")]
        for row in found:
            row["section_seconds"] = round(time.perf_counter() - began, 1)
        rows.extend(found)
    device_name = torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)"
    print(f"device: {device_name}; torch {torch.__version__}; {time.perf_counter() - start:.0f} s in all")
    for row in rows:
        print("  ".join(f"{k}={v}" for k, v in row.items() if v is not None))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device_name, "torch": torch.__version__, "rows": rows}, f, indent=1)
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
