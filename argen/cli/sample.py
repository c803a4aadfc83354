"""``sample.py --ckpt RUN_DIR``: class- or text-conditional samples as ``grid.png`` and
``samples.npz`` (ADM evaluator format), and with ``--fid REF`` a ``metrics.json``. Text models
take ``--prompt "..."`` (repeatable) or ``--prompts-file FILE``. Video generators also write
``videos/NNNNNN.mp4`` per sample, take ``--given-frames N --given-from DATASET`` (frame
prediction) and measure FVD. Under ``accelerate launch`` the batches are shared across
processes and gathered on the main one."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from PIL import Image
from torchvision.utils import make_grid
from tqdm import tqdm

from argen.checkpoint import CheckpointError
from argen.cli.sample_inputs import (
    check_pair,
    conditions_for,
    load_edit,
    load_frame_prompts,
    load_refinement,
    load_speculation,
    resolve_dirs,
    weights_of,
)
from argen.convert import load_generator, load_tokenizer
from argen.data import DatasetError
from argen.data.video_io import write_mp4
from argen.eval import FeaturesUnavailable, save_npz
from argen.eval.evaluation import Evaluation, reference_images
from argen.sampling import SamplingConfig
from argen.sampling.generate import BatchStore, batch_seed, generate_batch
from argen.tokenizers.layout import ByteLayout
from argen.training.trainer import TrainingError, check_world

__all__ = ["main", "reference_images", "weights_of"]

# options that do not change the samples drawn
DISPLAY_ONLY = {
    "out",
    "fid",
    "fid_features",
    "inception_weights",
    "i3d_weights",
    "classifier",
    "compile",
    "fps",
}


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
    p.add_argument("--flow-solver", choices=["euler", "heun", "sde"], default="euler")
    p.add_argument("--flow-noise", type=float, default=1.0, help="continuous tokens, sde: diffusion scale")
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
        "--residual-tries",
        type=int,
        default=32,
        help="continuous speculative: residual proposals per rejection",
    )
    p.add_argument(
        "--refiner", metavar="RUN", help="coarse-to-fine models: the fine-label run (task: refiner)"
    )
    p.add_argument(
        "--fine-temperature", type=float, default=1.0, help="coarse-to-fine: 0 takes the likeliest code"
    )
    p.add_argument("--precision", choices=["fp32", "bf16"], help="generator weights (default: bf16 on GPU)")
    p.add_argument("--edit", metavar="IMAGE", help="next-scale models: edit this image (needs --mask)")
    p.add_argument("--mask", metavar="MASK", help="--edit: a grayscale image, white where it is regenerated")
    p.add_argument("--given-frames", type=int, help="video: keep the first N frames of real clips")
    p.add_argument("--given-from", metavar="DATASET", help="video: the clips --given-frames come from")
    p.add_argument("--fps", type=int, default=8, help="video: frame rate of the mp4 files")
    p.add_argument("--resize", type=int, help="bicubic resize of the samples, e.g. 384 -> 256 for FID")
    p.add_argument("--out", help="output directory (default: <ckpt>/samples)")
    p.add_argument("--fid", metavar="REF", help="reference: an .npz, an image folder or an embedded dataset")
    p.add_argument(
        "--fid-features",
        choices=["inception", "i3d", "classifier"],
        help="default: inception for images, i3d (FVD) for video",
    )
    p.add_argument("--inception-weights", help="local copy of the Inception weights for FID")
    p.add_argument("--i3d-weights", help="video: local i3d_torchscript.pt for FVD")
    p.add_argument("--classifier", help="classifier directory: class-consistency (and its FID features)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    accelerator = Accelerator()
    try:
        check_world(accelerator)
        model_dir, tokenizer_dir = resolve_dirs(args)
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[
            args.precision or ("bf16" if accelerator.device.type == "cuda" else "fp32")
        ]
        model = load_generator(model_dir, args.image_size).to(accelerator.device, dtype)
        tokenizer = load_tokenizer(tokenizer_dir, args.image_size).to(accelerator.device)
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
            flow_noise=args.flow_noise,
            cfg_noise_interval=tuple(args.cfg_noise_interval),
        )
        speculation = load_speculation(args, model, tokenizer, accelerator.device, dtype)
        refinement = load_refinement(args, model, tokenizer, accelerator.device, dtype)
        edit = load_edit(args, tokenizer, accelerator.device)
        frames = getattr(tokenizer.config, "frames", None)  # video: frames per clip
        if frames is not None and args.resize:
            raise ValueError("--resize takes images, not video")
        prompts = load_frame_prompts(args, model, tokenizer, accelerator.device)
        evaluation = Evaluation(args, args.resize or tokenizer.config.resolution, accelerator.device, frames)
    except (CheckpointError, ValueError, TrainingError, FeaturesUnavailable, DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    ckpt = Path(args.ckpt)
    out = Path(args.out or (ckpt.with_name(f"{ckpt.stem}_samples") if ckpt.is_file() else ckpt / "samples"))
    labels = torch.arange(args.num_samples) % len(names)  # (N,) index into the classes or prompts
    if prompts is not None:  # frame prediction: each clip's class (names are all class ids)
        labels = prompts.labels(args.num_samples)
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
        indices = range(b * args.batch_size, min((b + 1) * args.batch_size, args.num_samples))
        rows = conditions[labels[indices.start : indices.stop]]
        given = None if prompts is None else prompts.tokens(indices)
        images, valid = generate_batch(
            model,
            tokenizer,
            rows,
            config,
            batch_seed(args.seed, b),
            args.compile,
            args.resize,
            speculation or refinement,
            edit,
            given,
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
    if images.ndim == 5:  # videos: an mp4 each; the grid has one row of frames per sample, ten samples
        (out / "videos").mkdir(exist_ok=True)
        for i, clip in enumerate(images):
            write_mp4(out / "videos" / f"{i:06d}.mp4", clip, fps=args.fps)
        first = images[:10]
        grid = make_grid(
            torch.from_numpy(first.reshape(-1, *first.shape[2:])).permute(0, 3, 1, 2), nrow=first.shape[1]
        )
    else:
        grid = make_grid(
            torch.from_numpy(images[: len(names) * 10]).permute(0, 3, 1, 2), nrow=len(names), padding=1
        )
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(out / "grid.png")
    videos = f", {out}/videos/*.mp4" if images.ndim == 5 else ""
    print(f"wrote {len(images)} samples to {out}/samples.npz{videos} and {out}/grid.png")

    streams = isinstance(tokenizer.layout, ByteLayout)
    if evaluation.wanted or speculation is not None or streams or prompts is not None:
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
                "residual_fallbacks": speculation.totals.get("fallbacks", 0),
                "draft": args.speculative,
            }
        if prompts is not None:
            metrics["frame_prediction"] = {"given_frames": args.given_frames, "given_from": args.given_from}
        if refinement is not None:
            metrics["coarse_to_fine"] = {"refiner": args.refiner, "fine_temperature": args.fine_temperature}
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(json.dumps({k: v for k, v in metrics.items() if k != "sampling"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
