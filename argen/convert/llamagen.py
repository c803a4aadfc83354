"""Official LlamaGen checkpoints (class- and text-conditional GPTs, VQ-16 / VQ-8) as argen models.

argen's VQ uses LlamaGen's parameter names; its Llama differs in the names of the embeddings
and in RoPE at the condition positions, which LlamaGen zeroes (``rope_condition="zero"``).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from argen.checkpoint import CheckpointError
from argen.models.llama import Llama, LlamaConfig
from argen.tokenizers.vq import VQConfig, VQModel

GPT_RENAMES = {
    "tok_embeddings.weight": "tok_emb.weight",
    "cls_embedding.embedding_table.weight": "class_emb.weight",
    "cls_embedding.cap_proj.fc1.weight": "caption_emb.cap_proj.fc1.weight",
    "cls_embedding.cap_proj.fc2.weight": "caption_emb.cap_proj.fc2.weight",
    "cls_embedding.uncond_embedding": "caption_emb.null_caption",
}
LLAMAGEN_TEXT_ENCODER = "google/flan-t5-xl"
VQ_DROPPED = ("quantize.codebook_used",)  # a usage-statistics buffer, not a weight
GPT_PRESETS = {"GPT-B": "B", "GPT-L": "L", "GPT-XL": "XL", "GPT-XXL": "XXL", "GPT-3B": "3B"}


def load_official_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an official ``.pt`` file, unwrapped from ``model`` / ``module`` /
    ``state_dict`` containers (FSDP-trained files are bare)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {err}") from None
    for key in ("model", "module", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors")
    return state


def image_size_of(path: str | Path, default: int = 256) -> int:
    """The image size in an official file name (``c2i_B_384.pt`` -> 384), else ``default``."""
    match = re.search(r"_(\d{3,4})\.pth?$", Path(path).name)
    return int(match.group(1)) if match else default


def model_of(path: str | Path) -> str | None:
    """The GPT size in an official file name (``c2i_XL_384.pt`` -> ``GPT-XL``), if any."""
    match = re.search(r"(?:^|_)(B|L|XL|XXL|3B)_", Path(path).name)
    return f"GPT-{match.group(1)}" if match else None


def load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model``; unknown or missing keys are an error that lists them."""
    expected = set(model.state_dict())
    unknown, missing = sorted(set(state) - expected), sorted(expected - set(state))
    if unknown or missing:
        raise CheckpointError(f"{source}: unknown keys {unknown[:10]}, missing keys {missing[:10]}")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{source}: {err}") from None


def count_indices(state: dict, pattern: str) -> int:
    return len({m.group(1) for k in state if (m := re.fullmatch(pattern, k))})


def gpt_from_llamagen(
    state: dict[str, torch.Tensor],
    model: str | None = None,
    image_size: int = 256,
    downsample: int = 16,
    text_encoder: str = LLAMAGEN_TEXT_ENCODER,
) -> Llama:
    """A LlamaGen GPT state dict (c2i or t2i) -> :class:`Llama` with the same outputs.

    Text models read ``text_encoder`` features (LlamaGen: FLAN-T5-XL, 120 tokens)."""
    if "cls_embedding.embedding_table.weight" in state:
        condition = dict(num_classes=state["cls_embedding.embedding_table.weight"].shape[0] - 1)
    elif "cls_embedding.uncond_embedding" in state:
        caption_len, caption_dim = state["cls_embedding.uncond_embedding"].shape
        condition = dict(
            condition="text",
            num_classes=0,
            caption_len=caption_len,
            caption_dim=caption_dim,
            text_encoder=text_encoder,
        )
    else:
        raise CheckpointError("not a LlamaGen GPT: no cls_embedding.embedding_table or uncond_embedding")
    if "tok_embeddings.weight" not in state:
        raise CheckpointError("not a LlamaGen GPT: no tok_embeddings")
    vocab, dim = state["tok_embeddings.weight"].shape
    n_layer = count_indices(state, r"layers\.(\d+)\..*")
    if model is None:
        model = next(
            (
                name
                for name, preset in GPT_PRESETS.items()
                if (LlamaConfig.PRESETS[preset]["dim"], LlamaConfig.PRESETS[preset]["n_layer"])
                == (dim, n_layer)
            ),
            None,
        )
    if model not in GPT_PRESETS:
        raise CheckpointError(
            f"cannot tell the GPT size (dim {dim}, {n_layer} layers); pass --model {list(GPT_PRESETS)}"
        )
    grid = image_size // downsample
    config = LlamaConfig(
        vocab_size=vocab,
        grid_size=(grid, grid),
        **condition,
        **{**LlamaConfig.PRESETS[GPT_PRESETS[model]], "dim": dim, "n_layer": n_layer},
        rope_condition="zero",
        dropout=0.0,
    )
    llama = Llama(config)
    load_strict(llama, {GPT_RENAMES.get(k, k): v for k, v in state.items()}, f"LlamaGen {model}")
    return llama.eval()


def gpt_to_llamagen(model: Llama) -> dict[str, torch.Tensor]:
    """The inverse mapping: an argen :class:`Llama` state dict in LlamaGen's layout."""
    back = {v: k for k, v in GPT_RENAMES.items()}
    return {back.get(k, k): v for k, v in model.state_dict().items()}


def vq_from_llamagen(state: dict[str, torch.Tensor], image_size: int = 256) -> VQModel:
    """A LlamaGen VQ state dict (VQ-16, VQ-8, ...) -> :class:`VQModel`; shapes inferred from keys."""
    state = {k: v for k, v in state.items() if k not in VQ_DROPPED}
    if "quantize.embedding.weight" not in state or "encoder.conv_in.weight" not in state:
        raise CheckpointError("not a LlamaGen VQ model (no quantize.embedding / encoder.conv_in)")
    base = state["encoder.conv_in.weight"].shape[0]
    levels = count_indices(state, r"encoder\.conv_blocks\.(\d+)\..*")
    mult = tuple(state[f"encoder.conv_blocks.{i}.res.0.conv1.weight"].shape[0] // base for i in range(levels))
    codebook_size, codebook_dim = state["quantize.embedding.weight"].shape
    config = VQConfig(
        resolution=image_size,
        in_channels=state["encoder.conv_in.weight"].shape[1],
        base_channels=base,
        channel_mult=mult,
        num_res_blocks=count_indices(state, r"encoder\.conv_blocks\.0\.res\.(\d+)\..*"),
        z_channels=state["encoder.conv_out.weight"].shape[0],
        norm_groups=32,
        codebook_size=codebook_size,
        codebook_dim=codebook_dim,
        l2_norm=True,
    )
    vq = VQModel(config)
    load_strict(vq, state, "LlamaGen VQ")
    return vq.eval()
