"""Controlled raster ids (ControlAR): a trained raster generator fine-tuned to follow a spatial
control map (canny edges, depth, segmentation) by conditional decoding
(:mod:`argen.models.control`); sampled token by token as the raster paradigm does, with the
control maps of ``sample.py --control`` beside the class or prompt."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F

from argen.checkpoint import CheckpointError
from argen.models.control import Controlled, ControlledLlama
from argen.models.draft_head import DraftHead
from argen.models.llama import Llama
from argen.paradigms.base import SamplingExtras
from argen.paradigms.options import CONTROL, SPECULATIVE, SpeculationOptions
from argen.paradigms.raster import RasterIds, check_draft
from argen.tokenizers.protocols import GridTokenizer

CONTROL_KEYS = ("control_channels", "control_resolution")


class ControlInputs:
    """``sample.py --control``: sample i follows control map i modulo their number."""

    def __init__(self, maps: torch.Tensor, device: torch.device):
        self.all = maps.to(device)  # (M, C, R, R) in [0, 1]

    def maps(self, indices: range) -> torch.Tensor:
        return self.all[torch.tensor(list(indices)) % len(self.all)]  # (b, C, R, R)


class ControlledRaster(RasterIds):
    name = "controlled_raster"
    generators = (ControlledLlama,)
    task = "control"
    default = True
    sample_options = (SPECULATIVE, CONTROL)
    requirement = "spatial control needs a raster generator over a VQ grid (a Llama)"

    def build_controlled(self, base, **control) -> ControlledLlama:
        """A controlled model with ``base``'s weights and the ``control_*`` settings of
        :class:`~argen.models.control.ControlledConfig` (its control projections start at zero)."""
        if type(base) is not Llama:
            raise ValueError(f"{self.requirement}, not a {type(base).__name__}")
        config = ControlledLlama.Config(**asdict(base.config), **control)
        model = ControlledLlama(config)
        missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
        if unexpected or any(not k.startswith("control_encoder.") for k in missing):
            raise CheckpointError(f"the base generator's weights do not fit: {missing + unexpected}")
        return model

    def control_kind(self, model, requested: str | None) -> str:
        """How ``--control`` inputs are read: canny edges of photos or ready maps (``requested``,
        else the kind the model was trained on)."""
        c = model.config
        kind = requested or ("canny" if c.control_kind == "canny" else "map")
        if kind == "canny" and c.control_channels != 1:
            raise ValueError(f"this generator reads {c.control_channels}-channel maps, not canny edges")
        return kind

    def control_inputs(self, maps: torch.Tensor, device: torch.device) -> ControlInputs:
        return ControlInputs(maps, device)

    def check_extras(self, extras: SamplingExtras) -> None:
        if extras.control is None:
            raise ValueError(
                "this generator was trained with spatial control: pass --control IMAGE_OR_FOLDER"
            )

    def sample(self, model, tokenizer, condition, config, generator, extras: SamplingExtras, given=None):
        return super().sample(model, tokenizer, Controlled(condition, given), config, generator, extras)

    def speculation(self, target, tokenizer: GridTokenizer, draft, options: SpeculationOptions, config):
        if not isinstance(draft, (ControlledLlama, DraftHead)):
            raise CheckpointError(
                f"draft {options.source} is not controlled: a controlled target drafts with a controlled "
                "draft model (task: control) or a draft head"
            )
        if isinstance(draft, ControlledLlama):
            check_draft(draft, target, CONTROL_KEYS, options.source)
        return super().speculation(target, tokenizer, draft, options, config)

    def grid_images(self, images: np.ndarray, extras: SamplingExtras, columns: int) -> tuple[np.ndarray, int]:
        """Each sample after its control map: (control | sample) pairs, twice the columns."""
        maps = extras.control.maps(range(len(images)))  # (N, C, R, R)
        maps = F.interpolate(
            maps.float(), size=images.shape[1:3], mode="nearest"
        )  # as the samples (--resize)
        maps = (
            (maps.expand(-1, images.shape[-1], -1, -1) * 255).round().byte().permute(0, 2, 3, 1)
        )  # (N, H, W, C)
        pairs = np.stack([maps.cpu().numpy(), images], 1)  # (N, 2, H, W, C)
        return pairs.reshape(-1, *images.shape[1:]), 2 * columns
