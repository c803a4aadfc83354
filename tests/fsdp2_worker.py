"""One FSDP2 training run of a tiny Llama on CPU processes (gloo), for tests/test_fsdp2.py.

    python -m torch.distributed.run --nproc_per_node 2 tests/fsdp2_worker.py OUT STEPS [--resume-from CKPT]
        [--save-at STEP] [--plain]

Every process builds the same weights (seed 0), shards them with ``fully_shard`` (per Llama block,
then the root; ``--plain``: no sharding, one process), trains on its slice of a fixed global batch
and keeps argen's EMA. ``--save-at`` writes a sharded checkpoint (torch.distributed.checkpoint)
with the optimizer and the EMA; ``--resume-from`` continues from one. Rank 0 writes the losses,
the consolidated model (argen's config.json + safetensors) and the EMA weights to OUT.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.nn.functional as F
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import fully_shard

from argen.checkpoint import save_model
from argen.models.llama import Llama, LlamaConfig
from argen.training.ema import Ema

GLOBAL_BATCH = 8


def batch(step: int, world: int, rank: int) -> torch.Tensor:
    """This process's rows of the global batch of ``step`` (the same on any process count)."""
    ids = torch.randint(0, 32, (GLOBAL_BATCH, 16), generator=torch.Generator().manual_seed(step))
    rows = GLOBAL_BATCH // world
    return ids[rank * rows : (rank + 1) * rows]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("steps", type=int)
    p.add_argument("--save-at", type=int, default=0)
    p.add_argument("--resume-from")
    p.add_argument("--plain", action="store_true")
    args = p.parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=32,
        grid_size=(4, 4),
        num_classes=4,
        dim=32,
        n_layer=2,
        n_head=2,
        dropout=0.0,
        class_dropout=0.0,
    )  # nothing random: processes draw different random numbers
    model = Llama(config)
    if not args.plain:
        for layer in model.layers:
            fully_shard(layer)
        fully_shard(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ema = Ema(model, decay=0.9, use_warmup=True)
    first = 0
    if args.resume_from:
        state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}
        dcp.load(state, checkpoint_id=args.resume_from)
        set_model_state_dict(model, state["model"])
        set_optimizer_state_dict(model, optimizer, state["optim"])
        extra = torch.load(Path(args.resume_from) / "ema.pt")
        ema.load_state_dict(extra["ema"])
        first = extra["step"]
    losses = []
    for step in range(first, args.steps):
        ids = batch(step, world, rank)
        loss = F.cross_entropy(
            model(ids, torch.zeros(len(ids), dtype=torch.long)).flatten(0, 1), ids.flatten()
        )
        loss.backward()  # FSDP2 averages the gradients over processes
        optimizer.step()
        optimizer.zero_grad()
        ema.update(model, step=step + 1)
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(mean.item() / world)
        if step + 1 == args.save_at:
            state = {
                "model": get_model_state_dict(model),
                "optim": get_optimizer_state_dict(model, optimizer),
            }
            dcp.save(state, checkpoint_id=os.path.join(args.out, "checkpoint"))
            ema_state = ema.state_dict()  # full tensors: every process takes part
            if rank == 0:
                torch.save({"ema": ema_state, "step": step + 1}, Path(args.out) / "checkpoint" / "ema.pt")
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    ema_weights = ema.weights()
    if rank == 0:
        save_model(Llama(config), Path(args.out) / "model", full)
        save_model(Llama(config), Path(args.out) / "ema", ema_weights)
        (Path(args.out) / "losses.json").write_text(json.dumps(losses))
    dist.barrier()  # every file is written


if __name__ == "__main__":
    main()
    # gloo's teardown (destroy_process_group or interpreter exit) sometimes aborts a rank with
    # "terminate called without an active exception" after all work is done: leave without it
    os._exit(0)
