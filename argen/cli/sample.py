"""``sample.py --ckpt RUN_DIR``: class- or text-conditional samples as ``grid.png`` and
``samples.npz`` (ADM evaluator format), and with ``--fid REF`` a ``metrics.json``. Text models
take ``--prompt "..."`` (repeatable) or ``--prompts-file FILE``. Video generators also write
``videos/NNNNNN.mp4`` per sample, take ``--given-frames N --given-from DATASET`` (frame
prediction) and measure FVD. Under ``accelerate launch`` the batches are shared across
processes and gathered on the main one."""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from tqdm import tqdm

from argen import hub, paradigms
from argen.checkpoint import CheckpointError, atomic_directory
from argen.cli.sample_args import DISPLAY_ONLY, parse_args, sampling_config
from argen.cli.sample_inputs import CliInputs, check_tokenizer, load_extras, resolve_dirs
from argen.cli.sample_outputs import write_metrics, write_samples
from argen.convert import load_generator, load_tokenizer
from argen.data import DatasetError
from argen.eval import FeaturesUnavailable
from argen.eval.evaluation import Evaluation, EvaluationConfig
from argen.launch import RunError, check_world, configure_threads
from argen.paradigms import Paradigm, SamplingExtras
from argen.paradigms.generate import PART_IMAGES, BatchStore, Generation, batch_seed, generate_batch
from argen.sampling import SamplingConfig
from argen.training.conditions import CONDITION_KINDS

__all__ = ["main"]


@dataclass
class SampleRun:
    """Everything a sampling run needs, loaded and checked before the first batch."""

    args: argparse.Namespace
    model: torch.nn.Module
    tokenizer: torch.nn.Module
    paradigm: Paradigm
    model_dir: Path
    tokenizer_dir: Path
    conditions: object  # a condition kind (argen/training/conditions.py)
    names: list
    rows: object  # the condition of every name: class ids (K,) or a Caption
    config: SamplingConfig
    extras: SamplingExtras
    evaluation: Evaluation
    out: Path


def load_run(args: argparse.Namespace, device: torch.device) -> SampleRun:
    """Load the generator, its tokenizer and paradigm, the conditions, extras and metrics."""
    model_dir, tokenizer_dir, carried = resolve_dirs(args)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[
        args.precision or ("bf16" if device.type == "cuda" else "fp32")
    ]
    model = load_generator(model_dir, args.image_size).to(device, dtype)
    tokenizer = load_tokenizer(tokenizer_dir, args.image_size)
    paradigm = paradigms.for_generator(model, tokenizer.layout, model_dir, tokenizer_dir)  # they fit
    check_tokenizer(args, carried, tokenizer)  # and it is the one the run was trained with
    tokenizer = tokenizer.to(device)
    if args.num_samples < 1 or args.batch_size < 1 or (args.resize is not None and args.resize < 8):
        raise ValueError("--num-samples and --batch-size must be positive, --resize at least 8")
    conditions = CONDITION_KINDS[model.config.condition]
    names, rows = conditions.resolve(args, model, device)
    config = sampling_config(args)
    inputs = CliInputs(args.weights, device, dtype)
    extras = load_extras(args, paradigms.OptionRun(paradigm, model, tokenizer, config, inputs))
    frames = getattr(tokenizer.config, "frames", None)  # video: frames per clip
    if frames is not None and args.resize:
        raise ValueError("--resize takes images, not video")
    evaluation = Evaluation(
        EvaluationConfig(
            args.fid, args.fid_features, args.inception_weights, args.i3d_weights, args.classifier
        ),
        args.resize or tokenizer.config.resolution,
        device,
        frames,
    )
    settings = run_settings(args, model_dir, tokenizer_dir, names)
    out = Path(args.out) if args.out else default_out(args.ckpt, settings)
    BatchStore(out, settings).check(args.overwrite)  # before anything is drawn
    return SampleRun(
        args,
        model,
        tokenizer,
        paradigm,
        model_dir,
        tokenizer_dir,
        conditions,
        names,
        rows,
        config,
        extras,
        evaluation,
        out,
    )


def run_settings(args: argparse.Namespace, model_dir: Path, tokenizer_dir: Path, names: list) -> dict:
    """Everything that decides the samples drawn (a resumed run must match it)."""
    settings = {k: v for k, v in vars(args).items() if k not in DISPLAY_ONLY}
    return settings | {"model": str(model_dir), "tokenizer": str(tokenizer_dir), "conditions": names}


