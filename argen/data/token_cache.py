"""Token cache: a dataset encoded once by a trained tokenizer, in safetensors shards.

Generator training reads the cache instead of running the tokenizer every step. With
``flip=True`` every image is stored twice, as is and mirrored.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from argen.checkpoint import WEIGHTS_NAME, atomic_directory

META_NAME = "meta.json"


def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_key(tokenizer_dir: str | Path, dataset: str, resolution: int, flip: bool) -> dict:
    """What a cache was built from; a cache is only reused when this matches."""
    return {
        "tokenizer_sha256": file_digest(Path(tokenizer_dir) / WEIGHTS_NAME),
        "dataset": dataset,
        "resolution": resolution,
        "flip": flip,
    }


@torch.no_grad()
def build_token_cache(
    tokenizer: torch.nn.Module,
    dataset: Dataset,
    out_dir: str | Path,
    key: dict,
    flip: bool,
    batch_size: int = 256,
    shard_size: int = 100_000,
    device: torch.device | str = "cpu",
) -> Path:
    """Encode ``dataset`` with ``tokenizer`` into ``out_dir`` (written atomically)."""
    loader = DataLoader(dataset, batch_size=batch_size, generator=torch.Generator())  # global RNG untouched
    tokenizer = tokenizer.to(device).eval()

    def write(tmp: Path) -> None:
        tokens, labels, shard, count = [], [], 0, 0

        def flush() -> None:
            nonlocal tokens, labels, shard
            if tokens:
                save_file(
                    {"tokens": torch.cat(tokens).contiguous(), "labels": torch.cat(labels)},
                    str(tmp / f"shard-{shard:05d}.safetensors"),
                )
                tokens, labels, shard = [], [], shard + 1

        for images, y in tqdm(loader, desc="encoding token cache"):
            images = images.to(device)
            views = [images, images.flip(-1)] if flip else [images]
            for view in views:
                ids = tokenizer.encode(view).cpu()  # (B, h, w)
                tokens.append(ids.to(torch.int32))
                labels.append(y.to(torch.int64))
                count += len(ids)
            if sum(len(t) for t in tokens) >= shard_size:
                flush()
        flush()
        meta = {**key, "num_items": count, "shape": list(tokens_shape(tmp))}
        (tmp / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")

    return atomic_directory(out_dir, write)


def tokens_shape(directory: Path) -> tuple[int, ...]:
    first = load_file(str(sorted(directory.glob("shard-*.safetensors"))[0]))
    return tuple(first["tokens"].shape[1:])


def cache_matches(out_dir: str | Path, key: dict) -> bool:
    meta_path = Path(out_dir) / META_NAME
    if not meta_path.is_file():
        return False
    meta = json.loads(meta_path.read_text())
    return all(meta.get(k) == v for k, v in key.items())


class TokenCacheDataset(Dataset):
    """All shards of a cache in memory: items are (tokens (h, w) int64, label)."""

    def __init__(self, directory: str | Path):
        directory = Path(directory)
        shards = sorted(directory.glob("shard-*.safetensors"))
        if not shards:
            raise FileNotFoundError(f"no token cache shards in {directory}")
        parts = [load_file(str(s)) for s in shards]
        self.tokens = torch.cat([p["tokens"] for p in parts]).long()
        self.labels = torch.cat([p["labels"] for p in parts])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.tokens[index], int(self.labels[index])
