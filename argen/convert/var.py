"""Official VAR checkpoints as argen models: the multi-scale VQVAE (``vae_ch160v4096z32.pth``)
as a :class:`MultiScaleVQModel`, and the transformers (``var_d16.pth`` ... ``var_d30.pth``) as
:class:`VARTransformer`, whose parameter names are VAR's own.

VAR's VQVAE is the taming/LDM autoencoder: argen's blocks compute the same functions under
other names (``down.i.block.j`` -> ``conv_blocks.i.res.j``, decoder levels in reverse order,
``mid.block_1/attn_1/block_2`` -> ``mid.0/1/2``, one ``qkv`` convolution -> ``q``, ``k``,
``v``, the phi convolutions ``quantize.quant_resi.*`` -> ``phis.*.conv``).
"""

from __future__ import annotations

import re

import torch

from argen.checkpoint import CheckpointError
from argen.convert.llamagen import count_indices, load_strict
from argen.models.var import VARConfig, VARTransformer
from argen.tokenizers.multiscale import MultiScaleVQConfig, MultiScaleVQModel

VAR_PATCH_NUMS = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
VAR_DROPPED = ("quantize.ema_vocab_hit_SV",)  # usage statistics, not a weight
MID = {"block_1": "0", "attn_1": "1", "block_2": "2"}
PHI_PATTERNS = (r"quantize\.quant_resi\.qresi_ls\.(\d+)\.", r"quantize\.quant_resi\.(\d+)\.")


def _rename(key: str, levels: int) -> str:
    """One VAR key -> its argen name (qkv still fused)."""
    key = re.sub(
        r"^(encoder|decoder)\.mid\.(block_1|attn_1|block_2)\.", lambda m: f"{m[1]}.mid.{MID[m[2]]}.", key
    )
    key = re.sub(r"^encoder\.down\.(\d+)\.block\.", r"encoder.conv_blocks.\1.res.", key)
    key = re.sub(r"^encoder\.down\.(\d+)\.", r"encoder.conv_blocks.\1.", key)
    key = re.sub(r"^decoder\.up\.(\d+)\.", lambda m: f"decoder.conv_blocks.{levels - 1 - int(m[1])}.", key)
    key = re.sub(r"^(decoder\.conv_blocks\.\d+\.)block\.", r"\1res.", key)
    key = re.sub(r"^quantize\.quant_resi\.qresi\.", "phis.0.conv.", key)  # one shared phi
    for pattern in PHI_PATTERNS:
        key = re.sub(f"^{pattern}", r"phis.\1.conv.", key)
    return key


def vae_from_var(
    state: dict[str, torch.Tensor], image_size: int = 256, patch_nums: tuple[int, ...] = VAR_PATCH_NUMS
) -> MultiScaleVQModel:
    """A VAR VQVAE state dict -> :class:`MultiScaleVQModel` with the same codes and pixels."""
    state = {k: v for k, v in state.items() if k not in VAR_DROPPED}
    if "quantize.embedding.weight" not in state or "encoder.down.0.block.0.conv1.weight" not in state:
        raise CheckpointError("not a VAR VQVAE (no quantize.embedding / encoder.down)")
    base = state["encoder.conv_in.weight"].shape[0]
    levels = count_indices(state, r"encoder\.down\.(\d+)\..*")
    phis = max(count_indices(state, rf"{p}.*") for p in PHI_PATTERNS) or 1
    codebook_size, codebook_dim = state["quantize.embedding.weight"].shape
    config = MultiScaleVQConfig(
        resolution=image_size,
        in_channels=state["encoder.conv_in.weight"].shape[1],
        base_channels=base,
        channel_mult=tuple(
            state[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] // base for i in range(levels)
        ),
        num_res_blocks=count_indices(state, r"encoder\.down\.0\.block\.(\d+)\..*"),
        z_channels=state["encoder.conv_out.weight"].shape[0],
        norm_groups=32,
        codebook_size=codebook_size,
        codebook_dim=codebook_dim,
        quant_conv_kernel=state["quant_conv.weight"].shape[-1],
        patch_nums=tuple(patch_nums),
        phi_count=phis,
    )
    converted = {}
    for key, value in state.items():
        name = _rename(key, levels)
        if name.endswith((".qkv.weight", ".qkv.bias")):
            stem, kind = name.rsplit(".qkv.", 1)
            for part, chunk in zip("qkv", value.chunk(3)):
                converted[f"{stem}.{part}.{kind}"] = chunk
        else:
            converted[name] = value
    model = MultiScaleVQModel(config)
    load_strict(model, converted, "VAR VQVAE")
    return model.eval()


