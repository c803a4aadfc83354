"""Deterministic, resumable, process-sharded batch order.

Every epoch is a seeded permutation cut into global batches of ``batch_size * world_size``;
process ``rank`` takes its slice of each, so no sample repeats within an epoch, the union over
processes equals the single-process batch, and training resumes at any micro-batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class ShardedBatches:
    def __init__(self, num_items: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        global_batch = batch_size * world_size
        if num_items < global_batch:
            raise ValueError(
                f"the dataset has {num_items} items, fewer than one global batch of {global_batch} "
                f"({batch_size} per process x {world_size} processes)"
            )
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.batches_per_epoch = num_items // global_batch

    def epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.num_items, generator=generator)

    def iterate(self, start: int = 0) -> Iterator[list[int]]:
        """Index lists of this process, from micro-batch number ``start`` on, forever."""
        epoch, index = divmod(start, self.batches_per_epoch)
        while True:
            order = self.epoch_order(epoch)
            global_batch = self.batch_size * self.world_size
            for b in range(index, self.batches_per_epoch):
                lo = b * global_batch + self.rank * self.batch_size
                yield order[lo : lo + self.batch_size].tolist()
            epoch, index = epoch + 1, 0
