"""A resolved config as YAML with each key's meaning: the comment its dataclass field carries.

``train.py --print-config`` prints a recipe this way. A field's meaning is the ``# ...`` comment
on its line in the class body (or the lines right above it), else the meaning ``GLOSSARY``
gives a key of that name in every config.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import io
import json
import tokenize
from typing import Any

import yaml

# Keys that mean the same in every config that has them (a field's own comment wins).
GLOSSARY = {
    # recipes
    "output_dir": "where the run writes model/, checkpoint/, logs and its recipe",
    "task": "what train.py trains (tokenizer, generator, refiner, classifier, draft_head, distill, control)",
    "seed": "seeds the model's initialisation, the data order and the run's random draws",
    "data": "the dataset and how it is batched",
    "model": "the trained network's constructor arguments",
    "loss": "the training loss's terms and weights",
    "train": "optimisation: steps, learning rate schedule, EMA, checkpoints",
    "control": "where the control maps come from",
    # data
    "resolution": "image side in pixels",
    "num_workers": "DataLoader worker processes (0: load in the training process)",
    # train
    "max_steps": "optimizer steps of the run",
    "lr": "peak learning rate (AdamW), reached after warmup_steps",
    "warmup_steps": "linear warm-up steps before the cosine decay",
    "weight_decay": "AdamW weight decay of matrices (linear, conv, embedding); none on norms and biases",
    "betas": "AdamW's (beta1, beta2)",
    "grad_accum": "batches accumulated per optimizer step",
    "save_every": "steps between checkpoints (and one at the last step)",
    "log_every": "steps between lines of log.jsonl",
    # generators
    "vocab_size": "ids per token; generators: set from the tokenizer at training time",
    "grid_size": "tokens per (rows, columns); generators: set from the tokenizer at training time",
    "num_classes": "class labels the model knows (class-conditional: rows of the class table)",
    "dim": "width of the transformer",
    "n_layer": "transformer blocks",
    "n_head": "attention heads",
    "heads": "attention heads",
    "n_kv_head": "key/value heads (grouped-query attention); None: n_head",
    "ffn_dim": "hidden width of the SwiGLU feed-forward; None: 2/3 of 4 * dim rounded up to 256",
    "norm_eps": "RMSNorm epsilon",
    "rope_base": "rotary embedding base frequency",
    "condition": "class: a class label; text: a caption's features",
    "dropout": "dropout probability in training",
    "init_std": "standard deviation of the weights' normal initialisation",
    "paradigm": "the registered paradigm that trains the model (python -m argen.paradigms lists them)",
    # distillation: the teacher's sampling settings the pairs are drawn with
    "cfg_scale": "the teacher's classifier-free guidance scale for the pairs",
    "cfg_schedule": "the teacher's guidance: constant, or linear from 1 at the first token to cfg_scale",
    "temperature": "the teacher's sampling temperature for the pairs",
    "top_k": "the teacher's top-k for the pairs (0: off)",
    "top_p": "the teacher's nucleus threshold for the pairs (1: off)",
    # tokenizers
    "in_channels": "image channels (3: RGB)",
    "base_channels": "channels of the first encoder level",
    "channel_mult": "channel multiple per level; the stride is 2 ** (levels - 1)",
    "channels": "channels per level",
    "num_res_blocks": "residual blocks per level",
    "layers_per_block": "residual blocks per level",
    "z_channels": "channels of the encoder's output before the quantizer",
    "latent_channels": "channels of a continuous token",
    "norm_groups": "GroupNorm groups",
    "mid_attention": "self-attention in the middle block",
    "level_attention": "attention after every res block of the lowest resolution",
    "codebook_size": "codes in the codebook",
    "codebook_dim": "width of a code vector",
    "l2_norm": "l2-normalise latents and codes before the nearest-code search (LlamaGen's)",
    "commit_beta": "weight of the commitment loss",
    "patch_nums": "tokens per side of each scale, coarse to fine",
    "patch_size": "pixels per token side",
    "phi_count": "VAR's residual convolutions (1: shared; len(patch_nums): one per scale)",
    "phi_ratio": "VAR's phi: the share of the convolution in its residual mix",
    "band_codebooks": "one codebook per frequency band (else one shared codebook)",
    "shift_factor": "subtracted from the latents before scaling_factor",
    "feature_dim": "width of the penultimate features (the FID features)",
    "frames": "frames per clip",
    "subsampling": "JPEG chroma subsampling",
    "fps": "frames per second of the encoded clips",
    "crf": "x264 constant rate factor (higher: fewer bytes)",
    "preset": "x264 speed preset",
    "bpe": "a byte-level BPE (Hugging Face tokenizers JSON); empty: raw bytes",
    "reconstruction": "pixel loss: l1 or l2",
    "codebook_weight": "weight of the codebook loss",
    "disc_start": "step at which the PatchGAN loss starts",
    "disc_channels": "PatchGAN channels",
    "disc_layers": "PatchGAN layers",
    # holistic (LARP) tokenizer
    "stochastic_temperature": "SVQ: temperature of the softmax over cosine similarities",
    "prior_dim": "width of the AR prior",
    "prior_depth": "blocks of the AR prior",
    "prior_heads": "attention heads of the AR prior",
    "prior_rounds": "rounds of the prior loss per step (scheduled sampling from round 2)",
    "prior_temperature": "temperature of the prior's logits over the codebook",
    "ss_max_ratio": "scheduled sampling: the largest share of tokens replaced by the prior's",
    "ss_peak_step": "scheduled sampling: the step at which that share is reached",
    # control, LoRA
    "kind": "canny: edges computed from each image; folder: precomputed maps",
    "high_threshold": "the canny upper hysteresis threshold; None: the detector's own",
    "rank": "LoRA rank",
    "alpha": "LoRA scale numerator (the update is scaled by alpha / rank)",
}


@functools.cache
def field_meanings(cls: type) -> dict[str, str]:
    """Field name -> its meaning: the comment beside (or just above) it in the class body, else
    the glossary's."""
    names = {f.name for f in dataclasses.fields(cls)}
    meanings = {name: GLOSSARY[name] for name in names if name in GLOSSARY}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass) and klass is not object:
            meanings.update(_class_comments(klass))
    return meanings


