"""FSDP2 training of a tiny continuous-token Llama whose flow-matching loss is the paradigm's (the
head runs outside the generator's forward), for tests/test_fsdp2.py.

    python -m torch.distributed.run --nproc_per_node N tests/fsdp2_flow_worker.py OUT STEPS [--plain]

Every process builds the same weights and draws the same noise (seed 0, then seed 1 + step: the
rows are the same on every process), shards per block and at the root (``--plain``: no
sharding), and trains; rank 0 writes the losses and the consolidated weights.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard

from argen.checkpoint import save_model
from argen.models.continuous import ContinuousLlama, ContinuousLlamaConfig
from argen.models.heads import FlowHeadConfig
from argen.paradigms import get


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("steps", type=int)
    p.add_argument("--plain", action="store_true")
    args = p.parse_args()
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    config = ContinuousLlamaConfig(
        grid_size=(2, 2),
        num_classes=3,
        dim=32,
        n_layer=2,
        n_head=2,
        token_dim=4,
        class_dropout=0.0,
        head=FlowHeadConfig(width=16, depth=1),
    )
    model = ContinuousLlama(config)
    if not args.plain:
        for layer in model.layers:
            fully_shard(layer)
        fully_shard(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    paradigm, losses = get("continuous_raster"), []
    for step in range(args.steps):
        torch.manual_seed(1 + step)  # the same batch and noise on every process
        tokens, labels = torch.randn(4, 4, 4), torch.tensor([0, 1, 2, 0])
        loss, _ = paradigm.loss(model, None, tokens, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if dist.get_rank() == 0:
        save_model(ContinuousLlama(config), Path(args.out) / "model", full)
        (Path(args.out) / "losses.json").write_text(json.dumps(losses))
    dist.barrier()


if __name__ == "__main__":
    main()
    os._exit(0)  # see fsdp2_worker.py: gloo's teardown can abort a finished rank
