"""Token cache: a dataset encoded once by a trained tokenizer, in safetensors shards.

Generator training reads the cache instead of running the tokenizer every step. With
``flip=True`` every image is stored twice, as is and mirrored. Every process encodes a
slice of the dataset; every process then reads the whole cache and takes its own batches.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from argen.checkpoint import CONFIG_NAME, WEIGHTS_NAME, replace_directory
from argen.tokenizers.layout import flat_ids

META_NAME = "meta.json"


def file_digest(*paths: str | Path) -> str:
    """sha256 of the files' bytes, one after the other."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def cache_key(tokenizer_dir: str | Path, dataset: str, resolution: int, flip: bool) -> dict:
    """What a cache was built from; a cache is only reused when this matches."""
    tokenizer = Path(tokenizer_dir)
    # weights and config (codec tokenizers, JPEG, are all config), or an official file
    files = (tokenizer,) if tokenizer.is_file() else (tokenizer / CONFIG_NAME, tokenizer / WEIGHTS_NAME)
    return {
        "tokenizer_sha256": file_digest(*files),
        "dataset": dataset,
        "resolution": resolution,
        "flip": flip,
    }


@dataclass
class Processes:
    """This process's share of a job that every process runs: its ``rank`` of ``world_size``,
    its ``device``, and the ``barrier`` that synchronises them."""

    device: torch.device | str = "cpu"
    rank: int = 0
    world_size: int = 1
    barrier: Callable[[], None] = lambda: None


@torch.no_grad()
def build_token_cache(
    tokenizer: torch.nn.Module,
    dataset: Dataset,
    out_dir: str | Path,
    key: dict,
    flip: bool,
    sizes: tuple[int, int] = (256, 100_000),
    processes: Processes | None = None,
) -> Path:
    """Encode ``dataset`` with ``tokenizer`` into ``out_dir``, written atomically, in batches and
    shards of ``sizes`` = (batch size, shard size).

    Process ``rank`` of ``world_size`` encodes one contiguous slice (call on every process).
    Shards are named by their first item, so the cache order is the dataset order whatever the
    number of processes; with ``flip`` every image is followed by its mirror.
    """
    p = processes or Processes()
    device, rank, world_size, barrier = p.device, p.rank, p.world_size, p.barrier
    batch_size, shard_size = sizes
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}-tmp")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    tokenizer = tokenizer.to(device).eval()
    lo, hi = rank * len(dataset) // world_size, (rank + 1) * len(dataset) // world_size
    for start in range(lo, hi, shard_size):
        part = Subset(dataset, range(start, min(start + shard_size, hi)))
        loader = DataLoader(part, batch_size=batch_size, generator=torch.Generator())  # global RNG untouched
        tokens, labels = [], []
        for images, y in tqdm(loader, desc=f"encoding token cache [{rank}]", disable=rank != 0):
            images = images.to(device)
            ids = flat_ids(tokenizer.encode(images))  # (B, h, w), or (B, L) for multi-scale
            if flip:
                mirrored = flat_ids(tokenizer.encode(images.flip(-1)))
                ids = torch.stack([ids, mirrored], dim=1).flatten(0, 1)  # (2B, ...)
                y = y.repeat_interleave(2)
            tokens.append(ids.cpu().to(torch.float32 if ids.is_floating_point() else torch.int32))
            labels.append(y.to(torch.int64))
        shard = {"tokens": torch.cat(tokens).contiguous(), "labels": torch.cat(labels)}
        save_file(shard, str(tmp / f"shard-{start:09d}.safetensors"))
    barrier()
    if rank == 0:
        cache = TokenCacheDataset(tmp)
        classes = getattr(dataset, "classes", None)
        meta = {
            **key,
            "num_items": len(cache),
            "shape": list(cache.tokens.shape[1:]),
            "num_classes": len(classes) if classes else int(cache.labels.max()) + 1,
        }
        (tmp / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        replace_directory(tmp, out_dir)
    barrier()
    return out_dir


def read_meta(directory: str | Path) -> dict:
    return json.loads((Path(directory) / META_NAME).read_text())


def cache_matches(out_dir: str | Path, key: dict) -> bool:
    if not (Path(out_dir) / META_NAME).is_file():
        return False
    meta = read_meta(out_dir)
    return all(meta.get(k) == v for k, v in key.items())


class TokenCacheDataset(Dataset):
    """All shards of a cache in memory: items are (ids (h, w) int64 or continuous tokens
    (L, d) float32, label)."""

    def __init__(self, directory: str | Path):
        directory = Path(directory)
        shards = sorted(directory.glob("shard-*.safetensors"))
        if not shards:
            raise FileNotFoundError(f"no token cache shards in {directory}")
        parts = [load_file(str(s)) for s in shards]
        tokens = torch.cat([p["tokens"] for p in parts])
        self.tokens = tokens if tokens.is_floating_point() else tokens.long()  # continuous tokens stay float
        self.labels = torch.cat([p["labels"] for p in parts])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.tokens[index], int(self.labels[index])
