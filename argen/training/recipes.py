"""Training recipes: one typed config per task, loaded from YAML plus ``key=value`` overrides."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Literal

from argen.config import ConfigError, from_dict, load_yaml, merge, parse_overrides
from argen.data.control import ControlConfig
from argen.eval.classifier import ClassifierConfig
from argen.models.llama import LlamaConfig
from argen.plugins import load_plugins
from argen.tokenizers.registry import tokenizer_kinds
from argen.tokenizers.vq import VQConfig
from argen.training.alignment import AlignConfig
from argen.training.lora import LoraConfig


@dataclass
class DataConfig:
    dataset: str = "digits"  # an embedded dataset name or an ImageFolder directory
    resolution: int = 16
    flip: bool = False  # random horizontal flips (stored both ways in a token cache)
    batch_size: int = 64  # per process
    num_workers: int = 0
    token_cache: str | None = None  # generator only; default <output_dir>/token_cache
    text_cache: str | None = None  # text generator only; default <output_dir>/text_features
    caption_template: str | None = None  # text generator on a class dataset; default: the dataset's
    holdout_every: int = 10  # classifier, control: every n-th item is held out (accuracy, benchmarks)
    frames: int = 16  # video datasets: frames per clip
    frame_stride: int = 1  # video folders: take every n-th frame

    def __post_init__(self) -> None:
        for name in ("batch_size", "resolution", "frames", "frame_stride", "holdout_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"data.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {self.num_workers}")


@dataclass
class TrainConfig:
    max_steps: int = 1000
    lr: float = 1e-4
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0  # 0 disables clipping
    grad_accum: int = 1
    mixed_precision: Literal["no", "fp16", "bf16"] | None = None  # None: the launcher's setting
    ema_decay: float = 0.0  # 0 disables EMA weights
    save_every: int = 500
    log_every: int = 50
    compile: bool = False  # torch.compile the trained model
    activation_checkpointing: bool = False  # recompute transformer blocks in the backward pass
    threads: int = (
        0  # CPU threads per process; 0: auto (OMP_NUM_THREADS, else the cores shared by the launch)
    )

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise ConfigError(f"train.threads must be >= 0 (0: auto), got {self.threads}")
        for name in ("max_steps", "grad_accum", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class VQLossConfig:
    reconstruction: Literal["l1", "l2"] = "l2"
    perceptual_weight: float = 0.0  # LPIPS (needs VGG16 weights available locally)
    codebook_weight: float = 1.0
    kl_weight: float = 1.0e-6  # continuous tokenizers: weight of the KL to N(0, I) (LDM's)
    disc_weight: float = 0.0  # 0 disables the PatchGAN
    disc_start: int = 0
    disc_channels: int = 64
    disc_layers: int = 3
    disc_lr: float | None = None  # default: train.lr
    # > 0: every this many steps, codes no process chose since the last restart are re-drawn
    # from the step's encoder outputs (k-means++; argen/training/codebook_guard.py). Every
    # vector quantiser; tokenizers without one (KL, codecs) ignore it. 0: no restarts
    codebook_restart_every: int = 50
    codebook_restart_candidates: int = 4096  # encoder outputs (of the step, all processes) to draw from


class RecipeParsing:
    """How a recipe type reads its YAML (a recipe type may pick a more specific type first)."""

    @classmethod
    def parse(cls, data: dict):
        return from_dict(cls, data)


@dataclass
class TokenizerRecipe(RecipeParsing):
    output_dir: str
    task: Literal["tokenizer"] = "tokenizer"
    # a registered kind (argen.tokenizers.tokenizer_kinds()): vq; multiscale (VAR's residual
    # pyramid); frequency (NFIG's frequency bands); continuous (a KL autoencoder, diffusers
    # AutoencoderKL, whose latents are the tokens); jpeg / avc (JPEG or H.264 bytes: nothing to
    # train, the run writes the tokenizer with its BPE when asked); frame_vq / causal_video
    # (video clips: the image VQ per frame or a causal 3-D VQ); or a plugin's
    tokenizer: str = "vq"
    plugins: tuple[str, ...] = ()  # modules or .py files imported first (they register tokenizers)
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: VQConfig = field(default_factory=VQConfig)  # the kind's class's Config
    loss: VQLossConfig = field(default_factory=VQLossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def parse(cls, data: dict):
        return from_dict(tokenizer_recipe(data.get("tokenizer", "vq")), data)


@dataclass
class CodecTokenizerRecipe(TokenizerRecipe):
    """A codec's (JPEG, AVC): nothing to optimise; the run writes the tokenizer."""

    bpe_vocab_size: int = 0  # > 256: fit a byte-level BPE of this size on the dataset's streams
    bpe_images: int = 2000  # images or clips (evenly spaced over the dataset) the BPE is fitted on


