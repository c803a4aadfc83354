"""Representation alignment (ARRA) for generator training: an adaptor MLP maps the generator's
hidden states at one block, mean-pooled over the positions that predict image tokens, to the
feature of a frozen image encoder of the training image; the loss adds ``weight`` times
1 - cosine. Nothing changes at sampling: the adaptor is trained and checkpointed with the run
but never exported.

The encoder is an argen classifier run (``task: classifier``); its features of every training
image (and of its mirror, after it, when the token cache is flipped) are computed once into a
cache in the token cache's order. It must not be the judge of the evaluation (circular): train
another classifier, with its own seed, for alignment.

ARRA aligns the hidden state of a dedicated hybrid token; argen pools the image-token states
instead, which leaves the sequence (and sampling) unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from argen.checkpoint import CONFIG_NAME, WEIGHTS_NAME, atomic_directory
from argen.data import build_dataset
from argen.data.token_cache import META_NAME, cache_matches, file_digest
from argen.eval import load_classifier

CACHE_FILE = "features.safetensors"


@dataclass
class AlignConfig:
    """A recipe's ``align:`` section."""

    encoder: str  # an argen classifier's model directory (its penultimate features)
    layer: int | None = None  # the block whose output is aligned; None: the middle one
    weight: float = 0.5  # of the alignment loss, beside the generator's own
    hidden: int = 512  # the adaptor MLP's width
    cache: str | None = None  # where the features are kept; None: <output_dir>/align_cache

    def __post_init__(self) -> None:
        if self.weight <= 0:
            raise ValueError(f"align.weight must be > 0, got {self.weight}")
        if self.hidden < 1:
            raise ValueError(f"align.hidden must be >= 1, got {self.hidden}")


def feature_key(config: AlignConfig, dataset: str, resolution: int, flip: bool) -> dict:
    """What a feature cache was built from; it is only reused when this matches."""
    encoder = Path(config.encoder)
    digest = file_digest(encoder / CONFIG_NAME, encoder / WEIGHTS_NAME)
    return {"encoder_sha256": digest, "dataset": dataset, "resolution": resolution, "flip": flip}


@torch.no_grad()
def build_feature_cache(
    encoder: nn.Module, dataset: Dataset, out_dir: str | Path, key: dict, flip: bool, device: torch.device
) -> Path:
    """The encoder's features of every image (B, F), each followed by its mirror's when
    ``flip``, as the token cache orders them; written atomically (main process)."""
    encoder = encoder.to(device).eval()
    loader = DataLoader(dataset, batch_size=256, generator=torch.Generator())  # global RNG untouched
    parts = []
    for images, _ in tqdm(loader, desc="alignment features"):
        images = images.to(device)
        features = encoder.features(images)  # (B, F)
        if flip:
            features = torch.stack([features, encoder.features(images.flip(-1))], 1).flatten(0, 1)  # (2B, F)
        parts.append(features.float().cpu())
    features = torch.cat(parts).contiguous()

    def write(tmp: Path) -> None:
        save_file({"features": features}, str(tmp / CACHE_FILE))
        (tmp / META_NAME).write_text(json.dumps({**key, "num_items": len(features)}, indent=2) + "\n")

    return atomic_directory(out_dir, write)


def load_features(directory: str | Path, key: dict, num_items: int) -> torch.Tensor:
    """The cached features (N, F), refused when built from other settings or for another cache."""
    if not cache_matches(directory, key):
        raise ValueError(f"alignment cache {directory} was built from another encoder or data")
    features = load_file(str(Path(directory) / CACHE_FILE))["features"]
    if len(features) != num_items:
        raise ValueError(
            f"alignment cache {directory} holds {len(features)} items, the token cache {num_items}"
        )
    return features


class AlignedItems(Dataset):
    """A token dataset's items with the target feature of each appended."""

    def __init__(self, items: Dataset, features: torch.Tensor):
        self.items, self.features = items, features

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple:
        return (*self.items[index], self.features[index])


class Adaptor(nn.Module):
    """Pooled hidden state (B, D) -> the encoder's feature space (B, F): a two-layer MLP."""

    def __init__(self, dim: int, hidden: int, features: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class HiddenTap:
    """Keeps the output of one block during the forward passes run inside a ``with``."""

    def __init__(self, block: nn.Module):
        self.block, self.output = block, None

    def __enter__(self) -> HiddenTap:
        self.handle = self.block.register_forward_hook(self.keep)
        return self

    def keep(self, module: nn.Module, args, output: torch.Tensor) -> None:
        self.output = output

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def aligned_block(model: nn.Module, layer: int | None) -> tuple[nn.Module, int]:
    """The block whose output is aligned, and the number of leading (condition) positions that
    predict no image token; refused for generators without a block stack."""
    blocks = getattr(model, "layers", None)
    if not isinstance(blocks, nn.ModuleList):
        raise ValueError(f"align: needs a generator with a stack of blocks, not a {type(model).__name__}")
    index = len(blocks) // 2 if layer is None else layer
    if not 0 <= index < len(blocks):
        raise ValueError(f"align.layer must be in 0..{len(blocks) - 1}, got {layer}")
    return blocks[index], model.config.prefix_len - 1


def alignment_loss(hidden: torch.Tensor, skip: int, adaptor: Adaptor, target: torch.Tensor) -> torch.Tensor:
    """1 - cosine between the adaptor's map of the mean hidden state (B, S, D) over positions
    from ``skip`` on and the target features (B, F), averaged over the batch."""
    pooled = hidden[:, skip:].float().mean(1)  # (B, D)
    return (1 - F.cosine_similarity(adaptor(pooled), target.float(), dim=-1)).mean()


class Aligner:
    """What a generator task needs to add the alignment loss: the tapped block, the adaptor
    (trained beside the model as the extra module ``align``) and the weight."""

    def __init__(self, config: AlignConfig, model: nn.Module, features: int):
        block, self.skip = aligned_block(model, config.layer)
        self.tap, self.weight = HiddenTap(block), config.weight
        self.adaptor = Adaptor(model.config.dim, config.hidden, features)

    def loss(self, adaptor: nn.Module, target: torch.Tensor) -> torch.Tensor:
        """The alignment loss of the forward pass just run inside ``with self.tap``."""
        return alignment_loss(self.tap.output, self.skip, adaptor, target)


def attach_alignment(task, recipe, accelerator) -> Aligner:
    """Build (main process) or reuse the feature cache of ``recipe.align``, give ``task`` its
    dataset with the target features and the adaptor as an extra module -> the Aligner."""
    config, data = recipe.align, recipe.data
    if not Path(config.encoder, CONFIG_NAME).is_file():
        raise ValueError(f"align.encoder {config.encoder} is not a model directory (no {CONFIG_NAME})")
    encoder = load_classifier(config.encoder)
    directory = Path(config.cache or Path(recipe.output_dir) / "align_cache")
    key = feature_key(config, data.dataset, data.resolution, data.flip)
    if accelerator.is_main_process and not cache_matches(directory, key):
        dataset = build_dataset(data.dataset, data.resolution, data.frames, data.frame_stride)
        build_feature_cache(encoder, dataset, directory, key, data.flip, accelerator.device)
    accelerator.wait_for_everyone()
    task.dataset = AlignedItems(task.dataset, load_features(directory, key, len(task.dataset)))
    aligner = Aligner(config, task.model, encoder.num_features)
    task.extra_modules = {"align": aligner.adaptor}
    task.joint_modules = ("align",)
    return aligner
