"""``sample.py --ckpt RUN_DIR``: class- or text-conditional samples as ``grid.png`` and
``samples.npz`` (ADM evaluator format), and with ``--fid REF`` a ``metrics.json``. Text models
take ``--prompt "..."`` (repeatable) or ``--prompts-file FILE``. Under ``accelerate launch``
the batches are shared across processes and gathered on the main one."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from PIL import Image
from torchvision.utils import make_grid
from tqdm import tqdm

from argen import models, tokenizers
from argen.checkpoint import CheckpointError
from argen.data import DatasetError, ImageFolderDataset, build_dataset
from argen.data.images import load_rgb
from argen.eval import (
    FeaturesUnavailable,
    class_consistency,
    classifier_metric,
    frechet_distance,
    from_uint8,
    inception_metric,
    load_classifier,
    load_npz,
    save_npz,
    to_uint8,
)
from argen.models.refiner import FineLabelTransformer
from argen.sampling.coarse_to_fine import Refinement
from argen.sampling.generate import BatchStore, batch_seed, generate_batch
from argen.sampling.next_scale import keep_masks
from argen.sampling.next_token import SamplingConfig
from argen.sampling.speculative import Speculation, SpeculativeConfig
from argen.text import TextEncoder, check_prompts, read_prompts_file, warn_truncated
from argen.tokenizers.layout import ByteLayout, CoarseToFineLayout, ContinuousLayout, GridLayout, ScaleLayout
from argen.training.trainer import TrainingError, check_world

# options that do not change the samples drawn
DISPLAY_ONLY = {"out", "fid", "fid_features", "inception_weights", "classifier", "compile"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="generator run directory, model directory or LlamaGen .pt")
    p.add_argument("--tokenizer", help="tokenizer directory or LlamaGen .pt (default: <ckpt>/tokenizer)")
    p.add_argument("--image-size", type=int, help="LlamaGen .pt files: default from the file name, else 256")
    p.add_argument("--weights", choices=["ema", "model"], help="default: ema when the run has it")
    p.add_argument("--classes", help='class models: "all" (default) or comma-separated class ids')
    p.add_argument("--prompt", action="append", help="text models: a prompt (repeatable)")
    p.add_argument("--prompts-file", help="text models: a UTF-8 file with one prompt per line")
    p.add_argument("--text-encoder", help="text models: override the encoder named in the checkpoint")
    p.add_argument("--num-samples", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--cfg-scale", type=float, default=1.0)
    p.add_argument("--cfg-interval", type=float, nargs=2, default=(0.0, 1.0), metavar=("START", "END"))
    p.add_argument("--cfg-schedule", choices=["constant", "linear"], default="constant")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--flow-steps", type=int, default=25, help="continuous tokens: ODE steps of the head")
    p.add_argument("--flow-solver", choices=["euler", "heun"], default="euler")
    p.add_argument(
        "--cfg-noise-interval",
        type=float,
        nargs=2,
        default=(0.0, 1.0),
        metavar=("LO", "HI"),
        help="continuous tokens: guide only while the noise level t (1 = noise) lies in [LO, HI]",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="torch.compile the one-token decode step")
    p.add_argument("--speculative", metavar="DRAFT", help="draft generator (run or model directory)")
    p.add_argument("--draft-length", type=int, default=4, help="speculative: tokens drafted per round")
    p.add_argument(
        "--relaxed-k", type=int, default=0, help="speculative: latent neighbours per code (LANTERN)"
    )
    p.add_argument("--relaxed-delta", type=float, default=0.0, help="speculative: total-variation budget")
    p.add_argument("--relaxed-lambda", type=float, help="speculative: cap on the aggregated mass (LANTERN++)")
    p.add_argument(
        "--refiner", metavar="RUN", help="coarse-to-fine models: the fine-label run (task: refiner)"
    )
    p.add_argument(
        "--fine-temperature", type=float, default=1.0, help="coarse-to-fine: 0 takes the likeliest code"
    )
    p.add_argument("--precision", choices=["fp32", "bf16"], help="generator weights (default: bf16 on GPU)")
    p.add_argument("--edit", metavar="IMAGE", help="next-scale models: edit this image (needs --mask)")
    p.add_argument("--mask", metavar="MASK", help="--edit: a grayscale image, white where it is regenerated")
    p.add_argument("--resize", type=int, help="bicubic resize of the samples, e.g. 384 -> 256 for FID")
    p.add_argument("--out", help="output directory (default: <ckpt>/samples)")
    p.add_argument("--fid", metavar="REF", help="reference: an .npz, an image folder or an embedded dataset")
    p.add_argument("--fid-features", choices=["inception", "classifier"], default="inception")
    p.add_argument("--inception-weights", help="local copy of the Inception weights for FID")
    p.add_argument("--classifier", help="classifier directory: class-consistency (and its FID features)")
    return p.parse_args(argv)


def is_run(path: Path) -> bool:
    """A run directory (model/, ema/, tokenizer/) rather than a model directory or file."""
    return not ((path / "config.json").is_file() or path.is_file())


def weights_of(run: Path, choice: str | None) -> Path:
    """The model directory of a run: ``choice``, else ema when the run has it."""
    return run / (choice or ("ema" if (run / "ema").is_dir() else "model"))


def resolve_dirs(args: argparse.Namespace) -> tuple[Path, Path]:
    run = Path(args.ckpt)
    if is_run(run):
        model_dir, tokenizer_dir = weights_of(run, args.weights), args.tokenizer or run / "tokenizer"
    else:
        bundled = run / "tokenizer"  # a converted model may carry its tokenizer
        model_dir, tokenizer_dir = run, args.tokenizer or (bundled if bundled.is_dir() else None)
    if tokenizer_dir is None:
        raise CheckpointError(f"{run} is a bare model: pass --tokenizer DIR")
    return model_dir, Path(tokenizer_dir)


def check_pair(model: torch.nn.Module, layout, model_dir: Path, tokenizer_dir: Path) -> None:
    """Refuse a tokenizer whose tokens the generator was not trained on."""
    c = model.config
    continuous = isinstance(layout, ContinuousLayout)
    if continuous != hasattr(model, "head"):
        raise CheckpointError(
            f"tokenizer {tokenizer_dir} ({layout}) and generator {model_dir} disagree on continuous tokens"
        )
    size = layout.token_dim if continuous else layout.vocab_size
    if (size, (layout.height, layout.width)) != (
        c.token_dim if continuous else c.vocab_size,
        tuple(c.grid_size),
    ):
        raise CheckpointError(
            f"tokenizer {tokenizer_dir} ({layout}) does not match generator {model_dir} "
            f"(vocab {c.vocab_size}, grid {c.grid_size})"
        )
    scales = tuple(getattr(c, "patch_nums", ()))
    if scales != tuple(getattr(layout, "scales", ())):
        raise CheckpointError(
            f"tokenizer {tokenizer_dir} ({layout}) and generator {model_dir} (scales {scales or None}) "
            "do not fit: next-scale generators need a multi-scale tokenizer with the same scales"
        )


def parse_classes(spec: str | None, num_classes: int) -> list[int]:
    if spec in (None, "all"):
        return list(range(num_classes))
    try:
        ids = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f'--classes must be "all" or comma-separated integers, got {spec!r}') from None
    bad = [i for i in ids if not 0 <= i < num_classes]
    if bad or not ids:
        raise ValueError(f"class ids must lie in [0, {num_classes}); got {spec!r}")
    return ids


def reference_images(spec: str, resolution: int) -> np.ndarray:
    if spec.endswith(".npz"):
        return load_npz(spec)
    dataset = build_dataset(spec, resolution)
    return np.concatenate([to_uint8(dataset[i][0][None]) for i in range(len(dataset))])


class Evaluation:
    """The metrics a run asked for, set up before sampling so that a missing reference,
    classifier or Inception weights fail in seconds, not after the samples are drawn."""

    def __init__(self, args: argparse.Namespace, resolution: int, device: torch.device):
        self.device = device
        self.classifier = load_classifier(args.classifier).to(device) if args.classifier else None
        self.metric = self.real = None
        if args.fid:
            if args.fid_features == "inception":
                self.metric, self.key = inception_metric(args.inception_weights), "fid"
                self.features = "inception-v3 pool3 (2048-d, torch-fidelity weights)"
            else:
                if self.classifier is None:
                    raise ValueError("--fid-features classifier needs --classifier DIR")
                self.metric, self.key = classifier_metric(self.classifier), "fid_classifier"
                self.features = f"classifier {args.classifier} penultimate ({self.classifier.num_features}-d)"
            self.real = reference_images(args.fid, resolution)
            self.reference = args.fid

    @property
    def wanted(self) -> bool:
        return self.metric is not None or self.classifier is not None

    def __call__(self, images: np.ndarray, labels: np.ndarray | None) -> dict:
        metrics: dict = {}
        if self.metric is not None:
            metrics[self.key] = frechet_distance(self.metric, self.real, images, device=self.device)
            metrics.update(features=self.features, reference=self.reference, reference_size=len(self.real))
        if self.classifier is not None and labels is not None:
            pixels = from_uint8(images).to(self.device)
            metrics["class_consistency"] = class_consistency(
                self.classifier, pixels, torch.from_numpy(labels).to(self.device)
            )
        return metrics


def load_speculation(
    args: argparse.Namespace, model: torch.nn.Module, tokenizer: torch.nn.Module, device, dtype
) -> Speculation | None:
    """The draft model and acceptance settings of ``--speculative``, checked against the target."""
    if not args.speculative:
        return None
    if not isinstance(tokenizer.layout, GridLayout):
        raise ValueError("--speculative needs a next-token generator over ids")
    run = Path(args.speculative)
    draft_dir = weights_of(run, args.weights) if is_run(run) else run
    draft = models.load(draft_dir).to(device, dtype)
    keys = ("vocab_size", "grid_size", "condition", "num_classes")
    if any(getattr(draft.config, k) != getattr(model.config, k) for k in keys):
        raise CheckpointError(f"draft {draft_dir} does not share the target's {', '.join(keys)}")
    spec = SpeculativeConfig(args.draft_length, args.relaxed_k, args.relaxed_delta, args.relaxed_lambda)
    codebook = tokenizer.quantize.codebook().detach() if spec.relaxed else None
    return Speculation(draft, spec, codebook)


def load_refinement(
    args: argparse.Namespace, model: torch.nn.Module, tokenizer: torch.nn.Module, device, dtype
) -> Refinement | None:
    """The fine-label model of a coarse-to-fine generator, checked against it and its tokenizer."""
    coarse = isinstance(tokenizer.layout, CoarseToFineLayout)
    if coarse != bool(args.refiner):
        raise ValueError(
            "this generator predicts coarse labels: pass --refiner RUN (its task: refiner run)"
            if coarse
            else "--refiner needs a coarse-to-fine generator (trained with coarse_clusters > 0)"
        )
    if not coarse:
        return None
    if args.speculative:
        raise ValueError("--speculative and --refiner do not combine")
    if args.fine_temperature < 0:
        raise ValueError("--fine-temperature must be >= 0")
    run = Path(args.refiner)
    refiner = models.load(weights_of(run, args.weights) if is_run(run) else run).to(device, dtype)
    keys = ("vocab_size", "grid_size", "condition", "num_classes", "caption_dim")
    if not isinstance(refiner, FineLabelTransformer) or any(
        getattr(refiner.config, k) != getattr(model.config, k) for k in keys
    ):
        raise CheckpointError(f"{run} is not a fine-label model for this generator (same {', '.join(keys)})")
    if not torch.equal(refiner.coarse_labels.cpu(), tokenizer.coarse_labels.cpu()):
        raise CheckpointError(f"{run} was trained on other coarse labels than the tokenizer's")
    return Refinement(refiner, args.fine_temperature, args.compile)


def load_edit(args: argparse.Namespace, tokenizer: torch.nn.Module, device: torch.device):
    """``--edit IMAGE --mask MASK`` -> (source ids per scale, keep masks per scale), or None."""
    if not (args.edit or args.mask):
        return None
    if not (args.edit and args.mask):
        raise ValueError("--edit and --mask go together")
    if not isinstance(tokenizer.layout, ScaleLayout):
        raise ValueError("--edit needs a next-scale (multi-scale tokenizer) generator")
    resolution = tokenizer.config.resolution
    image, mask = load_rgb(Path(args.edit)), load_rgb(Path(args.mask))
    if image is None or mask is None:
        raise ValueError(f"cannot read --edit {args.edit} or --mask {args.mask} as images")
    pixels = ImageFolderDataset.image_transform(resolution)(image)[None].to(device)  # (1, 3, R, R)
    source = tokenizer.encode(pixels)
    gray = torch.from_numpy(np.asarray(mask.convert("L").resize((resolution, resolution)))).float() / 255
    return source, keep_masks(gray, tokenizer.layout.scales)


def conditions_for(args: argparse.Namespace, model: torch.nn.Module, device: torch.device):
    """What to sample: (class ids or prompts, their conditions as class ids (K,) or a Caption)."""
    prompts = list(args.prompt or []) + (read_prompts_file(args.prompts_file) if args.prompts_file else [])
    if model.config.condition != "text":
        if prompts or args.text_encoder:
            raise ValueError("this generator is class-conditional: use --classes, not prompts")
        classes = parse_classes(args.classes, model.config.num_classes)
        return classes, torch.tensor(classes)
    if args.classes is not None:
        raise ValueError("this generator is text-conditional: use --prompt or --prompts-file, not --classes")
    prompts = check_prompts(prompts)
    encoder = TextEncoder(args.text_encoder or model.config.text_encoder, model.config.caption_len, device)
    if encoder.dim != model.config.caption_dim:
        raise ValueError(
            f"text encoder width {encoder.dim} != the generator's caption_dim {model.config.caption_dim}"
        )
    warn_truncated(prompts, encoder.token_counts(prompts), model.config.caption_len)
    return prompts, encoder(prompts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    accelerator = Accelerator()
    try:
        check_world(accelerator)
        model_dir, tokenizer_dir = resolve_dirs(args)
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[
            args.precision or ("bf16" if accelerator.device.type == "cuda" else "fp32")
        ]
        model = models.load(model_dir, args.image_size).to(accelerator.device, dtype)
        tokenizer = tokenizers.load(tokenizer_dir, args.image_size).to(accelerator.device)
        check_pair(model, tokenizer.layout, model_dir, tokenizer_dir)
        if args.num_samples < 1 or args.batch_size < 1 or (args.resize is not None and args.resize < 8):
            raise ValueError("--num-samples and --batch-size must be positive, --resize at least 8")
        names, conditions = conditions_for(args, model, accelerator.device)
        config = SamplingConfig(
            cfg_scale=args.cfg_scale,
            cfg_interval=tuple(args.cfg_interval),
            cfg_schedule=args.cfg_schedule,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            flow_steps=args.flow_steps,
            flow_solver=args.flow_solver,
            cfg_noise_interval=tuple(args.cfg_noise_interval),
        )
        speculation = load_speculation(args, model, tokenizer, accelerator.device, dtype)
        refinement = load_refinement(args, model, tokenizer, accelerator.device, dtype)
        edit = load_edit(args, tokenizer, accelerator.device)
        if hasattr(tokenizer.config, "frames") and (args.fid or args.classifier or args.resize):
            raise ValueError("video samples: --fid, --classifier and --resize take images")
        evaluation = Evaluation(args, args.resize or tokenizer.config.resolution, accelerator.device)
    except (CheckpointError, ValueError, TrainingError, FeaturesUnavailable, DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    ckpt = Path(args.ckpt)
    out = Path(args.out or (ckpt.with_name(f"{ckpt.stem}_samples") if ckpt.is_file() else ckpt / "samples"))
    labels = torch.arange(args.num_samples) % len(names)  # (N,) index into the classes or prompts
    num_batches = -(-args.num_samples // args.batch_size)
    settings = {k: v for k, v in vars(args).items() if k not in DISPLAY_ONLY}
    settings.update(model=str(model_dir), tokenizer=str(tokenizer_dir), conditions=names)
    store = BatchStore(out, settings)
    if accelerator.is_main_process:
        store.prepare()
    accelerator.wait_for_everyone()
    mine = range(accelerator.process_index, num_batches, accelerator.num_processes)
    todo = [b for b in mine if not store.has(b)]
    start = time.perf_counter()
    for b in tqdm(todo, desc="sampling", disable=not accelerator.is_main_process):
        rows = conditions[labels[b * args.batch_size : (b + 1) * args.batch_size]]
        seed = batch_seed(args.seed, b)
        images, valid = generate_batch(
            model, tokenizer, rows, config, seed, args.compile, args.resize, speculation or refinement, edit
        )
        store.put(b, images, valid)
    seconds = time.perf_counter() - start
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return 0

    images, valid = store.gather(num_batches)  # (N, H, W, C), (N,)
    text = model.config.condition == "text"
    class_ids = None if text else torch.tensor(names)[labels].numpy()
    extra = {"valid": valid} if isinstance(tokenizer.layout, ByteLayout) else {}
    if text:
        save_npz(out / "samples.npz", images, prompt_ids=labels.numpy(), **extra)
    else:
        save_npz(out / "samples.npz", images, labels=class_ids, **extra)
    if text:  # prompt_ids index this list
        (out / "prompts.json").write_text(json.dumps(names, indent=1, ensure_ascii=False) + "\n")
    store.clear()
    if images.ndim == 5:  # videos: one row of frames per sample, the first ten samples
        first = images[:10]
        grid = make_grid(
            torch.from_numpy(first.reshape(-1, *first.shape[2:])).permute(0, 3, 1, 2), nrow=first.shape[1]
        )
    else:
        grid = make_grid(
            torch.from_numpy(images[: len(names) * 10]).permute(0, 3, 1, 2), nrow=len(names), padding=1
        )
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(out / "grid.png")
    print(f"wrote {len(images)} samples to {out}/samples.npz and {out}/grid.png")

    streams = isinstance(tokenizer.layout, ByteLayout)
    if evaluation.wanted or speculation is not None or streams:
        metrics = evaluation(images, class_ids) if evaluation.wanted else {}
        if streams:  # byte tokenizers: how many generated streams were well formed
            metrics["streams"] = {"valid": int(valid.sum()), "invalid": int((~valid).sum())}
        metrics.update(
            num_samples=len(images),
            sampling=vars(config) | {"seed": args.seed, "weights": str(model_dir)},
            sampling_seconds=seconds,  # this invocation's share (main process)
        )
        if speculation is not None:
            metrics["speculative"] = vars(speculation.config) | {
                "tokens_per_target_call": speculation.tokens_per_call,  # main process's batches
                "draft": args.speculative,
            }
        if refinement is not None:
            metrics["coarse_to_fine"] = {"refiner": args.refiner, "fine_temperature": args.fine_temperature}
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(json.dumps({k: v for k, v in metrics.items() if k != "sampling"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
