"""Training recipes: one typed config per task, loaded from YAML plus ``key=value`` overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from argen.config import ConfigError, from_dict, load_yaml, merge, parse_overrides
from argen.data.control import ControlConfig
from argen.eval.classifier import ClassifierConfig
from argen.models.heads import FlowHeadConfig
from argen.models.llama import LlamaConfig
from argen.tokenizers.avc import AVCConfig
from argen.tokenizers.causal_video import CausalVideoVQConfig
from argen.tokenizers.continuous import ContinuousConfig
from argen.tokenizers.frame_vq import FrameVQConfig
from argen.tokenizers.frequency import FrequencyVQConfig
from argen.tokenizers.jpeg import JPEGConfig
from argen.tokenizers.multiscale import MultiScaleVQConfig
from argen.tokenizers.vq import VQConfig
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


@dataclass
class TokenizerRecipe:
    output_dir: str
    task: Literal["tokenizer"] = "tokenizer"
    # multiscale: VAR's residual pyramid; frequency: NFIG's frequency bands; continuous: a KL
    # autoencoder (diffusers AutoencoderKL) whose latents are the tokens; jpeg / avc: JPEG or
    # H.264 bytes (nothing to train: the run writes the tokenizer, with its BPE when asked);
    # frame_vq / causal_video: video clips, the image VQ per frame or a causal 3-D VQ
    tokenizer: Literal[
        "vq", "multiscale", "frequency", "continuous", "jpeg", "avc", "frame_vq", "causal_video"
    ] = "vq"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: VQConfig = field(default_factory=VQConfig)
    loss: VQLossConfig = field(default_factory=VQLossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class MultiScaleTokenizerRecipe(TokenizerRecipe):
    model: MultiScaleVQConfig = field(default_factory=MultiScaleVQConfig)


@dataclass
class FrequencyTokenizerRecipe(TokenizerRecipe):
    model: FrequencyVQConfig = field(default_factory=FrequencyVQConfig)


@dataclass
class ContinuousTokenizerRecipe(TokenizerRecipe):
    model: ContinuousConfig = field(default_factory=ContinuousConfig)


@dataclass
class FrameVQTokenizerRecipe(TokenizerRecipe):
    model: FrameVQConfig = field(default_factory=FrameVQConfig)


@dataclass
class CausalVideoTokenizerRecipe(TokenizerRecipe):
    model: CausalVideoVQConfig = field(default_factory=CausalVideoVQConfig)


@dataclass
class JPEGTokenizerRecipe(TokenizerRecipe):
    model: JPEGConfig = field(default_factory=JPEGConfig)
    bpe_vocab_size: int = 0  # > 256: fit a byte-level BPE of this size on the dataset's streams
    bpe_images: int = 2000  # images or clips (evenly spaced over the dataset) the BPE is fitted on


@dataclass
class AVCTokenizerRecipe(JPEGTokenizerRecipe):
    model: AVCConfig = field(default_factory=AVCConfig)


TOKENIZER_RECIPES = {
    "jpeg": JPEGTokenizerRecipe,
    "avc": AVCTokenizerRecipe,
    "multiscale": MultiScaleTokenizerRecipe,
    "frequency": FrequencyTokenizerRecipe,
    "continuous": ContinuousTokenizerRecipe,
    "frame_vq": FrameVQTokenizerRecipe,
    "causal_video": CausalVideoTokenizerRecipe,
}


@dataclass
class GeneratorRecipe:
    output_dir: str
    tokenizer: str  # a trained tokenizer checkpoint directory
    task: Literal["generator", "refiner"] = "generator"
    seed: int = 0
    # > 0: k-means the VQ codebook into this many coarse labels and predict those (CTF stage 1);
    # the run's tokenizer/ then carries the labels
    coarse_clusters: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: LlamaConfig = field(default_factory=LlamaConfig)
    # continuous tokenizers: generate these scales (FlowAR; tokens per side, ending at the grid
    # side) instead of the raster grid; the run's tokenizer/ records them
    token_scales: tuple[int, ...] = ()
    # continuous scales: how a scale becomes the next one's input, bilinear or flowar (FlowAR's
    # bicubic up to the grid, then area down)
    token_resample: Literal["bilinear", "flowar"] = "bilinear"
    # continuous tokenizers: the flow-matching head (default: MAR's MLP for a grid, FlowAR's
    # per-scale transformer for scales)
    head: FlowHeadConfig | None = None
    # video tokenizers: predict all tokens of a frame at once (FAR-style block-causal model)
    # instead of token by token
    next_frame: bool = False
    init_from: str | None = None  # fine-tuning: a generator run this recipe's model starts from
    lora: LoraConfig | None = None  # fine-tuning: train LoRA adapters only (merged on export)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class DraftHeadRecipe:
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
class DistillRecipe:
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
class ControlRecipe:
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
    control_layers: tuple[int, ...] = (0,)  # blocks whose input adds the control (0: the token inputs)
    freeze_base: bool = True  # without lora: train the control encoder only (false: everything)
    lora: LoraConfig | None = None  # LoRA adapters on the base (merged on export)
    data: DataConfig = field(default_factory=DataConfig)  # holdout_every: every n-th image is left out
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class ClassifierRecipe:
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


def recipe_from_dict(data: dict) -> Recipe:
    task = data.get("task")
    if task not in RECIPES:
        raise ConfigError(f"config key 'task' must be one of {sorted(RECIPES)}, got {task!r}")
    derived = {"vocab_size", "grid_size", "num_classes", "caption_dim", "fine_vocab_size", "frames", "rope"}
    derived &= set(data.get("model") or {})
    if task in ("generator", "refiner") and derived:
        raise ConfigError(
            f"model keys {sorted(derived)} come from the tokenizer, the dataset and the text encoder; "
            "remove them"
        )
    if task == "tokenizer" and data.get("tokenizer") in TOKENIZER_RECIPES:
        return from_dict(TOKENIZER_RECIPES[data["tokenizer"]], data)
    return from_dict(RECIPES[task], data)


def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    """Read a YAML recipe and apply ``key=value`` overrides."""
    return recipe_from_dict(merge(load_yaml(path), parse_overrides(list(overrides))))