@functools.cache
def tokenizer_recipe(kind: str) -> type[TokenizerRecipe]:
    """The recipe type of tokenizers of ``kind``: its class's ``Config`` as the model section."""
    kinds = tokenizer_kinds()
    if kind not in kinds:
        raise ConfigError(f"config key 'tokenizer' must be one of {sorted(kinds)}, got {kind!r}")
    cls = kinds[kind]
    base = CodecTokenizerRecipe if getattr(cls, "codec", False) else TokenizerRecipe
    model = field(default_factory=cls.Config)
    return make_dataclass(f"{cls.__name__}Recipe", [("model", cls.Config, model)], bases=(base,))


@dataclass
class GeneratorRecipe(RecipeParsing):
    output_dir: str
    tokenizer: str  # a trained tokenizer checkpoint directory
    task: Literal["generator", "refiner"] = "generator"
    seed: int = 0
    # the registered paradigm that trains it (raster, next_scale, coarse_labels, next_frame, ...;
    # python -m argen.paradigms lists them); default: the task's paradigm for the tokenizer's layout
    paradigm: str | None = None
    options: dict = field(default_factory=dict)  # the paradigm's own section (its Options)
    plugins: tuple[str, ...] = ()  # modules or .py files imported first (they register paradigms)
    data: DataConfig = field(default_factory=DataConfig)
    model: LlamaConfig = field(default_factory=LlamaConfig)
    init_from: str | None = None  # fine-tuning: a generator run (or Hub reference) the model starts from
    # fine-tuning to another number of classes: the first classes keep their embeddings, or start anew
    init_classes: Literal["keep", "new"] = "keep"
    lora: LoraConfig | None = None  # fine-tuning: train LoRA adapters only (merged on export)
    align: AlignConfig | None = None  # representation alignment (ARRA) with a frozen encoder
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def parse(cls, data: dict):
        derived = {
            "vocab_size",
            "grid_size",
            "num_classes",
            "caption_dim",
            "fine_vocab_size",
            "frames",
            "rope",
        }
        derived &= set(data.get("model") or {})
        if derived:
            raise ConfigError(
                f"model keys {sorted(derived)} come from the tokenizer, the dataset and the text encoder; "
                "remove them"
            )
        return from_dict(cls, upgraded_generator_keys(data))