def default_out(ckpt: str, settings: dict) -> Path:
    """A folder name that tells runs apart (the main settings, then a digest of all of them),
    beside or in the checkpoint; for a Hub reference, in ``runs/hub/OWNER--NAME``."""
    reference = hub.parse_reference(ckpt)
    ckpt = Path("runs", "hub", reference.repo.replace("/", "--")) if reference else Path(ckpt)
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]
    name = f"samples-cfg{settings['cfg_scale']:g}-seed{settings['seed']}-n{settings['num_samples']}-{digest}"
    return ckpt.with_name(f"{ckpt.stem}_{name}") if ckpt.is_file() else ckpt / name


def draw_batches(
    run: SampleRun, labels: torch.Tensor, accelerator: Accelerator
) -> tuple[BatchStore, int, float]:
    """Draw this process's missing parts (whole batches) into the run's store -> (store, parts,
    seconds). Every batch has its own seed, so how batches group into parts changes nothing."""
    args = run.args
    num_batches = -(-args.num_samples // args.batch_size)
    per_part = -(-PART_IMAGES // args.batch_size)  # batches per part
    num_parts = -(-num_batches // per_part)
    store = BatchStore(run.out, run_settings(args, run.model_dir, run.tokenizer_dir, run.names))
    if accelerator.is_main_process:
        store.prepare()
    accelerator.wait_for_everyone()
    mine = range(accelerator.process_index, num_parts, accelerator.num_processes)
    todo = [p for p in mine if not store.has(p)]
    generation = Generation(run.paradigm, run.model, run.tokenizer, run.config, run.extras, args.resize)
    start = time.perf_counter()
    for part in tqdm(todo, desc="sampling", disable=not accelerator.is_main_process):
        batches = range(part * per_part, min((part + 1) * per_part, num_batches))
        drawn = [draw_batch(run, generation, labels, b) for b in batches]
        store.put(part, np.concatenate([d[0] for d in drawn]), np.concatenate([d[1] for d in drawn]))
    return store, num_parts, time.perf_counter() - start


def draw_batch(run: SampleRun, generation: Generation, labels: torch.Tensor, b: int):
    """Batch ``b``'s images (n, H, W, C) and validity flags (n,)."""
    args = run.args
    indices = range(b * args.batch_size, min((b + 1) * args.batch_size, args.num_samples))
    given = run.extras.given(indices)
    rows = run.rows[labels[indices.start : indices.stop]]
    return generate_batch(generation, rows, batch_seed(args.seed, b), given)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv, __doc__)
    except ValueError as err:  # a --plugin that cannot be imported
        print(f"error: {err}", file=sys.stderr)
        return 2
    accelerator = Accelerator()
    try:
        check_world(accelerator)
        configure_threads(args.threads)
        run = load_run(args, accelerator.device)
    except (CheckpointError, ValueError, RunError, FeaturesUnavailable, DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        with held_out_folder(run.out) if accelerator.is_main_process else nullcontext():
            return draw_and_write(run, accelerator)
    except RunError as err:  # another sampling writes the same --out
        print(f"error: {err}", file=sys.stderr)
        return 2


@contextmanager
def held_out_folder(out: Path):
    """Hold a lock on ``out`` (a file beside it, removed at the end) while sampling: a second
    sampling into the same folder is refused instead of racing this one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.parent / f".{out.name}.lock"
    with open(path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(
                f"{out} is in use by another sampling run; wait for it or choose another --out"
            ) from None
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # still held: a sampling that starts now makes a new lock


def draw_and_write(run: SampleRun, accelerator: Accelerator) -> int:
    """Draw the missing batches, then (main process) write samples, grid and metrics."""
    args = run.args
    labels = torch.arange(args.num_samples) % len(run.names)  # (N,) index into the classes or prompts
    if run.extras.frames is not None:  # frame prediction: each clip's class (names are all class ids)
        labels = run.extras.frames.labels(args.num_samples)
    try:
        store, num_parts, seconds = draw_batches(run, labels, accelerator)
    except KeyboardInterrupt:
        kept = len(list((run.out / ".parts").glob("part-*.npz")))
        print(f"interrupted: {kept} finished parts are kept in {run.out}; run the same command to continue")
        return 130
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return 0
    images, valid = store.gather(num_parts)  # (N, H, W, C), (N,)
    arrays = run.conditions.arrays(run.names, labels)

    def write(directory: Path) -> None:  # a fresh folder, moved onto --out (its parts go with it)
        write_samples(run, directory, images, valid, arrays)
        write_metrics(run, directory, images, valid, arrays.get("labels"), seconds)
        store.stamp_results(directory)

    atomic_directory(run.out, write)
    print(f"wrote {len(images)} samples to {run.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