def vae_to_var(model: MultiScaleVQModel) -> dict[str, torch.Tensor]:
    """The inverse mapping: a :class:`MultiScaleVQModel` state dict in VAR's layout (phis as
    VAR's partially shared ``qresi_ls``, or ``qresi`` for one shared phi)."""
    levels = len(model.config.channel_mult)
    back_mid = {v: k for k, v in MID.items()}
    phi = "quantize.quant_resi.qresi." if model.config.phi_count == 1 else r"quantize.quant_resi.qresi_ls.\1."
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        key = re.sub(r"^(encoder|decoder)\.mid\.(\d)\.", lambda m: f"{m[1]}.mid.{back_mid[m[2]]}.", key)
        key = re.sub(r"^(encoder|decoder)\.conv_blocks\.(\d+)\.res\.", r"\1.conv_blocks.\2.block.", key)
        key = re.sub(r"^encoder\.conv_blocks\.(\d+)\.", r"encoder.down.\1.", key)
        key = re.sub(
            r"^decoder\.conv_blocks\.(\d+)\.", lambda m: f"decoder.up.{levels - 1 - int(m[1])}.", key
        )
        key = re.sub(r"^phis\.(\d+)\.conv\.", phi, key)
        stem, _, kind = key.rpartition(".")
        if stem.endswith((".q", ".k", ".v")):
            fused = f"{stem[:-2]}.qkv.{kind}"
            out[fused] = torch.cat([out[fused], value]) if fused in out else value
        else:
            out[key] = value
    return out


def var_from_official(
    state: dict[str, torch.Tensor], patch_nums: tuple[int, ...] = VAR_PATCH_NUMS
) -> VARTransformer:
    """A VAR transformer state dict -> :class:`VARTransformer` (depth, width, heads, vocabulary,
    classes and AdaLN sharing read from the keys)."""
    if "word_embed.weight" not in state or "blocks.0.attn.mat_qkv.weight" not in state:
        raise CheckpointError("not a VAR transformer (no word_embed / blocks.0.attn.mat_qkv)")
    dim, token_dim = state["word_embed.weight"].shape
    depth = count_indices(state, r"blocks\.(\d+)\..*")
    l2 = "blocks.0.attn.scale_mul_1H11" in state
    heads = state["blocks.0.attn.scale_mul_1H11"].shape[1] if l2 else depth
    side = patch_nums[-1]
    config = VARConfig(
        vocab_size=state["head.weight"].shape[0],
        grid_size=(side, side),
        num_classes=state["class_emb.weight"].shape[0] - 1,
        dim=dim,
        n_layer=depth,
        n_head=heads,
        ffn_dim=state["blocks.0.ffn.fc1.weight"].shape[0],
        norm_eps=1e-6,
        patch_nums=tuple(patch_nums),
        token_dim=token_dim,
        attn_l2_norm=l2,
        shared_aln="shared_ada_lin.1.weight" in state,
    )
    if state["pos_1LC"].shape[1] != config.num_tokens:
        raise CheckpointError(
            f"the checkpoint has {state['pos_1LC'].shape[1]} positions; patch_nums {patch_nums} give "
            f"{config.num_tokens}"
        )
    model = VARTransformer(config)
    load_strict(model, state, f"VAR-d{depth}")
    return model.eval()