@dataclass
class DraftHeadRecipe(RecipeParsing):
    """An EAGLE-style draft head for speculative decoding, trained on a frozen target's
    features over the target's token cache (``data.token_cache``)."""

    output_dir: str
    target: str  # the target generator's run directory (its ema weights when it has them)
    task: Literal["draft_head"] = "draft_head"
    seed: int = 0
    layers: int = 1  # the head's Llama blocks
    feature_weight: float = 1.0  # smooth-L1 regression onto the target's next features
    token_weight: float = 0.1  # cross-entropy to the target's next-token distribution
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class DistillRecipe(RecipeParsing):
    """A Distilled Decoding student of a next-token (class- or text-conditional) or next-scale
    teacher, trained on its deterministic sampler's (noise, tokens) pairs: no dataset is read."""

    output_dir: str
    teacher: str  # the teacher generator's run directory (its ema weights when it has them)
    task: Literal["distill"] = "distill"
    seed: int = 0
    num_pairs: int = 20000  # teacher samples to distil
    pairs_dir: str | None = None  # default <output_dir>/pairs
    prompts_file: str | None = None  # text teachers: the prompts of the pairs (default: its captions)
    # the teacher's sampling, distilled into the student
    cfg_scale: float = 2.0
    cfg_schedule: Literal["constant", "linear"] = "constant"
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    flow_steps: int = 16  # Heun steps of the noise-to-token flow
    sampling_steps: tuple[int, ...] = (1, 2)  # the step counts the student learns
    second_step_from: float = (
        0.5  # two steps: the fraction of tokens kept from the first (a scale boundary for next-scale)
    )
    data: DataConfig = field(default_factory=DataConfig)  # batch_size and num_workers only
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class ControlRecipe(RecipeParsing):
    """Spatial control (ControlAR) fine-tuned into a trained raster generator: a control encoder
    whose features join the token inputs, trained on the base's token cache with control maps
    computed from (or paired with) the same images."""

    output_dir: str
    base: str  # the generator run it starts from (its ema weights when it has them)
    task: Literal["control"] = "control"
    seed: int = 0
    control: ControlConfig = field(default_factory=ControlConfig)
    control_cache: str | None = None  # default <output_dir>/control_cache
    control_width: int = 64  # the encoder's channels
    control_layers: tuple[int, ...] | None = (
        None  # blocks that add the control; None: ControlAR's 0, n/3, 2n/3
    )
    control_projection: Literal["linear", "mlp"] = "mlp"  # per fused block: ControlAR's two-layer MLP
    null_control: Literal["zero", "kept"] = "zero"  # ControlAR: the null condition drops the control too
    freeze_base: bool = True  # without lora: train the control encoder only (false: everything)
    lora: LoraConfig | None = None  # LoRA adapters on the base (merged on export)
    data: DataConfig = field(default_factory=DataConfig)  # holdout_every: every n-th image is left out
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class ClassifierRecipe(RecipeParsing):
    output_dir: str
    task: Literal["classifier"] = "classifier"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ClassifierConfig = field(default_factory=ClassifierConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


RECIPES = {
    "tokenizer": TokenizerRecipe,
    "generator": GeneratorRecipe,
    "refiner": GeneratorRecipe,  # CTF stage 2: the fine-label model; tokenizer: a stage-1 run's tokenizer/
    "classifier": ClassifierRecipe,
    "draft_head": DraftHeadRecipe,
    "distill": DistillRecipe,
    "control": ControlRecipe,
}
Recipe = (
    TokenizerRecipe | GeneratorRecipe | ClassifierRecipe | DraftHeadRecipe | DistillRecipe | ControlRecipe
)


# generator keys of earlier versions -> (the paradigm their non-default value chose, its option);
# their recipes keep loading as written
LEGACY_KEYS = {
    "coarse_clusters": ("coarse_labels", "clusters"),
    "token_scales": ("continuous_scales", "scales"),
    "token_resample": (None, "resample"),  # only beside token_scales
    "next_frame": ("next_frame", None),
    "head": (None, "head"),  # continuous_raster or continuous_scales, whichever the recipe takes
}


def upgraded_generator_keys(data: dict) -> dict:
    """A generator recipe of an earlier version (``coarse_clusters``, ``token_scales``,
    ``token_resample``, ``head``, ``next_frame``) in today's terms: ``paradigm`` + ``options``."""
    legacy = {k: data[k] for k in LEGACY_KEYS if k in data and data[k] not in (None, 0, False, [], ())}
    if "token_scales" not in legacy:
        legacy.pop("token_resample", None)
    out = {k: v for k, v in data.items() if k not in LEGACY_KEYS}
    chosen = {LEGACY_KEYS[k][0] for k in legacy} - {None}
    if len(chosen) > 1 or (chosen and out.get("paradigm") not in (None, *chosen)):
        raise ConfigError(f"recipe keys {sorted(legacy)} and paradigm: {out.get('paradigm')} disagree")
    if chosen:
        out["paradigm"] = chosen.pop()
    options = {LEGACY_KEYS[k][1]: v for k, v in legacy.items() if LEGACY_KEYS[k][1]}
    if options:
        out["options"] = {**options, **(out.get("options") or {})}
    return out


def recipe_from_dict(data: dict) -> Recipe:
    """A recipe of any task from its YAML; its ``plugins`` are imported first (they may register
    the tokenizer kind or the paradigm it names)."""
    load_plugins(tuple(data.get("plugins") or ()))
    task = data.get("task")
    if task not in RECIPES:
        raise ConfigError(f"config key 'task' must be one of {sorted(RECIPES)}, got {task!r}")
    return RECIPES[task].parse(data)


def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    """Read a YAML recipe and apply ``key=value`` overrides."""
    return recipe_from_dict(merge(load_yaml(path), parse_overrides(list(overrides))))