def _class_comments(cls: type) -> dict[str, str]:
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # defined where no source is kept (e.g. make_dataclass)
        return {}
    names = {f.name for f in dataclasses.fields(cls)}
    comments: dict[str, str] = {}
    pending: list[str] = []  # full-line comments waiting for the field below them
    current = None  # the field whose statement is being read (it may span lines)
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            text = token.string.lstrip("#").strip()
            if current is not None:
                comments.setdefault(current, text)
            else:
                pending.append(text)
        elif token.type == tokenize.NEWLINE:
            current = None
        elif token.type == tokenize.NAME and token.start[1] == 4 and current is None:
            current = token.string if token.string in names else None
            if current is not None and pending:
                comments[current] = " ".join(pending)
            pending = []  # a comment above a method or other statement is not about a field
    return comments


def annotated_yaml(config: Any, indent: int = 0) -> str:
    """``config`` (a dataclass) as YAML, every key followed by its meaning when it has one."""
    lines = []
    meanings = field_meanings(type(config))
    pad = "  " * indent
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        note = f"  # {meanings[f.name]}" if f.name in meanings else ""
        if dataclasses.is_dataclass(value):
            lines.append(f"{pad}{f.name}:{note}")
            lines.append(annotated_yaml(value, indent + 1))
        else:
            lines.append(f"{pad}{f.name}: {_inline(value)}{note}")
    return "\n".join(lines)


def _inline(value: Any) -> str:
    plain = json.loads(json.dumps(value, default=_plain))
    return yaml.safe_dump(plain, default_flow_style=True, width=10**6).strip().removesuffix("\n...")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not a config value")
