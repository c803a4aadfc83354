"""A teacher's (condition, noise, tokens) pairs for Distilled Decoding, in safetensors shards.

Shard i holds ``shard_size`` pairs drawn from its own seed: random condition ids (classes or
prompts), Gaussian noise (one vector per token), and the tokens the teacher's deterministic
sampler maps them to. Every process draws the shards i = rank (mod world size) that are
missing, so an interrupted run continues where it stopped; ``meta.json`` records the teacher
(weights' sha256), the prompts and the settings, and shards drawn with anything else are never
reused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset
from tqdm import tqdm

from argen.checkpoint import atomic_file
from argen.data.token_cache import META_NAME

# condition ids (B,), noise (B, L, d) -> token ids (B, L)
TokenMap = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class PairPlan:
    """What the pairs are: how many, of which shape, from which seed."""

    num_pairs: int
    num_conditions: int  # classes, or prompts
    num_tokens: int
    noise_dim: int
    seed: int
    shard_size: int = 1000
    batch_size: int = 250  # teacher rows per sampling call

    @property
    def num_shards(self) -> int:
        return -(-self.num_pairs // self.shard_size)

    def shard_inputs(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Shard ``index``'s condition ids (n,) and noise (n, L, d), the same on every process."""
        n = min(self.shard_size, self.num_pairs - index * self.shard_size)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        ids = torch.randint(self.num_conditions, (n,), generator=generator)
        return ids, torch.randn(n, self.num_tokens, self.noise_dim, generator=generator)


def shard_path(directory: Path, index: int) -> Path:
    return directory / f"pairs-{index:06d}.safetensors"


def prepare_pairs(directory: str | Path, key: dict) -> None:
    """Main process: start ``directory`` for pairs of ``key``, or keep it if they match."""
    directory, key = Path(directory), json.loads(json.dumps(key))  # as it reads back from disk
    meta = directory / META_NAME
    if meta.is_file() and json.loads(meta.read_text()) != key:
        raise ValueError(
            f"{directory} holds pairs of another teacher or other settings; delete it or set "
            "pairs_dir elsewhere"
        )
    if directory.exists() and not meta.is_file() and any(directory.iterdir()):
        raise ValueError(f"{directory} is not a pairs folder; delete it or set pairs_dir elsewhere")
    directory.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps(key, indent=2) + "\n")


@torch.no_grad()
def draw_pairs(
    teacher_map: TokenMap,
    plan: PairPlan,
    directory: str | Path,
    device: torch.device,
    rank: int = 0,
    world: int = 1,
) -> None:
    """Draw this process's missing shards with ``teacher_map`` into ``directory`` (prepared)."""
    directory = Path(directory)
    todo = [i for i in range(rank, plan.num_shards, world) if not shard_path(directory, i).is_file()]
    for index in tqdm(todo, desc="teacher pairs", disable=rank != 0):
        ids, noise = plan.shard_inputs(index)
        tokens = torch.cat(
            [
                teacher_map(y.to(device), e.to(device)).cpu()
                for y, e in zip(ids.split(plan.batch_size), noise.split(plan.batch_size))
            ]
        )  # (n, L)
        shard = {"conditions": ids, "noise": noise, "tokens": tokens.to(torch.int32)}
        atomic_file(shard_path(directory, index), lambda tmp, shard=shard: save_file(shard, str(tmp)))


class PairDataset(Dataset):
    """All shards in memory: items are (tokens (L,) int64, noise (L, d) float32, condition id)."""

    def __init__(self, directory: str | Path, num_shards: int):
        paths = [shard_path(Path(directory), i) for i in range(num_shards)]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{directory} lacks {len(missing)} pair shards ({missing[0]}, ...)")
        parts = [load_file(str(p)) for p in paths]
        self.tokens = torch.cat([p["tokens"] for p in parts]).long()
        self.noise = torch.cat([p["noise"] for p in parts])
        self.conditions = torch.cat([p["conditions"] for p in parts])

    def __len__(self) -> int:
        return len(self.conditions)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.tokens[index], self.noise[index], int(self.conditions[index])
